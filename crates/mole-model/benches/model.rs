//! MolE encoder throughput on the CPU backend (Flex): forward in evaluation mode and
//! forward + backward of the supervised regression loss (`Autodiff<Flex>`), for the `tiny`,
//! `small` and `base` configurations at batch 32.
//!
//! The batch is 32 fixture molecules (`shared/fixtures/featurize/tdc_featurized.jsonl`) around
//! the median size, taken after sorting by atom count — the length-bucketed batches the trainer
//! builds — featurised with the bundled radius-0 vocabulary. Criterion's throughput is in
//! molecules (elements). `cargo bench -p mole-model -- tiny` runs one size only.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use mole_featurize::{collate, featurize, Batch, MoleInput, Vocabulary};
use mole_model::{BatchTensors, MolE, MolEConfig, TaskType};
use mole_nn::DebertaConfig;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/featurize/tdc_featurized.jsonl"
);
const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../mole-cli/assets/vocab_radius0.json"
);
const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
const BATCH: usize = 32;

/// The batch of `BATCH` median-sized fixture molecules and its regression labels.
fn fixture_batch(vocab: &Vocabulary) -> (Batch, Vec<f32>) {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| {
        panic!("{FIXTURE}: {e} (the model bench needs the shared featurisation fixture)")
    });
    let mut inputs: Vec<(MoleInput, f32)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let smiles = v["smiles"].as_str()?.to_string();
            let y = v["y"].as_f64().unwrap_or(0.0) as f32;
            let f = featurize(&smiles, vocab).ok()?;
            Some((MoleInput::from_featurized(&f, vocab), y))
        })
        .collect();
    assert!(
        inputs.len() >= BATCH,
        "fewer than {BATCH} fixture molecules"
    );
    inputs.sort_by_key(|(m, _)| m.len());
    let start = (inputs.len() / 2).saturating_sub(BATCH / 2);
    let chosen = &inputs[start..start + BATCH];
    let refs: Vec<&MoleInput> = chosen.iter().map(|(m, _)| m).collect();
    let labels = chosen.iter().map(|(_, y)| *y).collect();
    (collate(&refs), labels)
}

fn model_config(size: &str, vocab_size: usize) -> MolEConfig {
    let path = Path::new(CONFIGS).join(format!("{size}.toml"));
    let mut encoder =
        DebertaConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    encoder.vocab_size = vocab_size;
    MolEConfig::supervised(encoder, TaskType::Regression, 1)
}

fn bench_size(c: &mut Criterion, size: &str, batch: &Batch, labels: &[f32], vocab_size: usize) {
    type Inner = Flex;
    type Ad = Autodiff<Flex>;
    let device = burn::backend::flex::FlexDevice;
    let config = model_config(size, vocab_size);
    let slow = size == "base";

    let mut group = c.benchmark_group(format!("mole_{size}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(if slow { 1 } else { 2 }));
    group.measurement_time(Duration::from_secs(if slow { 5 } else { 4 }));

    let model: MolE<Inner> = config.init(&device);
    let inputs = BatchTensors::<Inner>::from_batch(batch, &device);
    group.bench_function(format!("forward_b{BATCH}_seq{}", batch.seq_len), |b| {
        b.iter(|| {
            let out = model.forward_supervised(black_box(&inputs), None, None);
            black_box(out.logits.into_data())
        })
    });

    let model: MolE<Ad> = config.init(&device);
    let inputs = BatchTensors::<Ad>::from_batch(batch, &device);
    let y = Tensor::<Ad, 2>::from_data(TensorData::new(labels.to_vec(), [BATCH, 1]), &device);
    group.bench_function(
        format!("forward_backward_b{BATCH}_seq{}", batch.seq_len),
        |b| {
            b.iter(|| {
                let out = model.forward_supervised(black_box(&inputs), Some(y.clone()), None);
                let loss = out.loss.expect("labels were given").loss;
                black_box(loss.backward())
            })
        },
    );
    group.finish();
}

fn bench(c: &mut Criterion) {
    let vocab = Vocabulary::from_json_file(VOCAB).expect("bundled vocabulary");
    let (batch, labels) = fixture_batch(&vocab);
    eprintln!(
        "model bench: batch {BATCH}, padded sequence length {} (CLS + atoms), vocabulary {}",
        batch.seq_len,
        vocab.vocab_size()
    );
    for size in ["tiny", "small", "base"] {
        bench_size(c, size, &batch, &labels, vocab.vocab_size());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
