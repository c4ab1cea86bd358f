//! Parity with the original PyTorch MolE on `../shared/fixtures/parity` (both model variants):
//! activations, attention terms, logits, NaN-masked losses, gradients, one clipped Adam step,
//! weight round trip and padding invariance. Expected values come from the fixture files only;
//! the comparisons live in `mole_model::parity` so `mole parity` runs them on any device.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use mole_featurize::Batch;
use mole_model::checkpoint::load_state_dict;
use mole_model::parity::{self, FixtureBatch, Report, Tolerances, Variant};
use mole_model::{BatchTensors, MolE};
use mole_nn::{HostTensor, StateDict};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
}

fn variant(name: &str) -> Variant {
    Variant::load(&fixtures(), name).unwrap()
}

fn batch() -> FixtureBatch {
    FixtureBatch::load(&fixtures()).unwrap()
}

fn assert_passed(report: &Report, min_checks: usize) {
    for c in &report.checks {
        println!("{:<70} {:.3e} (tol {:.1e})", c.name, c.error, c.tolerance);
    }
    assert!(
        report.checks.len() >= min_checks,
        "only {} checks ran",
        report.checks.len()
    );
    let failures = report.failures();
    assert!(failures.is_empty(), "parity failures: {failures:#?}");
}

#[test]
fn forward_small() {
    let r = parity::check_forward::<B>(
        &variant("small_l2_h64"),
        &batch(),
        Tolerances::default(),
        &Default::default(),
    )
    .unwrap();
    // Per head: embeddings, table, 2 hidden, 2 probs, 3 terms, CLS, logits, 2 losses.
    assert_passed(&r, 2 * 13);
}

#[test]
fn forward_medium() {
    let r = parity::check_forward::<B>(
        &variant("medium_l4_h128"),
        &batch(),
        Tolerances::default(),
        &Default::default(),
    )
    .unwrap();
    assert_passed(&r, 2 * 14);
}

#[test]
fn gradients_small() {
    let r = parity::check_gradients::<AD>(
        &variant("small_l2_h64"),
        &batch(),
        Tolerances::default(),
        &Default::default(),
    )
    .unwrap();
    assert_passed(&r, 2 * 12);
}

#[test]
fn gradients_medium() {
    let r = parity::check_gradients::<AD>(
        &variant("medium_l4_h128"),
        &batch(),
        Tolerances::default(),
        &Default::default(),
    )
    .unwrap();
    assert_passed(&r, 2 * 13);
}

#[test]
fn clipped_adam_step_matches_torch() {
    let r = parity::check_adam_step::<AD>(
        &variant("small_l2_h64"),
        &batch(),
        Tolerances::default(),
        &Default::default(),
    )
    .unwrap();
    assert_passed(&r, 2);
}

#[test]
fn a_wrong_weight_is_caught() {
    // The checks are not vacuous: perturbing one weight breaks parity.
    let v = variant("small_l2_h64");
    let fb = batch();
    let device = Default::default();
    let mut dict = v.weights(false).unwrap();
    dict.tensors
        .get_mut("MolE.encoder.layer.1.output.dense.weight")
        .unwrap()
        .data[0] += 0.01;
    let model: MolE<B> =
        load_state_dict(MolE::new(&v.model_config(false), &device), &dict).unwrap();
    let cls = model.embed(&BatchTensors::from_batch(&fb.batch, &device));
    let expected = &v.expected.tensors["cls_embedding"];
    assert!(parity::max_abs_diff(&HostTensor::from_tensor(cls), expected, |_| true) > 1e-4);
}

fn model_config(v: &Variant, classification: bool) -> mole_model::MolEConfig {
    v.model_config(classification)
}

fn load_model<BK: burn::tensor::backend::Backend>(v: &Variant, classification: bool) -> MolE<BK> {
    v.model(classification, &Default::default()).unwrap()
}

