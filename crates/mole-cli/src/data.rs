//! Data pipeline: labelled tables and SMILES lists → featurised examples (once per run, in
//! parallel), bad rows reported and skipped, length-bucketed shuffled batches.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mole_featurize::split::{scaffold_split, Fractions, Part, SplitMethod};
use mole_featurize::{featurize_with_limit, read_molecules, Vocabulary};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

pub use mole_model::objective::{assign_targets, count_targets, Example, NO_ENVIRONMENT};

/// A row that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Reject {
    pub line: usize,
    pub smiles: String,
    pub reason: String,
}

/// Rows read from a file before featurisation.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub line: usize,
    pub smiles: String,
    pub labels: Vec<f32>,
    pub split: Option<String>,
}

/// A labelled table's rows and its label names.
pub struct Table {
    pub label_names: Vec<String>,
    pub rows: Vec<RawRow>,
    pub rejects: Vec<Reject>,
}

fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Table kinds by file name: CSV, TSV, SD files (optionally gzipped) or parquet.
pub enum TableKind {
    Delimited(u8),
    Parquet,
    /// `.sdf`, `.sd`, `.mol`: one row per record, the molecule as a `smiles` column and the
    /// record's data items as the other columns.
    Sdf,
}

pub fn table_kind(path: &Path) -> Result<TableKind> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if name.ends_with(".parquet") {
        return Ok(TableKind::Parquet);
    }
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        Ok(TableKind::Delimited(b','))
    } else if name.ends_with(".tsv") {
        Ok(TableKind::Delimited(b'\t'))
    } else if name.ends_with(".sdf") || name.ends_with(".sd") || name.ends_with(".mol") {
        Ok(TableKind::Sdf)
    } else {
        bail!(
            "{}: expected a .csv, .tsv, .sdf (optionally .gz) or .parquet file",
            path.display()
        )
    }
}

/// Header and rows (with their 1-based line numbers; for parquet the row number + 1, counting
/// the header as line 1 like a CSV) of a table, each cell as a string. A row that cannot be
/// used (not UTF-8) is `(line, Err(reason))`: one bad row, reading goes on. An error of the
/// file itself (a truncated gzip stream, an I/O error) is an outer `Err` naming the file, and
/// ends the rows.
pub type Cells = (
    Vec<String>,
    Box<dyn Iterator<Item = Result<(usize, Result<Vec<String>, String>)>>>,
);

pub fn table_cells(path: &Path) -> Result<Cells> {
    match table_kind(path)? {
        TableKind::Sdf => sdf_cells(path),
        TableKind::Parquet => {
            // a row group at a time (a large labelled corpus streams through here)
            let (headers, rows) = mole_featurize::parquet_string_rows(path)?;
            let rows = rows
                .enumerate()
                .map(|(i, r)| Ok((i + 2, Ok(r.map_err(anyhow::Error::from)?))));
            Ok((headers, Box::new(rows)))
        }
        TableKind::Delimited(delimiter) => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                // LF ends records: with CRLF the csv crate counts lines one short; the CR left
                // on a row's last cell is removed below
                .terminator(csv::Terminator::Any(b'\n'))
                .from_reader(open_maybe_gz(path)?);
            let headers = reader
                .headers()
                .with_context(|| format!("{}:1: cannot read the header", path.display()))?
                .iter()
                .map(|h| h.strip_suffix('\r').unwrap_or(h).to_string())
                .collect();
            let path = path.to_path_buf();
            let rows = reader.into_records().enumerate().map(move |(k, r)| {
                let line = match &r {
                    Ok(r) => r.position().map_or(k + 2, |p| p.line() as usize),
                    Err(e) => e.position().map_or(k + 2, |p| p.line() as usize),
                };
                match r {
                    Ok(r) => {
                        let mut cells: Vec<String> = r.iter().map(str::to_string).collect();
                        if let Some(last) = cells.last_mut() {
                            if last.ends_with('\r') {
                                last.pop();
                            }
                        }
                        Ok((line, Ok(cells)))
                    }
                    Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                        Ok((line, Err("not UTF-8 text".to_string())))
                    }
                    Err(e) => Err(anyhow::anyhow!(
                        "{}:{line}: cannot read: {e}",
                        path.display()
                    )),
                }
            });
            Ok((headers, Box::new(rows)))
        }
    }
}

