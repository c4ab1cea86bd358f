//! Exact agreement with RDKit on the 1245 molecules of the featurisation fixture.

use std::collections::BTreeMap;

use mole_featurize::{distance_matrix, featurize, parse_smiles, Vocabulary};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/featurize/tdc_featurized.jsonl"
);
const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/vocab/vocab_207_radius0.json"
);

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_i64().unwrap_or(i64::MIN)).collect())
        .unwrap_or_default()
}

fn opt_ints(v: &Value) -> Vec<Option<i64>> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_i64()).collect())
        .unwrap_or_default()
}

#[test]
fn matches_rdkit_on_all_fixture_molecules() {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture jsonl");
    let vocab = Vocabulary::from_json_file(VOCAB).expect("fixture vocabulary");
    let mut failures: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        total += 1;
        let row: Value = serde_json::from_str(line).expect("json line");
        let smiles = row["smiles"].as_str().expect("smiles").to_string();
        let mut fail = |field: &'static str, detail: String| {
            failures
                .entry(field)
                .or_default()
                .push(format!("{smiles}  [{detail}]"));
        };
        let mol = match parse_smiles(&smiles) {
            Ok(m) => m,
            Err(e) => {
                fail("parse", e.to_string());
                continue;
            }
        };
        let atoms = mol.atoms();
        if atoms.len() as i64 != row["num_atoms"].as_i64().unwrap_or(-1) {
            fail("num_atoms", format!("got {}", atoms.len()));
            continue;
        }
        type Getter = fn(&mole_featurize::Atom) -> i64;
        let per_atom: [(&'static str, Getter); 10] = [
            ("atom_atomic_num", |a| i64::from(a.atomic_num())),
            ("atom_is_aromatic", |a| i64::from(a.is_aromatic())),
            ("atom_degree", |a| i64::from(a.degree())),
            ("atom_total_degree", |a| i64::from(a.total_degree())),
            ("atom_total_num_hs", |a| i64::from(a.total_num_hs())),
            ("atom_formal_charge", |a| i64::from(a.formal_charge())),
            ("atom_isotope", |a| i64::from(a.isotope())),
            ("atom_delta_mass", |a| i64::from(a.delta_mass())),
            ("atom_in_ring", |a| i64::from(a.in_ring())),
            ("atom_symbol", |_| 0),
        ];
        for (field, get) in per_atom {
            if field == "atom_symbol" {
                let expected: Vec<&str> = row[field]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                let got: Vec<&str> = atoms.iter().map(|a| a.symbol()).collect();
                if expected != got {
                    fail(field, format!("{got:?}"));
                }
                continue;
            }
            let expected = ints(&row[field]);
            let got: Vec<i64> = atoms.iter().map(get).collect();
            if expected != got {
                let idx: Vec<usize> = (0..got.len()).filter(|&i| got[i] != expected[i]).collect();
                fail(field, format!("atoms {idx:?}: got {got:?}"));
            }
        }
        // bonds as an unordered set of (min, max, type)
        let mut expected_bonds: Vec<(i64, i64, i64)> = row["bonds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| {
                        let v = ints(b);
                        (v[0].min(v[1]), v[0].max(v[1]), v[2])
                    })
                    .collect()
            })
            .unwrap_or_default();
        expected_bonds.sort_unstable();
        let mut got_bonds: Vec<(i64, i64, i64)> = mol
            .bonds()
            .iter()
            .map(|b| {
                let (x, y) = (b.begin() as i64, b.end() as i64);
                (x.min(y), x.max(y), i64::from(b.bond_type().rdkit_code()))
            })
            .collect();
        got_bonds.sort_unstable();
        if expected_bonds != got_bonds {
            fail("bonds", String::new());
        }
        let f = featurize(&smiles, &vocab).expect("featurize");
        let r0: Vec<i64> = f.morgan_r0.iter().map(|&v| i64::from(v)).collect();
        if r0 != ints(&row["morgan_r0"]) {
            fail("morgan_r0", String::new());
        }
        let r1: Vec<Option<i64>> = f.morgan_r1.iter().map(|v| v.map(i64::from)).collect();
        if r1 != opt_ints(&row["morgan_r1"]) {
            fail("morgan_r1", String::new());
        }
        let r2: Vec<Option<i64>> = f.morgan_r2.iter().map(|v| v.map(i64::from)).collect();
        if r2 != opt_ints(&row["morgan_r2"]) {
            fail("morgan_r2", String::new());
        }
        let tokens: Vec<i64> = f.tokens.iter().map(|&v| i64::from(v)).collect();
        if tokens != ints(&row["tokens"]) {
            fail("tokens", String::new());
        }
        let mut input_ids = vec![i64::from(vocab.cls_id())];
        input_ids.extend(&tokens);
        if input_ids != ints(&row["input_ids"]) {
            fail("input_ids", String::new());
        }
        let expected_dist: Vec<Vec<i64>> = row["dist"]
            .as_array()
            .map(|a| a.iter().map(ints).collect())
            .unwrap_or_default();
        let dist: Vec<Vec<i64>> = distance_matrix(&mol)
            .iter()
            .map(|r| r.iter().map(|&d| i64::from(d)).collect())
            .collect();
        if dist != expected_dist || f.dist != distance_matrix(&mol) {
            fail("dist", String::new());
        }
    }
    assert_eq!(total, 1245, "fixture molecule count");
    let fields = [
        "parse",
        "num_atoms",
        "atom_symbol",
        "atom_atomic_num",
        "atom_is_aromatic",
        "atom_degree",
        "atom_total_degree",
        "atom_total_num_hs",
        "atom_formal_charge",
        "atom_isotope",
        "atom_delta_mass",
        "atom_in_ring",
        "bonds",
        "morgan_r0",
        "morgan_r1",
        "morgan_r2",
        "tokens",
        "input_ids",
        "dist",
    ];
    let mut report = format!("{total} molecules\n");
    for field in fields {
        let list = failures.get(field).map(Vec::as_slice).unwrap_or(&[]);
        report.push_str(&format!("{field}: {} molecules fail\n", list.len()));
        for s in list.iter().take(5) {
            report.push_str(&format!("    {s}\n"));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "fixture mismatches:\n{report}");
}
