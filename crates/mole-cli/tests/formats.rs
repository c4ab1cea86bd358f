//! Input and output formats. SD files wherever molecules are read: `predict` on an
//! RDKit-written SD file gives exactly the predictions of the same molecules as SMILES (the
//! original model, imported); bad records are rejected rows naming the record; `finetune`
//! takes its labels from an SD data item. The input's other columns pass through; parquet
//! output holds what the CSV holds.

mod common;

use std::path::{Path, PathBuf};

use common::{last_of_kind, mole, mole_ok, repo_root, scratch, shared};

/// The RDKit-written SD file of the featurizer's tests (`scripts/rdkit/sdf_oracle.py`).
fn rdkit_sdf() -> PathBuf {
    repo_root().join("crates/mole-featurize/tests/data/rdkit_v2000.sdf.gz")
}

/// The records of the RDKit-written file whose name starts with `prefix`, as an SD file and as
/// a `.smi` of their `smiles` data item, in the same order.
fn records_named(prefix: &str, dir: &Path, limit: usize) -> (PathBuf, PathBuf, usize) {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(rdkit_sdf()).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut sdf = String::new();
    let mut smi = String::new();
    let mut count = 0;
    for record in text.split_inclusive("$$$$\n") {
        if !record.starts_with(prefix) || count == limit {
            continue;
        }
        let smiles = record
            .split("<smiles>")
            .nth(1)
            .and_then(|rest| rest.lines().nth(1))
            .unwrap();
        sdf.push_str(record);
        smi.push_str(&format!("{smiles}\n"));
        count += 1;
    }
    let (sdf_path, smi_path) = (dir.join("molecules.sdf"), dir.join("molecules.smi"));
    std::fs::write(&sdf_path, sdf).unwrap();
    std::fs::write(&smi_path, smi).unwrap();
    (sdf_path, smi_path, count)
}

/// The original tiny ESOL model, imported from its Lightning checkpoint.
fn original_model(dir: &Path) -> PathBuf {
    let ckpt = dir.join("imported.safetensors");
    mole_ok(&[
        "import",
        "--weights",
        shared()
            .join("fixtures/checkpoints/mole_tiny_esol.ckpt")
            .to_str()
            .unwrap(),
        "--vocab",
        shared()
            .join("fixtures/vocab/vocab_207_radius0.json")
            .to_str()
            .unwrap(),
        "-o",
        ckpt.to_str().unwrap(),
    ]);
    ckpt
}

fn rows(path: &Path) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    (header, reader.records().map(Result::unwrap).collect())
}

#[test]
fn predictions_from_an_sd_file_equal_those_from_its_smiles() {
    let dir = scratch("sdf-predict");
    let ckpt = original_model(&dir);
    let (sdf, smi, n) = records_named("tdc-", &dir, usize::MAX);
    assert_eq!(n, 1245);
    let (from_sdf, from_smi) = (dir.join("sdf.csv"), dir.join("smi.csv"));
    for (input, output) in [(&sdf, &from_sdf), (&smi, &from_smi)] {
        mole_ok(&[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ]);
    }
    let (header, sdf_rows) = rows(&from_sdf);
    let (smi_header, smi_rows) = rows(&from_smi);
    let smi_pred = smi_header.iter().position(|h| h == "task_0_pred").unwrap();
    assert_eq!(sdf_rows.len(), n);
    assert_eq!(smi_rows.len(), n);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (pred, name, line, error) = (
        column("task_0_pred"),
        column("name"),
        column("line"),
        column("error"),
    );
    // the record's data items come along; `smiles` would clash with ours
    assert_eq!(
        header.iter().take(5).collect::<Vec<_>>(),
        ["line", "smiles", "name", "input_smiles", "y"]
    );
    for (k, (a, b)) in sdf_rows.iter().zip(&smi_rows).enumerate() {
        assert_eq!(a[3], b[1], "record {}: the SMILES data item", k + 1);
        assert_eq!(&a[error], "", "record {}: {}", k + 1, &a[error]);
        // the same tokens in the same order: the same numbers, to the last digit
        assert_eq!(a[pred], b[smi_pred], "record {} ({})", k + 1, &b[1]);
        assert_eq!(a[line], (k + 1).to_string());
        assert!(a[name].starts_with("tdc-"), "{}", &a[name]);
    }
}

#[test]
fn bad_sd_records_are_rejected_rows_and_the_rest_is_predicted() {
    let dir = scratch("sdf-broken");
    let ckpt = original_model(&dir);
    let out = dir.join("pred.csv");
    let broken = repo_root().join("crates/mole-featurize/tests/data/broken.sdf");
    let run = mole_ok(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "-i",
        broken.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let (header, records) = rows(&out);
    let error = header.iter().position(|h| h == "error").unwrap();
    assert_eq!(records.len(), 6);
    for (k, r) in records.iter().take(5).enumerate() {
        assert!(
            r[error].contains(&format!("record {}", k + 1)),
            "row {}: {:?}",
            k + 1,
            &r[error]
        );
    }
    assert_eq!(&records[5][error], "");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("broken.sdf:2: record 2"), "{stderr}");
}

