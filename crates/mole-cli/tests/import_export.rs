//! `mole import` / `mole export` with the original PyTorch weights, and `mole parity`.

mod common;

use common::{mole_ok, scratch, shared};
use mole_nn::StateDict;

#[test]
fn import_then_export_gives_back_the_original_tensors() {
    let dir = scratch("import");
    let variant = shared().join("fixtures/parity/small_l2_h64");
    let encoder = variant.join("encoder.safetensors");
    let head = variant.join("head_classification.safetensors");
    let ckpt = dir.join("imported.safetensors");
    mole_ok(&[
        "import",
        "--weights",
        encoder.to_str().unwrap(),
        "--weights",
        head.to_str().unwrap(),
        "--config",
        variant.join("config.json").to_str().unwrap(),
        "--vocab",
        shared()
            .join("fixtures/vocab/vocab_207_radius0.json")
            .to_str()
            .unwrap(),
        "--task",
        "classification",
        "-o",
        ckpt.to_str().unwrap(),
    ]);
    let imported = StateDict::load(&ckpt).unwrap();
    let config: serde_json::Value = serde_json::from_str(&imported.metadata["config"]).unwrap();
    assert_eq!(config["head"]["num_tasks"], 2);
    assert_eq!(config["encoder"]["vocab_size"], 211);

    let exported_path = dir.join("exported.safetensors");
    mole_ok(&[
        "export",
        ckpt.to_str().unwrap(),
        "-o",
        exported_path.to_str().unwrap(),
    ]);
    let exported = StateDict::load(&exported_path).unwrap();
    assert!(exported.metadata.is_empty());
    let mut original = StateDict::load(&encoder).unwrap();
    original.extend(StateDict::load(&head).unwrap());
    assert_eq!(exported.tensors.len(), original.tensors.len());
    for (name, t) in &original.tensors {
        let e = &exported.tensors[name];
        assert_eq!(e.shape, t.shape, "{name}");
        assert!(
            e.data
                .iter()
                .zip(&t.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name} changed"
        );
    }
}

#[test]
fn parity_command_passes_on_the_cpu() {
    let out = mole_ok(&[
        "parity",
        "--fixtures",
        shared().join("fixtures/parity").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0 failed"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn parity_fails_when_a_reference_is_missing_instead_of_passing_on_nothing() {
    let parity = shared().join("fixtures/parity");
    // The batch but no variant: zero checks is a failure, not "0 failed".
    let empty = scratch("parity-empty");
    for f in ["batch.json", "batch.safetensors"] {
        std::fs::copy(parity.join(f), empty.join(f)).unwrap();
    }
    let run = common::mole(&["parity", "--fixtures", empty.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("no parity fixtures"), "{stderr}");

    // The small variant without its Adam reference, which its expected.json promises.
    let partial = scratch("parity-no-adam");
    for f in ["batch.json", "batch.safetensors"] {
        std::fs::copy(parity.join(f), partial.join(f)).unwrap();
    }
    let variant = partial.join("small_l2_h64");
    std::fs::create_dir_all(&variant).unwrap();
    for entry in std::fs::read_dir(parity.join("small_l2_h64")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "params_after_adam_step1_regression.safetensors" {
            std::fs::copy(&path, variant.join(name)).unwrap();
        }
    }
    let run = common::mole(&["parity", "--fixtures", partial.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("params_after_adam_step1_regression.safetensors"),
        "{stderr}"
    );
}

/// `../shared/fixtures/checkpoints`: a Lightning checkpoint written by the original's own
/// training entry point, its float16 state dict, and the original's outputs for 5 molecules.
fn checkpoint_fixtures() -> std::path::PathBuf {
    shared().join("fixtures/checkpoints")
}

fn expected_outputs() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(checkpoint_fixtures().join("expected_outputs.json")).unwrap(),
    )
    .unwrap()
}

/// Predictions and CLS embeddings of an imported checkpoint for the fixture's molecules.
fn predict_and_embed(ckpt: &std::path::Path, dir: &std::path::Path) -> (Vec<f64>, Vec<Vec<f64>>) {
    let expected = expected_outputs();
    let smi = dir.join("molecules.smi");
    let molecules = expected["molecules"].as_array().unwrap();
    let text: String = molecules
        .iter()
        .map(|m| format!("{}\n", m["smiles"].as_str().unwrap()))
        .collect();
    std::fs::write(&smi, text).unwrap();
    let pred = dir.join("pred.csv");
    let emb = dir.join("emb.csv");
    let (c, i) = (ckpt.to_str().unwrap(), smi.to_str().unwrap());
    mole_ok(&[
        "predict",
        "--checkpoint",
        c,
        "-i",
        i,
        "-o",
        pred.to_str().unwrap(),
    ]);
    mole_ok(&[
        "embed",
        "--checkpoint",
        c,
        "-i",
        i,
        "-o",
        emb.to_str().unwrap(),
    ]);
    let predictions = csv::Reader::from_path(&pred)
        .unwrap()
        .records()
        .map(|r| r.unwrap()[3].parse::<f64>().unwrap())
        .collect();
    let embeddings = csv::Reader::from_path(&emb)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            // line, smiles, name, e0..e63, unknown_atoms, error
            r.iter()
                .skip(3)
                .take(64)
                .map(|x| x.parse::<f64>().unwrap())
                .collect()
        })
        .collect();
    (predictions, embeddings)
}

