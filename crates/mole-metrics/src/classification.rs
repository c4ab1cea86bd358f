//! Classification metrics: accuracy, balanced accuracy, AUROC, AUPRC and
//! their multiclass counterparts.
//!
//! Binary functions take `(preds, labels)` where `preds` are probabilities of
//! the positive class (scores or logits are fine for [`auroc`] / [`auprc`])
//! and `labels` are `0`/`1`, with `NaN` marking a missing label. See the
//! crate documentation for the full conventions.

use crate::ranking::average_ranks;
use crate::Pairs;

/// Decision threshold on probabilities: a prediction `p` is positive iff
/// `p > BINARY_THRESHOLD`.
pub const BINARY_THRESHOLD: f64 = 0.5;

/// Numerically stable logistic function `1 / (1 + exp(-x))`, mapping a logit
/// to a probability.
///
/// `sigmoid(0.0) == 0.5`, so with [`BINARY_THRESHOLD`] a logit of exactly `0`
/// is classified as negative. `NaN` maps to `NaN`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn is_positive(label: f64) -> bool {
    label >= 0.5
}

/// Binary accuracy: the fraction of labelled samples whose thresholded
/// prediction (`p > 0.5` → class 1) equals the label.
///
/// `preds` are probabilities; apply [`sigmoid`] to logits first. Returns
/// `None` if no label is present.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn accuracy(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.is_empty() {
        return None;
    }
    if pairs.has_nan_pred {
        return Some(f64::NAN);
    }
    let correct = pairs
        .preds
        .iter()
        .zip(&pairs.labels)
        .filter(|(&p, &y)| (p > BINARY_THRESHOLD) == is_positive(y))
        .count();
    Some(correct as f64 / pairs.len() as f64)
}

/// Binary balanced accuracy: the mean per-class recall,
/// `(TPR + TNR) / 2`, with predictions thresholded at `p > 0.5`.
///
/// As in scikit-learn's `balanced_accuracy_score`, only classes present in
/// the labels are averaged: if every label is positive, the result is the
/// TPR alone. Returns `None` if no label is present.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn balanced_accuracy(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.is_empty() {
        return None;
    }
    if pairs.has_nan_pred {
        return Some(f64::NAN);
    }
    let classes = pairs.preds.iter().zip(&pairs.labels).map(|(&p, &y)| {
        (
            usize::from(p > BINARY_THRESHOLD),
            usize::from(is_positive(y)),
        )
    });
    mean_recall(classes, 2)
}

/// Area under the ROC curve, computed as the normalised Mann–Whitney U
/// statistic: the probability that a random positive scores higher than a
/// random negative, with ties counted as ½. This equals scikit-learn's
/// `roc_auc_score` (trapezoidal ROC area with tied thresholds grouped).
///
/// Only the order of `preds` matters, so probabilities and logits give the
/// same value. Returns `None` unless both classes are present.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn auroc(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    let n_pos = pairs.labels.iter().filter(|&&y| is_positive(y)).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    if pairs.has_nan_pred {
        return Some(f64::NAN);
    }
    let ranks = average_ranks(&pairs.preds);
    let rank_sum_pos: f64 = ranks
        .iter()
        .zip(&pairs.labels)
        .filter(|(_, &y)| is_positive(y))
        .map(|(r, _)| r)
        .sum();
    let (n_pos, n_neg) = (n_pos as f64, n_neg as f64);
    // U counts (positive, negative) pairs with the positive ranked higher,
    // ties counting 1/2.
    let u = rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0;
    Some(u / (n_pos * n_neg))
}

