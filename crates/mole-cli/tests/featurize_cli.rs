//! `mole featurize` against RDKit's outputs, and the bundled vocabulary against the original's.

mod common;

use common::{mole, mole_ok, repo_root, scratch, shared};
use mole_featurize::Vocabulary;

#[test]
fn featurize_command_reproduces_the_rdkit_fixture() {
    let fixture = shared().join("fixtures/featurize/tdc_featurized.jsonl");
    let vocab = shared().join("fixtures/vocab/vocab_207_radius0.json");
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(&fixture)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dir = scratch("featurize");
    let input = dir.join("tdc.smi");
    // A bad SMILES and an empty line in the middle: the run goes on and keeps input order.
    let mut text = String::new();
    for (i, m) in expected.iter().enumerate() {
        if i == 100 {
            text.push_str("C1CC(\n\n");
        }
        text.push_str(m["smiles"].as_str().unwrap());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let output = dir.join("out.jsonl");
    let out = mole_ok(&[
        "featurize",
        input.to_str().unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1246 rows, 1245 ok, 1 rejected"),
        "{stderr}"
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected.len() + 1);
    assert_eq!(lines[100]["smiles"], "C1CC(");
    assert!(lines[100]["error"].as_str().unwrap().len() > 5);
    let got: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("error").is_none()).collect();
    let mut mismatches = Vec::new();
    for (g, e) in got.iter().zip(&expected) {
        for field in [
            "smiles",
            "num_atoms",
            "morgan_r0",
            "morgan_r1",
            "morgan_r2",
            "tokens",
            "dist",
        ] {
            if g[field] != e[field] {
                mismatches.push(format!("{}: {field}", e["smiles"]));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

#[test]
fn bundled_vocabulary_follows_the_original_layout() {
    let original =
        Vocabulary::from_json_file(shared().join("fixtures/vocab/vocab_207_radius0.json")).unwrap();
    let bundled =
        Vocabulary::from_json_file(repo_root().join("crates/mole-cli/assets/vocab_radius0.json"))
            .unwrap();
    for v in [&original, &bundled] {
        let n = v.num_identifiers() as u32;
        assert_eq!(v.pad_id(), 0);
        assert_eq!(v.mask_id(), n + 1);
        assert_eq!(v.unk_id(), n + 2);
        assert_eq!(v.cls_id(), n + 3);
        assert_eq!(v.vocab_size(), n as usize + 4);
        // Identifier tokens are exactly 1..=n, each used once.
        let mut seen = std::collections::HashSet::new();
        for t in 1..=n {
            let id = v.identifier_of(t).unwrap();
            assert_eq!(v.token(id), t);
            assert!(seen.insert(id));
        }
    }
    assert_eq!(original.vocab_size(), 211);
    assert_eq!(original.cls_id(), 210);
    // Same kind of identifiers: the bundled corpus's atom environments are RDKit radius-0
    // identifiers, so (almost) all of them occur in the original's ZINC/GuacaMol vocabulary.
    let shared_ids = (1..=bundled.num_identifiers() as u32)
        .filter(|&t| original.token(bundled.identifier_of(t).unwrap()) != original.unk_id())
        .count();
    assert!(
        shared_ids * 10 >= bundled.num_identifiers() * 9,
        "only {shared_ids} of {} bundled identifiers are in the original vocabulary",
        bundled.num_identifiers()
    );
    // The most frequent environments agree: aromatic CH (3218693969) and CH3 (2246728737).
    for id in [3218693969u32, 2246728737] {
        assert!(
            bundled.token(id) <= 10,
            "identifier {id} should be among the most common"
        );
        assert_ne!(original.token(id), original.unk_id());
    }
}

#[test]
fn featurize_reports_unreadable_files_clearly() {
    let out = mole(&["featurize", "no/such/file.smi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/file.smi"), "{err}");
    let dir = scratch("featurize-bad");
    let csv = dir.join("x.csv");
    std::fs::write(&csv, "name,value\na,1\n").unwrap();
    let out = mole(&["featurize", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.csv") && err.contains("smiles"), "{err}");
}

#[test]
fn outputs_never_overwrite_inputs_and_bad_inputs_leave_outputs_alone() {
    let dir = scratch("no-clobber");
    let smi = dir.join("mols.smi");
    std::fs::write(&smi, "CCO ethanol\nc1ccccc1 benzene\n").unwrap();
    // -i x -o x: refused, the input survives
    let run = mole(&[
        "featurize",
        smi.to_str().unwrap(),
        "-o",
        smi.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("also an input"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&smi).unwrap(),
        "CCO ethanol\nc1ccccc1 benzene\n"
    );
    // a typo in -i: the existing result file is not truncated
    let result = dir.join("result.jsonl");
    std::fs::write(&result, "previous results\n").unwrap();
    let missing = dir.join("mols_typo.smi");
    let run = mole(&[
        "featurize",
        missing.to_str().unwrap(),
        "-o",
        result.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("mols_typo.smi"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&result).unwrap(),
        "previous results\n"
    );
    for command in ["predict", "embed"] {
        let out = dir.join(format!("{command}.csv"));
        std::fs::write(&out, "previous results\n").unwrap();
        let run = mole(&[
            command,
            "--checkpoint",
            smi.to_str().unwrap(),
            "-i",
            missing.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!run.status.success(), "{command}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "previous results\n",
            "{command}"
        );
        // the output is the checkpoint: refused before anything is read or written
        let run = mole(&[
            command,
            "--checkpoint",
            out.to_str().unwrap(),
            "-i",
            smi.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && err.contains("also an input"),
            "{command}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "previous results\n",
            "{command}"
        );
    }
}

#[test]
fn progress_reaches_the_log_when_stderr_is_not_a_terminal() {
    let dir = scratch("progress-log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mole"))
        .current_dir(repo_root())
        .env("MOLE_PROGRESS_EVERY", "0")
        .args(["featurize", "datasets/moses_30k.smi.gz", "-o"])
        .arg(dir.join("f.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // stderr is a pipe here: the spinner's line arrives as log lines, with plain text (no ANSI
    // colour codes)
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("featurize 8192 molecules"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
}
