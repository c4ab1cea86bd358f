//! Parity checks against the original PyTorch MolE's recorded outputs (the fixture folder
//! `fixtures/parity` documented in its README): forward activations, attention terms, logits,
//! NaN-masked losses, gradients and one clipped Adam step. Generic over the backend, so the same
//! checks run on the CPU in the test suite and on a GPU from `mole parity`.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use mole_featurize::Batch;
use mole_nn::{DebertaConfig, EncoderRequest, HostTensor, StateDict};

use crate::checkpoint::{load_state_dict, to_state_dict};
use crate::model::{cls_state, MolE, MolEConfig};
use crate::training::{clip_global_norm, global_grad_norm, grads_as_state_dict};
use crate::{BatchTensors, ModelError, TaskType};

/// One compared quantity: passes when `error <= tolerance`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    /// Max absolute difference, or relative error for losses.
    pub error: f64,
    pub tolerance: f64,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// All checks of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: impl Into<String>, error: f64, tolerance: f64) {
        self.checks.push(Check {
            name: name.into(),
            error,
            tolerance,
        });
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    pub fn extend(&mut self, other: Report) {
        self.checks.extend(other.checks);
    }
}

/// Tolerances; the defaults are the fixture README's for float32.
#[derive(Debug, Clone, Copy)]
pub struct Tolerances {
    /// Activations, attention terms and logits (absolute).
    pub activation: f64,
    /// Losses (relative).
    pub loss: f64,
    /// Gradients, relative to the largest |gradient| of the same tensor.
    pub gradient: f64,
    /// Parameters after one Adam step (absolute).
    pub adam: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            activation: 1e-4,
            loss: 1e-5,
            gradient: 1e-4,
            adam: 1e-5,
        }
    }
}

impl Tolerances {
    /// bf16 mixed precision: 0.1 on activations, 2% on losses, 5% of each tensor's largest
    /// gradient; derived from bf16's rounding error in `tests/parity_mixed_precision.rs`.
    pub fn bf16() -> Self {
        Self {
            activation: 0.1,
            loss: 0.02,
            gradient: 0.05,
            adam: 1e-5,
        }
    }

    /// f16 mixed precision: 0.0125 on activations, 0.25% on losses, 2% of each tensor's largest
    /// gradient; derived in `tests/parity_mixed_precision.rs`.
    pub fn f16() -> Self {
        Self {
            activation: 0.0125,
            loss: 0.0025,
            gradient: 0.02,
            adam: 1e-5,
        }
    }

    /// The tolerances for a model computing in `dtype` (`None`: f32).
    pub fn for_compute_dtype(dtype: Option<burn::tensor::DType>) -> Self {
        match dtype {
            Some(burn::tensor::DType::BF16) => Self::bf16(),
            Some(burn::tensor::DType::F16) => Self::f16(),
            _ => Self::default(),
        }
    }

    /// Every tolerance multiplied by `k`.
    pub fn scaled(self, k: f64) -> Self {
        Self {
            activation: self.activation * k,
            loss: self.loss * k,
            gradient: self.gradient * k,
            adam: self.adam * k,
        }
    }
}

fn io_err(path: &Path, why: impl std::fmt::Display) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| io_err(path, e))
}

/// One model variant of the fixture folder (`small_l2_h64`, `medium_l4_h128`).
pub struct Variant {
    pub dir: PathBuf,
    pub json: serde_json::Value,
    /// Encoder config in eval mode (dropout 0).
    pub config: DebertaConfig,
    pub expected: StateDict,
    /// Mixed-precision compute dtype of the checked model (`None`: the parameters' dtype).
    pub compute_dtype: Option<burn::tensor::DType>,
}

impl Variant {
    pub fn load(parity_dir: &Path, name: &str) -> Result<Self, ModelError> {
        let dir = parity_dir.join(name);
        let config = read_json(&dir.join("config.json"))?;
        let deberta: DebertaConfig =
            serde_json::from_value(config["model_config_resolved"].clone())
                .map_err(|e| io_err(&dir.join("config.json"), e))?;
        Ok(Self {
            json: read_json(&dir.join("expected.json"))?,
            expected: StateDict::load(&dir.join("expected.safetensors"))?,
            config: deberta.with_dropout(0.0),
            dir,
            compute_dtype: None,
        })
    }

