//! SD files written by RDKit 2022.09.5 (`scripts/rdkit/sdf_oracle.py`: the 1,245 fixture
//! molecules and RDKit's edge cases, V2000 and V3000, and 300 molecules with every hydrogen an
//! atom, a third of them in 3D) read as RDKit reads them: the same
//! accept/reject verdict and the same atoms, Morgan identifiers and distances, record by
//! record; and through `read_molecules` (the path every `mole` command takes) the written
//! SMILES featurises exactly like the record. Bad records are errors of their own and never
//! stop the file.

use std::io::{BufRead, BufReader};

use mole_featurize::{
    distance_matrix, morgan_environments, parse_smiles, read_molecules, Molecule, SdfReader,
};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// Records where RDKit's own SD round trip is wrong and ours is right, and why. The test checks
/// they still differ, so the list stays true.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "v2000",
    "edge-59",
    "`M  ISO  1   1 1000`: RDKit 2022.09 reads a 3-character field and gets isotope 100; we read 1000, as written",
)];

fn ids(v: &Value) -> Vec<Option<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().map(|x| x as u32))
        .collect()
}

fn gz_lines(path: &str) -> Vec<String> {
    let file = std::fs::File::open(path).expect(path);
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|l| l.expect("text"))
        .collect()
}

fn agrees(mol: &Molecule, expected: &Value) -> bool {
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

#[test]
fn rdkit_written_sd_files_read_as_rdkit_reads_them() {
    let expected: Vec<Value> = gz_lines(&format!("{DATA}/rdkit_sdf_expected.jsonl.gz"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in ["v2000", "v3000", "explicit_h"] {
        let path = format!("{DATA}/rdkit_{file}.sdf.gz");
        let reader = BufReader::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&path).expect("SD file"),
        ));
        let rows: Vec<&Value> = expected.iter().filter(|e| e["file"] == file).collect();
        let records: Vec<_> = SdfReader::new(reader)
            .map(|r| r.expect("readable file"))
            .collect();
        assert_eq!(records.len(), rows.len(), "{file}: records");
        // the same records through `read_molecules`: SMILES written from the record
        let via_smiles: Vec<_> = read_molecules(&path).expect("opens").collect();
        assert_eq!(via_smiles.len(), rows.len(), "{file}: rows");
        for ((record, row), smiles_row) in records.iter().zip(&rows).zip(&via_smiles) {
            checked += 1;
            let name = row["name"].as_str().expect("name");
            assert_eq!(record.name, name);
            assert_eq!(
                record.number,
                row["record"].as_u64().expect("record") as usize
            );
            // the `smiles` data item written by RDKit comes along
            let property = record.properties.iter().find(|(k, _)| k == "smiles");
            assert_eq!(
                property.map(|(_, v)| v.as_str()),
                row["smiles"].as_str(),
                "{file} {name}: smiles property"
            );
            let known = KNOWN_DIFFERENCES
                .iter()
                .any(|(f, n, _)| *f == file && *n == name);
            let ok = match (&record.molecule, row["ok"].as_bool().expect("ok")) {
                (Err(_), false) => true,
                (Ok(_), false) | (Err(_), true) => false,
                (Ok(mol), true) => {
                    let same = agrees(mol, row);
                    // what the commands featurise: the SMILES written from the record (a
                    // record without atoms is a rejected row there)
                    let again = match smiles_row {
                        Ok(r) => parse_smiles(&r.smiles).is_ok_and(|m| agrees(&m, row)),
                        Err(e) => mol.num_atoms() == 0 && e.reason().contains("no atoms"),
                    };
                    same && again
                }
            };
            if ok == known {
                failures.push(format!(
                    "{file} {name} ({}): ours {:?}{}",
                    row["smiles"],
                    record.molecule.as_ref().map(|m| m.num_atoms()),
                    if known {
                        " (listed as a known difference but agrees)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    assert!(checked > 2500, "only {checked} records");
    assert!(
        failures.is_empty(),
        "{} of {checked} records differ from RDKit:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_records_are_errors_of_their_own_and_reading_goes_on() {
    let path = format!("{DATA}/broken.sdf");
    let expected: Vec<Value> = std::fs::read_to_string(format!("{DATA}/broken_expected.jsonl"))
        .expect("expectations")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let rows: Vec<_> = read_molecules(&path).expect("opens").collect();
    assert_eq!(rows.len(), expected.len());
    for (row, e) in rows.iter().zip(&expected) {
        let record = e["record"].as_u64().expect("record") as usize;
        match (row, e["ok"].as_bool().expect("ok")) {
            (Ok(r), true) => {
                assert_eq!(r.line, record);
                let mol = parse_smiles(&r.smiles).expect("written SMILES parses");
                assert!(agrees(&mol, e), "{}", r.smiles);
                assert_eq!(r.name.as_deref(), e["name"].as_str());
            }
            (Err(err), false) => {
                assert!(err.is_row_error(), "{err}");
                assert_eq!(err.line(), record);
                let message = err.to_string();
                assert!(
                    message.contains("broken.sdf") && message.contains(&format!("record {record}")),
                    "{message}"
                );
            }
            (got, _) => panic!("record {record} ({}): got {got:?}", e["what"]),
        }
    }
    let messages: Vec<String> = rows
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("\"Xx\"")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("atom 99")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("valence")),
        "{messages:?}"
    );
}

#[test]
fn hostile_sd_text_never_panics() {
    use mole_featurize::parse_molblock;
    let good = "x\n  RDKit\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n    1.0000    0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0\n  1  2  1  0\nM  END\n";
    let lines: Vec<&str> = good.lines().collect();
    let (mol, used) = parse_molblock(&lines).expect("methanol");
    assert_eq!((mol.num_atoms(), used), (2, lines.len()));
    // every prefix, and every line replaced by junk, is an error or a molecule, never a panic
    for cut in 0..lines.len() {
        let _ = parse_molblock(&lines[..cut]);
        for junk in [
            "",
            "M  CHG  9",
            "M  V30 BEGIN CTAB",
            "é",
            "  999999999999999999",
        ] {
            let mut edited = lines.clone();
            edited[cut] = junk;
            let _ = parse_molblock(&edited);
        }
    }
    let v3000 = "x\n\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\nM  V30 COUNTS 2 1 0 0 0\nM  V30 BEGIN ATOM\nM  V30 1 N 0 0 0 0 CHG=1 -\nM  V30 MASS=15\nM  V30 2 C 0 0 0 0\nM  V30 END ATOM\nM  V30 BEGIN BOND\nM  V30 1 1 1 2\nM  V30 END BOND\nM  V30 END CTAB\nM  END\n";
    let lines: Vec<&str> = v3000.lines().collect();
    let (mol, _) = parse_molblock(&lines).expect("a continued V3000 atom line");
    assert_eq!(mol.atoms()[0].formal_charge(), 1);
    assert_eq!(mol.atoms()[0].isotope(), 15);
    assert_eq!(mol.atoms()[0].total_num_hs(), 3);
}
