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
pub use mole_train::length_bucketed_batches;

mod output;
mod progress;
mod tables;

pub use output::*;
pub use progress::*;
pub use tables::*;

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
