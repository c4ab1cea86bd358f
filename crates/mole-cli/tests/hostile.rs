//! Hostile inputs and interruptions (issue 14): every case is made by the test, run through the
//! `mole` binary, and checked for what the user would see — no panic, no lost or shifted row,
//! no clobbered file, a non-zero exit with the file and reason when the command failed.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{mole, mole_ok, repo_root, scratch, small_corpus};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails the test when `mole` panicked or was killed instead of exiting with an error.
fn assert_clean_failure(out: &std::process::Output, expect_in_message: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {out:?}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        err.contains(expect_in_message),
        "expected `{expect_in_message}` in: {err}"
    );
}

/// A small fine-tuned checkpoint (tiny model, a few steps), made once per test that needs it.
fn checkpoint(dir: &Path) -> PathBuf {
    let run = dir.join("ckpt-run");
    mole_ok(&[
        "finetune",
        "--data",
        "datasets/esol.csv",
        "--max-steps",
        "3",
        "--out",
        s(&run),
    ]);
    run.join("best.safetensors")
}

/// Runs `mole <command> --checkpoint ckpt -i input -o output extra…` (predict or embed),
/// failing the test when it fails.
fn infer(
    command: &str,
    ckpt: &Path,
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        command,
        "--checkpoint",
        s(ckpt),
        "-i",
        s(input),
        "-o",
        s(output),
    ];
    args.extend_from_slice(extra);
    mole_ok(&args)
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    (header, r.records().map(|x| x.unwrap()).collect())
}

