//! The timed loops: batches at evenly spaced length quantiles, warm-up, inference and
//! training steps, one read-back per measurement.

use super::*;

pub(super) struct Plan {
    pub(super) warmup: usize,
    pub(super) iters: usize,
    pub(super) train_warmup: usize,
    pub(super) train_iters: usize,
    pub(super) inference: bool,
    pub(super) training: bool,
    pub(super) peak_tflops: Option<f64>,
    pub(super) seed: u64,
    /// Mixed-precision compute dtype (`None`: f32).
    pub(super) compute_dtype: Option<burn::tensor::DType>,
    /// Whole timed passes (the reference protocol) instead of sampled batches.
    pub(super) passes: Option<usize>,
}

impl Plan {
    /// `(warm-up batches, timed batches, timed repetitions)` for inference or training.
    fn schedule<'a>(&self, all: &'a [HostBatch], training: bool) -> Schedule<'a> {
        match self.passes {
            Some(passes) => Schedule {
                warmup: (0..self.warmup).flat_map(|_| all.iter()).collect(),
                timed: all.iter().collect(),
                repeats: passes,
            },
            None => {
                let (warmup, iters) = if training {
                    (self.train_warmup, self.train_iters)
                } else {
                    (self.warmup, self.iters)
                };
                Schedule {
                    warmup: pick(all, warmup),
                    timed: pick(all, iters),
                    repeats: 1,
                }
            }
        }
    }
}

/// Which batches a measurement runs: untimed first, then `timed` `repeats` times (the median
/// repetition counts).
pub(super) struct Schedule<'a> {
    pub(super) warmup: Vec<&'a HostBatch>,
    pub(super) timed: Vec<&'a HostBatch>,
    pub(super) repeats: usize,
}

impl Schedule<'_> {
    fn molecules(&self) -> usize {
        self.timed.iter().map(|h| h.batch.batch_size).sum()
    }
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// The original's batches (`bench_ref.py`): molecules stably sorted by token count, cut into
/// consecutive chunks of `batch_size`, the last one possibly smaller.
pub(super) fn reference_batches(inputs: &[MoleInput], batch_size: usize) -> Vec<HostBatch> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| inputs[i].len());
    order
        .chunks(batch_size)
        .map(|idx| host_batch(inputs, idx))
        .collect()
}

pub(super) fn host_batch(inputs: &[MoleInput], idx: &[usize]) -> HostBatch {
    let refs: Vec<&MoleInput> = idx.iter().map(|&i| &inputs[i]).collect();
    // Any finite target works for timing; this one depends on the molecule.
    let labels = refs.iter().map(|m| 0.1 * m.len() as f32).collect();
    HostBatch {
        batch: collate(&refs),
        labels,
    }
}

/// One prepared batch: host tensors and regression labels.
pub(super) struct HostBatch {
    pub(super) batch: Batch,
    pub(super) labels: Vec<f32>,
}

/// Every full length-bucketed batch (as the trainer builds them), sorted by padded length; one
/// batch that cycles through the molecules when there are fewer than `batch_size`.
pub(super) fn prepare_batches(
    inputs: &[MoleInput],
    batch_size: usize,
    seed: u64,
) -> Vec<HostBatch> {
    let lengths: Vec<usize> = inputs.iter().map(MoleInput::len).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batches: Vec<Vec<usize>> = length_bucketed_batches(&lengths, batch_size, &mut rng)
        .into_iter()
        .filter(|b| b.len() == batch_size)
        .collect();
    if batches.is_empty() {
        batches.push((0..batch_size).map(|i| i % inputs.len()).collect());
    }
    let mut prepared: Vec<HostBatch> = batches
        .into_iter()
        .map(|idx| host_batch(inputs, &idx))
        .collect();
    prepared.sort_by_key(|b| b.batch.seq_len);
    prepared
}

/// `n` batches at evenly spaced quantiles of the padded length (repeating when `n` exceeds the
/// batches), so a short measurement sees the same length mix as the whole set.
pub(super) fn pick(all: &[HostBatch], n: usize) -> Vec<&HostBatch> {
    (0..n)
        .map(|k| {
            let idx = if n >= all.len() {
                k % all.len()
            } else {
                ((2 * k + 1) * all.len()) / (2 * n)
            };
            &all[idx.min(all.len() - 1)]
        })
        .collect()
}

