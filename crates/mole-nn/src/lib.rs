//! Building blocks of MolE's DeBERTa encoder, generic over any Burn backend.
//!
//! Module names and parameter layouts follow the original PyTorch code (DeBERTa fork used by
//! MolE) so weights move both ways through [`state`]. Shapes are written `[batch, seq, hidden]`.

pub mod attention;
pub mod common_init;
pub mod config;
pub mod embeddings;
pub mod encoder;
#[cfg(feature = "flex")]
pub mod flex_kernels;
pub mod head;
pub mod layer;
pub mod precision;
pub mod state;
pub mod torch_file;

pub use attention::{AttentionTerms, DisentangledSelfAttention};
pub use config::DebertaConfig;
pub use embeddings::BertEmbeddings;
pub use encoder::{AttentionMask, BertEncoder, EncoderOutput, EncoderRequest};
pub use head::TaskPredictionHead;
pub use layer::{BertIntermediate, BertLayer, BertOutput, BertOutputBlock, BertSelfOutput};
pub use state::{load_torch_state, to_torch_state, HostTensor, StateDict, TorchNames};
pub use torch_file::TorchFile;

/// `dropout.forward(x)`, with the Flex backend's fast mask (see [`flex_kernels::dropout`]) when
/// the crate is built with feature `flex`.
pub fn dropout<B: burn::tensor::backend::Backend, const D: usize>(
    dropout: &burn::nn::Dropout,
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex_kernels::dropout(x, dropout.prob) {
        Ok(y) => return y,
        Err(x) => x,
    };
    dropout.forward(x)
}

/// Exact (erf) GELU; with feature `flex`, one parallel operation on the CPU backend (see
/// [`flex_kernels::gelu`]).
pub fn gelu<B: burn::tensor::backend::Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex_kernels::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// The I/O error is part of the message (not a separate source), so that printing the
    /// error chain does not repeat it.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
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
