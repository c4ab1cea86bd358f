//! The training loop shared by `pretrain` (both stages) and `finetune`: Adam with the
//! original's epsilon, linear warm-up then constant learning rate, global-norm clipping,
//! validation, best/last checkpoints, early stopping and exact resume.
//!
//! Determinism: the batch order of epoch `e` comes from `seed + e`, the masking of step `s` and
//! the backend's dropout RNG from `seed` and `s`, so a run resumed from a checkpoint repeats the
//! uninterrupted run's trajectory.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, ElementConversion, Tensor};
use mole_model::data_parallel::{self, Group};
use mole_model::objective::{Example, HostBatch, Objective};
use mole_model::{CheckpointContents, Model};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::replicas::*;
use crate::{
    evaluate, length_bucketed_batches, step_seed, BoxError, Optimizer, PlannedData, StepLog,
    TrainData, TrainError, TrainEvent, TrainJob, TrainObserver, TrainOutcome, TrainPlan,
    TrainState, WarmupSchedule,
};

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

/// Where one epoch's batches come from.
enum EpochSource<'a> {
    /// Index lists into the in-memory molecules.
    Indices(Vec<Vec<usize>>),
    Stream(Box<dyn Iterator<Item = Result<Vec<Example>, BoxError>> + 'a>),
}

/// Passes an event to the observer; its error stops the run.
fn report(observer: &mut dyn TrainObserver, event: TrainEvent<'_>) -> Result<(), TrainError> {
    observer.on_event(&event).map_err(TrainError::Observer)
}

/// Runs training to the end (or until early stopping) and returns where the checkpoints are,
/// reporting progress to `observer`.
///
/// With several `devices`, training is data-parallel: each batch is split across the devices
/// and the step equals one step on the whole batch (see [`replica_step`]). Checkpoints,
/// validation and reports use the first device's replica.
///
/// `compute_dtype` is the mixed-precision activation dtype (`None`: f32); parameters and the
/// optimiser state stay in f32 either way.
///
/// The model is any [`Model`] (`train::<B, MolE<B>>` for MolE): the trainer builds it from
/// `job.model_config`, computes every loss through [`Model::loss`] and writes best/last
/// checkpoints through [`Model::save_checkpoint`].
pub fn train<B, M>(
    job: TrainJob<M::Config>,
    devices: &[B::Device],
    compute_dtype: Option<DType>,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome, TrainError>
where
    B: AutodiffBackend,
    M: Model<B> + AutodiffModule<B>,
    M::InnerModule: Model<B::InnerBackend, Config = M::Config>,
{
    job.config.validate()?;
    let device = devices
        .first()
        .ok_or_else(|| TrainError::Invalid("no device to train on".into()))?;
    let group = Group {
        local_devices: devices.len(),
        nodes: job.nodes.clone(),
    };
    if group.peers() == 1 {
        return train_on::<B, M>(job, device, compute_dtype, &group, &[], observer);
    }
    if !cfg!(feature = "collective") {
        return Err(TrainError::Invalid(format!(
            "{} devices: data-parallel training needs mole-train's `collective` feature",
            group.peers()
        )));
    }
    data_parallel::reset::<B>();
    let group = &group;
    std::thread::scope(|scope| {
        let (senders, handles): (Vec<_>, Vec<_>) = devices[1..]
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<ReplicaStart<B, M>>(1);
                let peer = group.peer(k + 1);
                let device = d.clone();
                let handle = scope.spawn(move || -> Result<(), TrainError> {
                    // The replica starts once the first device has its (possibly resumed) state.
                    let Ok(start) = rx.recv() else { return Ok(()) };
                    let failing = ReleaseGroupOnFailure::<B>::armed();
                    let start = ReplicaStart {
                        model: start.model.fork(&device),
                        ..start
                    };
                    run_replica::<B, M>(peer, group, device, start)?;
                    failing.disarm();
                    Ok(())
                });
                (tx, handle)
            })
            .unzip();
        let failing = ReleaseGroupOnFailure::<B>::armed();
        let result = train_on::<B, M>(job, device, compute_dtype, group, &senders, observer);
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
                Ok(Err(e)) => replica_errors.push(format!("device {}: {}", k + 1, chain(&e))),
                Err(_) => replica_errors.push(format!("device {}: panicked", k + 1)),
            }
        }
        let replicas = replica_errors.join("; ");
        match (result, replica_errors.is_empty()) {
            (Ok(outcome), true) => Ok(outcome),
            (Err(e), true) => Err(e),
            (Ok(_), false) => Err(TrainError::DataParallel(format!(
                "data-parallel replicas failed: {replicas}"
            ))),
            // Either side may have failed first; report both.
            (Err(e), false) => Err(TrainError::DataParallel(format!(
                "{}; data-parallel replicas: {replicas}",
                chain(&e)
            ))),
        }
    })
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Makes `resume/` the newest complete resumable checkpoint. Saving writes `resume.tmp/` in
/// full, then renames `resume/` → `resume.old/` and `resume.tmp/` → `resume/`; a kill between
/// the two renames leaves no `resume/` but a complete `resume.tmp/` (newer) and `resume.old/`.
fn recover_resume_dir(run_dir: &Path, observer: &mut dyn TrainObserver) -> Result<(), TrainError> {
    let resume = run_dir.join("resume");
    let complete = |d: &Path| {
        ["state.json", "model.mpk", "optim.mpk"]
            .iter()
            .all(|f| d.join(f).is_file())
    };
    if complete(&resume) {
        return Ok(());
    }
    for candidate in ["resume.tmp", "resume.old"] {
        let dir = run_dir.join(candidate);
        if complete(&dir) {
            let _ = std::fs::remove_dir_all(&resume);
            std::fs::rename(&dir, &resume).map_err(TrainError::io(&dir))?;
            return report(
                observer,
                TrainEvent::RecoveredCheckpoint { from: candidate },
            );
        }
    }
    Ok(())
}

