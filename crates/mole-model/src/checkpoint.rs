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
//! | `extra` | free-form JSON (training step, metrics) |
//!
//! Export writes the same tensors with no metadata: exactly the original `state_dict` names, so
//! `Supervised.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch.

use std::path::Path;

use burn::tensor::backend::Backend;
use mole_featurize::Vocabulary;
use mole_nn::{StateDict, StateLoader, StateSaver, TorchState};

use crate::model::{MolE, MolEConfig};
use crate::ModelError;

pub const FORMAT: &str = "mole-rs-checkpoint";
pub const FORMAT_VERSION: &str = "1";

/// A self-describing model checkpoint.
pub struct Checkpoint<B: Backend> {
    pub config: MolEConfig,
    pub model: MolE<B>,
    pub vocab: Vocabulary,
    pub target_vocab: Option<Vocabulary>,
    pub extra: serde_json::Value,
}

/// The original parameter names of `model` (with the Lightning `model.` prefix removed).
pub fn to_state_dict<B: Backend>(model: &MolE<B>) -> StateDict {
    let mut saver = StateSaver::default();
    model.save_torch_state(&mut saver, "");
    saver.dict
}

/// Loads parameters named as in the original into `model`; names may carry Lightning's
/// `model.` prefix. Every missing, unexpected or mis-shaped tensor is listed in the error.
pub fn load_state_dict<B: Backend>(
    model: MolE<B>,
    dict: &StateDict,
    device: &B::Device,
) -> Result<MolE<B>, ModelError> {
    let has_lightning_prefix = dict.tensors.keys().all(|k| k.starts_with("model."));
    let stripped;
    let dict = if has_lightning_prefix && !dict.tensors.is_empty() {
        stripped = dict.clone().strip_prefix("model.");
        &stripped
    } else {
        dict
    };
    let mut model = model;
    let mut loader = StateLoader::new(dict, device);
    model.load_torch_state(&mut loader, "");
    loader.finish()?;
    Ok(model)
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
    load_state_dict(MolE::new(config, device), &dict, device)
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
        dict.metadata.insert("extra".into(), self.extra.to_string());
        dict.save(path)?;
        Ok(())
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let dict = StateDict::load(path)?;
        let source = path.display().to_string();
        let meta = |key: &str| {
            dict.metadata.get(key).ok_or_else(|| ModelError::Checkpoint {
                path: source.clone(),
                why: format!("no `{key}` metadata: not a mole-rs checkpoint (use import for original weights)"),
            })
        };
        if meta("format")? != FORMAT {
            return Err(ModelError::Checkpoint {
                path: source,
                why: "unknown checkpoint format".into(),
            });
        }
        let bad = |why: String| ModelError::Checkpoint {
            path: source.clone(),
            why,
        };
        let config: MolEConfig =
            serde_json::from_str(meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let vocab =
            Vocabulary::from_json_str(meta("vocab")?).map_err(|e| bad(format!("vocab: {e}")))?;
        if vocab.vocab_size() > config.encoder.vocab_size {
            return Err(bad(format!(
                "its vocabulary has {} tokens but the model's embedding table {} rows: the \
                 vocabulary belongs to another model",
                vocab.vocab_size(),
                config.encoder.vocab_size
            )));
        }
        let target_vocab = match dict.metadata.get("target_vocab") {
            Some(s) => {
                Some(Vocabulary::from_json_str(s).map_err(|e| bad(format!("target_vocab: {e}")))?)
            }
            None => None,
        };
        let extra = dict
            .metadata
            .get("extra")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        // name the file: "weights do not match the model" alone does not say which
        let model = load_state_dict(MolE::new(&config, device), &dict, device)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            config,
            model,
            vocab,
            target_vocab,
            extra,
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
