//! `cargo xtask compare`: mole-rs against the original PyTorch MolE, side by side, in one run.
//!
//! For each model size it runs the original's `bench_ref.py` (from `../shared/reference`, in the
//! environment `setup.sh` builds) and then `mole bench --passes` on the same molecules, with the
//! same thread count, batch size, warm-up and timed passes (whole passes over length-sorted
//! batches, median pass), and writes the ratio table into docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cargo, f, machine, output, root, status};

pub const USAGE: &str = "\
compare options:
  --sizes S           model sizes (default tiny,small,base)
  --threads N         threads for both (torch.set_num_threads / RAYON_NUM_THREADS; default 2)
  --batch-size B      batch size (default 32)
  --passes N          timed whole passes (default 3)
  --warmup N          untimed passes first (default 2)
  --base-limit N      molecules for base: the first N of the file (default 192; 0 = all)
  --molecules FILE    SMILES file (default ../shared/reference/tdc_smiles_all.smi)
  --reference DIR     the original's benchmark folder (default ../shared/reference)
  --python PATH       Python of the reference environment (default $MOLE_REFERENCE_PYTHON, else
                      ~/.cache/mole-reference/venv/bin/python, which setup.sh builds)
  --out FILE          report to update (default docs/benchmarks.md)
  --no-build          use the existing target/release/mole
";

pub struct CompareOptions {
    sizes: Vec<String>,
    threads: usize,
    batch_size: usize,
    passes: usize,
    warmup: usize,
    base_limit: usize,
    molecules: PathBuf,
    reference: PathBuf,
    python: Option<PathBuf>,
    out: PathBuf,
    build: bool,
}

impl CompareOptions {
    pub fn parse(args: Vec<String>) -> Result<Self> {
        let shared = root().join("../shared/reference");
        let mut o = CompareOptions {
            sizes: vec!["tiny".into(), "small".into(), "base".into()],
            threads: 2,
            batch_size: 32,
            passes: 3,
            warmup: 2,
            base_limit: 192,
            molecules: shared.join("tdc_smiles_all.smi"),
            reference: shared,
            python: None,
            out: root().join("docs/benchmarks.md"),
            build: true,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--sizes" => o.sizes = value()?.split(',').map(str::to_string).collect(),
                "--threads" => o.threads = value()?.parse()?,
                "--batch-size" => o.batch_size = value()?.parse()?,
                "--passes" => o.passes = value()?.parse()?,
                "--warmup" => o.warmup = value()?.parse()?,
                "--base-limit" => o.base_limit = value()?.parse()?,
                "--molecules" => o.molecules = PathBuf::from(value()?),
                "--reference" => o.reference = PathBuf::from(value()?),
                "--python" => o.python = Some(PathBuf::from(value()?)),
                "--out" => o.out = PathBuf::from(value()?),
                "--no-build" => o.build = false,
                "-h" | "--help" => {
                    print!("usage: cargo xtask compare [options]\n\n{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown compare option `{other}`\n\n{USAGE}"),
            }
        }
        if o.threads == 0 || o.batch_size == 0 || o.passes == 0 {
            bail!("--threads, --batch-size and --passes must be at least 1");
        }
        Ok(o)
    }

    fn python(&self) -> Result<PathBuf> {
        let candidate = self
            .python
            .clone()
            .or_else(|| std::env::var_os("MOLE_REFERENCE_PYTHON").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/mole-reference/venv/bin/python"))
            })
            .context("no --python, $MOLE_REFERENCE_PYTHON or $HOME")?;
        if !candidate.exists() {
            bail!(
                "{}: the original MolE's environment is not there. Build it with \
                 {}/setup.sh (see its README), or pass --python",
                candidate.display(),
                self.reference.display()
            );
        }
        Ok(candidate)
    }

    fn limit(&self, size: &str) -> usize {
        if size == "base" {
            self.base_limit
        } else {
            0
        }
    }
}

/// The last line of `text` that parses as a JSON object.
fn last_json(text: &str) -> Result<Value> {
    text.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .context("no JSON line in the output")
}

struct Pair {
    size: String,
    reference: Value,
    mole: Value,
}

pub fn compare(o: CompareOptions) -> Result<()> {
    let root = root();
    let python = o.python()?;
    let bench_ref = o.reference.join("bench_ref.py");
    if !bench_ref.exists() {
        bail!("{}: not found (--reference)", bench_ref.display());
    }
    if o.build {
        status(cargo().args(["build", "--release", "-p", "mole-cli"]))?;
    }
    let mole = root.join("target/release/mole");
    let tmp = root.join("target/xtask-compare");
    std::fs::create_dir_all(&tmp)?;
    let mut pairs = Vec::new();
    for size in &o.sizes {
        let limit = o.limit(size);
        let mut reference = Command::new(&python);
        reference
            .arg(&bench_ref)
            .arg(&o.molecules)
            .args(["--size", &format!("rust-{size}")])
            .args(["--threads", &o.threads.to_string()])
            .args(["--batch-size", &o.batch_size.to_string()])
            .args(["--iters", &o.passes.to_string()])
            .args(["--warmup", &o.warmup.to_string()])
            .args(["--stages", "infer,train"])
            .args(["--limit", &limit.to_string()]);
        let reference = last_json(&output(&mut reference)?)
            .with_context(|| format!("bench_ref.py --size rust-{size}"))?;

        let json = tmp.join(format!("{size}.json"));
        let mut ours = Command::new(&mole);
        ours.current_dir(&root)
            .env("RAYON_NUM_THREADS", o.threads.to_string())
            .args(["bench", "--device", "cpu", "--no-featurize"])
            .args(["--sizes", size])
            .args(["--batch-sizes", &o.batch_size.to_string()])
            .args(["--passes", &o.passes.to_string()])
            .args(["--warmup", &o.warmup.to_string()])
            .args(["--limit", &limit.to_string()])
            .arg("--molecules")
            .arg(&o.molecules)
            .arg("--json")
            .arg(&json);
        output(&mut ours)?;
        let mole: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)
            .with_context(|| format!("{}", json.display()))?;
        eprintln!(
            "xtask: {size}: original {:.1} / {:.1} mol/s, mole {:.1} / {:.1} mol/s (inference / training)",
            f(&reference["infer_mol_s"]),
            f(&reference["train_mol_s"]),
            f(&mole["models"][0]["inference"]["mol_per_s"]),
            f(&mole["models"][0]["training"]["mol_per_s"]),
        );
        pairs.push(Pair {
            size: size.clone(),
            reference,
            mole,
        });
    }
    let section = render(&o, &pairs)?;
    print!("{section}");
    update_report(&o.out, &section)?;
    eprintln!("xtask: wrote the comparison into {}", o.out.display());
    Ok(())
}