/// Area under the precision–recall curve as *average precision*, identical
/// to scikit-learn's `average_precision_score`:
///
/// `AP = Σ_k (R_k - R_{k-1}) · P_k`
///
/// over the distinct score thresholds in decreasing order, where `P_k` and
/// `R_k` are precision and recall when predicting positive for all scores
/// `>= threshold_k` (tied scores enter together) and `R_0 = 0`. This is the
/// step-wise (non-interpolated) area.
///
/// Only the order of `preds` matters. Returns `None` if there is no positive
/// label. With no negative labels the result is `1`.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn auprc(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    let n_pos = pairs.labels.iter().filter(|&&y| is_positive(y)).count();
    if n_pos == 0 {
        return None;
    }
    if pairs.has_nan_pred {
        return Some(f64::NAN);
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| pairs.preds[b].total_cmp(&pairs.preds[a]));

    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut start = 0;
    while start < order.len() {
        let score = pairs.preds[order[start]];
        let mut end = start;
        while end < order.len() && pairs.preds[order[end]] == score {
            if is_positive(pairs.labels[order[end]]) {
                tp += 1;
            } else {
                fp += 1;
            }
            end += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        start = end;
    }
    Some(ap)
}

/// Multiclass accuracy from row-major class scores.
///
/// `probs` is `[n, num_classes]` (probabilities or logits); the predicted
/// class is the row's argmax (first maximum on ties). `labels` has length
/// `n` and holds class indices as floats; `NaN` labels are skipped. Returns
/// `None` if no label is present; `Some(NaN)` if a scored row contains `NaN`.
///
/// # Panics
///
/// If `num_classes == 0`, `probs.len() != labels.len() * num_classes`, or a
/// non-`NaN` label is not an integer in `0..num_classes`.
pub fn multiclass_accuracy(probs: &[f64], labels: &[f64], num_classes: usize) -> Option<f64> {
    let rows = match multiclass_rows(probs, labels, num_classes) {
        Ok(rows) => rows,
        Err(early) => return early,
    };
    let correct = rows.iter().filter(|(p, y)| p == y).count();
    Some(correct as f64 / rows.len() as f64)
}

/// Multiclass balanced accuracy: the mean recall over the classes present in
/// the labels (scikit-learn's `balanced_accuracy_score`), with argmax
/// predictions as in [`multiclass_accuracy`].
///
/// # Panics
///
/// Same conditions as [`multiclass_accuracy`].
pub fn multiclass_balanced_accuracy(
    probs: &[f64],
    labels: &[f64],
    num_classes: usize,
) -> Option<f64> {
    match multiclass_rows(probs, labels, num_classes) {
        Ok(rows) => mean_recall(rows.into_iter(), num_classes),
        Err(early) => early,
    }
}

/// Collects `(predicted, true)` class pairs for the labelled rows.
///
/// `Err(None)` if no label is present, `Err(Some(NaN))` if a labelled row
/// has a `NaN` score.
fn multiclass_rows(
    probs: &[f64],
    labels: &[f64],
    num_classes: usize,
) -> Result<Vec<(usize, usize)>, Option<f64>> {
    assert!(num_classes > 0, "num_classes must be positive");
    assert_eq!(
        probs.len(),
        labels.len() * num_classes,
        "probabilities ({}) must have labels ({}) x num_classes ({}) entries",
        probs.len(),
        labels.len(),
        num_classes
    );
    let mut rows = Vec::with_capacity(labels.len());
    let mut has_nan = false;
    for (row, &y) in probs.chunks_exact(num_classes).zip(labels) {
        if y.is_nan() {
            continue;
        }
        let class = class_index(y, num_classes);
        match argmax(row) {
            Some(pred) => rows.push((pred, class)),
            None => has_nan = true,
        }
    }
    if rows.is_empty() && !has_nan {
        Err(None)
    } else if has_nan {
        Err(Some(f64::NAN))
    } else {
        Ok(rows)
    }
}

/// Index of the largest entry, first one on ties; `None` if any entry is
/// `NaN`.
fn argmax(row: &[f64]) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > row[best] {
            best = i;
        }
    }
    Some(best)
}

