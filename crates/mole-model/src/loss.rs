//! The original's NaN-masked losses: labels that are NaN are dropped and the loss is the mean
//! of the per-entry losses that remain (optionally weighted per entry).
//!
//! Masking is done on the device (no host round trip): NaN labels are replaced by 0 before the
//! element-wise loss so no NaN reaches the gradient, and dropped entries are zeroed afterwards.
//! Losses are computed in f32 whatever the model's compute precision (as under autocast).

use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, Bool, Int, Tensor};
use mole_nn::attention::to_f32;
use serde::{Deserialize, Serialize};

/// Which loss the supervised head trains with. The one representation of a task's type:
/// config files (serde), the command line (`clap`, feature `clap`) and checkpoints all read it
/// here, and anything but `regression` or `classification` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Mean squared error on raw outputs.
    Regression,
    /// Binary cross-entropy with logits per task (num_classes = 1), or softmax cross-entropy
    /// over `num_classes` > 1 outputs per task.
    Classification,
}

impl TaskType {
    /// The name config files and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Regression => "regression",
            TaskType::Classification => "classification",
        }
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-entry losses before masking and the entries kept.
pub struct MaskedLoss<B: Backend> {
    /// `[]`-like scalar in a `[1]` tensor: the training loss.
    pub loss: Tensor<B, 1>,
    /// `[entries]` unreduced loss, 0 where the label is missing.
    pub elements: Tensor<B, 1>,
    /// `[entries]` true where the label is present.
    pub valid: Tensor<B, 1, Bool>,
}

fn reduce<B: Backend>(
    elements: Tensor<B, 1>,
    valid: Tensor<B, 1, Bool>,
    weights: Option<Tensor<B, 1>>,
) -> MaskedLoss<B> {
    let elements = elements.mask_fill(valid.clone().bool_not(), 0.0);
    let weighted = match weights {
        Some(w) => elements.clone() * to_f32(w).mask_fill(valid.clone().bool_not(), 0.0),
        None => elements.clone(),
    };
    // In f32: a bf16 sum of ones stops counting exactly at 256.
    let count = to_f32(valid.clone().float()).sum().clamp_min(1.0);
    MaskedLoss {
        loss: weighted.sum() / count,
        elements,
        valid,
    }
}

/// Labels flattened molecule-major, NaN = missing → (labels with 0 for missing, valid mask).
fn split_nan<B: Backend>(labels: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1, Bool>) {
    let labels = to_f32(labels);
    let missing = labels.clone().is_nan();
    (labels.mask_fill(missing.clone(), 0.0), missing.bool_not())
}

/// `logits [entries]`, `labels [entries]` (NaN = missing), optional `weights [entries]`.
pub fn masked_mse<B: Backend>(
    logits: Tensor<B, 1>,
    labels: Tensor<B, 1>,
    weights: Option<Tensor<B, 1>>,
) -> MaskedLoss<B> {
    let (labels, valid) = split_nan(labels);
    let diff = to_f32(logits) - labels;
    reduce(diff.clone() * diff, valid, weights)
}

/// Binary cross-entropy on logits, in the overflow-free form
/// `max(x, 0) - x·y + log(1 + exp(-|x|))`.
pub fn masked_bce_with_logits<B: Backend>(
    logits: Tensor<B, 1>,
    labels: Tensor<B, 1>,
    weights: Option<Tensor<B, 1>>,
) -> MaskedLoss<B> {
    let (labels, valid) = split_nan(labels);
    let logits = to_f32(logits);
    let elements =
        logits.clone().clamp_min(0.0) - logits.clone() * labels + logits.abs().neg().exp().log1p();
    reduce(elements, valid, weights)
}

/// Softmax cross-entropy: `logits [entries, classes]`, `labels [entries]` holding class indices
/// as floats (NaN = missing).
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1>,
    weights: Option<Tensor<B, 1>>,
) -> MaskedLoss<B> {
    let (labels, valid) = split_nan(labels);
    let [entries, _] = logits.dims();
    let targets: Tensor<B, 2, Int> = labels.int().reshape([entries, 1]);
    let log_probs = log_softmax(to_f32(logits), 1);
    let elements = log_probs.gather(1, targets).reshape([entries]).neg();
    reduce(elements, valid, weights)
}

/// Cross-entropy over integer targets, every entry counted (masked-atom pretraining).
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [entries, _] = logits.dims();
    let log_probs = log_softmax(to_f32(logits), 1);
    log_probs
        .gather(1, targets.reshape([entries, 1]))
        .neg()
        .mean()
}
