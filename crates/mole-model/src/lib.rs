//! MolE on Burn: the model, its losses, checkpoints and weight exchange with the original.
//!
//! ```text
//! SMILES ─(mole-featurize)→ Batch ─→ BatchTensors ─→ MolE ─→ CLS [batch, hidden]
//!                                                      ├─ prediction_head → [batch, tasks·classes]
//!                                                      └─ atom_env_head   → [masked atoms, targets]
//! ```

pub mod batch;
pub mod checkpoint;
pub mod data_parallel;
#[cfg(feature = "learner")]
pub mod learner;
pub mod loss;
pub mod model;
pub mod objective;
pub mod parity;
pub mod targets;
pub mod training;
pub mod traits;
pub mod zoo;

pub use batch::BatchTensors;
pub use checkpoint::{
    config_and_vocab, encoder_only, export_safetensors, import_safetensors, load_matching,
    load_state_dict, pretrained_encoder, to_state_dict, Checkpoint, CheckpointInfo, NewHeads,
    TrainingStage, UnusedTensors,
};
pub use loss::{MaskedLoss, TaskType};
pub use model::{AtomEnvEmbeddings, AtomEnvHead, AtomEnvHeadConfig, HeadConfig, MolE, MolEConfig};
pub use targets::TargetStandardization;
pub use traits::{CheckpointContents, Encoder, Model};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Nn(#[from] mole_nn::NnError),
    #[error("{path}: {why}")]
    Checkpoint { path: String, why: String },
    /// The model has no head for the objective it was given.
    #[error("{0}")]
    MissingHead(&'static str),
    /// A model (of the `Model` contract) cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
}
