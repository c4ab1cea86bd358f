//! The collated batch of the parity fixture, built from its 8 SMILES.

use mole_featurize::{collate, featurize, MoleInput, Vocabulary};
use serde_json::Value;

const BATCH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/parity/batch.json"
);
const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/vocab/vocab_207_radius0.json"
);

fn flat_ints(v: &Value, out: &mut Vec<i64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flat_ints(x, out)),
        other => out.push(other.as_i64().expect("integer")),
    }
}

#[test]
fn parity_batch_is_reproduced_exactly() {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(BATCH).expect("batch.json")).expect("json");
    let vocab = Vocabulary::from_json_file(VOCAB).expect("vocabulary");
    let inputs: Vec<MoleInput> = fixture["molecules"]
        .as_array()
        .expect("molecules")
        .iter()
        .map(|m| {
            let smiles = m["smiles"].as_str().expect("smiles");
            let f = featurize(smiles, &vocab).expect("featurize");
            MoleInput::from_featurized(&f, &vocab)
        })
        .collect();
    let refs: Vec<&MoleInput> = inputs.iter().collect();
    let batch = collate(&refs);

    let num_tokens: Vec<usize> = inputs.iter().map(|m| m.len()).collect();
    let mut expected_num_tokens = Vec::new();
    flat_ints(&fixture["num_tokens"], &mut expected_num_tokens);
    assert_eq!(
        num_tokens,
        expected_num_tokens
            .iter()
            .map(|&x| x as usize)
            .collect::<Vec<_>>()
    );
    assert_eq!(batch.batch_size, 8);
    assert_eq!(batch.seq_len, 51);

    let mut ids = Vec::new();
    flat_ints(&fixture["input_ids"], &mut ids);
    assert_eq!(batch.input_ids, ids);
    let mut mask = Vec::new();
    flat_ints(&fixture["input_mask"], &mut mask);
    let mask: Vec<bool> = mask.into_iter().map(|m| m != 0).collect();
    assert_eq!(batch.input_mask, mask);
    let mut rel = Vec::new();
    flat_ints(&fixture["relative_pos"], &mut rel);
    assert_eq!(batch.relative_pos.len(), rel.len());
    assert!(batch.relative_pos == rel, "relative_pos differs");
}

#[test]
fn single_molecule_input() {
    let vocab = Vocabulary::from_json_file(VOCAB).expect("vocabulary");
    let f = featurize("CCO.[Na+]", &vocab).expect("featurize");
    let m = MoleInput::from_featurized(&f, &vocab);
    assert_eq!(m.len(), 5);
    assert_eq!(m.input_ids[0], vocab.cls_id());
    #[rustfmt::skip]
    let expected = vec![
        0, 0, 0, 0, 0,
        0, 1, 2, 3, 0,
        0, 2, 1, 2, 0,
        0, 3, 2, 1, 0,
        0, 0, 0, 0, 1,
    ];
    assert_eq!(m.relative_pos, expected);
    let empty = collate(&[]);
    assert_eq!((empty.batch_size, empty.seq_len), (0, 0));
}
