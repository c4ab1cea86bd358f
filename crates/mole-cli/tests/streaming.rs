//! Pretraining on a streaming corpus (`data.stream`): several files through a glob, shuffled in
//! windows; an interrupted run resumes on the same trajectory, also mid-epoch and across an
//! epoch boundary; memory is bounded by the window, not by the corpus.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same_trajectory, metrics, mole, moses, repo_root, scratch};

/// `parts` files `part-K.smi` of `per_part` molecules each, from `start` in the MOSES subset.
fn shards(dir: &Path, parts: usize, per_part: usize, start: usize) -> String {
    let all = moses();
    for k in 0..parts {
        let from = start + k * per_part;
        let text = all[from..from + per_part].join("\n");
        std::fs::write(dir.join(format!("part-{k}.smi")), text).unwrap();
    }
    dir.join("part-*.smi").display().to_string()
}

#[test]
fn a_resumed_stream_follows_the_uninterrupted_trajectory() {
    let dir = scratch("stream-resume");
    // two files of 300 molecules: ~36 steps per epoch at batch 16, so 45 steps cross into the
    // second epoch; windows of 128 molecules
    let corpus = shards(&dir, 2, 300, 0);
    let common = |out: &Path| -> Vec<String> {
        [
            "pretrain",
            "--data",
            &corpus,
            "--max-steps",
            "45",
            "--batch-size",
            "16",
            "--seed",
            "3",
            "--out",
            &out.display().to_string(),
            "--set",
            "data.stream=true",
            "--set",
            "data.stream_window=128",
            "--set",
            "train.log_every=1",
            "--set",
            "train.checkpoint_every=10",
            "--set",
            "train.epochs=5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String]| mole(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let straight = dir.join("straight");
    let out = run(&common(&straight));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(straight.join("config.toml")).unwrap();
    assert!(config.contains("stream = true"), "{config}");

    // killed after 25 steps (checkpoint at 20, mid-epoch), resumed; then killed again after
    // the epoch boundary (checkpoint at 40, in the second epoch), resumed
    let broken = dir.join("broken");
    for (stop, checkpoint) in [(25, 20), (22, 40)] {
        let mut args = common(&broken);
        if checkpoint > 20 {
            args.push("--resume".into());
        }
        args.extend(["--interrupt-after".into(), stop.to_string()]);
        let out = run(&args);
        assert!(!out.status.success(), "the interrupted run must fail");
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(broken.join("resume/state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["global_step"], checkpoint);
    }
    let mut args = common(&broken);
    args.push("--resume".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_same_trajectory(&straight, &broken, 45);
    // the run crossed into the second epoch and validated at the end of the first
    let epochs: Vec<u64> = metrics(&straight)
        .iter()
        .filter(|m| m["kind"] == "train")
        .map(|m| m["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs.first(), Some(&1));
    assert_eq!(epochs.last(), Some(&2));
    assert!(metrics(&straight).iter().any(|m| m["kind"] == "valid"));

    // the stream position belongs to this corpus: a shard added since is refused on resume
    std::fs::write(dir.join("part-9.smi"), "CCO\nCCN\n").unwrap();
    let mut args = common(&broken);
    args.push("--resume".into());
    let out = run(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not the one this run started on"),
        "{stderr}"
    );
}

/// Resident memory of a `mole` run, sampled from /proc every 20 ms (Linux): the samples in
/// kB, in order.
fn rss_samples_kb(args: &[&str]) -> Vec<u64> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut samples = Vec::new();
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmRSS:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    samples.push(kb);
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "mole {} failed", args.join(" "));
            return samples;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_stream_holds_its_window_not_the_corpus() {
    let dir = scratch("stream-memory");
    // a model small enough that hundreds of steps take seconds
    let model = dir.join("micro.toml");
    let tiny = std::fs::read_to_string(repo_root().join("configs/tiny.toml")).unwrap();
    let micro = tiny
        .replace("hidden_size = 64", "hidden_size = 16")
        .replace("num_hidden_layers = 2", "num_hidden_layers = 1")
        .replace("num_attention_heads = 4", "num_attention_heads = 2")
        .replace("intermediate_size = 256", "intermediate_size = 32");
    std::fs::write(&model, micro).unwrap();
    // 4 × 30,000 molecules: featurised whole they take a few hundred MB, a window of 1,000 a
    // megabyte
    let all = moses();
    let text = all.join("\n");
    for k in 0..4 {
        std::fs::write(dir.join(format!("big-{k}.smi")), &text).unwrap();
    }
    let corpus = dir.join("big-*.smi").display().to_string();
    let out = |name: &str| dir.join(name).display().to_string();
    let (stream_out, memory_out, model) = (out("stream"), out("memory"), out("micro.toml"));
    // 480 steps of 64: 30,720 molecules, through 31 windows
    let stream = rss_samples_kb(&[
        "pretrain",
        "--data",
        &corpus,
        "--model",
        &model,
        "--max-steps",
        "480",
        "--batch-size",
        "64",
        "--out",
        &stream_out,
        "--set",
        "data.stream_window=1000",
        "--set",
        "data.stream_sample=2000",
        "--set",
        "train.log_every=100",
    ]);
    // the same molecules read the in-memory way: one file holding all four copies
    std::fs::write(dir.join("all.smi"), [text.as_str(); 4].join("\n")).unwrap();
    let memory = rss_samples_kb(&[
        "pretrain",
        "--data",
        &out("all.smi"),
        "--model",
        &model,
        "--max-steps",
        "5",
        "--out",
        &memory_out,
        "--set",
        "data.stream=false",
    ]);
    let peak = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
    let (stream_peak, memory_peak) = (peak(&stream), peak(&memory));
    eprintln!(
        "peak RSS: stream {stream_peak} kB over {} samples, in memory {memory_peak} kB",
        stream.len()
    );
    assert!(
        stream_peak * 3 < memory_peak,
        "streaming peak {stream_peak} kB is not far below the in-memory peak {memory_peak} kB"
    );
    // flat over time: the last quarter of the run needs no more than the second quarter
    let quarter = stream.len() / 4;
    assert!(
        quarter >= 5,
        "too few samples ({}) to see a trend",
        stream.len()
    );
    let (second, last) = (
        peak(&stream[quarter..2 * quarter]),
        peak(&stream[3 * quarter..]),
    );
    eprintln!("second quarter {second} kB, last quarter {last} kB");
    assert!(
        last <= second + second / 8,
        "memory grew while streaming: {second} kB → {last} kB"
    );
    assert!(Path::new(&stream_out).join("best.safetensors").exists());
}

#[test]
fn a_target_vocabulary_counted_over_all_shards_in_one_pass_drives_pretraining() {
    let dir = scratch("stream-vocab");
    let corpus = shards(&dir, 3, 400, 1000);
    let vocab = dir.join("targets.json");
    let out = mole(&[
        "vocab",
        "build",
        &corpus,
        "--radius",
        "2",
        "--min-count",
        "2",
        "-o",
        vocab.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("in 1200 molecules from 3 file(s)"),
        "{summary}"
    );
    let targets = mole_featurize::Vocabulary::from_json_file(&vocab).unwrap();
    let run = dir.join("run");
    let args = |run: &Path, vocab: &Path| -> Vec<String> {
        [
            "pretrain",
            "--data",
            &corpus,
            "--max-steps",
            "3",
            "--out",
            &run.display().to_string(),
            "--set",
            &format!("data.target_vocab={:?}", vocab.display().to_string()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = args(&run, &vocab);
    let out = mole(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = mole_nn::StateDict::load(&run.join("best.safetensors")).unwrap();
    let used = mole_featurize::Vocabulary::from_json_str(&saved.metadata["target_vocab"]).unwrap();
    assert_eq!(used.identifiers(), targets.identifiers());
    // a radius-0 vocabulary is not a target vocabulary
    let inputs = dir.join("inputs.json");
    let out = mole(&[
        "vocab",
        "build",
        &corpus,
        "--radius",
        "0",
        "-o",
        inputs.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let a = args(&dir.join("run0"), &inputs);
    let out = mole(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("radius-0 vocabulary"));
}

#[test]
#[cfg(unix)]
fn killed_with_sigkill_mid_epoch_it_resumes_on_the_same_trajectory() {
    let dir = scratch("stream-kill");
    // 3 files of 400 molecules at batch 8: ~140 steps per epoch, so the kill lands mid-epoch;
    // a checkpoint every 7 steps
    let corpus = shards(&dir, 3, 400, 600);
    let args = |out: &Path| -> Vec<String> {
        [
            "pretrain",
            "--data",
            &corpus,
            "--max-steps",
            "90",
            "--batch-size",
            "8",
            "--seed",
            "5",
            "--out",
            &out.display().to_string(),
            "--set",
            "data.stream=true",
            "--set",
            "data.stream_window=200",
            "--set",
            "train.log_every=1",
            "--set",
            "train.checkpoint_every=7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let straight = dir.join("straight");
    let out = mole(
        &args(&straight)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGKILL (no chance to clean up) once a dozen steps are logged
    let killed = dir.join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
        .args(args(&killed))
        .current_dir(repo_root())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let logged = || {
        std::fs::read_to_string(killed.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while logged() < 12 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 600, "no progress to kill");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let steps_before_kill = logged();
    assert!(
        steps_before_kill < 90,
        "the kill came after the run ended ({steps_before_kill} steps logged)"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
        .args(args(&killed))
        .arg("--resume")
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // it continued from a checkpoint, not from the start (which would give the same losses)
    assert!(stderr.contains("resuming"), "{stderr}");
    assert!(!stderr.contains("starting fresh"), "{stderr}");
    assert_same_trajectory(&straight, &killed, 90);
    // the whole run was one epoch: the kill was mid-epoch
    assert!(metrics(&straight)
        .iter()
        .filter(|m| m["kind"] == "train")
        .all(|m| m["epoch"] == 1));
}

#[test]
fn a_labelled_stream_pretrains_stage_two_resumes_and_tests_on_its_split_column() {
    let dir = scratch("stream-labelled");
    // Tox21's 500 molecules (12 tasks, missing labels) in two files with a split column:
    // every 5th row test, every 7th (not 5th) validation
    let text = std::fs::read_to_string(repo_root().join("datasets/tox21_500.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut test_smiles = std::collections::BTreeSet::new();
    for (k, part) in rows.chunks(250).enumerate() {
        let mut out = format!("{header},split\n");
        for (i, row) in part.iter().enumerate() {
            let n = k * 250 + i;
            let split = if n % 5 == 0 {
                "test"
            } else if n % 7 == 0 {
                "valid"
            } else {
                "train"
            };
            if split == "test" {
                test_smiles.insert(row.split(',').next().unwrap().to_string());
            }
            out.push_str(&format!("{row},{split}\n"));
        }
        std::fs::write(dir.join(format!("tox-{k}.csv")), out).unwrap();
    }
    let corpus = dir.join("tox-*.csv").display().to_string();
    let args = |out: &Path| -> Vec<String> {
        [
            "pretrain",
            "--stage",
            "multitask",
            "--data",
            &corpus,
            "--max-steps",
            "30",
            "--batch-size",
            "16",
            "--seed",
            "2",
            "--out",
            &out.display().to_string(),
            "--set",
            "data.stream=true",
            "--set",
            "data.stream_window=64",
            "--set",
            "data.split_column=\"split\"",
            "--set",
            "train.log_every=1",
            "--set",
            "train.checkpoint_every=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String]| mole(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let straight = dir.join("straight");
    let out = run(&args(&straight));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // interrupted after 15 steps (checkpoint at 10) and resumed: the same trajectory
    let broken = dir.join("broken");
    let mut interrupted = args(&broken);
    interrupted.extend(["--interrupt-after".into(), "15".into()]);
    assert!(!run(&interrupted).status.success());
    let mut resumed = args(&broken);
    resumed.push("--resume".into());
    let out = run(&resumed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_trajectory(&straight, &broken, 30);

    // tested on exactly the rows the split column marks `test` (those with a label)
    let predictions = std::fs::read_to_string(straight.join("test_predictions.csv")).unwrap();
    let tested: std::collections::BTreeSet<String> = predictions
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert!(tested.len() >= 90, "{} test molecules", tested.len());
    assert!(tested.is_subset(&test_smiles));
    let test = metrics(&straight)
        .into_iter()
        .find(|m| m["kind"] == "test")
        .expect("a test entry in metrics.jsonl");
    assert_eq!(test["molecules"].as_u64(), Some(test_smiles.len() as u64));
    assert!(test["auroc"].as_f64().is_some(), "{test}");
    // validation came from the split column too
    assert!(metrics(&straight).iter().any(|m| m["kind"] == "valid"));

    // a table sorted by its split column, validation rows last and far beyond the sample of
    // 50 training rows: they are still found
    let sorted_dir = dir.join("sorted");
    std::fs::create_dir_all(&sorted_dir).unwrap();
    let mut sorted = format!("{header},split\n");
    let mut valid_rows = String::new();
    for (n, row) in rows.iter().enumerate() {
        if n % 7 == 0 {
            valid_rows.push_str(&format!("{row},valid\n"));
        } else {
            sorted.push_str(&format!("{row},train\n"));
        }
    }
    sorted.push_str(&valid_rows);
    std::fs::write(sorted_dir.join("sorted.csv"), sorted).unwrap();
    let sorted_run = dir.join("sorted-run");
    let mut sorted_args = args(&sorted_run);
    let data_at = sorted_args.iter().position(|a| a == "--data").unwrap() + 1;
    sorted_args[data_at] = sorted_dir.join("sorted.csv").display().to_string();
    sorted_args.extend(["--set".into(), "data.stream_sample=50".into()]);
    let out = run(&sorted_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(metrics(&sorted_run).iter().any(|m| m["kind"] == "valid"));
}
