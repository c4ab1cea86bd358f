//! `mole bench`: featurisation, inference and training throughput on one device, with model
//! FLOPs per molecule (so MFU can be read off on GPUs) and peak resident memory.
//!
//! Method. Molecules are featurised once; for each batch size they are grouped into
//! length-bucketed batches (as the trainer does) and a measurement of `n` iterations runs `n`
//! batches at evenly spaced quantiles of the padded length, so short measurements see the
//! length mix of the whole set (and warm-up with as many iterations as the timed loop sees
//! exactly its shapes, which matters for autotuning GPU backends).
//! Inference times host→device upload plus `embed` (the CLS embedding) of the inner backend;
//! training times upload, forward of the supervised regression loss, backward, global-norm
//! clipping and an Adam step. Results stay on the device until the end of the timed loop, when
//! one scalar is read back (the sync), so the clock includes every queued kernel.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use clap::Args;
use mole_featurize::{collate, featurize, read_molecules, Batch, MoleInput, Vocabulary};
use mole_model::training::{clip_global_norm, FusedAdam};
use mole_model::{BatchTensors, MolE, MolEConfig, TaskType};
use mole_nn::DebertaConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{compiled_backends, default_device, DeviceSpec};
use crate::commands::bundled_vocab;
use crate::data::length_bucketed_batches;
use crate::settings::model_config;
use crate::with_backend;

const DEFAULT_FIXTURE: &str = "../shared/fixtures/featurize/tdc_featurized.jsonl";
const DEFAULT_DATASET: &str = "datasets/esol.csv";

#[derive(Args)]
pub struct BenchArgs {
    /// Device: cpu, cuda[:N], vulkan[:N], wgpu, metal (default: the first GPU backend compiled
    /// in, else cpu).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// f32, bf16 or f16 (default: bf16 on CUDA, f32 elsewhere); pass the matching --peak-tflops.
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
    /// Model sizes: presets (tiny, small, base) or model TOML files, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tiny,small,base")]
    pub sizes: Vec<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    pub batch_sizes: Vec<usize>,
    /// Molecules: .jsonl with a `smiles` field, or .smi/.txt/.csv/.tsv/.sdf (optionally .gz).
    /// Default: ../shared/fixtures/featurize/tdc_featurized.jsonl if it exists, else
    /// datasets/esol.csv.
    #[arg(long)]
    pub molecules: Option<PathBuf>,
    /// Radius-0 vocabulary JSON (default: the bundled vocabulary).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Untimed iterations before each inference measurement (kernel compilation, autotuning).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed batches per inference measurement.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed optimiser steps before each training measurement (default: --warmup).
    #[arg(long)]
    pub train_warmup: Option<usize>,
    /// Timed optimiser steps per training measurement (default: --iters).
    #[arg(long)]
    pub train_iters: Option<usize>,
    /// Skip the training measurements.
    #[arg(long)]
    pub no_train: bool,
    /// Skip the inference measurements.
    #[arg(long)]
    pub no_inference: bool,
    /// Skip the featurisation measurement.
    #[arg(long)]
    pub no_featurize: bool,
    /// Minimum seconds per featurisation measurement (whole passes over the molecules).
    #[arg(long, default_value_t = 1.0)]
    pub featurize_seconds: f64,
    /// Peak dense TFLOP/s of the device for the --precision used, to report MFU.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seed of the batch order and of dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time whole passes instead of sampled batches, with the protocol of the original's
    /// `bench_ref.py`: molecules stably sorted by token count, cut into consecutive batches (the
    /// last may be smaller), `--warmup` untimed passes, then this many timed passes; throughput
    /// is molecules / median pass time. Used by `cargo xtask compare`.
    #[arg(long)]
    pub passes: Option<usize>,
    /// Use only the first N molecules of the file (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

#[derive(Serialize)]
struct Report {
    mole_version: &'static str,
    device: String,
    backend: String,
    compiled_backends: Vec<&'static str>,
    rayon_threads: usize,
    available_parallelism: usize,
    molecules_file: String,
    molecules: usize,
    rejected: usize,
    mean_atoms: f64,
    warmup: usize,
    iters: usize,
    train_warmup: usize,
    train_iters: usize,
    peak_tflops: Option<f64>,
    featurize: Option<FeaturizeResult>,
    models: Vec<ModelResult>,
    /// Peak resident set of the whole run (host memory), MiB; None where unknown.
    peak_rss_mib: Option<f64>,
}

#[derive(Serialize)]
struct FeaturizeResult {
    molecules: usize,
    single_thread_mol_per_s: f64,
    rayon_threads: usize,
    rayon_mol_per_s: f64,
}

#[derive(Serialize)]
struct ModelResult {
    size: String,
    parameters: usize,
    hidden_size: usize,
    layers: usize,
    heads: usize,
    batch_size: usize,
    /// Padded tokens (CLS + atoms) per sequence, mean over the timed batches.
    mean_padded_seq_len: f64,
    /// Matmul FLOPs of one forward pass per molecule (padded), mean over the timed batches.
    forward_gflop_per_molecule: f64,
    /// Fractions of the forward FLOPs by kind.
    forward_flop_split: FlopSplit,
    inference: Option<Timing>,
    training: Option<Timing>,
    /// Where a training step's time goes (a separate pass that waits for the device between
    /// phases, so the phases do not overlap).
    training_phases: Option<TrainPhases>,
}

/// Mean milliseconds per training step in each phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct TrainPhases {
    /// Host → device: token ids, masks, relative positions, labels.
    upload_ms: f64,
    /// Forward pass and loss (building the autodiff graph).
    forward_ms: f64,
    /// Backward pass and gradient collection.
    backward_ms: f64,
    /// Global gradient norm and scaling.
    clip_ms: f64,
    /// Adam update of every parameter.
    optimizer_ms: f64,
}

