//! Parity with the original PyTorch MolE on `../shared/fixtures/parity` (both model variants):
//! activations, attention terms, logits, NaN-masked losses, gradients, one clipped Adam step,
//! weight round trip and padding invariance. Expected values come from the fixture files only.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use mole_featurize::Batch;
use mole_model::training::{clip_global_norm, grads_as_state_dict};
use mole_model::{
    checkpoint::{load_state_dict, to_state_dict},
    BatchTensors, HeadConfig, MolE, MolEConfig, TaskType,
};
use mole_nn::{DebertaConfig, EncoderRequest, HostTensor, StateDict};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
}

struct Fixture {
    dir: PathBuf,
    json: serde_json::Value,
    config: DebertaConfig,
    expected: StateDict,
}

fn load_fixture(variant: &str) -> Fixture {
    let dir = fixtures().join(variant);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut deberta: DebertaConfig =
        serde_json::from_value(config["model_config_resolved"].clone()).unwrap();
    // Parity is measured in eval mode.
    deberta = deberta.with_dropout(0.0);
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let expected = StateDict::load(&dir.join("expected.safetensors")).unwrap();
    Fixture {
        dir,
        json,
        config: deberta,
        expected,
    }
}

struct FixtureBatch {
    batch: Batch,
    labels_regression: Vec<f32>,
    labels_classification: Vec<f32>,
}

fn load_batch() -> FixtureBatch {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("batch.json")).unwrap())
            .unwrap();
    let ids: Vec<Vec<i64>> = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u8>> = serde_json::from_value(v["input_mask"].clone()).unwrap();
    let rel: Vec<Vec<Vec<i64>>> = serde_json::from_value(v["relative_pos"].clone()).unwrap();
    let nan_list = |key: &str| -> Vec<f32> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
            .collect()
    };
    let (b, n) = (ids.len(), ids[0].len());
    FixtureBatch {
        batch: Batch {
            batch_size: b,
            seq_len: n,
            input_ids: ids.concat(),
            input_mask: mask.concat().into_iter().map(|m| m == 1).collect(),
            relative_pos: rel.concat().concat(),
        },
        labels_regression: nan_list("labels_regression_as_fed"),
        labels_classification: nan_list("labels_classification_as_fed"),
    }
}

fn model_config(fx: &Fixture, classification: bool) -> MolEConfig {
    MolEConfig {
        encoder: fx.config.clone(),
        head: Some(HeadConfig {
            task: if classification {
                TaskType::Classification
            } else {
                TaskType::Regression
            },
            num_tasks: if classification { 2 } else { 1 },
            num_classes: 1,
            dropout: Some(0.0),
        }),
        atom_env_head: None,
    }
}

fn weights(fx: &Fixture, classification: bool) -> StateDict {
    let mut dict = StateDict::load(&fx.dir.join("encoder.safetensors")).unwrap();
    let head = if classification {
        "head_classification.safetensors"
    } else {
        "head_regression.safetensors"
    };
    dict.extend(StateDict::load(&fx.dir.join(head)).unwrap());
    dict
}

fn load_model<BK: burn::tensor::backend::Backend>(fx: &Fixture, classification: bool) -> MolE<BK> {
    let device = Default::default();
    let model = MolE::new(&model_config(fx, classification), &device);
    load_state_dict(model, &weights(fx, classification), &device).unwrap()
}

fn host<const D: usize, BK: burn::tensor::backend::Backend>(t: Tensor<BK, D>) -> HostTensor {
    HostTensor::from_tensor(t)
}

/// Max |a - b| over entries where `keep` is true.
fn max_abs_diff(actual: &HostTensor, expected: &HostTensor, keep: impl Fn(usize) -> bool) -> f32 {
    assert_eq!(actual.shape, expected.shape, "shape mismatch");
    actual
        .data
        .iter()
        .zip(&expected.data)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, (a, e))| (a - e).abs())
        .fold(0.0, f32::max)
}

const ACT_TOL: f32 = 1e-4;

