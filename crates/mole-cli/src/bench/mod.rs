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
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use clap::Args;
use mole_featurize::{collate, featurize, read_molecules, Batch, MoleInput, Vocabulary};
use mole_model::{BatchTensors, MolE, MolEConfig, TaskType};
use mole_nn::DebertaConfig;
use mole_train::Optimizer;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{compiled_backends, default_device, DeviceSpec};
use crate::commands::bundled_vocab;
use crate::data::length_bucketed_batches;
use crate::settings::model_config;
use crate::with_backend;

mod flops;
mod output;
mod timing;

use flops::table_rows;
pub use flops::{forward_flop_split, FlopSplit};
use output::*;
use timing::*;

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
