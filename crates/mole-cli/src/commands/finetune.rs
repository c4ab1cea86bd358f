//! `finetune` and the supervised run it shares with multitask pretraining and benchmarks.

use super::*;

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
        nodes,
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
pub(crate) fn write_test_predictions(
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
