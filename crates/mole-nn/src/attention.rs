//! DeBERTa's disentangled self-attention over graph distances.
//!
//! Attention logits are the sum of a content term `q·k`, a content-to-position term
//! `q·K_r[δ(i,j)]` and a position-to-content term `k_j·Q_r[δ(j,i)]`, where `δ` is the clamped
//! relative position (MolE: topological distance + 1) and `K_r`, `Q_r` are the shared relative
//! table projected by the same key/query projections (`share_att_key`). The position terms are
//! computed against the whole relative table and then gathered, so no per-pair embedding tensor
//! is ever materialised.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};

pub use crate::precision::to_f32;
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::common_init::linear;
use crate::precision;
use crate::DebertaConfig;

/// Everything the attention computes besides its output, for inspection and parity tests.
#[derive(Debug, Clone)]
pub struct AttentionTerms<B: Backend> {
    /// `[batch, heads, seq, seq]`, already divided by the scale.
    pub content: Tensor<B, 4>,
    pub c2p: Option<Tensor<B, 4>>,
    pub p2c: Option<Tensor<B, 4>>,
}

#[derive(Module, Debug)]
pub struct DisentangledSelfAttention<B: Backend> {
    pub query_proj: Linear<B>,
    pub key_proj: Linear<B>,
    pub value_proj: Linear<B>,
    pub dropout: Dropout,
    pub pos_dropout: Dropout,
    pub num_heads: usize,
    pub head_size: usize,
    pub c2p: bool,
    pub p2c: bool,
}

/// Output of one attention call.
pub struct AttentionOutput<B: Backend> {
    /// `[batch, seq, heads * head_size]`
    pub context: Tensor<B, 3>,
    /// `[batch, heads, seq, seq]` when requested.
    pub probs: Option<Tensor<B, 4>>,
    /// The three logit terms when requested.
    pub terms: Option<AttentionTerms<B>>,
}

impl<B: Backend> DisentangledSelfAttention<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let a = config.all_head_size();
        let std = config.initializer_range;
        Self {
            query_proj: linear(h, a, std, device),
            key_proj: linear(h, a, std, device),
            value_proj: linear(h, a, std, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            pos_dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            head_size: config.head_size(),
            c2p: config.uses_c2p(),
            p2c: config.uses_p2c(),
        }
    }

    /// `[batch, seq, heads*d]` → `[batch, heads, seq, d]`
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, n, _] = x.dims();
        x.reshape([b, n, self.num_heads, self.head_size])
            .swap_dims(1, 2)
    }

    /// - `hidden`: `[batch, seq, hidden]`
    /// - `attend`: `[batch, 1 | heads, seq, seq]`, true where query i may attend key j
    /// - `rel_index`: `[batch, heads, seq, seq]`, relative-table row of each pair (already clamped)
    /// - `rel_embeddings`: `[rows, hidden]`, the (normalised) shared relative table
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        attend: Tensor<B, 4, Bool>,
        rel_index: Tensor<B, 4, Int>,
        rel_embeddings: Tensor<B, 2>,
        want_probs: bool,
        want_terms: bool,
    ) -> AttentionOutput<B> {
        let [batch, seq, _] = hidden.dims();
        let q = precision::linear(&self.query_proj, hidden.clone());
        let k = precision::linear(&self.key_proj, hidden.clone());
        let v = precision::linear(&self.value_proj, hidden);
        let rel = crate::dropout(&self.pos_dropout, rel_embeddings);

        // On the CPU backend everything after the projections is one fused operation (see
        // `flex_kernels`); it hands its inputs back where it does not apply.
        #[cfg(feature = "flex")]
        let (q, k, v, attend, rel_index) = if want_probs || want_terms || !(self.c2p && self.p2c) {
            (q, k, v, attend, rel_index)
        } else {
            let fused = crate::flex_kernels::FusedAttentionInput {
                pos_key: precision::linear(&self.key_proj, rel.clone()),
                pos_query: precision::linear(&self.query_proj, rel.clone()),
                query: q,
                key: k,
                value: v,
                attend,
                rel_index,
                num_heads: self.num_heads,
                dropout: self.dropout.prob,
            };
            match crate::flex_kernels::attention(fused) {
                Ok(context) => {
                    return AttentionOutput {
                        context,
                        probs: None,
                        terms: None,
                    }
                }
                Err(back) => (
                    back.query,
                    back.key,
                    back.value,
                    back.attend,
                    back.rel_index,
                ),
            }
        };
        let q = self.split_heads(q);
        let k = self.split_heads(k);
        let v = self.split_heads(v);

        let n_terms = 1 + usize::from(self.c2p) + usize::from(self.p2c);
        let scale = ((self.head_size * n_terms) as f64).sqrt();
        let content = q.clone().matmul(k.clone().swap_dims(2, 3)) / scale;

        let rows = rel.dims()[0];
        // [rows, hidden] → [1, heads, rows, d]: the table seen through each head.
        let per_head = |x: Tensor<B, 2>| {
            x.reshape([1, rows, self.num_heads, self.head_size])
                .swap_dims(1, 2)
        };

        let c2p = self.c2p.then(|| {
            let pos_key = per_head(precision::linear(&self.key_proj, rel.clone()));
            let all = q.clone().matmul(pos_key.swap_dims(2, 3)); // [batch, heads, seq, rows]
            all.gather(3, rel_index.clone()) / scale
        });
        let p2c = self.p2c.then(|| {
            let pos_query = per_head(precision::linear(&self.query_proj, rel.clone()));
            // all[b,h,j,r] = k_j·Q_r; gathering row j at δ(j,i) then transposing gives [b,h,i,j].
            let all = k.clone().matmul(pos_query.swap_dims(2, 3));
            all.gather(3, rel_index.clone()).swap_dims(2, 3) / scale
        });

        let mut logits = content.clone();
        if let Some(t) = &c2p {
            logits = logits + t.clone();
        }
        if let Some(t) = &p2c {
            logits = logits + t.clone();
        }

        let blocked = attend.bool_not().expand([batch, self.num_heads, seq, seq]);
        // A fully blocked row (a padded query) softmaxes to uniform and is then zeroed, as the
        // original XSoftmax does; its output never reaches a valid position.
        // The softmax runs in f32 whatever the compute precision, as under PyTorch autocast.
        let compute_dtype = logits.dtype();
        let logits = to_f32(logits);
        let probs = softmax(logits.mask_fill(blocked.clone(), f32::MIN), 3).mask_fill(blocked, 0.0);
        let dropped = crate::dropout(&self.dropout, probs.clone());
        let dropped = precision::cast_to(dropped, compute_dtype);
        let context = dropped.matmul(v).swap_dims(1, 2).reshape([
            batch,
            seq,
            self.num_heads * self.head_size,
        ]);

        AttentionOutput {
            context,
            probs: want_probs.then_some(probs),
            terms: want_terms.then_some(AttentionTerms { content, c2p, p2c }),
        }
    }
}
