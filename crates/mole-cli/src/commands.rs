//! The subcommands.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use clap::{Args, Subcommand, ValueEnum};
use mole_featurize::{
    collate, featurize_with_limit, read_molecules, IoError, MoleInput, MoleculeRecord, Vocabulary,
};
use mole_metrics::TaskKind;
use mole_model::{BatchTensors, Checkpoint, HeadConfig, MolE, MolEConfig, TaskType};
use mole_nn::StateDict;

use crate::parquet_out::{self, ParquetRows};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::backend::{compiled_backends, default_device, DeviceSpec};
use crate::data::{self, Example};
use crate::settings::{self, RunSettings};
use crate::trainer::{self, Objective, TrainJob};
use crate::{with_backend, TrainArgs};

const BUNDLED_VOCAB: &str = include_str!("../assets/vocab_radius0.json");

/// The radius-0 vocabulary shipped with mole (built from the bundled MOSES subset).
pub fn bundled_vocab() -> Result<Vocabulary> {
    Vocabulary::from_json_str(BUNDLED_VOCAB).map_err(|e| anyhow!("bundled vocabulary: {e}"))
}

fn load_vocab(path: Option<&Path>) -> Result<Vocabulary> {
    match path {
        Some(p) if !p.as_os_str().is_empty() => Ok(Vocabulary::from_json_file(p)?),
        _ => bundled_vocab(),
    }
}

// ---------------------------------------------------------------------------------------------
// featurize

#[derive(Args)]
pub struct FeaturizeArgs {
    /// Input: .smi/.txt (SMILES [name] per line), .csv/.tsv with a `smiles` column, or an SD
    /// file (.sdf/.sd/.mol, V2000 or V3000); .gz ok; or .parquet.
    pub input: PathBuf,
    /// Output JSON Lines file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Radius-0 vocabulary JSON for `tokens` (default: the bundled vocabulary).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Molecules with more heavy atoms are rejected (a line with the reason): the distance
    /// matrix grows with the square of the atom count.
    #[arg(long, default_value_t = mole_featurize::DEFAULT_MAX_ATOMS, value_parser = crate::at_least_one)]
    pub max_atoms: usize,
}

/// One output line: the featurisation, or the reason the row was rejected.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum FeaturizeLine {
    Ok(mole_featurize::FeaturizedMolecule),
    Err {
        smiles: String,
        line: usize,
        error: String,
    },
}

/// Checks before any output is created: the input can be read, and the output is neither the
/// input nor one of the files the command reads (`-i x -o x` would destroy the input; a typo in
/// `-i` must not truncate an existing result).
pub(crate) fn check_output(input: &Path, output: &Path, also_read: &[&Path]) -> Result<()> {
    readable(input)?;
    if let Ok(out) = output.canonicalize() {
        for read in std::iter::once(input).chain(also_read.iter().copied()) {
            if read.canonicalize().is_ok_and(|r| r == out) {
                bail!(
                    "{}: the output is also an input of this command; choose another output path",
                    output.display()
                );
            }
        }
    }
    Ok(())
}

/// Fails, naming `path`, when it cannot be opened as a file (checked before a command writes
/// anything).
fn readable(path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        bail!("{}: is a directory, not a data file", path.display());
    }
    Ok(())
}

/// The first error of the file itself among a chunk of records (truncated gzip, I/O, binary
/// data), taken out of the chunk; row errors (a line that is not UTF-8) stay as rows.
fn file_error_of(chunk: &mut Vec<Result<MoleculeRecord, IoError>>) -> Result<()> {
    match chunk
        .iter()
        .position(|r| r.as_ref().is_err_and(|e| !e.is_row_error()))
    {
        Some(at) => match chunk.swap_remove(at) {
            Err(e) => Err(e.into()),
            Ok(_) => unreachable!("the position of an error"),
        },
        None => Ok(()),
    }
}

