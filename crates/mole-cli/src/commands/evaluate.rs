//! `evaluate`: metrics of a checkpoint on a labelled file.

use super::*;

#[derive(Args)]
pub struct EvaluateArgs {
    /// A mole checkpoint with a prediction head (e.g. runs/finetune/best.safetensors).
    #[arg(long, value_parser = crate::checkpoint_arg)]
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

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let (config, vocab, dict) = read_checkpoint_parts(&args.checkpoint)?;
    let head = config.head.clone().ok_or_else(|| {
        anyhow!(
            "{}: checkpoint has no prediction head",
            args.checkpoint.display()
        )
    })?;
    let labels = match &args.label_cols {
        Some(cols) => cols.clone(),
        None => checkpoint_info(&args.checkpoint, &dict)?.label_names,
    };
    if labels.len() != head.num_tasks {
        bail!(
            "{} label column(s) given, the checkpoint predicts {} task(s); pass --label-cols",
            labels.len(),
            head.num_tasks
        );
    }
    let table = data::read_table(&args.data, &args.smiles_column, &labels, "")?;
    let (examples, mut rejects) =
        data::featurize_rows_with_bar(table.rows, &vocab, args.max_atoms, false, "featurize");
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
        )?)
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
