//! Run configuration: TOML files in `configs/` (embedded in the binary as defaults), with
//! `--set section.field=value` overrides and flags for the common fields.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use mole_model::TaskType;
use mole_nn::DebertaConfig;
use mole_train::TrainConfig;
use serde::{Deserialize, Serialize};

pub const PRETRAIN_TOML: &str = include_str!("../../../configs/pretrain.toml");
pub const MULTITASK_TOML: &str = include_str!("../../../configs/multitask.toml");
pub const FINETUNE_TOML: &str = include_str!("../../../configs/finetune.toml");
const TINY_TOML: &str = include_str!("../../../configs/tiny.toml");
const SMALL_TOML: &str = include_str!("../../../configs/small.toml");
const BASE_TOML: &str = include_str!("../../../configs/base.toml");

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    pub train: String,
    #[serde(default)]
    pub valid_fraction: f64,
    #[serde(default)]
    pub test_fraction: f64,
    #[serde(default)]
    pub vocab: String,
    #[serde(default = "default_min_count")]
    pub target_min_count: u64,
    #[serde(default = "default_smiles_col")]
    pub smiles_column: String,
    #[serde(default)]
    pub label_columns: Vec<String>,
    #[serde(default)]
    pub split_column: String,
    /// How rows without a split column are divided: `random` or `scaffold` (TDC's scaffold
    /// split: whole Bemis–Murcko scaffold groups per part).
    #[serde(default)]
    pub split_method: mole_featurize::split::SplitMethod,
    /// Molecules with more heavy atoms are rejected as bad rows (memory grows with the square
    /// of the atom count).
    #[serde(default = "default_max_atoms")]
    pub max_atoms: usize,
    /// Read the training data as a stream (`mole_train::data::stream`) in memory bounded by the window,
    /// instead of featurising it all before the first step (default for stage 1; stage 2 and
    /// fine-tuning on large tables turn it on). `train` may then list several files and globs,
    /// comma-separated; the split is by a split column or a SMILES hash, not by scaffold.
    #[serde(default)]
    pub stream: bool,
    /// Streaming: molecules shuffled and length-bucketed together.
    #[serde(default = "default_stream_window")]
    pub stream_window: usize,
    /// Streaming: training molecules at the start of the corpus that set the target
    /// vocabulary (pretraining) or the class weights and target standardisation (labelled
    /// data). The validation set: pretraining, the validation molecules among the rows read;
    /// labelled data, the first validation rows of the files; at most 10,000 either way.
    #[serde(default = "default_stream_sample")]
    pub stream_sample: usize,
    /// Pretraining: a radius-2 vocabulary file (`mole vocab build --radius 2`, e.g. counted
    /// over the whole corpus in one streaming pass) for the targets; empty = counted over the
    /// training molecules (streaming: over the sample).
    #[serde(default)]
    pub target_vocab: String,
    /// Pretraining in memory: keep one molecule per canonical SMILES (stereo and isotopes
    /// left out, as MolE's tokens leave them out) across all the corpus files, the first
    /// occurrence in file order.
    #[serde(default)]
    pub deduplicate: bool,
}

fn default_stream_window() -> usize {
    50_000
}

fn default_stream_sample() -> usize {
    30_000
}

fn default_max_atoms() -> usize {
    mole_featurize::DEFAULT_MAX_ATOMS
}

fn default_min_count() -> u64 {
    5
}
fn default_smiles_col() -> String {
    "smiles".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSettings {
    pub mask_prob: f64,
    pub attention_span: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    /// `regression` or `classification` (anything else is refused when the file is read).
    pub kind: TaskType,
    pub num_classes: usize,
    pub balanced_class_weights: bool,
    pub head_dropout: f64,
    /// Regression: train on targets standardised with the training split's mean and standard
    /// deviation (saved checkpoints still predict original units).
    #[serde(default = "standardize_by_default")]
    pub standardize_targets: bool,
}

fn standardize_by_default() -> bool {
    true
}

/// One run's whole configuration, as saved beside its checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Preset name (`tiny`, `small`, `base`) or path of a model TOML.
    pub model: String,
    pub data: DataSettings,
    pub train: TrainConfig,
    #[serde(default)]
    pub pretrain: Option<PretrainSettings>,
    #[serde(default)]
    pub task: Option<TaskSettings>,
}

