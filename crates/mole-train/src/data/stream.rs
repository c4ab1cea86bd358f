//! A training corpus read as a stream, in memory bounded by its buffers rather than by the
//! corpus: files (a list, or globs) are read lazily, in an order shuffled per epoch; molecules
//! are featurised in parallel, a window at a time, by a background thread that hands
//! length-bucketed batches to the training loop through a bounded channel. The files are
//! molecule lists (stage-1 pretraining: radius-2 targets) or labelled tables (stage 2 and
//! fine-tuning on large sets, [`TableSpec`]).
//!
//! Everything is a function of the seed, the epoch and the files: window w of epoch e holds the
//! same molecules in every run and is shuffled with the same RNG, so batch k of epoch e is the
//! same batch, and a resumed run continues the stream where the interrupted one stopped (the
//! thread reads and featurises up to that point again, without training on it). Validation
//! molecules are chosen by a hash of their SMILES string, so the split needs no pass over the
//! corpus: a SMILES is held out in every epoch and every run, wherever it appears (the same
//! molecule written as another SMILES is another string). Test molecules of a labelled corpus
//! take the next slice of the hash range, or a table's split column decides.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use mole_featurize::split::Part;
use mole_featurize::{read_molecules, Vocabulary};
use mole_metrics::TaskKind;
use mole_model::objective::{assign_targets, Example};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{bad_label, featurize_rows, split_part, table_rows, DataError, RawRow, Reject};
use crate::length_bucketed_batches;

type Result<T, E = DataError> = std::result::Result<T, E>;

/// Batches the thread may prepare ahead of the training loop.
const BATCHES_AHEAD: usize = 8;

/// The corpus's files: `spec` is a comma-separated list of paths, each of which may hold `*`
/// and `?` in its file name (`shards/part-*.smi.gz`); matches are taken in name order. A
/// `spec` that names an existing path is that one path, whatever characters its name has.
pub fn corpus_files(spec: &str) -> Result<Vec<PathBuf>> {
    if Path::new(spec).exists() {
        return Ok(vec![PathBuf::from(spec)]);
    }
    let mut files = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        files.extend(expand(Path::new(part))?);
    }
    if files.is_empty() {
        return Err(DataError::Invalid("no corpus file given".into()));
    }
    Ok(files)
}

/// One path, or the files its `*`/`?` file-name pattern matches, in name order.
pub fn expand(path: &Path) -> Result<Vec<PathBuf>> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut matched: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| DataError::read(format!("{}: cannot list", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
        .map(|e| e.path())
        .collect();
    if matched.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no file matches",
            path.display()
        )));
    }
    matched.sort();
    Ok(matched)
}

/// `*` (any run of characters) and `?` (one character) against a file name.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Whether a molecule is held out for validation: a hash of its SMILES (FNV-1a, stable across
/// runs and platforms) below `fraction` of the hash range.
pub fn is_validation(smiles: &str, fraction: f64) -> bool {
    fraction > 0.0 && hash_position(smiles) <= fraction
}

