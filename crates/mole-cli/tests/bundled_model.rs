//! The pretrained model shipped with mole (`mole_model::zoo`): embeddings out of the box,
//! fine-tuning from it by default, the recipe's deduplicated corpus, and the encoder-only
//! export it is made with.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use mole_nn::HostTensor;

/// Runs `mole` from the repository root with its model cache in `cache`.
fn mole_cached(cache: &Path, args: &[&str]) -> Output {
    let out = mole_command(args)
        .env("MOLE_CACHE_DIR", cache)
        .env("RUST_LOG", "info")
        .output()
        .expect("mole runs");
    assert_succeeded(args, &out);
    out
}

/// The embedding rows of an `embed` CSV (columns e0..eH).
fn embeddings(csv: &Path) -> Vec<Vec<f32>> {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let header = reader.headers().unwrap().clone();
    let columns: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with('e') && header[i][1..].parse::<u32>().is_ok())
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            columns.iter().map(|&i| r[i].parse().unwrap()).collect()
        })
        .collect()
}

fn write_smiles(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn embed_works_out_of_the_box_and_by_name() {
    let dir = scratch("bundled-embed");
    let cache = dir.join("cache");
    let input = write_smiles(&dir, "x.smi", &["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]);
    // embed `input` into `out`, with `extra` arguments
    let embed = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "embed",
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mole_cached(&cache, &args);
    };
    let (default_csv, named_csv) = (dir.join("default.csv"), dir.join("named.csv"));
    embed(&default_csv, &[]);
    embed(&named_csv, &["--checkpoint", "mole-tiny-zinc-chembl"]);
    let (default, named) = (embeddings(&default_csv), embeddings(&named_csv));
    assert_eq!(default.len(), 3);
    assert!(default
        .iter()
        .all(|e| e.len() == 64 && e.iter().all(|x| x.is_finite())));
    assert_eq!(default, named);
    // different molecules, different embeddings
    assert_ne!(default[0], default[1]);
    // the model was unpacked once, into the cache given
    let cached: Vec<_> = std::fs::read_dir(cache.join("models")).unwrap().collect();
    assert_eq!(cached.len(), 1);

    // .npy out of the box, as the README shows
    let npy = dir.join("x.npy");
    embed(&npy, &[]);
    let data = std::fs::read(&npy).unwrap();
    assert!(String::from_utf8_lossy(&data[10..128]).contains("'shape': (3, 64)"));

    // an unknown name is a missing file, said so; predict needs a head the bundled model lacks
    let unknown = mole(&[
        "embed",
        "--checkpoint",
        "mole-huge-nothing",
        "-i",
        input.to_str().unwrap(),
        "-o",
        "-",
    ]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("mole-huge-nothing") && err.contains("No such file"),
        "{err}"
    );
    let predict = mole(&[
        "predict",
        "-i",
        input.to_str().unwrap(),
        "-o",
        dir.join("p.csv").to_str().unwrap(),
    ]);
    assert!(!predict.status.success());
    assert!(String::from_utf8_lossy(&predict.stderr).contains("no prediction head"));
}

#[test]
fn finetune_starts_from_the_bundled_model_unless_told_otherwise() {
    let dir = scratch("bundled-finetune");
    let cache = dir.join("cache");
    // lr 1e-9: Adam moves every weight by about the learning rate, so after two steps the
    // run's encoder is its start to within 1e-6
    let run = |name: &str, extra: &[&str]| -> (PathBuf, String) {
        let out_dir = dir.join(name);
        let mut args = vec![
            "finetune",
            "--data",
            "datasets/esol.csv",
            "--max-steps",
            "2",
            "--set",
            "train.lr=1e-9",
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = mole_cached(&cache, &args);
        (
            out_dir.join("last.safetensors"),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    };
    let encoder = |path: &Path| {
        let mut dict = mole_nn::StateDict::load(path).unwrap();
        dict.tensors.retain(|name, _| !name.contains("head."));
        dict.tensors
    };
    let bundled = mole_model::zoo::bundled_model(mole_model::zoo::DEFAULT_MODEL).unwrap();
    let shipped = {
        let mut dict = bundled.state_dict().unwrap();
        dict.tensors.retain(|name, _| !name.contains("head."));
        dict.tensors
    };

    let farthest = |a: &BTreeMap<String, HostTensor>| {
        let (ours, theirs): (Vec<_>, Vec<_>) = (a.keys().collect(), shipped.keys().collect());
        assert_eq!(ours, theirs);
        a.iter()
            .flat_map(|(name, t)| t.data.iter().zip(&shipped[name].data))
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };

    let (default_ckpt, log) = run("default", &[]);
    assert!(
        log.contains("starting from the bundled pretrained mole-tiny-zinc-chembl"),
        "{log}"
    );
    let moved = farthest(&encoder(&default_ckpt));
    assert!(moved < 1e-6, "{moved}");

    let (scratch_ckpt, log) = run("scratch", &["--from-scratch"]);
    assert!(!log.contains("starting from the bundled"), "{log}");
    let apart = farthest(&encoder(&scratch_ckpt));
    assert!(apart > 1e-2, "{apart}");

    // another model size cannot start from the tiny model: from scratch, said so
    let (small_ckpt, log) = run("small", &["--model", "small"]);
    assert!(log.contains("training from scratch"), "{log}");
    let dict = mole_nn::StateDict::load(&small_ckpt).unwrap();
    let (config, _) = mole_model::config_and_vocab(&dict, "small").unwrap();
    assert_eq!(config.encoder.hidden_size, 256);
}

#[test]
fn the_recipe_corpus_keeps_one_molecule_per_canonical_smiles() {
    let dir = scratch("bundled-dedup");
    // ethanol three ways, phenol twice across the files, and three other molecules
    let a = write_smiles(&dir, "a.smi", &["CCO", "OCC", "c1ccccc1O", "CCN", "CCCC"]);
    let b = write_smiles(
        &dir,
        "b.smi",
        &["C(C)O", "Oc1ccccc1", "CC(=O)O", "not-a-smiles"],
    );
    let files = format!("{},{}", a.display(), b.display());
    let pretrain = |name: &str, dedup: bool| -> String {
        let out = mole_cached(
            &dir,
            &[
                "pretrain",
                "--config",
                "configs/pretrain-zinc-chembl.toml",
                "--set",
                &format!("data.train=\"{files}\""),
                "--set",
                &format!("data.deduplicate={dedup}"),
                "--set",
                "data.target_min_count=1",
                "--set",
                "data.valid_fraction=0.0",
                "--max-steps",
                "1",
                "--out",
                dir.join(name).to_str().unwrap(),
            ],
        );
        String::from_utf8_lossy(&out.stderr).into()
    };
    let log = pretrain("dedup", true);
    assert!(log.contains("training 5 molecules"), "{log}");
    assert!(
        log.contains("a.smi: 4 molecules kept, 1 duplicates dropped"),
        "{log}"
    );
    assert!(
        log.contains("b.smi: 1 molecules kept, 2 duplicates dropped"),
        "{log}"
    );
    // the bad row is reported against its own file
    let rejects = std::fs::read_to_string(dir.join("dedup/rejects-2.csv")).unwrap();
    assert!(rejects.contains("not-a-smiles"), "{rejects}");
    let log = pretrain("all", false);
    assert!(log.contains("training 8 molecules"), "{log}");
}

#[test]
fn encoder_only_export_embeds_as_the_full_checkpoint_does() {
    let dir = scratch("bundled-export");
    let corpus = small_corpus(&dir, 600);
    let pre = dir.join("pre");
    mole_ok(&[
        "pretrain",
        "--data",
        corpus.to_str().unwrap(),
        "--max-steps",
        "5",
        "--out",
        pre.to_str().unwrap(),
    ]);
    let full = pre.join("best.safetensors");
    let encoder = dir.join("encoder.safetensors");
    mole_ok(&[
        "export",
        full.to_str().unwrap(),
        "--format",
        "mole",
        "--encoder-only",
        "-o",
        encoder.to_str().unwrap(),
    ]);
    let dict = mole_nn::StateDict::load(&encoder).unwrap();
    assert!(dict.tensors.keys().all(|k| !k.contains("head.")));
    assert!(!dict.metadata.contains_key("target_vocab"));
    assert!(std::fs::metadata(&encoder).unwrap().len() < std::fs::metadata(&full).unwrap().len());
    let input = write_smiles(&dir, "x.smi", &["CCO", "c1ccccc1O"]);
    let embed = |ckpt: &Path, name: &str| {
        let out = dir.join(name);
        mole_ok(&[
            "embed",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        embeddings(&out)
    };
    assert_eq!(embed(&full, "full.csv"), embed(&encoder, "encoder.csv"));
    // the default export is still the original's names without metadata
    let plain = dir.join("plain.safetensors");
    mole_ok(&[
        "export",
        full.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(mole_nn::StateDict::load(&plain)
        .unwrap()
        .metadata
        .is_empty());
}