impl RunSettings {
    /// Parses `base_toml` (or the file `config`, when given), applies `overrides`
    /// (`section.field=value`, value in TOML syntax or a bare string) and validates.
    pub fn resolve(base_toml: &str, config: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let text = match config {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?,
            None => base_toml.to_string(),
        };
        let mut value: toml::Value = toml::from_str(&text).with_context(|| match config {
            Some(p) => format!("{}: invalid TOML", p.display()),
            None => "embedded config: invalid TOML".into(),
        })?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let settings: Self = value
            .try_into()
            .map_err(|e: toml::de::Error| match config {
                Some(p) => anyhow!("{}: {e}", p.display()),
                None => anyhow!("config: {e}"),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.data.max_atoms == 0 {
            bail!("data.max_atoms must be at least 1");
        }
        if !(self.data.valid_fraction >= 0.0 && self.data.test_fraction >= 0.0) {
            bail!("data.valid_fraction and data.test_fraction must not be negative");
        }
        if !(0.0..1.0).contains(&(self.data.valid_fraction + self.data.test_fraction)) {
            bail!("data.valid_fraction + data.test_fraction must be below 1");
        }
        if let Some(p) = &self.pretrain {
            if !(p.mask_prob > 0.0 && p.mask_prob < 1.0) {
                bail!("pretrain.mask_prob must be within (0, 1)");
            }
        }
        if let Some(task) = &self.task {
            if task.num_classes == 0 {
                bail!("task.num_classes must be at least 1");
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("settings serialise")
    }
}

/// `a.b=value`: sets key `b` of table `a`. The value is parsed as TOML (numbers, booleans,
/// arrays, quoted strings) and falls back to a bare string.
pub fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set `{assignment}`: expected section.field=value"))?;
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|t| t.get("v").cloned())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    let mut node = root;
    for (i, key) in keys.iter().enumerate() {
        let table = node.as_table_mut().ok_or_else(|| {
            anyhow!(
                "--set `{assignment}`: `{}` is not a section",
                keys[..i].join(".")
            )
        })?;
        if i + 1 == keys.len() {
            table.insert(key.to_string(), parsed);
            return Ok(());
        }
        node = table
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    Ok(())
}

/// The encoder config of a preset name or model TOML path, sized for `vocab_size`.
pub fn model_config(model: &str, vocab_size: usize) -> Result<DebertaConfig> {
    let text = match model {
        "tiny" => TINY_TOML.to_string(),
        "small" => SMALL_TOML.to_string(),
        "base" => BASE_TOML.to_string(),
        path => std::fs::read_to_string(path).with_context(|| {
            format!(
                "model `{path}` is neither a preset (tiny, small, base) nor a readable TOML file"
            )
        })?,
    };
    let mut cfg: DebertaConfig =
        toml::from_str(&text).with_context(|| format!("model config `{model}`"))?;
    cfg.vocab_size = vocab_size;
    cfg.validate()?;
    Ok(cfg)
}

/// `layers × hidden (heads heads, intermediate)` of an encoder, for messages.
fn shape_of(c: &DebertaConfig) -> String {
    format!(
        "{} layers × {} hidden, {} heads, {} intermediate",
        c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size
    )
}

/// The `model` setting of a run that starts from a checkpoint whose encoder is `encoder`: the
/// checkpoint decides the architecture, so a model the user chose explicitly (`explicit`:
/// `--model` or `--set model=`) must be the checkpoint's, and the recorded name is the preset
/// of that size (config.toml then says what was trained), or `requested` when none matches.
pub fn model_of_checkpoint(
    requested: &str,
    explicit: bool,
    encoder: &DebertaConfig,
    checkpoint: &Path,
) -> Result<String> {
    let same = |c: &DebertaConfig| {
        (
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.intermediate_size,
        ) == (
            encoder.hidden_size,
            encoder.num_hidden_layers,
            encoder.num_attention_heads,
            encoder.intermediate_size,
        )
    };
    if explicit {
        let wanted = model_config(requested, encoder.vocab_size)?;
        if !same(&wanted) {
            bail!(
                "--model {requested} ({}) is not the model of the checkpoint {} ({}); drop \
                 --model to fine-tune the checkpoint's",
                shape_of(&wanted),
                checkpoint.display(),
                shape_of(encoder)
            );
        }
    }
    for preset in ["tiny", "small", "base"] {
        if model_config(preset, encoder.vocab_size).is_ok_and(|c| same(&c)) {
            return Ok(preset.to_string());
        }
    }
    Ok(requested.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_toml_has_no_float_noise_and_reads_back_the_same() {
        let settings = RunSettings::resolve(FINETUNE_TOML, None, &[]).unwrap();
        let written = settings.to_toml();
        assert!(written.contains("adam_beta1 = 0.9\n"), "{written}");
        assert!(written.contains("adam_beta2 = 0.999\n"), "{written}");
        let again = RunSettings::resolve(&written, None, &[]).unwrap();
        assert_eq!(again.train.adam_beta1.to_bits(), 0.9f32.to_bits());
        assert_eq!(again.train.adam_beta2, settings.train.adam_beta2);
        assert_eq!(again.train.adam_eps, settings.train.adam_eps);
    }
}
