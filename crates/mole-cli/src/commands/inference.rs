//! What `predict` and `embed` share: their arguments, sharding, the streaming loop over the input (`stream_molecules`) and the output rows.

use super::*;

/// What `predict` and `embed` share: the model, the molecules and how to run over them.
#[derive(Args)]
pub struct InferenceArgs {
    /// A mole checkpoint (`best.safetensors` of a run, or `mole import` output), or a bundled
    /// model's name. The default, the bundled pretrained encoder, serves `embed`; `predict`
    /// needs a fine-tuned model.
    #[arg(long, default_value = mole_model::zoo::DEFAULT_MODEL, value_parser = crate::checkpoint_arg)]
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
pub(crate) fn writes_header(shard: Option<Shard>) -> bool {
    shard.is_none_or(|s| s.index == 0)
}

/// Rows of `input` as `stream_molecules` counts them (blank lines included); a file-level
/// error fails.
pub(crate) fn count_rows(input: &Path) -> Result<usize> {
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
pub(crate) struct StreamOptions {
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
pub(crate) const BATCH_PAIR_BUDGET: usize = 64 * 128 * 128;

/// What `stream_molecules` counted.
#[derive(Default)]
pub(crate) struct StreamCounts {
    pub(crate) ok: usize,
    pub(crate) rejected: usize,
    /// Molecules run with at least one atom outside the vocabulary (UNK).
    pub(crate) with_unknown: usize,
}

/// Streams `input` in chunks: featurise in parallel, run `per_batch` on the valid molecules in
/// length-sorted batches (bounded by `batch_size` and [`BATCH_PAIR_BUDGET`]), hand every row
/// to `emit` in input order with its output (`None` for a rejected row). Every data line is a
/// row, blank `.smi` lines included (as rejected rows), so output row i is input row i. A
/// file-level error (unreadable file, truncated gzip, binary data) fails the whole command.
pub(crate) fn stream_molecules<F, E>(
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
pub(crate) fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Where `predict` writes its rows.
pub(crate) enum RowSink {
    /// The writer and the number of value columns (empty cells for a rejected row).
    Csv(csv::Writer<data::AtomicOutput>, usize),
    Parquet(ParquetRows),
}

impl RowSink {
    /// One row: identity columns (`width` passed-through ones), the values (empty cells or
    /// nulls for a rejected row), unknown_atoms and error.
    pub(crate) fn write(
        &mut self,
        row: &RawRowOut,
        width: usize,
        values: Option<&[f32]>,
    ) -> Result<()> {
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

    pub(crate) fn finish(self) -> Result<()> {
        match self {
            RowSink::Csv(w, _) => data::commit_csv(w),
            RowSink::Parquet(p) => p.finish(),
        }
    }
}

impl RawRowOut {
    /// The row-identity cells every output starts with: line, smiles, name, then the input's
    /// other columns (`width` of them: an unreadable row has none of its own).
    pub(crate) fn identity(&self, width: usize) -> Vec<String> {
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
pub(crate) fn input_columns(input: &Path, ours: &[String]) -> Result<Vec<String>> {
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

pub(crate) fn rows_of<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
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
pub(crate) fn mean_and_spread(samples: &[Vec<Vec<f32>>], with_spread: bool) -> Vec<Vec<f32>> {
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