#[test]
fn sharded_outputs_concatenate_to_the_unsharded_output() {
    let dir = scratch("hostile-shards");
    let ckpt = checkpoint(&dir);
    // 46 records (not a multiple of 3), a blank line and a bad SMILES among them; small chunks so
    // that part boundaries fall inside chunks.
    let text = std::fs::read_to_string(common::repo_root().join("datasets/esol.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().skip(1).take(45).map(String::from).collect();
    lines.insert(10, String::new());
    lines.insert(30, "not-a-smiles,1.0".into());
    let input = dir.join("molecules.csv");
    let header = text.lines().next().unwrap();
    std::fs::write(&input, format!("{header}\n{}\n", lines.join("\n"))).unwrap();
    let chunk = ["--chunk-size", "7", "--batch-size", "4"];
    for (command, ext) in [("predict", "csv"), ("embed", "csv"), ("embed", "npy")] {
        let whole = dir.join(format!("{command}-whole.{ext}"));
        infer(command, &ckpt, &input, &whole, &chunk);
        let mut parts = Vec::new();
        for k in 0..3 {
            let part = dir.join(format!("{command}-part{k}.{ext}"));
            let shard = format!("{k}/3");
            let mut extra = chunk.to_vec();
            extra.extend(["--shard", &shard]);
            infer(command, &ckpt, &input, &part, &extra);
            parts.push(part);
        }
        let (whole_file, part_files): (PathBuf, Vec<PathBuf>) = if ext == "npy" {
            // .npy parts are arrays of their own; their row sidecars concatenate
            let rows = |p: &Path| p.with_extension("rows.csv");
            (rows(&whole), parts.iter().map(|p| rows(p)).collect())
        } else {
            (whole.clone(), parts.clone())
        };
        let mut joined = Vec::new();
        for p in &part_files {
            joined.extend(std::fs::read(p).unwrap());
        }
        assert!(
            joined == std::fs::read(&whole_file).unwrap(),
            "{command} {ext}: the parts do not concatenate to the whole"
        );
        if ext == "npy" {
            // each part a complete array; their rows add up to the whole's
            let rows_of = |p: &Path| {
                let bytes = std::fs::read(p).unwrap();
                let header = String::from_utf8_lossy(&bytes[..128.min(bytes.len())]).to_string();
                let start = header.find("'shape': (").unwrap() + "'shape': (".len();
                header[start..]
                    .split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<usize>()
                    .unwrap()
            };
            let total: usize = parts.iter().map(|p| rows_of(p)).sum();
            assert_eq!(total, rows_of(&whole));
            // 46 records: in a CSV a blank line is no record (in a .smi it is a row)
            assert_eq!(rows_of(&whole), 46);
        }
    }
    // K must be below N
    let out = common::mole(&[
        "predict",
        "--checkpoint",
        s(&ckpt),
        "-i",
        s(&input),
        "-o",
        s(&dir.join("x.csv")),
        "--shard",
        "3/3",
    ]);
    // refused while parsing the arguments (clap's exit status 2), with the reason
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("0 ≤ K < N"), "{err}");
}

#[test]
fn dash_writes_predictions_and_embeddings_to_standard_output() {
    let dir = scratch("hostile-stdout");
    let ckpt = checkpoint(&dir);
    let input = common::repo_root().join("datasets/esol.csv");
    for command in ["predict", "embed"] {
        let file = dir.join(format!("{command}.csv"));
        infer(command, &ckpt, &input, &file, &[]);
        let out = infer(command, &ckpt, &input, Path::new("-"), &[]);
        // stdout carries the very CSV the file got, and nothing else (logs go to stderr)
        assert!(
            out.stdout == std::fs::read(&file).unwrap(),
            "{command}: stdout differs from the file output"
        );
        assert!(!dir.join("-").exists());
    }
}

#[test]
fn predict_and_embed_keep_one_row_per_input_line() {
    let dir = scratch("hostile-rows");
    let ckpt = checkpoint(&dir);
    // CRLF, a BOM, a blank line, a Latin-1 name, a bad SMILES, unknown atoms, a huge molecule
    let input = dir.join("mixed.smi");
    let mut bytes = b"\xEF\xBB\xBFCCO ethanol\r\n\r\nCCN\r\nC1CC broken\r\n".to_vec();
    bytes.extend_from_slice(b"CCCl caf\xE9\r\n[Na+].[Cl-]\r\nC[Si](C)(C)C\r\n");
    bytes.extend_from_slice("C".repeat(1500).as_bytes());
    bytes.extend_from_slice(b"\r\nc1ccccc1O phenol\r\n");
    std::fs::write(&input, &bytes).unwrap();

    let pred = dir.join("pred.csv");
    let out = infer("predict", &ckpt, &input, &pred, &[]);
    let (header, rows) = csv_rows(&pred);
    assert_eq!(
        header,
        [
            "line",
            "smiles",
            "name",
            "logS_pred",
            "unknown_atoms",
            "error"
        ]
    );
    assert_eq!(rows.len(), 9, "one row per input line");
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row[0].parse::<usize>().unwrap(), k + 1, "row {k}: {row:?}");
    }
    let error = |k: usize| rows[k][5].to_string();
    let predicted = |k: usize| rows[k][3].parse::<f32>().is_ok_and(f32::is_finite);
    assert!(predicted(0) && &rows[0][1] == "CCO" && &rows[0][2] == "ethanol");
    assert_eq!(error(1), "empty line");
    assert!(predicted(2));
    assert!(error(3).contains("ring bond"), "{}", error(3));
    assert!(error(4).contains("not UTF-8"), "{}", error(4));
    assert!(
        predicted(5) && &rows[5][4] == "2",
        "[Na+].[Cl-]: {:?}",
        rows[5]
    );
    assert!(predicted(6) && &rows[6][4] == "1", "Si: {:?}", rows[6]);
    assert!(error(7).contains("too large"), "{}", error(7));
    assert!(predicted(8) && &rows[8][2] == "phenol");
    assert!(stderr(&out).contains("outside the checkpoint's vocabulary"));

    // --reject-unknown turns atoms outside the vocabulary into rejected rows
    let strict = dir.join("strict.csv");
    infer("predict", &ckpt, &input, &strict, &["--reject-unknown"]);
    let (_, rows) = csv_rows(&strict);
    assert_eq!(rows.len(), 9);
    assert!(rows[5][5].contains("outside the vocabulary") && rows[5][3].is_empty());

    // a CRLF table (what Python's csv module writes): line numbers count the header as line 1
    let crlf = dir.join("crlf.csv");
    std::fs::write(&crlf, "smiles,y\r\nCCO,1\r\nC1CC,2\r\nCCN,x\r\n").unwrap();
    let crlf_pred = dir.join("crlf_pred.csv");
    infer("predict", &ckpt, &crlf, &crlf_pred, &[]);
    let (_, rows) = csv_rows(&crlf_pred);
    let lines: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(lines, ["2", "3", "4"]);
    let run = dir.join("crlf-run");
    mole_ok(&[
        "finetune",
        "--data",
        s(&crlf),
        "--max-steps",
        "1",
        "--out",
        s(&run),
    ]);
    let rejects = std::fs::read_to_string(run.join("rejects.csv")).unwrap();
    assert!(
        rejects.contains("\n3,") && rejects.contains("\n4,"),
        "{rejects}"
    );

    // embed: the .npy has the same rows (NaN where rejected) and a sidecar names them
    let npy = dir.join("emb.npy");
    infer("embed", &ckpt, &input, &npy, &[]);
    let data = std::fs::read(&npy).unwrap();
    let header = String::from_utf8_lossy(&data[10..128]).to_string();
    assert!(header.contains("'shape': (9, 64)"), "{header}");
    assert_eq!(data.len(), 128 + 9 * 64 * 4);
    let row_is_nan = |k: usize| {
        let at = 128 + k * 64 * 4;
        f32::from_le_bytes(data[at..at + 4].try_into().unwrap()).is_nan()
    };
    assert!(!row_is_nan(0) && row_is_nan(1) && !row_is_nan(2) && row_is_nan(3));
    let (side_header, side) = csv_rows(&dir.join("emb.rows.csv"));
    assert_eq!(
        side_header,
        ["line", "smiles", "name", "unknown_atoms", "error"]
    );
    assert_eq!(side.len(), 9);
    assert_eq!(&side[1][4], "empty line");
    // embed CSV: the same rows with their line
    let emb_csv = dir.join("emb.csv");
    infer("embed", &ckpt, &input, &emb_csv, &[]);
    let (header, rows) = csv_rows(&emb_csv);
    assert_eq!(header[0], "line");
    assert_eq!(header.last().unwrap(), "error");
    assert_eq!(rows.len(), 9);
}

