//! Data as a library: labelled tables (CSV/TSV, optionally gzipped; parquet; SD files' data
//! items) and molecule lists → rows (bad rows become [`Reject`]s with their line and reason,
//! and never stop the valid ones) → featurised [`Example`]s (in parallel) → train/valid/test
//! splits; and corpora too large to featurise up front, streamed ([`stream`]). The batches
//! come from [`crate::length_bucketed_batches`] or a [`stream::StreamCorpus`].
//!
//! Progress is reported through a callback (`progress`, called with the number of rows just
//! done, from several threads at once), errors as [`DataError`]s that name the file (and line)
//! and the reason.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use mole_featurize::split::{scaffold_split, Fractions, Part, SplitMethod};
use mole_featurize::{featurize_with_limit, read_molecules, Vocabulary};
use mole_model::objective::Example;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

pub mod stream;
mod tables;

pub use tables::*;

/// Why data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file (or a setting) cannot be used: the message names it and says why.
    #[error("{0}")]
    Invalid(String),
    /// Reading failed; `context` names the file (and line).
    #[error("{context}")]
    Read {
        context: String,
        #[source]
        source: crate::BoxError,
    },
    /// The molecule reader's error (it names the file and line).
    #[error(transparent)]
    Molecules(#[from] mole_featurize::IoError),
}

impl DataError {
    /// A reading error with what was being read.
    pub fn read(context: String, source: impl Into<crate::BoxError>) -> Self {
        Self::Read {
            context,
            source: source.into(),
        }
    }
}

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

/// Featurises rows in parallel, reporting each to `progress`. With `keep_r2`,
/// `Example::targets` holds each atom's raw radius-2 identifier
/// ([`mole_model::objective::NO_ENVIRONMENT`] when missing), to be mapped by
/// [`mole_model::objective::assign_targets`]. Rows whose SMILES fail are returned as rejects
/// with the parser's reason.
pub fn featurize_rows(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    progress: &(dyn Fn(u64) + Sync),
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
            progress(1);
            out
        })
        .collect();
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

/// [`featurize_rows`] `window` rows at a time, handing each part's examples to `each` (so
/// that only what `each` keeps stays in memory); returns the rejects.
pub fn featurize_in_windows(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    window: usize,
    progress: &(dyn Fn(u64) + Sync),
    mut each: impl FnMut(Vec<Example>),
) -> Vec<Reject> {
    let mut rejects = Vec::new();
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<RawRow> = rows.by_ref().take(window.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        let (examples, bad) = featurize_rows(chunk, vocab, max_atoms, keep_r2, progress);
        rejects.extend(bad);
        each(examples);
    }
    rejects
}

/// The part a split column's cell names: `train`, `valid` (`val`, `validation`) or `test`, in
/// any case.
pub fn split_part(cell: &str) -> Result<Part, String> {
    match cell.to_ascii_lowercase().as_str() {
        "train" => Ok(Part::Train),
        "valid" | "val" | "validation" => Ok(Part::Valid),
        "test" => Ok(Part::Test),
        other => Err(format!("split value `{other}` is not train, valid or test")),
    }
}

/// Indices of the train, valid and test parts.
pub type SplitIndices = (Vec<usize>, Vec<usize>, Vec<usize>);

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
) -> Result<SplitIndices, DataError> {
    if examples.iter().any(|e| e.split.is_some()) {
        let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
        for (i, e) in examples.iter().enumerate() {
            let part = split_part(e.split.as_deref().unwrap_or(""))
                .map_err(|why| DataError::Invalid(format!("line {}: {why}", e.line)))?;
            match part {
                Part::Train => tr.push(i),
                Part::Valid => va.push(i),
                Part::Test => te.push(i),
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
) -> SplitIndices {
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