/// An SD record as [`sdf_cells`] keeps it: its number, its SMILES (or why it has none) and its
/// data items.
type SdfRow = (usize, Result<String, String>, Vec<(String, String)>);

/// An SD file as a table: a `smiles` column (the record's molecule, written with
/// `mole_featurize::to_smiles`) and one column per data item name, in the order names first
/// appear (a record without an item has an empty cell). Items named like the molecule column
/// (`smiles`, any case) are left out: the connection table is the molecule. Rows are records
/// (their number as the line); a record that is not a molecule is a bad row with its reason.
fn sdf_cells(path: &Path) -> Result<Cells> {
    let reader = std::io::BufReader::with_capacity(64 * 1024, open_maybe_gz(path)?);
    let mut names: Vec<String> = Vec::new();
    // each record as its SMILES (or why it has none) and data items: the molecules
    // themselves are not kept
    let mut records: Vec<SdfRow> = Vec::new();
    for record in mole_featurize::SdfReader::new(reader) {
        let record = record.map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
        for (name, _) in &record.properties {
            if !name.trim().eq_ignore_ascii_case("smiles") && !names.contains(name) {
                names.push(name.clone());
            }
        }
        records.push((record.number, record.smiles(), record.properties));
    }
    let mut headers = vec!["smiles".to_string()];
    headers.extend(names.iter().cloned());
    let rows = records
        .into_iter()
        .map(move |(number, smiles, properties)| {
            let cells = smiles.map(|smiles| {
                let mut cells = vec![smiles];
                cells.extend(names.iter().map(|n| {
                    properties
                        .iter()
                        .find(|(k, _)| k == n)
                        .map_or_else(String::new, |(_, v)| v.clone())
                }));
                cells
            });
            Ok((number, cells))
        });
    Ok((headers, Box::new(rows)))
}

/// Largest label magnitude accepted: beyond it squared errors overflow f32 (sqrt(f32::MAX)
/// is 1.8e19) and losses and metrics become infinite. No measured property comes near it.
pub const MAX_LABEL_MAGNITUDE: f32 = 1e15;

/// Parses a label cell: empty, `nan`, `NA` → missing (NaN).
fn parse_label(cell: &str) -> Result<f32, String> {
    let c = cell.trim();
    if c.is_empty() || c.eq_ignore_ascii_case("nan") || c.eq_ignore_ascii_case("na") || c == "-" {
        return Ok(f32::NAN);
    }
    let v = c
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("label `{c}` is not a number"))?;
    if v.abs() > MAX_LABEL_MAGNITUDE {
        return Err(format!(
            "label `{c}` is out of range (|y| > {MAX_LABEL_MAGNITUDE:e}); rescale the column"
        ));
    }
    Ok(v)
}

/// Reads a table (CSV/TSV/parquet, or an SD file as [`sdf_cells`] makes it one) with a SMILES column, label columns (`label_columns`, or every other column
/// when empty) and an optional split column. Rows with a non-numeric label or an empty SMILES
/// are rejected with their line number; the rest are kept.
pub fn read_table(
    path: &Path,
    smiles_column: &str,
    label_columns: &[String],
    split_column: &str,
) -> Result<Table> {
    let (label_names, records) = table_rows(path, smiles_column, label_columns, split_column)?;
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for row in records {
        match row? {
            Ok(r) => rows.push(r),
            Err(r) => rejects.push(r),
        }
    }
    Ok(Table {
        label_names,
        rows,
        rejects,
    })
}

/// A table's rows, read lazily: its label names and, per data row, the row or why it is
/// rejected (the outer `Err`: the file itself failed, which ends the rows). Blank rows are
/// skipped. See [`read_table`].
pub type TableRows = (
    Vec<String>,
    Box<dyn Iterator<Item = Result<Result<RawRow, Reject>>>>,
);

