//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn shared() -> PathBuf {
    repo_root().join("../shared")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mole-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `mole` command with `args`, run from the repository root (add `.env(..)` to change its
/// environment, then `.output()`).
pub fn mole_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mole"));
    command
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        // the bundled model is unpacked here, not into the user's ~/.cache
        .env(
            "MOLE_CACHE_DIR",
            std::env::temp_dir().join("mole-cli-test-cache"),
        );
    command
}

/// Runs `mole` from the repository root.
pub fn mole(args: &[&str]) -> Output {
    mole_command(args).output().expect("mole runs")
}

/// Fails the test with `mole`'s stderr when `out` is not a success.
pub fn assert_succeeded(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "mole {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `mole` and fails the test with its stderr when it does not succeed.
pub fn mole_ok(args: &[&str]) -> Output {
    let out = mole(args);
    assert_succeeded(args, &out);
    out
}

/// Parsed lines of a run's metrics.jsonl.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn last_of_kind(run: &Path, kind: &str) -> serde_json::Value {
    metrics(run)
        .into_iter()
        .rev()
        .find(|m| m["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} entry in {}", run.display()))
}

/// The bundled MOSES subset's SMILES, one per line.
pub fn moses() -> Vec<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(repo_root().join("datasets/moses_30k.smi.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    text.lines().map(str::to_string).collect()
}

/// A small pretraining corpus: the first `n` molecules of the bundled MOSES subset, written to
/// `dir/corpus.smi`.
pub fn small_corpus(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("corpus.smi");
    let lines: Vec<String> = moses().into_iter().take(n).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Training loss per step of a run; later entries win (a resumed run re-logs the steps after
/// its checkpoint).
pub fn train_losses(run: &Path) -> std::collections::BTreeMap<u64, f64> {
    metrics(run)
        .into_iter()
        .filter(|m| m["kind"] == "train")
        .map(|m| (m["step"].as_u64().unwrap(), m["loss"].as_f64().unwrap()))
        .collect()
}

/// A resumed run logged the same steps as the uninterrupted one with the same losses (to
/// 1e-5 relative), `steps` of them.
pub fn assert_same_trajectory(uninterrupted: &Path, resumed: &Path, steps: usize) {
    let a = train_losses(uninterrupted);
    let b = train_losses(resumed);
    assert_eq!(a.len(), steps);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (step, la) in &a {
        let lb = b[step];
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1.0),
            "step {step}: uninterrupted {la} vs resumed {lb}"
        );
    }
    // the losses really changed over the run (the comparison is not trivially constant)
    assert!((a[&1] - a[&(steps as u64)]).abs() > 0.1);
}