#[derive(Serialize)]
struct Timing {
    iters: usize,
    seconds: f64,
    molecules: usize,
    mol_per_s: f64,
    ms_per_batch: f64,
    /// Achieved model TFLOP/s (training counts 3× the forward FLOPs).
    tflops: f64,
    mfu: Option<f64>,
    /// Peak resident set (host) during this measurement, MiB; None where unknown.
    peak_rss_mib: Option<f64>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.iters == 0 || args.train_iters == Some(0) {
        bail!("--iters and --train-iters must be at least 1");
    }
    if args.batch_sizes.contains(&0) {
        bail!("batch sizes must be positive");
    }
    if args.passes == Some(0) {
        bail!("--passes must be at least 1");
    }
    let spec = args.device.unwrap_or_else(default_device);
    let vocab = match &args.vocab {
        Some(p) => Vocabulary::from_json_file(p)?,
        None => bundled_vocab()?,
    };
    let path = match &args.molecules {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_FIXTURE).exists() => PathBuf::from(DEFAULT_FIXTURE),
        None => PathBuf::from(DEFAULT_DATASET),
    };
    let mut smiles = read_smiles_list(&path)?;
    if args.limit > 0 {
        smiles.truncate(args.limit);
    }
    if smiles.is_empty() {
        bail!("{}: no molecules", path.display());
    }
    let featurized: Vec<Option<MoleInput>> = smiles
        .par_iter()
        .map(|s| {
            featurize(s, &vocab)
                .ok()
                .filter(|f| f.num_atoms > 0)
                .map(|f| MoleInput::from_featurized(&f, &vocab))
        })
        .collect();
    let rejected = featurized.iter().filter(|m| m.is_none()).count();
    let inputs: Vec<MoleInput> = featurized.into_iter().flatten().collect();
    if inputs.is_empty() {
        bail!("{}: no molecule could be featurised", path.display());
    }
    let mean_atoms = inputs.iter().map(|m| m.len() - 1).sum::<usize>() as f64 / inputs.len() as f64;

    let train_warmup = args.train_warmup.unwrap_or(args.warmup);
    let train_iters = args.train_iters.unwrap_or(args.iters);
    println!("# mole bench");
    println!();
    println!("- mole {}", env!("CARGO_PKG_VERSION"));
    println!("- device: {spec} (backend: {})", backend_name(spec));
    println!("- compiled backends: {}", compiled_backends().join(", "));
    println!(
        "- threads: rayon {}, available parallelism {}",
        rayon::current_num_threads(),
        available_parallelism()
    );
    println!(
        "- molecules: {} from {} ({} rejected), mean {:.1} heavy atoms",
        inputs.len(),
        path.display(),
        rejected,
        mean_atoms
    );
    match args.passes {
        Some(p) => println!(
            "- whole passes over length-sorted batches: {} warm-up + {p} timed (median)",
            args.warmup
        ),
        None => println!(
            "- iterations: inference {} warm-up + {} timed batches, training {} + {} steps",
            args.warmup, args.iters, train_warmup, train_iters
        ),
    }
    println!();

    let featurize_result =
        (!args.no_featurize).then(|| bench_featurize(&smiles, &vocab, args.featurize_seconds));
    if let Some(f) = &featurize_result {
        println!("## Featurisation (SMILES → tokens + distances)");
        println!();
        println!(
            "| molecules | single thread mol/s | rayon ({} threads) mol/s |",
            f.rayon_threads
        );
        println!("|---:|---:|---:|");
        println!(
            "| {} | {:.0} | {:.0} |",
            f.molecules, f.single_thread_mol_per_s, f.rayon_mol_per_s
        );
        println!();
    }

    let mut configs = Vec::new();
    for size in &args.sizes {
        configs.push((size.clone(), model_config(size, vocab.vocab_size())?));
    }
    let plan = Plan {
        warmup: args.warmup,
        iters: args.iters,
        train_warmup,
        train_iters,
        inference: !args.no_inference,
        training: !args.no_train,
        peak_tflops: args.peak_tflops,
        seed: args.seed,
        compute_dtype: None,
        passes: args.passes,
    };
    let models = with_backend!(spec, args.precision, |B, device, dtype| {
        let plan = Plan {
            compute_dtype: dtype,
            ..plan
        };
        bench_models::<B>(&configs, &args.batch_sizes, &inputs, &plan, &device)
    })?;

    print_model_table(&models, args.peak_tflops);

    let report = Report {
        mole_version: env!("CARGO_PKG_VERSION"),
        device: spec.to_string(),
        backend: backend_name(spec).to_string(),
        compiled_backends: compiled_backends(),
        rayon_threads: rayon::current_num_threads(),
        available_parallelism: available_parallelism(),
        molecules_file: path.display().to_string(),
        molecules: inputs.len(),
        rejected,
        mean_atoms,
        warmup: args.warmup,
        iters: args.iters,
        train_warmup,
        train_iters,
        peak_tflops: args.peak_tflops,
        featurize: featurize_result,
        models,
        peak_rss_mib: read_status_kib("VmHWM:").map(kib_to_mib),
    };
    if let Some(json) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        crate::data::write_atomic(json, (text + "\n").as_bytes())?;
        eprintln!("bench: results → {}", json.display());
    }
    Ok(())
}