/// [`read_table`] as a stream of rows (CSV/TSV are read lazily; a large labelled corpus).
pub fn table_rows(
    path: &Path,
    smiles_column: &str,
    label_columns: &[String],
    split_column: &str,
) -> Result<TableRows> {
    let (headers, records) = table_cells(path)?;
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let smiles_idx = find(smiles_column).with_context(|| {
        format!(
            "{}:1: no `{smiles_column}` column (columns: {})",
            path.display(),
            headers.join(", ")
        )
    })?;
    let split_idx =
        if split_column.is_empty() {
            None
        } else {
            Some(find(split_column).with_context(|| {
                format!("{}:1: no split column `{split_column}`", path.display())
            })?)
        };
    let label_idx: Vec<usize> = if label_columns.is_empty() {
        (0..headers.len())
            .filter(|&i| i != smiles_idx && Some(i) != split_idx)
            .collect()
    } else {
        label_columns
            .iter()
            .map(|c| {
                find(c).with_context(|| format!("{}:1: no label column `{c}`", path.display()))
            })
            .collect::<Result<_>>()?
    };
    let label_names = label_idx
        .iter()
        .map(|&i| headers[i].trim().to_string())
        .collect();
    let rows = records.filter_map(move |row| {
        let (line, record) = match row {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let record = match record {
            Ok(r) => r,
            Err(reason) => {
                return Some(Ok(Err(Reject {
                    line,
                    smiles: String::new(),
                    reason,
                })))
            }
        };
        if record.iter().all(|c| c.trim().is_empty()) {
            return None;
        }
        let cell = |i: usize| record.get(i).map_or("", String::as_str);
        let smiles = cell(smiles_idx).trim().to_string();
        if smiles.is_empty() {
            return Some(Ok(Err(Reject {
                line,
                smiles,
                reason: "empty SMILES".into(),
            })));
        }
        let labels: Result<Vec<f32>, String> =
            label_idx.iter().map(|&i| parse_label(cell(i))).collect();
        Some(Ok(match labels {
            Ok(labels) => Ok(RawRow {
                line,
                smiles,
                labels,
                split: split_idx
                    .and_then(|i| record.get(i))
                    .map(|s| s.trim().to_string()),
            }),
            Err(reason) => Err(Reject {
                line,
                smiles,
                reason,
            }),
        }))
    });
    Ok((label_names, Box::new(rows)))
}

/// Why a row's labels do not fit the task (class labels must be class indices), if they don't.
pub fn bad_label(kind: mole_metrics::TaskKind, labels: &[f32]) -> Option<String> {
    use mole_metrics::TaskKind;
    match kind {
        TaskKind::Regression => None,
        TaskKind::BinaryClassification => labels
            .iter()
            .find(|y| !y.is_nan() && **y != 0.0 && **y != 1.0)
            .map(|y| format!("label {y} is not 0 or 1")),
        TaskKind::MulticlassClassification { num_classes } => labels
            .iter()
            .find(|y| !y.is_nan() && (y.fract() != 0.0 || **y < 0.0 || **y >= num_classes as f32))
            .map(|y| format!("label {y} is not a class index below {num_classes}")),
    }
}

/// Reads an unlabelled molecule list (.smi/.txt/.csv/.tsv/.sdf, optionally gzipped, or parquet).
pub fn read_smiles(path: &Path) -> Result<(Vec<RawRow>, Vec<Reject>)> {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for record in read_molecules(path)? {
        match record {
            Ok(r) => rows.push(RawRow {
                line: r.line,
                smiles: r.smiles,
                labels: Vec::new(),
                split: None,
            }),
            // a bad line (not UTF-8, say) is one rejected row with its line number
            Err(e) if e.is_row_error() => rejects.push(Reject {
                line: e.line(),
                smiles: String::new(),
                reason: e.reason(),
            }),
            // the file itself is damaged (truncated gzip, I/O error): fail, naming it
            Err(e) => return Err(e.into()),
        }
    }
    Ok((rows, rejects))
}

pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    log_when_not_a_terminal(bar)
}

/// A spinner for work of unknown length (`template` in indicatif's syntax).
pub fn progress_spinner(template: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    log_when_not_a_terminal(bar)
}

/// On a terminal the bar draws itself; elsewhere (a log file, a batch scheduler's output)
/// indicatif would print nothing, so its line goes to the log instead, at most once every
/// `MOLE_PROGRESS_EVERY` seconds (default 10).
fn log_when_not_a_terminal(bar: ProgressBar) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        let every = std::env::var("MOLE_PROGRESS_EVERY")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(10.0);
        let log = ProgressLog {
            every: std::time::Duration::from_secs_f64(every),
            last: std::sync::Mutex::new(None),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::term_like_with_hz(
            Box::new(log),
            1,
        ));
    }
    bar
}

