//! The training loop shared by `pretrain` (both stages) and `finetune`: Adam with the
//! original's epsilon, linear warm-up then constant learning rate, global-norm clipping,
//! validation, best/last checkpoints, early stopping and exact resume.
//!
//! Determinism: the batch order of epoch `e` comes from `seed + e`, the masking of step `s` and
//! the backend's dropout RNG from `seed` and `s`, so a run resumed from a checkpoint repeats the
//! uninterrupted run's trajectory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, ElementConversion, Tensor};
use mole_featurize::Vocabulary;
use mole_metrics::MetricsCollection;
use mole_model::data_parallel::{self, Group, NodeGroup, Peer};
use mole_model::objective::HostBatch;
pub use mole_model::objective::Objective;
use mole_model::training::{clip_global_norm, FusedAdam, LossScaler};
use mole_model::{Checkpoint, MolE, MolEConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{length_bucketed_batches, progress_bar, sequential_batches, Example};
use crate::settings::{RunSettings, TrainSettings};

mod evaluate;
mod job;
mod replicas;
mod run_dir;

pub use evaluate::{evaluate, Evaluator};
pub use job::*;
use replicas::*;
use run_dir::recover_resume_dir;
pub use run_dir::{prepare_run_dir, RunDirUse};

fn step_seed(seed: u64, step: usize) -> u64 {
    // SplitMix64 of (seed, step): independent, reproducible streams per step.
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type AdamOptimizer<B> = OptimizerAdaptor<FusedAdam, MolE<B>, B>;

fn adam<B: AutodiffBackend>(s: &TrainSettings) -> AdamOptimizer<B> {
    FusedAdam::new(s.adam_beta1, s.adam_beta2, s.adam_eps).init::<B, MolE<B>>()
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

/// Runs training to the end (or until early stopping) and returns where the checkpoints are.
///
/// With several `devices`, training is data-parallel: each batch is split across the devices
/// and the step equals one step on the whole batch (see [`replica_step`]). Checkpoints,
/// validation and logging use the first device's replica.
///
/// `compute_dtype` is the mixed-precision activation dtype (`None`: f32); parameters and the
/// optimiser state stay in f32 either way.
pub fn train<B: AutodiffBackend>(
    job: TrainJob<'_>,
    devices: &[B::Device],
    compute_dtype: Option<DType>,
) -> Result<TrainOutcome> {
    let device = devices.first().context("no device to train on")?;
    let group = Group {
        local_devices: devices.len(),
        nodes: job.nodes.clone(),
    };
    if group.peers() == 1 {
        return train_on::<B>(job, device, compute_dtype, &group, &[]);
    }
    data_parallel::reset::<B>();
    let group = &group;
    std::thread::scope(|scope| {
        let (senders, handles): (Vec<_>, Vec<_>) = devices[1..]
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<ReplicaStart<B>>(1);
                let peer = group.peer(k + 1);
                let device = d.clone();
                let grad_clip = job.settings.train.grad_clip;
                let handle = scope.spawn(move || -> Result<()> {
                    // The replica starts once the first device has its (possibly resumed) state.
                    let Ok(start) = rx.recv() else { return Ok(()) };
                    let failing = ReleaseGroupOnFailure::<B>::armed();
                    let start = ReplicaStart {
                        model: start.model.fork(&device),
                        ..start
                    };
                    run_replica::<B>(peer, group, device, start, grad_clip)?;
                    failing.disarm();
                    Ok(())
                });
                (tx, handle)
            })
            .unzip();
        let failing = ReleaseGroupOnFailure::<B>::armed();
        let result = train_on::<B>(job, device, compute_dtype, group, &senders);
        if result.is_ok() {
            failing.disarm();
        } else {
            drop(failing);
        }
        drop(senders);
        let mut replica_errors = Vec::new();
        for (k, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => replica_errors.push(format!("device {}: {e:#}", k + 1)),
                Err(_) => replica_errors.push(format!("device {}: panicked", k + 1)),
            }
        }
        let replicas = replica_errors.join("; ");
        match (result, replica_errors.is_empty()) {
            (Ok(outcome), true) => Ok(outcome),
            (Err(e), true) => Err(e),
            (Ok(_), false) => bail!("data-parallel replicas failed: {replicas}"),
            // Either side may have failed first; report both.
            (Err(e), false) => Err(e.context(format!("data-parallel replicas: {replicas}"))),
        }
    })
}

