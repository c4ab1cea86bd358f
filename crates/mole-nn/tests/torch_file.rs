//! Reading the original's PyTorch files without Python: `../shared/fixtures/checkpoints` holds a
//! real Lightning `.ckpt` written by the original's training entry point, the checkpoint its
//! `ModelCheckpoint` callback wrote, a float16 `torch.save(state_dict)`, and the state dict
//! PyTorch itself read from the `.ckpt` (safetensors).

use std::path::{Path, PathBuf};

use mole_nn::{StateDict, TorchFile};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/checkpoints")
}

fn expected() -> StateDict {
    StateDict::load(&fixtures().join("expected_state_dict.safetensors")).unwrap()
}

#[test]
fn lightning_checkpoints_give_the_state_dict_pytorch_reads() {
    let expected = expected();
    for file in ["mole_tiny_esol.ckpt", "mole_tiny_esol_weights_only.ckpt"] {
        let torch = TorchFile::open(&fixtures().join(file)).unwrap();
        assert!(torch.is_lightning_checkpoint(), "{file}");
        let dict = torch.state_dict().unwrap().strip_prefix("model.");
        assert_eq!(dict.tensors.len(), 42, "{file}");
        assert_eq!(dict.tensors.len(), expected.tensors.len(), "{file}");
        for (name, t) in &expected.tensors {
            let ours = &dict.tensors[name];
            assert_eq!(ours.shape, t.shape, "{file} {name}");
            assert!(
                ours.data
                    .iter()
                    .zip(&t.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{file} {name}: values differ"
            );
        }
    }
}

#[test]
fn hyper_parameters_of_the_checkpoint_are_readable() {
    let torch = TorchFile::open(&fixtures().join("mole_tiny_esol.ckpt")).unwrap();
    let hp = torch.hyper_parameters().expect("hyper_parameters");
    let model = &hp["model"];
    assert_eq!(model["vocab_size_inp"], 211);
    let deberta = &model["deberta_config"];
    assert_eq!(deberta["num_hidden_layers"], 2);
    assert_eq!(deberta["hidden_size"], 64);
    assert_eq!(deberta["num_attention_heads"], 4);
    assert_eq!(deberta["intermediate_size"], 256);
    assert_eq!(deberta["max_relative_positions"], 64);
    assert_eq!(deberta["pos_att_type"], "p2c|c2p");
    assert_eq!(deberta["layer_norm_eps"], 1e-7);
    // interpolations stay as their text
    assert_eq!(model["num_tasks"], "${num_tasks}");
    // Lightning keeps the hyper-parameters in a weights-only checkpoint too
    let weights_only =
        TorchFile::open(&fixtures().join("mole_tiny_esol_weights_only.ckpt")).unwrap();
    let hp2 = weights_only.hyper_parameters().expect("hyper_parameters");
    assert_eq!(hp2["model"]["deberta_config"], *deberta);
    // a plain state dict has none
    let plain = TorchFile::open(&fixtures().join("mole_tiny_esol_fp16.pt")).unwrap();
    assert!(plain.hyper_parameters().is_none());
}

#[test]
fn float16_state_dict_converts_to_f32() {
    let torch = TorchFile::open(&fixtures().join("mole_tiny_esol_fp16.pt")).unwrap();
    assert!(!torch.is_lightning_checkpoint());
    let dict = torch.state_dict().unwrap();
    let expected = expected();
    assert_eq!(dict.tensors.len(), expected.tensors.len());
    for (name, t) in &expected.tensors {
        let ours = &dict.tensors[name];
        assert_eq!(ours.shape, t.shape, "{name}");
        for (a, b) in ours.data.iter().zip(&t.data) {
            // float16 keeps 11 significant bits
            assert!((a - b).abs() <= b.abs() * 1e-3 + 1e-7, "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn foreign_files_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("mole-torch-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_zip = dir.join("not_a_checkpoint.ckpt");
    std::fs::write(&not_zip, b"hello, this is text").unwrap();
    let err = TorchFile::open(&not_zip).err().unwrap().to_string();
    assert!(
        err.contains("not_a_checkpoint.ckpt") && err.contains("not a PyTorch zip file"),
        "{err}"
    );
    // a truncated checkpoint
    let bytes = std::fs::read(fixtures().join("mole_tiny_esol.ckpt")).unwrap();
    let truncated = dir.join("truncated.ckpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = TorchFile::open(&truncated).err().unwrap().to_string();
    assert!(err.contains("truncated.ckpt"), "{err}");
    // a safetensors file is not a torch file
    let err = TorchFile::open(&fixtures().join("expected_state_dict.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a PyTorch zip file"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