/// An indicatif "terminal" that turns redraws into log lines, rate-limited.
#[derive(Debug)]
struct ProgressLog {
    every: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ProgressLog {
    fn log(&self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= self.every) {
            tracing::info!("{line}");
            *last = Some(std::time::Instant::now());
        }
    }
}

impl indicatif::TermLike for ProgressLog {
    fn width(&self) -> u16 {
        // a short bar in log lines
        72
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.log(s);
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.log(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Featurises rows in parallel. With `keep_r2`, `Example::targets` holds each atom's raw
/// radius-2 identifier ([`NO_ENVIRONMENT`] when missing), to be mapped by
/// [`assign_targets`]. Rows whose SMILES fail are returned as rejects with the parser's reason.
pub fn featurize_rows(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    what: &str,
) -> (Vec<Example>, Vec<Reject>) {
    let bar = progress_bar(rows.len() as u64, what);
    featurize_rows_with(rows, vocab, max_atoms, keep_r2, bar)
}

/// [`featurize_rows`] `window` rows at a time, handing each part's examples to `each` (so
/// that only what `each` keeps stays in memory), with a progress bar; returns the rejects.
pub fn featurize_in_windows(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    window: usize,
    what: &str,
    mut each: impl FnMut(Vec<Example>),
) -> Vec<Reject> {
    let bar = progress_bar(rows.len() as u64, what);
    let mut rejects = Vec::new();
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<RawRow> = rows.by_ref().take(window.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        bar.inc(chunk.len() as u64);
        let (examples, bad) = featurize_rows_quietly(chunk, vocab, max_atoms, keep_r2);
        rejects.extend(bad);
        each(examples);
    }
    bar.finish_and_clear();
    rejects
}

/// [`featurize_rows`] without a progress bar (a streaming corpus's windows).
pub fn featurize_rows_quietly(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
) -> (Vec<Example>, Vec<Reject>) {
    featurize_rows_with(rows, vocab, max_atoms, keep_r2, ProgressBar::hidden())
}

fn featurize_rows_with(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    bar: ProgressBar,
) -> (Vec<Example>, Vec<Reject>) {
    let results: Vec<Result<Example, Reject>> = rows
        .into_par_iter()
        .map(|row| {
            let out = match featurize_with_limit(&row.smiles, vocab, max_atoms) {
                Ok(f) if f.num_atoms == 0 => Err(Reject {
                    line: row.line,
                    smiles: row.smiles,
                    reason: "molecule has no heavy atoms".into(),
                }),
                Ok(f) => {
                    let mut example = Example::unlabelled(&f, vocab);
                    if !keep_r2 {
                        example.targets.clear();
                    }
                    Ok(Example {
                        line: row.line,
                        smiles: row.smiles,
                        labels: row.labels,
                        split: row.split,
                        ..example
                    })
                }
                Err(e) => Err(Reject {
                    line: row.line,
                    smiles: row.smiles,
                    reason: e.to_string(),
                }),
            };
            bar.inc(1);
            out
        })
        .collect();
    bar.finish_and_clear();
    let mut examples = Vec::with_capacity(results.len());
    let mut rejects = Vec::new();
    for r in results {
        match r {
            Ok(e) => examples.push(e),
            Err(r) => rejects.push(r),
        }
    }
    (examples, rejects)
}

/// Logs how many rows were rejected with the first few reasons, and writes all of them to
/// `rejects_path` (CSV: line, smiles, reason) when there are any.
pub fn report_rejects(
    source: &Path,
    rejects: &[Reject],
    rejects_path: Option<&Path>,
) -> Result<()> {
    if rejects.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        "{}: {} row(s) rejected and skipped",
        source.display(),
        rejects.len()
    );
    for r in rejects.iter().take(5) {
        tracing::warn!(
            "  {}:{}: {} ({})",
            source.display(),
            r.line,
            r.reason,
            r.smiles
        );
    }
    if let Some(path) = rejects_path {
        let mut w = csv::Writer::from_writer(AtomicOutput::create(path)?);
        w.write_record(["line", "smiles", "reason"])?;
        for r in rejects {
            w.write_record([r.line.to_string(), r.smiles.clone(), r.reason.clone()])?;
        }
        commit_csv(w)?;
        tracing::warn!("  all rejected rows: {}", path.display());
    }
    Ok(())
}

/// Shuffles, then groups molecules of similar size: pools of 50 batches are sorted by length
/// and cut into batches, and the batches are shuffled, so padding stays small while the order
/// stays random.
pub fn length_bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let pool = batch_size * 50;
    let mut batches = Vec::new();
    for chunk in order.chunks(pool) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

/// Batches in input order (prediction), sorted by nothing.
pub fn sequential_batches(n: usize, batch_size: usize) -> Vec<Vec<usize>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .map(|c| c.to_vec())
        .collect()
}

/// Splits example indices into train/valid/test: by the split column when present (values
/// `train`/`valid`|`val`|`validation`/`test`), else by `method`: at random with `rng`, or by
/// scaffold (TDC's scaffold split with `seed`; molecules whose scaffold RDKit would reject are
/// left out, as TDC leaves them out, with a warning).
pub fn split_indices(
    examples: &[Example],
    method: SplitMethod,
    valid_fraction: f64,
    test_fraction: f64,
    seed: u64,
    rng: &mut StdRng,
) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    if examples.iter().any(|e| e.split.is_some()) {
        let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
        for (i, e) in examples.iter().enumerate() {
            match e.split.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("train") => tr.push(i),
                Some("valid" | "val" | "validation") => va.push(i),
                Some("test") => te.push(i),
                other => bail!(
                    "line {}: split value `{}` is not train, valid or test",
                    e.line,
                    other.unwrap_or("")
                ),
            }
        }
        return Ok((tr, va, te));
    }
    if method == SplitMethod::Scaffold {
        let scaffolds = scaffolds_of(examples.iter().map(|e| e.smiles.as_str()));
        let fractions = fractions_of(valid_fraction, test_fraction);
        let parts = scaffold_split(&scaffolds, seed, fractions);
        let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
        for (i, part) in parts.iter().enumerate() {
            match part {
                Some(Part::Train) => tr.push(i),
                Some(Part::Valid) => va.push(i),
                Some(Part::Test) => te.push(i),
                None => tracing::warn!(
                    "line {}: no scaffold (RDKit's scaffold code rejects it); left out of the \
                     split, as TDC does",
                    examples[i].line
                ),
            }
        }
        return Ok((tr, va, te));
    }
    Ok(random_split(
        examples.len(),
        valid_fraction,
        test_fraction,
        rng,
    ))
}

