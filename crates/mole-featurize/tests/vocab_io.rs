//! Vocabulary files and molecule input files.

use std::collections::HashMap;
use std::io::Write;

use mole_featurize::{read_molecules, IoError, Vocabulary};

const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/vocab/vocab_207_radius0.json"
);

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mole-featurize-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn fixture_vocabulary_loads() {
    let v = Vocabulary::from_json_file(VOCAB).expect("vocab");
    assert_eq!(v.num_identifiers(), 207);
    assert_eq!(v.vocab_size(), 211);
    assert_eq!(v.len(), 211);
    assert_eq!(
        (v.pad_id(), v.mask_id(), v.unk_id(), v.cls_id()),
        (0, 208, 209, 210)
    );
    assert_eq!(v.radius, 0);
    // first entry of the file
    assert_eq!(v.token(3387315712), 1);
    assert_eq!(v.identifier_of(1), Some(3387315712));
    assert_eq!(v.token(12345), 209);
    assert_eq!(v.identifier_of(0), None);
    assert_eq!(v.identifier_of(208), None);
    for t in 1..=207 {
        let id = v.identifier_of(t).expect("identifier");
        assert_eq!(v.token(id), t);
    }
    // round trip through our own format
    let again = Vocabulary::from_json_str(&v.to_json_string()).expect("round trip");
    assert_eq!(again, v);
}

#[test]
fn build_from_counts_orders_by_count_then_identifier() {
    let counts: HashMap<u32, u64> = [(50, 3), (7, 10), (9, 3), (1, 1), (4_000_000_000, 10)]
        .into_iter()
        .collect();
    let v = Vocabulary::build_from_counts(counts, 2).with_radius(2);
    assert_eq!(v.identifiers(), &[7, 4_000_000_000, 9, 50]);
    assert_eq!(v.token(7), 1);
    assert_eq!(v.token(1), v.unk_id());
    assert_eq!(v.cls_id(), 7);
    let dir = temp_dir("vocab");
    let path = dir.join("v.json");
    v.save(&path).expect("save");
    let loaded = Vocabulary::from_json_file(&path).expect("load");
    assert_eq!(loaded, v);
    assert_eq!(loaded.radius, 2);
}

#[test]
fn bad_vocabularies_are_rejected() {
    assert!(Vocabulary::from_json_str("{").is_err());
    assert!(Vocabulary::from_json_str(r#"{"identifier_to_token": {"x": 1}}"#).is_err());
    assert!(Vocabulary::from_json_str(r#"{"identifier_to_token": {"5": 2}}"#).is_err());
    assert!(Vocabulary::from_json_str(r#"{"identifier_to_token": {"5": 1, "6": 1}}"#).is_err());
    let ok = Vocabulary::from_json_str(r#"{"identifier_to_token": {"5": 1, "6": 2}}"#).expect("ok");
    assert_eq!((ok.radius, ok.cls_id()), (0, 5));
    let err = Vocabulary::from_json_file("/nonexistent/vocab.json").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/vocab.json"));
}

/// (line, SMILES, name) of every record of a molecule file.
fn records_of(path: &std::path::Path) -> Vec<(usize, String, Option<String>)> {
    read_molecules(path)
        .expect("open")
        .map(|r| {
            let r = r.expect("record");
            (r.line, r.smiles, r.name)
        })
        .collect()
}

#[test]
fn smi_files_with_names_and_blank_lines() {
    let dir = temp_dir("smi");
    let path = dir.join("mols.smi");
    std::fs::write(&path, "CCO ethanol\n\nc1ccccc1\tbenzene ring\n  C  \n").expect("write");
    assert_eq!(
        records_of(&path),
        vec![
            (1, "CCO".into(), Some("ethanol".into())),
            (3, "c1ccccc1".into(), Some("benzene ring".into())),
            (4, "C".into(), None),
        ]
    );
}

#[test]
fn csv_tsv_and_gzip_files() {
    let dir = temp_dir("csv");
    let csv_path = dir.join("mols.csv");
    std::fs::write(&csv_path, "id,SMILES,y\na,CCO,1\n,,\nb,\"C(=O)O\",0\n").expect("write");
    assert_eq!(
        records_of(&csv_path),
        vec![
            (2, "CCO".into(), Some("a".into())),
            (4, "C(=O)O".into(), Some("b".into()))
        ]
    );

    let gz_path = dir.join("mols.tsv.gz");
    let file = std::fs::File::create(&gz_path).expect("create");
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    enc.write_all(b"Smiles\tname\nCCN\tamine\n")
        .expect("gz write");
    enc.finish().expect("gz finish");
    assert_eq!(
        records_of(&gz_path),
        vec![(2, "CCN".into(), Some("amine".into()))]
    );

    let no_column = dir.join("bad.csv");
    std::fs::write(&no_column, "a,b\n1,2\n").expect("write");
    assert!(matches!(
        read_molecules(&no_column),
        Err(IoError::Format { line: 1, .. })
    ));
    assert!(matches!(
        read_molecules(dir.join("x.xyz")),
        Err(IoError::UnsupportedFormat { .. })
    ));
    assert!(matches!(
        read_molecules(dir.join("missing.smi")),
        Err(IoError::Open { .. })
    ));
}
