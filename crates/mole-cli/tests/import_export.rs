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
