//! The optimisation settings of a run: the `[train]` table of `mole`'s configuration files.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How a run trains: batches, length, learning rate schedule, Adam, clipping, logging,
/// checkpoints, validation and early stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Molecules per optimiser step (split across devices when data-parallel).
    pub batch_size: usize,
    pub epochs: usize,
    /// Stop after this many steps (0: no limit besides `epochs`).
    pub max_steps: usize,
    /// Learning rate after the warm-up (constant afterwards, as in MolE).
    pub lr: f64,
    /// Share of the run's steps over which the learning rate rises linearly from lr/warm-up to lr.
    pub warmup_fraction: f64,
    /// Global gradient-norm bound (0: no clipping).
    pub grad_clip: f64,
    #[serde(serialize_with = "shortest_f32")]
    pub adam_beta1: f32,
    #[serde(serialize_with = "shortest_f32")]
    pub adam_beta2: f32,
    #[serde(serialize_with = "shortest_f32")]
    pub adam_eps: f32,
    /// Steps between resumable checkpoints (also written at every epoch's end).
    pub checkpoint_every: usize,
    /// Steps between [`crate::TrainEvent::Logged`] reports.
    pub log_every: usize,
    /// Epochs between validations (the last epoch is always validated).
    pub validate_every: usize,
    /// Validations without improvement before stopping (0: never stop early).
    pub early_stopping_patience: usize,
    /// Seeds the initial weights, the batch order, the masking and dropout.
    pub seed: u64,
}

/// An f32 setting written as its shortest decimal (`0.9`; widened to f64 it would print as
/// `0.8999999761581421`); reading it back gives the same f32.
fn shortest_f32<S: serde::Serializer>(x: &f32, s: S) -> std::result::Result<S::Ok, S::Error> {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(*x));
    s.serialize_f64(shortest)
}

impl TrainConfig {
    /// Refuses settings a run cannot use (named as `train.<field>`, as in the config files).
    pub fn validate(&self) -> Result<(), TrainError> {
        let invalid = |why: &str| Err(TrainError::Invalid(why.to_string()));
        if self.batch_size == 0 {
            return invalid("train.batch_size must be at least 1");
        }
        if self.epochs == 0 {
            return invalid("train.epochs must be at least 1");
        }
        // 0 turns clipping off; a negative norm would flip the gradients
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return invalid(&format!(
                "train.grad_clip must be a positive number (0 turns clipping off), not {}",
                self.grad_clip
            ));
        }
        if !(self.adam_eps > 0.0
            && (0.0..1.0).contains(&self.adam_beta1)
            && (0.0..1.0).contains(&self.adam_beta2))
        {
            return invalid(
                "train.adam_beta1 and adam_beta2 must be within [0, 1) and adam_eps positive",
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return invalid("train.lr must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction) {
            return invalid("train.warmup_fraction must be within [0, 1]");
        }
        Ok(())
    }

    /// Steps of linear warm-up in a run of `total_steps` (at least one).
    pub fn warmup_steps(&self, total_steps: usize) -> usize {
        ((self.warmup_fraction * total_steps as f64).round() as usize).max(1)
    }
}
