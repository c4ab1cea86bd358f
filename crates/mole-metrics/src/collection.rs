//! Streaming multitask metric accumulation ([`MetricsCollection`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classification::{
    accuracy, auprc, auroc, balanced_accuracy, multiclass_accuracy, multiclass_balanced_accuracy,
    sigmoid,
};
use crate::regression::{mae, pearson, r2, rmse, spearman};

/// The kind of prediction task, which decides the metrics computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Real-valued targets: `mae`, `rmse`, `r2`, `pearson`, `spearman`.
    Regression,
    /// 0/1 targets with positive-class probabilities as predictions:
    /// `accuracy`, `balanced_accuracy`, `auroc`, `auprc`.
    BinaryClassification,
    /// Class-index targets with one row of `num_classes` scores per sample
    /// and task: `accuracy`, `balanced_accuracy`.
    MulticlassClassification {
        /// Number of classes per task (at least 1).
        num_classes: usize,
    },
}

const REGRESSION_METRICS: &[&str] = &["mae", "rmse", "r2", "pearson", "spearman"];
const BINARY_METRICS: &[&str] = &["accuracy", "balanced_accuracy", "auroc", "auprc"];
const MULTICLASS_METRICS: &[&str] = &["accuracy", "balanced_accuracy"];

impl TaskKind {
    /// Base names of the metrics computed for this kind, in a fixed order.
    pub fn metric_names(&self) -> &'static [&'static str] {
        match self {
            TaskKind::Regression => REGRESSION_METRICS,
            TaskKind::BinaryClassification => BINARY_METRICS,
            TaskKind::MulticlassClassification { .. } => MULTICLASS_METRICS,
        }
    }

    /// The metric used for model selection: `rmse` for regression (lower is
    /// better), `auroc` for binary and `accuracy` for multiclass
    /// classification (higher is better). See [`higher_is_better`].
    pub fn primary_metric_name(&self) -> &'static str {
        match self {
            TaskKind::Regression => "rmse",
            TaskKind::BinaryClassification => "auroc",
            TaskKind::MulticlassClassification { .. } => "accuracy",
        }
    }

    /// Number of prediction values per sample and task: `num_classes` for
    /// multiclass classification, otherwise 1.
    pub fn prediction_width(&self) -> usize {
        match self {
            TaskKind::MulticlassClassification { num_classes } => *num_classes,
            _ => 1,
        }
    }
}

/// Whether a larger value of `metric` is better.
///
/// Accepts base names (`"rmse"`) and per-task names (`"rmse_task_3"`). Error
/// metrics (`mae`, `rmse`) are lower-is-better; every other metric of this
/// crate is higher-is-better.
pub fn higher_is_better(metric: &str) -> bool {
    let base = match metric.rfind("_task_") {
        Some(pos)
            if metric.len() > pos + 6 && metric[pos + 6..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &metric[..pos]
        }
        _ => metric,
    };
    !matches!(base, "mae" | "rmse")
}

/// Labelled `(pred, label)` data of one task, NaN labels already dropped.
#[derive(Debug, Clone, Default)]
struct TaskBuffer {
    /// `prediction_width` values per retained label.
    preds: Vec<f32>,
    labels: Vec<f32>,
}

/// Streaming, NaN-aware multitask metrics, the Rust counterpart of MolE's
/// `MetricsDict`.
///
/// Feed batches with [`update`](Self::update); [`compute`](Self::compute)
/// returns every metric of the [`TaskKind`] for each task
/// (`"{metric}_task_{t}"`, always emitted, also for a single task) and the
/// mean over tasks (`"{metric}"`).
///
/// * Labels that are `NaN` are dropped per task at `update` time, so only
///   labelled entries are stored (memory grows with the number of labels;
///   the exact rank-based metrics need all of them).
/// * A task whose metric is undefined (see the crate docs, e.g. AUROC with a
///   single class) reports `NaN` for `"{metric}_task_{t}"` and is skipped in
///   the mean; if no task is defined the mean is `NaN` too.
/// * Binary predictions are probabilities unless the collection was built
///   with [`with_logits`](Self::with_logits).
///
/// ```
/// use mole_metrics::{MetricsCollection, TaskKind};
///
/// let mut m = MetricsCollection::new(TaskKind::BinaryClassification, 1);
/// m.update(&[0.1, 0.4], &[0.0, 0.0]);
/// m.update(&[0.35, 0.8], &[1.0, 1.0]);
/// let values = m.compute();
/// assert_eq!(values["auroc"], 0.75);
/// assert!((values["auprc"] - 5.0 / 6.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone)]
pub struct MetricsCollection {
    kind: TaskKind,
    num_tasks: usize,
    logits: bool,
    num_samples: usize,
    tasks: Vec<TaskBuffer>,
}

