//! NaN-aware, streaming evaluation metrics for MolE property prediction.
//!
//! This crate provides two layers:
//!
//! 1. **Free functions** over `f64` slices — [`mae`], [`rmse`], [`r2`],
//!    [`pearson`], [`spearman`] for regression and [`accuracy`],
//!    [`balanced_accuracy`], [`auroc`], [`auprc`], [`multiclass_accuracy`],
//!    [`multiclass_balanced_accuracy`] for classification. Each takes
//!    `(preds, labels)` for a single task and returns `Option<f64>`.
//! 2. A **streaming accumulator**, [`MetricsCollection`], modelled on the
//!    `MetricsDict` of the original MolE code: construct it for a
//!    [`TaskKind`] and a number of tasks, feed it row-major mini-batches with
//!    [`MetricsCollection::update`], and read all metrics — per task and
//!    averaged over tasks — with [`MetricsCollection::compute`].
//!
//! # Conventions shared by every metric
//!
//! * **Missing labels.** A label that is `NaN` marks a missing measurement;
//!   the pair `(pred, label)` is skipped. In multitask data this happens per
//!   task, so each task is scored on its own non-`NaN` labels only.
//! * **Undefined metrics return `None`.** Examples: no labelled samples at
//!   all, R² / Pearson / Spearman with a constant input (zero variance),
//!   AUROC with only one class present, AUPRC with no positive labels. In the
//!   map returned by [`MetricsCollection::compute`] undefined values appear as
//!   `f64::NAN` and are left out of the cross-task mean.
//! * **`NaN` predictions poison the result.** If a prediction paired with a
//!   non-`NaN` label is `NaN` (e.g. a diverged model), a metric that is
//!   otherwise defined returns `Some(f64::NAN)` instead of silently producing
//!   a plausible-looking number. Such a `NaN` *is* included in the cross-task
//!   mean, which therefore becomes `NaN` too.
//! * **Binary labels** are expected to be `0` or `1`; any non-`NaN` label
//!   `>= 0.5` counts as positive.
//! * **Binary predictions** are probabilities of the positive class.
//!   [`accuracy`] and [`balanced_accuracy`] predict the positive class iff
//!   `p > 0.5` (the same rule as `torchmetrics` and scikit-learn's
//!   `predict`). [`auroc`] and [`auprc`] only depend on the order of the
//!   scores, so they accept logits or probabilities alike. Use [`sigmoid`] to
//!   turn logits into probabilities, or build the collection with
//!   [`MetricsCollection::with_logits`].
//! * **Multiclass** predictions are rows of `num_classes` class scores
//!   (probabilities or logits: only the argmax matters, first maximum wins on
//!   ties) and labels are class indices stored as floats (`0.0`, `1.0`, ...).
//!
//! # Example
//!
//! ```
//! use mole_metrics::{MetricsCollection, TaskKind};
//!
//! // Two regression tasks, row-major [n_samples, n_tasks].
//! let mut metrics = MetricsCollection::new(TaskKind::Regression, 2);
//! metrics.update(&[1.0, 2.0, 3.0, 4.0], &[1.5, f32::NAN, 2.5, 4.0]);
//! metrics.update(&[5.0, 6.0], &[5.0, 6.5]);
//! let values = metrics.compute();
//! assert!(values.contains_key("rmse"));        // mean over tasks
//! assert!(values.contains_key("rmse_task_0")); // per task
//! assert_eq!(metrics.primary_metric_name(), "rmse");
//! metrics.reset();
//! assert_eq!(metrics.num_samples(), 0);
//! ```

mod classification;
mod collection;
mod ranking;
mod regression;

pub use classification::{
    accuracy, auprc, auroc, balanced_accuracy, multiclass_accuracy, multiclass_balanced_accuracy,
    sigmoid, BINARY_THRESHOLD,
};
pub use collection::{higher_is_better, MetricsCollection, MetricsReport, TaskKind};
pub use regression::{mae, pearson, r2, rmse, spearman};

/// Pairs `(pred, label)` retained after dropping `NaN` labels.
struct Pairs {
    preds: Vec<f64>,
    labels: Vec<f64>,
    /// Whether any retained prediction is `NaN`.
    has_nan_pred: bool,
}

impl Pairs {
    /// Keeps the pairs whose label is not `NaN`.
    ///
    /// # Panics
    ///
    /// If `preds` and `labels` have different lengths.
    fn new(preds: &[f64], labels: &[f64]) -> Self {
        assert_eq!(
            preds.len(),
            labels.len(),
            "predictions ({}) and labels ({}) must have the same length",
            preds.len(),
            labels.len()
        );
        let mut out = Pairs {
            preds: Vec::with_capacity(preds.len()),
            labels: Vec::with_capacity(labels.len()),
            has_nan_pred: false,
        };
        for (&p, &y) in preds.iter().zip(labels) {
            if y.is_nan() {
                continue;
            }
            out.has_nan_pred |= p.is_nan();
            out.preds.push(p);
            out.labels.push(y);
        }
        out
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