/// Converts a float class label to an index, panicking on invalid labels.
fn class_index(label: f64, num_classes: usize) -> usize {
    assert!(
        label >= 0.0 && label.fract() == 0.0 && label < num_classes as f64,
        "class label {label} is not an integer in 0..{num_classes}"
    );
    label as usize
}

/// Mean recall over the true classes that occur, given `(predicted, true)`
/// class pairs. `None` for an empty input.
fn mean_recall(pairs: impl Iterator<Item = (usize, usize)>, num_classes: usize) -> Option<f64> {
    let mut support = vec![0usize; num_classes];
    let mut hits = vec![0usize; num_classes];
    for (pred, truth) in pairs {
        support[truth] += 1;
        if pred == truth {
            hits[truth] += 1;
        }
    }
    let (sum, present) = support
        .iter()
        .zip(&hits)
        .filter(|(&s, _)| s > 0)
        .fold((0.0, 0usize), |(sum, n), (&s, &h)| {
            (sum + h as f64 / s as f64, n + 1)
        });
    (present > 0).then(|| sum / present as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn sigmoid_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(close(sigmoid(2.0), 1.0 / (1.0 + (-2.0f64).exp())));
        assert!(close(sigmoid(-2.0) + sigmoid(2.0), 1.0));
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(sigmoid(NAN).is_nan());
    }

    #[test]
    fn accuracy_and_balanced_accuracy_by_hand() {
        // probs  [0.9, 0.2, 0.6, 0.4, 0.7] -> predicted [1, 0, 1, 0, 1]
        // labels [1,   0,   0,   1,   1  ]
        // correct: yes, yes, no, no, yes -> accuracy = 3/5 = 0.6
        // positives (idx 0, 3, 4): predicted 1, 0, 1 -> TPR = 2/3
        // negatives (idx 1, 2):    predicted 0, 1    -> TNR = 1/2
        // balanced accuracy = (2/3 + 1/2) / 2 = 7/12
        let p = [0.9, 0.2, 0.6, 0.4, 0.7];
        let y = [1.0, 0.0, 0.0, 1.0, 1.0];
        assert!(close(accuracy(&p, &y).unwrap(), 0.6));
        assert!(close(balanced_accuracy(&p, &y).unwrap(), 7.0 / 12.0));
    }

    #[test]
    fn threshold_is_strict() {
        // p = 0.5 is predicted negative.
        assert_eq!(accuracy(&[0.5], &[0.0]), Some(1.0));
        assert_eq!(accuracy(&[0.5], &[1.0]), Some(0.0));
    }

    #[test]
    fn balanced_accuracy_single_class() {
        // Only positives: result is the TPR = 1/2.
        assert_eq!(balanced_accuracy(&[0.9, 0.1], &[1.0, 1.0]), Some(0.5));
    }

    #[test]
    fn auroc_sklearn_example() {
        // sklearn docs: y_true = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8]
        // (pos, neg) pairs: 0.35>0.1 win, 0.35<0.4 loss, 0.8 beats both -> 3/4
        let y = [0.0, 0.0, 1.0, 1.0];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!(close(auroc(&s, &y).unwrap(), 0.75));
    }

    #[test]
    fn auroc_with_ties() {
        // scores [0.5, 0.5, 0.5, 0.9], labels [0, 1, 0, 1]
        // Pairs: pos 0.9 vs negs (0.5, 0.5): 1 + 1 = 2
        //        pos 0.5 vs negs (0.5, 0.5): 1/2 + 1/2 = 1 (ties)
        // AUROC = 3 / (2 * 2) = 0.75
        // Rank view: ranks [2, 2, 2, 4]; R_pos = 2 + 4 = 6, U = 6 - 2*3/2 = 3.
        let s = [0.5, 0.5, 0.5, 0.9];
        let y = [0.0, 1.0, 0.0, 1.0];
        assert!(close(auroc(&s, &y).unwrap(), 0.75));
    }

    #[test]
    fn auroc_all_tied_is_half() {
        assert!(close(auroc(&[0.3; 4], &[0.0, 1.0, 1.0, 0.0]).unwrap(), 0.5));
    }

    #[test]
    fn auroc_invariant_to_sigmoid() {
        let logits = [-2.0, 0.3, 1.5, -0.1, 0.7];
        let probs: Vec<f64> = logits.iter().map(|&x| sigmoid(x)).collect();
        let y = [0.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(auroc(&logits, &y), auroc(&probs, &y));
        assert_eq!(auprc(&logits, &y), auprc(&probs, &y));
    }

    #[test]
    fn auroc_single_class_undefined() {
        assert_eq!(auroc(&[0.1, 0.9], &[1.0, 1.0]), None);
        assert_eq!(auroc(&[0.1, 0.9], &[0.0, 0.0]), None);
        assert_eq!(auroc(&[0.1, 0.9], &[0.0, NAN]), None);
    }

    #[test]
    fn auprc_sklearn_example() {
        // sklearn docs: y_true = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8]
        // Descending: 0.8(+) 0.4(-) 0.35(+) 0.1(-)
        // thr 0.8 : P = 1/1, R = 1/2 -> (1/2 - 0) * 1   = 0.5
        // thr 0.4 : P = 1/2, R = 1/2 -> 0
        // thr 0.35: P = 2/3, R = 1   -> (1 - 1/2) * 2/3 = 1/3
        // thr 0.1 : P = 2/4, R = 1   -> 0
        // AP = 0.5 + 1/3 = 0.8333...
        let y = [0.0, 0.0, 1.0, 1.0];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!(close(auprc(&s, &y).unwrap(), 5.0 / 6.0));
    }

    #[test]
    fn auprc_with_ties() {
        // scores [0.5, 0.5, 0.5, 0.9], labels [0, 1, 0, 1]
        // thr 0.9: P = 1,   R = 1/2 -> 0.5
        // thr 0.5: the three tied samples enter together: TP = 2, FP = 2
        //          P = 2/4, R = 1   -> (1 - 1/2) * 1/2 = 0.25
        // AP = 0.75 (sklearn average_precision_score agrees)
        let s = [0.5, 0.5, 0.5, 0.9];
        let y = [0.0, 1.0, 0.0, 1.0];
        assert!(close(auprc(&s, &y).unwrap(), 0.75));
    }

    #[test]
    fn auprc_edge_cases() {
        // No positives: undefined.
        assert_eq!(auprc(&[0.1, 0.9], &[0.0, 0.0]), None);
        // No negatives: every precision is 1.
        assert_eq!(auprc(&[0.1, 0.9], &[1.0, 1.0]), Some(1.0));
        // Perfect ranking.
        assert_eq!(
            auprc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]),
            Some(1.0)
        );
    }

    #[test]
    fn nan_labels_skipped_in_classification() {
        // Removing the NaN-labelled entries gives the sklearn example.
        let y = [0.0, NAN, 0.0, 1.0, NAN, 1.0];
        let s = [0.1, 0.99, 0.4, 0.35, 0.0, 0.8];
        assert!(close(auroc(&s, &y).unwrap(), 0.75));
        assert!(close(auprc(&s, &y).unwrap(), 5.0 / 6.0));
        // predicted [0, -, 0, 0, -, 1] vs [0, -, 0, 1, -, 1]: 3/4 correct
        assert!(close(accuracy(&s, &y).unwrap(), 0.75));
        // TNR = 2/2, TPR = 1/2 -> 0.75
        assert!(close(balanced_accuracy(&s, &y).unwrap(), 0.75));
        assert_eq!(accuracy(&[0.3], &[NAN]), None);
    }

    #[test]
    fn nan_scores_poison_result() {
        let y = [0.0, 1.0];
        assert!(auroc(&[NAN, 0.5], &y).unwrap().is_nan());
        assert!(auprc(&[NAN, 0.5], &y).unwrap().is_nan());
        assert!(accuracy(&[NAN, 0.5], &y).unwrap().is_nan());
        assert!(balanced_accuracy(&[NAN, 0.5], &y).unwrap().is_nan());
    }

    /// Deterministic pseudo-random data with many tied scores and labels.
    fn tied_data(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        (0..n)
            .map(|_| ((next() % 7) as f64 / 7.0, (next() % 3 == 0) as u8 as f64))
            .unzip()
    }

    #[test]
    fn auroc_matches_pairwise_definition() {
        for seed in 1..20 {
            let (s, y) = tied_data(60, seed);
            let (mut wins, mut pairs) = (0.0, 0.0);
            for i in (0..s.len()).filter(|&i| y[i] == 1.0) {
                for j in (0..s.len()).filter(|&j| y[j] == 0.0) {
                    pairs += 1.0;
                    wins += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            assert!(close(auroc(&s, &y).unwrap(), wins / pairs), "seed {seed}");
        }
    }

    #[test]
    fn auprc_matches_threshold_definition() {
        for seed in 1..20 {
            let (s, y) = tied_data(60, seed);
            let n_pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
            let mut thresholds = s.clone();
            thresholds.sort_by(|a, b| b.total_cmp(a));
            thresholds.dedup();
            let (mut ap, mut prev_recall) = (0.0, 0.0);
            for t in thresholds {
                let selected: Vec<usize> = (0..s.len()).filter(|&i| s[i] >= t).collect();
                let tp = selected.iter().filter(|&&i| y[i] == 1.0).count() as f64;
                let recall = tp / n_pos;
                ap += (recall - prev_recall) * tp / selected.len() as f64;
                prev_recall = recall;
            }
            assert!(close(auprc(&s, &y).unwrap(), ap), "seed {seed}");
        }
    }

    #[test]
    fn multiclass_by_hand() {
        // 3 classes, 4 rows; argmax = [0, 2, 1, 1] (row 3 ties 1 and 2 -> first)
        // labels            = [0, 1, 1, 2]
        // accuracy = 2/4 (rows 0 and 2)
        // recall: class 0 = 1/1, class 1 = 1/2 (rows 1, 2), class 2 = 0/1
        // balanced accuracy = (1 + 0.5 + 0) / 3 = 0.5
        let probs = [
            0.7, 0.2, 0.1, //
            0.1, 0.3, 0.6, //
            0.2, 0.5, 0.3, //
            0.2, 0.4, 0.4,
        ];
        let labels = [0.0, 1.0, 1.0, 2.0];
        assert!(close(multiclass_accuracy(&probs, &labels, 3).unwrap(), 0.5));
        assert!(close(
            multiclass_balanced_accuracy(&probs, &labels, 3).unwrap(),
            0.5
        ));
        // With row 3's label missing: accuracy 2/3; recalls 1, 1/2 -> 0.75
        let labels = [0.0, 1.0, 1.0, NAN];
        assert!(close(
            multiclass_accuracy(&probs, &labels, 3).unwrap(),
            2.0 / 3.0
        ));
        assert!(close(
            multiclass_balanced_accuracy(&probs, &labels, 3).unwrap(),
            0.75
        ));
        assert_eq!(multiclass_accuracy(&probs, &[NAN; 4], 3), None);
    }

    #[test]
    fn multiclass_nan_scores() {
        let probs = [NAN, 0.5, 0.2, 0.8];
        assert!(multiclass_accuracy(&probs, &[0.0, 1.0], 2)
            .unwrap()
            .is_nan());
        // The NaN row is unlabelled -> ignored.
        assert_eq!(multiclass_accuracy(&probs, &[NAN, 1.0], 2), Some(1.0));
    }

    #[test]
    #[should_panic(expected = "not an integer")]
    fn multiclass_invalid_label_panics() {
        let _ = multiclass_accuracy(&[0.5, 0.5], &[2.0], 2);
    }
}
