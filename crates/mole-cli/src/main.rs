//! `mole`: featurise molecules, pretrain, fine-tune, evaluate, predict and embed with MolE.

mod backend;
mod bench;
mod commands;
mod data;
mod parquet_out;
mod report;
mod settings;
mod split;
mod tdc;
mod trainer;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::backend::DeviceSpec;

#[derive(Parser)]
#[command(
    name = "mole",
    version,
    about = "MolE molecular foundation model: featurize, pretrain, fine-tune, evaluate, predict, embed",
    long_about = "MolE in pure Rust on Burn.\n\nTypical path: `mole pretrain` (self-supervised, \
                  bundled corpus) → `mole finetune --checkpoint runs/pretrain/best.safetensors \
                  --data datasets/esol.csv` → `mole predict` / `mole embed`.\n\nLogs go to stderr \
                  (set RUST_LOG=debug for more); every training run writes config.toml, \
                  metrics.jsonl and checkpoints to its run directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--split`: how rows are divided into train/valid/test (clap's side of
/// [`SplitMethod`](mole_featurize::split::SplitMethod), which has no clap dependency).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SplitArg {
    Random,
    Scaffold,
}

impl From<SplitArg> for mole_featurize::split::SplitMethod {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Random => Self::Random,
            SplitArg::Scaffold => Self::Scaffold,
        }
    }
}

/// A checkpoint argument: a file, or the name of a model bundled with mole
/// (`mole_model::zoo`), unpacked to its cache file.
pub fn checkpoint_arg(text: &str) -> Result<std::path::PathBuf, String> {
    mole_model::zoo::resolve_checkpoint(std::path::Path::new(text)).map_err(|e| e.to_string())
}

/// Parses a count that must be at least 1 (batch sizes, epochs, seeds, passes): 0 would run
/// nothing or divide by zero, so it is refused when the command line is read.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Options shared by the training commands.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Run configuration (TOML). Defaults to the bundled configs/<stage>.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config field: --set section.field=value (repeatable), e.g. --set train.lr=1e-4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run directory for config.toml, metrics.jsonl and checkpoints.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Training data (overrides data.train).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model size preset (tiny, small, base) or model TOML (overrides `model`).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Random seed: data order, masking, dropout and splits are reproducible from it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How the data is split into train/valid/test when it has no split column: random, or
    /// scaffold (whole Bemis–Murcko scaffold groups per part, TDC's scaffold split; overrides
    /// data.split_method).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Device: cpu, cuda[:N], vulkan[:N], wgpu, metal (among the compiled backends).
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<DeviceSpec>,
    /// Data-parallel training over several devices of one backend, e.g. cuda:0,cuda:1: each
    /// batch is split across them and gradients are summed with Burn's collective all-reduce
    /// (the step equals one step on the whole batch; --batch-size is the combined batch).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub devices: Vec<DeviceSpec>,
    /// Data-parallel training across machines: the number of nodes, one `mole` process per
    /// node, each started with the same command apart from --node-rank (see the README's
    /// "Pretraining on several machines"). --batch-size stays the combined batch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes: u32,
    /// This node's rank, 0..nodes (e.g. $SLURM_NODEID). Node 0 serves the orchestrator and
    /// writes the run directory; node K writes its copy to <out>/node-K.
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// With --nodes: HOST:PORT of node 0, where the orchestrator listens (port default 29500).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub master_addr: Option<String>,
    /// With --nodes: HOST[:PORT] at which the other nodes reach this one (default: this
    /// machine's hostname, port = the orchestrator's port + 1 + rank).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub node_addr: Option<String>,
    /// With --nodes: seconds without a finished step after which a node gives up (another
    /// node has failed or stopped; without a limit the group would wait forever).
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_timeout: u64,
    /// Compute precision on GPU backends: f32, bf16, f16 (default: bf16 on CUDA, f32 elsewhere);
    /// softmax and losses stay in f32, checkpoints are stored in f32.
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
    /// Continue from the run directory's last resumable checkpoint (the configuration must be
    /// the run's; only its length and logging may change).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace the run the --out directory already holds (without it, such a run is refused).
    #[arg(long)]
    pub force: bool,
    /// Testing aid: stop with an error after N steps, as if killed.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