impl MetricsCollection {
    /// Creates an empty collection for `num_tasks` tasks of the given kind.
    ///
    /// # Panics
    ///
    /// If `num_tasks == 0`, or `kind` is multiclass with `num_classes == 0`.
    pub fn new(kind: TaskKind, num_tasks: usize) -> Self {
        assert!(num_tasks > 0, "num_tasks must be positive");
        assert!(
            kind.prediction_width() > 0,
            "num_classes must be positive for multiclass classification"
        );
        Self {
            kind,
            num_tasks,
            logits: false,
            num_samples: 0,
            tasks: vec![TaskBuffer::default(); num_tasks],
        }
    }

    /// Declares that predictions passed to [`update`](Self::update) are
    /// logits rather than probabilities. For binary classification the
    /// thresholded metrics then apply [`sigmoid`] first (equivalently, a
    /// logit `> 0` is positive); AUROC/AUPRC are unaffected since they only
    /// use the score order. Has no effect for regression or multiclass
    /// classification (argmax is the same for logits and probabilities).
    pub fn with_logits(mut self) -> Self {
        self.logits = true;
        self
    }

    /// The task kind.
    pub fn task_kind(&self) -> TaskKind {
        self.kind
    }

    /// Number of tasks (label columns).
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    /// Number of sample rows seen since construction or the last reset,
    /// including rows whose labels are all `NaN`.
    pub fn num_samples(&self) -> usize {
        self.num_samples
    }

    /// Number of non-`NaN` labels accumulated for each task.
    pub fn labels_per_task(&self) -> Vec<usize> {
        self.tasks.iter().map(|t| t.labels.len()).collect()
    }

