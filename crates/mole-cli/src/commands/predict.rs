//! `predict` and `embed`.

use super::*;
use mole_model::Encoder;

pub fn predict(args: PredictArgs) -> Result<()> {
    let mut read: Vec<&Path> = vec![args.run.checkpoint.as_path()];
    read.extend(args.ensemble.iter().map(PathBuf::as_path));
    check_output(&args.run.input, &args.output, &read)?;
    let (config, vocab, dict) = read_checkpoint_parts(&args.run.checkpoint)?;
    let head = config.head.clone().ok_or_else(|| {
        anyhow!(
            "{}: checkpoint has no prediction head (predict needs a fine-tuned model: \
             `mole finetune`, then --checkpoint runs/finetune/best.safetensors)",
            args.run.checkpoint.display()
        )
    })?;
    let mut names = checkpoint_info(&args.run.checkpoint, &dict)?.label_names;
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
pub(crate) struct NpyWriter {
    out: data::AtomicOutput,
    cols: usize,
    rows: usize,
}

pub(crate) const NPY_HEADER_LEN: usize = 128;

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
pub(crate) fn npy_rows_path(npy: &Path) -> PathBuf {
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
                Ok(rows_of(model.encode(&batch)))
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