#[test]
fn damaged_files_fail_the_command_and_leave_no_output() {
    let dir = scratch("hostile-files");
    // a gzip stream cut short
    let gz = std::fs::read(repo_root().join("datasets/moses_30k.smi.gz")).unwrap();
    let truncated = dir.join("cut.smi.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 3]).unwrap();
    // a binary file, and a directory, with molecule-file names
    let binary = dir.join("binary.smi");
    std::fs::write(&binary, b"CCO\n\x00\x01\x02\x7fELF\x00\x00").unwrap();
    let folder = dir.join("folder.smi");
    std::fs::create_dir_all(&folder).unwrap();
    let cases = [
        (&truncated, "cut.smi.gz"),
        (&binary, "not a text file"),
        (&folder, "is a directory"),
    ];
    for (input, message) in cases {
        let output = dir.join("out.jsonl");
        let out = mole(&["featurize", s(input), "-o", s(&output)]);
        assert_clean_failure(&out, message);
        assert!(!output.exists(), "{}: output left behind", input.display());
    }
    // the same for a training corpus
    let out = mole(&[
        "pretrain",
        "--data",
        s(&truncated),
        "--max-steps",
        "1",
        "--out",
        s(&dir.join("run")),
    ]);
    assert_clean_failure(&out, "cut.smi.gz");
    // and for predict, which must not replace an existing result with a partial one
    let ckpt = checkpoint(&dir);
    let result = dir.join("result.csv");
    std::fs::write(&result, "an earlier result\n").unwrap();
    let out = mole(&[
        "predict",
        "--checkpoint",
        s(&ckpt),
        "-i",
        s(&truncated),
        "-o",
        s(&result),
    ]);
    assert_clean_failure(&out, "cut.smi.gz");
    assert_eq!(
        std::fs::read_to_string(&result).unwrap(),
        "an earlier result\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_options_and_checkpoints_are_refused_with_a_reason() {
    let dir = scratch("hostile-options");
    let ckpt = checkpoint(&dir);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "finetune",
            "--data",
            "datasets/esol.csv",
            "--max-steps",
            "2",
        ];
        args.extend_from_slice(extra);
        mole(&args)
    };
    let fresh = |name: &str| dir.join(name).display().to_string();
    let o = fresh("gc");
    assert_clean_failure(
        &run(&["--set", "train.grad_clip=-1", "--out", &o]),
        "grad_clip",
    );
    // a loss that becomes NaN stops the run instead of training on
    let o = fresh("nan");
    assert_clean_failure(
        &run(&[
            "--lr",
            "1e30",
            "--set",
            "train.log_every=1",
            "--set",
            "train.warmup_fraction=0",
            "--out",
            &o,
        ]),
        "training loss became NaN",
    );
    let out = mole(&["benchmark", "--data", "datasets/esol.csv", "--seeds", "0"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses --seeds 0");
    let o = fresh("ep");
    let out = run(&["--epochs", "0", "--out", &o]);
    assert_eq!(out.status.code(), Some(2), "clap refuses --epochs 0");
    assert!(stderr(&out).contains("at least 1"));
    let out = mole(&[
        "evaluate",
        "--checkpoint",
        s(&ckpt),
        "--data",
        "datasets/esol.csv",
        "--batch-size",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("panicked"));
    // a model that is not the checkpoint's
    let o = fresh("mm");
    assert_clean_failure(
        &run(&["--checkpoint", s(&ckpt), "--model", "small", "--out", &o]),
        "is not the model of the checkpoint",
    );
    // --set model= is a choice of model too
    let o = fresh("ckpt-model");
    let out = run(&[
        "--checkpoint",
        s(&ckpt),
        "--set",
        "model=\"small\"",
        "--out",
        &o,
    ]);
    assert_clean_failure(&out, "is not the model of the checkpoint");

    // labels: none at all; out of range; a single class
    let nolabels = dir.join("nolabels.csv");
    std::fs::write(&nolabels, "smiles,y\nCCO,\nCCC,nan\nCCN,NA\n").unwrap();
    assert_clean_failure(
        &mole(&["finetune", "--data", s(&nolabels), "--out", &fresh("nolab")]),
        "no labels",
    );
    let mut huge = String::from("smiles,y\n");
    let mut esol = csv::Reader::from_path(repo_root().join("datasets/esol.csv")).unwrap();
    for (i, r) in esol.records().take(60).enumerate() {
        let r = r.unwrap();
        let y = if i % 10 == 0 { "3e38" } else { &r[1] };
        huge.push_str(&format!("{},{y}\n", &r[0]));
    }
    let huge_path = dir.join("huge_labels.csv");
    std::fs::write(&huge_path, huge).unwrap();
    let hl = dir.join("hl");
    let out = mole_ok(&[
        "finetune",
        "--data",
        s(&huge_path),
        "--max-steps",
        "3",
        "--out",
        s(&hl),
    ]);
    let rejects = std::fs::read_to_string(hl.join("rejects.csv")).unwrap();
    assert_eq!(rejects.matches("out of range").count(), 6, "{rejects}");
    assert!(!stderr(&out).contains("null"));
    let one_class = dir.join("one_class.csv");
    let mut text = String::from("smiles,y\n");
    for smi in ["CCO", "CCC", "CCCC", "CCN", "CCCN", "OCC", "OCCC", "CCCCO"] {
        text.push_str(&format!("{smi},1\n"));
    }
    std::fs::write(&one_class, text).unwrap();
    let out = mole_ok(&[
        "finetune",
        "--data",
        s(&one_class),
        "--task",
        "classification",
        "--max-steps",
        "1",
        "--out",
        &fresh("oc"),
    ]);
    assert!(stderr(&out).contains("one class only"), "{}", stderr(&out));

    // checkpoints: missing, truncated, not a checkpoint, vocabulary larger than the table
    let out = mole(&[
        "predict",
        "--checkpoint",
        s(&dir.join("nope.safetensors")),
        "-i",
        "datasets/esol.csv",
        "-o",
        &fresh("p.csv"),
    ]);
    assert_clean_failure(&out, "nope.safetensors");
    let err = stderr(&out);
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "repeated cause: {err}"
    );
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for bad in [&cut, &dir.join("nolabels.csv")] {
        let out = mole(&[
            "predict",
            "--checkpoint",
            s(bad),
            "-i",
            "datasets/esol.csv",
            "-o",
            &fresh("p.csv"),
        ]);
        assert_clean_failure(&out, bad.file_name().unwrap().to_str().unwrap());
        assert!(!stderr(&out).contains("MetadataIncompleteBuffer:"));
    }
    assert!(stderr(&mole(&[
        "predict",
        "--checkpoint",
        s(&cut),
        "-i",
        "datasets/esol.csv",
        "-o",
        &fresh("p.csv"),
    ]))
    .contains("truncated"));
    // -i X -o X
    let same = dir.join("same.csv");
    std::fs::copy(repo_root().join("datasets/esol.csv"), &same).unwrap();
    let before = std::fs::read(&same).unwrap();
    assert_clean_failure(
        &mole(&["featurize", s(&same), "-o", s(&same)]),
        "also an input",
    );
    assert_eq!(std::fs::read(&same).unwrap(), before);
}

#[test]
fn run_directories_are_not_clobbered() {
    let dir = scratch("hostile-rundir");
    let run = dir.join("run");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "finetune".to_string(),
            "--data".into(),
            "datasets/esol.csv".into(),
            "--max-steps".into(),
            "3".into(),
            "--out".into(),
            run.display().to_string(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let call = |a: Vec<String>| mole(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(call(args(&[])).status.success());
    let best = std::fs::read(run.join("best.safetensors")).unwrap();
    // the same command again: refused, the finished run untouched
    assert_clean_failure(&call(args(&[])), "already holds a run");
    assert_eq!(std::fs::read(run.join("best.safetensors")).unwrap(), best);
    // --resume with another model: refused with what differs
    assert_clean_failure(
        &call(args(&["--resume", "--model", "small"])),
        "model: \"tiny\" in the run, \"small\" now",
    );
    // --force replaces it
    assert!(call(args(&["--force", "--seed", "3"])).status.success());
    assert_ne!(std::fs::read(run.join("best.safetensors")).unwrap(), best);

    // killed between the two renames that replace resume/: only resume.old/ is left, and
    // --resume continues from it rather than from step 0
    let cut = dir.join("cut");
    let cut_args = |extra: &[&str]| {
        let mut a = vec![
            "finetune",
            "--data",
            "datasets/esol.csv",
            "--max-steps",
            "6",
            "--set",
            "train.checkpoint_every=2",
            "--out",
            s(&cut),
        ];
        a.extend_from_slice(extra);
        mole(&a)
    };
    assert!(!cut_args(&["--interrupt-after", "3"]).status.success());
    std::fs::rename(cut.join("resume"), cut.join("resume.old")).unwrap();
    let out = cut_args(&["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming from resume.old"),
        "{}",
        stderr(&out)
    );
    assert!(cut.join("resume/state.json").exists() && !cut.join("resume.old").exists());

    // a second run while the first holds the directory: refused at once
    let busy = dir.join("busy");
    let corpus = small_corpus(&dir, 3000);
    let mut first = Command::new(env!("CARGO_BIN_EXE_mole"))
        .args([
            "pretrain",
            "--data",
            s(&corpus),
            "--epochs",
            "50",
            "--out",
            s(&busy),
        ])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait until the first run holds the lock
    let lock = busy.join(".lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = mole(&[
        "pretrain",
        "--data",
        s(&corpus),
        "--max-steps",
        "1",
        "--out",
        s(&busy),
        "--force",
    ]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_clean_failure(&second, "another mole command is running");
}

/// A small deterministic generator for the kill times (no rand dependency in the tests).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Starts `mole args`, kills it with SIGKILL after `after`, and returns whether it had already
/// finished by itself (successfully) before the kill.
fn kill_after(args: &[String], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mole"))
        .args(args)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + after;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    false
}

/// Checks that `path` is either absent or the complete output of the command.
fn assert_absent_or_complete(path: &Path, complete: &[u8], earlier: Option<&[u8]>) {
    match std::fs::read(path) {
        Err(_) => assert!(earlier.is_none(), "{}: earlier file lost", path.display()),
        Ok(bytes) => assert!(
            bytes == complete || Some(bytes.as_slice()) == earlier,
            "{}: neither complete nor the earlier file ({} bytes)",
            path.display(),
            bytes.len()
        ),
    }
}

#[test]
fn kill_9_at_random_points_never_leaves_a_file_looking_complete() {
    let dir = scratch("hostile-kill");
    let ckpt = checkpoint(&dir);
    let mut rng = SplitMix(14);
    // a few thousand molecules, so that inference takes a moment
    let input = dir.join("many.smi");
    let mut text = String::new();
    let mut esol = csv::Reader::from_path(repo_root().join("datasets/esol.csv")).unwrap();
    let smiles: Vec<String> = esol.records().map(|r| r.unwrap()[0].to_string()).collect();
    for k in 0..4 {
        for smi in &smiles {
            text.push_str(&format!("{smi} m{k}\n"));
        }
    }
    std::fs::write(&input, text).unwrap();

    for (command, output) in [("predict", "pred.csv"), ("embed", "emb.npy")] {
        let out = dir.join(output);
        let args: Vec<String> = [
            command,
            "--checkpoint",
            s(&ckpt),
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--chunk-size",
            "500",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        // the complete result, from an uninterrupted run
        mole_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let complete = std::fs::read(&out).unwrap();
        let sidecar = dir.join("emb.rows.csv");
        let complete_sidecar = std::fs::read(&sidecar).ok();
        let started = std::time::Instant::now();
        mole_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let full = started.elapsed().as_millis() as u64;
        let earlier = b"an earlier file\n".to_vec();
        for _ in 0..4 {
            std::fs::write(&out, &earlier).unwrap();
            let at = Duration::from_millis(rng.below(full.max(2)));
            kill_after(&args, at);
            assert_absent_or_complete(&out, &complete, Some(&earlier));
            if let Some(c) = &complete_sidecar {
                assert_absent_or_complete(&sidecar, c, None);
            }
        }
        // a rerun gives the complete result
        mole_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(std::fs::read(&out).unwrap(), complete);
    }

    // training: killed at random points, resumed until done; the result is the uninterrupted one
    let corpus = small_corpus(&dir, 600);
    let esol = repo_root().join("datasets/esol.csv");
    let trainings: [(&str, Vec<String>); 2] = [
        (
            "pretrain",
            vec![
                "pretrain".into(),
                "--data".into(),
                s(&corpus).into(),
                "--max-steps".into(),
                "24".into(),
                "--batch-size".into(),
                "16".into(),
            ],
        ),
        (
            "finetune",
            vec![
                "finetune".into(),
                "--checkpoint".into(),
                s(&ckpt).into(),
                "--data".into(),
                s(&esol).into(),
                "--max-steps".into(),
                "24".into(),
                "--batch-size".into(),
                "16".into(),
            ],
        ),
    ];
    for (name, base) in trainings {
        let with_out = |out: &Path, resume: bool| {
            let mut a = base.clone();
            a.extend([
                "--seed".into(),
                "5".into(),
                "--set".into(),
                "train.checkpoint_every=4".into(),
                "--set".into(),
                "train.validate_every=1".into(),
                "--out".into(),
                s(out).into(),
            ]);
            if resume {
                a.push("--resume".into());
            }
            a
        };
        let straight = dir.join(format!("{name}-straight"));
        let started = std::time::Instant::now();
        let a = with_out(&straight, false);
        mole_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let full = started.elapsed().as_millis() as u64;

        let broken = dir.join(format!("{name}-broken"));
        let mut finished = false;
        for attempt in 0..3 {
            let at = Duration::from_millis(rng.below(full.max(2)));
            finished = kill_after(&with_out(&broken, attempt > 0), at);
            for f in ["best.safetensors", "last.safetensors", "config.toml"] {
                // a checkpoint file is either absent or a loadable, complete file
                if let Ok(bytes) = std::fs::read(broken.join(f)) {
                    assert!(!bytes.is_empty(), "{name}: empty {f}");
                }
            }
            if finished {
                break;
            }
        }
        if !finished {
            let a = with_out(&broken, true);
            mole_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let weights = |run: &Path| {
            let bytes = std::fs::read(run.join("last.safetensors")).unwrap();
            // the tensors, not the header (which holds nothing run-specific, but be strict
            // only about what resuming promises)
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            bytes[8 + n..].to_vec()
        };
        assert!(
            weights(&straight) == weights(&broken),
            "{name}: the resumed run's final weights differ from the uninterrupted run's"
        );
    }
    let _ = std::io::stderr().flush();
}
