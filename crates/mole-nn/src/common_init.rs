//! Small constructors shared by the modules: MolE's initialisation is N(0, initializer_range)
//! for weights, zero biases, unit LayerNorms.

use burn::module::{Initializer, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;

pub fn linear<B: Backend>(d_in: usize, d_out: usize, std: f64, device: &B::Device) -> Linear<B> {
    let weight: Param<_> = Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device);
    let bias: Param<_> = Initializer::Zeros.init([d_out], device);
    Linear {
        weight,
        bias: Some(bias),
    }
}

pub fn layer_norm<B: Backend>(d_model: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    // Burn's default epsilon is 1e-5; MolE uses 1e-7 and the difference is visible at 1e-5 tolerance.
    LayerNormConfig::new(d_model).with_epsilon(eps).init(device)
}

pub fn embedding<B: Backend>(n: usize, d: usize, std: f64, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}
