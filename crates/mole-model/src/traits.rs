//! The contracts other code programs against.

use burn::tensor::{backend::Backend, Tensor};
use mole_metrics::{MetricsCollection, TaskKind};

use crate::batch::BatchTensors;
use crate::model::MolE;

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

/// One supervised batch: inputs plus labels `[batch, num_tasks]` (NaN = missing) and optional
/// per-entry loss weights.
#[derive(Debug, Clone)]
pub struct LabelledBatch<B: Backend> {
    pub inputs: BatchTensors<B>,
    pub labels: Tensor<B, 2>,
    pub weights: Option<Tensor<B, 2>>,
}

/// What a step returns: the loss to minimise, the predictions (probabilities for
/// classification) and the labels they are scored against, ready for a metrics update.
pub struct StepOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub predictions: Tensor<B, 2>,
    pub labels: Tensor<B, 2>,
}

/// The original Lightning module's `training_step` / `validation_step` / metrics contract.
/// Dropout is active when the backend is an autodiff backend (training) and off on the inner
/// backend. A step's predictions and labels feed the collection from [`Model::metrics`]
/// (`update` per batch, `compute` per epoch, `reset`), as the original's `MetricsDict` does.
pub trait Model<B: Backend> {
    type Batch;
    fn training_step(&self, batch: &Self::Batch) -> StepOutput<B>;
    fn validation_step(&self, batch: &Self::Batch) -> StepOutput<B>;
    /// A fresh metrics collection for this model's tasks.
    fn metrics(&self) -> MetricsCollection;
}

impl<B: Backend> StepOutput<B> {
    /// Adds this step's predictions and labels to `metrics` (reads them back to the host).
    pub fn update_metrics(&self, metrics: &mut MetricsCollection) {
        let to_vec = |t: Tensor<B, 2>| -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .into_vec()
                .unwrap_or_default()
        };
        metrics.update(
            &to_vec(self.predictions.clone()),
            &to_vec(self.labels.clone()),
        );
    }
}

impl<B: Backend> Model<B> for MolE<B> {
    type Batch = LabelledBatch<B>;

    fn training_step(&self, batch: &Self::Batch) -> StepOutput<B> {
        let out = self.forward_supervised(
            &batch.inputs,
            Some(batch.labels.clone()),
            batch.weights.clone(),
        );
        let loss = out.loss.expect("labels were given").loss;
        StepOutput {
            loss,
            predictions: self.predictions(out.logits),
            labels: batch.labels.clone(),
        }
    }

    fn metrics(&self) -> MetricsCollection {
        let kind = if !self.classification {
            TaskKind::Regression
        } else if self.num_classes == 1 {
            TaskKind::BinaryClassification
        } else {
            TaskKind::MulticlassClassification {
                num_classes: self.num_classes,
            }
        };
        MetricsCollection::new(kind, self.num_tasks.max(1))
    }

    fn validation_step(&self, batch: &Self::Batch) -> StepOutput<B> {
        // Validation is scored without loss weights, as the original does.
        let out = self.forward_supervised(&batch.inputs, Some(batch.labels.clone()), None);
        let loss = out.loss.expect("labels were given").loss;
        StepOutput {
            loss,
            predictions: self.predictions(out.logits),
            labels: batch.labels.clone(),
        }
    }
}