fn available_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn backend_name(spec: DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Cpu => "Flex (CPU)",
        DeviceSpec::Cuda(_) => "CUDA (CubeCL, fusion + autotune)",
        DeviceSpec::Wgpu(_) => "wgpu (CubeCL, fusion + autotune)",
        DeviceSpec::Vulkan(_) => "Vulkan (CubeCL, fusion + autotune)",
        DeviceSpec::Metal => "Metal (CubeCL, fusion + autotune)",
    }
}

/// SMILES of a `.jsonl` file (field `smiles`) or of anything `read_molecules` reads.
fn read_smiles_list(path: &Path) -> Result<Vec<String>> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            let s = v["smiles"]
                .as_str()
                .ok_or_else(|| anyhow!("{}:{}: no string field `smiles`", path.display(), i + 1))?;
            out.push(s.to_string());
        }
        Ok(out)
    } else {
        read_molecules(path)?
            .map(|r| r.map(|rec| rec.smiles).map_err(anyhow::Error::from))
            .collect()
    }
}

/// Whole passes over the molecules until `min_seconds` have elapsed (at least one).
fn bench_featurize(smiles: &[String], vocab: &Vocabulary, min_seconds: f64) -> FeaturizeResult {
    let pass_single = || {
        smiles
            .iter()
            .map(|s| featurize(s, vocab).map_or(0, |f| f.num_atoms))
            .sum::<usize>()
    };
    let pass_rayon = || {
        smiles
            .par_iter()
            .map(|s| featurize(s, vocab).map_or(0, |f| f.num_atoms))
            .sum::<usize>()
    };
    let rate = |pass: &dyn Fn() -> usize| {
        std::hint::black_box(pass()); // warm-up
        let start = Instant::now();
        let mut passes = 0usize;
        loop {
            std::hint::black_box(pass());
            passes += 1;
            let s = start.elapsed().as_secs_f64();
            if s >= min_seconds {
                return (passes * smiles.len()) as f64 / s;
            }
        }
    };
    FeaturizeResult {
        molecules: smiles.len(),
        single_thread_mol_per_s: rate(&pass_single),
        rayon_threads: rayon::current_num_threads(),
        rayon_mol_per_s: rate(&pass_rayon),
    }
}

