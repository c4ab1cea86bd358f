//! Checkpoints and weight exchange with the original PyTorch MolE.
//!
//! The project's checkpoint is one safetensors file: every parameter under the original
//! PyTorch name and layout (`Linear` weights `[out, in]`, all `f32`), plus metadata entries
//! that make it self-describing:
//!
//! | key | value |
//! | --- | --- |
//! | `format` | `mole-rs-checkpoint` |
//! | `format_version` | `1` |
//! | `config` | the [`MolEConfig`] as JSON |
//! | `vocab` | the input vocabulary as JSON (`mole_featurize::Vocabulary` format) |
//! | `target_vocab` | the radius-2 target vocabulary, when the model has a pretraining head |
//! | `extra` | [`CheckpointInfo`] as JSON: how the model was made (stage, tasks, label names, target standardisation, step, validation metrics) |
//!
//! Export writes the same tensors with no metadata: exactly the original `state_dict` names, so
//! `Supervised.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch.

use std::path::Path;

use burn::tensor::backend::Backend;
use mole_featurize::Vocabulary;
use mole_nn::{load_torch_state, to_torch_state, StateDict, TorchNames};

use serde::{Deserialize, Serialize};

use crate::model::{MolE, MolEConfig};
use crate::targets::TargetStandardization;
use crate::{ModelError, TaskType};

pub const FORMAT: &str = "mole-rs-checkpoint";
pub const FORMAT_VERSION: &str = "1";

/// A self-describing model checkpoint.
pub struct Checkpoint<B: Backend> {
    pub config: MolEConfig,
    pub model: MolE<B>,
    pub vocab: Vocabulary,
    pub target_vocab: Option<Vocabulary>,
    /// How the model was made (the `extra` metadata).
    pub info: CheckpointInfo,
}

/// Which training made a checkpoint's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainingStage {
    /// Stage 1: masked atom-environment pretraining (the model has an `atom_env_head`).
    AtomEnv,
}

/// What a checkpoint records about how it was made: the `extra` metadata entry, typed. Every
/// field is optional (an imported or hand-made checkpoint may say nothing); fields this version
/// does not know are kept in `other` and written back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// Set by stage-1 pretraining; supervised checkpoints have a `task` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<TrainingStage>,
    /// The supervised head's task type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskType>,
    /// The label column of each task, in head order (prediction columns are named after them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    /// Regression: the training labels' mean and standard deviation. The saved head already
    /// predicts original units; this records what training learned in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_standardization: Option<TargetStandardization>,
    /// Stage 1: accuracy of always predicting the most frequent radius-2 environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub majority_baseline_accuracy: Option<f64>,
    /// The original weights' files a checkpoint was imported from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported_from: Vec<String>,
    /// Optimiser steps and epochs when the checkpoint was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
    /// The validation metrics that made it the best checkpoint (metric name → value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<serde_json::Value>,
    /// Fields of other versions, kept as they were.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl CheckpointInfo {
    /// The `extra` entry of a checkpoint's metadata (empty when it has none, e.g. imported
    /// weights); `source` names the file in the error when the entry is malformed.
    pub fn from_metadata(dict: &StateDict, source: &str) -> Result<Self, ModelError> {
        match dict.metadata.get("extra") {
            None => Ok(Self::default()),
            Some(text) if text == "null" => Ok(Self::default()),
            Some(text) => serde_json::from_str(text).map_err(|e| ModelError::Checkpoint {
                path: source.to_string(),
                why: format!("extra metadata: {e}"),
            }),
        }
    }
}

/// MolE's original names: the DeBERTa modules' (`mole_nn::TorchNames::deberta`) under the
/// root `MolE.` (the Burn field `mole`); the heads keep their names.
pub fn torch_names() -> TorchNames {
    TorchNames::deberta(&[(r"^MolE\.", "mole.")], &[(r"^mole\.", "MolE.")])
}

/// The original parameter names of `model` (with the Lightning `model.` prefix removed).
pub fn to_state_dict<B: Backend>(model: &MolE<B>) -> StateDict {
    to_torch_state(model, &torch_names())
}

/// Loads parameters named as in the original into `model`; names may carry Lightning's
/// `model.` prefix. Every missing, unexpected or mis-shaped tensor is listed in the error. The
/// tensors go to the device of the model's parameters.
pub fn load_state_dict<B: Backend>(
    model: MolE<B>,
    dict: &StateDict,
) -> Result<MolE<B>, ModelError> {
    let has_lightning_prefix = dict.tensors.keys().all(|k| k.starts_with("model."));
    let stripped;
    let dict = if has_lightning_prefix && !dict.tensors.is_empty() {
        stripped = dict.clone().strip_prefix("model.");
        &stripped
    } else {
        dict
    };
    Ok(load_torch_state(model, dict, &torch_names())?)
}

