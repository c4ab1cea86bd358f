//! Reading molecule files: `.smi`/`.txt` (SMILES, optional name after whitespace),
//! `.csv`/`.tsv` with a `smiles` column (header matched case-insensitively; an optional
//! `name` or `id` column gives the name) and SD/MOL files (`.sdf`, `.sd`, `.mol`: the record's
//! connection table, written out as SMILES, and its name line), each optionally
//! gzip-compressed (`.gz`); and parquet tables.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One molecule of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoleculeRecord {
    /// 1-based line in the file; for an SD file, the 1-based record number.
    pub line: usize,
    pub smiles: String,
    pub name: Option<String>,
    /// The row's other columns, as [`MoleculeReader::columns`] names them: a table's columns
    /// besides the SMILES and name, an SD record's data items (empty when absent).
    pub columns: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: cannot open")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: read error: {reason}")]
    Read {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: unsupported file type (expected .smi, .txt, .csv, .tsv, .sdf, .sd or .mol, optionally .gz, or .parquet)")]
    UnsupportedFormat { path: PathBuf },
    #[error("{path}{}: {reason}", line_suffix(*line))]
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: not a text file (a NUL byte in its first {checked} bytes{gz}); expected SMILES or a table")]
    Binary {
        path: PathBuf,
        checked: usize,
        gz: &'static str,
    },
}

/// `:line` for an error of one line, nothing for one of the whole file (line 0).
fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

impl IoError {
    /// True for an error confined to one row (a line that is not UTF-8, a row without a SMILES
    /// field): the row is rejected and reading goes on. Every other error (cannot open, a
    /// truncated gzip stream, an I/O error, a binary file) concerns the whole file: the
    /// command must fail naming it, not count it as a bad row.
    pub fn is_row_error(&self) -> bool {
        matches!(self, IoError::Format { line, .. } if *line > 0)
    }

    /// The 1-based line of a row error (0 when the error concerns the whole file).
    pub fn line(&self) -> usize {
        match self {
            IoError::Read { line, .. } | IoError::Format { line, .. } => *line,
            _ => 0,
        }
    }