pub(super) fn bench_models<B: AutodiffBackend>(
    configs: &[(String, DebertaConfig)],
    batch_sizes: &[usize],
    inputs: &[MoleInput],
    plan: &Plan,
    device: &B::Device,
) -> Result<Vec<ModelResult>> {
    let mut results = Vec::new();
    for (size, encoder) in configs {
        let config = MolEConfig::supervised(encoder.clone(), TaskType::Regression, 1);
        for &bs in batch_sizes {
            let batches = match plan.passes {
                Some(_) => reference_batches(inputs, bs),
                None => prepare_batches(inputs, bs, plan.seed),
            };
            let infer_schedule = plan.schedule(&batches, false);
            let train_schedule = plan.schedule(&batches, true);
            // (mean padded length, forward FLOPs per molecule) over the timed batches,
            // weighted by their molecules.
            let stats = |schedule: &Schedule<'_>| {
                let (seq, split, mols) = schedule.timed.iter().map(|h| &h.batch).fold(
                    (0.0, FlopSplit::default(), 0usize),
                    |(s, f, m), b| {
                        let n = b.batch_size;
                        (
                            s + (b.seq_len * n) as f64,
                            f.add_scaled(
                                forward_flop_split(encoder, b.seq_len, n, 1, table_rows(b)),
                                n as f64,
                            ),
                            m + n,
                        )
                    },
                );
                let k = 1.0 / mols.max(1) as f64;
                (seq * k, FlopSplit::default().add_scaled(split, k))
            };
            let (mean_seq, split) = stats(if plan.inference {
                &infer_schedule
            } else {
                &train_schedule
            });
            let fwd_flops = split.total();
            eprintln!(
                "bench: {size} batch {bs}: {} layers × {} hidden, padded length {mean_seq:.1}",
                encoder.num_hidden_layers, encoder.hidden_size
            );

            let mut result = ModelResult {
                size: size.clone(),
                parameters: 0,
                hidden_size: encoder.hidden_size,
                layers: encoder.num_hidden_layers,
                heads: encoder.num_attention_heads,
                batch_size: bs,
                mean_padded_seq_len: mean_seq,
                forward_gflop_per_molecule: fwd_flops / 1e9,
                forward_flop_split: FlopSplit::default().add_scaled(split, 1.0 / fwd_flops),
                inference: None,
                training: None,
                training_phases: None,
            };
            if plan.inference {
                let model: MolE<B::InnerBackend> =
                    MolE::new(&config, device).with_compute_dtype(plan.compute_dtype);
                result.parameters = model.num_params();
                let seconds = time_inference(&model, &infer_schedule, device);
                result.inference = Some(timing(
                    &infer_schedule,
                    seconds,
                    fwd_flops,
                    plan.peak_tflops,
                ));
            }
            if plan.training {
                let (seconds, phases) = time_training::<B>(
                    &config,
                    &train_schedule,
                    plan.seed,
                    plan.compute_dtype,
                    device,
                    &mut result.parameters,
                );
                let train_flops = stats(&train_schedule).1.total();
                result.training = Some(timing(
                    &train_schedule,
                    seconds,
                    3.0 * train_flops,
                    plan.peak_tflops,
                ));
                result.training_phases = Some(phases);
            }
            results.push(result);
        }
    }
    Ok(results)
}

/// `seconds`: one (median) repetition of the schedule's timed batches.
pub(super) fn timing(
    schedule: &Schedule<'_>,
    seconds: f64,
    flops_per_mol: f64,
    peak: Option<f64>,
) -> Timing {
    let iters = schedule.timed.len();
    let molecules = schedule.molecules();
    let mol_per_s = molecules as f64 / seconds;
    let tflops = flops_per_mol * mol_per_s / 1e12;
    Timing {
        iters,
        seconds,
        molecules,
        mol_per_s,
        ms_per_batch: 1e3 * seconds / iters as f64,
        tflops,
        mfu: peak.filter(|p| *p > 0.0).map(|p| tflops / p),
        peak_rss_mib: read_status_kib("VmHWM:").map(kib_to_mib),
    }
}

pub(super) fn accumulate<B: Backend>(
    acc: Option<Tensor<B, 1>>,
    x: Tensor<B, 1>,
) -> Option<Tensor<B, 1>> {
    Some(match acc {
        Some(a) => a + x,
        None => x,
    })
}

/// Reads one scalar back: waits for every queued kernel the value depends on.
pub(super) fn sync<B: Backend>(acc: Option<Tensor<B, 1>>) -> f32 {
    acc.map_or(0.0, |t| t.into_scalar().elem::<f32>())
}

