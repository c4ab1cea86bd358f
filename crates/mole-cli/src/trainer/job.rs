//! What a training run is given (`TrainJob`, its data) and what it keeps and returns (the
//! resumable state, the outcome, `metrics.jsonl`).

use super::*;

/// Everything a training run needs.
pub struct TrainJob<'a> {
    pub settings: &'a RunSettings,
    pub run_dir: PathBuf,
    pub model_config: MolEConfig,
    pub vocab: Vocabulary,
    pub target_vocab: Option<Vocabulary>,
    pub train: TrainData,
    pub valid: Vec<Example>,
    pub objective: Objective,
    /// Weights to start from (e.g. a pretrained encoder); tensors the model lacks are an error,
    /// tensors it has and the dict lacks keep their fresh initialisation.
    pub init: Option<mole_nn::StateDict>,
    pub resume: bool,
    /// What the checkpoints record about the run (label names, task, stage); step, epoch and
    /// validation metrics are filled in as they are written.
    pub info: mole_model::CheckpointInfo,
    /// Test hook: fail as if killed after this many steps of this process.
    pub interrupt_after: Option<usize>,
    /// This process's place when the data-parallel group spans several machines.
    pub nodes: Option<NodeGroup>,
}

/// The training molecules: featurised up front, or a streaming corpus.
pub enum TrainData {
    InMemory(Vec<Example>),
    Stream {
        spec: std::sync::Arc<crate::stream::StreamSpec>,
        /// Steps of one pass over the corpus, when counted (a run with `max_steps` needs no
        /// count).
        steps_per_epoch: Option<usize>,
    },
}

/// Where one epoch's batches come from.
pub(super) enum EpochSource {
    /// Index lists into the in-memory molecules.
    Indices(Vec<Vec<usize>>),
    Stream(std::sync::mpsc::Receiver<Result<Vec<Example>>>),
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
pub struct TrainOutcome {
    pub best_checkpoint: PathBuf,
    pub final_valid: Option<serde_json::Value>,
    pub steps: usize,
}

/// Appends JSON lines to `metrics.jsonl`.
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    pub fn open(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        Ok(Self { file })
    }

    pub fn write(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}