    /// The reason without the file and line prefix (for a row's error column).
    pub fn reason(&self) -> String {
        match self {
            IoError::Read { reason, .. } | IoError::Format { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// Bytes inspected for a NUL byte before a file is read as text.
const BINARY_CHECK_BYTES: usize = 8192;

/// Fails with [`IoError::Binary`] when the first bytes of `reader` hold a NUL byte (text
/// formats never do): a binary file is an error of the file, not thousands of bad rows.
fn refuse_binary(
    path: &Path,
    reader: &mut BufReader<Box<dyn Read + Send>>,
    gz: bool,
) -> Result<(), IoError> {
    let head = reader.fill_buf().map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        line: 1,
        reason: e.to_string(),
    })?;
    let checked = head.len().min(BINARY_CHECK_BYTES);
    if head[..checked].contains(&0) {
        return Err(IoError::Binary {
            path: path.to_path_buf(),
            checked,
            gz: if gz { " after decompression" } else { "" },
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Smi,
    Delimited(u8),
    Parquet,
    Sdf,
}

fn detect_format(path: &Path) -> Option<(Format, bool)> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(s) => (s.to_string(), true),
        None => (name, false),
    };
    let ext = stem.rsplit('.').next()?;
    let format = match ext {
        "smi" | "smiles" | "txt" => Format::Smi,
        "csv" => Format::Delimited(b','),
        "tsv" => Format::Delimited(b'\t'),
        "parquet" if !gz => Format::Parquet,
        "sdf" | "sd" | "mol" => Format::Sdf,
        _ => return None,
    };
    Some((format, gz))
}

/// Iterator over the molecules of a file.
pub struct MoleculeReader {
    path: PathBuf,
    inner: ReaderKind,
    /// Names of the columns passed through with each record (`MoleculeRecord::columns`).
    columns: Vec<String>,
    /// Blank `.smi` lines are row errors rather than skipped.
    blank_lines: bool,
}

enum ReaderKind {
    Smi {
        /// Lines as bytes: a line that is not UTF-8 is one bad row, not the end of the file.
        lines: std::io::Split<BufReader<Box<dyn Read + Send>>>,
        line: usize,
    },
    Delimited {
        records: csv::StringRecordsIntoIter<Box<dyn Read + Send>>,
        smiles_column: usize,
        name_column: Option<usize>,
        other_columns: Vec<usize>,
    },
    /// SD records; a record's number is its row number.
    Sdf {
        records: crate::sdf::SdfReader<BufReader<Box<dyn Read + Send>>>,
        /// The first record, read when the file was opened (its data items name the columns).
        first: Option<Result<crate::sdf::SdfRecord, crate::sdf::SdfReadError>>,
    },
    /// A parquet table, read one row group at a time; `line` is the 1-based row number.
    Rows {
        rows: parquet::record::reader::RowIter<'static>,
        smiles_column: usize,
        name_column: Option<usize>,
        other_columns: Vec<usize>,
        row: usize,
    },
    Done,
}

/// Opens a molecule file; the format comes from the extension.
pub fn read_molecules(path: impl AsRef<Path>) -> Result<MoleculeReader, IoError> {
    let path = path.as_ref().to_path_buf();
    let (format, gz) =
        detect_format(&path).ok_or_else(|| IoError::UnsupportedFormat { path: path.clone() })?;
    if format == Format::Parquet {
        let (headers, rows) = parquet_rows(&path)?;
        let (smiles_column, name_column) = locate_columns(&path, &headers)?;
        let other_columns = others(&headers, smiles_column, name_column);
        return Ok(MoleculeReader {
            path,
            columns: other_columns.iter().map(|&i| headers[i].clone()).collect(),
            inner: ReaderKind::Rows {
                rows,
                smiles_column,
                name_column,
                other_columns,
                row: 0,
            },
            blank_lines: false,
        });
    }
    let file = open_file(&path)?;
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    refuse_binary(&path, &mut reader, gz)?;
    let mut columns = Vec::new();
    let inner = match format {
        Format::Smi => ReaderKind::Smi {
            lines: reader.split(b'\n'),
            line: 0,
        },
        Format::Parquet => unreachable!("handled above"),
        Format::Sdf => {
            let mut records = crate::sdf::SdfReader::new(reader);
            let first = records.next();
            if let Some(Ok(record)) = &first {
                columns = record.properties.iter().map(|(k, _)| k.clone()).collect();
            }
            ReaderKind::Sdf { records, first }
        }
        Format::Delimited(delimiter) => {
            let mut csv_reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .has_headers(true)
                .flexible(true)
                // LF ends records: with CRLF the csv crate counts lines one short (it reads
                // the LF as the start of the next record); the CR left on the last field is
                // trimmed like any other whitespace
                .terminator(csv::Terminator::Any(b'\n'))
                .from_reader(Box::new(reader) as Box<dyn Read + Send>);
            let headers = csv_reader
                .headers()
                .map_err(|e| IoError::Read {
                    path: path.clone(),
                    line: 1,
                    reason: e.to_string(),
                })?
                .iter()
                // a CRLF file's CR stays on the last field (LF ends records)
                .map(|h| h.strip_suffix('\r').unwrap_or(h).to_string())
                .collect::<Vec<_>>();
            let (smiles_column, name_column) = locate_columns(&path, &headers)?;
            let other_columns = others(&headers, smiles_column, name_column);
            columns = other_columns.iter().map(|&i| headers[i].clone()).collect();
            ReaderKind::Delimited {
                records: csv_reader.into_records(),
                smiles_column,
                name_column,
                other_columns,
            }
        }
    };
    Ok(MoleculeReader {
        path,
        inner,
        columns,
        blank_lines: false,
    })
}

/// Opens a file for reading; a directory is refused here (reading it would fail later with a
/// less clear message).
fn open_file(path: &Path) -> Result<File, IoError> {
    let file = File::open(path).map_err(|source| IoError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(IoError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory"),
        });
    }
    Ok(file)
}

/// The columns of a header other than the SMILES and name columns, in file order.
fn others(headers: &[String], smiles_column: usize, name_column: Option<usize>) -> Vec<usize> {
    (0..headers.len())
        .filter(|&i| i != smiles_column && Some(i) != name_column)
        .collect()
}

/// The cells of `columns` in a row (empty where the row is short).
fn cells_of<'a>(values: impl Fn(usize) -> Option<&'a str>, columns: &[usize]) -> Vec<String> {
    columns
        .iter()
        .map(|&i| {
            let cell = values(i).unwrap_or("");
            // a CRLF file's CR stays on the last field (LF ends records)
            cell.strip_suffix('\r').unwrap_or(cell).to_string()
        })
        .collect()
}

impl MoleculeReader {
    /// Names of the columns every record carries in [`MoleculeRecord::columns`]: a table's
    /// columns other than the SMILES and name (file order), an SD file's data items (those of
    /// its first record; others are dropped), none for a SMILES file.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Reports each blank line of a `.smi`/`.txt` file as a row error ("empty line") instead
    /// of skipping it, so that a consumer writing one output row per input row keeps row i of
    /// its output = line i of the input.
    pub fn keep_blank_lines(mut self) -> Self {
        self.blank_lines = true;
        self
    }
}

impl Iterator for MoleculeReader {
    type Item = Result<MoleculeRecord, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            ReaderKind::Done => None,
            ReaderKind::Sdf { records, first } => match first.take().or_else(|| records.next())? {
                Ok(record) => Some(sdf_row(&self.path, record, &self.columns)),
                Err(e) => {
                    self.inner = ReaderKind::Done;
                    Some(Err(IoError::Read {
                        path: self.path.clone(),
                        line: e.line,
                        reason: e.reason,
                    }))
                }
            },
            ReaderKind::Rows {
                rows,
                smiles_column,
                name_column,
                other_columns,
                row,
            } => loop {
                let values = match rows.next()? {
                    Ok(r) => row_strings(&r),
                    Err(e) => {
                        let err = IoError::Read {
                            path: self.path.clone(),
                            line: *row + 1,
                            reason: e.to_string(),
                        };
                        self.inner = ReaderKind::Done;
                        return Some(Err(err));
                    }
                };
                *row += 1;
                let smiles = values.get(*smiles_column).map(|s| s.trim()).unwrap_or("");
                if smiles.is_empty() {
                    continue;
                }
                let name = name_column
                    .and_then(|c| values.get(c))
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                return Some(Ok(MoleculeRecord {
                    line: *row,
                    smiles: smiles.to_string(),
                    name,
                    columns: cells_of(|i| values.get(i).map(String::as_str), other_columns),
                }));
            },
            ReaderKind::Smi { lines, line } => loop {
                *line += 1;
                let mut bytes = match lines.next()? {
                    Ok(b) => b,
                    Err(e) => {
                        let err = IoError::Read {
                            path: self.path.clone(),
                            line: *line,
                            reason: e.to_string(),
                        };
                        self.inner = ReaderKind::Done;
                        return Some(Err(err));
                    }
                };
                // CRLF line ends; a UTF-8 byte-order mark before the first line
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                if *line == 1 && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    bytes.drain(..3);
                }
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(Err(IoError::Format {
                            path: self.path.clone(),
                            line: *line,
                            reason: format!(
                                "not UTF-8 text (invalid byte at column {})",
                                e.utf8_error().valid_up_to() + 1
                            ),
                        }))
                    }
                };
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    if self.blank_lines {
                        return Some(Err(IoError::Format {
                            path: self.path.clone(),
                            line: *line,
                            reason: "empty line".to_string(),
                        }));
                    }
                    continue;
                }
                let mut parts = trimmed.splitn(2, char::is_whitespace);
                let smiles = parts.next().unwrap_or_default().to_string();
                let name = parts
                    .next()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                return Some(Ok(MoleculeRecord {
                    line: *line,
                    smiles,
                    name,
                    columns: Vec::new(),
                }));
            },
            ReaderKind::Delimited {
                records,
                smiles_column,
                name_column,
                other_columns,
            } => loop {
                let record = match records.next()? {
                    Ok(r) => r,
                    Err(e) => {
                        let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                        // a row that is not UTF-8 is one bad row: the reader has moved past
                        // it; any other error (I/O, gzip) ends the file
                        if let csv::ErrorKind::Utf8 { .. } = e.kind() {
                            return Some(Err(IoError::Format {
                                path: self.path.clone(),
                                line,
                                reason: "not UTF-8 text".to_string(),
                            }));
                        }
                        let err = IoError::Read {
                            path: self.path.clone(),
                            line,
                            reason: e.to_string(),
                        };
                        self.inner = ReaderKind::Done;
                        return Some(Err(err));
                    }
                };
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let Some(smiles) = record.get(*smiles_column) else {
                    return Some(Err(IoError::Format {
                        path: self.path.clone(),
                        line,
                        reason: "row has no smiles field".to_string(),
                    }));
                };
                let name = name_column
                    .and_then(|c| record.get(c))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                return Some(Ok(MoleculeRecord {
                    line,
                    smiles: smiles.trim().to_string(),
                    name,
                    columns: cells_of(|i| record.get(i), other_columns),
                }));
            },
        }
    }
}

