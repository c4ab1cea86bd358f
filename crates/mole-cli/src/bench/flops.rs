//! Model FLOPs per forward pass, split by part (dense layers, attention, relative table).

use super::*;

/// Forward matmul FLOPs per molecule by kind (see [`forward_flop_split`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FlopSplit {
    /// Q/K/V/O projections of the tokens.
    pub projections: f64,
    pub feed_forward: f64,
    /// Content scores q·kᵀ and the context probs·v.
    pub content_attention: f64,
    /// c2p and p2c: q·K_rᵀ and k·Q_rᵀ against the whole relative table.
    pub relative_attention: f64,
    /// Key/query projections of the relative table (once per batch, shared by its molecules).
    pub relative_table: f64,
    /// The supervised head on the CLS state.
    pub head: f64,
}

impl FlopSplit {
    pub fn total(&self) -> f64 {
        self.projections
            + self.feed_forward
            + self.content_attention
            + self.relative_attention
            + self.relative_table
            + self.head
    }

    pub(super) fn add_scaled(self, o: FlopSplit, k: f64) -> FlopSplit {
        FlopSplit {
            projections: self.projections + k * o.projections,
            feed_forward: self.feed_forward + k * o.feed_forward,
            content_attention: self.content_attention + k * o.content_attention,
            relative_attention: self.relative_attention + k * o.relative_attention,
            relative_table: self.relative_table + k * o.relative_table,
            head: self.head + k * o.head,
        }
    }
}

/// Matmul FLOPs (2 per multiply-add) of one forward pass, per molecule, for a batch of
/// `batch` molecules padded to `seq` tokens, with a head of `outputs` outputs. Per layer and
/// molecule: Q/K/V/O projections `4·2·n·h·a`, feed-forward `2·2·n·h·f`, content scores and
/// context `2·2·n²·a`, c2p/p2c `2·n·R·a` each (q·K_rᵀ against the `R` table rows the batch
/// uses: its largest relative position + 1, at most the whole table); per layer and batch: the
/// table's key/query projections `2·R·h·a` each. Head: `2·h·h + 2·h·out`.
/// Element-wise work (softmax, LayerNorm, GELU, gathers) is not counted.
pub fn forward_flop_split(
    cfg: &DebertaConfig,
    seq: usize,
    batch: usize,
    outputs: usize,
    rows_used: usize,
) -> FlopSplit {
    let n = seq as f64;
    let h = cfg.hidden_size as f64;
    let a = cfg.all_head_size() as f64;
    let f = cfg.intermediate_size as f64;
    let r = rows_used.clamp(1, cfg.relative_table_size()) as f64;
    let l = cfg.num_hidden_layers as f64;
    let pos_terms = f64::from(u8::from(cfg.uses_c2p()) + u8::from(cfg.uses_p2c()));
    FlopSplit {
        projections: l * 8.0 * n * h * a,
        feed_forward: l * 4.0 * n * h * f,
        content_attention: l * 4.0 * n * n * a,
        relative_attention: l * pos_terms * 2.0 * n * r * a,
        relative_table: l * pos_terms * 2.0 * r * h * a / batch.max(1) as f64,
        head: 2.0 * h * h + 2.0 * h * outputs as f64,
    }
}

/// Relative-table rows the encoder uses for `batch` (see `EncoderRequest::relative_rows`).
pub(super) fn table_rows(batch: &mole_featurize::Batch) -> usize {
    batch.relative_pos.iter().copied().max().unwrap_or(0).max(0) as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_of_base_are_plausible() {
        let cfg = DebertaConfig::base(200);
        // ~85 M parameters, 26 tokens: about 2 · 85e6 · 26 ≈ 4.4 GFLOP plus attention.
        let g = forward_flop_split(&cfg, 26, 32, 1, 128).total() / 1e9;
        assert!((4.0..6.0).contains(&g), "{g}");
        // Larger batches share the relative-table projections.
        assert!(
            forward_flop_split(&cfg, 26, 64, 1, 128).total()
                < forward_flop_split(&cfg, 26, 32, 1, 128).total()
        );
    }
}