/// Median seconds of the schedule's timed batches of upload + `embed`, after its warm-up.
pub(super) fn time_inference<I: Backend>(
    model: &MolE<I>,
    schedule: &Schedule<'_>,
    device: &I::Device,
) -> f64 {
    let run = |batches: &[&HostBatch]| {
        let mut acc = None;
        for host in batches {
            let batch = BatchTensors::<I>::from_batch(&host.batch, device);
            acc = accumulate(acc, model.embed(&batch).sum());
        }
        sync(acc)
    };
    std::hint::black_box(run(&schedule.warmup));
    reset_peak_rss();
    let times = (0..schedule.repeats)
        .map(|_| {
            let start = Instant::now();
            let check = run(&schedule.timed);
            let seconds = start.elapsed().as_secs_f64();
            std::hint::black_box(check);
            seconds
        })
        .collect();
    median(times)
}

/// Median seconds of the schedule's timed optimiser steps (upload, forward, backward, clipping,
/// Adam), after its warm-up; a fresh model and optimiser per measurement, trained on through the
/// repetitions. Then the timed steps once more with the device synchronised between phases, for
/// the per-phase split.
pub(super) fn time_training<B: AutodiffBackend>(
    config: &MolEConfig,
    schedule: &Schedule<'_>,
    seed: u64,
    compute_dtype: Option<burn::tensor::DType>,
    device: &B::Device,
    parameters: &mut usize,
) -> (f64, TrainPhases) {
    B::seed(device, seed);
    let mut model: MolE<B> = MolE::new(config, device).with_compute_dtype(compute_dtype);
    *parameters = model.num_params();
    // The trainer's optimiser (`mole_train::Optimizer`): Adam (β 0.9/0.999, ε 1e-6), fused on
    // the CPU, after clipping at global norm 1.
    let mut optim = Optimizer::<B>::adam(0.9, 0.999, 1e-6, 1.0);
    let mut run = |model: MolE<B>, batches: &[&HostBatch]| {
        let mut model = model;
        let mut acc = None;
        for host in batches {
            let batch = BatchTensors::<B>::from_batch(&host.batch, device);
            let bs = host.batch.batch_size;
            let labels =
                Tensor::<B, 2>::from_data(TensorData::new(host.labels.clone(), [bs, 1]), device);
            let loss = model
                .forward_supervised(&batch, Some(labels), None)
                .loss
                .expect("labels were given")
                .loss;
            acc = accumulate(acc, loss.clone().inner());
            model = optim.step(model, loss, 1e-4);
        }
        (model, sync(acc))
    };
    let (warm, _) = run(model, &schedule.warmup);
    model = warm;
    reset_peak_rss();
    let mut times = Vec::with_capacity(schedule.repeats);
    for _ in 0..schedule.repeats {
        let start = Instant::now();
        let (trained, check) = run(model, &schedule.timed);
        times.push(start.elapsed().as_secs_f64());
        std::hint::black_box(check);
        model = trained;
    }
    let seconds = median(times);
    let timed = &schedule.timed;

    let mut phases = TrainPhases::default();
    let lap = |slot: &mut f64, since: &mut Instant| {
        let _ = B::sync(device);
        *slot += since.elapsed().as_secs_f64() * 1e3;
        *since = Instant::now();
    };
    for host in timed {
        let _ = B::sync(device);
        let mut t = Instant::now();
        let batch = BatchTensors::<B>::from_batch(&host.batch, device);
        let bs = host.batch.batch_size;
        let labels =
            Tensor::<B, 2>::from_data(TensorData::new(host.labels.clone(), [bs, 1]), device);
        lap(&mut phases.upload_ms, &mut t);
        let loss = model
            .forward_supervised(&batch, Some(labels), None)
            .loss
            .expect("labels were given")
            .loss;
        lap(&mut phases.forward_ms, &mut t);
        let grads = Optimizer::gradients(loss, &model);
        lap(&mut phases.backward_ms, &mut t);
        let grads = optim.clip(&model, grads);
        lap(&mut phases.clip_ms, &mut t);
        model = optim.update(model, grads, 1e-4);
        lap(&mut phases.optimizer_ms, &mut t);
    }
    let n = timed.len().max(1) as f64;
    for v in [
        &mut phases.upload_ms,
        &mut phases.forward_ms,
        &mut phases.backward_ms,
        &mut phases.clip_ms,
        &mut phases.optimizer_ms,
    ] {
        *v /= n;
    }
    (seconds, phases)
}
