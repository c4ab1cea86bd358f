//! What the tests share: the bundled pretrained encoder, ESOL molecules as examples, and a
//! scratch directory. Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mole_featurize::Vocabulary;
use mole_model::objective::Example;
use mole_model::{config_and_vocab, zoo, MolEConfig};
use mole_nn::StateDict;
use mole_train::data::{featurize_rows, read_table};

/// The bundled pretrained encoder (`mole-tiny-zinc-chembl`): its weights, configuration and
/// vocabulary.
pub fn bundled_encoder() -> (StateDict, MolEConfig, Vocabulary) {
    let name = "mole-tiny-zinc-chembl";
    let encoder = zoo::bundled_model(name).unwrap().state_dict().unwrap();
    let (config, vocab) = config_and_vocab(&encoder, name).unwrap();
    (encoder, config, vocab)
}

/// The first `rows` molecules of `datasets/esol.csv` that featurise, labelled with logS, read
/// with the library's readers.
pub fn esol(vocab: &Vocabulary, rows: usize) -> Vec<Example> {
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/esol.csv");
    let table = read_table(&table, "smiles", &[], "").expect("datasets/esol.csv");
    let (mut examples, _) = featurize_rows(table.rows, vocab, usize::MAX, false, &|_| {});
    examples.truncate(rows);
    examples
}

/// An empty directory under the system's temporary folder, unique to this process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mole-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
