//! The run directory: the lock that keeps two runs out of one folder, and what `--resume` and
//! `--force` may find there (`mole_train` recovers an interrupted swap of `resume/`).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Exclusive hold on a run directory for the life of a command (an OS file lock on
/// `<run>/.lock`, released by the kernel even after `kill -9`): a second run with the same
/// `--out` fails at once instead of overwriting the first one's files.
pub struct RunDirLock {
    _file: std::fs::File,
}

/// How a training command may use an existing run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunDirUse {
    /// A new run: refused when the directory already holds one.
    Fresh,
    /// `--resume`: continue the run there (its configuration must match).
    Resume,
    /// `--force`: replace whatever run the directory holds.
    Replace,
}

impl RunDirUse {
    pub fn of(resume: bool, force: bool) -> Self {
        match (resume, force) {
            (true, _) => Self::Resume,
            (false, true) => Self::Replace,
            (false, false) => Self::Fresh,
        }
    }
}

/// Files of a run that a new run in the same directory would overwrite.
pub(super) const RUN_FILES: [&str; 5] = [
    "config.toml",
    "metrics.jsonl",
    "best.safetensors",
    "last.safetensors",
    "rejects.csv",
];

/// The resumable checkpoint and the two folders its atomic replacement passes through.
pub(super) const RESUME_DIRS: [&str; 3] = ["resume", "resume.old", "resume.tmp"];

/// Locks `run_dir` (creating it) and checks it may be used as asked, before anything is
/// written there: a fresh run is refused where a run already is (`--resume` continues it,
/// `--force` replaces it); `--resume` is refused when the saved configuration differs from
/// `settings_toml` in anything but the run's length and logging.
pub fn prepare_run_dir(run_dir: &Path, how: RunDirUse, settings_toml: &str) -> Result<RunDirLock> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create the run directory", run_dir.display()))?;
    let lock_path = run_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot create", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{}: another mole command is running in this run directory; wait for it or choose \
             another --out",
            run_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock", lock_path.display()))
        }
    }
    let existing: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| run_dir.join(f).exists())
        .chain(RESUME_DIRS.into_iter().filter(|d| run_dir.join(d).exists()))
        .collect();
    match how {
        RunDirUse::Fresh if !existing.is_empty() => bail!(
            "{} already holds a run ({}): use --resume to continue it, --force to replace it, \
             or another --out",
            run_dir.display(),
            existing.join(", ")
        ),
        RunDirUse::Fresh => {}
        RunDirUse::Replace => {
            if !existing.is_empty() {
                tracing::warn!("--force: replacing the run in {}", run_dir.display());
            }
            for f in RUN_FILES {
                let _ = std::fs::remove_file(run_dir.join(f));
            }
            for d in RESUME_DIRS {
                let _ = std::fs::remove_dir_all(run_dir.join(d));
            }
        }
        RunDirUse::Resume => {
            if let Ok(saved) = std::fs::read_to_string(run_dir.join("config.toml")) {
                let differences = config_differences(&saved, settings_toml)?;
                if !differences.is_empty() {
                    bail!(
                        "--resume: {} was run with another configuration ({}); resume with the \
                         run's settings (see its config.toml), or start a new run with --force \
                         or another --out",
                        run_dir.display(),
                        differences.join("; ")
                    );
                }
            }
        }
    }
    Ok(RunDirLock { _file: file })
}

/// Settings a resumed run may change: how long it runs and how often it logs.
pub(super) const RESUMABLE_CHANGES: [&str; 6] = [
    "train.epochs",
    "train.max_steps",
    "train.early_stopping_patience",
    "train.log_every",
    "train.validate_every",
    "train.checkpoint_every",
];

/// `key: saved → requested` for every setting of the saved config TOML that the requested one
/// changes, except [`RESUMABLE_CHANGES`].
pub(super) fn config_differences(saved: &str, requested: &str) -> Result<Vec<String>> {
    pub(super) fn flatten(
        prefix: &str,
        v: &toml::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let parse = |text: &str| -> Result<std::collections::BTreeMap<String, String>> {
        let value: toml::Value = toml::from_str(text).context("the run's config.toml")?;
        let mut out = std::collections::BTreeMap::new();
        flatten("", &value, &mut out);
        Ok(out)
    };
    let (saved, requested) = (parse(saved)?, parse(requested)?);
    let keys: std::collections::BTreeSet<&String> = saved.keys().chain(requested.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| !RESUMABLE_CHANGES.contains(&k.as_str()))
        // a setting the run's file lacks was added since (it ran with its default)
        .filter(|k| saved.contains_key(*k) && saved.get(*k) != requested.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!(
                "{k}: {} in the run, {} now",
                show(saved.get(k)),
                show(requested.get(k))
            )
        })
        .collect())
}