/// The imported checkpoint's predictions and CLS embeddings are within the given absolute
/// tolerances of the original's.
fn assert_matches_original(
    ckpt: &std::path::Path,
    dir: &std::path::Path,
    prediction_tolerance: f64,
    embedding_tolerance: f64,
) {
    let (predictions, embeddings) = predict_and_embed(ckpt, dir);
    let expected = expected_outputs();
    for (k, m) in expected["molecules"].as_array().unwrap().iter().enumerate() {
        let want = m["prediction"][0].as_f64().unwrap();
        assert!(
            (predictions[k] - want).abs() <= prediction_tolerance,
            "{k}: {} vs {want}",
            predictions[k]
        );
        for (a, b) in embeddings[k]
            .iter()
            .zip(m["cls_embedding"].as_array().unwrap())
        {
            let b = b.as_f64().unwrap();
            assert!(
                (a - b).abs() <= embedding_tolerance,
                "{k}: embedding {a} vs {b}"
            );
        }
    }
}

#[test]
fn original_lightning_checkpoint_imports_without_python() {
    let dir = scratch("import-ckpt");
    let ckpt = dir.join("imported.safetensors");
    let vocab = shared().join("fixtures/vocab/vocab_207_radius0.json");
    // no --config: the checkpoint's own hyper-parameters give the model
    mole_ok(&[
        "import",
        "--weights",
        checkpoint_fixtures()
            .join("mole_tiny_esol.ckpt")
            .to_str()
            .unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
        "-o",
        ckpt.to_str().unwrap(),
    ]);
    assert_matches_original(&ckpt, &dir, 1e-5, 1e-5);
}

#[test]
fn float16_state_dict_imports_with_the_original_yaml_config() {
    let dir = scratch("import-fp16");
    let ckpt = dir.join("imported.safetensors");
    let vocab = shared().join("fixtures/vocab/vocab_207_radius0.json");
    mole_ok(&[
        "import",
        "--weights",
        checkpoint_fixtures()
            .join("mole_tiny_esol_fp16.pt")
            .to_str()
            .unwrap(),
        "--config",
        checkpoint_fixtures()
            .join("mole_train_config_resolved.yaml")
            .to_str()
            .unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
        "-o",
        ckpt.to_str().unwrap(),
    ]);
    // float16 weights: 11 significant bits
    assert_matches_original(&ckpt, &dir, 2e-3, 2e-2);
}

#[test]
fn import_explains_what_is_missing() {
    let dir = scratch("import-errors");
    let out = dir.join("x.safetensors");
    let fp16 = checkpoint_fixtures().join("mole_tiny_esol_fp16.pt");
    // a plain state dict carries no config
    let run = common::mole(&[
        "import",
        "--weights",
        fp16.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("no hyper_parameters"),
        "{err}"
    );
    // the weights' vocabulary size must match
    let run = common::mole(&[
        "import",
        "--weights",
        checkpoint_fixtures()
            .join("mole_tiny_esol.ckpt")
            .to_str()
            .unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("pass --vocab"),
        "{err}"
    );
    // a foreign file
    let foreign = dir.join("foreign.ckpt");
    std::fs::write(&foreign, b"PK\x03\x04 but not a zip archive").unwrap();
    let run = common::mole(&[
        "import",
        "--weights",
        foreign.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("foreign.ckpt"),
        "{err}"
    );
    assert!(!out.exists(), "no output after a failed import");
}

#[test]
fn a_misspelt_task_type_is_refused_everywhere() {
    let dir = scratch("task-type");
    let variant = shared().join("fixtures/parity/small_l2_h64");
    let out = dir.join("x.safetensors");
    // `mole import --task regresion` used to become a classification head silently.
    let run = common::mole(&[
        "import",
        "--weights",
        variant.join("encoder.safetensors").to_str().unwrap(),
        "--config",
        variant.join("config.json").to_str().unwrap(),
        "--task",
        "regresion",
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && !out.exists(), "{stderr}");
    assert!(
        stderr.contains("regresion") && stderr.contains("classification"),
        "{stderr}"
    );
    // The same word in a run config is refused when the file is read.
    let config = dir.join("finetune.toml");
    let base = std::fs::read_to_string(common::repo_root().join("configs/finetune.toml")).unwrap();
    let misspelt = base.replace("kind = \"regression\"", "kind = \"regresion\"");
    assert_ne!(base, misspelt, "configs/finetune.toml sets task.kind");
    std::fs::write(&config, misspelt).unwrap();
    let data = common::repo_root().join("datasets/esol.csv");
    let run = common::mole(&[
        "finetune",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("regresion"), "{stderr}");
}
