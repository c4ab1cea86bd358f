//! Pretrained models shipped inside mole: usable by name wherever a checkpoint path is taken,
//! with no download (docs/model-card.md describes each).
//!
//! ```no_run
//! use std::path::Path;
//! // a path that exists is itself; a bundled model's name is its cached file
//! let path = mole_model::zoo::resolve_checkpoint(Path::new("mole-tiny-zinc-chembl")).unwrap();
//! ```

use std::path::{Path, PathBuf};

use mole_nn::StateDict;

use crate::ModelError;

/// A pretrained model compiled into the library: a mole checkpoint (encoder only, with its
/// vocabulary and how it was made in the metadata).
pub struct BundledModel {
    /// The name it is asked for by (`--checkpoint mole-tiny-zinc-chembl`).
    pub name: &'static str,
    /// Raised whenever the weights change (docs/model-card.md records each version).
    pub version: u32,
    /// One line: architecture and pretraining data.
    pub summary: &'static str,
    bytes: &'static [u8],
}

/// The model `mole embed` uses and `mole finetune` starts from unless told otherwise.
pub const DEFAULT_MODEL: &str = "mole-tiny-zinc-chembl";

/// Every bundled model.
pub const BUNDLED_MODELS: &[BundledModel] = &[BundledModel {
    name: "mole-tiny-zinc-chembl",
    version: 1,
    summary: "tiny MolE (2 layers x 64), stage 1, one epoch over 1.8 M deduplicated molecules \
              of MOSES (ZINC) and a ChEMBL sample (configs/pretrain-zinc-chembl.toml)",
    bytes: include_bytes!("../models/mole-tiny-zinc-chembl.safetensors"),
}];

/// The bundled model called `name`, if there is one.
pub fn bundled_model(name: &str) -> Option<&'static BundledModel> {
    BUNDLED_MODELS.iter().find(|m| m.name == name)
}

impl BundledModel {
    /// The checkpoint's tensors and metadata.
    pub fn state_dict(&self) -> Result<StateDict, ModelError> {
        Ok(StateDict::from_safetensors_bytes(self.bytes, self.name)?)
    }

    /// The checkpoint's bytes (a safetensors file).
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }

    /// A file holding the checkpoint, for APIs that read paths: written once into the cache
    /// directory ([`cache_dir`]) under a name that changes with the content, so a newer mole
    /// never reads an older model's file.
    /// Where the cache cannot be written (a read-only home), the system's temporary directory
    /// serves instead.
    pub fn path(&self) -> Result<PathBuf, ModelError> {
        self.path_in(&cache_dir())
            .or_else(|_| self.path_in(&std::env::temp_dir().join("mole")))
    }

    /// [`BundledModel::path`] with `cache` as the cache directory.
    pub fn path_in(&self, cache: &Path) -> Result<PathBuf, ModelError> {
        let dir = cache.join("models");
        let path = dir.join(format!(
            "{}-{:016x}.safetensors",
            self.name,
            fnv1a(self.bytes)
        ));
        let io = |e: std::io::Error| ModelError::Checkpoint {
            path: path.display().to_string(),
            why: format!("cannot write the bundled model {} there: {e}", self.name),
        };
        let complete =
            || std::fs::metadata(&path).is_ok_and(|m| m.len() == self.bytes.len() as u64);
        if !complete() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            // a unique temporary name and a rename: concurrent runs never see half a file
            let tmp = dir.join(format!(
                ".{}-{}-{:?}.tmp",
                self.name,
                std::process::id(),
                std::thread::current().id()
            ));
            let written =
                std::fs::write(&tmp, self.bytes).and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                // another process may have put the same file there first
                if !complete() {
                    return Err(io(e));
                }
            }
        }
        Ok(path)
    }
}

/// Where bundled models are unpacked: `$MOLE_CACHE_DIR`, else `$XDG_CACHE_HOME/mole`, else
/// `~/.cache/mole`, else the system's temporary directory.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("MOLE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("mole")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("mole")))
        .unwrap_or_else(|| std::env::temp_dir().join("mole"))
}

/// A checkpoint argument as a path: an existing file is itself; otherwise a bundled model's
/// name is that model's cached file; anything else is returned unchanged (its reader then
/// says it is missing).
pub fn resolve_checkpoint(spec: &Path) -> Result<PathBuf, ModelError> {
    resolve_checkpoint_in(spec, &cache_dir())
}

/// [`resolve_checkpoint`] with `cache` as the cache directory.
pub fn resolve_checkpoint_in(spec: &Path, cache: &Path) -> Result<PathBuf, ModelError> {
    // a file wins; a folder of that name (a run directory, say) does not hide the model
    if spec.is_file() {
        return Ok(spec.to_path_buf());
    }
    match spec.to_str().and_then(bundled_model) {
        Some(model) => model.path_in(cache),
        None => Ok(spec.to_path_buf()),
    }
}

/// 64-bit FNV-1a: a stable content hash for the cache file name (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

    #[test]
    fn every_bundled_model_is_an_encoder_only_checkpoint_that_loads() {
        for model in BUNDLED_MODELS {
            let dict = model.state_dict().unwrap();
            let dir = std::env::temp_dir().join(format!("mole-zoo-load-{}", std::process::id()));
            let checkpoint =
                crate::Checkpoint::<Flex>::load(&model.path_in(&dir).unwrap(), &Default::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", model.name));
            assert!(checkpoint.config.head.is_none() && checkpoint.config.atom_env_head.is_none());
            assert!(checkpoint.target_vocab.is_none());
            assert_eq!(checkpoint.info.stage, Some(crate::TrainingStage::AtomEnv));
            assert!(
                dict.tensors.keys().all(|k| !k.contains("head.")),
                "{}",
                model.name
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
        assert!(bundled_model(DEFAULT_MODEL).is_some());
    }

    #[test]
    fn names_resolve_to_the_cached_file_and_paths_to_themselves() {
        let dir = std::env::temp_dir().join(format!("mole-zoo-test-{}", std::process::id()));
        let path = resolve_checkpoint_in(Path::new(DEFAULT_MODEL), &dir).unwrap();
        assert!(path.starts_with(&dir));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bundled_model(DEFAULT_MODEL).unwrap().bytes()
        );
        // again: the same file, not a second copy
        assert_eq!(
            resolve_checkpoint_in(Path::new(DEFAULT_MODEL), &dir).unwrap(),
            path
        );
        assert_eq!(resolve_checkpoint_in(&path, &dir).unwrap(), path);
        let missing = Path::new("no-such-model.safetensors");
        assert_eq!(resolve_checkpoint_in(missing, &dir).unwrap(), missing);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