fn train_on<B, M>(
    job: TrainJob<M::Config>,
    device: &B::Device,
    compute_dtype: Option<DType>,
    group: &Group,
    replicas: &[std::sync::mpsc::SyncSender<ReplicaStart<B, M>>],
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome, TrainError>
where
    B: AutodiffBackend,
    M: Model<B> + AutodiffModule<B>,
    M::InnerModule: Model<B::InnerBackend, Config = M::Config>,
{
    let s = &job.config;
    let run_dir = &job.run_dir;
    std::fs::create_dir_all(run_dir).map_err(TrainError::io(run_dir))?;
    if job.resume {
        recover_resume_dir(run_dir, observer)?;
    }
    let steps_per_epoch = match &job.train {
        TrainData::InMemory(train) if train.is_empty() => {
            return Err(TrainError::Invalid(
                "no training molecules left after featurisation".into(),
            ))
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
        return Err(TrainError::Invalid(
            "a streaming corpus whose size was not counted needs train.max_steps".into(),
        ));
    }

    // Initial weights come from the backend RNG: seed it so the same seed gives the same model.
    B::seed(device, s.seed);
    let mut model = M::init(&job.model_config, device);
    if let Some(init) = &job.init {
        let (loaded, unused) = model.load_matching(init, device)?;
        model = loaded;
        if let Some(first) = unused.0.first() {
            let event = TrainEvent::InitialWeightsUnused {
                count: unused.0.len(),
                first,
            };
            report(observer, event)?;
        }
    }
    let mut optim = Optimizer::<B, M>::new(s);

    let resume_dir = run_dir.join("resume");
    let mut state = TrainState {
        model_config: Some(
            serde_json::to_value(&job.model_config)
                .map_err(|e| TrainError::Invalid(format!("model config: {e}")))?,
        ),
        ..TrainState::default()
    };
    if job.resume && resume_dir.join("state.json").exists() {
        let path = resume_dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        let wanted = state.model_config.take();
        state = serde_json::from_str(&text)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        if state.model_config.is_some() && state.model_config != wanted {
            return Err(TrainError::Invalid(format!(
                "--resume: {} holds a model of another configuration than the one requested \
                 (see its config.toml); resume with the run's settings or start a new run",
                resume_dir.display()
            )));
        }
        state.model_config = wanted;
        model = model
            .load_file(resume_dir.join("model"), &recorder(), device)
            .map_err(TrainError::record("loading resume/model.mpk"))?;
        let record = recorder()
            .load(resume_dir.join("optim"), device)
            .map_err(TrainError::record("loading resume/optim.mpk"))?;
        optim = optim.load_record(record);
        let event = TrainEvent::Resumed {
            epoch: state.epoch + 1,
            step: state.global_step,
        };
        report(observer, event)?;
    } else if job.resume {
        report(observer, TrainEvent::NothingToResume { dir: &resume_dir })?;
    }
    if state.finished {
        report(observer, TrainEvent::AlreadyFinished)?;
    }
    let mut schedule = WarmupSchedule::new(s.lr, s.warmup_steps(total_steps), state.global_step)?;
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
            optim: optim.clone(),
            scaler,
            steps: rx,
        };
        start.send(replica).map_err(|_| {
            TrainError::DataParallel("a data-parallel replica stopped before training".into())
        })?;
        shard_senders.push(tx);
    }
    if let Some(peer) = peer {
        if let Some(nodes) = &group.nodes {
            report(observer, TrainEvent::JoiningNodes { nodes })?;
        }
        peer.register::<B>(device, group)?;
        let event = TrainEvent::DataParallel {
            peers,
            local_devices: group.local_devices,
        };
        report(observer, event)?;
    }
    let lockstep = group.nodes.is_some();
    let watchdog = match (&group.nodes, job.on_stall) {
        (Some(nodes), Some(on_stall)) => Some(Watchdog::start(nodes.stall_timeout, on_stall)),
        _ => None,
    };

    let lengths: Vec<usize> = match &job.train {
        TrainData::InMemory(train) => train.iter().map(|e| e.input.len()).collect(),
        TrainData::Stream { .. } => Vec::new(),
    };
    let plan = TrainPlan {
        data: match &job.train {
            TrainData::InMemory(train) => PlannedData::InMemory {
                molecules: train.len(),
            },
            TrainData::Stream { batches, .. } => PlannedData::Stream {
                description: batches.describe(),
            },
        },
        valid_molecules: job.valid.len(),
        parameters: model.num_params(),
        total_steps,
        steps_per_epoch,
        batch_size: s.batch_size,
        first_step: state.global_step,
    };
    report(observer, TrainEvent::Started(&plan))?;

    let save_resumable =
        |model: &M, optim: &Optimizer<B, M>, state: &TrainState| -> Result<(), TrainError> {
            let tmp = run_dir.join("resume.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
            model
                .clone()
                .save_file(tmp.join("model"), &recorder())
                .map_err(TrainError::record("saving model record"))?;
            recorder()
                .record(optim.to_record(), tmp.join("optim"))
                .map_err(TrainError::record("saving optimizer record"))?;
            let state_path = tmp.join("state.json");
            let text = serde_json::to_string_pretty(state)
                .map_err(|e| TrainError::Invalid(format!("resume state: {e}")))?;
            std::fs::write(&state_path, text).map_err(TrainError::io(&state_path))?;
            // Swap in the complete folder; an interruption leaves either the old or the new one.
            let old = run_dir.join("resume.old");
            let _ = std::fs::remove_dir_all(&old);
            if resume_dir.exists() {
                std::fs::rename(&resume_dir, &old).map_err(TrainError::io(&resume_dir))?;
            }
            std::fs::rename(&tmp, &resume_dir).map_err(TrainError::io(&tmp))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        };
    let standardization = match &job.objective {
        Objective::Supervised {
            standardization, ..
        } => standardization.as_ref(),
        Objective::AtomEnv { .. } => None,
    };
    let save_model = |model: &M, path: &Path, info: mole_model::CheckpointInfo| {
        let contents = CheckpointContents {
            config: &job.model_config,
            vocab: &job.vocab,
            target_vocab: job.target_vocab.as_ref(),
            standardization,
            info,
        };
        model.clone().valid().save_checkpoint(path, contents)
    };

    let best_path = run_dir.join("best").with_extension(M::CHECKPOINT_EXTENSION);
    let last_path = run_dir.join("last").with_extension(M::CHECKPOINT_EXTENSION);
    let mut final_valid = None;
    let mut steps_this_process = 0usize;
    let started = Instant::now();
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
            TrainData::Stream { batches, .. } => {
                EpochSource::Stream(batches.epoch(state.epoch, state.batch_in_epoch))
            }
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
                (EpochSource::Stream(batches), _) => match batches.next() {
                    // an empty batch ends the epoch, as the end of the iterator does
                    Some(Ok(batch)) if !batch.is_empty() => {
                        streamed = batch;
                        streamed.iter().collect()
                    }
                    Some(Err(e)) => return Err(TrainError::Corpus(e)),
                    Some(Ok(_)) | None => {
                        exhausted = true;
                        break;
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
            let lr = schedule.next_lr();
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
                        TrainError::DataParallel(format!(
                            "data-parallel replica on device {} stopped",
                            k + 1
                        ))
                    })?;
                }
                (first, count)
            };
            let stats;
            (model, stats) = replica_step(model, &mut optim, work, peer, scaler.as_mut(), device)?;

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
            report(
                observer,
                TrainEvent::Step {
                    step: state.global_step,
                },
            )?;
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
                    return Err(TrainError::Diverged {
                        step: state.global_step,
                        loss: loss_sum,
                    });
                }
                let masked_accuracy = running_correct.take().map(|c| {
                    let c: f64 = c.into_scalar().elem();
                    c / running_count.max(1) as f64
                });
                let log = StepLog {
                    epoch: state.epoch + 1,
                    step: state.global_step,
                    lr,
                    loss: loss_sum / running_batches.max(1) as f32,
                    elapsed_s: started.elapsed().as_secs_f64(),
                    mol_per_s: per_s(window_molecules),
                    tokens_per_s: per_s(window_tokens),
                    loss_scale: scaler.as_ref().map(|sc| sc.scale),
                    masked_accuracy,
                };
                (window_molecules, window_tokens, window_seconds) = (0, 0, 0.0);
                report(observer, TrainEvent::Logged(&log))?;
                running_batches = 0;
                running_count = 0;
            }
            if state.global_step.is_multiple_of(s.checkpoint_every.max(1)) {
                state.loss_scaler = scaler;
                save_resumable(&model, &optim, &state)?;
            }
            if job.interrupt_after.is_some_and(|n| steps_this_process >= n) {
                return Err(TrainError::Interrupted(steps_this_process));
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
            )?;
            let vloss = valid["loss"].as_f64().unwrap_or(f64::INFINITY);
            let improved = state.best_valid_loss.is_none_or(|best| vloss < best);
            report(
                observer,
                TrainEvent::Validated {
                    epoch: epoch_number,
                    step: state.global_step,
                    metrics: &valid,
                    improved,
                },
            )?;
            if improved {
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
                let event = TrainEvent::EarlyStopped {
                    patience: s.early_stopping_patience,
                };
                report(observer, event)?;
                state.finished = true;
            }
        }
        if last_epoch {
            state.finished = true;
        }
        state.loss_scaler = scaler;
        save_resumable(&model, &optim, &state)?;
        if state.finished {
            break 'epochs;
        }
    }
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
        std::fs::copy(&last_path, &best_path).map_err(TrainError::io(&best_path))?;
    }
    report(
        observer,
        TrainEvent::Finished {
            steps: state.global_step,
            seconds: started.elapsed().as_secs_f64(),
            best: &best_path,
            last: &last_path,
        },
    )?;
    Ok(TrainOutcome {
        best_checkpoint: best_path,
        last_checkpoint: last_path,
        final_valid,
        steps: state.global_step,
    })
}
