//! Building blocks of MolE's DeBERTa encoder, generic over any Burn backend.
//!
//! Module names and parameter layouts follow the original PyTorch code (DeBERTa fork used by
//! MolE) so weights move both ways through [`state`]. Shapes are written `[batch, seq, hidden]`.

pub mod attention;
pub mod common_init;
pub mod config;
pub mod embeddings;
pub mod encoder;
pub mod head;
pub mod layer;
pub mod precision;
pub mod state;

pub use attention::{AttentionTerms, DisentangledSelfAttention};
pub use config::DebertaConfig;
pub use embeddings::BertEmbeddings;
pub use encoder::{AttentionMask, BertEncoder, EncoderOutput, EncoderRequest};
pub use head::TaskPredictionHead;
pub use layer::{BertIntermediate, BertLayer, BertOutput, BertOutputBlock, BertSelfOutput};
pub use state::{HostTensor, StateDict, StateLoader, StateSaver, TorchState};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Parse { path: String, why: String },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("weights do not match the model: missing {missing:?}; unexpected {unexpected:?}; mis-shaped {misshaped:?}")]
    StateDict {
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<String>,
    },
    #[error("export failed: {0}")]
    Export(String),
}