/// An SD record as a row: its molecule written as SMILES ([`crate::to_smiles`], atoms in the
/// record's order), its name line and its data items for `columns`; a record that is not a
/// valid molecule is a row error naming the record and the file line.
fn sdf_row(
    path: &Path,
    record: crate::sdf::SdfRecord,
    columns: &[String],
) -> Result<MoleculeRecord, IoError> {
    match record.smiles() {
        Ok(smiles) => Ok(MoleculeRecord {
            line: record.number,
            smiles,
            name: Some(record.name.clone()).filter(|n| !n.is_empty()),
            columns: columns
                .iter()
                .map(|c| record.property(c).unwrap_or_default().to_string())
                .collect(),
        }),
        Err(reason) => Err(IoError::Format {
            path: path.to_path_buf(),
            line: record.number,
            reason,
        }),
    }
}

/// The `smiles` column (required) and a `name` or `id` column (optional) of a header, matched
/// case-insensitively.
fn locate_columns(path: &Path, headers: &[String]) -> Result<(usize, Option<usize>), IoError> {
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let smiles_column = find("smiles").ok_or_else(|| IoError::Format {
        path: path.to_path_buf(),
        line: 1,
        reason: format!("no 'smiles' column (columns: {})", headers.join(", ")),
    })?;
    Ok((smiles_column, find("name").or_else(|| find("id"))))
}

