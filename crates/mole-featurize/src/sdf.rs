//! SD files: records of a molfile plus data items (`> <NAME>` then value lines up to a blank
//! line), each ended by `$$$$`; a lone `.mol` file is one record. Records are read one at a
//! time (memory holds one record); a bad record is one error, reading goes on at the next.

use std::io::BufRead;

use crate::molecule::Molecule;
use crate::molfile::{parse_molblock, MolfileError};

/// Lines one record may hold; beyond it the record is refused (and skipped to its `$$$$`)
/// rather than held in memory. A V3000 table of 100,000 atoms and bonds fits.
pub const MAX_RECORD_LINES: usize = 1_000_000;

/// One record of an SD file.
#[derive(Debug, Clone)]
pub struct SdfRecord {
    /// 1-based number of the record in the file.
    pub number: usize,
    /// 1-based line where the record starts.
    pub line: usize,
    /// The header's first line (RDKit's `_Name`), without surrounding whitespace.
    pub name: String,
    /// Data items in file order: `(name, value)`; a multi-line value joined with `\n`.
    pub properties: Vec<(String, String)>,
    pub molecule: Result<Molecule, MolfileError>,
}

impl SdfRecord {
    /// The value of the data item `name`, if the record has one.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The record's molecule written as SMILES ([`crate::to_smiles`], atoms in the record's
    /// order), or why it has none: "record N (line L): no atoms", or the table's error as
    /// "record N ("name"), line L: reason" (L the file's line of a syntax error, or where the
    /// record starts for a chemistry error).
    pub fn smiles(&self) -> Result<String, String> {
        match &self.molecule {
            Ok(mol) if mol.num_atoms() == 0 => Err(format!(
                "record {} (line {}): no atoms",
                self.number, self.line
            )),
            Ok(mol) => Ok(crate::to_smiles(mol)),
            Err(e) => Err(self.error_reason(e)),
        }
    }

    fn error_reason(&self, error: &MolfileError) -> String {
        // the record's name line too, when it has one: often the only id a bad record has
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", self.name)
        };
        match error {
            MolfileError::Syntax { line, reason } => format!(
                "record {}{name}, line {}: {reason}",
                self.number,
                self.line + line - 1
            ),
            MolfileError::Chemistry(reason) => format!(
                "record {}{name} (line {}): {reason}",
                self.number, self.line
            ),
        }
    }
}

/// An I/O error or a line that is not UTF-8 text (the whole file is then in doubt).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SdfReadError {
    pub line: usize,
    pub reason: String,
}

/// Iterator over the records of an SD file.
pub struct SdfReader<R: BufRead> {
    input: R,
    line: usize,
    records: usize,
    done: bool,
}

impl<R: BufRead> SdfReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            records: 0,
            done: false,
        }
    }

    /// The next line without its line end; `None` at the end of the file.
    fn next_line(&mut self) -> Result<Option<String>, SdfReadError> {
        let mut bytes = Vec::new();
        let read = self
            .input
            .read_until(b'\n', &mut bytes)
            .map_err(|e| SdfReadError {
                line: self.line + 1,
                reason: e.to_string(),
            })?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if self.line == 1 && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            bytes.drain(..3);
        }
        // a byte that is not UTF-8 (a Latin-1 name, say) is replaced rather than failing the
        // record: names and values stay readable, the connection table is ASCII anyway
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl<R: BufRead> Iterator for SdfReader<R> {
    type Item = Result<SdfRecord, SdfReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut lines: Vec<String> = Vec::new();
        let mut start = 0;
        let mut too_long = false;
        loop {
            let line = match self.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if line.starts_with("$$$$") {
                break;
            }
            if lines.is_empty() && start == 0 {
                start = self.line;
            }
            if lines.len() < MAX_RECORD_LINES {
                lines.push(line);
            } else {
                too_long = true;
            }
        }
        // blank lines after the last record are not a record
        if lines.iter().all(|l| l.trim().is_empty()) && self.done {
            return None;
        }
        self.records += 1;
        let number = self.records;
        let name = lines.first().map_or("", |l| l.trim()).to_string();
        if too_long {
            return Some(Ok(SdfRecord {
                number,
                line: start,
                name,
                properties: Vec::new(),
                molecule: Err(MolfileError::Syntax {
                    line: MAX_RECORD_LINES,
                    reason: format!("record longer than {MAX_RECORD_LINES} lines"),
                }),
            }));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (molecule, used) = match parse_molblock(&refs) {
            Ok((mol, used)) => (Ok(mol), used),
            Err(e) => {
                // the data items still come along when the table is bad
                let used = refs
                    .iter()
                    .position(|l| l.starts_with("M  END"))
                    .map_or(refs.len(), |i| i + 1);
                (Err(e), used)
            }
        };
        let properties = data_items(&refs[used.min(refs.len())..]);
        Some(Ok(SdfRecord {
            number,
            line: start,
            name,
            properties,
            molecule,
        }))
    }
}

/// The `> <NAME>` items after a molfile: a header line holds the name between `<` and `>`; the
/// value is the lines up to the next empty line. Other lines are skipped.
fn data_items(lines: &[&str]) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim_start();
        at += 1;
        let Some(rest) = line.strip_prefix('>') else {
            continue;
        };
        let name = rest
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(n, _)| n.to_string());
        let mut value_lines = Vec::new();
        while at < lines.len() && !lines[at].is_empty() {
            value_lines.push(lines[at]);
            at += 1;
        }
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let value = value_lines.join("\n");
            // a name given twice: the last value wins, as in RDKit
            match items.iter_mut().find(|(n, _)| *n == name) {
                Some(item) => item.1 = value,
                None => items.push((name, value)),
            }
        }
    }
    items
}