/// Tensors of a state dict that [`load_matching`] did not use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnusedTensors(pub Vec<String>);

/// Loads the tensors of `dict` that `model` has (names as in the original, an optional
/// Lightning `model.` prefix removed), e.g. a pretrained encoder into a model with a new head.
/// Tensors the model has and `dict` lacks keep their values (a new head's fresh
/// initialisation); tensors `dict` has and the model lacks (another head) are returned, not
/// loaded. A tensor of the wrong shape is an error.
pub fn load_matching<B: Backend>(
    model: MolE<B>,
    dict: &StateDict,
) -> Result<(MolE<B>, UnusedTensors), ModelError> {
    let lightning =
        !dict.tensors.is_empty() && dict.tensors.keys().all(|k| k.starts_with("model."));
    let mut full = to_state_dict(&model);
    let mut unused = Vec::new();
    for (saved_name, t) in &dict.tensors {
        let name = match lightning {
            true => &saved_name["model.".len()..],
            false => saved_name.as_str(),
        };
        match full.tensors.get_mut(name) {
            Some(slot) if slot.shape == t.shape => *slot = t.clone(),
            Some(slot) => {
                return Err(ModelError::Checkpoint {
                    path: "initial weights".into(),
                    why: format!(
                        "`{name}` has shape {:?}, the model expects {:?}",
                        t.shape, slot.shape
                    ),
                })
            }
            None => unused.push(name.to_string()),
        }
    }
    unused.sort();
    Ok((load_state_dict(model, &full)?, UnusedTensors(unused)))
}

/// A model with a pretrained encoder and a new head, in one call: the encoder (its
/// architecture, weights and vocabulary) comes from the mole checkpoint at `path`, the
/// heads from `heads` (`MolEConfig::head` / `atom_env_head`; freshly initialised). The
/// checkpoint's own heads are left out. Returns the model and the vocabulary its inputs
/// must be featurised with.
pub fn pretrained_encoder<B: Backend>(
    path: &Path,
    heads: NewHeads,
    device: &B::Device,
) -> Result<(MolE<B>, Vocabulary), ModelError> {
    let source = path.display().to_string();
    let dict = StateDict::load(path)?;
    let (saved, vocab) = config_and_vocab(&dict, &source)?;
    let bad = |why: String| ModelError::Checkpoint {
        path: source.clone(),
        why,
    };
    let config = MolEConfig {
        encoder: saved.encoder,
        head: heads.head,
        atom_env_head: heads.atom_env_head,
    };
    let mut encoder_only = dict;
    drop_head_tensors(&mut encoder_only);
    let (model, _) =
        load_matching(MolE::new(&config, device), &encoder_only).map_err(|e| bad(e.to_string()))?;
    Ok((model, vocab))
}

/// The model configuration and input vocabulary a mole checkpoint's metadata holds (`source`
/// names the file in errors). A vocabulary larger than the model's embedding table is refused.
pub fn config_and_vocab(
    dict: &StateDict,
    source: &str,
) -> Result<(MolEConfig, Vocabulary), ModelError> {
    let bad = |why: String| ModelError::Checkpoint {
        path: source.to_string(),
        why,
    };
    let meta = |key: &str| {
        dict.metadata.get(key).ok_or_else(|| {
            bad(format!(
                "no `{key}` metadata: not a mole-rs checkpoint (use import for original weights)"
            ))
        })
    };
    let config: MolEConfig =
        serde_json::from_str(meta("config")?).map_err(|e| bad(format!("config metadata: {e}")))?;
    let vocab = Vocabulary::from_json_str(meta("vocab")?)
        .map_err(|e| bad(format!("vocabulary metadata: {e}")))?;
    if vocab.vocab_size() > config.encoder.vocab_size {
        return Err(bad(format!(
            "its vocabulary has {} tokens but the model's embedding table {} rows: the \
             vocabulary belongs to another model",
            vocab.vocab_size(),
            config.encoder.vocab_size
        )));
    }
    Ok((config, vocab))
}