struct Plan {
    warmup: usize,
    iters: usize,
    train_warmup: usize,
    train_iters: usize,
    inference: bool,
    training: bool,
    peak_tflops: Option<f64>,
    seed: u64,
    /// Mixed-precision compute dtype (`None`: f32).
    compute_dtype: Option<burn::tensor::DType>,
    /// Whole timed passes (the reference protocol) instead of sampled batches.
    passes: Option<usize>,
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
struct Schedule<'a> {
    warmup: Vec<&'a HostBatch>,
    timed: Vec<&'a HostBatch>,
    repeats: usize,
}

impl Schedule<'_> {
    fn molecules(&self) -> usize {
        self.timed.iter().map(|h| h.batch.batch_size).sum()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
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
fn reference_batches(inputs: &[MoleInput], batch_size: usize) -> Vec<HostBatch> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| inputs[i].len());
    order
        .chunks(batch_size)
        .map(|idx| host_batch(inputs, idx))
        .collect()
}

fn host_batch(inputs: &[MoleInput], idx: &[usize]) -> HostBatch {
    let refs: Vec<&MoleInput> = idx.iter().map(|&i| &inputs[i]).collect();
    // Any finite target works for timing; this one depends on the molecule.
    let labels = refs.iter().map(|m| 0.1 * m.len() as f32).collect();
    HostBatch {
        batch: collate(&refs),
        labels,
    }
}

/// One prepared batch: host tensors and regression labels.
struct HostBatch {
    batch: Batch,
    labels: Vec<f32>,
}