/// Indices `0..n` shuffled with `rng`, then cut: the first `round(n · test)` are the test part,
/// the next `round(n · valid)` the valid part, the rest train.
pub fn random_split(
    n: usize,
    valid_fraction: f64,
    test_fraction: f64,
    rng: &mut StdRng,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let n_test = ((n as f64 * test_fraction).round() as usize).min(n);
    let n_valid = ((n as f64 * valid_fraction).round() as usize).min(n - n_test);
    let test = order[..n_test].to_vec();
    let valid = order[n_test..n_test + n_valid].to_vec();
    let train = order[n_test + n_valid..].to_vec();
    (train, valid, test)
}

/// The Murcko scaffold of each SMILES (canonical SMILES, "" when acyclic; None where it cannot
/// be parsed or RDKit's scaffold code would fail), in parallel.
pub fn scaffolds_of<'a>(smiles: impl Iterator<Item = &'a str>) -> Vec<Option<String>> {
    let smiles: Vec<&str> = smiles.collect();
    smiles
        .par_iter()
        .map(|s| {
            mole_featurize::parse_smiles(s)
                .and_then(|m| mole_featurize::scaffold::scaffold_smiles(&m))
                .ok()
        })
        .collect()
}

/// `examples` without the molecules whose canonical SMILES (`mole_featurize::scaffold::
/// canonical_smiles`: stereo and isotopes left out) is in `seen` or earlier in `examples`;
/// `seen` gains the kept ones. Returns the kept examples and how many were dropped.
pub fn deduplicate(
    examples: Vec<Example>,
    seen: &mut std::collections::HashSet<String>,
) -> (Vec<Example>, usize) {
    let keys: Vec<String> = examples
        .par_iter()
        .map(|e| match mole_featurize::parse_smiles(&e.smiles) {
            Ok(m) => mole_featurize::scaffold::canonical_smiles(&m),
            // featurised examples parse; the written SMILES is the key otherwise
            Err(_) => e.smiles.clone(),
        })
        .collect();
    let before = examples.len();
    let kept: Vec<Example> = examples
        .into_iter()
        .zip(keys)
        .filter_map(|(e, key)| seen.insert(key).then_some(e))
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

/// Train/valid/test fractions from the valid and test ones; the train fraction is rounded to
/// 1e-9 so that 1 - 0.1 - 0.1 is the 0.8 TDC is given (its sizes are `int(n * fraction)`).
pub fn fractions_of(valid: f64, test: f64) -> Fractions {
    Fractions {
        train: ((1.0 - valid - test) * 1e9).round() / 1e9,
        valid,
        test,
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = AtomicOutput::create(path)?;
    out.write_all(bytes)?;
    out.commit()
}

/// An output file written under a temporary name in its own directory and renamed onto its
/// path only by [`AtomicOutput::commit`], so that a reader finds the complete file or none
/// (an earlier file of that name stays untouched until then). Dropped without a commit (the
/// command failed), the temporary file is removed; after a `kill -9` it remains as
/// `.<name>.partial-<pid>`, a name no reader mistakes for the result. Write errors (a full
/// disk, say) name the output file. The path `-` is standard output: written as it comes
/// (a pipe cannot be renamed into place), for `mole predict … -o - | …`.
pub struct AtomicOutput {
    path: PathBuf,
    tmp: PathBuf,
    sink: Option<Sink>,
}

/// Where an [`AtomicOutput`] writes.
enum Sink {
    File(std::io::BufWriter<File>),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

/// Whether `path` means standard output (`-o -`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl AtomicOutput {
    pub fn create(path: &Path) -> Result<Self> {
        if is_stdout(path) {
            return Ok(Self {
                path: path.to_path_buf(),
                tmp: PathBuf::new(),
                sink: Some(Sink::Stdout(std::io::BufWriter::with_capacity(
                    1 << 16,
                    std::io::stdout(),
                ))),
            });
        }
        if path.is_dir() {
            bail!("{}: is a directory; give a file name", path.display());
        }
        let name = path
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("{}: not a file path", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp)
            .with_context(|| format!("{}: cannot create the output", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            sink: Some(Sink::File(std::io::BufWriter::with_capacity(1 << 16, file))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file, everything buffered written out first (for seeking); standard
    /// output cannot seek.
    pub fn file_mut(&mut self) -> Result<&mut File> {
        let path = self.path.clone();
        match self.sink.as_mut().expect("sink present until commit") {
            Sink::File(w) => {
                w.flush()
                    .with_context(|| format!("{}: cannot write", path.display()))?;
                Ok(w.get_mut())
            }
            Sink::Stdout(_) => bail!("standard output (-o -) cannot hold this format; give a file"),
        }
    }

    /// Flushes, syncs and renames the file onto its path; on failure the temporary file is
    /// removed and the path left as it was. Standard output is flushed.
    pub fn commit(mut self) -> Result<()> {
        let result = match self.sink.take().expect("sink present until commit") {
            Sink::Stdout(mut w) => w.flush(),
            Sink::File(w) => {
                let result = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|file| file.sync_all())
                    .and_then(|()| std::fs::rename(&self.tmp, &self.path));
                if result.is_err() {
                    let _ = std::fs::remove_file(&self.tmp);
                }
                result
            }
        };
        result.with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Flushes a CSV writer over an [`AtomicOutput`] and commits the file.
pub fn commit_csv(w: csv::Writer<AtomicOutput>) -> Result<()> {
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))?
        .commit()
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(w) => w.write(buf),
            Sink::Stdout(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Stdout(w) => w.flush(),
        }
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let path = &self.path;
        self.sink
            .as_mut()
            .expect("sink present until commit")
            .write(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let path = &self.path;
        self.sink
            .as_mut()
            .expect("sink present until commit")
            .flush()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if let Some(Sink::File(_)) = self.sink.take() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
