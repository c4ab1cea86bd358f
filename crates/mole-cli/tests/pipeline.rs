//! End to end on the CPU, as a user runs it: pretrain → fine-tune (regression and
//! classification) → evaluate → predict → embed; resume after an interruption; bad input.

mod common;

use std::path::Path;

use common::{
    assert_same_trajectory, last_of_kind, mole, mole_ok, repo_root, scratch, small_corpus,
};

/// Molecules in a run's test set (its `test` metrics entry counts them).
fn test_size(run: &Path) -> usize {
    let test = last_of_kind(run, "test");
    test["molecules"]
        .as_u64()
        .map(|n| n as usize)
        .unwrap_or_else(|| panic!("no molecule count in {test}"))
}

fn labels_std(csv: &str, column: &str) -> f64 {
    let mut r = csv::Reader::from_path(repo_root().join(csv)).unwrap();
    let idx = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == column)
        .unwrap();
    let v: Vec<f64> = r
        .records()
        .map(|x| x.unwrap()[idx].parse().unwrap())
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn pretrain_finetune_evaluate_predict_embed() {
    let dir = scratch("pipeline");
    let corpus = small_corpus(&dir, 4000);
    let pre = dir.join("pretrain");
    mole_ok(&[
        "pretrain",
        "--data",
        corpus.to_str().unwrap(),
        "--max-steps",
        "200",
        "--out",
        pre.to_str().unwrap(),
        "--set",
        "train.log_every=50",
        "--set",
        "data.valid_fraction=0.05",
    ]);
    let valid = last_of_kind(&pre, "valid");
    let acc = valid["masked_accuracy"].as_f64().unwrap();
    // throughput of the steps since the previous log line
    let train = last_of_kind(&pre, "train");
    let (mol_s, tok_s) = (
        train["mol_per_s"].as_f64().unwrap(),
        train["tokens_per_s"].as_f64().unwrap(),
    );
    assert!(mol_s > 0.0 && tok_s > mol_s, "{train}");
    let ckpt = pre.join("best.safetensors");
    assert!(ckpt.exists() && pre.join("config.toml").exists());
    // Pretraining learns something beyond the most frequent class.
    let stats = mole_featurize::Vocabulary::from_json_str(
        &mole_nn::StateDict::load(&ckpt).unwrap().metadata["target_vocab"],
    )
    .unwrap();
    assert!(stats.num_identifiers() > 100);
    assert!(acc > 0.10, "masked-token accuracy {acc} after 200 steps");

    // Regression (ESOL) from the pretrained encoder: beats predicting the mean.
    let esol = dir.join("esol");
    mole_ok(&[
        "finetune",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        "datasets/esol.csv",
        "--epochs",
        "15",
        "--lr",
        "1e-3",
        "--out",
        esol.to_str().unwrap(),
    ]);
    let test = last_of_kind(&esol, "test");
    let rmse = test["rmse"].as_f64().unwrap();
    let baseline = labels_std("datasets/esol.csv", "logS");
    assert!(
        rmse < 0.8 * baseline,
        "ESOL test RMSE {rmse} vs mean-predictor ~{baseline}"
    );

    // Classification (BBBP): beats chance ranking and the majority class.
    let bbbp = dir.join("bbbp");
    mole_ok(&[
        "finetune",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        "datasets/bbbp.csv",
        "--task",
        "classification",
        "--label-cols",
        "target",
        "--epochs",
        "8",
        "--lr",
        "1e-3",
        "--out",
        bbbp.to_str().unwrap(),
    ]);
    let test = last_of_kind(&bbbp, "test");
    let auroc = test["auroc"].as_f64().unwrap();
    assert!(auroc > 0.75, "BBBP test AUROC {auroc}");

    // every training run leaves its plots and report.html: learning curves, predicted vs
    // measured (regression), ROC and precision-recall (classification), from the test set's
    // predictions it also leaves
    for (run, plots) in [
        (&pre, &["loss.svg", "masked_accuracy.svg"][..]),
        (&esol, &["loss.svg", "rmse.svg", "parity_logS.svg"][..]),
        (
            &bbbp,
            &["loss.svg", "auroc.svg", "roc_target.svg", "pr_target.svg"][..],
        ),
    ] {
        let page = std::fs::read_to_string(run.join("report.html")).unwrap();
        for plot in plots {
            let svg = std::fs::read_to_string(run.join("plots").join(plot)).unwrap();
            assert!(svg.contains("<svg") && svg.contains("<polyline"), "{plot}");
            assert!(page.contains(&format!("plots/{plot}")), "{plot}");
        }
        assert!(page.contains("<h2>Configuration</h2>"));
    }
    let predictions = std::fs::read_to_string(esol.join("test_predictions.csv")).unwrap();
    assert_eq!(
        predictions.lines().count() - 1,
        test_size(&esol),
        "one row per test molecule"
    );
    // `mole report` redraws them for any run directory; a missing one is an error
    std::fs::remove_dir_all(esol.join("plots")).unwrap();
    mole_ok(&["report", esol.to_str().unwrap()]);
    assert!(esol.join("plots/parity_logS.svg").exists());
    let missing = mole(&["report", dir.join("no-such-run").to_str().unwrap()]);
    assert!(!missing.status.success());

    // evaluate
    let out = mole_ok(&[
        "evaluate",
        "--checkpoint",
        esol.join("best.safetensors").to_str().unwrap(),
        "--data",
        "datasets/esol.csv",
        "-o",
        "-",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["rmse"].as_f64().unwrap() < baseline);
    assert_eq!(report["molecules"], 1128);
    // without -o -, a summary for people: one aligned line per metric, not JSON
    let out = mole_ok(&[
        "evaluate",
        "--checkpoint",
        esol.join("best.safetensors").to_str().unwrap(),
        "--data",
        "datasets/esol.csv",
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.lines().any(|l| l.trim_start().starts_with("rmse")),
        "{summary}"
    );
    assert!(!summary.contains('{'), "{summary}");

    // predict: one row per input row, in order, with a prediction column named after the label.
    let pred = dir.join("pred.csv");
    mole_ok(&[
        "predict",
        "--checkpoint",
        esol.join("best.safetensors").to_str().unwrap(),
        "-i",
        "datasets/esol.csv",
        "-o",
        pred.to_str().unwrap(),
        "--chunk-size",
        "300",
    ]);
    let mut r = csv::Reader::from_path(&pred).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        // the input's measured logS passes through beside the prediction
        [
            "line",
            "smiles",
            "name",
            "logS",
            "logS_pred",
            "unknown_atoms",
            "error"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 1128);
    let mut src = csv::Reader::from_path(repo_root().join("datasets/esol.csv")).unwrap();
    for (k, (row, s)) in rows.iter().zip(src.records()).enumerate() {
        let s = s.unwrap();
        // row k is the (k+2)-th line: the header is line 1
        assert_eq!(&row[0], (k + 2).to_string());
        assert_eq!(&row[1], s[0].trim());
        assert_eq!(&row[3], s[1].trim_end_matches('\r'));
        assert!(row[4].parse::<f64>().unwrap().is_finite());
    }

    // embed: .npy with one row per molecule and the hidden size of the model.
    let npy = dir.join("emb.npy");
    mole_ok(&[
        "embed",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "-i",
        "datasets/esol.csv",
        "-o",
        npy.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains("'shape': (1128, 64)"), "{header}");
    assert_eq!(bytes.len(), 128 + 1128 * 64 * 4);
    let first: Vec<f32> = bytes[128..128 + 64 * 4]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(first.iter().all(|v| v.is_finite()) && first.iter().any(|v| *v != 0.0));
}

#[test]
fn resumed_pretraining_follows_the_uninterrupted_trajectory() {
    let dir = scratch("resume");
    let corpus = small_corpus(&dir, 1500);
    let common = |out: &Path| {
        vec![
            "pretrain".to_string(),
            "--data".into(),
            corpus.display().to_string(),
            "--max-steps".into(),
            "40".into(),
            "--batch-size".into(),
            "16".into(),
            "--seed".into(),
            "7".into(),
            "--out".into(),
            out.display().to_string(),
            "--set".into(),
            "train.log_every=1".into(),
            "--set".into(),
            "train.checkpoint_every=10".into(),
        ]
    };
    let straight = dir.join("straight");
    let args = common(&straight);
    mole_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let broken = dir.join("broken");
    let mut args = common(&broken);
    args.extend(["--interrupt-after".into(), "25".into()]);
    let out = mole(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success(), "the interrupted run must fail");
    assert!(broken.join("resume/state.json").exists());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(broken.join("resume/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["global_step"], 20,
        "last checkpoint before the interruption"
    );

    let mut args = common(&broken);
    args.push("--resume".into());
    mole_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    assert_same_trajectory(&straight, &broken, 40);
}

#[test]
fn bad_rows_are_reported_and_skipped() {
    let dir = scratch("bad-rows");
    let data = dir.join("dirty.csv");
    let mut text = String::from("smiles,y\n");
    let mut r = csv::Reader::from_path(repo_root().join("datasets/esol.csv")).unwrap();
    for (i, rec) in r.records().take(200).enumerate() {
        let rec = rec.unwrap();
        text.push_str(&format!("{},{}\n", &rec[0], &rec[1]));
        match i {
            10 => text.push_str("C1CC(N,1.0\n"),       // unparsable SMILES
            20 => text.push_str(",2.0\n"),             // empty SMILES
            30 => text.push_str("CCO,not-a-number\n"), // non-numeric label
            40 => text.push_str("c1cccc1,0.5\n"),      // cannot be kekulised
            50 => text.push_str("CCN,\n"),             // missing label: kept, masked
            _ => {}
        }
    }
    std::fs::write(&data, text).unwrap();
    let run = dir.join("run");
    let out = mole_ok(&[
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 row(s) rejected"), "{stderr}");
    let rejects = std::fs::read_to_string(run.join("rejects.csv")).unwrap();
    assert_eq!(rejects.lines().count(), 5, "{rejects}");
    for needle in ["C1CC(N", "empty SMILES", "not-a-number", "c1cccc1"] {
        assert!(rejects.contains(needle), "{needle} missing from {rejects}");
    }
    // Line numbers point into the file (header = line 1).
    assert!(rejects.contains("\n13,"), "{rejects}");

    // predict keeps every input row; bad ones carry the reason.
    let smi = dir.join("mols.smi");
    std::fs::write(&smi, "CCO ethanol\nC1CC(N broken\n\nc1ccccc1 benzene\n").unwrap();
    let pred = dir.join("pred.csv");
    mole_ok(&[
        "predict",
        "--checkpoint",
        run.join("best.safetensors").to_str().unwrap(),
        "-i",
        smi.to_str().unwrap(),
        "-o",
        pred.to_str().unwrap(),
    ]);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(&pred)
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect();
    // line, smiles, name, logS_pred, unknown_atoms, error; the blank line is a row too
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][2], "ethanol");
    assert!(rows[0][3].parse::<f64>().is_ok() && rows[0][5].is_empty());
    assert!(rows[1][3].is_empty() && !rows[1][5].is_empty());
    assert_eq!((&rows[2][0], &rows[2][5]), ("3", "empty line"));
    assert!(rows[3][3].parse::<f64>().is_ok());

    // A missing file and an unknown device are clear errors, not panics.
    let out = mole(&[
        "finetune",
        "--data",
        "nope.csv",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.csv"));
    let out = mole(&[
        "finetune",
        "--device",
        "cuda",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cuda") && err.contains("feature"), "{err}");
}

#[test]
fn multitask_stage_trains_with_missing_labels() {
    let dir = scratch("multitask");
    let run = dir.join("mt");
    mole_ok(&[
        "pretrain",
        "--stage",
        "multitask",
        "--epochs",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    // 12 Tox21 tasks, each scored on its own labelled rows.
    let test = last_of_kind(&run, "test");
    for t in 0..12 {
        assert!(test.get(format!("auroc_task_{t}")).is_some(), "{test}");
    }
    let loss = test["loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{test}");
    let ckpt = mole_nn::StateDict::load(&run.join("best.safetensors")).unwrap();
    let extra: serde_json::Value = serde_json::from_str(&ckpt.metadata["extra"]).unwrap();
    assert_eq!(extra["label_names"].as_array().unwrap().len(), 12);
    assert_eq!(
        ckpt.tensors["prediction_head.classifier.weight"].shape,
        vec![12, 64]
    );
}

#[test]
fn regression_targets_are_standardised_and_checkpoints_predict_original_units() {
    let dir = scratch("standardised");
    let run = dir.join("run");
    mole_ok(&[
        "finetune",
        "--data",
        "datasets/esol.csv",
        "--epochs",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]);
    // the training split's mean and std are recorded in the checkpoint
    let ckpt = mole_nn::StateDict::load(&run.join("best.safetensors")).unwrap();
    let extra: serde_json::Value = serde_json::from_str(&ckpt.metadata["extra"]).unwrap();
    let mean = extra["target_standardization"]["mean"][0].as_f64().unwrap();
    let std = extra["target_standardization"]["std"][0].as_f64().unwrap();
    assert!(
        (-3.6..-2.5).contains(&mean) && (1.6..2.6).contains(&std),
        "{mean} {std}"
    );
    // test metrics come from the saved checkpoint, in logS units: a useful model after
    // 20 epochs of the tiny model from scratch (without standardisation R² stays below 0.5)
    let test = last_of_kind(&run, "test");
    assert!(test["r2"].as_f64().unwrap() > 0.6, "{test}");
    assert!(test["rmse"].as_f64().unwrap() < 1.3, "{test}");
    let pred = dir.join("pred.csv");
    mole_ok(&[
        "predict",
        "--checkpoint",
        run.join("best.safetensors").to_str().unwrap(),
        "-i",
        "datasets/esol.csv",
        "-o",
        pred.to_str().unwrap(),
    ]);
    let values: Vec<f64> = csv::Reader::from_path(&pred)
        .unwrap()
        .records()
        .map(|r| r.unwrap()[4].parse::<f64>().unwrap())
        .collect();
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    assert!(
        (avg - mean).abs() < 0.5,
        "predictions average {avg}, training mean {mean}"
    );
}

/// Molecules unlike anything in ESOL (long chains, perhalogenated, a big acene, a peptide,
/// siloxanes, a macrocycle, a diacid).
const FAR_FROM_ESOL: &str = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCC
FC(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)F
c1ccc2cc3cc4cc5cc6ccccc6cc5cc4cc3cc2c1
NCC(=O)NCC(=O)NCC(=O)NCC(=O)NCC(=O)NCC(=O)O
C1CCCCCCCCCCCCCCCCCCC1
OCC(O)C(O)C(O)C(O)C(O)C(O)C(O)CO
ClC(Cl)(Cl)C(Cl)(Cl)C(Cl)(Cl)Cl
C[Si](C)(C)O[Si](C)(C)O[Si](C)(C)C
O=C(O)CCCCCCCCCCCCCCCCCCCCC(=O)O
IC(I)(I)C(I)(I)I
";

/// Mean of the `logS_pred_std` column of a predict output.
fn mean_spread(pred: &Path) -> f64 {
    let mut reader = csv::Reader::from_path(pred).unwrap();
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "logS_pred_std")
        .expect("a logS_pred_std column");
    let values: Vec<f64> = reader
        .records()
        .map(|r| r.unwrap()[column].parse::<f64>().unwrap())
        .collect();
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn ensembles_and_mc_dropout_are_less_sure_far_from_the_training_data() {
    let dir = scratch("uncertainty");
    let far = dir.join("far.smi");
    std::fs::write(&far, FAR_FROM_ESOL).unwrap();
    let mut members = Vec::new();
    for seed in ["1", "2", "3"] {
        let run = dir.join(format!("seed{seed}"));
        mole_ok(&[
            "finetune",
            "--data",
            "datasets/esol.csv",
            "--epochs",
            "40",
            "--seed",
            seed,
            "--out",
            run.to_str().unwrap(),
        ]);
        members.push(run.join("best.safetensors").to_str().unwrap().to_string());
    }
    let spread = |extra: &[&str], input: &Path, name: &str| {
        let out = dir.join(name);
        let mut args = vec![
            "predict",
            "--checkpoint",
            members[0].as_str(),
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mole_ok(&args);
        mean_spread(&out)
    };
    let esol = Path::new("datasets/esol.csv");
    let ensemble = [
        "--ensemble",
        members[1].as_str(),
        "--ensemble",
        members[2].as_str(),
    ];
    let (near, far_) = (
        spread(&ensemble, esol, "ens_esol.csv"),
        spread(&ensemble, &far, "ens_far.csv"),
    );
    assert!(
        far_ > near,
        "ensemble spread: far {far_} vs training data {near}"
    );
    let mc = ["--mc-dropout", "30"];
    let (near, far_) = (
        spread(&mc, esol, "mc_esol.csv"),
        spread(&mc, &far, "mc_far.csv"),
    );
    assert!(
        far_ > near,
        "MC-dropout spread: far {far_} vs training data {near}"
    );
}
