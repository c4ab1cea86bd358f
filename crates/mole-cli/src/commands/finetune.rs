//! `finetune` and the supervised run it shares with multitask pretraining and benchmarks.

use super::*;

pub fn finetune(mut args: FinetuneArgs) -> Result<SupervisedOutcome> {
    args.checkpoint = args.starting_checkpoint()?;
    supervised(args, settings::FINETUNE_TOML, "finetune")
}

impl FinetuneArgs {
    /// Where fine-tuning starts: `--checkpoint`; else from scratch with `--from-scratch`, a
    /// model other than tiny or a vocabulary of one's own (the bundled model has neither);
    /// else the bundled pretrained model (`mole_model::zoo::DEFAULT_MODEL`).
    pub(crate) fn starting_checkpoint(&self) -> Result<Option<PathBuf>> {
        if self.checkpoint.is_some() || self.from_scratch {
            return Ok(self.checkpoint.clone());
        }
        let a = &self.train;
        let settings = RunSettings::resolve(
            settings::FINETUNE_TOML,
            a.config.as_deref(),
            &self.overrides(),
        )?;
        let name = mole_model::zoo::DEFAULT_MODEL;
        if settings.model != "tiny" || !settings.data.vocab.is_empty() {
            tracing::info!(
                "training from scratch: the bundled pretrained {name} is the tiny model with \
                 mole's vocabulary"
            );
            return Ok(None);
        }
        tracing::info!(
            "starting from the bundled pretrained {name} (--from-scratch for random weights)"
        );
        Ok(Some(mole_model::zoo::resolve_checkpoint(Path::new(name))?))
    }

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

pub(crate) fn supervised(
    args: FinetuneArgs,
    base_toml: &str,
    default_out: &str,
) -> Result<SupervisedOutcome> {
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
    let nodes = join_nodes(a)?;
    let task = settings
        .task
        .clone()
        .ok_or_else(|| anyhow!("config has no [task] section"))?;
    if settings.data.deduplicate {
        bail!(
            "data.deduplicate is for stage-1 pretraining corpora; labelled tables keep every row \
             (duplicates may carry different labels)"
        );
    }
    let path = PathBuf::from(&settings.data.train);
    if !settings.data.stream {
        readable(&path)?;
    }
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
    let kind = task_kind(task.kind, task.num_classes);
    let LabelledCorpus {
        label_names,
        train,
        valid,
        test,
        train_labels,
    } = if settings.data.stream {
        labelled_stream(settings, &vocab, kind, out, a.resume)?
    } else {
        labelled_in_memory(settings, &vocab, kind, &path, out)?
    };
    let num_tasks = label_names.len();
    let positive_weights = (task.balanced_class_weights && kind == TaskKind::BinaryClassification)
        .then(|| {
            (0..num_tasks)
                .map(|t| {
                    let (mut pos, mut neg) = (0f32, 0f32);
                    for labels in &train_labels {
                        match labels[t] {
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
        mole_model::TargetStandardization::fit(train_labels.iter().map(Vec::as_slice), num_tasks)
    });
    drop(train_labels);
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
        config: settings.train.clone(),
        run_dir: out.to_path_buf(),
        model_config,
        vocab: vocab.clone(),
        target_vocab: None,
        train,
        valid,
        objective: objective.clone(),
        init,
        resume: a.resume,
        info: mole_model::CheckpointInfo {
            task: Some(task.kind),
            label_names: label_names.clone(),
            target_standardization: standardization.clone(),
            ..Default::default()
        },
        interrupt_after: a.interrupt_after,
        nodes,
        on_stall: Some(trainer::end_stalled_node()),
    };
    let batch_size = settings.train.batch_size;
    let seed = settings.train.seed;
    // every node of a group holds the same model: node 0 alone tests it
    let has_test = job.nodes.as_ref().is_none_or(|n| n.rank == 0)
        && !matches!(&test, TestSet::InMemory(t) if t.is_empty());
    let (outcome, test_metrics) =
        with_backend!(devices = &devices, a.precision, |B, devices, dtype| {
            let outcome = trainer::train::<B>(job, &devices, dtype, settings)?;
            let tested = if has_test {
                let test_run = TestRun {
                    test: &test,
                    objective: &checkpoint_objective,
                    vocab: &vocab,
                    batch_size,
                    seed,
                    max_atoms: settings.data.max_atoms,
                    out,
                    label_names: &label_names,
                    kind,
                };
                test_run.run::<<B as AutodiffBackend>::InnerBackend>(
                    &outcome.best_checkpoint,
                    dtype,
                    &devices[0],
                )?
            } else {
                None
            };
            Ok::<_, anyhow::Error>((outcome, tested))
        })?;
    let test_metrics = match test_metrics {
        Some((metrics, tested)) => {
            let mut entry = metrics.clone();
            entry["kind"] = "test".into();
            entry["molecules"] = tested.into();
            trainer::MetricsLog::open(out)?.write(entry)?;
            Some(metrics)
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

/// Testing a run's best checkpoint.
struct TestRun<'a> {
    test: &'a TestSet,
    objective: &'a Objective,
    vocab: &'a Vocabulary,
    batch_size: usize,
    seed: u64,
    max_atoms: usize,
    out: &'a Path,
    label_names: &'a [String],
    kind: TaskKind,
}

impl TestRun<'_> {
    /// The test metrics of the checkpoint at `best` and the number of molecules tested (`None`
    /// when none was), writing `test_predictions.csv` as it goes.
    fn run<B: Backend>(
        &self,
        best: &Path,
        dtype: Option<burn::tensor::DType>,
        device: &B::Device,
    ) -> Result<Option<(serde_json::Value, usize)>> {
        let model = Checkpoint::<B>::load(best, device)?
            .model
            .with_compute_dtype(dtype);
        let mut evaluator = trainer::Evaluator::new(self.objective, self.seed);
        let mut rejected = 0usize;
        let mut csv = TestPredictionsCsv::create(self.out, self.label_names, self.kind)?;
        let mut add = |part: &[Example]| -> Result<()> {
            let predictions = evaluator.add(&model, part, self.vocab, self.batch_size, device)?;
            if let Some(csv) = csv.as_mut() {
                csv.add(part, &predictions)?;
            }
            Ok(())
        };
        match self.test {
            TestSet::InMemory(test) => add(test)?,
            TestSet::Stream(spec) => {
                // featurised and evaluated a part at a time: memory stays bounded
                let bar = data::progress_spinner("{spinner} test: {pos} molecules ({per_sec})");
                let mut rows = spec.part_rows(mole_featurize::split::Part::Test);
                loop {
                    let part = rows
                        .by_ref()
                        .take(TEST_PART)
                        .collect::<Result<Vec<data::RawRow>, _>>()?;
                    if part.is_empty() {
                        break;
                    }
                    let (examples, bad) =
                        data::featurize_rows(part, self.vocab, self.max_atoms, false, &|_| {});
                    rejected += bad.len();
                    add(&examples)?;
                    bar.inc(examples.len() as u64);
                }
                bar.finish_and_clear();
            }
        }
        if rejected > 0 {
            tracing::warn!(
                "{rejected} test molecule(s) could not be featurised and were not tested"
            );
        }
        let tested = evaluator.examples();
        if tested == 0 {
            return Ok(None);
        }
        if let Some(csv) = csv {
            csv.commit()?;
        }
        Ok(Some((evaluator.finish(), tested)))
    }
}

/// Molecules featurised and evaluated together in a streamed test set.
const TEST_PART: usize = 4096;

/// The test set's measured and predicted values, one row per (molecule, task) with a label,
/// for the run's plots ([`crate::report::TEST_PREDICTIONS`]), written as the test set is
/// evaluated. Not written for multi-class heads (several outputs per task).
pub(crate) struct TestPredictionsCsv {
    writer: csv::Writer<data::AtomicOutput>,
    label_names: Vec<String>,
}

impl TestPredictionsCsv {
    pub(crate) fn create(
        out: &Path,
        label_names: &[String],
        kind: TaskKind,
    ) -> Result<Option<Self>> {
        if label_names.is_empty() || matches!(kind, TaskKind::MulticlassClassification { .. }) {
            return Ok(None);
        }
        let path = out.join(crate::report::TEST_PREDICTIONS);
        let mut writer = csv::Writer::from_writer(data::AtomicOutput::create(&path)?);
        writer.write_record(["line", "smiles", "task", "measured", "predicted"])?;
        Ok(Some(Self {
            writer,
            label_names: label_names.to_vec(),
        }))
    }

    pub(crate) fn add(&mut self, examples: &[data::Example], predictions: &[f32]) -> Result<()> {
        let tasks = self.label_names.len();
        if predictions.len() != examples.len() * tasks {
            bail!(
                "{} predictions for {} molecules of {tasks} tasks",
                predictions.len(),
                examples.len()
            );
        }
        for (example, row) in examples.iter().zip(predictions.chunks(tasks)) {
            for ((name, &y), &p) in self.label_names.iter().zip(&example.labels).zip(row) {
                if y.is_nan() {
                    continue;
                }
                self.writer.write_record([
                    example.line.to_string(),
                    example.smiles.clone(),
                    name.clone(),
                    y.to_string(),
                    p.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    pub(crate) fn commit(self) -> Result<()> {
        data::commit_csv(self.writer)
    }
}

/// A supervised run's molecules.
struct LabelledCorpus {
    label_names: Vec<String>,
    train: trainer::TrainData,
    valid: Vec<Example>,
    test: TestSet,
    /// The training molecules' labels (streaming: the sample's), for class weights and target
    /// standardisation.
    train_labels: Vec<Vec<f32>>,
}

/// The molecules a run is tested on.
enum TestSet {
    InMemory(Vec<Example>),
    /// The test part of a streamed corpus, read again after training.
    Stream(std::sync::Arc<mole_train::data::stream::StreamSpec>),
}

/// A labelled table read, featurised and split in memory.
fn labelled_in_memory(
    settings: &RunSettings,
    vocab: &Vocabulary,
    kind: TaskKind,
    path: &Path,
    out: &Path,
) -> Result<LabelledCorpus> {
    let table = data::read_table(
        path,
        &settings.data.smiles_column,
        &settings.data.label_columns,
        &settings.data.split_column,
    )?;
    if table.label_names.is_empty() {
        bail!("{}: no label columns", path.display());
    }
    let mut rejects = table.rejects;
    let (examples, bad) = data::featurize_rows_with_bar(
        table.rows,
        vocab,
        settings.data.max_atoms,
        false,
        "featurize",
    );
    rejects.extend(bad);
    // Class labels must be class indices.
    let mut examples_ok = Vec::with_capacity(examples.len());
    for e in examples {
        match data::bad_label(kind, &e.labels) {
            Some(reason) => rejects.push(data::Reject {
                line: e.line,
                smiles: e.smiles,
                reason,
            }),
            None => examples_ok.push(e),
        }
    }
    data::report_rejects(path, &rejects, Some(&out.join("rejects.csv")))?;
    let examples = examples_ok;
    let labels: Vec<Vec<f32>> = examples.iter().map(|e| e.labels.clone()).collect();
    check_labels(path, &table.label_names, &labels, kind)?;
    warn_binary_regression(path, &labels, kind);

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
        table.label_names.len(),
        table.label_names.join(", "),
        train.len(),
        valid.len(),
        test.len()
    );
    Ok(LabelledCorpus {
        label_names: table.label_names,
        train_labels: train.iter().map(|e| e.labels.clone()).collect(),
        train: trainer::TrainData::InMemory(train),
        valid,
        test: TestSet::InMemory(test),
    })
}

/// A labelled corpus read as a stream (`data.stream`): one or many tables (a list, globs),
/// split by a split column or a SMILES hash; class weights and target standardisation come
/// from the first `data.stream_sample` training molecules, validation from the validation
/// molecules among them, and the test part is read again after training.
fn labelled_stream(
    settings: &RunSettings,
    vocab: &Vocabulary,
    kind: TaskKind,
    out: &Path,
    resume: bool,
) -> Result<LabelledCorpus> {
    let d = &settings.data;
    if d.split_method != mole_featurize::split::SplitMethod::Random && d.split_column.is_empty() {
        bail!(
            "data.stream: a stream is split by a split column or a SMILES hash, not by scaffold \
             (split the table first with `mole split --method scaffold` and use its split column)"
        );
    }
    let files = stream_files(d, out, resume)?;
    let (label_names, _) = data::table_rows(
        &files[0],
        &d.smiles_column,
        &d.label_columns,
        &d.split_column,
    )?;
    if label_names.is_empty() {
        bail!("{}: no label columns", files[0].display());
    }
    let spec = mole_train::data::stream::StreamSpec {
        files,
        seed: settings.train.seed,
        window: d.stream_window,
        batch_size: settings.train.batch_size,
        max_atoms: d.max_atoms,
        valid_fraction: d.valid_fraction,
        test_fraction: d.test_fraction,
        vocab: vocab.clone(),
        target_vocab: None,
        table: Some(mole_train::data::stream::TableSpec {
            smiles_column: d.smiles_column.clone(),
            label_columns: d.label_columns.clone(),
            split_column: d.split_column.clone(),
            label_names: label_names.clone(),
            kind,
        }),
    };
    tracing::info!(
        "streaming {} labelled file(s) ({} tasks: {}); label statistics from the first {} \
         training molecules",
        spec.files.len(),
        label_names.len(),
        label_names.join(", "),
        d.stream_sample
    );
    let (sample_rows, _, mut rejects) =
        mole_train::data::stream::sample(&spec, d.stream_sample, 0)?;
    // the statistics count the molecules training will see: those that featurise
    let mut train_labels: Vec<Vec<f32>> = Vec::with_capacity(sample_rows.len());
    rejects.extend(data::featurize_in_windows_with_bar(
        sample_rows,
        vocab,
        d.max_atoms,
        false,
        d.stream_window,
        "sample",
        |examples| train_labels.extend(examples.into_iter().map(|e| e.labels)),
    ));
    // the validation rows wherever they are in the corpus (a table sorted by its split
    // column has them after the sample), up to the cap
    let valid_rows = spec
        .part_rows(mole_featurize::split::Part::Valid)
        .take(STREAM_VALID_LIMIT)
        .collect::<Result<Vec<_>, _>>()?;
    let (valid, bad) =
        data::featurize_rows_with_bar(valid_rows, vocab, d.max_atoms, false, "validation");
    rejects.extend(bad);
    data::report_rejects(&spec.files[0], &rejects, Some(&out.join("rejects.csv")))?;
    if valid.is_empty() {
        tracing::warn!(
            "no validation molecules (data.valid_fraction = {}, or no `valid` rows in the split \
             column): no validation metrics, no early stopping; best.safetensors is the last \
             checkpoint",
            d.valid_fraction
        );
    }
    if train_labels.is_empty() {
        bail!(
            "{}: no usable training row at the start of the corpus",
            spec.files[0].display()
        );
    }
    check_labels(&spec.files[0], &label_names, &train_labels, kind)?;
    warn_binary_regression(&spec.files[0], &train_labels, kind);
    let steps_per_epoch = if settings.train.max_steps > 0 {
        None
    } else {
        let rows = count_stream_rows(&spec, mole_featurize::split::Part::Train)?;
        tracing::info!("corpus: {rows} training molecules");
        Some(stream_steps_per_epoch(
            rows,
            d.stream_window,
            settings.train.batch_size,
        ))
    };
    let spec = std::sync::Arc::new(spec);
    Ok(LabelledCorpus {
        label_names,
        train: trainer::TrainData::Stream {
            batches: std::sync::Arc::new(mole_train::data::stream::StreamCorpus(spec.clone())),
            steps_per_epoch,
        },
        valid,
        test: TestSet::Stream(spec),
        train_labels,
    })
}

/// Warns when a regression task's labels are all 0 or 1 (a classification task, probably).
fn warn_binary_regression(path: &Path, labels: &[Vec<f32>], kind: TaskKind) {
    if kind == TaskKind::Regression
        && labels.len() >= 10
        && labels
            .iter()
            .flatten()
            .all(|y| y.is_nan() || *y == 0.0 || *y == 1.0)
    {
        tracing::warn!(
            "{}: every label is 0 or 1 but the task is regression; for a classification task \
             pass --task classification",
            path.display()
        );
    }
}
