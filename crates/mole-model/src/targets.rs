//! Regression targets standardised on the training split, as chemprop does: the model learns
//! `(y - mean) / std` per task, so its output layer starts near the right scale instead of
//! spending epochs learning the mean. A saved model predicts original units again: the
//! standardisation is folded into its last layer ([`TargetStandardization::fold_into`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::MolE;

/// Per-task mean and standard deviation of the training labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStandardization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl TargetStandardization {
    /// Mean and (population) standard deviation of each task over the present labels (NaN =
    /// missing); a task without labels, or with one constant value, keeps scale 1.
    pub fn fit<'a>(labels: impl IntoIterator<Item = &'a [f32]>, num_tasks: usize) -> Self {
        let mut sum = vec![0f64; num_tasks];
        let mut sum_sq = vec![0f64; num_tasks];
        let mut count = vec![0usize; num_tasks];
        for row in labels {
            for (t, &y) in row.iter().enumerate().take(num_tasks) {
                if y.is_finite() {
                    sum[t] += f64::from(y);
                    sum_sq[t] += f64::from(y) * f64::from(y);
                    count[t] += 1;
                }
            }
        }
        let mut mean = vec![0f32; num_tasks];
        let mut std = vec![1f32; num_tasks];
        for t in 0..num_tasks {
            if count[t] == 0 {
                continue;
            }
            let m = sum[t] / count[t] as f64;
            let var = (sum_sq[t] / count[t] as f64 - m * m).max(0.0);
            mean[t] = m as f32;
            if var.sqrt() > 1e-8 {
                std[t] = var.sqrt() as f32;
            }
        }
        Self { mean, std }
    }

    /// `(y - mean) / std` for task `task` (NaN stays NaN).
    pub fn standardize(&self, task: usize, y: f32) -> f32 {
        (y - self.mean[task]) / self.std[task]
    }

    /// `y · std + mean`: a standardised prediction in original units.
    pub fn restore(&self, task: usize, y: f32) -> f32 {
        y * self.std[task] + self.mean[task]
    }

    /// The same model predicting original units: the prediction head's last layer scaled by
    /// `std` and shifted by `mean`, task by task. A model without a regression head is
    /// returned unchanged.
    pub fn fold_into<B: Backend>(&self, mut model: MolE<B>) -> MolE<B> {
        if model.classification {
            return model;
        }
        let Some(head) = model.prediction_head.as_mut() else {
            return model;
        };
        let outputs = self.std.len();
        let device = head.classifier.weight.device();
        let std = Tensor::<B, 1>::from_data(TensorData::new(self.std.clone(), [outputs]), &device);
        let mean =
            Tensor::<B, 1>::from_data(TensorData::new(self.mean.clone(), [outputs]), &device);
        // Burn's Linear weight is [in, out]: scale each output column
        let scale = std.clone().reshape([1, outputs]);
        head.classifier.weight = head.classifier.weight.clone().map(|w| w * scale);
        if let Some(bias) = head.classifier.bias.take() {
            head.classifier.bias = Some(bias.map(|b| b * std + mean));
        }
        model
    }
}

#[cfg(test)]
mod tests {
    use super::TargetStandardization;

    #[test]
    fn fit_skips_missing_labels_and_keeps_constant_tasks_unscaled() {
        let rows: Vec<Vec<f32>> = vec![
            vec![1.0, 5.0, f32::NAN],
            vec![3.0, 5.0, f32::NAN],
            vec![f32::NAN, 5.0, f32::NAN],
        ];
        let s = TargetStandardization::fit(rows.iter().map(Vec::as_slice), 3);
        assert_eq!(s.mean, vec![2.0, 5.0, 0.0]);
        assert_eq!(s.std, vec![1.0, 1.0, 1.0]);
        let rows = [vec![0.0f32], vec![4.0]];
        let s = TargetStandardization::fit(rows.iter().map(Vec::as_slice), 1);
        assert_eq!((s.mean[0], s.std[0]), (2.0, 2.0));
        assert_eq!(s.standardize(0, 4.0), 1.0);
        assert_eq!(s.restore(0, 1.0), 4.0);
        assert!(s.standardize(0, f32::NAN).is_nan());
    }
}