fn check_forward(variant: &str) {
    let fx = load_fixture(variant);
    let fb = load_batch();
    let device = Default::default();
    let inputs = BatchTensors::<B>::from_batch(&fb.batch, &device);
    let (b, n) = (fb.batch.batch_size, fb.batch.seq_len);
    let valid = |pos: usize| fb.batch.input_mask[pos];

    for classification in [false, true] {
        let model: MolE<B> = load_model(&fx, classification);
        let request = EncoderRequest {
            all_hidden_states: true,
            attention_probs: true,
            first_layer_terms: true,
        };
        let (embedded, out) = model.mole.forward(&inputs, None, &request);
        let exp = |k: &str| {
            fx.expected
                .tensors
                .get(k)
                .unwrap_or_else(|| panic!("no {k}"))
        };
        let mut report = Vec::new();

        let hidden = exp("embeddings").shape[2];
        report.push((
            "embeddings",
            max_abs_diff(&host(embedded), exp("embeddings"), |_| true),
        ));
        report.push((
            "rel_embeddings_normed",
            max_abs_diff(
                &host(out.rel_embeddings.clone()),
                exp("rel_embeddings_normed"),
                |_| true,
            ),
        ));
        for (l, h) in out.all_hidden.iter().enumerate() {
            let key = format!("hidden_states.{l}");
            let d = max_abs_diff(&host(h.clone()), exp(&key), |i| valid(i / hidden));
            report.push((Box::leak(key.into_boxed_str()), d));
        }
        for (l, p) in out.attention_probs.iter().enumerate() {
            let key = format!("attention_probs.{l}");
            if let Some(e) = fx.expected.tensors.get(&key) {
                let d = max_abs_diff(&host(p.clone()), e, |_| true);
                report.push((Box::leak(key.into_boxed_str()), d));
            }
        }
        let terms = out.first_layer_terms.clone().unwrap();
        report.push((
            "content_scores.0",
            max_abs_diff(&host(terms.content), exp("content_scores.0"), |_| true),
        ));
        // The fixture stores position terms for every (i, j); compare where both tokens are valid
        // (elsewhere they are never used, and the original computes them on padded garbage too).
        let pair_valid = |i: usize| {
            let j = i % n;
            let qi = (i / n) % n;
            let bi = i / (n * n * fx.config.num_attention_heads);
            valid(bi * n + qi) && valid(bi * n + j)
        };
        report.push((
            "c2p.0",
            max_abs_diff(&host(terms.c2p.unwrap()), exp("c2p.0"), pair_valid),
        ));
        report.push((
            "p2c.0",
            max_abs_diff(&host(terms.p2c.unwrap()), exp("p2c.0"), pair_valid),
        ));
        let cls = mole_model::model::cls_state(out.last_hidden);
        report.push((
            "cls_embedding",
            max_abs_diff(&host(cls), exp("cls_embedding"), |_| true),
        ));

        let (labels, key) = if classification {
            (fb.labels_classification.clone(), "classification")
        } else {
            (fb.labels_regression.clone(), "regression")
        };
        let tasks = if classification { 2 } else { 1 };
        let labels_t = Tensor::<B, 2>::from_data(TensorData::new(labels, [b, tasks]), &device);
        let sup = model.forward_supervised(&inputs, Some(labels_t), None);
        let logits_key = format!("logits_{key}");
        report.push((
            Box::leak(logits_key.clone().into_boxed_str()),
            max_abs_diff(&host(sup.logits), exp(&logits_key), |_| true),
        ));

        for (name, d) in &report {
            println!("{variant} {key}: {name} max abs diff {d:e}");
        }
        for (name, d) in &report {
            assert!(
                *d <= ACT_TOL,
                "{variant}: {name} differs by {d:e} > {ACT_TOL:e}"
            );
        }

        // Loss: relative error <= 1e-5.
        let loss = sup.loss.unwrap();
        let got = loss.loss.into_scalar();
        let want = fx.json[key]["loss"].as_f64().unwrap() as f32;
        let rel = ((got - want) / want).abs();
        println!("{variant} {key}: loss {got} vs {want} (rel {rel:e})");
        assert!(rel <= 1e-5, "{variant} {key} loss {got} vs {want}");
        // Element-wise losses of the kept entries.
        let kept: Vec<f32> = host(loss.elements)
            .data
            .into_iter()
            .zip(host(loss.valid.float()).data)
            .filter(|(_, v)| *v > 0.5)
            .map(|(e, _)| e)
            .collect();
        let want_el: Vec<f32> =
            serde_json::from_value(fx.json[key]["loss_elements"].clone()).unwrap();
        assert_eq!(kept.len(), want_el.len());
        for (g, w) in kept.iter().zip(&want_el) {
            assert!(
                ((g - w) / w.abs().max(1e-6)).abs() <= 1e-5,
                "{variant} {key} element {g} vs {w}"
            );
        }
        // Dims sanity of the fixture vs ours.
        assert_eq!(exp("embeddings").shape, vec![b, n, hidden]);
    }
}

#[test]
fn forward_small() {
    check_forward("small_l2_h64");
}

#[test]
fn forward_medium() {
    check_forward("medium_l4_h128");
}

fn supervised_loss(model: &MolE<AD>, fb: &FixtureBatch, classification: bool) -> Tensor<AD, 1> {
    let device = Default::default();
    let inputs = BatchTensors::<AD>::from_batch(&fb.batch, &device);
    let (labels, tasks) = if classification {
        (fb.labels_classification.clone(), 2)
    } else {
        (fb.labels_regression.clone(), 1)
    };
    let labels_t = Tensor::<AD, 2>::from_data(
        TensorData::new(labels, [fb.batch.batch_size, tasks]),
        &device,
    );
    model
        .forward_supervised(&inputs, Some(labels_t), None)
        .loss
        .unwrap()
        .loss
}