/// A SMILES string's place in [0, 1): FNV-1a, stable across runs and platforms.
fn hash_position(smiles: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in smiles.trim().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

impl StreamSpec {
    /// A row's part: its split cell when the table has a split column, else its SMILES hash
    /// (validation below `valid_fraction`, test in the next `test_fraction`). A split cell
    /// that is no part is the row's rejection reason.
    pub fn part_of(&self, row: &RawRow) -> Result<Part, String> {
        if let Some(cell) = &row.split {
            return split_part(cell);
        }
        if is_validation(&row.smiles, self.valid_fraction) {
            Ok(Part::Valid)
        } else if self.test_fraction > 0.0
            && hash_position(&row.smiles) <= self.valid_fraction.max(0.0) + self.test_fraction
        {
            Ok(Part::Test)
        } else {
            Ok(Part::Train)
        }
    }

    /// The rows of one file, lazily: each a row or why it is rejected; an outer `Err` when the
    /// file itself fails (it ends the file's rows). A table must have the corpus's label
    /// columns, and its labels must fit the task.
    pub fn file_rows(&self, path: &Path) -> Result<FileRows<'_>> {
        let Some(table) = &self.table else {
            let rows = read_molecules(path)?.map(|r| match r {
                Ok(r) => Ok(Ok(RawRow {
                    line: r.line,
                    smiles: r.smiles,
                    labels: Vec::new(),
                    split: None,
                })),
                Err(e) if e.is_row_error() => Ok(Err(Reject {
                    line: e.line(),
                    smiles: String::new(),
                    reason: e.reason(),
                })),
                Err(e) => Err(DataError::from(e)),
            });
            return Ok(Box::new(rows));
        };
        let (names, rows) = table_rows(
            path,
            &table.smiles_column,
            &table.label_columns,
            &table.split_column,
        )?;
        if names != table.label_names {
            return Err(DataError::Invalid(format!(
                "{}: label columns {} differ from the first file's ({})",
                path.display(),
                names.join(", "),
                table.label_names.join(", ")
            )));
        }
        let kind = table.kind;
        Ok(Box::new(rows.map(move |row| {
            row.map(|row| {
                row.and_then(|r| match bad_label(kind, &r.labels) {
                    Some(reason) => Err(Reject {
                        line: r.line,
                        smiles: r.smiles,
                        reason,
                    }),
                    None => Ok(r),
                })
            })
        })))
    }

    /// The rows of `part` in the files' given order, lazily; rejected rows are skipped and a
    /// failing file ends the rows with its error.
    pub fn part_rows(&self, part: Part) -> impl Iterator<Item = Result<RawRow>> + '_ {
        self.part_rows_in(part, (0..self.files.len()).collect())
    }

    fn part_rows_in(
        &self,
        part: Part,
        order: Vec<usize>,
    ) -> impl Iterator<Item = Result<RawRow>> + '_ {
        order.into_iter().flat_map(move |k| {
            let rows: Box<dyn Iterator<Item = Result<RawRow>>> =
                match self.file_rows(&self.files[k]) {
                    Ok(rows) => Box::new(rows.filter_map(move |r| match r {
                        Ok(Ok(row)) if self.part_of(&row) == Ok(part) => Some(Ok(row)),
                        // a bad row is skipped (the sample pass reports rejects); a damaged file fails
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            rows
        })
    }
}

/// One file's rows: each a row or why it is rejected; an `Err` when the file itself fails.
pub type FileRows<'a> = Box<dyn Iterator<Item = Result<Result<RawRow, Reject>>> + 'a>;

/// A labelled corpus's columns and task (stage 2 and fine-tuning).
pub struct TableSpec {
    pub smiles_column: String,
    pub label_columns: Vec<String>,
    pub split_column: String,
    /// The first file's label columns: every file must have them.
    pub label_names: Vec<String>,
    pub kind: TaskKind,
}

/// Molecules featurised in one go inside a window (the transient full-size examples).
const FEATURIZE_CHUNK: usize = 2048;

/// A featurised molecule as a window holds it: relative positions as bytes (4× smaller than
/// the model input's u32; positions above 255 saturate, and the model clamps them to its
/// relative table, 128 rows in every preset, so nothing it sees changes).
struct Compact {
    line: usize,
    smiles: String,
    input_ids: Vec<u32>,
    relative_pos: Vec<u8>,
    targets: Vec<u32>,
    labels: Vec<f32>,
}

impl Compact {
    fn of(e: Example) -> Self {
        Compact {
            line: e.line,
            smiles: e.smiles,
            relative_pos: e
                .input
                .relative_pos
                .iter()
                .map(|&p| u8::try_from(p).unwrap_or(u8::MAX))
                .collect(),
            input_ids: e.input.input_ids,
            targets: e.targets,
            labels: e.labels,
        }
    }

    fn example(self) -> Example {
        Example {
            line: self.line,
            smiles: self.smiles,
            input: mole_featurize::MoleInput {
                input_ids: self.input_ids,
                relative_pos: self.relative_pos.into_iter().map(u32::from).collect(),
            },
            labels: self.labels,
            targets: self.targets,
            split: None,
        }
    }
}

/// What the stream reads and how it batches.
pub struct StreamSpec {
    pub files: Vec<PathBuf>,
    pub seed: u64,
    /// Molecules shuffled and bucketed together.
    pub window: usize,
    pub batch_size: usize,
    pub max_atoms: usize,
    pub valid_fraction: f64,
    /// Labelled corpora only: the hash share of test molecules.
    pub test_fraction: f64,
    pub vocab: Vocabulary,
    /// Pretraining's radius-2 target vocabulary (`None` for a labelled corpus).
    pub target_vocab: Option<Vocabulary>,
    /// `Some` when the files are labelled tables.
    pub table: Option<TableSpec>,
}

/// The training loop's view of a streamed corpus: each epoch's batches from
/// [`epoch_batches`]' background thread.
pub struct StreamCorpus(pub Arc<StreamSpec>);

impl crate::BatchStream for StreamCorpus {
    fn epoch(
        &self,
        epoch: usize,
        skip: usize,
    ) -> Box<dyn Iterator<Item = Result<Vec<Example>, crate::BoxError>> + '_> {
        let batches = epoch_batches(self.0.clone(), epoch, skip);
        // the empty batch that ends the epoch is passed on: it ends the trainer's epoch too
        Box::new(std::iter::from_fn(move || match batches.recv() {
            Ok(batch) => Some(batch.map_err(Into::into)),
            // the corpus thread stopped without ending the epoch: it died
            Err(_) => Some(Err(
                "the corpus reader stopped in the middle of an epoch".into()
            )),
        }))
    }

    fn describe(&self) -> String {
        format!("a stream of {} file(s)", self.0.files.len())
    }
}

/// Rows of the training part of the corpus, files in the order of `epoch` (a seeded shuffle),
/// read lazily. A damaged file ends the stream with its error.
fn training_rows(spec: &StreamSpec, epoch: usize) -> impl Iterator<Item = Result<RawRow>> + '_ {
    let mut order: Vec<usize> = (0..spec.files.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        spec.seed ^ 0xF11E_5000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
    ));
    spec.part_rows_in(Part::Train, order)
}