impl TrainArgs {
    /// Whether the model was chosen on the command line (`--model` or `--set model=`).
    pub fn model_chosen(&self) -> bool {
        self.model.is_some()
            || self
                .overrides
                .iter()
                .any(|o| o.trim_start().starts_with("model="))
    }

    /// The flags as `--set` overrides, applied after the explicit ones.
    pub fn all_overrides(&self) -> Vec<String> {
        let mut o = self.overrides.clone();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                o.push(format!("{k}={v}"));
            }
        };
        push(
            "data.train",
            self.data
                .as_ref()
                .map(|p| format!("{:?}", p.display().to_string())),
        );
        push("model", self.model.as_ref().map(|m| format!("{m:?}")));
        push("train.epochs", self.epochs.map(|v| v.to_string()));
        push("train.max_steps", self.max_steps.map(|v| v.to_string()));
        push("train.batch_size", self.batch_size.map(|v| v.to_string()));
        push("train.lr", self.lr.map(|v| format!("{v:e}")));
        push("train.seed", self.seed.map(|v| v.to_string()));
        push(
            "data.split_method",
            self.split
                .map(|m| format!("{:?}", mole_featurize::split::SplitMethod::from(m).as_str())),
        );
        o
    }
}

#[derive(Subcommand)]
enum Command {
    /// Featurize molecules: Morgan atom environments (radius 0-2), tokens, distances → JSON Lines.
    Featurize(commands::FeaturizeArgs),
    /// Build or inspect vocabularies.
    #[command(subcommand)]
    Vocab(commands::VocabCommand),
    /// Pretrain: stage 1 masked atom-environment prediction (default), or stage 2 supervised multitask.
    Pretrain(commands::PretrainArgs),
    /// Fine-tune on a labelled property set (regression or classification).
    Finetune(commands::FinetuneArgs),
    /// Compute metrics of a checkpoint on a labelled file.
    Evaluate(commands::EvaluateArgs),
    /// Predict properties for a molecule file (SMILES, table or SD file); writes CSV or parquet,
    /// streaming in bounded memory.
    Predict(commands::PredictArgs),
    /// Write CLS embeddings of molecules to .npy, .csv or .parquet.
    Embed(commands::EmbedArgs),
    /// Benchmark fine-tuning: for each seed, split → fine-tune → test metric; mean ± std
    /// (`--protocol tdc`: TDC's ADMET protocol, a fixed scaffold test set and 5 seeds).
    Benchmark(commands::BenchmarkArgs),
    /// Split a table into train/valid/test (random or scaffold) and write it back with `split`
    /// and `scaffold` columns.
    Split(split::SplitArgs),
    /// Import weights of the original PyTorch MolE (safetensors) into a mole checkpoint.
    Import(commands::ImportArgs),
    /// Export a mole checkpoint: safetensors with the original PyTorch parameter names, or
    /// (`--format mole --encoder-only`) the encoder alone as a mole checkpoint.
    Export(commands::ExportArgs),
    /// Check numerical parity with the original PyTorch MolE on its recorded fixtures, on a device.
    Parity(commands::ParityArgs),
    /// Show the compiled backends, the devices found and the bundled pretrained models.
    Info,
    /// Measure featurisation, inference and training throughput (mol/s, FLOPs, MFU, memory).
    Bench(bench::BenchArgs),
    /// Plots (SVG) and a one-page report.html of a run directory; training runs write them
    /// when they finish.
    Report(report::ReportArgs),
}

fn main() {
    backend::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // burn's collective logs every tensor transfer of a multi-node run at info
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,burn_collective=warn,burn_communication=warn",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        // colour codes only on a terminal: logs piped to a file or a scheduler stay plain text
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Featurize(a) => commands::featurize(a),
        Command::Vocab(c) => commands::vocab(c),
        Command::Pretrain(a) => commands::pretrain(a),
        Command::Finetune(a) => commands::finetune(a).map(|_| ()),
        Command::Evaluate(a) => commands::evaluate(a),
        Command::Predict(a) => commands::predict(a),
        Command::Embed(a) => commands::embed(a),
        Command::Benchmark(a) => commands::benchmark(a),
        Command::Split(a) => split::split(a),
        Command::Import(a) => commands::import(a),
        Command::Export(a) => commands::export(a),
        Command::Parity(a) => commands::parity(a),
        Command::Info => commands::info(),
        Command::Bench(a) => bench::bench(a),
        Command::Report(a) => report::report(a),
    }
}
