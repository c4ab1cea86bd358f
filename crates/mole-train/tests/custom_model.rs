//! The trainer is generic over the model contract (`mole_model::Model`): a Burn user's own
//! model of MolE's batches — here a bag of atom tokens, mean-pooled into a linear regressor —
//! trains through `mole_train::train` with the same warm-up, validation and checkpoints as
//! MolE, and its checkpoints are whatever its `save_checkpoint` writes.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use mole_metrics::TaskKind;
use mole_model::loss::masked_mse;
use mole_model::objective::{BatchLoss, HostBatch, Objective};
use mole_model::{
    BatchTensors, CheckpointContents, CheckpointInfo, Model, ModelError, UnusedTensors,
};
use mole_nn::StateDict;
use mole_train::{train, TrainConfig, TrainData, TrainEvent, TrainJob};
use serde::Serialize;

mod common;

use common::{bundled_encoder, esol, scratch_dir};

/// The regressor's architecture.
#[derive(Debug, Clone, Serialize)]
struct BagOfAtomsConfig {
    vocab_size: usize,
    width: usize,
}

/// Mean of the molecule's atom-token embeddings, then one linear layer.
#[derive(Module, Debug)]
struct BagOfAtoms<B: Backend> {
    tokens: Embedding<B>,
    output: Linear<B>,
}

impl<B: Backend> BagOfAtoms<B> {
    /// `[batch, seq]` tokens → `[batch, 1]` predictions.
    fn forward(&self, batch: &BatchTensors<B>) -> Tensor<B, 2> {
        let [b, n] = batch.input_ids.dims();
        let mask = batch.input_mask.clone().float().reshape([b, n, 1]);
        let summed = (self.tokens.forward(batch.input_ids.clone()) * mask.clone()).sum_dim(1);
        let atoms = mask.sum_dim(1).clamp_min(1.0);
        let [_, _, width] = summed.dims();
        self.output.forward((summed / atoms).reshape([b, width]))
    }
}

impl<B: Backend> Model<B> for BagOfAtoms<B> {
    type Config = BagOfAtomsConfig;

    fn init(config: &BagOfAtomsConfig, device: &B::Device) -> Self {
        Self {
            tokens: EmbeddingConfig::new(config.vocab_size, config.width).init(device),
            output: LinearConfig::new(config.width, 1).init(device),
        }
    }

    fn loss(&self, batch: HostBatch, device: &B::Device) -> Result<BatchLoss<B>, ModelError> {
        let count = batch.loss_count();
        let HostBatch::Supervised { batch, labels, .. } = batch else {
            return Err(ModelError::Unsupported(
                "BagOfAtoms predicts labels only".into(),
            ));
        };
        let rows = batch.batch_size;
        let predictions = self.forward(&BatchTensors::from_batch(&batch, device));
        let labels = Tensor::from_data(TensorData::new(labels, [rows]), device);
        let loss = masked_mse(predictions.clone().reshape([rows]), labels, None).loss;
        Ok(BatchLoss {
            loss,
            correct: None,
            count,
            predictions: Some(predictions),
        })
    }

    fn load_matching(
        self,
        _weights: &StateDict,
        _device: &B::Device,
    ) -> Result<(Self, UnusedTensors), ModelError> {
        Err(ModelError::Unsupported(
            "BagOfAtoms starts from scratch".into(),
        ))
    }

    /// The checkpoints are `best.mpk` and `last.mpk`: this model's Burn record.
    const CHECKPOINT_EXTENSION: &'static str = "mpk";

    fn save_checkpoint(
        self,
        path: &Path,
        _contents: CheckpointContents<'_, BagOfAtomsConfig>,
    ) -> Result<(), ModelError> {
        let failed = |why: String| ModelError::Checkpoint {
            path: path.display().to_string(),
            why,
        };
        let bytes = recorder()
            .record(self.into_record(), ())
            .map_err(|e| failed(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| failed(e.to_string()))
    }
}

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

type B = Autodiff<Flex>;

#[test]
fn a_users_own_model_trains_through_the_library_trainer() {
    let run_dir = scratch_dir("custom-model");
    let (_, _, vocab) = bundled_encoder();
    let examples = esol(&vocab, 160);
    let (train_part, valid) = examples.split_at(128);
    let config = TrainConfig {
        batch_size: 16,
        epochs: 4,
        max_steps: 0,
        lr: 3e-2,
        warmup_fraction: 0.0,
        grad_clip: 1.0,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-6,
        checkpoint_every: 8,
        log_every: 8,
        validate_every: 1,
        early_stopping_patience: 0,
        seed: 5,
    };
    let model_config = BagOfAtomsConfig {
        vocab_size: vocab.vocab_size(),
        width: 16,
    };
    let objective = Objective::Supervised {
        kind: TaskKind::Regression,
        num_tasks: 1,
        positive_weights: None,
        standardization: None,
    };
    let job = TrainJob {
        config,
        run_dir: run_dir.clone(),
        model_config: model_config.clone(),
        vocab: vocab.clone(),
        target_vocab: None,
        train: TrainData::InMemory(train_part.to_vec()),
        valid: valid.to_vec(),
        objective: objective.clone(),
        init: None,
        resume: false,
        info: CheckpointInfo::default(),
        interrupt_after: None,
        nodes: None,
        on_stall: None,
    };

    let mut validations = Vec::new();
    let mut observer = |event: &TrainEvent<'_>| -> Result<(), mole_train::BoxError> {
        if let TrainEvent::Validated { metrics, .. } = event {
            validations.push(metrics["loss"].as_f64().unwrap());
        }
        Ok(())
    };
    let device = Default::default();
    let outcome = train::<B, BagOfAtoms<B>>(job, &[device], None, &mut observer).unwrap();

    // 128 molecules in batches of 16: 8 steps per epoch, 4 epochs, one validation each
    assert_eq!(outcome.steps, 32);
    assert_eq!(validations.len(), 4);
    // logS is around -3 and the fresh regressor predicts about 0, an error of mean(y²);
    // trained, its validation error is under half of that
    let predicting_zero = valid
        .iter()
        .map(|e| e.labels[0].powi(2) as f64)
        .sum::<f64>()
        / valid.len() as f64;
    assert!(
        validations[3] < 0.5 * predicting_zero,
        "validation losses {validations:?}, predicting 0: {predicting_zero}"
    );
    // the checkpoints are the model's own format, and the last one holds the trained weights:
    // evaluated again, it gives the last validation's loss
    assert_eq!(outcome.last_checkpoint, run_dir.join("last.mpk"));
    assert!(outcome.best_checkpoint.is_file());
    let bytes = std::fs::read(&outcome.last_checkpoint).unwrap();
    let record = recorder().load(bytes, &device).unwrap();
    let trained = BagOfAtoms::<Flex>::init(&model_config, &device).load_record(record);
    let again = mole_train::evaluate(&trained, valid, &objective, &vocab, 16, 0, &device).unwrap();
    let loss = again["loss"].as_f64().unwrap();
    assert!(
        (loss - validations[3]).abs() <= 1e-5 * validations[3],
        "{loss} vs {}",
        validations[3]
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
