//! Data-parallel steps: a batch's shards, one replica thread per extra device, the
//! lockstep gradient all-reduce, and what keeps a failed node or replica from leaving the
//! others waiting.

use super::*;

/// One replica's share of a training step.
pub(super) struct StepWork {
    pub(super) batch: HostBatch,
    /// Weight of this shard's mean loss (its share of the combined batch's normaliser).
    pub(super) weight: f32,
    pub(super) lr: f64,
    /// Seed of the device's dropout RNG for this step.
    pub(super) seed: u64,
    /// A stand-in shard (see [`Shard::padding`]): it adds nothing to the logged accuracy.
    pub(super) padding: bool,
    /// What every node must agree on when the group spans several machines (checked in the
    /// step's statistics all-reduce, before the optimiser step).
    pub(super) lockstep: Option<Lockstep>,
}

/// The values every node of a multi-node group must share at a step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lockstep {
    /// A node resumed from another checkpoint than the others must not mix its gradients in.
    pub(super) step: usize,
    /// Shards are assigned as if every node had this many devices.
    pub(super) local_devices: usize,
}

/// What a step leaves for logging, on the device (the combined batch's values when data-parallel).
pub(super) struct StepStats<B: Backend> {
    pub(super) loss: Tensor<B, 1>,
    pub(super) correct: Option<Tensor<B, 1>>,
}

/// One optimiser step of one replica: forward and backward on its shard; when data-parallel,
/// gradients (and the logged loss and accuracy) summed across replicas by Burn's collective
/// all-reduce; then global-norm clipping and Adam, identical on every replica.
///
/// With a loss scaler (f16), the loss is scaled before the backward pass and the gradients
/// unscaled after the all-reduce; a step with overflowing gradients leaves the model unchanged.
pub(super) fn replica_step<B: AutodiffBackend>(
    model: MolE<B>,
    optim: &mut AdamOptimizer<B>,
    work: StepWork,
    grad_clip: f64,
    peer: Option<Peer>,
    scaler: Option<&mut LossScaler>,
    device: &B::Device,
) -> Result<(MolE<B>, StepStats<B::InnerBackend>)> {
    B::seed(device, work.seed);
    let out = work.batch.loss(&model, device);
    let loss = match peer {
        Some(_) => out.loss.mul_scalar(work.weight),
        None => out.loss,
    };
    let scaled = match &scaler {
        Some(s) => loss.clone().mul_scalar(s.scale),
        None => loss.clone(),
    };
    let mut grads = GradientsParams::from_grads(scaled.backward(), &model);
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
            .map_err(anyhow::Error::from)
            .map_err(|e| match work.lockstep {
                Some(_) => e.context(
                    "another node has failed or stopped (see its log); restart the group with \
                     --resume",
                ),
                None => e,
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
                    bail!(
                        "the nodes have different numbers of devices (this one {}): every node \
                         must run with the same --devices count",
                        check.local_devices
                    );
                }
                if !agreeing[0] {
                    bail!(
                        "the nodes are not at the same step (this one is at step {}): they \
                         resumed from different checkpoints. Resume every node from the same \
                         one (copy node 0's <run>/resume to the others)",
                        check.step
                    );
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
    // train.grad_clip = 0 turns clipping off (settings refuse negative norms)
    let grads = if grad_clip > 0.0 {
        clip_global_norm(&model, grads, grad_clip)
    } else {
        grads
    };
    Ok((optim.step(work.lr, model, grads), stats))
}

/// A data-parallel replica on its own device and thread, fed one shard per step until the
/// channel closes.
pub(super) fn run_replica<B: AutodiffBackend>(
    peer: Peer,
    group: &Group,
    device: B::Device,
    start: ReplicaStart<B>,
    grad_clip: f64,
) -> Result<()> {
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
            grad_clip,
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
pub(super) fn shard_batch(
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
pub(super) struct Shard {
    pub(super) batch: HostBatch,
    pub(super) weight: f32,
    /// Its share of the loss normaliser (0 for padding).
    pub(super) count: usize,
    /// A stand-in molecule for a device the batch left empty: weight 0, not counted.
    pub(super) padding: bool,
}

/// Ends the process when a multi-node run makes no progress for `timeout`: burn-collective
/// has no timeouts, so a node whose peer died (or stopped with an error) would otherwise wait
/// in an all-reduce forever. Stops watching when dropped.
pub(super) struct Watchdog {
    pub(super) started: Instant,
    /// Milliseconds since `started` at the last progress.
    pub(super) last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(super) done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    pub(super) fn start(timeout: std::time::Duration) -> Self {
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
                eprintln!(
                    "error: no training progress for {} s: another node has failed or stopped \
                     (see its log). Ending this node; restart the group with --resume",
                    idle / 1000
                );
                std::process::exit(1);
            }
        });
        Self {
            started,
            last,
            done,
        }
    }

    /// A step (or a validation) finished: the group is alive.
    pub(super) fn progress(&self) {
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
pub(super) struct ReleaseGroupOnFailure<B: AutodiffBackend> {
    pub(super) armed: bool,
    pub(super) _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ReleaseGroupOnFailure<B> {
    pub(super) fn armed() -> Self {
        Self {
            armed: true,
            _backend: std::marker::PhantomData,
        }
    }

    pub(super) fn disarm(mut self) {
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
