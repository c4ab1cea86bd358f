//! Reading labelled tables (CSV/TSV, optionally gzipped; parquet; SD files' data items) and
//! SMILES lists into rows, row errors becoming rejects.

use super::*;

pub(super) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read + Send>, DataError> {
    let file = File::open(path)
        .map_err(|e| DataError::read(format!("{}: cannot open", path.display()), e))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Table kinds by file name: CSV, TSV, SD files (optionally gzipped) or parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Delimited(u8),
    Parquet,
    /// `.sdf`, `.sd`, `.mol`: one row per record, the molecule as a `smiles` column and the
    /// record's data items as the other columns.
    Sdf,
}

pub fn table_kind(path: &Path) -> Result<TableKind, DataError> {
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
        Err(DataError::Invalid(format!(
            "{}: expected a .csv, .tsv, .sdf (optionally .gz) or .parquet file",
            path.display()
        )))
    }
}

/// Header and rows (with their 1-based line numbers; for parquet the row number + 1, counting
/// the header as line 1 like a CSV) of a table, each cell as a string. A row that cannot be
/// used (not UTF-8) is `(line, Err(reason))`: one bad row, reading goes on. An error of the
/// file itself (a truncated gzip stream, an I/O error) is an outer `Err` naming the file, and
/// ends the rows.
pub type Cells = (
    Vec<String>,
    Box<dyn Iterator<Item = Result<(usize, Result<Vec<String>, String>), DataError>>>,
);

/// A table's header and rows as strings; see [`Cells`].
pub fn table_cells(path: &Path) -> Result<Cells, DataError> {
    match table_kind(path)? {
        TableKind::Sdf => sdf_cells(path),
        TableKind::Parquet => {
            // a row group at a time (a large labelled corpus streams through here)
            let (headers, rows) = mole_featurize::parquet_string_rows(path)?;
            let rows = rows.enumerate().map(|(i, r)| Ok((i + 2, Ok(r?))));
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
                .map_err(|e| {
                    DataError::read(format!("{}:1: cannot read the header", path.display()), e)
                })?
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
                    Err(e) => Err(DataError::Invalid(format!(
                        "{}:{line}: cannot read: {e}",
                        path.display()
                    ))),
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
pub(super) fn sdf_cells(path: &Path) -> Result<Cells, DataError> {
    let reader = std::io::BufReader::with_capacity(64 * 1024, open_maybe_gz(path)?);
    let mut names: Vec<String> = Vec::new();
    // each record as its SMILES (or why it has none) and data items: the molecules
    // themselves are not kept
    let mut records: Vec<SdfRow> = Vec::new();
    for record in mole_featurize::SdfReader::new(reader) {
        let record = record.map_err(|e| DataError::Invalid(format!("{}:{e}", path.display())))?;
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
pub fn parse_label(cell: &str) -> Result<f32, String> {
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
) -> Result<Table, DataError> {
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
    Box<dyn Iterator<Item = Result<Result<RawRow, Reject>, DataError>>>,
);

/// [`read_table`] as a stream of rows (CSV/TSV are read lazily; a large labelled corpus).
pub fn table_rows(
    path: &Path,
    smiles_column: &str,
    label_columns: &[String],
    split_column: &str,
) -> Result<TableRows, DataError> {
    let (headers, records) = table_cells(path)?;
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let smiles_idx = find(smiles_column).ok_or_else(|| {
        DataError::Invalid(format!(
            "{}:1: no `{smiles_column}` column (columns: {})",
            path.display(),
            headers.join(", ")
        ))
    })?;
    let split_idx = if split_column.is_empty() {
        None
    } else {
        Some(find(split_column).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}:1: no split column `{split_column}`",
                path.display()
            ))
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
                find(c).ok_or_else(|| {
                    DataError::Invalid(format!("{}:1: no label column `{c}`", path.display()))
                })
            })
            .collect::<Result<_, _>>()?
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
pub fn read_smiles(path: &Path) -> Result<(Vec<RawRow>, Vec<Reject>), DataError> {
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
