//! Featurises one string per line (file argument or stdin) and writes, per line, the JSON object
//! `scripts/rdkit/oracle.py` writes for RDKit: `{"smiles", "ok": false, "error"}` for a rejected
//! string, else `{"smiles", "ok": true, "num_atoms", "morgan_r0", "morgan_r1", "morgan_r2",
//! "dist"}`. Only the line ending is removed from each line. Used with
//! `scripts/rdkit/compare.py` to measure agreement with RDKit on whole corpora:
//!
//! ```text
//! cargo run --release -p mole-featurize --example featurize_jsonl -- strings.txt > ours.jsonl
//! ```

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use mole_featurize::{distance_matrix, morgan_environments, parse_smiles};
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
        let record = match parse_smiles(&smiles) {
            Err(e) => json!({"smiles": smiles, "ok": false, "error": e.to_string()}),
            Ok(mol) => {
                let envs = morgan_environments(&mol, 2);
                json!({
                    "smiles": smiles,
                    "ok": true,
                    "num_atoms": mol.num_atoms(),
                    "morgan_r0": envs[0],
                    "morgan_r1": envs[1],
                    "morgan_r2": envs[2],
                    "dist": distance_matrix(&mol),
                })
            }
        };
        writeln!(out, "{record}")?;
    }
    out.flush()
}
