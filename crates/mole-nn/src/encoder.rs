//! The layer stack with the shared relative-position table.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::attention::AttentionTerms;
use crate::common_init::{embedding, layer_norm};
use crate::layer::BertLayer;
use crate::precision;
use crate::DebertaConfig;

/// Which pairs may attend to each other.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// `[batch, seq]`, true for valid tokens; a pair attends when both are valid.
    Tokens(Tensor<B, 2, Bool>),
    /// `[batch, seq(query), seq(key)]`, true where query may attend key (e.g. the pretraining
    /// attention-span mask). Used as given: it must already exclude padding.
    Pairs(Tensor<B, 3, Bool>),
}

impl<B: Backend> AttentionMask<B> {
    /// `[batch, 1, seq, seq]`
    pub fn pairwise(&self) -> Tensor<B, 4, Bool> {
        match self {
            Self::Tokens(m) => {
                let rows = m.clone().unsqueeze_dim::<3>(2); // [b, n, 1]
                let cols = m.clone().unsqueeze_dim::<3>(1); // [b, 1, n]
                let [b, n] = m.dims();
                let both = rows.expand([b, n, n]).bool_and(cols.expand([b, n, n]));
                both.unsqueeze_dim(1)
            }
            Self::Pairs(m) => m.clone().unsqueeze_dim(1),
        }
    }
}

/// What the encoder returns besides the last hidden state, on request.
#[derive(Debug, Clone, Default)]
pub struct EncoderRequest {
    pub all_hidden_states: bool,
    pub attention_probs: bool,
    /// Attention terms of the first layer only (what the parity fixtures record).
    pub first_layer_terms: bool,
    /// Use only the first `n` rows of the relative table: valid when every relative position
    /// in the batch is below `n` (known on the host when the batch is built). Molecules are
    /// far shorter than the 128-row table, so this removes most of the c2p/p2c work; rows
    /// left out would only have received zero gradient.
    pub relative_rows: Option<usize>,
}

pub struct EncoderOutput<B: Backend> {
    /// `[batch, seq, hidden]`
    pub last_hidden: Tensor<B, 3>,
    /// One `[batch, seq, hidden]` per layer when requested.
    pub all_hidden: Vec<Tensor<B, 3>>,
    /// One `[batch, heads, seq, seq]` per layer when requested.
    pub attention_probs: Vec<Tensor<B, 4>>,
    pub first_layer_terms: Option<AttentionTerms<B>>,
    /// `[rows, hidden]`, the normalised relative table.
    pub rel_embeddings: Tensor<B, 2>,
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layers: Vec<BertLayer<B>>,
    /// `[2 * max_relative_positions, hidden]`, shared by every layer.
    pub rel_embeddings: Embedding<B>,
    /// Applied row-wise to the relative table once per forward (`norm_rel_ebd = layer_norm`).
    pub rel_layer_norm: Option<LayerNorm<B>>,
    pub num_heads: usize,
}

impl<B: Backend> BertEncoder<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        Self {
            layers: (0..config.num_hidden_layers)
                .map(|_| BertLayer::new(config, device))
                .collect(),
            rel_embeddings: embedding(
                config.relative_table_size(),
                config.hidden_size,
                config.initializer_range,
                device,
            ),
            rel_layer_norm: (config.norm_rel_ebd == "layer_norm")
                .then(|| layer_norm(config.hidden_size, config.layer_norm_eps, device)),
            num_heads: config.num_attention_heads,
        }
    }

    /// The relative table as the layers see it: `[rows, hidden]`.
    pub fn normalized_rel_embeddings(&self) -> Tensor<B, 2> {
        let table = self.rel_embeddings.weight.val();
        match &self.rel_layer_norm {
            Some(norm) => norm.forward(table),
            None => table,
        }
    }

    /// - `hidden`: `[batch, seq, hidden]` (the embeddings)
    /// - `mask`: which pairs attend
    /// - `relative_pos`: `[batch, seq, seq]`, MolE's distance + 1 (0 for CLS, padding, other
    ///   fragments); clamped to the table.
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        mask: &AttentionMask<B>,
        relative_pos: Tensor<B, 3, Int>,
        request: &EncoderRequest,
    ) -> EncoderOutput<B> {
        let [batch, seq, _] = hidden.dims();
        let table_rows = self.rel_embeddings.weight.dims()[0];
        let rows = request
            .relative_rows
            .map_or(table_rows, |r| r.clamp(1, table_rows));
        let attend = mask.pairwise();
        let rel_index = relative_pos
            .clamp(0, rows as i64 - 1)
            .unsqueeze_dim::<4>(1)
            .expand([batch, self.num_heads, seq, seq]);
        // The table is normalised in f32 and enters the layers in the activations' dtype.
        let mut rel_embeddings =
            precision::cast_to(self.normalized_rel_embeddings(), hidden.dtype());
        if rows < table_rows {
            let hidden_size = rel_embeddings.dims()[1];
            rel_embeddings = rel_embeddings.slice([0..rows, 0..hidden_size]);
        }

        let mut out = EncoderOutput {
            last_hidden: hidden,
            all_hidden: Vec::new(),
            attention_probs: Vec::new(),
            first_layer_terms: None,
            rel_embeddings: rel_embeddings.clone(),
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let step = layer.forward(
                out.last_hidden,
                attend.clone(),
                rel_index.clone(),
                rel_embeddings.clone(),
                request.attention_probs,
                request.first_layer_terms && l == 0,
            );
            out.last_hidden = step.hidden;
            if request.all_hidden_states {
                out.all_hidden.push(out.last_hidden.clone());
            }
            if let Some(p) = step.probs {
                out.attention_probs.push(p);
            }
            if step.terms.is_some() {
                out.first_layer_terms = step.terms;
            }
        }
        out
    }
}