    /// Base names of the metrics computed (see [`TaskKind::metric_names`]).
    pub fn metric_names(&self) -> &'static [&'static str] {
        self.kind.metric_names()
    }

    /// Name of the cross-task mean used for model selection (see
    /// [`TaskKind::primary_metric_name`]); a key of [`compute`](Self::compute).
    pub fn primary_metric_name(&self) -> &'static str {
        self.kind.primary_metric_name()
    }

    /// Accumulates one batch.
    ///
    /// * `labels`: row-major `[n_samples, num_tasks]`, `NaN` = missing.
    /// * `preds`: row-major `[n_samples, num_tasks]` for regression and
    ///   binary classification; `[n_samples, num_tasks * num_classes]` for
    ///   multiclass, task `t`'s scores at columns
    ///   `t * num_classes .. (t + 1) * num_classes`.
    ///
    /// # Panics
    ///
    /// If the lengths do not match those shapes, or (multiclass) a non-`NaN`
    /// label is not an integer in `0..num_classes`.
    pub fn update(&mut self, preds: &[f32], labels: &[f32]) {
        let width = self.kind.prediction_width();
        assert!(
            labels.len().is_multiple_of(self.num_tasks),
            "labels length {} is not a multiple of num_tasks {}",
            labels.len(),
            self.num_tasks
        );
        assert_eq!(
            preds.len(),
            labels.len() * width,
            "predictions length {} does not match labels length {} x prediction width {}",
            preds.len(),
            labels.len(),
            width
        );
        let n = labels.len() / self.num_tasks;
        for (row_preds, row_labels) in preds
            .chunks_exact(self.num_tasks * width)
            .zip(labels.chunks_exact(self.num_tasks))
        {
            for (task, (&y, p)) in self
                .tasks
                .iter_mut()
                .zip(row_labels.iter().zip(row_preds.chunks_exact(width)))
            {
                if y.is_nan() {
                    continue;
                }
                if let TaskKind::MulticlassClassification { num_classes } = self.kind {
                    assert!(
                        y >= 0.0 && y.fract() == 0.0 && (y as usize) < num_classes,
                        "class label {y} is not an integer in 0..{num_classes}"
                    );
                }
                task.labels.push(y);
                task.preds.extend_from_slice(p);
            }
        }
        self.num_samples += n;
    }

    /// Clears all accumulated data, keeping kind, task count and the logits
    /// setting.
    pub fn reset(&mut self) {
        self.num_samples = 0;
        for task in &mut self.tasks {
            task.preds.clear();
            task.labels.clear();
        }
    }

    /// Computes every metric per task and averaged over tasks.
    ///
    /// Keys are `"{metric}"` (mean over the tasks where it is defined) and
    /// `"{metric}_task_{t}"` for `t in 0..num_tasks`. Undefined values are
    /// `f64::NAN`. Does not modify the accumulated state.
    pub fn compute(&self) -> BTreeMap<String, f64> {
        self.compute_optional()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect()
    }

    /// Like [`compute`](Self::compute) but wrapped in a serializable
    /// [`MetricsReport`] with undefined values as `None`.
    pub fn report(&self) -> MetricsReport {
        MetricsReport {
            task_kind: self.kind,
            num_tasks: self.num_tasks,
            num_samples: self.num_samples,
            labels_per_task: self.labels_per_task(),
            primary_metric: self.primary_metric_name().to_owned(),
            metrics: self.compute_optional(),
        }
    }

    fn compute_optional(&self) -> BTreeMap<String, Option<f64>> {
        let names = self.metric_names();
        let mut per_metric: Vec<Vec<Option<f64>>> = vec![Vec::new(); names.len()];
        for task in &self.tasks {
            let preds: Vec<f64> = task.preds.iter().map(|&p| f64::from(p)).collect();
            let labels: Vec<f64> = task.labels.iter().map(|&y| f64::from(y)).collect();
            let probs: Vec<f64>;
            let thresholded = if self.logits && self.kind == TaskKind::BinaryClassification {
                probs = preds.iter().map(|&x| sigmoid(x)).collect();
                &probs
            } else {
                &preds
            };
            for (values, &name) in per_metric.iter_mut().zip(names) {
                let value = match (self.kind, name) {
                    (TaskKind::Regression, "mae") => mae(&preds, &labels),
                    (TaskKind::Regression, "rmse") => rmse(&preds, &labels),
                    (TaskKind::Regression, "r2") => r2(&preds, &labels),
                    (TaskKind::Regression, "pearson") => pearson(&preds, &labels),
                    (TaskKind::Regression, "spearman") => spearman(&preds, &labels),
                    (TaskKind::BinaryClassification, "accuracy") => accuracy(thresholded, &labels),
                    (TaskKind::BinaryClassification, "balanced_accuracy") => {
                        balanced_accuracy(thresholded, &labels)
                    }
                    (TaskKind::BinaryClassification, "auroc") => auroc(&preds, &labels),
                    (TaskKind::BinaryClassification, "auprc") => auprc(&preds, &labels),
                    (TaskKind::MulticlassClassification { num_classes }, "accuracy") => {
                        multiclass_accuracy(&preds, &labels, num_classes)
                    }
                    (TaskKind::MulticlassClassification { num_classes }, "balanced_accuracy") => {
                        multiclass_balanced_accuracy(&preds, &labels, num_classes)
                    }
                    (kind, name) => unreachable!("metric {name} not defined for {kind:?}"),
                };
                values.push(value);
            }
        }

        let mut out = BTreeMap::new();
        for (values, &name) in per_metric.iter().zip(names) {
            let defined: Vec<f64> = values.iter().flatten().copied().collect();
            let mean =
                (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
            out.insert(name.to_owned(), mean);
            for (t, &v) in values.iter().enumerate() {
                out.insert(format!("{name}_task_{t}"), v);
            }
        }
        out
    }
}