/// A mole checkpoint's encoder alone: the heads' tensors (`prediction_head.*`,
/// `atom_env_head.*`) and the target vocabulary are dropped and the `config` metadata says
/// the model has no heads; the rest of the metadata (vocabulary, `extra`) is kept. What a
/// shipped pretrained model holds: the radius-2 head is most of a tiny model's weights and
/// no use for embeddings or fine-tuning.
pub fn encoder_only(mut dict: StateDict, source: &str) -> Result<StateDict, ModelError> {
    let (mut config, _) = config_and_vocab(&dict, source)?;
    config.head = None;
    config.atom_env_head = None;
    // what described the dropped head goes with it
    let mut info = CheckpointInfo::from_metadata(&dict, source)?;
    info.task = None;
    info.label_names.clear();
    info.target_standardization = None;
    drop_head_tensors(&mut dict);
    dict.metadata.remove("target_vocab");
    let json = |what: &str, value: Result<String, serde_json::Error>| {
        value.map_err(|e| ModelError::Checkpoint {
            path: source.to_string(),
            why: format!("{what} metadata: {e}"),
        })
    };
    dict.metadata.insert(
        "config".into(),
        json("config", serde_json::to_string(&config))?,
    );
    dict.metadata
        .insert("extra".into(), json("extra", serde_json::to_string(&info))?);
    Ok(dict)
}

/// Removes the heads' tensors (`prediction_head.*`, `atom_env_head.*`, with or without
/// Lightning's `model.` prefix) from `dict`.
fn drop_head_tensors(dict: &mut StateDict) {
    dict.tensors.retain(|name, _| {
        let name = name.strip_prefix("model.").unwrap_or(name);
        !name.starts_with("prediction_head.") && !name.starts_with("atom_env_head.")
    });
}

/// The heads [`pretrained_encoder`] puts on a pretrained encoder.
#[derive(Debug, Clone, Default)]
pub struct NewHeads {
    pub head: Option<crate::model::HeadConfig>,
    pub atom_env_head: Option<crate::model::AtomEnvHeadConfig>,
}

/// Imports weights of the original PyTorch MolE (one or more safetensors files whose union is
/// the `state_dict`) into a freshly built model of `config`.
pub fn import_safetensors<B: Backend>(
    config: &MolEConfig,
    files: &[&Path],
    device: &B::Device,
) -> Result<MolE<B>, ModelError> {
    let mut dict = StateDict::default();
    for f in files {
        dict.extend(StateDict::load(f)?);
    }
    load_state_dict(MolE::new(config, device), &dict)
}

/// Writes the tensors under the original names, without metadata.
pub fn export_safetensors<B: Backend>(model: &MolE<B>, path: &Path) -> Result<(), ModelError> {
    to_state_dict(model).save(path)?;
    Ok(())
}

impl<B: Backend> Checkpoint<B> {
    /// Writes the checkpoint atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let mut dict = to_state_dict(&self.model);
        let json = |v: &dyn erased::ToJson| v.to_json();
        dict.metadata.insert("format".into(), FORMAT.into());
        dict.metadata
            .insert("format_version".into(), FORMAT_VERSION.into());
        dict.metadata.insert("config".into(), json(&self.config));
        dict.metadata
            .insert("vocab".into(), self.vocab.to_json_string());
        if let Some(t) = &self.target_vocab {
            dict.metadata
                .insert("target_vocab".into(), t.to_json_string());
        }
        dict.metadata.insert("extra".into(), json(&self.info));
        dict.save(path)?;
        Ok(())
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let dict = StateDict::load(path)?;
        let source = path.display().to_string();
        if dict.metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(ModelError::Checkpoint {
                path: source,
                why: "not a mole-rs checkpoint (no `format` metadata, or another one); use \
                      import for original weights"
                    .into(),
            });
        }
        let (config, vocab) = config_and_vocab(&dict, &source)?;
        let bad = |why: String| ModelError::Checkpoint {
            path: source.clone(),
            why,
        };
        let target_vocab = match dict.metadata.get("target_vocab") {
            Some(s) => {
                Some(Vocabulary::from_json_str(s).map_err(|e| bad(format!("target_vocab: {e}")))?)
            }
            None => None,
        };
        let info = CheckpointInfo::from_metadata(&dict, &source)?;
        // name the file: "weights do not match the model" alone does not say which
        let model =
            load_state_dict(MolE::new(&config, device), &dict).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            config,
            model,
            vocab,
            target_vocab,
            info,
        })
    }
}

mod erased {
    pub trait ToJson {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> ToJson for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("config serialises")
        }
    }
}
