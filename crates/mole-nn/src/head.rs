//! Prediction heads on the CLS state.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{backend::Backend, Tensor};

use crate::common_init::linear;
use crate::precision;

/// The original `TaskPredictionHead`: dropout → dense → GELU → dropout → classifier.
#[derive(Module, Debug)]
pub struct TaskPredictionHead<B: Backend> {
    pub dense: Linear<B>,
    pub classifier: Linear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> TaskPredictionHead<B> {
    /// `outputs` = num_tasks × num_classes.
    pub fn new(
        hidden: usize,
        outputs: usize,
        dropout: f64,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            dense: linear(hidden, hidden, init_std, device),
            classifier: linear(hidden, outputs, init_std, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `[batch, hidden]` → `[batch, outputs]`
    pub fn forward(&self, cls: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = self.dropout.forward(cls);
        let x = precision::linear_gelu(&self.dense, x);
        let x = self.dropout.forward(x);
        precision::linear(&self.classifier, x)
    }
}