    /// The same variant checked with f32 parameters and activations in `dtype`.
    pub fn computing_in(mut self, dtype: Option<burn::tensor::DType>) -> Self {
        self.compute_dtype = dtype;
        self
    }

    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn model_config(&self, classification: bool) -> MolEConfig {
        let (task, num_tasks) = if classification {
            (TaskType::Classification, 2)
        } else {
            (TaskType::Regression, 1)
        };
        let mut config = MolEConfig::supervised(self.config.clone(), task, num_tasks);
        if let Some(head) = config.head.as_mut() {
            head.dropout = Some(0.0);
        }
        config
    }

    /// The original `state_dict` of the model with that head.
    pub fn weights(&self, classification: bool) -> Result<StateDict, ModelError> {
        let mut dict = StateDict::load(&self.dir.join("encoder.safetensors"))?;
        let head = if classification {
            "head_classification.safetensors"
        } else {
            "head_regression.safetensors"
        };
        dict.extend(StateDict::load(&self.dir.join(head))?);
        Ok(dict)
    }

    pub fn model<B: Backend>(
        &self,
        classification: bool,
        device: &B::Device,
    ) -> Result<MolE<B>, ModelError> {
        let model = MolE::new(&self.model_config(classification), device);
        Ok(load_state_dict(model, &self.weights(classification)?)?
            .with_compute_dtype(self.compute_dtype))
    }

    fn expected(&self, key: &str) -> Result<&HostTensor, ModelError> {
        self.expected
            .tensors
            .get(key)
            .ok_or_else(|| io_err(&self.dir, format!("expected.safetensors has no `{key}`")))
    }
}

/// The fixture batch with its labels as fed to the original (NaN = missing).
pub struct FixtureBatch {
    pub batch: Batch,
    pub labels_regression: Vec<f32>,
    pub labels_classification: Vec<f32>,
}

impl FixtureBatch {
    pub fn load(parity_dir: &Path) -> Result<Self, ModelError> {
        let path = parity_dir.join("batch.json");
        let v = read_json(&path)?;
        let bad = |e: serde_json::Error| io_err(&path, e);
        let ids: Vec<Vec<i64>> = serde_json::from_value(v["input_ids"].clone()).map_err(bad)?;
        let mask: Vec<Vec<u8>> = serde_json::from_value(v["input_mask"].clone()).map_err(bad)?;
        let rel: Vec<Vec<Vec<i64>>> =
            serde_json::from_value(v["relative_pos"].clone()).map_err(bad)?;
        let nan_list = |key: &str| -> Vec<f32> {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (b, n) = (ids.len(), ids.first().map_or(0, Vec::len));
        Ok(Self {
            batch: Batch {
                batch_size: b,
                seq_len: n,
                input_ids: ids.concat(),
                input_mask: mask.concat().into_iter().map(|m| m == 1).collect(),
                relative_pos: rel.concat().concat(),
            },
            labels_regression: nan_list("labels_regression_as_fed"),
            labels_classification: nan_list("labels_classification_as_fed"),
        })
    }

    fn labels<B: Backend>(&self, classification: bool, device: &B::Device) -> Tensor<B, 2> {
        let (labels, tasks) = if classification {
            (self.labels_classification.clone(), 2)
        } else {
            (self.labels_regression.clone(), 1)
        };
        Tensor::from_data(
            TensorData::new(labels, [self.batch.batch_size, tasks]),
            device,
        )
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    HostTensor::from_tensor(t)
}

/// Max |a - e| over entries where `keep` holds; a shape mismatch is an infinite error.
pub fn max_abs_diff(
    actual: &HostTensor,
    expected: &HostTensor,
    keep: impl Fn(usize) -> bool,
) -> f64 {
    if actual.shape != expected.shape {
        return f64::INFINITY;
    }
    actual
        .data
        .iter()
        .zip(&expected.data)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, (a, e))| f64::from((a - e).abs()))
        .fold(0.0, f64::max)
}

