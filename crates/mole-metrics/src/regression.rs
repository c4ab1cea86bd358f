//! Regression metrics: MAE, RMSE, R², Pearson and Spearman correlation.
//!
//! All functions take `(preds, labels)` of equal length, skip pairs whose
//! label is `NaN` and return `None` when the metric is undefined. See the
//! crate documentation for the full conventions.

use crate::ranking::average_ranks;
use crate::Pairs;

/// Mean absolute error, `mean(|pred - label|)`.
///
/// Returns `None` if no label is present.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn mae(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.is_empty() {
        return None;
    }
    let sum: f64 = pairs
        .preds
        .iter()
        .zip(&pairs.labels)
        .map(|(p, y)| (p - y).abs())
        .sum();
    Some(sum / pairs.len() as f64)
}

/// Root mean squared error, `sqrt(mean((pred - label)²))`.
///
/// Returns `None` if no label is present.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn rmse(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.is_empty() {
        return None;
    }
    let sum: f64 = pairs
        .preds
        .iter()
        .zip(&pairs.labels)
        .map(|(p, y)| (p - y) * (p - y))
        .sum();
    Some((sum / pairs.len() as f64).sqrt())
}

/// Coefficient of determination, `R² = 1 - SS_res / SS_tot`, with
/// `SS_res = Σ (label - pred)²` and `SS_tot = Σ (label - mean(label))²`.
///
/// Can be arbitrarily negative for predictions worse than the label mean.
/// Returns `None` if no label is present or the labels are constant
/// (`SS_tot == 0`); scikit-learn would return `1.0`/`0.0` there by
/// convention, we report it as undefined instead.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn r2(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.is_empty() {
        return None;
    }
    let mean = pairs.labels.iter().sum::<f64>() / pairs.len() as f64;
    let ss_tot: f64 = pairs.labels.iter().map(|y| (y - mean) * (y - mean)).sum();
    if ss_tot == 0.0 {
        return None;
    }
    let ss_res: f64 = pairs
        .preds
        .iter()
        .zip(&pairs.labels)
        .map(|(p, y)| (y - p) * (y - p))
        .sum();
    Some(1.0 - ss_res / ss_tot)
}

/// Pearson product-moment correlation between predictions and labels.
///
/// Returns `None` if fewer than two labels are present or either side has
/// zero variance. The result is clamped to `[-1, 1]` against rounding.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn pearson(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.len() < 2 {
        return None;
    }
    if pairs.has_nan_pred {
        // Variance of the labels alone decides definedness.
        return label_variance_nonzero(&pairs.labels).then_some(f64::NAN);
    }
    pearson_unchecked(&pairs.preds, &pairs.labels)
}

/// Spearman rank correlation: the Pearson correlation of the average ranks
/// (ties share the mean of the ranks they span, as in
/// `scipy.stats.spearmanr`).
///
/// Returns `None` if fewer than two labels are present or either side is
/// constant.
///
/// # Panics
///
/// If `preds.len() != labels.len()`.
pub fn spearman(preds: &[f64], labels: &[f64]) -> Option<f64> {
    let pairs = Pairs::new(preds, labels);
    if pairs.len() < 2 {
        return None;
    }
    if pairs.has_nan_pred {
        return label_variance_nonzero(&pairs.labels).then_some(f64::NAN);
    }
    pearson_unchecked(&average_ranks(&pairs.preds), &average_ranks(&pairs.labels))
}

fn label_variance_nonzero(labels: &[f64]) -> bool {
    labels.iter().any(|&y| y != labels[0])
}

