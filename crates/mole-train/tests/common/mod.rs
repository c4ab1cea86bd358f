//! What the tests share: ESOL molecules as examples, and a scratch directory.

use std::path::{Path, PathBuf};

use mole_featurize::{featurize, MoleInput, Vocabulary};
use mole_model::objective::Example;

/// The first `rows` molecules of `datasets/esol.csv` that featurise, labelled with logS.
pub fn esol(vocab: &Vocabulary, rows: usize) -> Vec<Example> {
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/esol.csv");
    let text = std::fs::read_to_string(&table).expect("datasets/esol.csv");
    text.lines()
        .enumerate()
        .skip(1)
        .filter_map(|(line, row)| {
            let (smiles, label) = row.split_once(',')?;
            let molecule = featurize(smiles, vocab).ok()?;
            Some(Example {
                line: line + 1,
                smiles: smiles.to_string(),
                input: MoleInput::from_featurized(&molecule, vocab),
                labels: vec![label.trim().parse().ok()?],
                targets: Vec::new(),
                split: None,
            })
        })
        .take(rows)
        .collect()
}

/// An empty directory under the system's temporary folder, unique to this process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mole-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