/// The numbers of a JSON array (empty when it is not one).
fn json_numbers(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

fn rel_err(got: f64, want: f64) -> f64 {
    ((got - want) / want.abs().max(1e-12)).abs()
}

/// Eval-mode forward of both heads: embeddings, relative table, every layer's hidden states
/// (valid positions), attention probabilities, layer-0 terms (valid pairs), CLS, logits, losses.
pub fn check_forward<B: Backend>(
    variant: &Variant,
    fb: &FixtureBatch,
    tol: Tolerances,
    device: &B::Device,
) -> Result<Report, ModelError> {
    let name = variant.name();
    let mut report = Report::default();
    let inputs = BatchTensors::<B>::from_batch(&fb.batch, device);
    let n = fb.batch.seq_len;
    let valid = |pos: usize| fb.batch.input_mask.get(pos).copied().unwrap_or(false);
    let heads = variant.config.num_attention_heads;
    for classification in [false, true] {
        let key = if classification {
            "classification"
        } else {
            "regression"
        };
        let model: MolE<B> = variant.model(classification, device)?;
        let request = EncoderRequest {
            all_hidden_states: true,
            attention_probs: true,
            first_layer_terms: true,
            ..Default::default()
        };
        let (embedded, out) = model.mole.forward(&inputs, None, &request);
        let hidden = variant.config.hidden_size;
        let label = |q: &str| format!("{name} {key} {q}");
        let act = tol.activation;
        report.push(
            label("embeddings"),
            max_abs_diff(&host(embedded), variant.expected("embeddings")?, |_| true),
            act,
        );
        report.push(
            label("rel_embeddings_normed"),
            max_abs_diff(
                &host(model.mole.encoder.normalized_rel_embeddings()),
                variant.expected("rel_embeddings_normed")?,
                |_| true,
            ),
            act,
        );
        for (l, h) in out.all_hidden.iter().enumerate() {
            let k = format!("hidden_states.{l}");
            let d = max_abs_diff(&host(h.clone()), variant.expected(&k)?, |i| {
                valid(i / hidden)
            });
            report.push(label(&k), d, act);
        }
        for (l, p) in out.attention_probs.iter().enumerate() {
            let k = format!("attention_probs.{l}");
            if let Some(e) = variant.expected.tensors.get(&k) {
                report.push(label(&k), max_abs_diff(&host(p.clone()), e, |_| true), act);
            }
        }
        let terms = out
            .first_layer_terms
            .clone()
            .ok_or_else(|| io_err(&variant.dir, "no attention terms returned"))?;
        report.push(
            label("content_scores.0"),
            max_abs_diff(
                &host(terms.content),
                variant.expected("content_scores.0")?,
                |_| true,
            ),
            act,
        );
        // Position terms at pairs of valid tokens (elsewhere they never reach an output).
        let pair_valid = |i: usize| {
            let j = i % n;
            let q = (i / n) % n;
            let b = i / (n * n * heads);
            valid(b * n + q) && valid(b * n + j)
        };
        if let Some(c2p) = terms.c2p {
            report.push(
                label("c2p.0"),
                max_abs_diff(&host(c2p), variant.expected("c2p.0")?, pair_valid),
                act,
            );
        }
        if let Some(p2c) = terms.p2c {
            report.push(
                label("p2c.0"),
                max_abs_diff(&host(p2c), variant.expected("p2c.0")?, pair_valid),
                act,
            );
        }
        report.push(
            label("cls_embedding"),
            max_abs_diff(
                &host(cls_state(out.last_hidden)),
                variant.expected("cls_embedding")?,
                |_| true,
            ),
            act,
        );
        let sup =
            model.forward_supervised(&inputs, Some(fb.labels::<B>(classification, device)), None);
        let logits_key = format!("logits_{key}");
        report.push(
            label(&logits_key),
            max_abs_diff(&host(sup.logits), variant.expected(&logits_key)?, |_| true),
            act,
        );
        let loss = sup.loss.ok_or_else(|| io_err(&variant.dir, "no loss"))?;
        let got: f32 = loss.loss.clone().into_scalar().elem();
        let want = variant.json[key]["loss"].as_f64().unwrap_or(f64::NAN);
        report.push(
            label("loss (relative)"),
            rel_err(f64::from(got), want),
            tol.loss,
        );
        let kept: Vec<f32> = host(loss.elements)
            .data
            .into_iter()
            .zip(host(loss.valid.float()).data)
            .filter(|(_, v)| *v > 0.5)
            .map(|(e, _)| e)
            .collect();
        let want_el: Vec<f64> = json_numbers(&variant.json[key]["loss_elements"]);
        // Per entry, the loss inherits the logit's error: an entry whose logit sits close to its
        // label (e.g. (0.9756 - 1)^2 = 6e-4) has a relative error far above 1e-5 even in the
        // original's own float32-vs-float64 comparison. So each entry may differ by its relative
        // loss tolerance plus |d loss / d logit| times the activation tolerance; the error
        // reported is the worst ratio to that allowance (pass ≤ 1).
        let want_logits: Vec<f64> = json_numbers(&variant.json[key]["masked_logits"]);
        let want_labels: Vec<f64> = json_numbers(&variant.json[key]["masked_labels"]);
        let el_err = if kept.len() != want_el.len() || want_logits.len() != want_el.len() {
            f64::INFINITY
        } else {
            (0..kept.len())
                .map(|i| {
                    let (x, y, w) = (want_logits[i], want_labels[i], want_el[i]);
                    let slope = if classification {
                        (1.0 / (1.0 + (-x).exp()) - y).abs()
                    } else {
                        2.0 * (x - y).abs()
                    };
                    let allowance = tol.loss * w.abs() + slope * tol.activation;
                    (f64::from(kept[i]) - w).abs() / allowance.max(f64::MIN_POSITIVE)
                })
                .fold(0.0, f64::max)
        };
        report.push(label("loss elements (error / allowance)"), el_err, 1.0);
    }
    Ok(report)
}

fn supervised_loss<B: AutodiffBackend>(
    model: &MolE<B>,
    fb: &FixtureBatch,
    classification: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    let inputs = BatchTensors::<B>::from_batch(&fb.batch, device);
    model
        .forward_supervised(&inputs, Some(fb.labels::<B>(classification, device)), None)
        .loss
        .expect("labels given")
        .loss
}

/// Gradients of both losses for every parameter the fixture records, and the global norm.
pub fn check_gradients<B: AutodiffBackend>(
    variant: &Variant,
    fb: &FixtureBatch,
    tol: Tolerances,
    device: &B::Device,
) -> Result<Report, ModelError> {
    let name = variant.name();
    let mut report = Report::default();
    let names: Vec<String> = serde_json::from_value(variant.json["grad_param_names"].clone())
        .map_err(|e| io_err(&variant.dir, e))?;
    let last = variant.config.num_hidden_layers.saturating_sub(1);
    // Mathematically zero (only CLS reaches the loss and its relative index is constant):
    // the stored values are rounding noise, compared absolutely (fixture README).
    let noise_param = format!("MolE.encoder.layer.{last}.attention.self.key_proj.bias");
    for classification in [false, true] {
        let key = if classification {
            "classification"
        } else {
            "regression"
        };
        let model: MolE<B> = variant.model(classification, device)?;
        let loss = supervised_loss(&model, fb, classification, device);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let ours = grads_as_state_dict(&model, &grads);
        let expected = StateDict::load(&variant.dir.join(format!("grads_{key}.safetensors")))?;
        for pname in &names {
            let Some(want) = expected.tensors.get(pname) else {
                continue;
            };
            let Some(got) = ours.tensors.get(pname) else {
                report.push(
                    format!("{name} {key} grad {pname} (missing)"),
                    f64::INFINITY,
                    0.0,
                );
                continue;
            };
            let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let tolerance = if *pname == noise_param {
                1e-6
            } else {
                tol.gradient * f64::from(scale)
            };
            report.push(
                format!("{name} {key} grad {pname}"),
                max_abs_diff(got, want, |_| true),
                tolerance,
            );
        }
        let norm = global_grad_norm::<B, _>(&model, &grads);
        let want = variant.json[key]["grad_global_l2_norm"]
            .as_f64()
            .unwrap_or(f64::NAN);
        report.push(
            format!("{name} {key} grad global norm (relative)"),
            rel_err(f64::from(norm), want),
            tol.gradient,
        );
    }
    Ok(report)
}

/// Global-norm clipping (1.0) and one Adam step (lr 1e-3, betas 0.9/0.999, eps 1e-6) on the
/// regression loss, compared with the original's parameters after the step and its next loss.
pub fn check_adam_step<B: AutodiffBackend>(
    variant: &Variant,
    fb: &FixtureBatch,
    tol: Tolerances,
    device: &B::Device,
) -> Result<Report, ModelError> {
    let path = variant
        .dir
        .join("params_after_adam_step1_regression.safetensors");
    let mut report = Report::default();
    // The original recorded an Adam step for the variants whose expected.json has
    // `adam_regression` (the small one); for those, a missing parameter file is an error, not
    // a check quietly skipped.
    if variant.json.get("adam_regression").is_none() {
        return Ok(report);
    }
    if !path.exists() {
        return Err(ModelError::Checkpoint {
            path: path.display().to_string(),
            why: "missing: expected.json records an Adam step (adam_regression) to compare with"
                .into(),
        });
    }
    let name = variant.name();
    let model: MolE<B> = variant.model(false, device)?;
    let loss = supervised_loss(&model, fb, false, device);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let grads = clip_global_norm(&model, grads, 1.0);
    // The optimiser mole trains with (fused on the CPU backend).
    let mut optim = crate::training::FusedAdam::new(0.9, 0.999, 1e-6).init::<B, MolE<B>>();
    let model = optim.step(1e-3, model, grads);
    let after = to_state_dict(&model.valid());
    let want = StateDict::load(&path)?;
    let mut worst = 0.0f64;
    for (pname, w) in &want.tensors {
        let d = after
            .tensors
            .get(pname)
            .map_or(f64::INFINITY, |g| max_abs_diff(g, w, |_| true));
        worst = worst.max(d);
    }
    if after.tensors.len() != want.tensors.len() {
        worst = f64::INFINITY;
    }
    report.push(
        format!("{name} parameters after one clipped Adam step"),
        worst,
        tol.adam,
    );
    let loss2: f32 = supervised_loss(&model, fb, false, device)
        .into_scalar()
        .elem();
    let want2 = variant.json["adam_regression"]["history"][1]["loss_before_step"]
        .as_f64()
        .unwrap_or(f64::NAN);
    report.push(
        format!("{name} loss after one Adam step (relative)"),
        rel_err(f64::from(loss2), want2),
        tol.loss,
    );
    Ok(report)
}

/// Every check on every variant found under `parity_dir`.
pub fn check_all<B: AutodiffBackend>(
    parity_dir: &Path,
    tol: Tolerances,
    compute_dtype: Option<burn::tensor::DType>,
    device: &B::Device,
) -> Result<Report, ModelError> {
    let fb = FixtureBatch::load(parity_dir)?;
    let mut report = Report::default();
    for name in ["small_l2_h64", "medium_l4_h128"] {
        if !parity_dir.join(name).exists() {
            continue;
        }
        let variant = Variant::load(parity_dir, name)?.computing_in(compute_dtype);
        report.extend(check_forward::<B::InnerBackend>(
            &variant, &fb, tol, device,
        )?);
        report.extend(check_gradients::<B>(&variant, &fb, tol, device)?);
        report.extend(check_adam_step::<B>(&variant, &fb, tol, device)?);
    }
    Ok(report)
}
