//! Data-parallel steps: a batch's shards, one replica thread per extra device, the
//! lockstep gradient all-reduce, and what keeps a failed node or replica from leaving the
//! others waiting.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use mole_featurize::Vocabulary;
use mole_model::data_parallel::{self, Group, Peer};
use mole_model::objective::{Example, HostBatch, Objective};
use mole_model::training::LossScaler;
use mole_model::Model;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::{Optimizer, TrainError};

/// What a replica thread receives to start: the first device's model and optimiser state and
/// the channel of its per-step shards.
pub(crate) struct ReplicaStart<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub(crate) model: M,
    pub(crate) optim: Optimizer<B, M>,
    pub(crate) scaler: Option<LossScaler>,
    pub(crate) steps: std::sync::mpsc::Receiver<StepWork>,
}

/// One replica's share of a training step.
pub(crate) struct StepWork {
    pub(crate) batch: HostBatch,
    /// Weight of this shard's mean loss (its share of the combined batch's normaliser).
    pub(crate) weight: f32,
    pub(crate) lr: f64,
    /// Seed of the device's dropout RNG for this step.
    pub(crate) seed: u64,
    /// A stand-in shard (see [`Shard::padding`]): it adds nothing to the logged accuracy.
    pub(crate) padding: bool,
    /// What every node must agree on when the group spans several machines (checked in the
    /// step's statistics all-reduce, before the optimiser step).
    pub(crate) lockstep: Option<Lockstep>,
}

/// The values every node of a multi-node group must share at a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lockstep {
    /// A node resumed from another checkpoint than the others must not mix its gradients in.
    pub(crate) step: usize,
    /// Shards are assigned as if every node had this many devices.
    pub(crate) local_devices: usize,
}

/// What a step leaves for logging, on the device (the combined batch's values when data-parallel).
pub(crate) struct StepStats<B: Backend> {
    pub(crate) loss: Tensor<B, 1>,
    pub(crate) correct: Option<Tensor<B, 1>>,
}

/// One optimiser step of one replica: forward and backward on its shard; when data-parallel,
/// gradients (and the logged loss and accuracy) summed across replicas by Burn's collective
/// all-reduce; then global-norm clipping and Adam, identical on every replica.
///
/// With a loss scaler (f16), the loss is scaled before the backward pass and the gradients
/// unscaled after the all-reduce; a step with overflowing gradients leaves the model unchanged.
pub(crate) fn replica_step<B: AutodiffBackend, M: Model<B> + AutodiffModule<B>>(
    model: M,
    optim: &mut Optimizer<B, M>,
    work: StepWork,
    peer: Option<Peer>,
    scaler: Option<&mut LossScaler>,
    device: &B::Device,
) -> Result<(M, StepStats<B::InnerBackend>), TrainError> {
    B::seed(device, work.seed);
    let out = model.loss(work.batch, device)?;
    let loss = match peer {
        Some(_) => out.loss.mul_scalar(work.weight),
        None => out.loss,
    };
    let scaled = match &scaler {
        Some(s) => loss.clone().mul_scalar(s.scale),
        None => loss.clone(),
    };
    let mut grads = Optimizer::gradients(scaled, &model);
    let mut stats = StepStats {
        loss: loss.inner(),
        correct: out.correct.map(|c| {
            if work.padding {
                c.inner().mul_scalar(0.0)
            } else {
                c.inner()
            }
        }),
    };
    if let Some(peer) = peer {
        grads = peer
            .all_reduce_gradients(&model, grads)
            .map_err(|e| match work.lockstep {
                Some(_) => TrainError::DataParallel(format!(
                    "another node has failed or stopped (see its log); restart the group with \
                     --resume: {e}"
                )),
                None => e.into(),
            })?;
        match work.lockstep {
            None => {
                stats.loss = peer.all_reduce_sum(stats.loss)?;
                if let Some(c) = stats.correct.take() {
                    stats.correct = Some(peer.all_reduce_sum(c)?);
                }
            }
            // across machines every all-reduce is a network round trip: the loss, the
            // accuracy and the checks travel together
            Some(check) => {
                let has_correct = stats.correct.is_some();
                let mut parts = vec![stats.loss.clone()];
                parts.extend(stats.correct.take());
                let values = [check.step as u32, check.local_devices as u32];
                let (summed, agreeing) =
                    peer.all_reduce_sum_agreeing(Tensor::cat(parts, 0), &values)?;
                if !agreeing[1] {
                    return Err(TrainError::DataParallel(format!(
                        "the nodes have different numbers of devices (this one {}): every node \
                         must run with the same --devices count",
                        check.local_devices
                    )));
                }
                if !agreeing[0] {
                    return Err(TrainError::DataParallel(format!(
                        "the nodes are not at the same step (this one is at step {}): they \
                         resumed from different checkpoints. Resume every node from the same \
                         one (copy node 0's <run>/resume to the others)",
                        check.step
                    )));
                }
                stats.loss = summed.clone().slice(0..1);
                if has_correct {
                    stats.correct = Some(summed.slice(1..2));
                }
            }
        }
    }
    if let Some(scaler) = scaler {
        match scaler.unscale(&model, grads) {
            Some(unscaled) => grads = unscaled,
            None => {
                tracing::debug!(
                    "f16 gradients overflowed: step skipped, loss scale {}",
                    scaler.scale
                );
                return Ok((model, stats));
            }
        }
    }
    let grads = optim.clip(&model, grads);
    Ok((optim.update(model, grads, work.lr), stats))
}

