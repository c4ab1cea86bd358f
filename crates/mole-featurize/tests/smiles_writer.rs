//! `to_smiles` writes what `parse_smiles` reads back as the same molecule, atoms in the same
//! order: over the featurisation fixture, RDKit's edge cases and a ChEMBL sample, the re-read
//! molecule has the same atoms (element, isotope, charge, H count, radicals, aromaticity),
//! bonds and Morgan identifiers at radius 0, 1 and 2, atom for atom.

use std::io::{BufRead, BufReader};

use mole_featurize::{morgan_environments, parse_smiles, to_smiles, Molecule};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/featurize/tdc_featurized.jsonl"
);
const EDGE_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rdkit_edge_cases.jsonl"
);
const CHEMBL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../datasets/chembl_20k.smi.gz"
);

/// Atoms, bonds and Morgan identifiers at radius 0, 1 and 2.
type Signature = (Vec<String>, Vec<(usize, usize, u32)>, Vec<Vec<Option<u32>>>);

/// Everything the featurizer reads of a molecule, atom by atom and bond by bond.
fn signature(mol: &Molecule) -> Signature {
    let atoms = mol
        .atoms()
        .iter()
        .map(|a| {
            format!(
                "{}:{}:{}:{}:{}:{}:{}",
                a.atomic_num(),
                a.isotope(),
                a.formal_charge(),
                a.total_num_hs(),
                a.num_radical_electrons(),
                a.is_aromatic(),
                a.in_ring()
            )
        })
        .collect();
    // as a set: ring closures may come in another order, which the featurizer does not see
    let mut bonds: Vec<(usize, usize, u32)> = mol
        .bonds()
        .iter()
        .map(|b| {
            (
                b.begin().min(b.end()),
                b.begin().max(b.end()),
                b.bond_type().rdkit_code(),
            )
        })
        .collect();
    bonds.sort_unstable();
    (atoms, bonds, morgan_environments(mol, 2))
}

fn smiles_of_tests() -> Vec<String> {
    let mut all = Vec::new();
    for path in [FIXTURE, EDGE_CASES] {
        let text = std::fs::read_to_string(path).expect("test data");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let row: Value = serde_json::from_str(line).expect("JSON line");
            all.push(row["smiles"].as_str().expect("smiles").to_string());
        }
    }
    let file = std::fs::File::open(CHEMBL).expect("ChEMBL sample");
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    for line in reader.lines().take(5000) {
        let line = line.expect("text line");
        if let Some(smiles) = line.split_whitespace().next() {
            all.push(smiles.to_string());
        }
    }
    all
}

#[test]
fn written_smiles_reads_back_as_the_same_molecule_in_the_same_atom_order() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for smiles in smiles_of_tests() {
        let Ok(mol) = parse_smiles(&smiles) else {
            continue;
        };
        checked += 1;
        let written = to_smiles(&mol);
        match parse_smiles(&written) {
            Ok(again) if signature(&again) == signature(&mol) => {}
            Ok(_) => failures.push(format!("{smiles} -> {written}: a different molecule")),
            Err(e) => failures.push(format!("{smiles} -> {written}: {e}")),
        }
    }
    assert!(checked > 6000, "only {checked} molecules checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn written_smiles_keeps_isotopes_charges_radicals_and_fragments() {
    for (smiles, expected) in [
        ("[13CH4]", "[13CH4]"),
        ("[2H]C", "[2H]C"),
        ("C[N+](C)(C)C.[Cl-]", "C[N+](C)(C)C.[Cl-]"),
        ("[CH3]", "[CH3]"),
        ("c1ccccc1-c1ccccc1", "c1ccccc1-c1ccccc1"),
        ("c1cc[nH]c1", "c1cc[nH]c1"),
        ("OCC", "OCC"),
    ] {
        let mol = parse_smiles(smiles).expect("parses");
        assert_eq!(to_smiles(&mol), expected, "{smiles}");
    }
}
