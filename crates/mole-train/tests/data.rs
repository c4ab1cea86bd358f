//! The data readers as a library (`mole_train::data`): a labelled table becomes examples, its
//! bad rows rejected with line and reason while the valid rows go on; file-level errors name
//! the file; a streamed corpus gives the same batches every time and resumes mid-epoch.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mole_featurize::split::SplitMethod;
use mole_featurize::Vocabulary;
use mole_train::data::stream::{is_validation, sample, StreamCorpus, StreamSpec};
use mole_train::data::{featurize_rows, read_table, split_indices, DataError};
use mole_train::BatchStream;
use rand::rngs::StdRng;
use rand::SeedableRng;

mod common;

use common::{bundled_encoder, esol, scratch_dir};

fn vocab() -> Vocabulary {
    bundled_encoder().2
}

#[test]
fn a_table_becomes_examples_and_its_bad_rows_are_reported_not_fatal() {
    let dir = scratch_dir("data-table");
    let table = dir.join("assay.csv");
    std::fs::write(
        &table,
        "smiles,y,split\n\
         CCO,1.5,train\n\
         ,2.0,train\n\
         CCN,abc,valid\n\
         C1CC,3.0,test\n\
         c1ccccc1,,valid\n\
         CC(=O)O,4,test\n",
    )
    .unwrap();
    let read = read_table(&table, "smiles", &["y".to_string()], "split").unwrap();
    assert_eq!(read.label_names, vec!["y"]);
    let lines: Vec<usize> = read.rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 5, 6, 7]);
    let rejected: Vec<(usize, &str)> = read
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![(3, "empty SMILES"), (4, "label `abc` is not a number")]
    );
    // an empty label cell is a missing label, kept as NaN
    assert!(read.rows[2].labels[0].is_nan());

    let done = AtomicU64::new(0);
    let progress = |n: u64| {
        done.fetch_add(n, Ordering::Relaxed);
    };
    let (examples, bad) = featurize_rows(read.rows, &vocab(), 100, false, &progress);
    assert_eq!(done.load(Ordering::Relaxed), 4);
    let kept: Vec<usize> = examples.iter().map(|e| e.line).collect();
    assert_eq!(kept, vec![2, 6, 7]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 5);
    assert!(bad[0].reason.contains("ring"), "{}", bad[0].reason);

    // the split column decides the parts
    let mut rng = StdRng::seed_from_u64(0);
    let parts = split_indices(&examples, SplitMethod::Random, 0.1, 0.1, 0, &mut rng).unwrap();
    assert_eq!(parts, (vec![0], vec![1], vec![2]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_level_errors_name_the_file_and_why() {
    let dir = scratch_dir("data-errors");
    let table = dir.join("no_smiles.csv");
    std::fs::write(&table, "molecule,y\nCCO,1\n").unwrap();
    let err = read_table(&table, "smiles", &[], "").err().unwrap();
    assert!(matches!(err, DataError::Invalid(_)));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:1: no `smiles` column", table.display())),
        "{message}"
    );
    let missing = dir.join("missing.csv");
    let err = read_table(&missing, "smiles", &[], "").err().unwrap();
    assert!(matches!(err, DataError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: cannot open", missing.display())
    );
    let err = read_table(&dir.join("table.xlsx"), "smiles", &[], "")
        .err()
        .unwrap();
    assert!(err.to_string().contains("expected a .csv"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_streamed_corpus_repeats_its_batches_and_resumes_mid_epoch() {
    let dir = scratch_dir("data-stream");
    let smiles: Vec<String> = esol(&vocab(), 80).into_iter().map(|e| e.smiles).collect();
    let (first, second) = smiles.split_at(50);
    let files = vec![dir.join("part-0.smi"), dir.join("part-1.smi")];
    std::fs::write(&files[0], first.join("\n")).unwrap();
    std::fs::write(&files[1], second.join("\n")).unwrap();
    let spec = Arc::new(StreamSpec {
        files,
        seed: 3,
        window: 32,
        batch_size: 8,
        max_atoms: 200,
        valid_fraction: 0.2,
        test_fraction: 0.0,
        vocab: vocab(),
        target_vocab: None,
        table: None,
    });
    let corpus = StreamCorpus(spec.clone());
    let epoch = |epoch: usize, skip: usize| -> Vec<Vec<String>> {
        corpus
            .epoch(epoch, skip)
            .map(|batch| batch.unwrap())
            .take_while(|batch| !batch.is_empty())
            .map(|batch| batch.into_iter().map(|e| e.smiles).collect())
            .collect()
    };
    let batches = epoch(0, 0);
    // every training molecule once (validation ones held out by their SMILES hash)
    let seen: BTreeSet<String> = batches.iter().flatten().cloned().collect();
    let training: BTreeSet<String> = smiles
        .iter()
        .filter(|s| !is_validation(s, 0.2))
        .cloned()
        .collect();
    assert!(!training.is_empty() && training.len() < smiles.len());
    assert_eq!(seen, training);
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), training.len());
    assert!(batches.iter().all(|b| b.len() <= 8));
    // the same epoch gives the same batches; a resumed epoch the same ones after those done
    assert_eq!(epoch(0, 0), batches);
    assert_eq!(epoch(0, 2), batches[2..].to_vec());
    assert_ne!(epoch(1, 0), batches);

    let (train, valid, rejects) = sample(&spec, usize::MAX, usize::MAX).unwrap();
    assert!(rejects.is_empty());
    assert_eq!(train.len(), training.len());
    assert!(valid.iter().all(|r| is_validation(&r.smiles, 0.2)));
    assert_eq!(train.len() + valid.len(), smiles.len());
    let _ = std::fs::remove_dir_all(&dir);
}