fn ratio(ours: f64, theirs: f64) -> String {
    if ours.is_finite() && theirs.is_finite() && theirs > 0.0 {
        format!("{:.2}×", ours / theirs)
    } else {
        "–".into()
    }
}

const START: &str = "<!-- cargo xtask compare: start -->";
const END: &str = "<!-- cargo xtask compare: end -->";

fn render(o: &CompareOptions, pairs: &[Pair]) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "{START}")?;
    writeln!(s, "## Side by side with the original PyTorch MolE (CPU)")?;
    writeln!(s)?;
    let sizes = o.sizes.join(",");
    writeln!(
        s,
        "Written by `cargo xtask compare --sizes {sizes} --threads {} --batch-size {} --passes {} \
         --warmup {} --base-limit {}` (rerun it to refresh this section). Both run in the same \
         invocation, one after the other, on `{}`: the original through \
         `../shared/reference/bench_ref.py` (its own classes; environment from `setup.sh`), mole \
         through `mole bench --passes` with the same protocol: molecules stably sorted by token \
         count, consecutive batches, {} warm-up passes, then the median of {} timed passes. \
         Training: supervised regression head, dropout on, backward, global-norm clipping, Adam. \
         Ratios > 1 mean mole-rs is faster (or, for memory, uses more).",
        o.threads,
        o.batch_size,
        o.passes,
        o.warmup,
        o.base_limit,
        o.molecules.display(),
        o.warmup,
        o.passes,
    )?;
    writeln!(s)?;
    for (k, v) in machine() {
        if k == "CPU" || k == "commit" || k == "date" || k.starts_with("load") {
            writeln!(s, "- {k}: {v}")?;
        }
    }
    writeln!(s)?;
    writeln!(
        s,
        "| model | molecules | original infer mol/s | mole infer mol/s | ratio | original train \
         mol/s | mole train mol/s | ratio | peak RSS train MiB original / mole | RSS ratio |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for p in pairs {
        let m = &p.mole["models"][0];
        let (ri, rt) = (
            f(&p.reference["infer_mol_s"]),
            f(&p.reference["train_mol_s"]),
        );
        let (mi, mt) = (
            f(&m["inference"]["mol_per_s"]),
            f(&m["training"]["mol_per_s"]),
        );
        let r_rss = f(&p.reference["peak_rss_mib_per_stage"]["train"]);
        let m_rss = f(&m["training"]["peak_rss_mib"]);
        writeln!(
            s,
            "| {} | {} | {ri:.1} | {mi:.1} | **{}** | {rt:.1} | {mt:.1} | **{}** | {r_rss:.0} / {m_rss:.0} | {} |",
            p.size,
            p.mole["molecules"],
            ratio(mi, ri),
            ratio(mt, rt),
            ratio(m_rss, r_rss),
        )?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "Training step by phase, ms per step (each side synchronises between phases; mole's \
         forward includes uploading the batch):"
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "| model | forward original / mole | backward original / mole | clip original / mole | \
         Adam original / mole |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|")?;
    for p in pairs {
        let r = &p.reference["train_phase_ms_per_step"];
        let m = &p.mole["models"][0]["training_phases"];
        writeln!(
            s,
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
            p.size,
            f(&r["forward"]),
            f(&m["forward_ms"]) + f(&m["upload_ms"]),
            f(&r["backward"]),
            f(&m["backward_ms"]),
            f(&r["clip"]),
            f(&m["clip_ms"]),
            f(&r["adam"]),
            f(&m["optimizer_ms"]),
        )?;
    }
    writeln!(s, "{END}")?;
    Ok(s)
}

/// Replaces the previous comparison in `path`, or appends it at the end (below the part that
/// `cargo xtask bench` regenerates, so a bench run keeps it).
fn update_report(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if a < b => {
            format!(
                "{}{}{}",
                &old[..a],
                section.trim_end(),
                &old[b + END.len()..]
            )
        }
        _ => {
            let mut text = old.trim_end().to_string();
            if !text.contains(crate::KEEP_MARKER) {
                text.push_str("\n\n");
                text.push_str(crate::KEEP_MARKER);
            }
            format!("{text}\n\n{}\n", section.trim_end())
        }
    };
    std::fs::write(path, text)?;
    Ok(())
}
