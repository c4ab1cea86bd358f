//! Featurisation throughput over the 1245 fixture SMILES, single-threaded and with rayon.
//! Criterion reports time per pass; molecules/s = 1245 / time (throughput is set to elements).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mole_featurize::{featurize, Vocabulary};
use rayon::prelude::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/featurize/tdc_featurized.jsonl"
);
const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/vocab/vocab_207_radius0.json"
);

fn load() -> (Vec<String>, Vocabulary) {
    let smiles = std::fs::read_to_string(FIXTURE)
        .expect("fixture jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["smiles"].as_str().map(str::to_string))
        .collect();
    let vocab = Vocabulary::from_json_file(VOCAB).expect("vocabulary");
    (smiles, vocab)
}

fn bench(c: &mut Criterion) {
    let (smiles, vocab) = load();
    let mut group = c.benchmark_group("featurize_fixture");
    group.throughput(Throughput::Elements(smiles.len() as u64));
    group.bench_function("single_thread", |b| {
        b.iter(|| {
            smiles
                .iter()
                .map(|s| featurize(s, &vocab).map(|f| f.num_atoms).unwrap_or(0))
                .sum::<usize>()
        })
    });
    group.bench_function(
        format!("rayon_{}_threads", rayon::current_num_threads()),
        |b| {
            b.iter(|| {
                smiles
                    .par_iter()
                    .map(|s| featurize(s, &vocab).map(|f| f.num_atoms).unwrap_or(0))
                    .sum::<usize>()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
