//! The `pretrain`, `finetune` and `embed` examples, run (tiny model, a few steps) as a Burn
//! user would run them: stage 1 from scratch on MOSES molecules; a stage-1 checkpoint is saved,
//! fine-tuned under a new head on ESOL, and embedded.

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;
#[path = "../examples/finetune.rs"]
#[allow(dead_code)]
mod finetune;
#[path = "../examples/pretrain.rs"]
#[allow(dead_code)]
mod pretrain;

use std::path::PathBuf;

use burn::backend::Flex;
use mole_featurize::Vocabulary;
use mole_model::{AtomEnvHeadConfig, Checkpoint, HeadConfig, MolE, MolEConfig, TaskType};
use mole_nn::DebertaConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vocab() -> Vocabulary {
    Vocabulary::from_json_file(repo().join("crates/mole-cli/assets/vocab_radius0.json")).unwrap()
}

/// A freshly initialised model of `config` saved as a mole checkpoint at `path`.
fn save_fresh(config: MolEConfig, vocab: Vocabulary, path: &std::path::Path) {
    Checkpoint {
        model: MolE::<Flex>::new(&config, &Default::default()),
        config,
        vocab,
        target_vocab: None,
        info: Default::default(),
    }
    .save(path)
    .unwrap();
}

#[test]
fn the_finetune_example_learns_from_a_pretrained_encoder() {
    let dir = std::env::temp_dir().join(format!("mole-examples-ft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = vocab();
    let config = MolEConfig {
        encoder: DebertaConfig::new(vocab.vocab_size(), 16, 1, 2, 32),
        head: None,
        atom_env_head: Some(AtomEnvHeadConfig { num_targets: 5 }),
    };
    let stage_one = dir.join("stage1.safetensors");
    save_fresh(config, vocab, &stage_one);
    // the first 64 molecules of ESOL: four batches, ten passes
    let esol = std::fs::read_to_string(repo().join("datasets/esol.csv")).unwrap();
    let table = dir.join("esol64.csv");
    std::fs::write(&table, esol.lines().take(65).collect::<Vec<_>>().join("\n")).unwrap();

    let losses = finetune::run(&stage_one, &table, 40, 1e-2).unwrap();
    assert_eq!(losses.len(), 40);
    assert!(losses.iter().all(|l| l.is_finite()));
    // the same four batches at the start and at the end
    let first: f32 = losses[..4].iter().sum();
    let last: f32 = losses[36..].iter().sum();
    assert!(last < 0.5 * first, "loss {first} → {last}");
}

#[test]
fn the_embed_example_gives_one_vector_per_molecule() {
    let dir = std::env::temp_dir().join(format!("mole-examples-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = vocab();
    let config = MolEConfig {
        encoder: DebertaConfig::new(vocab.vocab_size(), 16, 1, 2, 32),
        head: Some(HeadConfig {
            task: TaskType::Regression,
            num_tasks: 1,
            num_classes: 1,
            dropout: None,
        }),
        atom_env_head: None,
    };
    let path = dir.join("model.safetensors");
    save_fresh(config, vocab, &path);
    let embeddings = embed::run(&path, &["CCO", "c1ccccc1O", "CCO"]).unwrap();
    assert_eq!(embeddings.len(), 3);
    assert!(embeddings.iter().all(|e| e.len() == 16));
    // the same molecule, the same embedding; another molecule, another one
    assert_eq!(embeddings[0], embeddings[2]);
    assert_ne!(embeddings[0], embeddings[1]);
    assert!(embed::run(&path, &["not a molecule"]).is_err());
}

#[test]
fn the_pretrain_example_learns_masked_atom_environments() {
    let corpus = repo().join("datasets/moses_30k.smi.gz");
    // 256 molecules: eight batches, ten passes
    let losses = pretrain::run(&corpus, &vocab(), 256, 80, 3e-3).unwrap();
    assert_eq!(losses.len(), 80);
    assert!(losses.iter().all(|l| l.is_finite()));
    let first = losses[..8].iter().sum::<f32>() / 8.0;
    let last = losses[72..].iter().sum::<f32>() / 8.0;
    // from about ln(classes) (guessing) to at least a nat below it (the same 8 batches)
    assert!(last < first - 1.0, "mean loss {first} → {last}");
}