/// Pearson correlation of two NaN-free, equally long slices (two-pass,
/// mean-centred for numerical stability).
fn pearson_unchecked(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let mean_x = x.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let dx = a - mean_x;
        let dy = b - mean_y;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    // Keep NaN (from infinite inputs) as NaN; clamp finite rounding overshoot.
    Some(if r.is_nan() { r } else { r.clamp(-1.0, 1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn mae_and_rmse_by_hand() {
        // errors = pred - label = [-1, 0, -2, 4]
        // MAE  = (1 + 0 + 2 + 4) / 4 = 7/4 = 1.75
        // MSE  = (1 + 0 + 4 + 16) / 4 = 21/4 = 5.25, RMSE = sqrt(5.25)
        let preds = [1.0, 2.0, 3.0, 4.0];
        let labels = [2.0, 2.0, 5.0, 0.0];
        assert!(close(mae(&preds, &labels).unwrap(), 1.75));
        assert!(close(rmse(&preds, &labels).unwrap(), 5.25f64.sqrt()));
        assert!(close(rmse(&preds, &labels).unwrap(), 2.291_287_847_477_92));
    }

    #[test]
    fn nan_labels_are_skipped() {
        // Dropping the NaN-labelled pairs leaves the example above.
        let preds = [1.0, 100.0, 2.0, 3.0, -7.0, 4.0];
        let labels = [2.0, NAN, 2.0, 5.0, NAN, 0.0];
        assert!(close(mae(&preds, &labels).unwrap(), 1.75));
        assert!(close(rmse(&preds, &labels).unwrap(), 5.25f64.sqrt()));
    }

    #[test]
    fn empty_or_all_nan_is_undefined() {
        assert_eq!(mae(&[], &[]), None);
        assert_eq!(rmse(&[1.0], &[NAN]), None);
        assert_eq!(r2(&[1.0, 2.0], &[NAN, NAN]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[], &[]), None);
    }

    #[test]
    fn nan_prediction_poisons_result() {
        let preds = [1.0, NAN, 3.0];
        let labels = [1.0, 2.0, 3.0];
        assert!(mae(&preds, &labels).unwrap().is_nan());
        assert!(rmse(&preds, &labels).unwrap().is_nan());
        assert!(r2(&preds, &labels).unwrap().is_nan());
        assert!(pearson(&preds, &labels).unwrap().is_nan());
        assert!(spearman(&preds, &labels).unwrap().is_nan());
        // ... but a NaN prediction with a NaN label is simply skipped.
        assert!(close(mae(&[1.0, NAN], &[1.0, NAN]).unwrap(), 0.0));
    }

    #[test]
    fn r2_perfect_and_negative() {
        assert!(close(r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap(), 1.0));
        // labels [1, 2, 3], mean 2, SS_tot = 1 + 0 + 1 = 2
        // preds  [3, 2, 1],        SS_res = 4 + 0 + 4 = 8
        // R² = 1 - 8/2 = -3
        assert!(close(r2(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), -3.0));
    }

    #[test]
    fn r2_by_hand() {
        // labels [3, -0.5, 2, 7] (sklearn docs), mean = 11.5/4 = 2.875
        // SS_tot = 0.015625 + 11.390625 + 0.765625 + 17.015625 = 29.1875
        // preds  [2.5, 0, 2, 8]: SS_res = 0.25 + 0.25 + 0 + 1 = 1.5
        // R² = 1 - 1.5/29.1875 = 0.948608137...
        let v = r2(&[2.5, 0.0, 2.0, 8.0], &[3.0, -0.5, 2.0, 7.0]).unwrap();
        assert!(close(v, 1.0 - 1.5 / 29.1875));
        assert!((v - 0.948_608_137).abs() < 1e-9);
    }

    #[test]
    fn r2_constant_labels_undefined() {
        assert_eq!(r2(&[1.0, 2.0], &[5.0, 5.0]), None);
    }

    #[test]
    fn pearson_by_hand() {
        // x = [1..5], mean 3, dx = [-2, -1, 0, 1, 2]
        // y = [2, 4, 5, 4, 5], mean 4, dy = [-2, 0, 1, 0, 1]
        // Sxy = 4 + 0 + 0 + 0 + 2 = 6, Sxx = 10, Syy = 4 + 0 + 1 + 0 + 1 = 6
        // r = 6 / sqrt(10 * 6) = sqrt(0.6) = 0.7745966692...
        let r = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 4.0, 5.0]).unwrap();
        assert!(close(r, 0.6f64.sqrt()));
        assert!(close(r, 0.774_596_669_241_483_4));
    }

    #[test]
    fn pearson_perfect_and_anti() {
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(),
            1.0
        ));
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[6.0, 4.0, 2.0]).unwrap(),
            -1.0
        ));
    }

    #[test]
    fn pearson_zero_variance_undefined() {
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]), None);
    }

    #[test]
    fn spearman_with_ties() {
        // preds  [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]
        // labels [1, 2, 3, 4] -> ranks [1, 2, 3, 4]; both rank means = 2.5
        // d_pred = [-1.5, 0, 0, 1.5], d_label = [-1.5, -0.5, 0.5, 1.5]
        // Sxy = 2.25 + 2.25 = 4.5, Sxx = 4.5, Syy = 2.25 + 0.25 + 0.25 + 2.25 = 5
        // rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9) = 0.9486832980...
        // (scipy.stats.spearmanr gives 0.9486832980505138)
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(rho, 0.9f64.sqrt()));
    }

    #[test]
    fn spearman_is_rank_based() {
        // Monotone but nonlinear -> rho = 1 while Pearson < 1.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 10.0, 100.0, 1000.0];
        assert!(close(spearman(&x, &y).unwrap(), 1.0));
        assert!(pearson(&x, &y).unwrap() < 0.99);
        assert!(close(spearman(&x, &[4.0, 3.0, 2.0, 1.0]).unwrap(), -1.0));
    }

    #[test]
    fn spearman_with_nan_labels() {
        // The NaN-labelled pair is dropped before ranking, leaving the ties example.
        let rho = spearman(&[1.0, 9.0, 2.0, 2.0, 3.0], &[1.0, NAN, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(rho, 0.9f64.sqrt()));
    }

    #[test]
    #[should_panic(expected = "same length")]
    fn length_mismatch_panics() {
        let _ = mae(&[1.0, 2.0], &[1.0]);
    }
}
