//! Edge cases of every family RDKit's SMILES reader treats specially (isotope-labelled
//! hydrogens, isotopes, hydrogen-only species, RDKit's SMILES extensions, whitespace, accept /
//! reject verdicts, large aromatic systems), against what RDKit 2022.09.5 makes of them.
//! `tests/data/rdkit_edge_cases.jsonl` was written by `scripts/rdkit/edge_cases.py` (RDKit in
//! a scratch venv); nothing here runs Python.

use mole_featurize::{distance_matrix, morgan_environments, parse_smiles};
use serde_json::Value;

/// Strings where this crate deliberately or knowingly differs from RDKit, and why. The test
/// also checks that they still differ, so the list stays true.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "",
    "an empty cell is a missing molecule, not one without atoms (RDKit returns an empty molecule)",
)];

fn ids(v: &Value) -> Vec<Option<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().map(|x| x as u32))
        .collect()
}

#[test]
fn featurizer_matches_rdkit_on_edge_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rdkit_edge_cases.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("edge-case expectations");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut families = std::collections::BTreeMap::<String, usize>::new();
    for line in text.lines() {
        let expected: Value = serde_json::from_str(line).expect("JSON line");
        let smiles = expected["smiles"].as_str().expect("smiles");
        let family = expected["family"].as_str().expect("family").to_string();
        *families.entry(family.clone()).or_default() += 1;
        let known = KNOWN_DIFFERENCES.iter().any(|(s, _)| *s == smiles);
        let ours = parse_smiles(smiles);
        let agrees = match (&ours, expected["ok"].as_bool().expect("ok")) {
            (Err(_), false) => true,
            (Ok(_), false) | (Err(_), true) => false,
            (Ok(mol), true) => {
                let envs = morgan_environments(mol, 2);
                let dist: Vec<Vec<i64>> = distance_matrix(mol)
                    .into_iter()
                    .map(|row| row.into_iter().map(i64::from).collect())
                    .collect();
                let expected_dist: Vec<Vec<i64>> =
                    serde_json::from_value(expected["dist"].clone()).expect("dist");
                mol.num_atoms() as u64 == expected["num_atoms"].as_u64().expect("num_atoms")
                    && envs[0] == ids(&expected["morgan_r0"])
                    && envs[1] == ids(&expected["morgan_r1"])
                    && envs[2] == ids(&expected["morgan_r2"])
                    && dist == expected_dist
            }
        };
        checked += 1;
        if agrees == known {
            failures.push(format!(
                "[{family}] {smiles:?}: {} (RDKit ok = {}, ours = {:?})",
                if known {
                    "listed as a known difference but agrees"
                } else {
                    "differs"
                },
                expected["ok"],
                ours.as_ref()
                    .map(|m| m.num_atoms())
                    .map_err(|e| e.to_string())
            ));
        }
    }
    assert!(checked > 400, "only {checked} cases read");
    for family in [
        "isotope_hydrogen",
        "isotope",
        "hydrogen_only",
        "extensions",
        "whitespace",
        "verdict",
        "large_aromatic",
    ] {
        assert!(
            families.get(family).copied().unwrap_or(0) >= 10,
            "family {family} missing"
        );
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
