//! The subcommands, one module per concept; each module's items are re-exported here.

mod benchmark;
mod checkpoints;
mod evaluate;
mod featurize;
mod finetune;
mod inference;
mod nodes;
mod parity;
mod predict;
mod pretrain;

pub(crate) use benchmark::*;
pub(crate) use checkpoints::*;
pub(crate) use evaluate::*;
pub(crate) use featurize::*;
pub(crate) use finetune::*;
pub(crate) use inference::*;
pub(crate) use nodes::*;
pub(crate) use parity::*;
pub(crate) use predict::*;
pub(crate) use pretrain::*;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use clap::{Args, Subcommand, ValueEnum};
use mole_featurize::{
    collate, featurize_with_limit, read_molecules, IoError, MoleInput, MoleculeRecord, Vocabulary,
};
use mole_metrics::TaskKind;
use mole_model::data_parallel::NodeGroup;
use mole_model::{BatchTensors, Checkpoint, HeadConfig, MolE, MolEConfig, TaskType};
use mole_nn::StateDict;

use crate::parquet_out::{self, ParquetRows};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::backend::{compiled_backends, default_device, DeviceSpec};
use crate::data::{self, Example};
use crate::settings::{self, RunSettings};
use crate::trainer::{self, Objective, TrainJob};
use crate::{with_backend, TrainArgs};

pub(crate) const BUNDLED_VOCAB: &str = include_str!("../../assets/vocab_radius0.json");

/// The radius-0 vocabulary shipped with mole (built from the bundled MOSES subset).
pub fn bundled_vocab() -> Result<Vocabulary> {
    Vocabulary::from_json_str(BUNDLED_VOCAB).map_err(|e| anyhow!("bundled vocabulary: {e}"))
}

pub(crate) fn load_vocab(path: Option<&Path>) -> Result<Vocabulary> {
    match path {
        Some(p) if !p.as_os_str().is_empty() => Ok(Vocabulary::from_json_file(p)?),
        _ => bundled_vocab(),
    }
}
