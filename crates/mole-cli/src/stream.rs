//! A pretraining corpus read as a stream, in memory bounded by its buffers rather than by the
//! corpus: files (a list, or globs) are read lazily, in an order shuffled per epoch; molecules
//! are featurised in parallel, a window at a time, by a background thread that hands
//! length-bucketed batches to the training loop through a bounded channel.
//!
//! Everything is a function of the seed, the epoch and the files: window w of epoch e holds the
//! same molecules in every run and is shuffled with the same RNG, so batch k of epoch e is the
//! same batch, and `--resume` continues the stream where the interrupted run stopped (the
//! thread reads and featurises up to that point again, without training on it). Validation
//! molecules are chosen by a hash of their SMILES string, so the split needs no pass over the
//! corpus: a SMILES is held out in every epoch and every run, wherever it appears (the same
//! molecule written as another SMILES is another string).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mole_featurize::{read_molecules, Vocabulary};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::{self, Example, RawRow};

/// Batches the thread may prepare ahead of the training loop.
const BATCHES_AHEAD: usize = 8;

/// The corpus's files: `spec` is a comma-separated list of paths, each of which may hold `*`
/// and `?` in its file name (`shards/part-*.smi.gz`); matches are taken in name order.
pub fn corpus_files(spec: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        files.extend(expand(Path::new(part))?);
    }
    if files.is_empty() {
        bail!("no corpus file given");
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
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
        .map(|e| e.path())
        .collect();
    if matched.is_empty() {
        bail!("{}: no file matches", path.display());
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
    if fraction <= 0.0 {
        return false;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in smiles.trim().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64 <= fraction
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
            labels: Vec::new(),
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
    pub vocab: Vocabulary,
    pub target_vocab: Vocabulary,
}

/// Rows of the training part of the corpus (validation molecules left out), files in the order
/// of `epoch` (a seeded shuffle), read lazily. A damaged file ends the stream with its error.
fn training_rows(spec: &StreamSpec, epoch: usize) -> impl Iterator<Item = Result<RawRow>> + '_ {
    let mut order: Vec<usize> = (0..spec.files.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        spec.seed ^ 0xF11E_5000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
    ));
    order.into_iter().flat_map(move |k| {
        let path = &spec.files[k];
        let records: Box<dyn Iterator<Item = Result<RawRow>>> = match read_molecules(path) {
            Ok(reader) => Box::new(reader.filter_map(move |r| match r {
                Ok(r) if is_validation(&r.smiles, spec.valid_fraction) => None,
                Ok(r) => Some(Ok(RawRow {
                    line: r.line,
                    smiles: r.smiles,
                    labels: Vec::new(),
                    split: None,
                })),
                // a bad row is skipped (the sample pass reports rejects); a damaged file fails
                Err(e) if e.is_row_error() => None,
                Err(e) => Some(Err(anyhow::Error::from(e))),
            })),
            Err(e) => Box::new(std::iter::once(Err(anyhow::Error::from(e)))),
        };
        records
    })
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
                    let (mut examples, _) =
                        data::featurize_rows_quietly(part, &spec.vocab, spec.max_atoms, true);
                    data::assign_targets(&mut examples, &spec.target_vocab);
                    molecules.extend(examples.into_iter().map(Compact::of));
                }
                let lengths: Vec<usize> = molecules.iter().map(|m| m.input_ids.len()).collect();
                let mut rng = StdRng::seed_from_u64(
                    spec.seed
                        .wrapping_add(epoch as u64)
                        .wrapping_mul(0x2545_F491_4F6C_DD1D)
                        ^ window_index,
                );
                let batches = data::length_bucketed_batches(&lengths, spec.batch_size, &mut rng);
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

/// The first `limit` rows of the corpus (files in their given order) for the target vocabulary
/// and the validation set: (training rows, validation rows, rejected rows).
pub fn sample(
    files: &[PathBuf],
    limit: usize,
    valid_fraction: f64,
    valid_limit: usize,
) -> Result<(Vec<RawRow>, Vec<RawRow>, Vec<data::Reject>)> {
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut rejects = Vec::new();
    'files: for path in files {
        for record in read_molecules(path)? {
            let r = match record {
                Ok(r) => r,
                Err(e) if e.is_row_error() => {
                    rejects.push(data::Reject {
                        line: e.line(),
                        smiles: String::new(),
                        reason: e.reason(),
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let row = RawRow {
                line: r.line,
                smiles: r.smiles,
                labels: Vec::new(),
                split: None,
            };
            if is_validation(&row.smiles, valid_fraction) {
                if valid.len() < valid_limit {
                    valid.push(row);
                }
            } else {
                train.push(row);
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