/// A parquet file's top-level column names and a lazy iterator over its rows (one row group
/// in memory at a time).
fn parquet_rows(
    path: &Path,
) -> Result<(Vec<String>, parquet::record::reader::RowIter<'static>), IoError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = open_file(path)?;
    let reader = SerializedFileReader::new(file).map_err(|e| IoError::Format {
        path: path.to_path_buf(),
        line: 0,
        reason: format!("not a parquet file: {e}"),
    })?;
    let headers: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    Ok((headers, reader.into_iter()))
}

/// A parquet row as strings: nulls become empty strings, numbers their decimal form.
fn row_strings(row: &parquet::record::Row) -> Vec<String> {
    use parquet::record::Field;
    row.get_column_iter()
        .map(|(_, field)| match field {
            Field::Null => String::new(),
            Field::Str(s) => s.clone(),
            Field::Double(v) => v.to_string(),
            Field::Float(v) => v.to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Reads a whole parquet file as strings: the top-level column names and one `Vec<String>` per
/// row (nulls become empty strings, numbers their decimal form).
pub fn read_parquet_strings(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), IoError> {
    let (headers, rows) = parquet_string_rows(path)?;
    Ok((headers, rows.collect::<Result<_, _>>()?))
}

/// A parquet table's string rows (see [`read_parquet_strings`]) read lazily, one row group in
/// memory at a time; an `Err` (a damaged file) names the row it stopped at.
pub type ParquetStringRows = (
    Vec<String>,
    Box<dyn Iterator<Item = Result<Vec<String>, IoError>> + Send>,
);

/// [`read_parquet_strings`] as a stream of rows.
pub fn parquet_string_rows(path: &Path) -> Result<ParquetStringRows, IoError> {
    let (headers, rows) = parquet_rows(path)?;
    let path = path.to_path_buf();
    let rows = rows.enumerate().map(move |(i, row)| {
        row.map(|row| row_strings(&row)).map_err(|e| IoError::Read {
            path: path.clone(),
            line: i + 1,
            reason: e.to_string(),
        })
    });
    Ok((headers, Box::new(rows)))
}
