//! Token embeddings: look-up, LayerNorm, padding mask, dropout.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::common_init::{embedding, layer_norm};
use crate::DebertaConfig;

/// DeBERTa's `BertEmbeddings` as MolE configures it: no absolute positions, no token types,
/// embedding size = hidden size.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            word_embeddings: embedding(
                config.vocab_size,
                config.hidden_size,
                config.initializer_range,
                device,
            ),
            layer_norm: layer_norm(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `input_ids [batch, seq]`, `input_mask [batch, seq]` (1.0 valid, 0.0 padding)
    /// → `[batch, seq, hidden]`, exactly zero at padded positions (before dropout).
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, input_mask: Tensor<B, 2>) -> Tensor<B, 3> {
        let embedded = self
            .layer_norm
            .forward(self.word_embeddings.forward(input_ids));
        let masked = embedded * input_mask.unsqueeze_dim::<3>(2);
        crate::dropout(&self.dropout, masked)
    }
}
