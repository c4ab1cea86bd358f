//! Molecules and labelled tables from parquet files (written here with the parquet crate).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use mole_featurize::{read_molecules, read_parquet_strings};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// Writes columns `name` (string), `SMILES` (string) and `y` (nullable double), snappy-compressed
/// as pandas writes by default.
fn write_table(path: &Path, names: &[&str], smiles: &[&str], y: &[Option<f64>]) {
    let schema = Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY name (UTF8); REQUIRED BYTE_ARRAY SMILES (UTF8); OPTIONAL DOUBLE y; }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for strings in [names, smiles] {
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = strings.iter().map(|s| ByteArray::from(*s)).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
    }
    let mut col = group.next_column().unwrap().unwrap();
    let present: Vec<f64> = y.iter().flatten().copied().collect();
    let levels: Vec<i16> = y.iter().map(|v| i16::from(v.is_some())).collect();
    col.typed::<DoubleType>()
        .write_batch(&present, Some(&levels), None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_tables_read_as_molecules_and_strings() {
    let dir = std::env::temp_dir().join(format!("mole-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mols.parquet");
    write_table(
        &path,
        &["ethanol", "benzene", "", "broken"],
        &["CCO", "c1ccccc1", "", "C1CC("],
        &[Some(1.5), None, Some(2.0), Some(-0.25)],
    );

    let (headers, rows) = read_parquet_strings(&path).unwrap();
    assert_eq!(headers, ["name", "SMILES", "y"]);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], ["ethanol", "CCO", "1.5"]);
    assert_eq!(rows[1][2], "", "null reads as an empty cell");
    assert_eq!(rows[3][2], "-0.25");

    // The SMILES column is found case-insensitively; the empty SMILES row is skipped and the
    // unparsable one is passed on for the featuriser to reject, with its row number.
    let records: Vec<_> = read_molecules(&path).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].smiles, "CCO");
    assert_eq!(records[0].name.as_deref(), Some("ethanol"));
    assert_eq!(records[2].smiles, "C1CC(");
    assert_eq!(records[2].line, 4);

    // Not a parquet file → a clear error naming the file.
    let fake = dir.join("fake.parquet");
    std::fs::write(&fake, "smiles\nCCO\n").unwrap();
    let err = read_molecules(&fake).err().expect("fails").to_string();
    assert!(
        err.contains("fake.parquet") && err.contains("parquet"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
