//! The parser must never panic, whatever the input.

use mole_featurize::{featurize, featurize_with_limit, parse_smiles, SmilesError, Vocabulary};
use proptest::prelude::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/featurize/tdc_featurized.jsonl"
);

fn fixture_smiles() -> Vec<String> {
    std::fs::read_to_string(FIXTURE)
        .expect("fixture jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["smiles"].as_str().map(str::to_string))
        .collect()
}

/// Characters that matter to the SMILES grammar, plus a few that do not.
const ALPHABET: &[char] = &[
    'C', 'c', 'N', 'n', 'O', 'o', 'S', 's', 'P', 'p', 'B', 'b', 'F', 'I', 'l', 'r', 'H', 'e', 'a',
    '[', ']', '(', ')', '=', '#', '$', ':', '/', '\\', '-', '+', '@', '.', '%', '*', '0', '1', '2',
    '3', '9', 'T', 'A', 'Z', ' ', 'é', '\u{0}',
];

fn check(smiles: &str) {
    let vocab = Vocabulary::build_from_counts(Default::default(), 1);
    if let Ok(m) = parse_smiles(smiles) {
        let f = featurize(smiles, &vocab).expect("parsed once, parses again");
        assert_eq!(f.num_atoms, m.num_atoms());
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn apply(s: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for e in edits {
        match *e {
            Edit::Insert(i, c) => {
                let i = i % (chars.len() + 1);
                chars.insert(i, c);
            }
            Edit::Delete(i) if !chars.is_empty() => {
                let i = i % chars.len();
                chars.remove(i);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let i = i % chars.len();
                chars[i] = c;
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let ch = proptest::sample::select(ALPHABET);
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_strings_never_panic(s in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..40)) {
        let s: String = s.into_iter().collect();
        check(&s);
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in ".{0,30}") {
        check(&s);
    }

    #[test]
    fn mutated_real_smiles_never_panic(
        index in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec(edit_strategy(), 1..5),
    ) {
        thread_local! {
            static SMILES: Vec<String> = fixture_smiles();
        }
        let base = SMILES.with(|all| index.get(all).clone());
        check(&apply(&base, &edits));
    }
}

#[test]
fn large_inputs_are_handled() {
    let vocab = Vocabulary::build_from_counts(Default::default(), 1);
    // a long chain (no recursion depth problems)
    let chain = "C".repeat(5000);
    assert_eq!(parse_smiles(&chain).expect("chain").num_atoms(), 5000);
    // deeply nested branches
    let nested = format!("{}C{}", "C(".repeat(2000), ")".repeat(2000));
    assert_eq!(parse_smiles(&nested).expect("nested").num_atoms(), 2001);
    // a polyacene: 31 linearly fused benzene rings, all aromatic
    let label = |k: usize| {
        if k < 10 {
            k.to_string()
        } else {
            format!("%{k}")
        }
    };
    let n = 31;
    let mut acene = String::from("c1ccc2");
    for k in 3..=n {
        acene.push_str(&format!("cc{}", label(k)));
    }
    acene.push_str(&format!("ccccc{}", label(n)));
    for k in (2..n).rev() {
        acene.push_str(&format!("cc{}", label(k)));
    }
    acene.push_str("c1");
    let m = parse_smiles(&acene).expect("polyacene");
    assert_eq!(m.num_atoms(), 4 * n + 2);
    assert!(m.atoms().iter().all(|a| a.is_aromatic()));
    // many benzene rings joined by single bonds
    let poly = "c1ccc(cc1)".repeat(200) + "C";
    let m = featurize_with_limit(&poly, &vocab, 2000).expect("polyphenyl");
    assert_eq!(m.num_atoms, 1201);
    // over the default size limit: a clear rejection, before the quadratic work
    match featurize(&poly, &vocab) {
        Err(SmilesError::TooLarge { atoms, limit }) => {
            assert_eq!((atoms, limit), (1201, mole_featurize::DEFAULT_MAX_ATOMS))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // a 100,000-atom chain is rejected as quickly (its distance matrix would need 40 GB)
    let chain = "C".repeat(100_000);
    assert!(matches!(
        featurize(&chain, &vocab),
        Err(SmilesError::TooLarge { atoms: 100_000, .. })
    ));
}
