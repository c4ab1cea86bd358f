//! Files as people have them: a UTF-8 byte-order mark, CRLF line ends, a line that is not
//! UTF-8 (a Latin-1 name). Every good row is read with its own line number; the bad one is one
//! error naming its line, and reading goes on.

use mole_featurize::{read_molecules, IoError};

fn read_all(path: &std::path::Path) -> Vec<Result<(usize, String), (usize, String)>> {
    read_molecules(path)
        .expect("opens")
        .map(|r| match r {
            Ok(rec) => Ok((rec.line, rec.smiles)),
            Err(IoError::Format { line, reason, .. }) => Err((line, reason)),
            Err(other) => panic!("unexpected error {other}"),
        })
        .collect()
}

#[test]
fn smi_with_bom_crlf_and_a_latin1_line_loses_no_row() {
    let dir = std::env::temp_dir().join(format!("mole-bad-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mixed.smi");
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(
        b"CCO ethanol\r\nc1ccccc1 benzene\r\nCCN caf\xe9\r\n\r\nCCCl\r\nCC(=O)O acid\r\n",
    );
    std::fs::write(&path, &bytes).unwrap();
    let got = read_all(&path);
    assert_eq!(
        got,
        vec![
            Ok((1, "CCO".to_string())),
            Ok((2, "c1ccccc1".to_string())),
            Err((3, "not UTF-8 text (invalid byte at column 8)".to_string())),
            Ok((5, "CCCl".to_string())),
            Ok((6, "CC(=O)O".to_string())),
        ]
    );
}

#[test]
fn csv_row_that_is_not_utf8_is_one_bad_row() {
    let dir = std::env::temp_dir().join(format!("mole-bad-bytes-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mixed.csv");
    std::fs::write(
        &path,
        b"smiles,name\nCCO,ethanol\nCCN,caf\xe9\nCCCl,chloropropane\n".as_slice(),
    )
    .unwrap();
    let got = read_all(&path);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], Ok((2, "CCO".to_string())));
    assert!(matches!(&got[1], Err((3, _))), "{got:?}");
    assert_eq!(got[2], Ok((4, "CCCl".to_string())));
}