/// Every full length-bucketed batch (as the trainer builds them), sorted by padded length; one
/// batch that cycles through the molecules when there are fewer than `batch_size`.
fn prepare_batches(inputs: &[MoleInput], batch_size: usize, seed: u64) -> Vec<HostBatch> {
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
fn pick(all: &[HostBatch], n: usize) -> Vec<&HostBatch> {
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

fn bench_models<B: AutodiffBackend>(
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
fn timing(schedule: &Schedule<'_>, seconds: f64, flops_per_mol: f64, peak: Option<f64>) -> Timing {
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

fn accumulate<B: Backend>(acc: Option<Tensor<B, 1>>, x: Tensor<B, 1>) -> Option<Tensor<B, 1>> {
    Some(match acc {
        Some(a) => a + x,
        None => x,
    })
}

/// Reads one scalar back: waits for every queued kernel the value depends on.
fn sync<B: Backend>(acc: Option<Tensor<B, 1>>) -> f32 {
    acc.map_or(0.0, |t| t.into_scalar().elem::<f32>())
}

/// Median seconds of the schedule's timed batches of upload + `embed`, after its warm-up.
fn time_inference<I: Backend>(model: &MolE<I>, schedule: &Schedule<'_>, device: &I::Device) -> f64 {
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
fn time_training<B: AutodiffBackend>(
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
    // The trainer's optimiser: Adam (β 0.9/0.999, ε 1e-6), fused on the CPU.
    let mut optim = FusedAdam::new(0.9, 0.999, 1e-6).init::<B, MolE<B>>();
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
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let grads = clip_global_norm(&model, grads, 1.0);
            model = optim.step(1e-4, model, grads);
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
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        lap(&mut phases.backward_ms, &mut t);
        let grads = clip_global_norm(&model, grads, 1.0);
        lap(&mut phases.clip_ms, &mut t);
        model = optim.step(1e-4, model, grads);
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

/// Forward matmul FLOPs per molecule by kind (see [`forward_flop_split`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FlopSplit {
    /// Q/K/V/O projections of the tokens.
    pub projections: f64,
    pub feed_forward: f64,
    /// Content scores q·kᵀ and the context probs·v.
    pub content_attention: f64,
    /// c2p and p2c: q·K_rᵀ and k·Q_rᵀ against the whole relative table.
    pub relative_attention: f64,
    /// Key/query projections of the relative table (once per batch, shared by its molecules).
    pub relative_table: f64,
    /// The supervised head on the CLS state.
    pub head: f64,
}

impl FlopSplit {
    pub fn total(&self) -> f64 {
        self.projections
            + self.feed_forward
            + self.content_attention
            + self.relative_attention
            + self.relative_table
            + self.head
    }

    fn add_scaled(self, o: FlopSplit, k: f64) -> FlopSplit {
        FlopSplit {
            projections: self.projections + k * o.projections,
            feed_forward: self.feed_forward + k * o.feed_forward,
            content_attention: self.content_attention + k * o.content_attention,
            relative_attention: self.relative_attention + k * o.relative_attention,
            relative_table: self.relative_table + k * o.relative_table,
            head: self.head + k * o.head,
        }
    }
}

/// Matmul FLOPs (2 per multiply-add) of one forward pass, per molecule, for a batch of
/// `batch` molecules padded to `seq` tokens, with a head of `outputs` outputs. Per layer and
/// molecule: Q/K/V/O projections `4·2·n·h·a`, feed-forward `2·2·n·h·f`, content scores and
/// context `2·2·n²·a`, c2p/p2c `2·n·R·a` each (q·K_rᵀ against the `R` table rows the batch
/// uses: its largest relative position + 1, at most the whole table); per layer and batch: the
/// table's key/query projections `2·R·h·a` each. Head: `2·h·h + 2·h·out`.
/// Element-wise work (softmax, LayerNorm, GELU, gathers) is not counted.
pub fn forward_flop_split(
    cfg: &DebertaConfig,
    seq: usize,
    batch: usize,
    outputs: usize,
    rows_used: usize,
) -> FlopSplit {
    let n = seq as f64;
    let h = cfg.hidden_size as f64;
    let a = cfg.all_head_size() as f64;
    let f = cfg.intermediate_size as f64;
    let r = rows_used.clamp(1, cfg.relative_table_size()) as f64;
    let l = cfg.num_hidden_layers as f64;
    let pos_terms = f64::from(u8::from(cfg.uses_c2p()) + u8::from(cfg.uses_p2c()));
    FlopSplit {
        projections: l * 8.0 * n * h * a,
        feed_forward: l * 4.0 * n * h * f,
        content_attention: l * 4.0 * n * n * a,
        relative_attention: l * pos_terms * 2.0 * n * r * a,
        relative_table: l * pos_terms * 2.0 * r * h * a / batch.max(1) as f64,
        head: 2.0 * h * h + 2.0 * h * outputs as f64,
    }
}

/// Relative-table rows the encoder uses for `batch` (see `EncoderRequest::relative_rows`).
fn table_rows(batch: &mole_featurize::Batch) -> usize {
    batch.relative_pos.iter().copied().max().unwrap_or(0).max(0) as usize + 1
}

fn print_model_table(models: &[ModelResult], peak: Option<f64>) {
    println!("## Model throughput (molecules per second)");
    println!();
    let mfu = peak.is_some();
    print!(
        "| model | params | batch | padded len | fwd GFLOP/mol | inference mol/s | ms/batch | \
         training mol/s | ms/step | inference TFLOP/s | training TFLOP/s |"
    );
    if mfu {
        print!(" MFU inference | MFU training |");
    }
    println!(" peak RSS MiB (inf / train) |");
    print!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if mfu {
        print!("---:|---:|");
    }
    println!("---:|");
    let opt =
        |t: &Option<Timing>, f: &dyn Fn(&Timing) -> String| t.as_ref().map_or("–".to_string(), f);
    for m in models {
        print!(
            "| {} | {:.2} M | {} | {:.1} | {:.3} | {} | {} | {} | {} | {} | {} |",
            m.size,
            m.parameters as f64 / 1e6,
            m.batch_size,
            m.mean_padded_seq_len,
            m.forward_gflop_per_molecule,
            opt(&m.inference, &|t| format!("{:.1}", t.mol_per_s)),
            opt(&m.inference, &|t| format!("{:.1}", t.ms_per_batch)),
            opt(&m.training, &|t| format!("{:.1}", t.mol_per_s)),
            opt(&m.training, &|t| format!("{:.1}", t.ms_per_batch)),
            opt(&m.inference, &|t| format!("{:.3}", t.tflops)),
            opt(&m.training, &|t| format!("{:.3}", t.tflops)),
        );
        if mfu {
            let pct = |t: &Timing| t.mfu.map_or("n/a".into(), |v| format!("{:.1}%", 100.0 * v));
            print!(
                " {} | {} |",
                opt(&m.inference, &pct),
                opt(&m.training, &pct)
            );
        }
        let rss = |t: &Timing| t.peak_rss_mib.map_or("n/a".into(), |v| format!("{v:.0}"));
        println!(
            " {} / {} |",
            opt(&m.inference, &rss),
            opt(&m.training, &rss)
        );
    }
    println!();
    println!(
        "FLOPs: matmuls only, padded tokens, training = 3 × forward; MFU = achieved / --peak-tflops. \
         Peak RSS is host memory (VmHWM, reset before each measurement), not GPU memory."
    );
    let phased: Vec<_> = models
        .iter()
        .filter_map(|m| m.training_phases.map(|p| (m, p)))
        .collect();
    if !phased.is_empty() {
        println!();
        println!("Training step by phase, ms (device synchronised between phases):");
        println!();
        println!("| model | batch | upload | forward | backward | clip | Adam |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (m, p) in phased {
            println!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                m.size,
                m.batch_size,
                p.upload_ms,
                p.forward_ms,
                p.backward_ms,
                p.clip_ms,
                p.optimizer_ms
            );
        }
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of /proc/self/status (Linux); None elsewhere.
fn read_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resets the peak resident set (VmHWM) to the current one (Linux ≥ 4.0; ignored elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_of_base_are_plausible() {
        let cfg = DebertaConfig::base(200);
        // ~85 M parameters, 26 tokens: about 2 · 85e6 · 26 ≈ 4.4 GFLOP plus attention.
        let g = forward_flop_split(&cfg, 26, 32, 1, 128).total() / 1e9;
        assert!((4.0..6.0).contains(&g), "{g}");
        // Larger batches share the relative-table projections.
        assert!(
            forward_flop_split(&cfg, 26, 64, 1, 128).total()
                < forward_flop_split(&cfg, 26, 32, 1, 128).total()
        );
    }
}
