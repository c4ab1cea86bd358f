//! Checkpoint metadata and loading a pretrained encoder under a new head, through the public
//! API only: a stage-1 checkpoint (atom-environment head) is saved, then opened as the encoder
//! of a regression model in one call.

use std::collections::HashMap;

use burn::backend::Flex;
use mole_featurize::Vocabulary;
use mole_model::{
    pretrained_encoder, to_state_dict, AtomEnvHeadConfig, Checkpoint, CheckpointInfo, HeadConfig,
    MolE, MolEConfig, NewHeads, TaskType, TrainingStage,
};
use mole_nn::DebertaConfig;

type B = Flex;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mole-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vocab() -> Vocabulary {
    let counts: HashMap<u32, u64> = (0..10u32).map(|id| (1000 + id, 10)).collect();
    Vocabulary::build_from_counts(counts, 1)
}

fn stage_one(vocab: &Vocabulary) -> MolEConfig {
    MolEConfig {
        encoder: DebertaConfig::new(vocab.vocab_size(), 16, 1, 2, 32),
        head: None,
        atom_env_head: Some(AtomEnvHeadConfig { num_targets: 7 }),
    }
}

#[test]
fn a_pretrained_encoder_loads_under_a_new_head_in_one_call() {
    let dir = scratch("pretrained");
    let device = Default::default();
    let vocab = vocab();
    let config = stage_one(&vocab);
    let pretrained: MolE<B> = MolE::new(&config, &device);
    let path = dir.join("stage1.safetensors");
    Checkpoint {
        config: config.clone(),
        model: pretrained,
        vocab: vocab.clone(),
        target_vocab: None,
        info: CheckpointInfo {
            stage: Some(TrainingStage::AtomEnv),
            majority_baseline_accuracy: Some(0.25),
            step: Some(100),
            ..Default::default()
        },
    }
    .save(&path)
    .unwrap();

    let heads = NewHeads {
        head: Some(HeadConfig {
            task: TaskType::Regression,
            num_tasks: 3,
            num_classes: 1,
            dropout: Some(0.0),
        }),
        atom_env_head: None,
    };
    let (model, loaded_vocab) = pretrained_encoder::<B>(&path, heads, &device).unwrap();
    assert_eq!(loaded_vocab.to_json_string(), vocab.to_json_string());

    // what the checkpoint holds (the model's lazily initialised parameters take their values
    // when first read: compare with the file, not with another read of `pretrained`)
    let before = mole_nn::StateDict::load(&path).unwrap();
    let after = to_state_dict(&model);
    let mut encoder_tensors = 0;
    for (name, t) in &after.tensors {
        if name.starts_with("prediction_head.") {
            continue;
        }
        assert_eq!(t.data, before.tensors[name].data, "{name} was not loaded");
        encoder_tensors += 1;
    }
    assert!(encoder_tensors > 10, "{encoder_tensors} encoder tensors");
    // the new head is there (3 tasks), the old one is not
    assert!(after
        .tensors
        .keys()
        .any(|k| k.starts_with("prediction_head.")));
    assert!(!after
        .tensors
        .keys()
        .any(|k| k.starts_with("atom_env_head.")));
    let out_bias = after
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("prediction_head.") && k.ends_with("bias"))
        .map(|(_, t)| t.shape.clone())
        .collect::<Vec<_>>();
    assert!(out_bias.contains(&vec![3]), "{out_bias:?}");

    // the metadata round-trips typed
    let reread = Checkpoint::<B>::load(&path, &device).unwrap();
    assert_eq!(reread.info.stage, Some(TrainingStage::AtomEnv));
    assert_eq!(reread.info.majority_baseline_accuracy, Some(0.25));
    assert_eq!(reread.info.step, Some(100));
}

#[test]
fn checkpoint_info_keeps_unknown_fields_and_refuses_a_bad_task() {
    // written by an earlier version: `valid` metrics, a field this version does not know
    let text = r#"{"task":"regression","label_names":["logS"],"target_standardization":null,
                   "step":12,"valid":{"rmse":1.5},"note":"kept"}"#;
    let info: CheckpointInfo = serde_json::from_str(text).unwrap();
    assert_eq!(info.task, Some(TaskType::Regression));
    assert_eq!(info.label_names, vec!["logS".to_string()]);
    assert_eq!(info.valid.as_ref().unwrap()["rmse"], 1.5);
    assert_eq!(info.other["note"], "kept");
    let again: serde_json::Value = serde_json::to_value(&info).unwrap();
    assert_eq!(again["note"], "kept");
    assert!(serde_json::from_str::<CheckpointInfo>(r#"{"task":"regresion"}"#).is_err());
}