/// A data-parallel replica on its own device and thread, fed one shard per step until the
/// channel closes.
pub(crate) fn run_replica<B: AutodiffBackend, M: Model<B> + AutodiffModule<B>>(
    peer: Peer,
    group: &Group,
    device: B::Device,
    start: ReplicaStart<B, M>,
) -> Result<(), TrainError> {
    let ReplicaStart {
        mut model,
        mut optim,
        mut scaler,
        steps,
    } = start;
    peer.register::<B>(&device, group)?;
    for work in steps {
        let step = replica_step(
            model,
            &mut optim,
            work,
            Some(peer),
            scaler.as_mut(),
            &device,
        );
        model = step?.0;
    }
    // Leaving fails only when the group was already released after a failure elsewhere.
    if let Err(e) = peer.finish::<B>(group) {
        tracing::debug!("{e}");
    }
    Ok(())
}

/// Splits a batch into one prepared shard per device, masked in order with `rng` as the combined
/// batch would be. A device left without molecules (a batch smaller than the device count)
/// repeats the first molecule with weight 0, so it still joins the all-reduce.
pub(crate) fn shard_batch(
    examples: &[&Example],
    devices: usize,
    objective: &Objective,
    vocab: &Vocabulary,
    rng: &mut StdRng,
) -> Vec<Shard> {
    let shards: Vec<(HostBatch, usize, bool)> =
        data_parallel::shard_ranges(examples.len(), devices)
            .into_iter()
            .map(|r| {
                if r.is_empty() {
                    let mut spare = StdRng::seed_from_u64(0);
                    let batch = HostBatch::prepare(&examples[..1], objective, vocab, &mut spare);
                    (batch, 0, true)
                } else {
                    let batch = HostBatch::prepare(&examples[r], objective, vocab, rng);
                    let count = batch.loss_count();
                    (batch, count, false)
                }
            })
            .collect();
    let total: usize = shards.iter().map(|s| s.1).sum();
    shards
        .into_iter()
        .map(|(batch, count, padding)| Shard {
            batch,
            weight: data_parallel::shard_weight(count, total),
            count,
            padding,
        })
        .collect()
}

/// One device's part of a data-parallel batch.
pub(crate) struct Shard {
    pub(crate) batch: HostBatch,
    pub(crate) weight: f32,
    /// Its share of the loss normaliser (0 for padding).
    pub(crate) count: usize,
    /// A stand-in molecule for a device the batch left empty: weight 0, not counted.
    pub(crate) padding: bool,
}

/// Calls the job's [`crate::StallHandler`] when a multi-node run makes no progress for
/// `timeout`: burn-collective has no timeouts, so a node whose peer died (or stopped with an
/// error) would otherwise wait in an all-reduce forever. Stops watching when dropped.
pub(crate) struct Watchdog {
    pub(crate) started: Instant,
    /// Milliseconds since `started` at the last progress.
    pub(crate) last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(crate) done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    pub(crate) fn start(timeout: std::time::Duration, on_stall: crate::StallHandler) -> Self {
        use std::sync::atomic::Ordering;
        let started = Instant::now();
        let last = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stop) = (last.clone(), done.clone());
        let poll = (timeout / 10).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(10),
        );
        std::thread::spawn(move || loop {
            std::thread::sleep(poll);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let idle = started.elapsed().as_millis() as u64 - seen.load(Ordering::Relaxed);
            if idle > timeout.as_millis() as u64 {
                on_stall(std::time::Duration::from_millis(idle));
                return;
            }
        });
        Self {
            started,
            last,
            done,
        }
    }

    /// A step (or a validation) finished: the group is alive.
    pub(crate) fn progress(&self) {
        self.last.store(
            self.started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Releases the data-parallel group when a replica fails or panics while armed: the other
/// replicas may be waiting in an all-reduce for it, and resetting the group makes their
/// all-reduce fail instead of waiting forever.
pub(crate) struct ReleaseGroupOnFailure<B: AutodiffBackend> {
    pub(crate) armed: bool,
    pub(crate) _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ReleaseGroupOnFailure<B> {
    pub(crate) fn armed() -> Self {
        Self {
            armed: true,
            _backend: std::marker::PhantomData,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<B: AutodiffBackend> Drop for ReleaseGroupOnFailure<B> {
    fn drop(&mut self) {
        if self.armed {
            data_parallel::reset::<B>();
        }
    }
}
