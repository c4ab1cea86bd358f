//! `mole split`: writes a table back with the train/valid/test part and the Bemis–Murcko
//! scaffold of every row, by the same procedures the training commands use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use mole_featurize::split::{scaffold_split, Fractions, Part, SplitMethod};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::{self, Reject, TableKind};
use crate::SplitArg;

#[derive(Args)]
pub struct SplitArgs {
    /// Table with a SMILES column: CSV or TSV (optionally .gz) or parquet.
    pub data: PathBuf,
    /// random: rows shuffled with the seed and cut at the fractions (what `finetune --seed S`
    /// does); scaffold: whole Bemis–Murcko scaffold groups per part, exactly TDC's
    /// `create_scaffold_split(df, seed, fractions)`.
    #[arg(long, value_enum, default_value = "random")]
    pub method: SplitArg,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train, valid and test fractions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.1,0.1")]
    pub fractions: Vec<f64>,
    #[arg(long, default_value = "smiles")]
    pub smiles_column: String,
    /// Output CSV (or .tsv): every input row in input order, with `split` (train, valid, test;
    /// empty for a row whose SMILES is rejected) and `scaffold` columns added.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn split(args: SplitArgs) -> Result<()> {
    let fractions = match args.fractions.as_slice() {
        &[train, valid, test]
            if [train, valid, test].iter().all(|f| (0.0..=1.0).contains(f))
                && train + valid + test <= 1.0 + 1e-9
                && train > 0.0 =>
        {
            Fractions { train, valid, test }
        }
        other => bail!(
            "--fractions {other:?}: three fractions in [0, 1] (train > 0) summing to at most 1"
        ),
    };
    crate::commands::check_output(&args.data, &args.output, &[])?;
    let delimiter = delimiter_of(&args.output)?;
    let (header, rows) = data::table_cells(&args.data)?;
    let Some(smiles_idx) = header.iter().position(|h| *h == args.smiles_column) else {
        bail!(
            "{}:1: no `{}` column (columns: {})",
            args.data.display(),
            args.smiles_column,
            header.join(", ")
        );
    };
    for added in ["split", "scaffold"] {
        if header.iter().any(|h| h == added) {
            bail!(
                "{}:1: the table already has a `{added}` column",
                args.data.display()
            );
        }
    }
    // every row with its line; an unreadable one keeps its place without cells
    let mut lines = Vec::new();
    let mut cells: Vec<Option<Vec<String>>> = Vec::new();
    let mut rejects = Vec::new();
    for row in rows {
        let (line, row) = row?;
        match row {
            Ok(row) => cells.push(Some(row)),
            Err(reason) => {
                rejects.push(Reject {
                    line,
                    smiles: String::new(),
                    reason,
                });
                cells.push(None);
            }
        }
        lines.push(line);
    }
    let smiles: Vec<&str> = cells
        .iter()
        .map(|r| {
            r.as_ref()
                .and_then(|r| r.get(smiles_idx))
                .map_or("", String::as_str)
        })
        .collect();
    let scaffolds = data::scaffolds_of(smiles.iter().copied());
    for (((&line, s), scaffold), row) in lines.iter().zip(&smiles).zip(&scaffolds).zip(&cells) {
        if scaffold.is_none() && row.is_some() {
            let reason = match mole_featurize::parse_smiles(s) {
                Err(e) => e.to_string(),
                Ok(_) => "RDKit's scaffold code rejects this molecule".to_string(),
            };
            rejects.push(Reject {
                line,
                smiles: s.to_string(),
                reason,
            });
        }
    }
    let parts = match SplitMethod::from(args.method) {
        SplitMethod::Scaffold => scaffold_split(&scaffolds, args.seed, fractions),
        SplitMethod::Random => random_parts(&scaffolds, args.seed, fractions),
    };

    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    let mut out_header = header.clone();
    out_header.extend(["split".to_string(), "scaffold".to_string()]);
    w.write_record(&out_header)?;
    for ((row, part), scaffold) in cells.iter().zip(&parts).zip(&scaffolds) {
        let mut record = row.clone().unwrap_or_default();
        record.resize(header.len().max(record.len()), String::new());
        record.push(part.map_or("", Part::as_str).to_string());
        record.push(scaffold.clone().unwrap_or_default());
        w.write_record(&record)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", args.output.display()))?;
    data::write_atomic(&args.output, &bytes)?;

    rejects.sort_by_key(|r| r.line);
    data::report_rejects(&args.data, &rejects, None)?;
    let count = |p: Part| parts.iter().filter(|&&q| q == Some(p)).count();
    let groups: HashSet<&str> = scaffolds.iter().flatten().map(String::as_str).collect();
    eprintln!(
        "{}: {} rows, {} scaffolds → train {}, valid {}, test {}{} ({})",
        args.data.display(),
        parts.len(),
        groups.len(),
        count(Part::Train),
        count(Part::Valid),
        count(Part::Test),
        if rejects.is_empty() {
            String::new()
        } else {
            format!(", {} rejected (no split)", rejects.len())
        },
        args.output.display()
    );
    Ok(())
}

/// The random split of the training commands ([`data::random_split`] with `StdRng(seed)`)
/// over the rows that have a molecule.
fn random_parts(
    scaffolds: &[Option<String>],
    seed: u64,
    fractions: Fractions,
) -> Vec<Option<Part>> {
    let rows: Vec<usize> = (0..scaffolds.len())
        .filter(|&i| scaffolds[i].is_some())
        .collect();
    let (train, valid, test) = data::random_split(
        rows.len(),
        fractions.valid,
        fractions.test,
        &mut StdRng::seed_from_u64(seed),
    );
    let mut parts = vec![None; scaffolds.len()];
    for (indices, part) in [
        (train, Part::Train),
        (valid, Part::Valid),
        (test, Part::Test),
    ] {
        for k in indices {
            parts[rows[k]] = Some(part);
        }
    }
    parts
}

/// The output's delimiter: a plain (not gzipped) .csv or .tsv, as the table reader names them.
fn delimiter_of(path: &Path) -> Result<u8> {
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    match data::table_kind(path) {
        Ok(TableKind::Delimited(delimiter)) if !gz => Ok(delimiter),
        _ => bail!("{}: the output must be a .csv or .tsv file", path.display()),
    }
}
