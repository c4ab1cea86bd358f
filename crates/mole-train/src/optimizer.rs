//! The trainer's optimiser update: global-norm gradient clipping, then Adam with the
//! original's epsilon (fused on Burn's Flex CPU backend).

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer as _};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use mole_model::training::{clip_global_norm, FusedAdam};
use mole_model::MolE;

use crate::TrainConfig;

/// Burn's Adam optimiser over a model (MolE unless said otherwise), as the trainer builds it.
pub type AdamOptimizer<B, M = MolE<B>> = OptimizerAdaptor<FusedAdam, M, B>;

/// The Adam state of [`AdamOptimizer`], as resumable checkpoints save it.
pub type AdamRecord<B, M = MolE<B>> = <AdamOptimizer<B, M> as burn::optim::Optimizer<M, B>>::Record;

/// Gradients, clipping and Adam as the trainer applies them; `mole bench` times the same
/// calls phase by phase. A clone continues from the same Adam state (data-parallel replicas).
#[derive(Clone)]
pub struct Optimizer<B: AutodiffBackend, M: AutodiffModule<B> = MolE<B>> {
    adam: AdamOptimizer<B, M>,
    grad_clip: f64,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Optimizer<B, M> {
    /// Adam with `config`'s betas and epsilon, clipping at `config.grad_clip` (0: none).
    pub fn new(config: &TrainConfig) -> Self {
        Self::adam(
            config.adam_beta1,
            config.adam_beta2,
            config.adam_eps,
            config.grad_clip,
        )
    }

    /// Adam with these betas and epsilon, clipping at global norm `grad_clip` (0: none).
    pub fn adam(beta_1: f32, beta_2: f32, epsilon: f32, grad_clip: f64) -> Self {
        Self {
            adam: FusedAdam::new(beta_1, beta_2, epsilon).init(),
            grad_clip,
        }
    }

    /// The backward pass of `loss` through `model`: its parameters' gradients.
    pub fn gradients(loss: Tensor<B, 1>, model: &M) -> GradientsParams {
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// Scales `grads` down to the configured global norm when above it.
    pub fn clip(&self, model: &M, grads: GradientsParams) -> GradientsParams {
        // train.grad_clip = 0 turns clipping off (settings refuse negative norms)
        if self.grad_clip > 0.0 {
            clip_global_norm(model, grads, self.grad_clip)
        } else {
            grads
        }
    }

    /// One Adam update of `model` with (already clipped) `grads` at learning rate `lr`.
    pub fn update(&mut self, model: M, grads: GradientsParams, lr: f64) -> M {
        self.adam.step(lr, model, grads)
    }

    /// A whole step: backward, clipping, Adam.
    pub fn step(&mut self, model: M, loss: Tensor<B, 1>, lr: f64) -> M {
        let grads = Self::gradients(loss, &model);
        let grads = self.clip(&model, grads);
        self.update(model, grads, lr)
    }

    /// The Adam state, for a resumable checkpoint.
    pub fn to_record(&self) -> AdamRecord<B, M> {
        self.adam.to_record()
    }

    /// Continues from a saved Adam state.
    pub fn load_record(mut self, record: AdamRecord<B, M>) -> Self {
        self.adam = self.adam.load_record(record);
        self
    }
}