#[test]
fn finetune_reads_labels_from_an_sd_data_item() {
    let dir = scratch("sdf-finetune");
    // the HIA records (0/1 labels in the `y` data item)
    let (sdf, _, n) = records_named("tdc-", &dir, 578);
    assert_eq!(n, 578);
    let run = dir.join("run");
    mole_ok(&[
        "finetune",
        "--data",
        sdf.to_str().unwrap(),
        "--label-cols",
        "y",
        "--task",
        "classification",
        "--model",
        "tiny",
        "--max-steps",
        "4",
        "--out",
        run.to_str().unwrap(),
    ]);
    let test = last_of_kind(&run, "test");
    assert!(test["auroc"].as_f64().is_some(), "{test}");
    // a label that is not a data item is named
    let out = mole(&[
        "finetune",
        "--data",
        sdf.to_str().unwrap(),
        "--label-cols",
        "logS",
        "--max-steps",
        "1",
        "--out",
        dir.join("run2").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no label column `logS`"), "{stderr}");
}

#[test]
fn predict_and_embed_pass_the_input_columns_through() {
    let dir = scratch("passthrough");
    let ckpt = original_model(&dir);
    let input = dir.join("in.csv");
    std::fs::write(
        &input,
        "id,vendor,smiles,logS\nm1,Acme,CCO,-0.5\nm2,\"Big, Co\",not-a-smiles,\nm3,,c1ccccc1O,-1.2\n",
    )
    .unwrap();
    let (pred, emb) = (dir.join("pred.csv"), dir.join("emb.csv"));
    for (command, output) in [("predict", &pred), ("embed", &emb)] {
        mole_ok(&[
            command,
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ]);
    }
    let (header, records) = rows(&pred);
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        [
            "line",
            "smiles",
            "name",
            "vendor",
            "logS",
            "task_0_pred",
            "unknown_atoms",
            "error"
        ]
    );
    let cells: Vec<Vec<&str>> = records.iter().map(|r| r.iter().collect()).collect();
    assert_eq!(&cells[0][..5], ["2", "CCO", "m1", "Acme", "-0.5"]);
    assert_eq!(&cells[1][..5], ["3", "not-a-smiles", "m2", "Big, Co", ""]);
    assert!(!cells[1][7].is_empty() && cells[1][5].is_empty());
    assert_eq!(&cells[2][..5], ["4", "c1ccccc1O", "m3", "", "-1.2"]);
    // the embedding CSV starts with the same identity columns
    let (header, records) = rows(&emb);
    assert_eq!(
        header.iter().take(6).collect::<Vec<_>>(),
        ["line", "smiles", "name", "vendor", "logS", "e0"]
    );
    assert_eq!(&records[1][3], "Big, Co");
}

/// A parquet file's column names and rows, through the parquet crate's row API.
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<parquet::record::Row>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let names = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    (names, reader.into_iter().map(Result::unwrap).collect())
}

#[test]
fn parquet_output_holds_what_the_csv_holds() {
    use parquet::record::{Field, ListAccessor, RowAccessor};
    let dir = scratch("parquet-out");
    let ckpt = original_model(&dir);
    // 600 rows in chunks of 128, a bad one among them
    let mut text = String::from("id,smiles\n");
    let esol = std::fs::read_to_string(repo_root().join("datasets/esol.csv")).unwrap();
    for (k, line) in esol.lines().skip(1).take(600).enumerate() {
        let smiles = line.split(',').next().unwrap();
        let smiles = if k == 7 { "C1CC" } else { smiles };
        text.push_str(&format!("mol{k},{smiles}\n"));
    }
    let input = dir.join("in.csv");
    std::fs::write(&input, text).unwrap();
    let run = |command: &str, output: &Path| {
        mole_ok(&[
            command,
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--chunk-size",
            "128",
        ]);
    };
    let (pred_csv, pred_pq) = (dir.join("pred.csv"), dir.join("pred.parquet"));
    run("predict", &pred_csv);
    run("predict", &pred_pq);
    let (_, csv_rows) = rows(&pred_csv);
    let (names, pq_rows) = parquet_rows(&pred_pq);
    assert_eq!(
        names,
        [
            "line",
            "smiles",
            "name",
            "task_0_pred",
            "unknown_atoms",
            "error"
        ]
    );
    assert_eq!(pq_rows.len(), 600);
    for (c, p) in csv_rows.iter().zip(&pq_rows) {
        assert_eq!(p.get_long(0).unwrap().to_string(), c[0]);
        assert_eq!(p.get_string(1).unwrap(), &c[1]);
        assert_eq!(p.get_string(2).unwrap(), &c[2]);
        if c[5].is_empty() {
            assert_eq!(p.get_float(3).unwrap(), c[3].parse::<f32>().unwrap());
            assert!(matches!(p.get_column_iter().nth(5).unwrap().1, Field::Null));
        } else {
            assert!(matches!(p.get_column_iter().nth(3).unwrap().1, Field::Null));
            assert_eq!(p.get_string(5).unwrap(), &c[5]);
        }
    }
    assert!(!csv_rows[7][5].is_empty());

    let (emb_csv, emb_pq) = (dir.join("emb.csv"), dir.join("emb.parquet"));
    run("embed", &emb_csv);
    run("embed", &emb_pq);
    let (_, csv_rows) = rows(&emb_csv);
    let (names, pq_rows) = parquet_rows(&emb_pq);
    assert_eq!(
        names,
        [
            "line",
            "smiles",
            "name",
            "embedding",
            "unknown_atoms",
            "error"
        ]
    );
    for (k, (c, p)) in csv_rows.iter().zip(&pq_rows).enumerate() {
        if k == 7 {
            assert!(matches!(p.get_column_iter().nth(3).unwrap().1, Field::Null));
            continue;
        }
        let list = p.get_list(3).unwrap();
        assert_eq!(list.len(), 64);
        for i in 0..64 {
            assert_eq!(list.get_float(i).unwrap(), c[3 + i].parse::<f32>().unwrap());
        }
    }
}
