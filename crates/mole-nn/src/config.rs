//! The DeBERTa configuration of MolE, field for field the original `deberta_config`.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::NnError;

/// Every field of the original `configs/deberta_config/*.yaml` plus the values the original
/// resolves at run time (`vocab_size` = the input vocabulary size, `padding_idx`).
///
/// Loadable from TOML (`configs/*.toml`, table `[model]`) or JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebertaConfig {
    /// Input vocabulary size (identifiers + PAD, MASK, UNK, CLS). The original YAML carries a
    /// placeholder (130505) that MolE overrides with `vocab_size_inp`; here it is the real size.
    /// 0 in a model file means "take it from the vocabulary".
    #[serde(default)]
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Per-head size; `None` means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub attention_head_size: Option<usize>,
    pub intermediate_size: usize,
    /// Only `gelu` (exact erf GELU) is used by MolE.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// MolE has no absolute positions: 0.
    #[serde(default)]
    pub max_position_embeddings: usize,
    /// MolE has no token types: 0.
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub padding_idx: usize,
    #[serde(default = "default_true")]
    pub relative_attention: bool,
    /// Half the number of relative-table rows: the table has `2 * max_relative_positions` rows.
    #[serde(default = "default_max_rel")]
    pub max_relative_positions: usize,
    /// Bucketing of relative positions; MolE uses raw graph distances (0).
    #[serde(default)]
    pub position_buckets: usize,
    /// `|`-separated attention terms beyond content-to-content: `c2p`, `p2c`.
    #[serde(default = "default_pos_att")]
    pub pos_att_type: String,
    #[serde(default = "default_true")]
    pub share_att_key: bool,
    /// `layer_norm` applies a LayerNorm to the relative table; `none` leaves it raw.
    #[serde(default = "default_norm_rel")]
    pub norm_rel_ebd: String,
    #[serde(default)]
    pub position_biased_input: bool,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-7
}
fn default_true() -> bool {
    true
}
fn default_max_rel() -> usize {
    64
}
fn default_pos_att() -> String {
    "p2c|c2p".into()
}
fn default_norm_rel() -> String {
    "layer_norm".into()
}

impl DebertaConfig {
    /// A config with the original `base.yaml` values for the given sizes.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            attention_head_size: None,
            intermediate_size,
            hidden_act: default_act(),
            hidden_dropout_prob: default_dropout(),
            attention_probs_dropout_prob: default_dropout(),
            max_position_embeddings: 0,
            type_vocab_size: 0,
            initializer_range: default_init_range(),
            layer_norm_eps: default_ln_eps(),
            padding_idx: 0,
            relative_attention: true,
            max_relative_positions: default_max_rel(),
            position_buckets: 0,
            pos_att_type: default_pos_att(),
            share_att_key: true,
            norm_rel_ebd: default_norm_rel(),
            position_biased_input: false,
        }
    }

    /// The paper's base model: 12 layers, hidden 768, 12 heads, intermediate 3072.
    pub fn base(vocab_size: usize) -> Self {
        Self::new(vocab_size, 768, 12, 12, 3072)
    }

    /// Per-head size.
    pub fn head_size(&self) -> usize {
        self.attention_head_size
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Total attention width (heads × head size).
    pub fn all_head_size(&self) -> usize {
        self.head_size() * self.num_attention_heads
    }

    /// Rows of the relative-position table.
    pub fn relative_table_size(&self) -> usize {
        2 * self.max_relative_positions
    }

    pub fn uses_c2p(&self) -> bool {
        self.pos_att_type.split('|').any(|t| t.trim() == "c2p")
    }

    pub fn uses_p2c(&self) -> bool {
        self.pos_att_type.split('|').any(|t| t.trim() == "p2c")
    }

    /// The same config with every dropout probability set to `p` (0 for deterministic runs).
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.hidden_dropout_prob = p;
        self.attention_probs_dropout_prob = p;
        self
    }

    /// Rejects configurations this implementation does not support, with the reason.
    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |why: String| Err(NnError::Config(why));
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act `{}` is not supported (only `gelu`)",
                self.hidden_act
            ));
        }
        if !self.relative_attention {
            return bad("relative_attention = false is not supported: MolE relies on it".into());
        }
        if self.position_buckets != 0 {
            return bad("position_buckets > 0 is not supported: MolE uses raw distances".into());
        }
        if self.position_biased_input || self.max_position_embeddings != 0 {
            return bad("absolute position embeddings are not supported: MolE has none".into());
        }
        if self.type_vocab_size != 0 {
            return bad("token-type embeddings are not supported: MolE has none".into());
        }
        if !self.share_att_key {
            return bad("share_att_key = false is not supported".into());
        }
        if !matches!(self.norm_rel_ebd.as_str(), "layer_norm" | "none") {
            return bad(format!(
                "norm_rel_ebd `{}` is not supported",
                self.norm_rel_ebd
            ));
        }
        if self.num_attention_heads == 0 || self.head_size() == 0 {
            return bad("num_attention_heads and head size must be positive".into());
        }
        for t in self.pos_att_type.split('|').map(str::trim) {
            if !t.is_empty() && t != "c2p" && t != "p2c" {
                return bad(format!(
                    "pos_att_type term `{t}` is not supported (c2p, p2c)"
                ));
            }
        }
        Ok(())
    }

    /// Reads a config from a JSON or TOML file (by extension; TOML may hold it under `[model]`).
    pub fn load(path: &Path) -> Result<Self, NnError> {
        let text = std::fs::read_to_string(path).map_err(|e| NnError::Io {
            path: path.display().to_string(),
            error: e,
        })?;
        let parse_err = |why: String| NnError::Parse {
            path: path.display().to_string(),
            why,
        };
        let cfg: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?
        } else {
            let value: toml::Value = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
            let table = value.get("model").cloned().unwrap_or(value);
            table
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
