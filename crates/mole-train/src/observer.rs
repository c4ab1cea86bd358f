//! What a run reports as it goes: a [`TrainObserver`] receives every [`TrainEvent`] (`mole`
//! draws its progress bar, logs, and appends `metrics.jsonl` from them).

use std::path::Path;

use mole_model::data_parallel::NodeGroup;
use serde::Serialize;

use crate::BoxError;

/// The run about to start, once its data is counted and any checkpoint resumed.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub data: PlannedData,
    pub valid_molecules: usize,
    pub parameters: usize,
    pub total_steps: usize,
    /// `None`: a streamed corpus whose size was not counted.
    pub steps_per_epoch: Option<usize>,
    pub batch_size: usize,
    /// The step the run starts at (beyond 0 when resumed).
    pub first_step: usize,
}

/// The training molecules of a [`TrainPlan`].
#[derive(Debug, Clone)]
pub enum PlannedData {
    /// Molecules held in memory.
    InMemory { molecules: usize },
    /// A streamed corpus, as [`crate::BatchStream::describe`] names it.
    Stream { description: String },
}

/// The mean training loss (and masked-token accuracy) over the steps since the last report,
/// with the throughput of those steps. Serialised, it is a `metrics.jsonl` line's fields.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    /// 1-based.
    pub epoch: usize,
    /// Steps done.
    pub step: usize,
    pub lr: f64,
    pub loss: f32,
    /// Seconds since this process started training.
    pub elapsed_s: f64,
    /// Throughput of the steps themselves (validation and checkpoints left out).
    pub mol_per_s: f64,
    /// Tokens (CLS included) per second.
    pub tokens_per_s: f64,
    /// f16 training: the dynamic loss scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    /// Pretraining: the share of masked atoms whose environment was predicted right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_accuracy: Option<f64>,
}

/// Something that happened in a run.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// An interrupted save was completed from `resume.tmp/` or `resume.old/` (named).
    RecoveredCheckpoint {
        from: &'a str,
    },
    /// Resuming the checkpoint in `<run>/resume` at this epoch (1-based) and step.
    Resumed {
        epoch: usize,
        step: usize,
    },
    /// Resuming was asked for, but the run directory holds no checkpoint: starting fresh.
    NothingToResume {
        dir: &'a Path,
    },
    /// The resumed run had already finished.
    AlreadyFinished,
    /// The initial weights hold tensors this model does not use (e.g. another head).
    InitialWeightsUnused {
        count: usize,
        first: &'a str,
    },
    /// This node joins a group spanning several machines.
    JoiningNodes {
        nodes: &'a NodeGroup,
    },
    /// Data-parallel training on `peers` devices in all, `local_devices` of them here.
    DataParallel {
        peers: usize,
        local_devices: usize,
    },
    Started(&'a TrainPlan),
    /// A step is done (`step` steps in all).
    Step {
        step: usize,
    },
    /// Every `log_every` steps and at the last step.
    Logged(&'a StepLog),
    /// Validation after epoch `epoch` (1-based): the loss and the objective's metrics;
    /// `improved` when it is the best so far (and was saved as the best checkpoint).
    Validated {
        epoch: usize,
        step: usize,
        metrics: &'a serde_json::Value,
        improved: bool,
    },
    /// No validation improvement in `patience` validations.
    EarlyStopped {
        patience: usize,
    },
    Finished {
        steps: usize,
        seconds: f64,
        best: &'a Path,
        last: &'a Path,
    },
}

/// Receives a run's events. An error stops the run (e.g. `metrics.jsonl` cannot be written).
///
/// Closures `FnMut(&TrainEvent) -> Result<(), BoxError>` are observers.
pub trait TrainObserver {
    fn on_event(&mut self, event: &TrainEvent<'_>) -> Result<(), BoxError>;
}

impl<F> TrainObserver for F
where
    F: FnMut(&TrainEvent<'_>) -> Result<(), BoxError>,
{
    fn on_event(&mut self, event: &TrainEvent<'_>) -> Result<(), BoxError> {
        self(event)
    }
}

/// Ignores every event.
pub struct NoObserver;

impl TrainObserver for NoObserver {
    fn on_event(&mut self, _: &TrainEvent<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}
