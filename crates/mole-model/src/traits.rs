//! The contracts other code programs against: [`Encoder`] (a batch of molecules → one vector
//! each; what `mole embed` calls) and [`Model`] (what training needs: pretraining and
//! fine-tuning both go through [`Model::loss`]; `mole_train::train` is generic over it).

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};
use mole_featurize::Vocabulary;
use mole_nn::StateDict;
use serde::Serialize;

use crate::batch::BatchTensors;
use crate::checkpoint::{Checkpoint, CheckpointInfo, UnusedTensors};
use crate::model::{MolE, MolEConfig};
use crate::objective::{BatchLoss, HostBatch};
use crate::targets::TargetStandardization;
use crate::ModelError;

/// Anything that turns a batch of molecules into one vector per molecule.
pub trait Encoder<B: Backend> {
    /// `[batch, embedding_dim]`
    fn encode(&self, batch: &BatchTensors<B>) -> Tensor<B, 2>;
    fn embedding_dim(&self) -> usize;
}

impl<B: Backend> Encoder<B> for MolE<B> {
    fn encode(&self, batch: &BatchTensors<B>) -> Tensor<B, 2> {
        self.embed(batch)
    }

    fn embedding_dim(&self) -> usize {
        self.mole.embeddings.word_embeddings.weight.dims()[1]
    }
}

/// What a checkpoint written during training holds besides the weights.
pub struct CheckpointContents<'a, C> {
    pub config: &'a C,
    pub vocab: &'a Vocabulary,
    /// Pretraining: the radius-2 environments the atom-environment head predicts.
    pub target_vocab: Option<&'a Vocabulary>,
    /// Regression targets the model learnt standardised: a saved model should predict
    /// original units again.
    pub standardization: Option<&'a TargetStandardization>,
    pub info: CheckpointInfo,
}

/// The training contract: a model MolE's objectives can train. Both pretraining (masked atom
/// environments, [`HostBatch::AtomEnv`]) and fine-tuning ([`HostBatch::Supervised`]) go
/// through [`Model::loss`]; `mole_train::train` and `mole_train::evaluate` are generic over it
/// (MolE implements it; so can a Burn user's own model of MolE's batches), and MolE's
/// burn-train `TrainStep` (feature `learner`) calls it too.
pub trait Model<B: Backend>: Module<B> + Sized {
    /// The architecture. A run records it, so that resuming into a model of another shape is
    /// refused with a message.
    type Config: Clone + Serialize + Send + Sync;

    /// A new model, its weights drawn from the backend's RNG.
    fn init(config: &Self::Config, device: &B::Device) -> Self;

    /// Forward pass and loss of one prepared batch on `device` (the tensors stay there). An
    /// objective the model has no head for is an error.
    fn loss(&self, batch: HostBatch, device: &B::Device) -> Result<BatchLoss<B>, ModelError>;

    /// The model with those tensors of `weights` that it has loaded, e.g. a pretrained encoder
    /// under a new head; returns the names it does not have. A tensor it has under another
    /// shape is an error.
    fn load_matching(
        self,
        weights: &StateDict,
        device: &B::Device,
    ) -> Result<(Self, UnusedTensors), ModelError>;

    /// The file extension of [`Model::save_checkpoint`]'s files: a run's best and last weights
    /// are `best.<extension>` and `last.<extension>`.
    const CHECKPOINT_EXTENSION: &'static str = "safetensors";

    /// Writes the model to `path` as a checkpoint (a run's best and last weights).
    fn save_checkpoint(
        self,
        path: &Path,
        contents: CheckpointContents<'_, Self::Config>,
    ) -> Result<(), ModelError>;

    /// The model computing in `dtype` (mixed precision); parameters stay as they are. Models
    /// without mixed precision keep computing in the parameters' dtype.
    fn with_compute_dtype(self, _dtype: Option<DType>) -> Self {
        self
    }
}

impl<B: Backend> Model<B> for MolE<B> {
    type Config = MolEConfig;

    fn init(config: &MolEConfig, device: &B::Device) -> Self {
        MolE::new(config, device)
    }

    fn loss(&self, batch: HostBatch, device: &B::Device) -> Result<BatchLoss<B>, ModelError> {
        let count = batch.loss_count();
        match batch {
            HostBatch::AtomEnv { batch, masked } => {
                if self.atom_env_head.is_none() {
                    return Err(ModelError::MissingHead(
                        "a pretraining batch needs a model with an atom-environment head",
                    ));
                }
                let (b, n) = (batch.batch_size, batch.seq_len);
                let mut tensors = BatchTensors::<B>::from_batch(&batch, device);
                tensors.input_ids =
                    Tensor::from_data(TensorData::new(masked.input_ids, [b, n]), device);
                let span_mask: Tensor<B, 3, Bool> =
                    Tensor::from_data(TensorData::new(masked.span_mask, [b, n, n]), device);
                let m = masked.positions.len();
                let positions: Tensor<B, 1, Int> =
                    Tensor::from_data(TensorData::new(masked.positions, [m]), device);
                let targets: Tensor<B, 1, Int> =
                    Tensor::from_data(TensorData::new(masked.targets, [m]), device);
                let (logits, loss) =
                    self.forward_atom_env(&tensors, span_mask, positions, targets.clone());
                let correct = logits.argmax(1).reshape([m]).equal(targets).float().sum();
                Ok(BatchLoss {
                    loss,
                    correct: Some(correct),
                    count,
                    predictions: None,
                })
            }
            HostBatch::Supervised {
                batch,
                labels,
                weights,
                num_tasks,
            } => {
                if self.prediction_head.is_none() {
                    return Err(ModelError::MissingHead(
                        "a supervised batch needs a model with a prediction head",
                    ));
                }
                let rows = batch.batch_size;
                let tensors = BatchTensors::<B>::from_batch(&batch, device);
                let labels = Tensor::from_data(TensorData::new(labels, [rows, num_tasks]), device);
                let weights = weights
                    .map(|w| Tensor::from_data(TensorData::new(w, [rows, num_tasks]), device));
                let logits = self.forward_supervised(&tensors, None, None).logits;
                let loss = self.supervised_loss(logits.clone(), labels, weights).loss;
                Ok(BatchLoss {
                    loss,
                    correct: None,
                    count,
                    predictions: Some(self.predictions(logits)),
                })
            }
        }
    }

    fn load_matching(
        self,
        weights: &StateDict,
        _device: &B::Device,
    ) -> Result<(Self, UnusedTensors), ModelError> {
        crate::checkpoint::load_matching(self, weights)
    }

    fn save_checkpoint(
        self,
        path: &Path,
        contents: CheckpointContents<'_, MolEConfig>,
    ) -> Result<(), ModelError> {
        let model = match contents.standardization {
            Some(s) => s.fold_into(self),
            None => self,
        };
        Checkpoint {
            config: contents.config.clone(),
            model,
            vocab: contents.vocab.clone(),
            target_vocab: contents.target_vocab.cloned(),
            info: contents.info,
        }
        .save(path)
    }

    fn with_compute_dtype(self, dtype: Option<DType>) -> Self {
        MolE::with_compute_dtype(self, dtype)
    }
}
