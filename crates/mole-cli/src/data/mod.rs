//! mole's side of the data pipeline: the library's readers ([`mole_train::data`]: tables,
//! molecule lists, streamed corpora, splits) with progress bars, rejected rows reported to the
//! log and a CSV, and outputs that appear complete or not at all.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mole_featurize::Vocabulary;

pub use mole_model::objective::{assign_targets, count_targets, Example, NO_ENVIRONMENT};
pub use mole_train::data::*;
pub use mole_train::length_bucketed_batches;

mod output;
mod progress;

pub use output::*;
pub use progress::*;

/// [`mole_train::data::featurize_rows`] with a progress bar labelled `what`.
pub fn featurize_rows_with_bar(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    what: &str,
) -> (Vec<Example>, Vec<Reject>) {
    let bar = progress_bar(rows.len() as u64, what);
    let out = featurize_rows(rows, vocab, max_atoms, keep_r2, &|n| bar.inc(n));
    bar.finish_and_clear();
    out
}

/// [`mole_train::data::featurize_in_windows`] with a progress bar labelled `what`.
pub fn featurize_in_windows_with_bar(
    rows: Vec<RawRow>,
    vocab: &Vocabulary,
    max_atoms: usize,
    keep_r2: bool,
    window: usize,
    what: &str,
    each: impl FnMut(Vec<Example>),
) -> Vec<Reject> {
    let bar = progress_bar(rows.len() as u64, what);
    let rejects = featurize_in_windows(
        rows,
        vocab,
        max_atoms,
        keep_r2,
        window,
        &|n| bar.inc(n),
        each,
    );
    bar.finish_and_clear();
    rejects
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
