//! What the tests share: ESOL molecules as examples, and a scratch directory.

use std::path::{Path, PathBuf};

use mole_featurize::Vocabulary;
use mole_model::objective::Example;
use mole_train::data::{featurize_rows, read_table};

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
