//! MolE under burn-train's `Learner` (feature `learner`): MolE implements Burn's
//! [`TrainStep`] and [`InferenceStep`], and [`ObjectiveBatcher`] turns [`Example`]s into
//! their input, so `SupervisedTraining::new(dir, train_loader, valid_loader)
//! .launch(Learner::new(model, optim, lr))` trains either objective (masked atom environments or
//! supervised tasks) as any Burn model trains.
//!
//! burn-train's default `optimize` applies the optimiser without MolE's global-norm clipping;
//! `mole_train::train` is the loop with clipping, exact resume and data parallelism.

use std::sync::Mutex;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, Transaction};
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use burn_flex::Flex;
use mole_featurize::Vocabulary;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::objective::{Example, HostBatch, Objective};
use crate::{Model, MolE};

/// A batch prepared on the host (collated; masked for pretraining) and the device its tensors
/// go to: the input of MolE's [`TrainStep`] and [`InferenceStep`].
#[derive(Debug, Clone)]
pub struct LearnerBatch<B: Backend> {
    pub batch: HostBatch,
    pub device: B::Device,
}

/// What a step reports to burn-train's metrics: the batch's mean loss `[1]`.
pub struct LearnerOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
}

impl<B: Backend> Adaptor<LossInput<B>> for LearnerOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        LossInput::new(self.loss.clone())
    }
}

impl<B: Backend> ItemLazy for LearnerOutput<B> {
    type ItemSync = LearnerOutput<Flex>;

    /// Moves the loss to the CPU, where burn-train's metrics run.
    fn sync(self) -> Self::ItemSync {
        let [loss] = Transaction::default()
            .register(self.loss)
            .execute()
            .try_into()
            .expect("one tensor registered, one read");
        LearnerOutput {
            loss: Tensor::from_data(loss, &Default::default()),
        }
    }
}

impl<B: AutodiffBackend> TrainStep for MolE<B> {
    type Input = LearnerBatch<B>;
    type Output = LearnerOutput<B>;

    /// Forward, the objective's loss, backward.
    fn step(&self, item: LearnerBatch<B>) -> TrainOutput<LearnerOutput<B>> {
        let loss = objective_loss(self, item);
        let grads = loss.backward();
        TrainOutput::new(self, grads, LearnerOutput { loss })
    }
}

impl<B: Backend> InferenceStep for MolE<B> {
    type Input = LearnerBatch<B>;
    type Output = LearnerOutput<B>;

    /// The objective's loss, for validation.
    fn step(&self, item: LearnerBatch<B>) -> LearnerOutput<B> {
        LearnerOutput {
            loss: objective_loss(self, item),
        }
    }
}

/// The batch's loss. burn-train's steps cannot return an error: a batch the model has no head
/// for (an [`ObjectiveBatcher`] built for the other objective) is a programming error.
fn objective_loss<B: Backend>(model: &MolE<B>, item: LearnerBatch<B>) -> Tensor<B, 1> {
    match Model::loss(model, item.batch, &item.device) {
        Ok(out) => out.loss,
        Err(e) => panic!("MolE under burn-train's Learner: {e}"),
    }
}

/// Collates [`Example`]s for an [`Objective`] into [`LearnerBatch`]es (a Burn `Batcher` for
/// `DataLoaderBuilder`). Pretraining masks with one seeded RNG shared by the loader's workers,
/// so the masking is reproducible with a single worker.
pub struct ObjectiveBatcher {
    objective: Objective,
    vocab: Vocabulary,
    rng: Mutex<StdRng>,
}

impl ObjectiveBatcher {
    pub fn new(objective: Objective, vocab: Vocabulary, seed: u64) -> Self {
        Self {
            objective,
            vocab,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl<B: Backend> Batcher<B, Example, LearnerBatch<B>> for ObjectiveBatcher {
    fn batch(&self, items: Vec<Example>, device: &B::Device) -> LearnerBatch<B> {
        let examples: Vec<&Example> = items.iter().collect();
        // a worker that panicked while holding the RNG left it usable: take it back
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        LearnerBatch {
            batch: HostBatch::prepare(&examples, &self.objective, &self.vocab, &mut rng),
            device: device.clone(),
        }
    }
}
