//! Validation and test passes: the mean loss and the objective's metrics in eval mode.

use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use mole_featurize::Vocabulary;
use mole_metrics::MetricsCollection;
use mole_model::objective::{Example, HostBatch, Objective};
use mole_model::{Model, ModelError};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::sequential_batches;

/// Evaluates `examples` in eval mode (no dropout): mean loss, and either masked-token accuracy
/// (pretraining, with a fixed masking seed) or the task metrics.
pub fn evaluate<B: Backend, M: Model<B>>(
    model: &M,
    examples: &[Example],
    objective: &Objective,
    vocab: &Vocabulary,
    batch_size: usize,
    seed: u64,
    device: &B::Device,
) -> Result<serde_json::Value, ModelError> {
    let mut evaluator = Evaluator::new(objective, seed);
    evaluator.add(model, examples, vocab, batch_size, device)?;
    Ok(evaluator.finish())
}

/// Evaluation over examples that arrive in parts (a streamed test set): the loss, masked
/// accuracy and task metrics of all parts together.
pub struct Evaluator<'a> {
    objective: &'a Objective,
    rng: StdRng,
    loss_sum: f64,
    weight_sum: f64,
    correct: f64,
    masked: usize,
    metrics: Option<MetricsCollection>,
    examples: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(objective: &'a Objective, seed: u64) -> Self {
        let metrics = match objective {
            Objective::Supervised {
                kind, num_tasks, ..
            } => Some(MetricsCollection::new(*kind, *num_tasks)),
            Objective::AtomEnv { .. } => None,
        };
        Self {
            objective,
            rng: StdRng::seed_from_u64(seed ^ 0x5EED),
            loss_sum: 0.0,
            weight_sum: 0.0,
            correct: 0.0,
            masked: 0,
            metrics,
            examples: 0,
        }
    }

    /// Evaluates `examples` and returns the model's outputs for them (supervised objectives:
    /// row-major, original units; empty for pretraining).
    pub fn add<B: Backend, M: Model<B>>(
        &mut self,
        model: &M,
        examples: &[Example],
        vocab: &Vocabulary,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Vec<f32>, ModelError> {
        let objective = self.objective;
        let mut all_predictions = Vec::new();
        self.examples += examples.len();
        for idx in sequential_batches(examples.len(), batch_size) {
            let batch: Vec<&Example> = idx.iter().map(|&i| &examples[i]).collect();
            let prepared = HostBatch::prepare(&batch, objective, vocab, &mut self.rng);
            let out = model.loss(prepared, device)?;
            let l: f32 = out.loss.into_scalar().elem();
            self.loss_sum += f64::from(l) * out.count as f64;
            self.weight_sum += out.count as f64;
            if let Some(c) = out.correct {
                self.correct += c.into_scalar().elem::<f64>();
                self.masked += out.count;
            }
            if let (Some(m), Some(p)) = (self.metrics.as_mut(), out.predictions) {
                let mut preds: Vec<f32> = p
                    .into_data()
                    .convert::<f32>()
                    .into_vec()
                    .unwrap_or_default();
                if let Objective::Supervised {
                    standardization: Some(s),
                    num_tasks,
                    ..
                } = objective
                {
                    for (k, y) in preds.iter_mut().enumerate() {
                        *y = s.restore(k % num_tasks, *y);
                    }
                }
                let labels: Vec<f32> = batch
                    .iter()
                    .flat_map(|e| e.labels.iter().copied())
                    .collect();
                m.update(&preds, &labels);
                all_predictions.extend_from_slice(&preds);
            }
        }
        Ok(all_predictions)
    }

    /// Molecules evaluated so far.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The metrics of everything added.
    pub fn finish(self) -> serde_json::Value {
        let mut out = serde_json::json!({ "loss": self.loss_sum / self.weight_sum.max(1.0) });
        if self.masked > 0 {
            out["masked_accuracy"] = serde_json::json!(self.correct / self.masked as f64);
        }
        if let Some(m) = self.metrics {
            for (k, v) in m.compute() {
                out[k] = if v.is_finite() {
                    serde_json::json!(v)
                } else {
                    serde_json::Value::Null
                };
            }
        }
        out
    }
}
