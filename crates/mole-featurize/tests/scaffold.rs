//! Scaffolds and scaffold splits against RDKit and TDC (expected values made by
//! `scripts/rdkit/scaffold_oracle.py` and `scripts/rdkit/tdc_split_oracle.py`, see
//! scripts/rdkit/README.md).

use std::collections::HashMap;

use mole_featurize::parse_smiles;
use mole_featurize::scaffold::scaffold_smiles;
use mole_featurize::split::{scaffold_split, Fractions, Part};

fn scaffold_of(smiles: &str) -> Option<String> {
    parse_smiles(smiles).and_then(|m| scaffold_smiles(&m)).ok()
}

/// 3,204 public molecules (approved drugs, ChEMBL, HIV, other dataset columns, and the cases
/// that once differed): two share a scaffold for us exactly when they do for RDKit's
/// `MurckoScaffoldSmiles(includeChirality=False)`, and RDKit's failures are ours.
#[test]
fn scaffold_groups_equal_rdkits() {
    let text = include_str!("data/rdkit_scaffolds.jsonl");
    let mut ours_of_rdkit: HashMap<String, String> = HashMap::new();
    let mut rdkit_of_ours: HashMap<String, String> = HashMap::new();
    let mut agreeing = 0;
    let mut disagreements = Vec::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("json line");
        let smiles = record["smiles"].as_str().expect("smiles");
        let rdkit = record["scaffold"].as_str().map(str::to_string);
        let ours = scaffold_of(smiles);
        match (rdkit, ours) {
            (None, None) => {}
            (Some(r), Some(o)) => {
                let first_ours = ours_of_rdkit.entry(r.clone()).or_insert_with(|| o.clone());
                let first_rdkit = rdkit_of_ours.entry(o.clone()).or_insert_with(|| r.clone());
                if *first_ours != o || *first_rdkit != r {
                    disagreements.push(format!("{smiles}: rdkit {r}, ours {o}"));
                } else {
                    agreeing += 1;
                }
            }
            (r, o) => disagreements.push(format!("{smiles}: rdkit {r:?}, ours {o:?}")),
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(ours_of_rdkit.len() > 2000 && agreeing > 3000);
}

/// TDC's `create_scaffold_split` on ESOL and BBBP with several seeds and fractions: every row
/// in the same part.
#[test]
fn scaffold_split_equals_tdcs() {
    let cases: serde_json::Value =
        serde_json::from_str(include_str!("data/tdc_scaffold_splits.json")).expect("json");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cases = cases["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 8);
    for case in cases {
        let path = root.join(case["data"].as_str().expect("data"));
        let text = std::fs::read_to_string(&path).expect("dataset");
        let scaffolds: Vec<Option<String>> = text
            .lines()
            .skip(1)
            .map(|l| scaffold_of(l.split(',').next().unwrap_or("")))
            .collect();
        let f: Vec<f64> = serde_json::from_value(case["fractions"].clone()).expect("fractions");
        let fractions = Fractions {
            train: f[0],
            valid: f[1],
            test: f[2],
        };
        let seed = case["seed"].as_u64().expect("seed");
        let parts: String = scaffold_split(&scaffolds, seed, fractions)
            .into_iter()
            .map(|p| match p {
                Some(Part::Train) => 'r',
                Some(Part::Valid) => 'v',
                Some(Part::Test) => 't',
                None => '-',
            })
            .collect();
        let expected = case["parts"].as_str().expect("parts");
        let differ = parts
            .chars()
            .zip(expected.chars())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(parts.len(), expected.len(), "{}", path.display());
        assert_eq!(
            differ,
            0,
            "{} seed {seed}: {differ} rows differ",
            path.display()
        );
    }
}