/// What a replica thread receives to start: the first device's model and optimiser state and
/// the channel of its per-step shards.
struct ReplicaStart<B: AutodiffBackend> {
    model: MolE<B>,
    optim: AdamOptimizer<B>,
    scaler: Option<LossScaler>,
    steps: std::sync::mpsc::Receiver<StepWork>,
}

fn train_on<B: AutodiffBackend>(
    job: TrainJob<'_>,
    device: &B::Device,
    compute_dtype: Option<DType>,
    group: &Group,
    replicas: &[std::sync::mpsc::SyncSender<ReplicaStart<B>>],
) -> Result<TrainOutcome> {
    let s = &job.settings.train;
    let run_dir = &job.run_dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create", run_dir.display()))?;
    if job.resume {
        recover_resume_dir(run_dir)?;
    }
    crate::data::write_atomic(
        &run_dir.join("config.toml"),
        job.settings.to_toml().as_bytes(),
    )?;
    let steps_per_epoch = match &job.train {
        TrainData::InMemory(train) if train.is_empty() => {
            bail!("no training molecules left after featurisation")
        }
        TrainData::InMemory(train) => Some(train.len().div_ceil(s.batch_size)),
        TrainData::Stream {
            steps_per_epoch, ..
        } => *steps_per_epoch,
    };
    let mut total_steps = match steps_per_epoch {
        Some(n) => s.epochs * n,
        None => usize::MAX,
    };
    if s.max_steps > 0 {
        total_steps = total_steps.min(s.max_steps);
    }
    if total_steps == usize::MAX {
        bail!("a streaming corpus whose size was not counted needs train.max_steps");
    }
    let warmup = ((s.warmup_fraction * total_steps as f64).round() as usize).max(1);
    let lr_at = |step: usize| -> f64 {
        if step < warmup {
            s.lr * (step + 1) as f64 / warmup as f64
        } else {
            s.lr
        }
    };

    // Initial weights come from the backend RNG: seed it so the same seed gives the same model.
    B::seed(device, s.seed);
    let mut model: MolE<B> = MolE::new(&job.model_config, device);
    if let Some(init) = &job.init {
        model = load_partial(model, init, device)?;
    }
    let mut optim = adam::<B>(s);

    let resume_dir = run_dir.join("resume");
    let mut state = TrainState {
        model_config: Some(serde_json::to_value(&job.model_config)?),
        ..TrainState::default()
    };
    if job.resume && resume_dir.join("state.json").exists() {
        let text = std::fs::read_to_string(resume_dir.join("state.json"))?;
        let wanted = state.model_config.take();
        state = serde_json::from_str(&text).context("resume/state.json")?;
        if state.model_config.is_some() && state.model_config != wanted {
            bail!(
                "--resume: {} holds a model of another configuration than the one requested \
                 (see its config.toml); resume with the run's settings or start a new run",
                resume_dir.display()
            );
        }
        state.model_config = wanted;
        model = model
            .load_file(resume_dir.join("model"), &recorder(), device)
            .context("loading resume/model.mpk")?;
        let record = recorder()
            .load(resume_dir.join("optim"), device)
            .context("loading resume/optim.mpk")?;
        optim = optim.load_record(record);
        tracing::info!(
            "resuming {} at epoch {}, step {}",
            run_dir.display(),
            state.epoch + 1,
            state.global_step
        );
    } else if job.resume {
        tracing::warn!(
            "--resume: no checkpoint in {}, starting fresh",
            resume_dir.display()
        );
    }
    if state.finished {
        tracing::info!("run already finished; nothing to resume");
    }
    let peers = group.peers();
    model = model.with_compute_dtype(compute_dtype);
    // f16 needs loss scaling (bf16 has f32's range and does not).
    let mut scaler = match compute_dtype {
        Some(DType::F16) => Some(state.loss_scaler.unwrap_or_default()),
        _ => None,
    };
    // Same weights on every replica: no lazy initialisation may race with the replicas' threads.
    data_parallel::materialize(&model);
    let peer = (peers > 1).then(|| group.peer(0));
    let mut shard_senders = Vec::with_capacity(replicas.len());
    for start in replicas {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let replica = ReplicaStart {
            model: model.clone(),
            optim: adam::<B>(s).load_record(optim.to_record()),
            scaler,
            steps: rx,
        };
        start
            .send(replica)
            .map_err(|_| anyhow::anyhow!("a data-parallel replica stopped before training"))?;
        shard_senders.push(tx);
    }
    if let Some(peer) = peer {
        if let Some(nodes) = &group.nodes {
            tracing::info!(
                "node {} of {}: joining the group at {}:{} (this node serves gradients on {}:{})",
                nodes.rank,
                nodes.nodes,
                nodes.orchestrator_host,
                nodes.orchestrator_port,
                nodes.host,
                nodes.port
            );
        }
        peer.register::<B>(device, group)?;
        tracing::info!(
            "data-parallel training on {peers} devices ({} in this process)",
            group.local_devices
        );
    }
    let lockstep = group.nodes.is_some();
    let watchdog = group
        .nodes
        .as_ref()
        .map(|n| Watchdog::start(n.stall_timeout));

    let mut log = MetricsLog::open(run_dir)?;
    let lengths: Vec<usize> = match &job.train {
        TrainData::InMemory(train) => train.iter().map(|e| e.input.len()).collect(),
        TrainData::Stream { .. } => Vec::new(),
    };
    let num_params = model.num_params();
    let per_epoch = steps_per_epoch.map_or("uncounted".to_string(), |n| n.to_string());
    match &job.train {
        TrainData::InMemory(train) => tracing::info!(
            "training {} molecules ({} validation), {num_params} parameters, {total_steps} \
             steps ({per_epoch} per epoch), batch {}",
            train.len(),
            job.valid.len(),
            s.batch_size
        ),
        TrainData::Stream { spec, .. } => tracing::info!(
            "training on a stream of {} file(s) ({} validation molecules), {num_params} \
             parameters, {total_steps} steps ({per_epoch} per epoch), batch {}, shuffle \
             window {}",
            spec.files.len(),
            job.valid.len(),
            s.batch_size,
            spec.window
        ),
    }

    let save_resumable = |model: &MolE<B>, optim_record, state: &TrainState| -> Result<()> {
        let tmp = run_dir.join("resume.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        model
            .clone()
            .save_file(tmp.join("model"), &recorder())
            .context("saving model record")?;
        recorder()
            .record(optim_record, tmp.join("optim"))
            .context("saving optimizer record")?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
        // Swap in the complete folder; an interruption leaves either the old or the new one.
        let old = run_dir.join("resume.old");
        let _ = std::fs::remove_dir_all(&old);
        if resume_dir.exists() {
            std::fs::rename(&resume_dir, &old)?;
        }
        std::fs::rename(&tmp, &resume_dir)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    };
    let save_model =
        |model: &MolE<B>, path: &Path, info: mole_model::CheckpointInfo| -> Result<()> {
            let mut model = model.clone().valid();
            if let Objective::Supervised {
                standardization: Some(s),
                ..
            } = &job.objective
            {
                model = s.fold_into(model);
            }
            let ckpt = Checkpoint {
                config: job.model_config.clone(),
                model,
                vocab: job.vocab.clone(),
                target_vocab: job.target_vocab.clone(),
                info,
            };
            ckpt.save(path)?;
            Ok(())
        };

    let best_path = run_dir.join("best.safetensors");
    let last_path = run_dir.join("last.safetensors");
    let mut final_valid = None;
    let mut steps_this_process = 0usize;
    let started = Instant::now();
    let bar = progress_bar(total_steps as u64, "train");
    bar.set_position(state.global_step as u64);
    // Throughput since the last log line: molecules, tokens (CLS included) and the steps' own
    // wall time (validation and checkpoints left out).
    let (mut window_molecules, mut window_tokens, mut window_seconds) = (0usize, 0usize, 0f64);

    'epochs: while !state.finished && state.epoch < s.epochs && state.global_step < total_steps {
        let mut source = match &job.train {
            TrainData::InMemory(_) => {
                let mut epoch_rng = StdRng::seed_from_u64(s.seed.wrapping_add(state.epoch as u64));
                EpochSource::Indices(length_bucketed_batches(
                    &lengths,
                    s.batch_size,
                    &mut epoch_rng,
                ))
            }
            TrainData::Stream { spec, .. } => EpochSource::Stream(crate::stream::epoch_batches(
                spec.clone(),
                state.epoch,
                state.batch_in_epoch,
            )),
        };
        let mut exhausted = false;
        let mut running_loss: Option<Tensor<B::InnerBackend, 1>> = None;
        let mut running_correct: Option<Tensor<B::InnerBackend, 1>> = None;
        let mut running_count = 0usize;
        let mut running_batches = 0usize;
        loop {
            let step_started = Instant::now();
            let streamed: Vec<Example>;
            let examples: Vec<&Example> = match (&mut source, &job.train) {
                (EpochSource::Indices(batches), TrainData::InMemory(train)) => {
                    match batches.get(state.batch_in_epoch) {
                        Some(idx) => idx.iter().map(|&i| &train[i]).collect(),
                        None => {
                            exhausted = true;
                            break;
                        }
                    }
                }
                (EpochSource::Stream(rx), _) => match rx.recv() {
                    // an empty batch ends the epoch
                    Ok(Ok(batch)) if batch.is_empty() => {
                        exhausted = true;
                        break;
                    }
                    Ok(Ok(batch)) => {
                        streamed = batch;
                        streamed.iter().collect()
                    }
                    Ok(Err(e)) => {
                        bar.abandon();
                        return Err(e.context("reading the training corpus"));
                    }
                    // the corpus thread stopped without ending the epoch: it died
                    Err(_) => {
                        bar.abandon();
                        bail!("the corpus reader stopped in the middle of an epoch");
                    }
                },
                (EpochSource::Indices(_), TrainData::Stream { .. }) => {
                    unreachable!("index batches are made for in-memory data only")
                }
            };
            window_molecules += examples.len();
            window_tokens += examples.iter().map(|e| e.input.len()).sum::<usize>();
            let seed = step_seed(s.seed, state.global_step);
            let mut rng = StdRng::seed_from_u64(seed);
            let lr = lr_at(state.global_step);
            // This device's share of the step; the other replicas get theirs over their channels.
            let lockstep = lockstep.then_some(Lockstep {
                step: state.global_step,
                local_devices: group.local_devices,
            });
            let (work, count) = if peer.is_none() {
                let batch = HostBatch::prepare(&examples, &job.objective, &job.vocab, &mut rng);
                let count = batch.loss_count();
                let work = StepWork {
                    batch,
                    weight: 1.0,
                    lr,
                    seed,
                    padding: false,
                    lockstep,
                };
                (work, count)
            } else {
                // Every node shards the whole batch the same way and keeps its own shards.
                let shards = shard_batch(&examples, peers, &job.objective, &job.vocab, &mut rng);
                let count = shards.iter().map(|s| s.count).sum();
                let mut local = shards
                    .into_iter()
                    .enumerate()
                    .skip(group.local_shards().start)
                    .take(group.local_devices)
                    .map(|(index, shard)| StepWork {
                        batch: shard.batch,
                        weight: shard.weight,
                        lr,
                        // the first peer keeps the step's seed, as a single device would
                        seed: if index == 0 {
                            seed
                        } else {
                            step_seed(seed, index)
                        },
                        padding: shard.padding,
                        lockstep,
                    });
                let first = local.next().expect("one shard per device");
                for (k, (work, tx)) in local.zip(&shard_senders).enumerate() {
                    tx.send(work).map_err(|_| {
                        anyhow::anyhow!("data-parallel replica on device {} stopped", k + 1)
                    })?;
                }
                (first, count)
            };
            let stats;
            (model, stats) = replica_step(
                model,
                &mut optim,
                work,
                s.grad_clip,
                peer,
                scaler.as_mut(),
                device,
            )?;

            let detached = stats.loss;
            running_loss = Some(match running_loss.take() {
                Some(t) => t + detached,
                None => detached,
            });
            if let Some(c) = stats.correct {
                running_correct = Some(match running_correct.take() {
                    Some(t) => t + c,
                    None => c,
                });
            }
            running_count += count;
            running_batches += 1;
            if let Some(w) = &watchdog {
                w.progress();
            }
            state.global_step += 1;
            state.batch_in_epoch += 1;
            steps_this_process += 1;
            bar.inc(1);
            let logs_now = state.global_step.is_multiple_of(s.log_every.max(1))
                || state.global_step == total_steps;
            if !logs_now {
                window_seconds += step_started.elapsed().as_secs_f64();
            }

            if logs_now {
                let loss_sum: f32 = running_loss.take().map_or(0.0, |t| t.into_scalar().elem());
                // the loss read above waits for the device: the steps are done
                window_seconds += step_started.elapsed().as_secs_f64();
                let per_s = |n: usize| n as f64 / window_seconds.max(1e-9);
                // f16's dynamic loss scaling skips overflowing steps itself; elsewhere a
                // non-finite loss means the weights are already ruined
                if !loss_sum.is_finite() && scaler.is_none() {
                    bar.abandon();
                    bail!(
                        "training loss became {loss_sum} by step {}: stopping. Check the \
                         labels for huge values, or lower train.lr",
                        state.global_step
                    );
                }
                let mut entry = serde_json::json!({
                    "kind": "train",
                    "epoch": state.epoch + 1,
                    "step": state.global_step,
                    "lr": lr,
                    "loss": loss_sum / running_batches.max(1) as f32,
                    "elapsed_s": started.elapsed().as_secs_f64(),
                    "mol_per_s": per_s(window_molecules),
                    "tokens_per_s": per_s(window_tokens),
                });
                (window_molecules, window_tokens, window_seconds) = (0, 0, 0.0);
                if let Some(sc) = &scaler {
                    entry["loss_scale"] = serde_json::json!(sc.scale);
                }
                if let Some(c) = running_correct.take() {
                    let c: f64 = c.into_scalar().elem();
                    entry["masked_accuracy"] = serde_json::json!(c / running_count.max(1) as f64);
                }
                bar.set_message(format!(
                    "loss {:.4}",
                    loss_sum / running_batches.max(1) as f32
                ));
                tracing::info!("{entry}");
                log.write(entry)?;
                running_batches = 0;
                running_count = 0;
            }
            if state.global_step.is_multiple_of(s.checkpoint_every.max(1)) {
                state.loss_scaler = scaler;
                save_resumable(&model, optim.to_record(), &state)?;
            }
            if job.interrupt_after.is_some_and(|n| steps_this_process >= n) {
                bar.abandon();
                bail!("interrupted after {steps_this_process} steps (test hook)");
            }
            if state.global_step >= total_steps {
                break;
            }
        }
        let epoch_done = exhausted || state.global_step >= total_steps;
        if !epoch_done {
            continue;
        }
        let epoch_number = state.epoch + 1;
        state.epoch += 1;
        state.batch_in_epoch = 0;
        let last_epoch = state.epoch >= s.epochs || state.global_step >= total_steps;

        if !job.valid.is_empty()
            && (epoch_number.is_multiple_of(s.validate_every.max(1)) || last_epoch)
        {
            let valid = evaluate(
                &model.valid(),
                &job.valid,
                &job.objective,
                &job.vocab,
                s.batch_size,
                s.seed,
                device,
            );
            let vloss = valid["loss"].as_f64().unwrap_or(f64::INFINITY);
            let mut entry = valid.clone();
            entry["kind"] = "valid".into();
            entry["epoch"] = epoch_number.into();
            entry["step"] = state.global_step.into();
            tracing::info!("{entry}");
            log.write(entry)?;
            if state.best_valid_loss.is_none_or(|best| vloss < best) {
                state.best_valid_loss = Some(vloss);
                state.validations_without_improvement = 0;
                let info = mole_model::CheckpointInfo {
                    step: Some(state.global_step),
                    epoch: Some(epoch_number),
                    valid: Some(valid.clone()),
                    ..job.info.clone()
                };
                save_model(&model, &best_path, info)?;
            } else {
                state.validations_without_improvement += 1;
            }
            final_valid = Some(valid);
            if let Some(w) = &watchdog {
                w.progress();
            }
            if s.early_stopping_patience > 0
                && state.validations_without_improvement >= s.early_stopping_patience
            {
                tracing::info!(
                    "early stopping: no validation improvement in {} validations",
                    s.early_stopping_patience
                );
                state.finished = true;
            }
        }
        if last_epoch {
            state.finished = true;
        }
        state.loss_scaler = scaler;
        save_resumable(&model, optim.to_record(), &state)?;
        if state.finished {
            break 'epochs;
        }
    }
    bar.finish_and_clear();
    state.finished = true;
    drop(shard_senders);
    if let Some(peer) = peer {
        if let Err(e) = peer.finish::<B>(group) {
            tracing::debug!("{e}");
        }
    }

    let info = mole_model::CheckpointInfo {
        step: Some(state.global_step),
        epoch: Some(state.epoch),
        ..job.info.clone()
    };
    save_model(&model, &last_path, info)?;
    if !best_path.exists() {
        std::fs::copy(&last_path, &best_path)?;
    }
    tracing::info!(
        "done: {} steps in {:.1}s; best {}, last {}",
        state.global_step,
        started.elapsed().as_secs_f64(),
        best_path.display(),
        last_path.display()
    );
    Ok(TrainOutcome {
        best_checkpoint: best_path,
        final_valid,
        steps: state.global_step,
    })
}

/// Loads the tensors of `dict` that the model has (`mole_model::load_matching`: e.g. a
/// pretrained encoder into a model with a new head) and logs those it does not use.
pub fn load_partial<B: Backend>(
    model: MolE<B>,
    dict: &mole_nn::StateDict,
    device: &B::Device,
) -> Result<MolE<B>> {
    let (model, unused) = mole_model::load_matching(model, dict, device)?;
    if let Some(first) = unused.0.first() {
        tracing::info!(
            "initial weights: {} tensor(s) not used by this model (e.g. {first})",
            unused.0.len()
        );
    }
    Ok(model)
}
