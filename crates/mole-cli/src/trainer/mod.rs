//! `mole`'s side of training: the run directory (its lock, `--resume`, `--force`), and the
//! reporter that turns the library trainer's events (`mole_train`) into a progress bar, log
//! lines and `metrics.jsonl`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use indicatif::ProgressBar;
pub use mole_train::{evaluate, Evaluator, Objective, TrainData, TrainJob, TrainOutcome};
use mole_train::{BoxError, PlannedData, TrainEvent, TrainObserver};

use crate::data::progress_bar;
use crate::settings::RunSettings;

mod run_dir;

pub use run_dir::{prepare_run_dir, RunDirUse};

/// Trains `job` (`mole_train::train`) in the run directory that [`prepare_run_dir`] made and
/// locked, saving the run's `settings` as `<run>/config.toml` first and reporting on the
/// terminal and in `<run>/metrics.jsonl`.
pub fn train<B: AutodiffBackend>(
    job: TrainJob,
    devices: &[B::Device],
    compute_dtype: Option<DType>,
    settings: &RunSettings,
) -> Result<TrainOutcome> {
    let run_dir = job.run_dir.clone();
    crate::data::write_atomic(&run_dir.join("config.toml"), settings.to_toml().as_bytes())?;
    let mut reporter = RunReporter {
        run_dir: &run_dir,
        stream_window: settings.data.stream_window,
        log: MetricsLog::open(&run_dir)?,
        bar: None,
    };
    Ok(mole_train::train::<B, mole_model::MolE<B>>(
        job,
        devices,
        compute_dtype,
        &mut reporter,
    )?)
}

/// What a node of a multi-node run does when the group stalls: says why and exits, so the
/// run can be restarted with `--resume`.
pub fn end_stalled_node() -> mole_train::StallHandler {
    Box::new(|idle| {
        eprintln!(
            "error: no training progress for {} s: another node has failed or stopped (see its \
             log). Ending this node; restart the group with --resume",
            idle.as_secs()
        );
        std::process::exit(1);
    })
}

/// Shows a run's progress: a progress bar, `tracing` lines, and `metrics.jsonl` entries
/// (`kind` `train` and `valid`).
struct RunReporter<'a> {
    run_dir: &'a Path,
    /// `data.stream_window`, named in the first line of a streamed run.
    stream_window: usize,
    log: MetricsLog,
    bar: Option<ProgressBar>,
}

impl TrainObserver for RunReporter<'_> {
    fn on_event(&mut self, event: &TrainEvent<'_>) -> std::result::Result<(), BoxError> {
        match event {
            TrainEvent::RecoveredCheckpoint { from } => tracing::warn!(
                "{}: resuming from {from}/ (the run was stopped while saving its checkpoint)",
                self.run_dir.display()
            ),
            TrainEvent::Resumed { epoch, step } => tracing::info!(
                "resuming {} at epoch {epoch}, step {step}",
                self.run_dir.display()
            ),
            TrainEvent::NothingToResume { dir } => tracing::warn!(
                "--resume: no checkpoint in {}, starting fresh",
                dir.display()
            ),
            TrainEvent::AlreadyFinished => {
                tracing::info!("run already finished; nothing to resume")
            }
            TrainEvent::InitialWeightsUnused { count, first } => tracing::info!(
                "initial weights: {count} tensor(s) not used by this model (e.g. {first})"
            ),
            TrainEvent::JoiningNodes { nodes } => tracing::info!(
                "node {} of {}: joining the group at {}:{} (this node serves gradients on {}:{})",
                nodes.rank,
                nodes.nodes,
                nodes.orchestrator_host,
                nodes.orchestrator_port,
                nodes.host,
                nodes.port
            ),
            TrainEvent::DataParallel {
                peers,
                local_devices,
            } => tracing::info!(
                "data-parallel training on {peers} devices ({local_devices} in this process)"
            ),
            TrainEvent::Started(plan) => {
                let per_epoch = plan
                    .steps_per_epoch
                    .map_or("uncounted".to_string(), |n| n.to_string());
                match &plan.data {
                    PlannedData::InMemory { molecules } => tracing::info!(
                        "training {molecules} molecules ({} validation), {} parameters, {} steps \
                         ({per_epoch} per epoch), batch {}",
                        plan.valid_molecules,
                        plan.parameters,
                        plan.total_steps,
                        plan.batch_size
                    ),
                    PlannedData::Stream { description } => tracing::info!(
                        "training on {description} ({} validation molecules), {} parameters, {} \
                         steps ({per_epoch} per epoch), batch {}, shuffle window {}",
                        plan.valid_molecules,
                        plan.parameters,
                        plan.total_steps,
                        plan.batch_size,
                        self.stream_window
                    ),
                }
                let bar = progress_bar(plan.total_steps as u64, "train");
                bar.set_position(plan.first_step as u64);
                self.bar = Some(bar);
            }
            TrainEvent::Step { .. } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            TrainEvent::Logged(log) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("loss {:.4}", log.loss));
                }
                let mut entry = serde_json::to_value(log)?;
                entry["kind"] = "train".into();
                tracing::info!("{entry}");
                self.log.write(entry)?;
            }
            TrainEvent::Validated {
                epoch,
                step,
                metrics,
                ..
            } => {
                let mut entry = (*metrics).clone();
                entry["kind"] = "valid".into();
                entry["epoch"] = (*epoch).into();
                entry["step"] = (*step).into();
                tracing::info!("{entry}");
                self.log.write(entry)?;
            }
            TrainEvent::EarlyStopped { patience } => tracing::info!(
                "early stopping: no validation improvement in {patience} validations"
            ),
            TrainEvent::Finished {
                steps,
                seconds,
                best,
                last,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                tracing::info!(
                    "done: {steps} steps in {seconds:.1}s; best {}, last {}",
                    best.display(),
                    last.display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for RunReporter<'_> {
    /// A run that stopped with an error leaves its bar where it stopped.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

/// Appends JSON lines to `metrics.jsonl`.
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    pub fn open(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        Ok(Self { file })
    }

    pub fn write(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}