/// A serializable snapshot of a [`MetricsCollection`]'s results.
///
/// Undefined metrics are `None` (JSON `null`). A `NaN` caused by `NaN`
/// predictions is stored as `Some(NaN)`, which most serializers (e.g.
/// `serde_json`) also write as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// Task kind the metrics were computed for.
    pub task_kind: TaskKind,
    /// Number of tasks.
    pub num_tasks: usize,
    /// Number of sample rows accumulated.
    pub num_samples: usize,
    /// Number of non-`NaN` labels per task.
    pub labels_per_task: Vec<usize>,
    /// Key of the model-selection metric in `metrics`.
    pub primary_metric: String,
    /// Metric values keyed as in [`MetricsCollection::compute`].
    pub metrics: BTreeMap<String, Option<f64>>,
}

impl MetricsReport {
    /// Value of the primary metric, `None` if undefined.
    pub fn primary_value(&self) -> Option<f64> {
        self.metrics.get(&self.primary_metric).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f32 = f32::NAN;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn metric_names_and_keys() {
        let m = MetricsCollection::new(TaskKind::Regression, 2);
        let keys: Vec<String> = m.compute().into_keys().collect();
        let mut expected = Vec::new();
        for name in REGRESSION_METRICS {
            expected.push(name.to_string());
            expected.push(format!("{name}_task_0"));
            expected.push(format!("{name}_task_1"));
        }
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(m.primary_metric_name(), "rmse");

        let m = MetricsCollection::new(TaskKind::BinaryClassification, 1);
        assert_eq!(m.compute().len(), 8);
        assert_eq!(m.primary_metric_name(), "auroc");

        let kind = TaskKind::MulticlassClassification { num_classes: 3 };
        let m = MetricsCollection::new(kind, 1);
        assert_eq!(m.metric_names(), &["accuracy", "balanced_accuracy"]);
        assert_eq!(m.primary_metric_name(), "accuracy");
    }

    #[test]
    fn empty_collection_is_all_nan() {
        let m = MetricsCollection::new(TaskKind::BinaryClassification, 2);
        assert!(m.compute().values().all(|v| v.is_nan()));
    }

    #[test]
    fn regression_single_task_matches_free_functions() {
        // Same numbers as the hand-computed regression tests:
        // MAE = 7/4, RMSE = sqrt(21/4).
        let mut m = MetricsCollection::new(TaskKind::Regression, 1);
        m.update(&[1.0, 2.0, 3.0, 4.0], &[2.0, 2.0, 5.0, 0.0]);
        let v = m.compute();
        assert!(close(v["mae"], 1.75));
        assert!(close(v["mae_task_0"], 1.75));
        assert!(close(v["rmse"], 5.25f64.sqrt()));
    }

    #[test]
    fn multitask_regression_with_nan_and_averaging() {
        // Rows (pred_t0, pred_t1 | label_t0, label_t1):
        //   (1, 10 | 1,   NaN)
        //   (2, 20 | 4,   21 )
        //   (3, 30 | NaN, 28 )
        //   (4, 40 | 4,   40 )
        // task 0 keeps rows 0, 1, 3: errors 0, -2, 0   -> MAE = 2/3, RMSE = sqrt(4/3)
        // task 1 keeps rows 1, 2, 3: errors -1, 2, 0   -> MAE = 1,   RMSE = sqrt(5/3)
        // mean MAE = (2/3 + 1) / 2 = 5/6
        let preds = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
        let labels = [1.0, NAN, 4.0, 21.0, NAN, 28.0, 4.0, 40.0];
        let mut m = MetricsCollection::new(TaskKind::Regression, 2);
        m.update(&preds, &labels);
        let v = m.compute();
        assert!(close(v["mae_task_0"], 2.0 / 3.0));
        assert!(close(v["mae_task_1"], 1.0));
        assert!(close(v["mae"], 5.0 / 6.0));
        assert!(close(v["rmse_task_0"], (4.0f64 / 3.0).sqrt()));
        assert!(close(v["rmse_task_1"], (5.0f64 / 3.0).sqrt()));
        assert!(close(
            v["rmse"],
            ((4.0f64 / 3.0).sqrt() + (5.0f64 / 3.0).sqrt()) / 2.0
        ));
        assert_eq!(m.labels_per_task(), vec![3, 3]);
        assert_eq!(m.num_samples(), 4);
    }

    #[test]
    fn binary_multitask_skips_undefined_tasks_in_mean() {
        // task 0: sklearn example (AUROC 0.75, AP 5/6)
        // task 1: labels all 0 (one NaN) -> AUROC/AUPRC undefined
        // task 2: perfect ranking        -> AUROC 1, AP 1
        let preds = [
            0.1, 0.9, 0.2, //
            0.4, 0.8, 0.3, //
            0.35, 0.7, 0.7, //
            0.8, 0.6, 0.9,
        ];
        let labels = [
            0.0, 0.0, 0.0, //
            0.0, NAN, 0.0, //
            1.0, 0.0, 1.0, //
            1.0, 0.0, 1.0,
        ];
        let mut m = MetricsCollection::new(TaskKind::BinaryClassification, 3);
        m.update(&preds, &labels);
        let v = m.compute();
        assert!(close(v["auroc_task_0"], 0.75));
        assert!(v["auroc_task_1"].is_nan());
        assert!(close(v["auroc_task_2"], 1.0));
        assert!(close(v["auroc"], (0.75 + 1.0) / 2.0));
        assert!(close(v["auprc"], (5.0 / 6.0 + 1.0) / 2.0));
        // Accuracy is defined for task 1: preds 0.9, 0.7, 0.6 all > 0.5 vs label 0 -> 0.
        assert!(close(v["accuracy_task_1"], 0.0));
        // task 0: predicted [0, 0, 0, 1] vs [0, 0, 1, 1] -> 3/4
        // task 2: predicted [0, 0, 1, 1] vs [0, 0, 1, 1] -> 1
        assert!(close(v["accuracy"], (0.75 + 0.0 + 1.0) / 3.0));

        let report = m.report();
        assert_eq!(report.metrics["auroc_task_1"], None);
        assert!(close(report.primary_value().unwrap(), 0.875));
        assert_eq!(report.labels_per_task, vec![4, 3, 4]);
    }

    #[test]
    fn nan_prediction_makes_mean_nan() {
        let mut m = MetricsCollection::new(TaskKind::Regression, 2);
        m.update(&[1.0, NAN, 2.0, 3.0], &[1.0, 1.0, 2.0, 3.0]);
        let v = m.compute();
        assert!(close(v["mae_task_0"], 0.0));
        assert!(v["mae_task_1"].is_nan());
        assert!(v["mae"].is_nan());
    }

    #[test]
    fn streaming_in_chunks_equals_one_shot() {
        let preds: Vec<f32> = (0..40).map(|i| ((i * 37) % 17) as f32 / 17.0).collect();
        let labels: Vec<f32> = (0..40)
            .map(|i| match i % 7 {
                0 => NAN,
                k => (k % 2) as f32,
            })
            .collect();
        for kind in [TaskKind::Regression, TaskKind::BinaryClassification] {
            let mut one = MetricsCollection::new(kind, 2);
            one.update(&preds, &labels);
            let mut two = MetricsCollection::new(kind, 2);
            two.update(&preds[..14], &labels[..14]);
            two.update(&preds[14..], &labels[14..]);
            let (a, b) = (one.compute(), two.compute());
            assert_eq!(a.len(), b.len());
            for (k, va) in &a {
                let vb = b[k];
                assert!(
                    va == &vb || (va.is_nan() && vb.is_nan()),
                    "{k}: {va} vs {vb}"
                );
            }
            assert_eq!(one.num_samples(), 20);
            assert_eq!(two.num_samples(), 20);
        }
    }

    #[test]
    fn reset_clears_state() {
        let mut m = MetricsCollection::new(TaskKind::BinaryClassification, 1);
        m.update(&[0.9, 0.1], &[1.0, 0.0]);
        assert!(close(m.compute()["auroc"], 1.0));
        m.reset();
        assert_eq!(m.num_samples(), 0);
        assert_eq!(m.labels_per_task(), vec![0]);
        assert!(m.compute()["auroc"].is_nan());
        // Usable again after reset; old data is gone.
        m.update(&[0.1, 0.9], &[1.0, 0.0]);
        assert!(close(m.compute()["auroc"], 0.0));
    }

    #[test]
    fn logits_mode_thresholds_at_zero() {
        // logits [-1, 0.5, 2, -3] -> predicted [0, 1, 1, 0]; labels [0, 0, 1, 1]
        // accuracy = 2/4; AUROC on raw logits: pos {2, -3} vs neg {-1, 0.5}:
        // 2 beats both (2), -3 beats none (0) -> 2/4
        let logits = [-1.0, 0.5, 2.0, -3.0];
        let labels = [0.0, 0.0, 1.0, 1.0];
        let mut m = MetricsCollection::new(TaskKind::BinaryClassification, 1).with_logits();
        m.update(&logits, &labels);
        let v = m.compute();
        assert!(close(v["accuracy"], 0.5));
        assert!(close(v["auroc"], 0.5));
        // Without the flag, logit 2.0 > 0.5 and 0.5 is not > 0.5: predicted [0, 0, 1, 0] -> 3/4.
        let mut m = MetricsCollection::new(TaskKind::BinaryClassification, 1);
        m.update(&logits, &labels);
        assert!(close(m.compute()["accuracy"], 0.75));
    }

    #[test]
    fn multiclass_two_tasks() {
        // 2 tasks x 3 classes, 3 rows.
        // task 0 argmax: [0, 1, 2], labels [0, 1, 1]   -> acc 2/3, bal (1 + 1/2)/2 = 3/4
        // task 1 argmax: [2, 2, 0], labels [2, NaN, 1] -> acc 1/2, bal (0 + 1)/2 = 1/2
        let preds = [
            0.8, 0.1, 0.1, 0.1, 0.1, 0.8, //
            0.1, 0.8, 0.1, 0.2, 0.3, 0.5, //
            0.1, 0.1, 0.8, 0.6, 0.3, 0.1,
        ];
        let labels = [0.0, 2.0, 1.0, NAN, 1.0, 1.0];
        let kind = TaskKind::MulticlassClassification { num_classes: 3 };
        let mut m = MetricsCollection::new(kind, 2);
        m.update(&preds, &labels);
        let v = m.compute();
        assert!(close(v["accuracy_task_0"], 2.0 / 3.0));
        assert!(close(v["accuracy_task_1"], 0.5));
        assert!(close(v["accuracy"], (2.0 / 3.0 + 0.5) / 2.0));
        assert!(close(v["balanced_accuracy_task_0"], 0.75));
        assert!(close(v["balanced_accuracy_task_1"], 0.5));
    }

    #[test]
    #[should_panic(expected = "does not match")]
    fn shape_mismatch_panics() {
        let mut m = MetricsCollection::new(TaskKind::Regression, 2);
        m.update(&[1.0, 2.0, 3.0], &[1.0, 2.0]);
    }

    #[test]
    #[should_panic(expected = "multiple of num_tasks")]
    fn ragged_labels_panic() {
        let mut m = MetricsCollection::new(TaskKind::Regression, 2);
        m.update(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
    }

    #[test]
    #[should_panic(expected = "not an integer")]
    fn multiclass_bad_label_panics_on_update() {
        let kind = TaskKind::MulticlassClassification { num_classes: 2 };
        let mut m = MetricsCollection::new(kind, 1);
        m.update(&[0.5, 0.5], &[1.5]);
    }

    #[test]
    fn higher_is_better_names() {
        assert!(!higher_is_better("rmse"));
        assert!(!higher_is_better("mae_task_12"));
        assert!(higher_is_better("auroc"));
        assert!(higher_is_better("r2_task_0"));
        assert!(higher_is_better("balanced_accuracy"));
    }

    #[test]
    fn prediction_width() {
        let k = TaskKind::MulticlassClassification { num_classes: 4 };
        assert_eq!(k.prediction_width(), 4);
        assert_eq!(TaskKind::Regression.prediction_width(), 1);
        assert_eq!(TaskKind::BinaryClassification.prediction_width(), 1);
    }

    #[test]
    fn results_are_serde_types() {
        // Compile-time check that the public result types implement serde's
        // traits (no serializer dependency needed in this crate).
        fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
        assert_serde::<TaskKind>();
        assert_serde::<MetricsReport>();
        assert_serde::<BTreeMap<String, f64>>();
    }
}