fn check_grads(variant: &str) {
    let fx = load_fixture(variant);
    let fb = load_batch();
    let names: Vec<String> = serde_json::from_value(fx.json["grad_param_names"].clone()).unwrap();
    let last_layer = fx.config.num_hidden_layers - 1;
    let noise_param = format!("MolE.encoder.layer.{last_layer}.attention.self.key_proj.bias");
    for classification in [false, true] {
        let key = if classification {
            "classification"
        } else {
            "regression"
        };
        let model: MolE<AD> = load_model(&fx, classification);
        let loss = supervised_loss(&model, &fb, classification);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let ours = grads_as_state_dict(&model, &grads);
        let expected = StateDict::load(&fx.dir.join(format!("grads_{key}.safetensors"))).unwrap();
        let mut checked = 0;
        for name in &names {
            let Some(want) = expected.tensors.get(name) else {
                continue;
            };
            let got = ours
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("no grad for {name}"));
            let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = max_abs_diff(got, want, |_| true);
            let tol = if *name == noise_param {
                1e-6
            } else {
                1e-4 * scale
            };
            assert!(
                d <= tol,
                "{variant} {key}: grad {name} differs by {d:e} (tol {tol:e}, max|g| {scale:e})"
            );
            checked += 1;
        }
        println!("{variant} {key}: {checked} gradients match");
        assert!(checked >= 12, "too few gradients compared: {checked}");
        // Global norm before clipping, as recorded by the original.
        let norm = mole_model::training::global_grad_norm::<AD, _>(&model, &grads);
        let want = fx.json[key]["grad_global_l2_norm"].as_f64().unwrap() as f32;
        assert!(
            ((norm - want) / want).abs() <= 1e-4,
            "{variant} {key}: grad norm {norm} vs {want}"
        );
    }
}

#[test]
fn gradients_small() {
    check_grads("small_l2_h64");
}

#[test]
fn gradients_medium() {
    check_grads("medium_l4_h128");
}

#[test]
fn clipped_adam_step_matches_torch() {
    let fx = load_fixture("small_l2_h64");
    let fb = load_batch();
    let model: MolE<AD> = load_model(&fx, false);
    let loss = supervised_loss(&model, &fb, false);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let grads = clip_global_norm(&model, grads, 1.0);
    let mut optim = AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-6)
        .init::<AD, MolE<AD>>();
    let model = optim.step(1e-3, model, grads);
    let after = to_state_dict(&model.valid());
    let want = StateDict::load(
        &fx.dir
            .join("params_after_adam_step1_regression.safetensors"),
    )
    .unwrap();
    assert_eq!(after.tensors.len(), want.tensors.len());
    for (name, w) in &want.tensors {
        let g = &after.tensors[name];
        let d = max_abs_diff(g, w, |_| true);
        assert!(d <= 1e-5, "param {name} after Adam differs by {d:e}");
    }
    // The second step's loss matches the recorded history.
    let loss2 = supervised_loss(&model, &fb, false).into_scalar();
    let want2 = fx.json["adam_regression"]["history"][1]["loss_before_step"]
        .as_f64()
        .unwrap() as f32;
    assert!(
        ((loss2 - want2) / want2).abs() <= 1e-5,
        "loss after one step {loss2} vs {want2}"
    );
}

#[test]
fn import_checkpoint_export_round_trip_is_byte_identical() {
    let fx = load_fixture("small_l2_h64");
    let original = weights(&fx, false);
    let device = Default::default();
    let model: MolE<B> = load_model(&fx, false);
    let dir = std::env::temp_dir().join(format!("mole-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = mole_featurize::Vocabulary::from_json_file(
        &fixtures().join("../vocab/vocab_207_radius0.json"),
    )
    .unwrap();
    let ckpt = mole_model::Checkpoint {
        config: model_config(&fx, false),
        model,
        vocab,
        target_vocab: None,
        extra: serde_json::json!({"note": "round trip"}),
    };
    let ckpt_path = dir.join("model.mole.safetensors");
    ckpt.save(&ckpt_path).unwrap();
    let back = mole_model::Checkpoint::<B>::load(&ckpt_path, &device).unwrap();
    assert_eq!(back.config, ckpt.config);
    assert_eq!(back.vocab.vocab_size(), 211);
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
        &device,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_missing_and_misshaped_tensors_are_all_reported() {
    let fx = load_fixture("small_l2_h64");
    let device = Default::default();
    let mut dict = weights(&fx, false);
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
    let err = load_state_dict(
        MolE::<B>::new(&model_config(&fx, false), &device),
        &dict,
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("MolE.encoder.rel_embeddings.weight"), "{err}");
    assert!(err.contains("MolE.encoder.extra.weight"), "{err}");
    assert!(err.contains("prediction_head.dense.bias"), "{err}");
}

#[test]
fn padding_invariance_single_vs_batched() {
    let fx = load_fixture("small_l2_h64");
    let fb = load_batch();
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