/// The batches of one epoch, from batch `skip` on, prepared by a background thread (at most
/// [`BATCHES_AHEAD`] ahead). After the last batch comes an empty one, the end of the epoch; an
/// error (a damaged file) arrives as the last item instead. A receiver that disconnects
/// without either means the thread died: the caller must fail, not end the epoch.
pub fn epoch_batches(
    spec: Arc<StreamSpec>,
    epoch: usize,
    skip: usize,
) -> Receiver<Result<Vec<Example>>> {
    let (tx, rx) = sync_channel(BATCHES_AHEAD);
    std::thread::Builder::new()
        .name(format!("corpus-epoch-{epoch}"))
        .spawn(move || {
            let mut rows = training_rows(&spec, epoch);
            let mut sent = 0usize;
            for window_index in 0u64.. {
                let mut window = Vec::with_capacity(spec.window);
                for row in rows.by_ref().take(spec.window) {
                    match row {
                        Ok(r) => window.push(r),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if window.is_empty() {
                    // the end of the epoch (an empty batch; real batches never are)
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
                // featurised a few thousand at a time and kept compact: the window's memory is
                // about a byte per atom pair
                let mut molecules: Vec<Compact> = Vec::with_capacity(window.len());
                let mut pending = window.into_iter();
                loop {
                    let part: Vec<RawRow> = pending.by_ref().take(FEATURIZE_CHUNK).collect();
                    if part.is_empty() {
                        break;
                    }
                    let pretraining = spec.target_vocab.is_some();
                    // rejects are reported by the sample pass
                    let (mut examples, _) =
                        featurize_rows(part, &spec.vocab, spec.max_atoms, pretraining, &|_| {});
                    if let Some(targets) = &spec.target_vocab {
                        assign_targets(&mut examples, targets);
                    }
                    molecules.extend(examples.into_iter().map(Compact::of));
                }
                let lengths: Vec<usize> = molecules.iter().map(|m| m.input_ids.len()).collect();
                let mut rng = StdRng::seed_from_u64(
                    spec.seed
                        .wrapping_add(epoch as u64)
                        .wrapping_mul(0x2545_F491_4F6C_DD1D)
                        ^ window_index,
                );
                let batches = length_bucketed_batches(&lengths, spec.batch_size, &mut rng);
                let mut slots: Vec<Option<Compact>> = molecules.into_iter().map(Some).collect();
                for idx in batches {
                    if sent < skip {
                        sent += 1;
                        continue;
                    }
                    let batch: Vec<Example> = idx
                        .iter()
                        .filter_map(|&i| slots[i].take())
                        .map(Compact::example)
                        .collect();
                    sent += 1;
                    if tx.send(Ok(batch)).is_err() {
                        // the training loop stopped (run finished or failed)
                        return;
                    }
                }
            }
        })
        .expect("spawning the corpus thread");
    rx
}

/// The first `limit` training rows of the corpus (files in their given order), for the target
/// vocabulary or the label statistics, and the validation rows among the rows read (at most
/// `valid_limit`): (training rows, validation rows, rejected rows).
pub fn sample(
    spec: &StreamSpec,
    limit: usize,
    valid_limit: usize,
) -> Result<(Vec<RawRow>, Vec<RawRow>, Vec<Reject>)> {
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut rejects = Vec::new();
    let several = spec.files.len() > 1;
    'files: for path in &spec.files {
        // with several files a rejected row names its file (its line alone is ambiguous)
        let named = |mut reject: Reject| {
            if several {
                reject.reason = format!("{}: {}", path.display(), reject.reason);
            }
            reject
        };
        for row in spec.file_rows(path)? {
            let row = match row? {
                Ok(r) => r,
                Err(reject) => {
                    rejects.push(named(reject));
                    continue;
                }
            };
            match spec.part_of(&row) {
                Ok(Part::Valid) if valid.len() < valid_limit => valid.push(row),
                Ok(Part::Train) => train.push(row),
                Ok(_) => {}
                Err(reason) => rejects.push(named(Reject {
                    line: row.line,
                    smiles: row.smiles,
                    reason,
                })),
            }
            if train.len() >= limit {
                break 'files;
            }
        }
    }
    Ok((train, valid, rejects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_file_names() {
        assert!(glob_match("part-*.smi.gz", "part-00.smi.gz"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("part-*.smi", "part-00.smi.gz"));
        assert!(!glob_match("a?c", "ac"));
    }

    #[test]
    fn the_validation_hash_is_stable_and_near_its_fraction() {
        let held: usize = (0..20_000)
            .filter(|i| is_validation(&format!("C{i}CC"), 0.05))
            .count();
        assert!((800..1200).contains(&held), "{held}");
        assert!(!is_validation("CCO", 0.0));
        assert_eq!(is_validation("CCO", 0.3), is_validation(" CCO ", 0.3));
    }
}