fn host<const D: usize, BK: burn::tensor::backend::Backend>(t: Tensor<BK, D>) -> HostTensor {
    HostTensor::from_tensor(t)
}

#[test]
fn import_checkpoint_export_round_trip_is_byte_identical() {
    let fx = variant("small_l2_h64");
    let original = fx.weights(false).unwrap();
    let device = Default::default();
    let model: MolE<B> = load_model(&fx, false);
    let dir = std::env::temp_dir().join(format!("mole-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = mole_featurize::Vocabulary::from_json_file(
        fixtures().join("../vocab/vocab_207_radius0.json"),
    )
    .unwrap();
    let ckpt = mole_model::Checkpoint {
        config: model_config(&fx, false),
        model,
        vocab,
        target_vocab: None,
        info: mole_model::CheckpointInfo {
            other: serde_json::from_str(r#"{"note": "round trip"}"#).unwrap(),
            ..Default::default()
        },
    };
    let ckpt_path = dir.join("model.mole.safetensors");
    ckpt.save(&ckpt_path).unwrap();
    let back = mole_model::Checkpoint::<B>::load(&ckpt_path, &device).unwrap();
    assert_eq!(back.config, ckpt.config);
    assert_eq!(back.vocab.vocab_size(), 211);
    assert_eq!(back.info, ckpt.info);
    let export_path = dir.join("export.safetensors");
    mole_model::export_safetensors(&back.model, &export_path).unwrap();
    let exported = StateDict::load(&export_path).unwrap();
    assert_eq!(exported.tensors.len(), original.tensors.len());
    for (name, t) in &original.tensors {
        let e = &exported.tensors[name];
        assert_eq!(e.shape, t.shape, "{name}");
        let same_bits = e
            .data
            .iter()
            .zip(&t.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same_bits, "{name} changed in the round trip");
    }
    // Lightning-prefixed names load too.
    let mut prefixed = StateDict::default();
    for (k, v) in &original.tensors {
        prefixed.tensors.insert(format!("model.{k}"), v.clone());
    }
    load_state_dict(
        MolE::<B>::new(&model_config(&fx, false), &device),
        &prefixed,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// The error of loading `dict` into a fresh regression model of `fx`'s architecture.
fn load_error(fx: &Variant, dict: &StateDict) -> String {
    let device = Default::default();
    load_state_dict(MolE::<B>::new(&model_config(fx, false), &device), dict)
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_missing_and_misshaped_tensors_are_all_reported() {
    let fx = variant("small_l2_h64");
    let mut dict = fx.weights(false).unwrap();
    dict.tensors.remove("MolE.encoder.rel_embeddings.weight");
    dict.tensors.insert(
        "MolE.encoder.extra.weight".into(),
        HostTensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    let t = dict.tensors.get_mut("prediction_head.dense.bias").unwrap();
    *t = HostTensor {
        shape: vec![3],
        data: vec![0.0; 3],
    };
    let err = load_error(&fx, &dict);
    assert!(err.contains("MolE.encoder.rel_embeddings.weight"), "{err}");
    assert!(err.contains("MolE.encoder.extra.weight"), "{err}");
    assert!(err.contains("prediction_head.dense.bias"), "{err}");
}

#[test]
fn misshaped_linear_weights_are_reported_in_pytorch_layout() {
    let fx = variant("small_l2_h64");
    let mut dict = fx.weights(false).unwrap();
    // PyTorch `[out, in]`: the regression head's classifier is [1, 64]; Burn holds [64, 1]
    let weight = dict
        .tensors
        .get_mut("prediction_head.classifier.weight")
        .unwrap();
    assert_eq!(weight.shape, vec![1, 64]);
    *weight = HostTensor {
        shape: vec![2, 64],
        data: vec![0.0; 128],
    };
    let err = load_error(&fx, &dict);
    assert!(
        err.contains("prediction_head.classifier.weight: expected [1, 64], found [2, 64]"),
        "{err}"
    );
    assert!(err.contains("missing []; unexpected []"), "{err}");
}

#[test]
fn only_original_names_load() {
    let fx = variant("small_l2_h64");
    let mut dict = fx.weights(false).unwrap();
    // the same tensor under its Burn path is not an original name
    let norm = dict
        .tensors
        .remove("MolE.embeddings.LayerNorm.weight")
        .unwrap();
    dict.tensors
        .insert("mole.embeddings.layer_norm.gamma".into(), norm);
    let err = load_error(&fx, &dict);
    assert!(
        err.contains("missing [\"MolE.embeddings.LayerNorm.weight\"]")
            && err.contains("unexpected [\"mole.embeddings.layer_norm.gamma\"]"),
        "{err}"
    );
}

#[test]
fn padding_invariance_single_vs_batched() {
    let fx = variant("small_l2_h64");
    let fb = batch();
    let device = Default::default();
    let model: MolE<B> = load_model(&fx, false);
    let batched = host(model.embed(&BatchTensors::from_batch(&fb.batch, &device)));
    let (b, n) = (fb.batch.batch_size, fb.batch.seq_len);
    let h = batched.shape[1];
    for m in 0..b {
        let len = (0..n).filter(|&i| fb.batch.input_mask[m * n + i]).count();
        let mut rel = Vec::with_capacity(len * len);
        for i in 0..len {
            for j in 0..len {
                rel.push(fb.batch.relative_pos[m * n * n + i * n + j]);
            }
        }
        let single = Batch {
            batch_size: 1,
            seq_len: len,
            input_ids: fb.batch.input_ids[m * n..m * n + len].to_vec(),
            input_mask: vec![true; len],
            relative_pos: rel,
        };
        let alone = host(model.embed(&BatchTensors::from_batch(&single, &device)));
        let d = alone
            .data
            .iter()
            .zip(&batched.data[m * h..(m + 1) * h])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d <= 1e-5,
            "molecule {m}: CLS alone vs batched differs by {d:e}"
        );
    }
}

#[test]
fn model_trait_steps_feed_metrics() {
    use mole_metrics::{MetricsCollection, TaskKind};
    use mole_model::objective::HostBatch;
    use mole_model::Model;
    let v = variant("small_l2_h64");
    let fb = batch();
    let device = Default::default();
    for classification in [false, true] {
        let model: MolE<B> = load_model(&v, classification);
        let (labels, tasks, kind) = if classification {
            (
                fb.labels_classification.clone(),
                2,
                TaskKind::BinaryClassification,
            )
        } else {
            (fb.labels_regression.clone(), 1, TaskKind::Regression)
        };
        let batch = HostBatch::Supervised {
            batch: fb.batch.clone(),
            labels: labels.clone(),
            weights: None,
            num_tasks: tasks,
        };
        // the inner backend: dropout off, as in the original's validation step
        let step = model.loss(batch, &device).unwrap();
        let key = if classification {
            "classification"
        } else {
            "regression"
        };
        let want = v.json[key]["loss"].as_f64().unwrap() as f32;
        let got = step.loss.clone().into_scalar();
        assert!(
            ((got - want) / want).abs() <= 1e-5,
            "{key}: {got} vs {want}"
        );
        let mut metrics = MetricsCollection::new(kind, tasks);
        let predictions = step
            .predictions
            .expect("supervised batches give predictions");
        metrics.update(&predictions.into_data().to_vec::<f32>().unwrap(), &labels);
        let m = metrics.compute();
        if classification {
            assert_eq!(metrics.num_tasks(), 2);
            assert!(m.contains_key("auroc_task_1"), "{m:?}");
        } else {
            // RMSE over the 7 kept entries equals sqrt(mean squared error) = sqrt(loss).
            let rmse = m["rmse"];
            assert!(
                (rmse - f64::from(want).sqrt()).abs() <= 1e-3 * rmse,
                "{rmse} vs {}",
                want.sqrt()
            );
        }
    }
}
