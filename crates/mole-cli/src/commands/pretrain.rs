//! Training commands: their arguments, shared helpers, and `pretrain` (stage 1 on an in-memory or streaming corpus; stage 2 through the supervised path).

use super::*;

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
    /// Checkpoint to start from (stage 2 usually starts from stage 1's best.safetensors), or a
    /// bundled model's name.
    #[arg(long, value_parser = crate::checkpoint_arg)]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Args, Clone)]
pub struct FinetuneArgs {
    /// Pretrained checkpoint whose encoder (and vocabulary) to start from, or a bundled model's
    /// name. Default: the bundled mole-tiny-zinc-chembl when the model is tiny (the default)
    /// and no vocabulary of your own is set (data.vocab); else from scratch.
    #[arg(long, value_parser = crate::checkpoint_arg, conflicts_with = "from_scratch")]
    pub checkpoint: Option<PathBuf>,
    /// Train from random weights instead of the bundled pretrained model.
    #[arg(long)]
    pub from_scratch: bool,
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
pub(crate) fn devices_of(args: &TrainArgs) -> Result<Vec<DeviceSpec>> {
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

/// The run directory: `--out`, else runs/<default>; node K > 0 of a group of machines keeps its
/// own copy in <out>/node-K (it needs it to resume; node 0's is the run's).
pub(crate) fn run_dir(args: &TrainArgs, default: &str) -> PathBuf {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(default));
    match args.node_rank {
        0 => out,
        k => out.join(format!("node-{k}")),
    }
}

/// The rows of a streamed corpus's `part` (one reading pass, counting only).
pub(crate) fn count_stream_rows(
    spec: &mole_train::data::stream::StreamSpec,
    part: mole_featurize::split::Part,
) -> Result<usize> {
    let bar = data::progress_spinner("{spinner} counting the corpus: {pos} molecules ({per_sec})");
    let mut rows = 0usize;
    for row in spec.part_rows(part) {
        row?;
        rows += 1;
        if rows.is_multiple_of(4096) {
            bar.set_position(rows as u64);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Steps of one epoch over `rows` streamed molecules: batches are made per window, the last of
/// each possibly short (molecules that fail to featurise make the count a slight
/// overestimate: the last epoch then ends when the stream does).
pub(crate) fn stream_steps_per_epoch(rows: usize, window: usize, batch: usize) -> usize {
    let full = (rows / window) * window.div_ceil(batch);
    (full + (rows % window).div_ceil(batch)).max(1)
}

pub fn pretrain(args: PretrainArgs) -> Result<()> {
    if args.stage == Stage::Multitask {
        let ft = FinetuneArgs {
            checkpoint: args.checkpoint,
            // stage 2 starts where --checkpoint says (starting_checkpoint is finetune's)
            from_scratch: false,
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
    let nodes = join_nodes(a)?;
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
    if settings.data.stream && settings.data.deduplicate {
        bail!(
            "data.deduplicate works on an in-memory corpus (data.stream = false): a stream \
             would have to remember every molecule it has read"
        );
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
        streaming_corpus(&settings, &vocab, &out, a.resume)?
    } else {
        in_memory_corpus(&settings, &vocab, &out)?
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
        config: settings.train.clone(),
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
        info: mole_model::CheckpointInfo {
            stage: Some(mole_model::TrainingStage::AtomEnv),
            majority_baseline_accuracy: Some(majority),
            ..Default::default()
        },
        interrupt_after: a.interrupt_after,
        nodes,
        on_stall: Some(trainer::end_stalled_node()),
    };
    let outcome = with_backend!(devices = &devices, a.precision, |B, devices, dtype| {
        trainer::train::<B>(job, &devices, dtype, &settings)
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
pub(crate) fn print_metrics(title: &str, metrics: &serde_json::Value) {
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

pub(crate) fn take_split(
    examples: Vec<Example>,
    a: &[usize],
    b: &[usize],
) -> (Vec<Example>, Vec<Example>) {
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
pub(crate) fn read_checkpoint_parts(path: &Path) -> Result<(MolEConfig, Vocabulary, StateDict)> {
    let dict = StateDict::load(path)?;
    let (config, vocab) = mole_model::config_and_vocab(&dict, &path.display().to_string())?;
    Ok((config, vocab, dict))
}

/// The typed `extra` metadata of a checkpoint read with [`read_checkpoint_parts`].
pub(crate) fn checkpoint_info(path: &Path, dict: &StateDict) -> Result<mole_model::CheckpointInfo> {
    Ok(mole_model::CheckpointInfo::from_metadata(
        dict,
        &path.display().to_string(),
    )?)
}

pub(crate) fn without_heads(mut dict: StateDict, prefixes: &[&str]) -> StateDict {
    dict.tensors
        .retain(|k, _| !prefixes.iter().any(|p| k.starts_with(p)));
    dict
}

/// Refuses data without any label (training would see a loss of 0 and learn nothing); warns
/// about tasks without labels and classification tasks with a single class (AUROC is then
/// undefined and the model can only learn a constant).
pub(crate) fn check_labels(
    path: &Path,
    names: &[String],
    labels: &[Vec<f32>],
    kind: TaskKind,
) -> Result<()> {
    let count = |t: usize| labels.iter().filter(|y| !y[t].is_nan()).count();
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
            let mut classes: Vec<f32> = labels
                .iter()
                .map(|y| y[t])
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

pub(crate) fn task_kind(kind: TaskType, num_classes: usize) -> TaskKind {
    match (kind, num_classes) {
        (TaskType::Regression, _) => TaskKind::Regression,
        (_, 1) => TaskKind::BinaryClassification,
        (_, c) => TaskKind::MulticlassClassification { num_classes: c },
    }
}

/// A pretraining corpus with its target vocabulary: the training data, the validation
/// molecules, the radius-2 target vocabulary and the majority-class baseline of masked-atom
/// accuracy.
pub(crate) type PretrainCorpus = (trainer::TrainData, Vec<Example>, Vocabulary, f64);

/// Share of the most frequent target among the examples' atoms (always predicting it).
pub(crate) fn majority_baseline(examples: &[Example]) -> f64 {
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

/// The whole corpus featurised before the first step (`data.train`: one file, or several and
/// globs, comma-separated; `data.deduplicate`: one molecule per canonical SMILES), split by
/// `data.split_method`.
pub(crate) fn in_memory_corpus(
    settings: &RunSettings,
    vocab: &Vocabulary,
    out: &Path,
) -> Result<PretrainCorpus> {
    let files = mole_train::data::stream::corpus_files(&settings.data.train)?;
    let mut examples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, corpus) in files.iter().enumerate() {
        readable(corpus)?;
        tracing::info!("reading {}", corpus.display());
        let (rows, mut rejects) = data::read_smiles(corpus)
            .with_context(|| format!("pretraining corpus {}", corpus.display()))?;
        let (featurized, bad) =
            data::featurize_rows_with_bar(rows, vocab, settings.data.max_atoms, true, "featurize");
        rejects.extend(bad);
        // one file keeps the established name; several get one list each
        let rejects_file = if files.len() == 1 {
            "rejects.csv".to_string()
        } else {
            format!("rejects-{}.csv", i + 1)
        };
        data::report_rejects(corpus, &rejects, Some(&out.join(rejects_file)))?;
        let featurized = if settings.data.deduplicate {
            let (kept, dropped) = data::deduplicate(featurized, &mut seen);
            tracing::info!(
                "{}: {} molecules kept, {dropped} duplicates dropped",
                corpus.display(),
                kept.len()
            );
            kept
        } else {
            featurized
        };
        examples.extend(featurized);
    }

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
pub(crate) fn given_target_vocab(d: &settings::DataSettings) -> Result<Option<Vocabulary>> {
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

/// A streaming run records its corpus's files (path and size) in `<run>/corpus.json`; a
/// resumed run must find the same ones, since the stream position is counted in batches of
/// that corpus (a shard added, renamed or rewritten would move every batch).
/// A streamed corpus's files (`data.train`: a comma list, globs), each checked readable, and
/// on `--resume` checked to be the files the run started on; the stream's sizes checked too.
pub(crate) fn stream_files(
    d: &settings::DataSettings,
    out: &Path,
    resume: bool,
) -> Result<Vec<PathBuf>> {
    if d.stream_window == 0 || d.stream_sample == 0 {
        bail!("data.stream_window and data.stream_sample must be at least 1");
    }
    let files = mole_train::data::stream::corpus_files(&d.train)?;
    for f in &files {
        readable(f)?;
    }
    check_same_corpus(out, &files, resume)?;
    Ok(files)
}

pub(crate) fn check_same_corpus(out: &Path, files: &[PathBuf], resume: bool) -> Result<()> {
    let listing: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            serde_json::json!({ "path": f.display().to_string(), "bytes": bytes })
        })
        .collect();
    let listing = serde_json::json!({ "files": listing });
    let path = out.join("corpus.json");
    if resume && path.exists() {
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not JSON", path.display()))?;
        if saved != listing {
            bail!(
                "--resume: the corpus is not the one this run started on (files or sizes \
                 differ from {}); the stream position would point at other molecules",
                path.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(out)?;
    data::write_atomic(&path, serde_json::to_string_pretty(&listing)?.as_bytes())
}

/// Validation molecules a streaming corpus keeps in memory at most.
pub(crate) const STREAM_VALID_LIMIT: usize = 10_000;

/// A streaming corpus (`data.stream`): the first `data.stream_sample` molecules set the target
/// vocabulary and give the validation set (the hash-selected among them, which the stream
/// leaves out everywhere); training reads the files as it goes.
pub(crate) fn streaming_corpus(
    settings: &RunSettings,
    vocab: &Vocabulary,
    out: &Path,
    resume: bool,
) -> Result<PretrainCorpus> {
    let d = &settings.data;
    if d.split_method != mole_featurize::split::SplitMethod::Random {
        bail!("data.stream: the validation split of a stream is by SMILES hash (split_method = \"random\")");
    }
    let files = stream_files(d, out, resume)?;
    tracing::info!(
        "streaming {} file(s); target vocabulary from the first {} molecules",
        files.len(),
        d.stream_sample
    );
    let mut spec = mole_train::data::stream::StreamSpec {
        files,
        seed: settings.train.seed,
        window: d.stream_window,
        batch_size: settings.train.batch_size,
        max_atoms: d.max_atoms,
        valid_fraction: d.valid_fraction,
        test_fraction: 0.0,
        vocab: vocab.clone(),
        target_vocab: None,
        table: None,
    };
    let (sample_rows, valid_rows, mut rejects) =
        mole_train::data::stream::sample(&spec, d.stream_sample, STREAM_VALID_LIMIT)?;
    // radius-2 counts over the sample, featurised a window at a time so that only the counts
    // stay in memory
    let mut counts: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut usable = 0usize;
    rejects.extend(data::featurize_in_windows_with_bar(
        sample_rows,
        vocab,
        d.max_atoms,
        true,
        d.stream_window,
        "sample",
        |examples| {
            usable += examples.len();
            for (id, n) in data::count_targets(examples.iter()) {
                *counts.entry(id).or_default() += n;
            }
        },
    ));
    let (mut valid, bad) =
        data::featurize_rows_with_bar(valid_rows, vocab, d.max_atoms, true, "validation");
    rejects.extend(bad);
    data::report_rejects(&spec.files[0], &rejects, Some(&out.join("rejects.csv")))?;
    if usable == 0 {
        bail!(
            "{}: no usable molecule at the start of the corpus",
            spec.files[0].display()
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
        let rows = count_stream_rows(&spec, mole_featurize::split::Part::Train)?;
        tracing::info!("corpus: {rows} training molecules");
        Some(stream_steps_per_epoch(
            rows,
            d.stream_window,
            settings.train.batch_size,
        ))
    };
    spec.target_vocab = Some(target_vocab.clone());
    Ok((
        trainer::TrainData::Stream {
            batches: std::sync::Arc::new(mole_train::data::stream::StreamCorpus(
                std::sync::Arc::new(spec),
            )),
            steps_per_epoch,
        },
        valid,
        target_vocab,
        majority,
    ))
}
