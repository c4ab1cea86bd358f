//! Errors of a training run.

use std::path::PathBuf;

/// An error from code the trainer calls back: a [`crate::BatchStream`] or a
/// [`crate::TrainObserver`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a training run stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The job cannot be run as given (no molecules, a resume checkpoint of another model, …).
    #[error("{0}")]
    Invalid(String),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Saving or loading a resumable checkpoint (`model.mpk`, `optim.mpk`).
    #[error("{what}")]
    Record {
        what: String,
        #[source]
        source: burn::record::RecorderError,
    },
    #[error(transparent)]
    Model(#[from] mole_model::ModelError),
    /// The loss stopped being a number; the weights are ruined.
    #[error(
        "training loss became {loss} by step {step}: stopping. Check the labels for huge \
         values, or lower train.lr"
    )]
    Diverged { step: usize, loss: f32 },
    #[error("reading the training corpus")]
    Corpus(#[source] BoxError),
    #[error("reporting progress")]
    Observer(#[source] BoxError),
    /// A device, replica or node of a data-parallel run failed, or the nodes disagree.
    #[error("{0}")]
    DataParallel(String),
    #[error(transparent)]
    Collective(#[from] mole_model::data_parallel::DataParallelError),
    /// [`crate::TrainJob::interrupt_after`] was reached (tests of resuming).
    #[error("interrupted after {0} steps (test hook)")]
    Interrupted(usize),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn record(what: &str) -> impl FnOnce(burn::record::RecorderError) -> Self + '_ {
        move |source| Self::Record {
            what: what.to_string(),
            source,
        }
    }
}
