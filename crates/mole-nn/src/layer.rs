//! One transformer layer: disentangled attention, then the feed-forward block, each closed by a
//! residual add and a post-LayerNorm.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::attention::{AttentionOutput, AttentionTerms, DisentangledSelfAttention};
use crate::common_init::{layer_norm, linear};
use crate::precision;
use crate::DebertaConfig;

/// `LayerNorm(dropout(dense(x)) + residual)`; used after attention (`BertSelfOutput`) and
/// after the feed-forward (`BertOutput`), which differ only in their input width.
#[derive(Module, Debug)]
pub struct BertOutputBlock<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
    /// The LayerNorm's epsilon (Burn's `LayerNorm` does not expose its own).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

/// The projection closing the attention block (`attention.output` in the original).
pub type BertSelfOutput<B> = BertOutputBlock<B>;
/// The projection closing the feed-forward block (`output` in the original).
pub type BertOutput<B> = BertOutputBlock<B>;

impl<B: Backend> BertOutputBlock<B> {
    pub fn new(d_in: usize, config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            dense: linear(d_in, config.hidden_size, config.initializer_range, device),
            layer_norm: layer_norm(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// `x [batch, seq, d_in]`, `residual [batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        let projected = precision::linear(&self.dense, x);
        // On the CPU backend, dropout, the residual add and the LayerNorm are one operation.
        #[cfg(feature = "flex")]
        let (projected, residual) = match (&self.layer_norm.beta, projected.dtype()) {
            (Some(beta), dtype) if dtype == self.layer_norm.gamma.val().dtype() => {
                let fused = crate::flex_kernels::ResidualLayerNormInput {
                    x: projected,
                    residual,
                    dropout: self.dropout.prob,
                    gamma: self.layer_norm.gamma.val(),
                    beta: beta.val(),
                    eps: self.layer_norm_eps,
                };
                match crate::flex_kernels::residual_layer_norm(fused) {
                    Ok(y) => return y,
                    Err(back) => (back.x, back.residual),
                }
            }
            _ => (projected, residual),
        };
        let projected = crate::dropout(&self.dropout, projected);
        precision::layer_norm(&self.layer_norm, self.layer_norm_eps, projected + residual)
    }
}

/// Feed-forward up-projection with exact (erf) GELU.
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
}

impl<B: Backend> BertIntermediate<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            dense: linear(
                config.hidden_size,
                config.intermediate_size,
                config.initializer_range,
                device,
            ),
        }
    }

    /// `[batch, seq, hidden]` → `[batch, seq, intermediate]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        precision::linear_gelu(&self.dense, x)
    }
}

/// Attention with its output block (`attention` in the original: `self` + `output`).
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attention: DisentangledSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

/// A layer's output and, on request, its attention internals.
pub struct LayerOutput<B: Backend> {
    /// `[batch, seq, hidden]`
    pub hidden: Tensor<B, 3>,
    pub probs: Option<Tensor<B, 4>>,
    pub terms: Option<AttentionTerms<B>>,
}

impl<B: Backend> BertLayer<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            attention: BertAttention {
                self_attention: DisentangledSelfAttention::new(config, device),
                output: BertOutputBlock::new(config.all_head_size(), config, device),
            },
            intermediate: BertIntermediate::new(config, device),
            output: BertOutputBlock::new(config.intermediate_size, config, device),
        }
    }

    /// `hidden [batch, seq, hidden]` → `[batch, seq, hidden]`; see
    /// [`DisentangledSelfAttention::forward`] for the other arguments.
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        attend: Tensor<B, 4, Bool>,
        rel_index: Tensor<B, 4, Int>,
        rel_embeddings: Tensor<B, 2>,
        want_probs: bool,
        want_terms: bool,
    ) -> LayerOutput<B> {
        let AttentionOutput {
            context,
            probs,
            terms,
        } = self.attention.self_attention.forward(
            hidden.clone(),
            attend,
            rel_index,
            rel_embeddings,
            want_probs,
            want_terms,
        );
        let attended = self.attention.output.forward(context, hidden);
        let expanded = self.intermediate.forward(attended.clone());
        let hidden = self.output.forward(expanded, attended);
        LayerOutput {
            hidden,
            probs,
            terms,
        }
    }
}
