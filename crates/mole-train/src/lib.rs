//! Training MolE as a library: the loop that `mole pretrain` (both stages) and `mole finetune`
//! run, for Burn projects that train MolE from their own code.
//!
//! ```text
//! TrainJob { config, data, objective, … } ─ train::<B, M>(job, devices, dtype, observer)
//!   epoch: length-bucketed batches (in memory) or a BatchStream's batches
//!     step: HostBatch::prepare (masking / labels) → loss → backward
//!           → [all-reduce across devices] → global-norm clipping → Adam (warm-up lr:
//!             Burn's LinearLrScheduler, then constant)
//!   every log_every steps   → TrainEvent::Logged
//!   every checkpoint_every  → <run>/resume/ (exact resume)
//!   end of epoch            → validation → best.safetensors (MolE's), early stopping
//! → last.safetensors, TrainOutcome
//! ```
//!
//! The objectives (masking, the supervised losses) live in [`mole_model::objective`]; this
//! crate holds what turns them into a run: [`data`] reads tables, molecule lists and streamed
//! corpora into examples, and [`train`] runs the loop. The loop is generic over the model contract
//! [`mole_model::Model`]: `train::<B, MolE<B>>` trains MolE, and a Burn user's own model of
//! MolE's batches trains the same way. Progress is reported to a [`TrainObserver`], never
//! printed (diagnostics go to `tracing` at debug level); a run spanning several machines calls
//! its [`StallHandler`] when the group stalls.
//!
//! Feature `collective` (off by default) enables data-parallel training on several devices or
//! machines; without it, [`train`] takes one device.

pub mod batching;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod job;
pub mod observer;
pub mod optimizer;
mod replicas;
mod run;
pub mod schedule;

pub use batching::{length_bucketed_batches, sequential_batches, step_seed};
pub use config::TrainConfig;
pub use error::{BoxError, TrainError};
pub use evaluate::{evaluate, Evaluator};
pub use job::{BatchStream, StallHandler, TrainData, TrainJob, TrainOutcome, TrainState};
pub use mole_model::objective::{Example, Objective};
pub use observer::{NoObserver, PlannedData, StepLog, TrainEvent, TrainObserver, TrainPlan};
pub use optimizer::{AdamOptimizer, AdamRecord, Optimizer};
pub use run::train;
pub use schedule::WarmupSchedule;