pub fn featurize(args: FeaturizeArgs) -> Result<()> {
    if let Some(output) = &args.output {
        check_output(&args.input, output, &[])?;
    }
    let vocab = load_vocab(args.vocab.as_deref())?;
    let reader = read_molecules(&args.input)?;
    let mut file_out = args
        .output
        .as_deref()
        .map(data::AtomicOutput::create)
        .transpose()?;
    let mut stdout_out;
    let out: &mut dyn Write = match file_out.as_mut() {
        Some(f) => f,
        None => {
            stdout_out = BufWriter::new(std::io::stdout().lock());
            &mut stdout_out
        }
    };
    let bar = data::progress_spinner("{spinner} featurize {pos} molecules ({per_sec})");
    let (mut rows, mut ok, mut rejected) = (0usize, 0usize, 0usize);
    // Chunks keep memory bounded on large files while rayon featurises each chunk in parallel.
    let mut chunk = Vec::with_capacity(8192);
    let mut reader = reader.peekable();
    loop {
        chunk.clear();
        while chunk.len() < 8192 {
            match reader.next() {
                Some(r) => chunk.push(r),
                None => break,
            }
        }
        if chunk.is_empty() {
            break;
        }
        // a file-level error (truncated gzip, I/O) fails the command: no partial output
        if let Err(e) = file_error_of(&mut chunk) {
            bar.finish_and_clear();
            return Err(e);
        }
        let lines: Vec<FeaturizeLine> = chunk
            .par_iter()
            .map(|record| match record {
                Ok(r) => match featurize_with_limit(&r.smiles, &vocab, args.max_atoms) {
                    Ok(f) => FeaturizeLine::Ok(f),
                    Err(e) => FeaturizeLine::Err {
                        smiles: r.smiles.clone(),
                        line: r.line,
                        error: e.to_string(),
                    },
                },
                // only row errors are left (see `file_error_of`)
                Err(e) => FeaturizeLine::Err {
                    smiles: String::new(),
                    line: e.line(),
                    error: e.reason(),
                },
            })
            .collect();
        for l in &lines {
            rows += 1;
            match l {
                FeaturizeLine::Ok(_) => ok += 1,
                FeaturizeLine::Err { line, error, .. } => {
                    rejected += 1;
                    if rejected <= 5 {
                        tracing::warn!("{}:{line}: {error}", args.input.display());
                    }
                }
            }
            serde_json::to_writer(&mut *out, l)?;
            out.write_all(b"\n")?;
        }
        bar.set_position(rows as u64);
    }
    out.flush()?;
    if let Some(f) = file_out {
        f.commit()?;
    }
    bar.finish_and_clear();
    eprintln!("featurize: {rows} rows, {ok} ok, {rejected} rejected");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// vocab

#[derive(Subcommand)]
pub enum VocabCommand {
    /// Count Morgan identifiers over a SMILES corpus and keep those seen at least --min-count times.
    Build {
        /// Molecule corpora (.smi/.txt/.csv/.tsv/.sdf, optionally .gz, or .parquet); counts are
        /// summed over all.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
        /// 0 for the input vocabulary, 2 for pretraining targets.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
        radius: u32,
        #[arg(long, default_value_t = 1)]
        min_count: u64,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a vocabulary's size and special tokens.
    Show { vocab: Option<PathBuf> },
}

/// Molecules `mole vocab build` featurises at a time.
const VOCAB_CHUNK: usize = 16_384;

pub fn vocab(cmd: VocabCommand) -> Result<()> {
    match cmd {
        VocabCommand::Build {
            corpus,
            radius,
            min_count,
            output,
        } => {
            // one streaming pass: chunks of molecules counted in parallel, only the counts
            // kept (memory: the distinct identifiers, whatever the corpus size)
            let mut files = Vec::new();
            for c in &corpus {
                files.extend(crate::stream::corpus_files(&c.display().to_string())?);
            }
            let bar = data::progress_spinner("{spinner} counted {pos} molecules ({per_sec})");
            let mut counts: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
            let (mut molecules, mut failed) = (0usize, 0usize);
            for file in &files {
                let mut records = read_molecules(file)?;
                loop {
                    let mut chunk: Vec<_> = records.by_ref().take(VOCAB_CHUNK).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    // a damaged file (truncated gzip, I/O error) fails, naming it
                    file_error_of(&mut chunk)?;
                    let ids: Vec<Option<Vec<u32>>> = chunk
                        .par_iter()
                        .map(|r| {
                            let r = r.as_ref().ok()?;
                            let mol = mole_featurize::parse_smiles(&r.smiles).ok()?;
                            let envs = mole_featurize::morgan_environments(&mol, radius as usize);
                            Some(envs[radius as usize].iter().flatten().copied().collect())
                        })
                        .collect();
                    for found in ids {
                        match found {
                            Some(ids) => {
                                molecules += 1;
                                for id in ids {
                                    *counts.entry(id).or_insert(0u64) += 1;
                                }
                            }
                            None => failed += 1,
                        }
                    }
                    bar.inc(chunk.len() as u64);
                }
            }
            bar.finish_and_clear();
            let distinct = counts.len();
            let vocab = Vocabulary::build_from_counts(counts, min_count).with_radius(radius);
            vocab.save(&output)?;
            eprintln!(
                "vocab: {distinct} distinct radius-{radius} identifiers in {molecules} molecules \
                 from {} file(s) ({failed} unparsable rows); kept {} with count >= {min_count}; \
                 vocab_size {} → {}",
                files.len(),
                vocab.num_identifiers(),
                vocab.vocab_size(),
                output.display()
            );
            Ok(())
        }
        VocabCommand::Show { vocab } => {
            let v = load_vocab(vocab.as_deref())?;
            println!(
                "radius {}: {} identifiers, vocab_size {} (PAD {}, MASK {}, UNK {}, CLS {})",
                v.radius,
                v.num_identifiers(),
                v.vocab_size(),
                v.pad_id(),
                v.mask_id(),
                v.unk_id(),
                v.cls_id()
            );
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// training commands

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1: self-supervised masked atom-environment prediction.
    AtomEnv,
    /// Stage 2: supervised multitask pretraining (missing labels allowed).
    Multitask,
}

#[derive(Args)]
pub struct PretrainArgs {
    #[arg(long, value_enum, default_value_t = Stage::AtomEnv)]
    pub stage: Stage,
    /// Checkpoint to start from (stage 2 usually starts from stage 1's best.safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Args, Clone)]
pub struct FinetuneArgs {
    /// Pretrained checkpoint whose encoder (and vocabulary) to start from; without it the
    /// model trains from scratch.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Task type (overrides task.kind).
    #[arg(long, value_enum)]
    pub task: Option<TaskType>,
    /// Label columns, comma-separated (overrides data.label_columns).
    #[arg(long, value_delimiter = ',')]
    pub label_cols: Option<Vec<String>>,
    /// Weight positives by n_neg/n_pos per task.
    #[arg(long)]
    pub balanced: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The training devices: `--devices`, else `--device`, else the default device. Checked before
/// any data is read: data-parallel devices must share one backend.
fn devices_of(args: &TrainArgs) -> Result<Vec<DeviceSpec>> {
    for d in args.device.iter().chain(&args.devices) {
        crate::backend::ensure_compiled(*d)?;
    }
    if args.devices.is_empty() {
        return Ok(vec![args.device.unwrap_or_else(default_device)]);
    }
    let first = args.devices[0];
    if let Some(other) = args
        .devices
        .iter()
        .find(|d| std::mem::discriminant(*d) != std::mem::discriminant(&first))
    {
        bail!("--devices {first} and {other}: all devices must use the same backend");
    }
    Ok(args.devices.clone())
}

fn run_dir(args: &TrainArgs, default: &str) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(default))
}

pub fn pretrain(args: PretrainArgs) -> Result<()> {
    if args.stage == Stage::Multitask {
        let ft = FinetuneArgs {
            checkpoint: args.checkpoint,
            task: None,
            label_cols: None,
            balanced: false,
            train: args.train,
        };
        supervised(ft, settings::MULTITASK_TOML, "multitask")?;
        return Ok(());
    }
    let a = &args.train;
    let devices = devices_of(a)?;
    let settings = RunSettings::resolve(
        settings::PRETRAIN_TOML,
        a.config.as_deref(),
        &a.all_overrides(),
    )?;
    let p = settings
        .pretrain
        .clone()
        .ok_or_else(|| anyhow!("config has no [pretrain] section"))?;
    let out = run_dir(a, "pretrain");
    let corpus = PathBuf::from(&settings.data.train);
    if !settings.data.stream {
        readable(&corpus)?;
    }
    let (vocab, init, encoder) = match &args.checkpoint {
        Some(c) => {
            let (config, vocab, dict) = read_checkpoint_parts(c)?;
            (vocab, Some(dict), Some(config.encoder))
        }
        None => (
            load_vocab(Some(Path::new(&settings.data.vocab)))?,
            None,
            None,
        ),
    };
    // the checkpoint's architecture is the run's: config.toml records it
    let mut settings = settings;
    if let (Some(e), Some(c)) = (&encoder, &args.checkpoint) {
        settings.model = settings::model_of_checkpoint(&settings.model, a.model_chosen(), e, c)?;
    }
    let _lock = trainer::prepare_run_dir(
        &out,
        trainer::RunDirUse::of(a.resume, a.force),
        &settings.to_toml(),
    )?;
    let (train, valid, target_vocab, majority) = if settings.data.stream {
        streaming_corpus(&settings, &vocab, &out)?
    } else {
        in_memory_corpus(&settings, &vocab, &corpus, &out)?
    };
    tracing::info!(
        "target vocabulary: {} radius-2 environments with count >= {} (vocab_size {}); \
         majority-class baseline accuracy {:.3}",
        target_vocab.num_identifiers(),
        settings.data.target_min_count,
        target_vocab.vocab_size(),
        majority
    );

    let encoder = match encoder {
        Some(e) => e,
        None => settings::model_config(&settings.model, vocab.vocab_size())?,
    };
    let model_config = MolEConfig {
        encoder,
        head: None,
        atom_env_head: Some(mole_model::AtomEnvHeadConfig {
            num_targets: target_vocab.vocab_size(),
        }),
    };
    let job = TrainJob {
        settings: &settings,
        run_dir: out.clone(),
        model_config,
        vocab,
        target_vocab: Some(target_vocab),
        train,
        valid,
        objective: Objective::AtomEnv {
            mask_prob: p.mask_prob,
            span: p.attention_span,
        },
        init: init.map(|d| without_heads(d, &["atom_env_head."])),
        resume: a.resume,
        extra: serde_json::json!({ "stage": "atom-env", "majority_baseline_accuracy": majority }),
        interrupt_after: a.interrupt_after,
    };
    let outcome = with_backend!(devices = &devices, a.precision, |B, devices, dtype| {
        trainer::train::<B>(job, &devices, dtype)
    })?;
    if let Some(v) = &outcome.final_valid {
        eprintln!(
            "pretrain: {} steps; validation masked-token accuracy {:.3} (majority baseline {:.3}); \
             checkpoint {}",
            outcome.steps,
            v["masked_accuracy"].as_f64().unwrap_or(f64::NAN),
            majority,
            outcome.best_checkpoint.display()
        );
    }
    crate::report::after_run(&out);
    Ok(())
}

/// Prints the numbers of a metrics object as an aligned two-column summary on stdout (the JSON
/// goes to files: metrics.jsonl, `evaluate -o`).
fn print_metrics(title: &str, metrics: &serde_json::Value) {
    println!("{title}");
    let Some(fields) = metrics.as_object() else {
        return;
    };
    let numbers: Vec<(&String, f64)> = fields
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
        .collect();
    let width = numbers.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (name, value) in numbers {
        if value.fract() == 0.0 && value.abs() < 1e15 {
            println!("  {name:<width$}  {value:.0}");
        } else {
            println!("  {name:<width$}  {value:.4}");
        }
    }
}

fn take_split(examples: Vec<Example>, a: &[usize], b: &[usize]) -> (Vec<Example>, Vec<Example>) {
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let take = |slots: &mut Vec<Option<Example>>, idx: &[usize]| {
        idx.iter()
            .filter_map(|&i| slots[i].take())
            .collect::<Vec<_>>()
    };
    let first = take(&mut slots, a);
    let second = take(&mut slots, b);
    (first, second)
}

/// Config, vocabulary and tensors of a mole checkpoint, read without a backend.
fn read_checkpoint_parts(path: &Path) -> Result<(MolEConfig, Vocabulary, StateDict)> {
    let dict = StateDict::load(path)?;
    let config: MolEConfig = serde_json::from_str(
        dict.metadata
            .get("config")
            .ok_or_else(|| anyhow!("{}: not a mole checkpoint (no config metadata); use `mole import` for original weights", path.display()))?,
    )
    .with_context(|| format!("{}: config metadata", path.display()))?;
    let vocab = Vocabulary::from_json_str(
        dict.metadata
            .get("vocab")
            .ok_or_else(|| anyhow!("{}: no vocabulary in the checkpoint", path.display()))?,
    )
    .with_context(|| format!("{}: vocabulary metadata", path.display()))?;
    if vocab.vocab_size() > config.encoder.vocab_size {
        bail!(
            "{}: its vocabulary has {} tokens but the model's embedding table {} rows: the \
             vocabulary belongs to another model",
            path.display(),
            vocab.vocab_size(),
            config.encoder.vocab_size
        );
    }
    Ok((config, vocab, dict))
}

fn without_heads(mut dict: StateDict, prefixes: &[&str]) -> StateDict {
    dict.tensors
        .retain(|k, _| !prefixes.iter().any(|p| k.starts_with(p)));
    dict
}

/// Refuses data without any label (training would see a loss of 0 and learn nothing); warns
/// about tasks without labels and classification tasks with a single class (AUROC is then
/// undefined and the model can only learn a constant).
fn check_labels(path: &Path, names: &[String], examples: &[Example], kind: TaskKind) -> Result<()> {
    let count = |t: usize| examples.iter().filter(|e| !e.labels[t].is_nan()).count();
    if (0..names.len()).all(|t| count(t) == 0) {
        bail!(
            "{}: no labels: every cell of {} is empty or nan in the usable rows",
            path.display(),
            names.join(", ")
        );
    }
    for (t, name) in names.iter().enumerate() {
        if count(t) == 0 {
            tracing::warn!("{}: task `{name}` has no labels", path.display());
            continue;
        }
        if kind != TaskKind::Regression {
            let mut classes: Vec<f32> = examples
                .iter()
                .map(|e| e.labels[t])
                .filter(|y| !y.is_nan())
                .collect();
            classes.sort_by(f32::total_cmp);
            classes.dedup();
            if classes.len() == 1 {
                tracing::warn!(
                    "{}: task `{name}` has one class only (every label is {}): AUROC is \
                     undefined and the model can only learn a constant",
                    path.display(),
                    classes[0]
                );
            }
        }
    }
    Ok(())
}

/// What a supervised run produced.
pub struct SupervisedOutcome {
    pub best_checkpoint: PathBuf,
    pub test: Option<serde_json::Value>,
    pub kind: TaskKind,
}

fn task_kind(kind: TaskType, num_classes: usize) -> TaskKind {
    match (kind, num_classes) {
        (TaskType::Regression, _) => TaskKind::Regression,
        (_, 1) => TaskKind::BinaryClassification,
        (_, c) => TaskKind::MulticlassClassification { num_classes: c },
    }
}

/// A pretraining corpus with its target vocabulary: the training data, the validation
/// molecules, the radius-2 target vocabulary and the majority-class baseline of masked-atom
/// accuracy.
type PretrainCorpus = (trainer::TrainData, Vec<Example>, Vocabulary, f64);

/// Share of the most frequent target among the examples' atoms (always predicting it).
fn majority_baseline(examples: &[Example]) -> f64 {
    let mut freq = std::collections::HashMap::new();
    let mut total = 0u64;
    for e in examples {
        for &t in &e.targets {
            *freq.entry(t).or_insert(0u64) += 1;
            total += 1;
        }
    }
    freq.values().max().copied().unwrap_or(0) as f64 / total.max(1) as f64
}

/// The whole corpus featurised before the first step, split by `data.split_method`.
fn in_memory_corpus(
    settings: &RunSettings,
    vocab: &Vocabulary,
    corpus: &Path,
    out: &Path,
) -> Result<PretrainCorpus> {
    tracing::info!("reading {}", corpus.display());
    let (rows, mut rejects) = data::read_smiles(corpus)
        .with_context(|| format!("pretraining corpus {}", corpus.display()))?;
    let (mut examples, bad) =
        data::featurize_rows(rows, vocab, settings.data.max_atoms, true, "featurize");
    rejects.extend(bad);
    data::report_rejects(corpus, &rejects, Some(&out.join("rejects.csv")))?;

    let mut rng = StdRng::seed_from_u64(settings.train.seed);
    let (train_idx, valid_idx, _) = data::split_indices(
        &examples,
        settings.data.split_method,
        settings.data.valid_fraction,
        0.0,
        settings.train.seed,
        &mut rng,
    )?;
    let target_vocab = match given_target_vocab(&settings.data)? {
        Some(v) => v,
        None => {
            let counts = data::count_targets(train_idx.iter().map(|&i| &examples[i]));
            Vocabulary::build_from_counts(counts, settings.data.target_min_count).with_radius(2)
        }
    };
    data::assign_targets(&mut examples, &target_vocab);
    let (train, valid) = take_split(examples, &train_idx, &valid_idx);
    let majority = majority_baseline(&train);
    Ok((
        trainer::TrainData::InMemory(train),
        valid,
        target_vocab,
        majority,
    ))
}

/// The target vocabulary file `data.target_vocab` names, if any (it must index radius-2
/// environments).
fn given_target_vocab(d: &settings::DataSettings) -> Result<Option<Vocabulary>> {
    if d.target_vocab.is_empty() {
        return Ok(None);
    }
    let path = Path::new(&d.target_vocab);
    let vocab = Vocabulary::from_json_file(path)
        .with_context(|| format!("data.target_vocab {}", path.display()))?;
    if vocab.radius != 2 {
        bail!(
            "{}: a radius-{} vocabulary; pretraining targets are radius-2 environments \
             (mole vocab build --radius 2)",
            path.display(),
            vocab.radius
        );
    }
    tracing::info!("target vocabulary from {}", path.display());
    Ok(Some(vocab))
}

/// Validation molecules a streaming corpus keeps in memory at most.
const STREAM_VALID_LIMIT: usize = 10_000;

/// A streaming corpus (`data.stream`): the first `data.stream_sample` molecules set the target
/// vocabulary and give the validation set (the hash-selected among them, which the stream
/// leaves out everywhere); training reads the files as it goes.
fn streaming_corpus(
    settings: &RunSettings,
    vocab: &Vocabulary,
    out: &Path,
) -> Result<PretrainCorpus> {
    let d = &settings.data;
    if d.split_method != mole_featurize::split::SplitMethod::Random {
        bail!("data.stream: the validation split of a stream is by SMILES hash (split_method = \"random\")");
    }
    if d.stream_window == 0 || d.stream_sample == 0 {
        bail!("data.stream_window and data.stream_sample must be at least 1");
    }
    let files = crate::stream::corpus_files(&d.train)?;
    for f in &files {
        readable(f)?;
    }
    tracing::info!(
        "streaming {} file(s); target vocabulary from the first {} molecules",
        files.len(),
        d.stream_sample
    );
    let (sample_rows, valid_rows, mut rejects) = crate::stream::sample(
        &files,
        d.stream_sample,
        d.valid_fraction,
        STREAM_VALID_LIMIT,
    )?;
    // radius-2 counts over the sample, featurised a window at a time so that only the counts
    // stay in memory
    let bar = data::progress_bar(sample_rows.len() as u64, "sample");
    let mut counts: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut usable = 0usize;
    let mut rows = sample_rows.into_iter();
    loop {
        let chunk: Vec<data::RawRow> = rows.by_ref().take(d.stream_window).collect();
        if chunk.is_empty() {
            break;
        }
        bar.inc(chunk.len() as u64);
        let (examples, bad) = data::featurize_rows_quietly(chunk, vocab, d.max_atoms, true);
        rejects.extend(bad);
        usable += examples.len();
        for (id, n) in data::count_targets(examples.iter()) {
            *counts.entry(id).or_default() += n;
        }
    }
    bar.finish_and_clear();
    let (mut valid, bad) = data::featurize_rows(valid_rows, vocab, d.max_atoms, true, "validation");
    rejects.extend(bad);
    data::report_rejects(&files[0], &rejects, Some(&out.join("rejects.csv")))?;
    if usable == 0 {
        bail!(
            "{}: no usable molecule at the start of the corpus",
            files[0].display()
        );
    }
    let target_vocab = match given_target_vocab(d)? {
        Some(v) => v,
        None => Vocabulary::build_from_counts(counts.clone(), d.target_min_count).with_radius(2),
    };
    // the majority class among the sample's targets, environments outside the vocabulary
    // pooled into UNK
    let unk = target_vocab.unk_id();
    let mut by_target: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for (&id, &n) in &counts {
        let t = if id == data::NO_ENVIRONMENT {
            unk
        } else {
            target_vocab.token(id)
        };
        *by_target.entry(t).or_default() += n;
    }
    let total: u64 = by_target.values().sum();
    let majority = by_target.values().copied().max().unwrap_or(0) as f64 / total.max(1) as f64;
    data::assign_targets(&mut valid, &target_vocab);
    let steps_per_epoch = if settings.train.max_steps > 0 {
        None
    } else {
        // without a step limit the epochs need the corpus's size: one pass counting rows
        let mut rows = 0usize;
        for f in &files {
            for r in read_molecules(f)? {
                match r {
                    Ok(r) if !crate::stream::is_validation(&r.smiles, d.valid_fraction) => {
                        rows += 1
                    }
                    Err(e) if !e.is_row_error() => return Err(e.into()),
                    _ => {}
                }
            }
        }
        tracing::info!("corpus: {rows} training molecules");
        Some(rows.div_ceil(settings.train.batch_size).max(1))
    };
    let spec = crate::stream::StreamSpec {
        files,
        seed: settings.train.seed,
        window: d.stream_window,
        batch_size: settings.train.batch_size,
        max_atoms: d.max_atoms,
        valid_fraction: d.valid_fraction,
        vocab: vocab.clone(),
        target_vocab: target_vocab.clone(),
    };
    Ok((
        trainer::TrainData::Stream {
            spec: std::sync::Arc::new(spec),
            steps_per_epoch,
        },
        valid,
        target_vocab,
        majority,
    ))
}

pub fn finetune(args: FinetuneArgs) -> Result<SupervisedOutcome> {
    supervised(args, settings::FINETUNE_TOML, "finetune")
}

impl FinetuneArgs {
    /// The training flags plus the task, label and weighting flags, as config overrides.
    pub(crate) fn overrides(&self) -> Vec<String> {
        let mut overrides = self.train.all_overrides();
        if let Some(t) = &self.task {
            overrides.push(format!("task.kind=\"{t}\""));
        }
        if let Some(cols) = &self.label_cols {
            overrides.push(format!("data.label_columns={cols:?}"));
        }
        if self.balanced {
            overrides.push("task.balanced_class_weights=true".into());
        }
        overrides
    }
}

fn supervised(args: FinetuneArgs, base_toml: &str, default_out: &str) -> Result<SupervisedOutcome> {
    let a = &args.train;
    let overrides = args.overrides();
    let settings = RunSettings::resolve(base_toml, a.config.as_deref(), &overrides)?;
    let out = run_dir(a, default_out);
    let outcome = supervised_run(&settings, args.checkpoint.as_deref(), &out, a)?;
    if let Some(t) = &outcome.test {
        print_metrics(
            &format!(
                "test metrics of {} (all metrics: {})",
                outcome.best_checkpoint.display(),
                out.join("metrics.jsonl").display()
            ),
            t,
        );
    }
    Ok(outcome)
}

/// Reads, featurises, splits, trains and tests one supervised configuration.
pub fn supervised_run(
    settings: &RunSettings,
    checkpoint: Option<&Path>,
    out: &Path,
    a: &TrainArgs,
) -> Result<SupervisedOutcome> {
    let devices = devices_of(a)?;
    let task = settings
        .task
        .clone()
        .ok_or_else(|| anyhow!("config has no [task] section"))?;
    let path = PathBuf::from(&settings.data.train);
    readable(&path)?;
    let (encoder, vocab, init) = match checkpoint {
        Some(c) => {
            let (cfg, vocab, dict) = read_checkpoint_parts(c)?;
            (
                Some(cfg.encoder),
                vocab,
                Some(without_heads(dict, &["prediction_head.", "atom_env_head."])),
            )
        }
        None => (
            None,
            load_vocab(Some(Path::new(&settings.data.vocab)))?,
            None,
        ),
    };
    // the checkpoint's architecture is the run's: config.toml records it
    let mut settings = settings.clone();
    if let (Some(e), Some(c)) = (&encoder, checkpoint) {
        settings.model = settings::model_of_checkpoint(&settings.model, a.model_chosen(), e, c)?;
    }
    let settings = &settings;
    let _lock = trainer::prepare_run_dir(
        out,
        trainer::RunDirUse::of(a.resume, a.force),
        &settings.to_toml(),
    )?;
    let table = data::read_table(
        &path,
        &settings.data.smiles_column,
        &settings.data.label_columns,
        &settings.data.split_column,
    )?;
    if table.label_names.is_empty() {
        bail!("{}: no label columns", path.display());
    }
    let mut rejects = table.rejects;
    let (examples, bad) = data::featurize_rows(
        table.rows,
        &vocab,
        settings.data.max_atoms,
        false,
        "featurize",
    );
    rejects.extend(bad);
    let num_tasks = table.label_names.len();
    let kind = task_kind(task.kind, task.num_classes);
    // Class labels must be class indices.
    let mut examples_ok = Vec::with_capacity(examples.len());
    for e in examples {
        let bad_label = match kind {
            TaskKind::Regression => None,
            TaskKind::BinaryClassification => e
                .labels
                .iter()
                .find(|y| !y.is_nan() && **y != 0.0 && **y != 1.0)
                .map(|y| format!("label {y} is not 0 or 1")),
            TaskKind::MulticlassClassification { num_classes } => e
                .labels
                .iter()
                .find(|y| {
                    !y.is_nan() && (y.fract() != 0.0 || **y < 0.0 || **y >= num_classes as f32)
                })
                .map(|y| format!("label {y} is not a class index below {num_classes}")),
        };
        match bad_label {
            Some(reason) => rejects.push(data::Reject {
                line: e.line,
                smiles: e.smiles,
                reason,
            }),
            None => examples_ok.push(e),
        }
    }
    data::report_rejects(&path, &rejects, Some(&out.join("rejects.csv")))?;
    let examples = examples_ok;
    check_labels(&path, &table.label_names, &examples, kind)?;
    if kind == TaskKind::Regression
        && examples.len() >= 10
        && examples
            .iter()
            .flat_map(|e| &e.labels)
            .all(|y| y.is_nan() || *y == 0.0 || *y == 1.0)
    {
        tracing::warn!(
            "{}: every label is 0 or 1 but the task is regression; for a classification task \
             pass --task classification",
            path.display()
        );
    }

    let mut rng = StdRng::seed_from_u64(settings.train.seed);
    let (train_idx, valid_idx, test_idx) = data::split_indices(
        &examples,
        settings.data.split_method,
        settings.data.valid_fraction,
        settings.data.test_fraction,
        settings.train.seed,
        &mut rng,
    )?;
    let test: Vec<Example> = test_idx.iter().map(|&i| examples[i].clone()).collect();
    let (train, valid) = take_split(examples, &train_idx, &valid_idx);
    tracing::info!(
        "{}: {} tasks ({}), split {} / {} / {}",
        path.display(),
        num_tasks,
        table.label_names.join(", "),
        train.len(),
        valid.len(),
        test.len()
    );

    let positive_weights = (task.balanced_class_weights && kind == TaskKind::BinaryClassification)
        .then(|| {
            (0..num_tasks)
                .map(|t| {
                    let (mut pos, mut neg) = (0f32, 0f32);
                    for e in &train {
                        match e.labels[t] {
                            y if y.is_nan() => {}
                            y if y > 0.5 => pos += 1.0,
                            _ => neg += 1.0,
                        }
                    }
                    if pos > 0.0 {
                        neg / pos
                    } else {
                        1.0
                    }
                })
                .collect()
        });

    let encoder = match encoder {
        Some(e) => e,
        None => settings::model_config(&settings.model, vocab.vocab_size())?,
    };
    let model_config = MolEConfig {
        encoder,
        head: Some(HeadConfig {
            task: task.kind,
            num_tasks,
            num_classes: task.num_classes,
            dropout: Some(task.head_dropout),
        }),
        atom_env_head: None,
    };
    let standardization = (kind == TaskKind::Regression && task.standardize_targets).then(|| {
        mole_model::TargetStandardization::fit(train.iter().map(|e| e.labels.as_slice()), num_tasks)
    });
    // the saved checkpoints predict original units: they are tested without standardisation
    let checkpoint_objective = Objective::Supervised {
        kind,
        num_tasks,
        positive_weights: positive_weights.clone(),
        standardization: None,
    };
    let objective = Objective::Supervised {
        kind,
        num_tasks,
        positive_weights,
        standardization: standardization.clone(),
    };
    let job = TrainJob {
        settings,
        run_dir: out.to_path_buf(),
        model_config,
        vocab: vocab.clone(),
        target_vocab: None,
        train: trainer::TrainData::InMemory(train),
        valid,
        objective: objective.clone(),
        init,
        resume: a.resume,
        extra: serde_json::json!({
            "label_names": table.label_names,
            "task": task.kind,
            "target_standardization": standardization,
        }),
        interrupt_after: a.interrupt_after,
    };
    let batch_size = settings.train.batch_size;
    let seed = settings.train.seed;
    let (outcome, test_metrics) =
        with_backend!(devices = &devices, a.precision, |B, devices, dtype| {
            let outcome = trainer::train::<B>(job, &devices, dtype)?;
            let device = &devices[0];
            let test_metrics = if test.is_empty() {
                None
            } else {
                let ckpt = Checkpoint::<<B as AutodiffBackend>::InnerBackend>::load(
                    &outcome.best_checkpoint,
                    device,
                )?;
                Some(trainer::evaluate_with_predictions(
                    &ckpt.model.with_compute_dtype(dtype),
                    &test,
                    &checkpoint_objective,
                    &vocab,
                    batch_size,
                    seed,
                    device,
                ))
            };
            Ok::<_, anyhow::Error>((outcome, test_metrics))
        })?;
    let test_metrics = match test_metrics {
        Some(evaluation) => {
            let mut entry = evaluation.metrics.clone();
            entry["kind"] = "test".into();
            entry["molecules"] = test.len().into();
            trainer::MetricsLog::open(out)?.write(entry)?;
            write_test_predictions(out, &test, &table.label_names, &evaluation.predictions)?;
            Some(evaluation.metrics)
        }
        None => None,
    };
    // every run leaves its plots and report.html, also each seed of a benchmark
    crate::report::after_run(out);
    Ok(SupervisedOutcome {
        best_checkpoint: outcome.best_checkpoint,
        test: test_metrics,
        kind,
    })
}

/// The test set's measured and predicted values, one row per (molecule, task) with a label,
/// for the run's plots ([`crate::report::TEST_PREDICTIONS`]). Skipped for multi-class heads
/// (several outputs per task).
fn write_test_predictions(
    out: &Path,
    test: &[data::Example],
    label_names: &[String],
    predictions: &[f32],
) -> Result<()> {
    let tasks = label_names.len();
    if tasks == 0 || predictions.len() != test.len() * tasks {
        return Ok(());
    }
    let path = out.join(crate::report::TEST_PREDICTIONS);
    let mut w = csv::Writer::from_writer(data::AtomicOutput::create(&path)?);
    w.write_record(["line", "smiles", "task", "measured", "predicted"])?;
    for (example, row) in test.iter().zip(predictions.chunks(tasks)) {
        for ((name, &y), &p) in label_names.iter().zip(&example.labels).zip(row) {
            if y.is_nan() {
                continue;
            }
            w.write_record([
                example.line.to_string(),
                example.smiles.clone(),
                name.clone(),
                y.to_string(),
                p.to_string(),
            ])?;
        }
    }
    data::commit_csv(w)
}

// ---------------------------------------------------------------------------------------------
// evaluate / predict / embed

#[derive(Args)]
pub struct EvaluateArgs {
    /// A mole checkpoint with a prediction head (e.g. runs/finetune/best.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled table (CSV/TSV, optionally .gz, or parquet) with a `smiles` column and the
    /// checkpoint's label columns, or an SD file whose data items hold them.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "smiles")]
    pub smiles_column: String,
    /// Label columns (default: those the checkpoint was trained on).
    #[arg(long, value_delimiter = ',')]
    pub label_cols: Option<Vec<String>>,
    #[arg(long, default_value_t = 64, value_parser = crate::at_least_one)]
    pub batch_size: usize,
    /// Molecules with more heavy atoms are rejected as bad rows.
    #[arg(long, default_value_t = mole_featurize::DEFAULT_MAX_ATOMS, value_parser = crate::at_least_one)]
    pub max_atoms: usize,
    /// Write the metrics as JSON to this file (`-`: standard output, instead of the summary).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// f32, bf16 or f16 (default: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
}

fn checkpoint_labels(extra: &serde_json::Value) -> Vec<String> {
    extra["label_names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let (config, vocab, dict) = read_checkpoint_parts(&args.checkpoint)?;
    let head = config.head.clone().ok_or_else(|| {
        anyhow!(
            "{}: checkpoint has no prediction head",
            args.checkpoint.display()
        )
    })?;
    let extra: serde_json::Value = dict
        .metadata
        .get("extra")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let labels = args
        .label_cols
        .clone()
        .unwrap_or_else(|| checkpoint_labels(&extra));
    if labels.len() != head.num_tasks {
        bail!(
            "{} label column(s) given, the checkpoint predicts {} task(s); pass --label-cols",
            labels.len(),
            head.num_tasks
        );
    }
    let table = data::read_table(&args.data, &args.smiles_column, &labels, "")?;
    let (examples, mut rejects) =
        data::featurize_rows(table.rows, &vocab, args.max_atoms, false, "featurize");
    rejects.extend(table.rejects);
    data::report_rejects(&args.data, &rejects, None)?;
    if examples.is_empty() {
        bail!(
            "{}: no usable molecules ({} rejected): nothing to evaluate",
            args.data.display(),
            rejects.len()
        );
    }
    if examples.iter().all(|e| e.labels.iter().all(|y| y.is_nan())) {
        bail!(
            "{}: no labels in {}: nothing to evaluate against",
            args.data.display(),
            labels.join(", ")
        );
    }
    let kind = task_kind(head.task, head.num_classes);
    let objective = Objective::Supervised {
        kind,
        num_tasks: head.num_tasks,
        positive_weights: None,
        standardization: None,
    };
    let spec = args.device.unwrap_or_else(default_device);
    let metrics = with_backend!(spec, args.precision, |B, device, dtype| {
        let ckpt =
            Checkpoint::<<B as AutodiffBackend>::InnerBackend>::load(&args.checkpoint, &device)?;
        Ok::<_, anyhow::Error>(trainer::evaluate(
            &ckpt.model.with_compute_dtype(dtype),
            &examples,
            &objective,
            &vocab,
            args.batch_size,
            0,
            &device,
        ))
    })?;
    let mut report = metrics.clone();
    report["molecules"] = examples.len().into();
    report["rejected"] = rejects.len().into();
    // the JSON goes where -o says (`-`: stdout, through AtomicOutput); otherwise stdout gets
    // the summary
    if !args.output.as_deref().is_some_and(data::is_stdout) {
        print_metrics(
            &format!("{} on {}", args.checkpoint.display(), args.data.display()),
            &report,
        );
    }
    if let Some(o) = &args.output {
        let json = serde_json::to_string_pretty(&report)?;
        data::write_atomic(o, format!("{json}\n").as_bytes())?;
    }
    Ok(())
}

/// What `predict` and `embed` share: the model, the molecules and how to run over them.
#[derive(Args)]
pub struct InferenceArgs {
    /// A mole checkpoint (`best.safetensors` of a run, or `mole import` output).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Molecules: .smi/.txt, .csv/.tsv/.parquet with a `smiles` column (a `name` or `id`
    /// column names the rows; the other columns pass through to the output), or an SD file
    /// (.sdf/.sd/.mol: a row per record, its data items passed through); optionally .gz.
    #[arg(long, short)]
    pub input: PathBuf,
    #[arg(long, default_value_t = 64, value_parser = crate::at_least_one)]
    pub batch_size: usize,
    /// Molecules featurised and run per chunk (bounds memory).
    #[arg(long, default_value_t = 16384, value_parser = crate::at_least_one)]
    pub chunk_size: usize,
    /// Molecules with more heavy atoms are rejected (a row with the reason): memory grows with
    /// the square of the atom count.
    #[arg(long, default_value_t = mole_featurize::DEFAULT_MAX_ATOMS, value_parser = crate::at_least_one)]
    pub max_atoms: usize,
    /// Reject molecules with atoms outside the checkpoint's vocabulary (by default they are
    /// embedded with the UNK token and counted in the `unknown_atoms` column).
    #[arg(long)]
    pub reject_unknown: bool,
    /// Device: cpu, cuda[:N], vulkan[:N], wgpu, metal (default: the first GPU backend compiled in).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// f32, bf16 or f16 (default: bf16 on CUDA, f32 elsewhere).
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
    /// Run only part K of N of the input (0 ≤ K < N), for job arrays (Slurm `--array=0-2`
    /// with `--shard $SLURM_ARRAY_TASK_ID/3`): part K is the K-th of N contiguous, equal runs
    /// of input rows (counted in a first, cheap pass). Only part 0 writes the CSV header, so
    /// `cat` of the N CSV outputs in order is byte for byte the unsharded output; .npy parts
    /// are complete arrays to concatenate in order (`np.concatenate`).
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Part `index` of `count` of an input (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected K/N, e.g. 0/3"))?;
        let index: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: K is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("`{s}`: need 0 ≤ K < N"));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// The rows of this part among `total` rows: contiguous, sizes differing by at most one.
    pub fn rows(self, total: usize) -> std::ops::Range<usize> {
        let bound = |k: usize| (k as u128 * total as u128 / self.count as u128) as usize;
        bound(self.index)..bound(self.index + 1)
    }
}

/// Whether an output of this run starts with the CSV header (every run but parts 1.. of a
/// sharded one, so that the parts concatenate into the whole).
fn writes_header(shard: Option<Shard>) -> bool {
    shard.is_none_or(|s| s.index == 0)
}

/// Rows of `input` as `stream_molecules` counts them (blank lines included); a file-level
/// error fails.
fn count_rows(input: &Path) -> Result<usize> {
    let mut total = 0usize;
    for rec in read_molecules(input)?.keep_blank_lines() {
        match rec {
            // the file itself is damaged: the same error `file_error_of` gives (it names the file)
            Err(e) if !e.is_row_error() => return Err(e.into()),
            _ => total += 1,
        }
    }
    Ok(total)
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub run: InferenceArgs,
    /// More checkpoints of the same task (e.g. the seeds of a benchmark, or runs trained with
    /// different seeds), repeatable: predictions are the ensemble mean, and a `<task>_std`
    /// column gives the spread between the models (model uncertainty; larger far from the
    /// training data).
    #[arg(long = "ensemble")]
    pub ensemble: Vec<PathBuf>,
    /// Monte-Carlo dropout: K stochastic passes per model with dropout on, as in training;
    /// mean and `<task>_std` over the passes (a cheaper estimate of model uncertainty from one
    /// checkpoint).
    #[arg(long, default_value_t = 1, value_parser = crate::at_least_one)]
    pub mc_dropout: usize,
    /// Output CSV (or .parquet), one row per input row: line, smiles, name, the input's other
    /// columns, one column per task (`<label>_pred`, and `<label>_pred_std` with --ensemble or
    /// --mc-dropout), unknown_atoms, error. `-` writes the CSV to standard output.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// How `predict` and `embed` read and batch their molecules.
#[derive(Clone, Copy)]
struct StreamOptions {
    chunk_size: usize,
    batch_size: usize,
    max_atoms: usize,
    reject_unknown: bool,
    shard: Option<Shard>,
}

impl From<&InferenceArgs> for StreamOptions {
    fn from(a: &InferenceArgs) -> Self {
        Self {
            chunk_size: a.chunk_size,
            batch_size: a.batch_size,
            max_atoms: a.max_atoms,
            reject_unknown: a.reject_unknown,
            shard: a.shard,
        }
    }
}

/// Upper bound on the atom pairs (sequence length squared, summed over a batch) of one
/// inference batch: the attention's memory grows with it, so batches of large molecules are
/// cut smaller (64 molecules of up to 128 tokens; one of 1,000 atoms goes alone).
const BATCH_PAIR_BUDGET: usize = 64 * 128 * 128;

/// What `stream_molecules` counted.
#[derive(Default)]
struct StreamCounts {
    ok: usize,
    rejected: usize,
    /// Molecules run with at least one atom outside the vocabulary (UNK).
    with_unknown: usize,
}

/// Streams `input` in chunks: featurise in parallel, run `per_batch` on the valid molecules in
/// length-sorted batches (bounded by `batch_size` and [`BATCH_PAIR_BUDGET`]), hand every row
/// to `emit` in input order with its output (`None` for a rejected row). Every data line is a
/// row, blank `.smi` lines included (as rejected rows), so output row i is input row i. A
/// file-level error (unreadable file, truncated gzip, binary data) fails the whole command.
fn stream_molecules<F, E>(
    input: &Path,
    vocab: &Vocabulary,
    options: StreamOptions,
    mut per_batch: F,
    mut emit: E,
) -> Result<StreamCounts>
where
    F: FnMut(&[&MoleInput]) -> Result<Vec<Vec<f32>>>,
    E: FnMut(&RawRowOut, Option<&[f32]>) -> Result<()>,
{
    let rows = match options.shard {
        None => 0..usize::MAX,
        Some(shard) => {
            let rows = shard.rows(count_rows(input)?);
            tracing::info!(
                "{}: part {}/{}: rows {}..{} (0-based, end excluded)",
                input.display(),
                shard.index,
                shard.count,
                rows.start,
                rows.end
            );
            rows
        }
    };
    let mut reader = read_molecules(input)?
        .keep_blank_lines()
        .skip(rows.start)
        .take(rows.end - rows.start);
    let mut counts = StreamCounts::default();
    let bar = data::progress_spinner("{spinner} {pos} molecules ({per_sec})");
    let unk = vocab.unk_id();
    loop {
        let mut chunk: Vec<_> = reader.by_ref().take(options.chunk_size.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        if let Err(e) = file_error_of(&mut chunk) {
            bar.finish_and_clear();
            return Err(e);
        }
        let featurized: Vec<(RawRowOut, Option<MoleInput>)> = chunk
            .into_par_iter()
            .map(|rec| {
                let r = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        let row = RawRowOut {
                            line: e.line(),
                            smiles: String::new(),
                            name: None,
                            columns: Vec::new(),
                            unknown_atoms: 0,
                            error: Some(e.reason()),
                        };
                        return (row, None);
                    }
                };
                let mut row = RawRowOut {
                    line: r.line,
                    smiles: r.smiles,
                    name: r.name,
                    columns: r.columns,
                    unknown_atoms: 0,
                    error: None,
                };
                match featurize_with_limit(&row.smiles, vocab, options.max_atoms) {
                    Ok(f) if f.num_atoms > 0 => {
                        row.unknown_atoms = f.tokens.iter().filter(|&&t| t == unk).count();
                        if options.reject_unknown && row.unknown_atoms > 0 {
                            row.error = Some(format!(
                                "{} atom(s) outside the vocabulary (--reject-unknown)",
                                row.unknown_atoms
                            ));
                            return (row, None);
                        }
                        let input = MoleInput::from_featurized(&f, vocab);
                        (row, Some(input))
                    }
                    Ok(_) => {
                        row.error = Some("no heavy atoms".into());
                        (row, None)
                    }
                    Err(e) => {
                        row.error = Some(e.to_string());
                        (row, None)
                    }
                }
            })
            .collect();
        let mut valid: Vec<usize> = (0..featurized.len())
            .filter(|&i| featurized[i].1.is_some())
            .collect();
        valid.sort_by_key(|&i| featurized[i].1.as_ref().map_or(0, |m| m.len()));
        let mut outputs: Vec<Option<Vec<f32>>> = vec![None; featurized.len()];
        let mut start = 0;
        while start < valid.len() {
            // ascending lengths: the last molecule added is the longest of the batch
            let mut end = start + 1;
            while end < valid.len() && end - start < options.batch_size.max(1) {
                let len = featurized[valid[end]].1.as_ref().map_or(0, |m| m.len());
                if (end - start + 1) * len * len > BATCH_PAIR_BUDGET {
                    break;
                }
                end += 1;
            }
            let group = &valid[start..end];
            let inputs: Vec<&MoleInput> = group
                .iter()
                .filter_map(|&i| featurized[i].1.as_ref())
                .collect();
            for (&i, o) in group.iter().zip(per_batch(&inputs)?) {
                outputs[i] = Some(o);
            }
            start = end;
        }
        for ((row, _), out) in featurized.iter().zip(&outputs) {
            if row.error.is_some() {
                counts.rejected += 1;
                if counts.rejected <= 5 {
                    tracing::warn!(
                        "{}:{}: {}",
                        input.display(),
                        row.line,
                        row.error.as_deref().unwrap_or_default()
                    );
                }
            } else {
                counts.ok += 1;
                if row.unknown_atoms > 0 {
                    counts.with_unknown += 1;
                }
            }
            emit(row, out.as_deref())?;
        }
        bar.inc(featurized.len() as u64);
    }
    bar.finish_and_clear();
    if counts.with_unknown > 0 {
        tracing::warn!(
            "{}: {} molecule(s) have atoms outside the checkpoint's vocabulary, run as UNK \
             (see the unknown_atoms column; --reject-unknown rejects them)",
            input.display(),
            counts.with_unknown
        );
    }
    Ok(counts)
}

/// One input row of `predict`/`embed` and what became of it.
pub struct RawRowOut {
    /// 1-based line of the input file (parquet: row number).
    pub line: usize,
    pub smiles: String,
    pub name: Option<String>,
    /// The input's other columns ([`input_columns`]); empty cells for an unreadable row.
    pub columns: Vec<String>,
    /// Atoms whose radius-0 identifier is not in the checkpoint's vocabulary (run as UNK).
    pub unknown_atoms: usize,
    pub error: Option<String>,
}

/// Whether an output path asks for parquet.
fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Where `predict` writes its rows.
enum RowSink {
    /// The writer and the number of value columns (empty cells for a rejected row).
    Csv(csv::Writer<data::AtomicOutput>, usize),
    Parquet(ParquetRows),
}

impl RowSink {
    /// One row: identity columns (`width` passed-through ones), the values (empty cells or
    /// nulls for a rejected row), unknown_atoms and error.
    fn write(&mut self, row: &RawRowOut, width: usize, values: Option<&[f32]>) -> Result<()> {
        let identity = row.identity(width);
        match self {
            RowSink::Csv(w, value_columns) => {
                let mut rec = identity;
                match values {
                    Some(v) => rec.extend(v.iter().map(|x| x.to_string())),
                    None => rec.extend(std::iter::repeat_n(String::new(), *value_columns)),
                }
                rec.push(row.unknown_atoms.to_string());
                rec.push(row.error.clone().unwrap_or_default());
                w.write_record(&rec)?;
            }
            RowSink::Parquet(p) => p.push(parquet_out::Row {
                line: row.line,
                strings: &identity[1..],
                values,
                unknown_atoms: row.unknown_atoms,
                error: row.error.as_deref(),
            })?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            RowSink::Csv(w, _) => data::commit_csv(w),
            RowSink::Parquet(p) => p.finish(),
        }
    }
}

impl RawRowOut {
    /// The row-identity cells every output starts with: line, smiles, name, then the input's
    /// other columns (`width` of them: an unreadable row has none of its own).
    fn identity(&self, width: usize) -> Vec<String> {
        let mut cells = vec![
            self.line.to_string(),
            self.smiles.clone(),
            self.name.clone().unwrap_or_default(),
        ];
        cells.extend(
            self.columns
                .iter()
                .cloned()
                .chain(std::iter::repeat(String::new()))
                .take(width),
        );
        cells
    }
}

/// Names of the input's columns that `predict`/`embed` pass through (a table's columns other
/// than the SMILES and name, an SD file's data items), after `line, smiles, name`; one that
/// would clash with an output column (`ours`) is prefixed `input_`.
fn input_columns(input: &Path, ours: &[String]) -> Result<Vec<String>> {
    let reader = read_molecules(input)?;
    let reserved = |c: &str| ["line", "smiles", "name"].contains(&c) || ours.iter().any(|o| o == c);
    Ok(reader
        .columns()
        .iter()
        .map(|c| {
            if reserved(c) {
                format!("input_{c}")
            } else {
                c.clone()
            }
        })
        .collect())
}

fn rows_of<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, w] = t.dims();
    let flat: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap_or_default();
    flat.chunks(w.max(1)).map(|c| c.to_vec()).collect()
}

/// Per molecule, the mean of each output over the samples (models × passes), followed by the
/// samples' standard deviations when `with_spread`.
fn mean_and_spread(samples: &[Vec<Vec<f32>>], with_spread: bool) -> Vec<Vec<f32>> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let n = samples.len() as f64;
    (0..first.len())
        .map(|row| {
            let width = first[row].len();
            let mut mean = vec![0f64; width];
            for s in samples {
                for (m, &v) in mean.iter_mut().zip(&s[row]) {
                    *m += f64::from(v) / n;
                }
            }
            let mut out: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
            if with_spread {
                for (k, &m) in mean.iter().enumerate() {
                    let var = samples
                        .iter()
                        .map(|s| (f64::from(s[row][k]) - m).powi(2))
                        .sum::<f64>()
                        / n;
                    out.push(var.sqrt() as f32);
                }
            }
            out
        })
        .collect()
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let mut read: Vec<&Path> = vec![args.run.checkpoint.as_path()];
    read.extend(args.ensemble.iter().map(PathBuf::as_path));
    check_output(&args.run.input, &args.output, &read)?;
    let (config, vocab, dict) = read_checkpoint_parts(&args.run.checkpoint)?;
    let head = config.head.clone().ok_or_else(|| {
        anyhow!(
            "{}: checkpoint has no prediction head",
            args.run.checkpoint.display()
        )
    })?;
    let extra: serde_json::Value = dict
        .metadata
        .get("extra")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut names = checkpoint_labels(&extra);
    if names.len() != head.num_tasks {
        names = (0..head.num_tasks).map(|t| format!("task_{t}")).collect();
    }
    let mut columns = Vec::new();
    for n in &names {
        if head.num_classes > 1 {
            for c in 0..head.num_classes {
                columns.push(format!("{n}_class_{c}"));
            }
        } else {
            // `logS_pred`, not `logS`: merged back onto the input, it must not clash with
            // (or be mistaken for) the measured column.
            columns.push(format!("{n}_pred"));
        }
    }
    // every ensemble member must predict the same outputs with the same vocabulary
    for member in &args.ensemble {
        let (c, v, _) = read_checkpoint_parts(member)?;
        let same_head = c.head.as_ref().is_some_and(|h| {
            h.num_tasks == head.num_tasks
                && h.num_classes == head.num_classes
                && h.task == head.task
        });
        if !same_head || v.identifiers() != vocab.identifiers() {
            bail!(
                "{}: not the same task or vocabulary as {}",
                member.display(),
                args.run.checkpoint.display()
            );
        }
    }
    let with_spread = !args.ensemble.is_empty() || args.mc_dropout > 1;
    let mut all_columns = columns.clone();
    if with_spread {
        all_columns.extend(columns.iter().map(|c| format!("{c}_std")));
    }
    let mut ours = all_columns.clone();
    ours.extend(["unknown_atoms".to_string(), "error".to_string()]);
    let passed = input_columns(&args.run.input, &ours)?;
    let width = passed.len();
    let mut header = vec!["line".to_string(), "smiles".to_string(), "name".to_string()];
    header.extend(passed);
    let mut out = if is_parquet(&args.output) {
        RowSink::Parquet(ParquetRows::create(
            &args.output,
            &header[1..],
            parquet_out::Values::Columns(all_columns.clone()),
        )?)
    } else {
        let mut w = csv::Writer::from_writer(data::AtomicOutput::create(&args.output)?);
        header.extend(ours);
        if writes_header(args.run.shard) {
            w.write_record(&header)?;
        }
        RowSink::Csv(w, all_columns.len())
    };
    let spec = args.run.device.unwrap_or_else(default_device);
    let members: Vec<&Path> = std::iter::once(args.run.checkpoint.as_path())
        .chain(args.ensemble.iter().map(PathBuf::as_path))
        .collect();
    let passes = args.mc_dropout;
    let options = StreamOptions::from(&args.run);
    let counts = with_backend!(spec, args.run.precision, |B, device, dtype| {
        type I = <B as AutodiffBackend>::InnerBackend;
        // MC dropout needs dropout on: the autodiff backend's forward (no backward is run)
        let mut plain: Vec<MolE<I>> = Vec::new();
        let mut stochastic: Vec<MolE<B>> = Vec::new();
        if passes > 1 {
            // the same dropout masks on every run of the same command
            B::seed(&device, 0);
        }
        for member in &members {
            if passes > 1 {
                stochastic.push(
                    Checkpoint::<B>::load(member, &device)?
                        .model
                        .with_compute_dtype(dtype),
                );
            } else {
                plain.push(
                    Checkpoint::<I>::load(member, &device)?
                        .model
                        .with_compute_dtype(dtype),
                );
            }
        }
        stream_molecules(
            &args.run.input,
            &vocab,
            options,
            |inputs| {
                let collated = collate(inputs);
                let mut samples: Vec<Vec<Vec<f32>>> = Vec::new();
                if passes > 1 {
                    let batch = BatchTensors::<B>::from_batch(&collated, &device);
                    for model in &stochastic {
                        for _ in 0..passes {
                            let out = model.forward_supervised(&batch, None, None);
                            samples.push(rows_of(model.predictions(out.logits)));
                        }
                    }
                } else {
                    let batch = BatchTensors::<I>::from_batch(&collated, &device);
                    for model in &plain {
                        let out = model.forward_supervised(&batch, None, None);
                        samples.push(rows_of(model.predictions(out.logits)));
                    }
                }
                Ok(mean_and_spread(&samples, with_spread))
            },
            |row, values| out.write(row, width, values),
        )
    })?;
    out.finish()?;
    eprintln!(
        "predict: {} predicted, {} rejected → {}",
        counts.ok,
        counts.rejected,
        args.output.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub run: InferenceArgs,
    /// Output: .npy (float32 [rows, hidden]: row i is data row i of the input — line i of a
    /// .smi, blank lines included — with NaN rows for rejected molecules; a sidecar
    /// `<name>.rows.csv` gives each row's line, smiles, name, the input's other columns,
    /// unknown_atoms and error), .csv (the same columns with e0..eH before unknown_atoms) or
    /// .parquet (an `embedding` list column, null for rejected rows); `-` writes the CSV to
    /// standard output.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Writes a float32 `.npy` incrementally through an [`data::AtomicOutput`]; the row count in
/// the header is patched at the end, before the file appears under its name.
struct NpyWriter {
    out: data::AtomicOutput,
    cols: usize,
    rows: usize,
}

const NPY_HEADER_LEN: usize = 128;

impl NpyWriter {
    fn create(path: &Path, cols: usize) -> Result<Self> {
        let mut w = Self {
            out: data::AtomicOutput::create(path)?,
            cols,
            rows: 0,
        };
        let h = w.header();
        w.out.write_all(&h)?;
        Ok(w)
    }

    fn header(&self) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.rows, self.cols
        );
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        let body_len = NPY_HEADER_LEN - 10;
        let mut body = dict.into_bytes();
        body.resize(body_len - 1, b' ');
        body.push(b'\n');
        h.extend_from_slice(&(body_len as u16).to_le_bytes());
        h.extend_from_slice(&body);
        h
    }

    fn push(&mut self, row: &[f32]) -> Result<()> {
        for v in row {
            self.out.write_all(&v.to_le_bytes())?;
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        use std::io::Seek;
        let h = self.header();
        let path = self.out.path().to_path_buf();
        let file = self.out.file_mut()?;
        file.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| file.write_all(&h))
            .and_then(|_| file.seek(std::io::SeekFrom::End(0)).map(|_| ()))
            .with_context(|| format!("{}: cannot write", path.display()))?;
        self.out.commit()
    }
}

/// The sidecar of an embedding `.npy`: `x.npy` → `x.rows.csv`.
fn npy_rows_path(npy: &Path) -> PathBuf {
    npy.with_extension("rows.csv")
}

pub fn embed(args: EmbedArgs) -> Result<()> {
    check_output(&args.run.input, &args.output, &[&args.run.checkpoint])?;
    let is_npy = args.output.extension().is_some_and(|e| e == "npy");
    // `-o -`: CSV on standard output
    let is_csv =
        data::is_stdout(&args.output) || args.output.extension().is_some_and(|e| e == "csv");
    let parquet = is_parquet(&args.output);
    if !is_npy && !is_csv && !parquet {
        bail!(
            "{}: output must end in .npy, .csv or .parquet",
            args.output.display()
        );
    }
    if is_npy {
        check_output(
            &args.run.input,
            &npy_rows_path(&args.output),
            &[&args.run.checkpoint],
        )?;
    }
    let (config, vocab, _) = read_checkpoint_parts(&args.run.checkpoint)?;
    let hidden = config.encoder.hidden_size;
    let embedding_columns: Vec<String> = (0..hidden).map(|i| format!("e{i}")).collect();
    let tail = ["unknown_atoms".to_string(), "error".to_string()];
    let mut ours = embedding_columns.clone();
    ours.extend(tail.iter().cloned());
    let passed = input_columns(&args.run.input, &ours)?;
    let width = passed.len();
    let mut identity_header = vec!["line".to_string(), "smiles".to_string(), "name".to_string()];
    identity_header.extend(passed);
    let mut npy = if is_npy {
        let mut rows =
            csv::Writer::from_writer(data::AtomicOutput::create(&npy_rows_path(&args.output))?);
        if writes_header(args.run.shard) {
            rows.write_record(identity_header.iter().chain(&tail))?;
        }
        Some((NpyWriter::create(&args.output, hidden)?, rows))
    } else {
        None
    };
    let mut parquet_rows = if parquet {
        Some(ParquetRows::create(
            &args.output,
            &identity_header[1..],
            parquet_out::Values::Embedding(hidden),
        )?)
    } else {
        None
    };
    let mut csvw = if is_csv {
        let mut w = csv::Writer::from_writer(data::AtomicOutput::create(&args.output)?);
        let mut header = identity_header.clone();
        header.extend(ours.iter().cloned());
        if writes_header(args.run.shard) {
            w.write_record(&header)?;
        }
        Some(w)
    } else {
        None
    };
    let spec = args.run.device.unwrap_or_else(default_device);
    let nan_row = vec![f32::NAN; hidden];
    let options = StreamOptions::from(&args.run);
    let counts = with_backend!(spec, args.run.precision, |B, device, dtype| {
        type I = <B as AutodiffBackend>::InnerBackend;
        let ckpt = Checkpoint::<I>::load(&args.run.checkpoint, &device)?;
        let model: MolE<I> = ckpt.model.with_compute_dtype(dtype);
        stream_molecules(
            &args.run.input,
            &vocab,
            options,
            |inputs| {
                let batch = BatchTensors::<I>::from_batch(&collate(inputs), &device);
                Ok(rows_of(model.embed(&batch)))
            },
            |row, out| {
                let v = out.unwrap_or(&nan_row);
                let status = [
                    row.unknown_atoms.to_string(),
                    row.error.clone().unwrap_or_default(),
                ];
                if let Some((n, rows)) = npy.as_mut() {
                    n.push(v)?;
                    rows.write_record(row.identity(width).iter().chain(&status))?;
                }
                if let Some(p) = parquet_rows.as_mut() {
                    let identity = row.identity(width);
                    p.push(parquet_out::Row {
                        line: row.line,
                        strings: &identity[1..],
                        values: out,
                        unknown_atoms: row.unknown_atoms,
                        error: row.error.as_deref(),
                    })?;
                }
                if let Some(w) = csvw.as_mut() {
                    let mut rec = row.identity(width);
                    rec.extend(v.iter().map(|x| x.to_string()));
                    rec.push(row.unknown_atoms.to_string());
                    rec.push(row.error.clone().unwrap_or_default());
                    w.write_record(&rec)?;
                }
                Ok(())
            },
        )
    })?;
    if let Some((n, rows)) = npy {
        n.finish()?;
        data::commit_csv(rows)?;
    }
    if let Some(w) = csvw {
        data::commit_csv(w)?;
    }
    if let Some(p) = parquet_rows {
        p.finish()?;
    }
    eprintln!(
        "embed: {} embedded, {} rejected (NaN rows) → {}",
        counts.ok,
        counts.rejected,
        args.output.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// benchmark

/// The benchmark protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// For each seed, a new train/valid/test split of the data (`--split random|scaffold`).
    Random,
    /// TDC's ADMET group: a fixed scaffold test set, a scaffold train/valid split per seed
    /// 1..=N, TDC's metric per dataset; `--data` may be a folder of tables or of TDC group
    /// folders (train_val.csv + test.csv, columns Drug and Y).
    Tdc,
}

#[derive(Args)]
pub struct BenchmarkArgs {
    /// random (default) or tdc.
    #[arg(long, value_enum, default_value = "random")]
    pub protocol: Protocol,
    /// Number of seeds (default: 3 with --protocol random, 5 with tdc, seeds 1..=5 as TDC).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
    /// TDC protocol: the test metric (default: TDC's for ADMET dataset names, else MAE for
    /// regression and AUROC for classification).
    #[arg(long, value_enum)]
    pub metric: Option<crate::tdc::TdcMetric>,
    /// TDC protocol on a single table: the seed of the scaffold split that sets aside the
    /// fixed 20 % test set.
    #[arg(long, default_value_t = 42)]
    pub test_seed: u64,
    /// `--checkpoint` to fine-tune from (omit for from-scratch) and every fine-tuning option.
    #[command(flatten)]
    pub finetune: FinetuneArgs,
}

pub fn benchmark(args: BenchmarkArgs) -> Result<()> {
    if args.protocol == Protocol::Tdc {
        return crate::tdc::run(&args);
    }
    let seeds = args.seeds.unwrap_or(3);
    let out = run_dir(&args.finetune.train, "benchmark");
    let mut results = Vec::new();
    let mut primary_name = String::new();
    for seed in 0..seeds {
        let mut per_seed = args.finetune.clone();
        per_seed.train.seed = Some(seed);
        per_seed.train.out = Some(out.join(format!("seed_{seed}")));
        let a = &per_seed.train;
        let settings = RunSettings::resolve(
            settings::FINETUNE_TOML,
            a.config.as_deref(),
            &per_seed.overrides(),
        )?;
        let r = supervised_run(
            &settings,
            per_seed.checkpoint.as_deref(),
            a.out.as_deref().unwrap_or(&out),
            a,
        )?;
        let test = r
            .test
            .ok_or_else(|| anyhow!("benchmark needs a test split (data.test_fraction > 0)"))?;
        primary_name = match r.kind {
            TaskKind::Regression => "rmse",
            TaskKind::BinaryClassification => "auroc",
            TaskKind::MulticlassClassification { .. } => "accuracy",
        }
        .to_string();
        eprintln!(
            "benchmark seed {seed}: {} → test {test}",
            r.best_checkpoint.display()
        );
        results.push(test);
    }
    let mut keys: Vec<String> = results
        .first()
        .and_then(|r| r.as_object())
        .map(|o| {
            o.keys()
                .filter(|k| !k.contains("_task_"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    let mut summary = serde_json::Map::new();
    println!("| metric | mean | std | n |\n|---|---|---|---|");
    for k in &keys {
        let vals: Vec<f64> = results.iter().filter_map(|r| r[k].as_f64()).collect();
        if vals.is_empty() {
            continue;
        }
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let std = if vals.len() > 1 {
            (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        println!("| {k} | {mean:.4} | {std:.4} | {} |", vals.len());
        summary.insert(
            k.clone(),
            serde_json::json!({ "mean": mean, "std": std, "values": vals }),
        );
    }
    let report = serde_json::json!({
        "primary_metric": primary_name,
        "seeds": seeds,
        "checkpoint": args.finetune.checkpoint.as_ref().map(|p| p.display().to_string()),
        "metrics": summary,
    });
    std::fs::create_dir_all(&out)?;
    data::write_atomic(
        &out.join("benchmark.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    eprintln!(
        "benchmark: {} → {}",
        primary_name,
        out.join("benchmark.json").display()
    );
    crate::report::after_run(&out);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// import / export / info

#[derive(Args)]
pub struct ImportArgs {
    /// Original weights: a PyTorch Lightning checkpoint (.ckpt), a `torch.save` state dict
    /// (.pt/.pth, any float dtype) or safetensors; repeat for several files whose union is the
    /// state_dict. No Python needed.
    #[arg(long = "weights", required = true)]
    pub weights: Vec<PathBuf>,
    /// Encoder config: the original's hydra YAML (`config_file.yaml` of a run), a .ckpt whose
    /// hyper-parameters hold it, or JSON/TOML with the original deberta_config fields (or a JSON
    /// holding `model_config_resolved` / `deberta_config`). Default: the hyper-parameters of
    /// the first .ckpt in --weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Vocabulary JSON the weights were trained with (default: bundled).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Task of the prediction head, when the weights have one.
    #[arg(long, value_enum, default_value_t = TaskType::Regression)]
    pub task: TaskType,
    #[arg(long, default_value_t = 1)]
    pub num_classes: usize,
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Whether `path` is a PyTorch (zip) file rather than safetensors.
fn is_torch_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// The `deberta_config` a Lightning checkpoint's hyper-parameters hold.
fn deberta_config_of_checkpoint(
    hyper_parameters: Option<serde_json::Value>,
    path: &Path,
) -> Result<mole_nn::DebertaConfig> {
    let hp = hyper_parameters.with_context(|| {
        format!(
            "{}: no hyper_parameters (a plain state dict); pass --config with the model config",
            path.display()
        )
    })?;
    let deberta = hp
        .pointer("/model/deberta_config")
        .or_else(|| hp.get("deberta_config"))
        .filter(|v| v.is_object())
        .with_context(|| {
            format!(
                "{}: hyper_parameters hold no model.deberta_config; pass --config",
                path.display()
            )
        })?;
    serde_json::from_value(deberta.clone())
        .with_context(|| format!("{}: not a DeBERTa config", path.display()))
}

/// The `deberta_config:` block of the original's hydra YAML (a mapping of scalars, the only
/// part of the run config the model needs), as JSON.
fn deberta_config_of_yaml(text: &str, path: &Path) -> Result<serde_json::Value> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "deberta_config:")
        .with_context(|| format!("{}: no `deberta_config:` block", path.display()))?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[start]);
    let mut map = serde_json::Map::new();
    for line in &lines[start + 1..] {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if indent(line) <= base {
            break;
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
        let parsed = match value {
            "null" | "~" | "" => serde_json::Value::Null,
            "true" | "True" => serde_json::Value::Bool(true),
            "false" | "False" => serde_json::Value::Bool(false),
            v => v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .or_else(|_| v.parse::<f64>().map(serde_json::Value::from))
                .unwrap_or_else(|_| serde_json::Value::String(v.to_string())),
        };
        map.insert(key.trim().to_string(), parsed);
    }
    Ok(serde_json::Value::Object(map))
}

fn read_encoder_config(path: &Path) -> Result<mole_nn::DebertaConfig> {
    if is_torch_file(path) {
        let torch = mole_nn::TorchFile::open(path)?;
        deberta_config_of_checkpoint(torch.hyper_parameters(), path)
    } else {
        read_encoder_config_text(path)
    }
}

fn read_encoder_config_text(path: &Path) -> Result<mole_nn::DebertaConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let cfg: mole_nn::DebertaConfig = if is_yaml {
        serde_json::from_value(deberta_config_of_yaml(&text, path)?)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    } else if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let inner = v
            .get("model_config_resolved")
            .or_else(|| v.get("deberta_config"))
            .cloned()
            .unwrap_or(v);
        serde_json::from_value(inner)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("{}: not a DeBERTa config", path.display()))?
    };
    Ok(cfg)
}

pub fn import(args: ImportArgs) -> Result<()> {
    let vocab = load_vocab(args.vocab.as_deref())?;
    // each weights file is read once; the first PyTorch file's hyper-parameters are kept in
    // case they have to give the config
    let mut dict = StateDict::default();
    let mut first_torch: Option<(&Path, Option<serde_json::Value>)> = None;
    for w in &args.weights {
        if is_torch_file(w) {
            let torch = mole_nn::TorchFile::open(w)?;
            dict.extend(torch.state_dict()?);
            if first_torch.is_none() {
                first_torch = Some((w, torch.hyper_parameters()));
            }
        } else {
            dict.extend(StateDict::load(w)?);
        }
    }
    let mut encoder = match (&args.config, first_torch) {
        (Some(path), _) => read_encoder_config(path)?,
        (None, Some((path, hyper_parameters))) => {
            deberta_config_of_checkpoint(hyper_parameters, path)?
        }
        (None, None) => bail!("--config is needed: no .ckpt among --weights to read it from"),
    };
    encoder.vocab_size = vocab.vocab_size();
    encoder.validate()?;
    if dict.tensors.keys().all(|k| k.starts_with("model.")) {
        dict = dict.strip_prefix("model.");
    }
    if let Some(table) = dict.tensors.get("MolE.embeddings.word_embeddings.weight") {
        let rows = table.shape.first().copied().unwrap_or(0);
        if rows != vocab.vocab_size() {
            bail!(
                "the weights' token table has {rows} rows but the vocabulary has {} tokens: pass \
                 --vocab with the vocabulary the weights were trained with (the original MolE's \
                 207 atom environments give 211 tokens)",
                vocab.vocab_size()
            );
        }
    }
    let head = dict
        .tensors
        .get("prediction_head.classifier.weight")
        .map(|t| {
            let outputs = t.shape[0];
            HeadConfig {
                task: args.task,
                num_tasks: outputs / args.num_classes.max(1),
                num_classes: args.num_classes,
                dropout: None,
            }
        });
    let config = MolEConfig {
        encoder,
        head,
        atom_env_head: None,
    };
    type I = burn::backend::Flex;
    let device = Default::default();
    let model = mole_model::load_state_dict(MolE::<I>::new(&config, &device), &dict, &device)?;
    Checkpoint {
        config,
        model,
        vocab,
        target_vocab: None,
        extra: serde_json::json!({ "imported_from": args.weights }),
    }
    .save(&args.output)?;
    eprintln!(
        "import: {} tensors → {}",
        dict.tensors.len(),
        args.output.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// A mole checkpoint.
    pub checkpoint: PathBuf,
    /// Output safetensors with the original PyTorch names (`MolE.*`, `prediction_head.*`).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let (_, _, mut dict) = read_checkpoint_parts(&args.checkpoint)?;
    dict.metadata.clear();
    dict.save(&args.output)?;
    eprintln!(
        "export: {} tensors → {}",
        dict.tensors.len(),
        args.output.display()
    );
    Ok(())
}

pub fn info() -> Result<()> {
    println!("mole {}", env!("CARGO_PKG_VERSION"));
    println!("compiled backends: {}", compiled_backends().join(", "));
    println!("default device: {}", default_device());
    println!("cpu threads: {}", rayon::current_num_threads());
    for spec in [
        DeviceSpec::Cpu,
        DeviceSpec::Cuda(0),
        DeviceSpec::Vulkan(0),
        DeviceSpec::Wgpu(0),
        DeviceSpec::Metal,
    ] {
        let probe = std::panic::catch_unwind(|| {
            with_backend!(spec, |B, device| {
                let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
                let s: f32 = burn::tensor::ElementConversion::elem(t.sum().into_scalar());
                Ok::<_, anyhow::Error>(s)
            })
        });
        match probe {
            Ok(Ok(v)) if (v - 6.0).abs() < 1e-6 => println!("  {spec}: available"),
            Ok(Ok(v)) => println!("  {spec}: wrong result {v}"),
            Ok(Err(e)) if e.to_string().contains("cargo feature") => {}
            Ok(Err(e)) => println!("  {spec}: unavailable ({e})"),
            Err(_) => println!("  {spec}: unavailable (device initialisation failed)"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// parity

#[derive(Args)]
pub struct ParityArgs {
    /// The parity fixture folder (batch.json, small_l2_h64/, medium_l4_h128/).
    #[arg(long, default_value = "../shared/fixtures/parity")]
    pub fixtures: PathBuf,
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// f32, bf16 or f16 (default: bf16 on CUDA, f32 elsewhere); reduced precision uses the
    /// tolerances justified in crates/mole-model/tests/parity_mixed_precision.rs.
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
    /// Multiply every tolerance by this factor (for reduced-precision backends; state why).
    #[arg(long, default_value_t = 1.0)]
    pub tolerance_scale: f64,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn parity(args: ParityArgs) -> Result<()> {
    let spec = args.device.unwrap_or_else(default_device);
    let report = with_backend!(spec, args.precision, |B, device, dtype| {
        // Reduced precision: the tolerances derived in
        // crates/mole-model/tests/parity_mixed_precision.rs.
        let tol =
            mole_model::parity::Tolerances::for_compute_dtype(dtype).scaled(args.tolerance_scale);
        let report = mole_model::parity::check_all::<B>(&args.fixtures, tol, dtype, &device)?;
        Ok::<_, anyhow::Error>((report, dtype.is_some()))
    })?;
    let reduced = report.1;
    let mut report = report.0;
    // Key-bias gradients, which the softmax cancels analytically, and the f32-exact Adam
    // comparison are left out in reduced precision.
    if reduced {
        report.checks.retain(|c| {
            !c.name.contains("attention.self.key_proj.bias") && !c.name.contains("Adam")
        });
    }
    for c in &report.checks {
        println!(
            "{} {:<72} {:.3e} (tolerance {:.1e})",
            if c.passed() { "ok  " } else { "FAIL" },
            c.name,
            c.error,
            c.tolerance
        );
    }
    if let Some(p) = &args.json {
        data::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    let failures = report.failures().len();
    println!(
        "parity on {spec}: {} checks, {failures} failed",
        report.checks.len()
    );
    if report.checks.is_empty() {
        bail!(
            "{}: no parity fixtures found (expected small_l2_h64/ or medium_l4_h128/ there)",
            args.fixtures.display()
        );
    }
    if failures > 0 {
        bail!("{failures} parity check(s) failed on {spec}");
    }
    Ok(())
}
