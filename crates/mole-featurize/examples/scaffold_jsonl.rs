//! Writes the Murcko scaffold of one SMILES per line (file argument or stdin) as the JSON object
//! `scripts/rdkit/scaffold_oracle.py` writes for RDKit: `{"smiles", "scaffold"}`, with
//! `"scaffold": null` and the reason (`"error"`) where the molecule is rejected. Used with
//! `scripts/rdkit/compare_scaffolds.py` to check that the scaffold groups equal RDKit's:
//!
//! ```text
//! cargo run --release -p mole-featurize --example scaffold_jsonl -- strings.txt > ours.jsonl
//! ```

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use mole_featurize::{parse_smiles, scaffold::scaffold_smiles};
use serde_json::json;

fn main() -> std::io::Result<()> {
    let input: Box<dyn Read> = match std::env::args().nth(1) {
        Some(path) => Box::new(std::fs::File::open(path)?),
        None => Box::new(std::io::stdin()),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in BufReader::new(input).split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let smiles = String::from_utf8_lossy(&line);
        let record = match parse_smiles(&smiles).and_then(|mol| scaffold_smiles(&mol)) {
            Ok(scaffold) => json!({"smiles": smiles, "scaffold": scaffold}),
            Err(e) => json!({"smiles": smiles, "scaffold": null, "error": e.to_string()}),
        };
        writeln!(out, "{record}")?;
    }
    out.flush()
}
