//! What a training run is given (`TrainJob`, its data) and what it keeps and returns (the
//! resumable state, the outcome).

use std::path::PathBuf;

use mole_featurize::Vocabulary;
use mole_model::data_parallel::NodeGroup;
use mole_model::objective::{Example, Objective};
use mole_model::training::LossScaler;
use mole_model::{CheckpointInfo, MolEConfig};
use serde::{Deserialize, Serialize};

use crate::{BoxError, TrainConfig};

/// Everything a training run needs; `C` is the model's configuration ([`mole_model::Model::Config`]).
pub struct TrainJob<C = MolEConfig> {
    pub config: TrainConfig,
    /// Where `resume/` and the best and last checkpoints (`best.safetensors` and
    /// `last.safetensors` for MolE; see `mole_model::Model::CHECKPOINT_EXTENSION`) are written.
    pub run_dir: PathBuf,
    pub model_config: C,
    pub vocab: Vocabulary,
    /// Pretraining: the radius-2 environments the atom-environment head predicts.
    pub target_vocab: Option<Vocabulary>,
    pub train: TrainData,
    pub valid: Vec<Example>,
    pub objective: Objective,
    /// Weights to start from (e.g. a pretrained encoder); tensors the model lacks are reported
    /// ([`crate::TrainEvent::InitialWeightsUnused`]), tensors it has and the dict lacks keep
    /// their fresh initialisation.
    pub init: Option<mole_nn::StateDict>,
    /// Continue from `<run_dir>/resume` when it holds a checkpoint.
    pub resume: bool,
    /// What the checkpoints record about the run (label names, task, stage); step, epoch and
    /// validation metrics are filled in as they are written.
    pub info: CheckpointInfo,
    /// Test hook: fail as if killed after this many steps of this process.
    pub interrupt_after: Option<usize>,
    /// This process's place when the data-parallel group spans several machines.
    pub nodes: Option<NodeGroup>,
    /// Multi-node runs: what to do when no step completes for the group's `stall_timeout`
    /// (`None`: nothing is watched).
    pub on_stall: Option<StallHandler>,
}

/// Called once, from a watchdog thread, with the time since the last step when a multi-node
/// run stalls. The training thread may be waiting in an all-reduce that never returns
/// (burn-collective has no timeouts), so the handler should end the process (`mole` prints
/// why and exits).
pub type StallHandler = Box<dyn FnOnce(std::time::Duration) + Send>;

/// The training molecules: featurised up front, or a streaming corpus.
pub enum TrainData {
    InMemory(Vec<Example>),
    Stream {
        batches: std::sync::Arc<dyn BatchStream>,
        /// Steps of one pass over the corpus, when counted (a run with `max_steps` needs no
        /// count).
        steps_per_epoch: Option<usize>,
    },
}

/// A corpus read while it is trained on (too large to featurise up front).
pub trait BatchStream: Send + Sync {
    /// The batches of epoch `epoch` (0-based) after its first `skip` batches (a resumed run
    /// skips those it has done). The epoch ends when the iterator does (or at an empty batch);
    /// the same epoch must give the same batches every time, or resuming does not repeat the
    /// run.
    fn epoch(
        &self,
        epoch: usize,
        skip: usize,
    ) -> Box<dyn Iterator<Item = Result<Vec<Example>, BoxError>> + '_>;

    /// What the corpus is, for progress reports ([`crate::TrainPlan::stream`]).
    fn describe(&self) -> String {
        "a streamed corpus".into()
    }
}

/// Position in the run, saved with every resumable checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub global_step: usize,
    /// `None` until the first validation (JSON has no infinity).
    pub best_valid_loss: Option<f64>,
    pub validations_without_improvement: usize,
    pub finished: bool,
    /// f16 runs: the dynamic loss scale, so a resumed run continues with it.
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
    /// The model's configuration, so that resuming into a model of another shape is refused
    /// with a message instead of failing inside the record loader.
    #[serde(default)]
    pub model_config: Option<serde_json::Value>,
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    /// The last validation's loss and metrics.
    pub final_valid: Option<serde_json::Value>,
    pub steps: usize,
}
