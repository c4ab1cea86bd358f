//! `mole split`, `--split scaffold` in training and `mole benchmark --protocol tdc`, end to end.

mod common;

use std::collections::{HashMap, HashSet};

use common::{mole_ok, repo_root, scratch};

fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The parts TDC's own `create_scaffold_split` gives BBBP with seed 1, 80/10/10 (made by
/// `scripts/rdkit/tdc_split_oracle.py`, stored with the featurizer's tests).
fn tdc_parts(data: &str, seed: u64) -> String {
    let text = std::fs::read_to_string(
        repo_root().join("crates/mole-featurize/tests/data/tdc_scaffold_splits.json"),
    )
    .unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["data"] == data && c["seed"] == seed)
        .unwrap()["parts"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn scaffold_split_command_equals_tdc_and_keeps_every_row() {
    let dir = scratch("split");
    let out = dir.join("bbbp_split.csv");
    mole_ok(&[
        "split",
        "datasets/bbbp.csv",
        "--method",
        "scaffold",
        "--seed",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["smiles", "target", "split", "scaffold"]);
    let expected = tdc_parts("datasets/bbbp.csv", 1);
    assert_eq!(rows.len(), expected.len());
    let ours: String = rows
        .iter()
        .map(|r| match r[2].as_str() {
            "train" => 'r',
            "valid" => 'v',
            "test" => 't',
            _ => '-',
        })
        .collect();
    assert_eq!(ours, expected);
    // whole scaffold groups: no scaffold in two parts
    let mut part_of: HashMap<&str, &str> = HashMap::new();
    for r in &rows {
        let first = part_of.entry(r[3].as_str()).or_insert(r[2].as_str());
        assert_eq!(*first, r[2], "scaffold {} in two parts", r[3]);
    }

    // a bad SMILES keeps its row (no split), the others are split
    let input = dir.join("mixed.csv");
    std::fs::write(
        &input,
        "id,smiles,y\na,c1ccccc1O,1\nb,not_a_smiles,2\nc,CCO,3\nd,c1ccccc1N,4\n",
    )
    .unwrap();
    let out = dir.join("mixed_split.csv");
    let o = mole_ok(&[
        "split",
        input.to_str().unwrap(),
        "--method",
        "random",
        "--fractions",
        "0.5,0.25,0.25",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["id", "smiles", "y", "split", "scaffold"]);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(rows[1][3], "");
    assert!(rows.iter().filter(|r| !r[3].is_empty()).count() == 3);
    assert_eq!(rows[0][4], rows[3][4], "phenol and aniline share benzene");
    assert_eq!(rows[2][4], "", "ethanol has no ring");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(":3:"),
        "the bad row's line is named: {stderr}"
    );
}

#[test]
fn finetune_with_scaffold_split_and_tdc_benchmark_on_a_folder() {
    let dir = scratch("tdc");
    // --split scaffold in a training command: the split it logs is the one `mole split` writes
    let split_csv = dir.join("esol_split.csv");
    mole_ok(&[
        "split",
        "datasets/esol.csv",
        "--method",
        "scaffold",
        "--seed",
        "3",
        "-o",
        split_csv.to_str().unwrap(),
    ]);
    let (_, rows) = read_csv(&split_csv);
    let count = |p: &str| rows.iter().filter(|r| r[2] == p).count();
    let run = dir.join("ft");
    let o = common::mole(&[
        "finetune",
        "--data",
        "datasets/esol.csv",
        "--split",
        "scaffold",
        "--seed",
        "3",
        "--max-steps",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("split_method = \"scaffold\""), "{config}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
        .args([
            "finetune",
            "--data",
            "datasets/esol.csv",
            "--split",
            "scaffold",
            "--seed",
            "3",
            "--max-steps",
            "1",
            "--out",
            dir.join("ft2").to_str().unwrap(),
        ])
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let expected = format!(
        "split {} / {} / {}",
        count("train"),
        count("valid"),
        count("test")
    );
    assert!(stderr.contains(&expected), "{expected} not in {stderr}");

    // a folder with a TDC group (train_val.csv + test.csv, columns Drug_ID, Drug, Y) and a table
    let data = dir.join("tdc");
    let group = data.join("solubility_aqsoldb");
    std::fs::create_dir_all(&group).unwrap();
    let (_, esol) = read_csv(&repo_root().join("datasets/esol.csv"));
    let write = |path: std::path::PathBuf, rows: &[Vec<String>]| {
        let mut w = csv::Writer::from_path(path).unwrap();
        w.write_record(["Drug_ID", "Drug", "Y"]).unwrap();
        for (i, r) in rows.iter().enumerate() {
            w.write_record([format!("mol{i}"), r[0].clone(), r[1].clone()])
                .unwrap();
        }
        w.flush().unwrap();
    };
    write(group.join("train_val.csv"), &esol[..300]);
    write(group.join("test.csv"), &esol[300..400]);
    std::fs::copy(
        repo_root().join("datasets/esol.csv"),
        data.join("esol_copy.csv"),
    )
    .unwrap();
    let out = dir.join("bench");
    let o = mole_ok(&[
        "benchmark",
        "--protocol",
        "tdc",
        "--data",
        data.to_str().unwrap(),
        "--seeds",
        "2",
        "--max-steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("benchmark.json")).unwrap())
            .unwrap();
    let datasets = report["datasets"].as_object().unwrap();
    let names: HashSet<&str> = datasets.keys().map(String::as_str).collect();
    assert_eq!(names, HashSet::from(["solubility_aqsoldb", "esol_copy"]));
    for (name, d) in datasets {
        assert_eq!(d["metric"], "mae", "{name}: TDC's metric for both is MAE");
        let values: Vec<f64> = d["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), 2);
        let mean = values.iter().sum::<f64>() / 2.0;
        let std = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)) / 2.0;
        assert!((d["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!((d["std"].as_f64().unwrap() - std.sqrt()).abs() < 1e-12);
        assert!(mean > 0.0 && mean.is_finite());
    }
    // the group's fixed test set is its test.csv: every seed tests the same 100 molecules, and
    // each seed's train/valid is a scaffold split of train_val.csv
    for seed in [1, 2] {
        let (header, rows) =
            read_csv(&out.join(format!("solubility_aqsoldb/seed_{seed}/split.csv")));
        assert_eq!(header.last().unwrap(), "tdc_split");
        assert_eq!(rows.iter().filter(|r| r[3] == "test").count(), 100);
        assert!(rows[..300].iter().all(|r| r[3] != "test"));
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| solubility_aqsoldb | mae |"), "{stdout}");
    // the benchmark's bar chart (mean ± std per dataset) in its report
    let chart = std::fs::read_to_string(out.join("plots/benchmark.svg")).unwrap();
    assert!(chart.contains("solubility_aqsoldb (mae)") && chart.contains("<rect"));
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("benchmark.svg"));
}
