//! Project tasks: `cargo xtask bench` (release build, featurisation and model benchmarks on
//! every device found, docs/benchmarks.md), `cargo xtask compare` (side by side with the original
//! PyTorch MolE) and `cargo xtask gpu-check` (how to check a GPU machine without Rust).

mod compare;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  bench       build `mole` in release, benchmark featurisation and the models on the CPU and on
              every GPU `mole info` reports, and write docs/benchmarks.md
  compare     run the original PyTorch MolE (../shared/reference/bench_ref.py) and `mole bench`
              on the same molecules, threads and batches; write the ratios to docs/benchmarks.md
  gpu-check   print how to check a GPU machine with a prebuilt binary (scripts/gpu-check.sh)

bench options:
  --features F        cargo features for mole-cli (e.g. cuda), passed to the release build
  --quick             skip `cargo bench -p mole-featurize`
  --sizes S           model sizes (default tiny,small,base)
  --batch-sizes B     batch sizes (default 32,64)
  --iters N           timed batches/steps for tiny and small (default 10)
  --base-iters N      timed batches/steps for base (default 3)
  --warmup N          warm-up iterations (default 2)
  --gpu-iters N       timed and warm-up iterations on GPUs (default 20)
  --peak-tflops T     peak TFLOP/s of the GPU, for MFU
  --molecules FILE    molecules (default: mole bench's default)
  --out FILE          report (default docs/benchmarks.md)
  --report-only       rewrite the report from the last run's results (target/xtask-bench)
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench") => bench(BenchOptions::parse(args.collect())?),
        Some("compare") => compare::compare(compare::CompareOptions::parse(args.collect())?),
        Some("gpu-check") => gpu_check(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}\n{}", compare::USAGE);
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

struct BenchOptions {
    features: Option<String>,
    quick: bool,
    sizes: Vec<String>,
    batch_sizes: String,
    iters: usize,
    base_iters: usize,
    warmup: usize,
    gpu_iters: usize,
    peak_tflops: Option<String>,
    molecules: Option<String>,
    out: PathBuf,
    report_only: bool,
}

impl BenchOptions {
    fn parse(args: Vec<String>) -> Result<Self> {
        let mut o = BenchOptions {
            features: None,
            quick: false,
            sizes: vec!["tiny".into(), "small".into(), "base".into()],
            batch_sizes: "32,64".into(),
            iters: 10,
            base_iters: 3,
            warmup: 2,
            gpu_iters: 20,
            peak_tflops: None,
            molecules: None,
            out: root().join("docs/benchmarks.md"),
            report_only: false,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--features" => o.features = Some(value()?),
                "--quick" => o.quick = true,
                "--sizes" => o.sizes = value()?.split(',').map(str::to_string).collect(),
                "--batch-sizes" => o.batch_sizes = value()?,
                "--iters" => o.iters = value()?.parse()?,
                "--base-iters" => o.base_iters = value()?.parse()?,
                "--warmup" => o.warmup = value()?.parse()?,
                "--gpu-iters" => o.gpu_iters = value()?.parse()?,
                "--peak-tflops" => o.peak_tflops = Some(value()?),
                "--molecules" => o.molecules = Some(value()?),
                "--out" => o.out = PathBuf::from(value()?),
                "--report-only" => o.report_only = true,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown bench option `{other}`\n\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let s = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !s.success() {
        bail!("{cmd:?} failed: {s}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// One `mole bench` run's JSON and the iterations it used.
struct Run {
    device: String,
    json: Value,
}

fn bench(o: BenchOptions) -> Result<()> {
    let root = root();
    let tmp = root.join("target/xtask-bench");
    if o.report_only {
        return report_from(&o, &tmp);
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "mole-cli"]);
    if let Some(f) = &o.features {
        build.args(["--features", f]);
    }
    status(&mut build)?;
    let mole = root.join("target/release/mole");

    let criterion = if o.quick {
        None
    } else {
        let text = output(cargo().args([
            "bench",
            "-p",
            "mole-featurize",
            "--bench",
            "featurize",
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "3",
        ]))?;
        std::fs::create_dir_all(&tmp)?;
        std::fs::write(tmp.join("criterion.txt"), &text)?;
        Some(parse_criterion(&text))
    };

    let info = output(Command::new(&mole).arg("info").current_dir(&root))?;
    let mut devices = vec!["cpu".to_string()];
    for line in info.lines() {
        if let Some((dev, rest)) = line.trim().split_once(": ") {
            if rest.trim() == "available" && dev != "cpu" {
                devices.push(dev.to_string());
            }
        }
    }

    std::fs::create_dir_all(&tmp)?;
    for old in std::fs::read_dir(&tmp)? {
        let old = old?.path();
        if old.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(old)?;
        }
    }
    let mut runs = Vec::new();
    for device in &devices {
        let gpu = device != "cpu";
        for (k, size) in o.sizes.iter().enumerate() {
            let (warmup, iters) = if gpu {
                (o.gpu_iters, o.gpu_iters)
            } else if size == "base" {
                (1.min(o.warmup), o.base_iters)
            } else {
                (o.warmup, o.iters)
            };
            let json = tmp.join(format!("{}-{k}.json", device.replace(':', "+")));
            let mut cmd = Command::new(&mole);
            cmd.current_dir(&root).args([
                "bench",
                "--device",
                device,
                "--sizes",
                size,
                "--batch-sizes",
                &o.batch_sizes,
                "--warmup",
                &warmup.to_string(),
                "--iters",
                &iters.to_string(),
                "--json",
            ]);
            cmd.arg(&json);
            if k > 0 {
                cmd.arg("--no-featurize");
            }
            if let Some(p) = &o.peak_tflops {
                if gpu {
                    cmd.args(["--peak-tflops", p]);
                }
            }
            if let Some(m) = &o.molecules {
                cmd.args(["--molecules", m]);
            }
            let text = output(&mut cmd)?;
            print!("{text}");
            let value: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)
                .with_context(|| format!("{}", json.display()))?;
            runs.push(Run {
                device: device.clone(),
                json: value,
            });
        }
    }

    let report = render(&o, &devices, criterion.as_deref(), &runs)?;
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_report(&o.out, report)?;
    eprintln!("xtask: wrote {}", o.out.display());
    Ok(())
}

/// Marks the start of the hand-written sections (fine-tuning results, notes) that a re-run
/// keeps: everything from this line on is carried over from the existing report.
pub(crate) const KEEP_MARKER: &str = "<!-- cargo xtask bench keeps everything below this line -->";

fn write_report(path: &Path, generated: String) -> Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find(KEEP_MARKER).map(|i| old[i..].to_string()));
    let text = match kept {
        Some(tail) => format!("{}\n{tail}", generated.trim_end()),
        None => generated,
    };
    std::fs::write(path, text)?;
    Ok(())
}

/// Rewrites the report from the JSON files (and criterion output) of the last run.
fn report_from(o: &BenchOptions, tmp: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tmp)
        .with_context(|| format!("{}: no previous run", tmp.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    for file in files {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let device = stem
            .rsplit_once('-')
            .map_or(stem, |(d, _)| d)
            .replace('+', ":");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("{}", file.display()))?;
        if !devices.contains(&device) {
            devices.push(device.clone());
        }
        runs.push(Run { device, json });
    }
    if runs.is_empty() {
        bail!(
            "{}: no results; run `cargo xtask bench` first",
            tmp.display()
        );
    }
    // cpu first, as in a full run
    devices.sort_by_key(|d| d != "cpu");
    let criterion = std::fs::read_to_string(tmp.join("criterion.txt"))
        .ok()
        .map(|t| parse_criterion(&t));
    write_report(&o.out, render(o, &devices, criterion.as_deref(), &runs)?)?;
    eprintln!("xtask: wrote {}", o.out.display());
    Ok(())
}

/// Criterion result lines: (benchmark, time per pass, throughput), as printed.
fn parse_criterion(text: &str) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut name = String::new();
    let mut time = String::new();
    let mut change = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("change:") {
            // the comparison with the previous run: [-x% y% z%] lines until the next thrpt
            change = true;
        } else if change {
            change = !t.starts_with("thrpt:");
        } else if let Some(pos) = line.find("time:") {
            let before = line[..pos].trim();
            if !before.is_empty() {
                name = before.to_string();
            }
            time = middle(&line[pos + "time:".len()..]);
        } else if let Some(rest) = t.strip_prefix("thrpt:") {
            rows.push((name.clone(), time.clone(), middle(rest)));
        } else if !line.starts_with(' ') && !t.is_empty() && !t.contains(' ') {
            name = t.to_string();
        }
    }
    rows
}

/// The estimate of `[low est high]`.
fn middle(s: &str) -> String {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = inner.split_whitespace().collect();
    if parts.len() == 6 {
        format!("{} {}", parts[2], parts[3])
    } else {
        inner.to_string()
    }
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    vec![
        ("CPU".into(), cpu),
        ("cores available".into(), cores.to_string()),
        ("memory".into(), mem),
        ("OS".into(), cmd("uname", &["-sr"])),
        ("rustc".into(), cmd("rustc", &["--version"])),
        (
            "commit".into(),
            cmd("git", &["rev-parse", "--short", "HEAD"]),
        ),
        ("date".into(), cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        (
            "load average (1/5/15 min) when the report was written".into(),
            std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        ),
    ]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn render(
    o: &BenchOptions,
    devices: &[String],
    criterion: Option<&[(String, String, String)]>,
    runs: &[Run],
) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "# Benchmarks")?;
    writeln!(s)?;
    writeln!(
        s,
        "Written by `cargo xtask bench` (re-run it to refresh this file; `cargo xtask bench --help` \
         for options). Throughput is in molecules per second; model FLOPs count matmuls only \
         over padded tokens, training = 3 × forward."
    )?;
    writeln!(s)?;
    writeln!(s, "## Machine")?;
    writeln!(s)?;
    writeln!(s, "| | |")?;
    writeln!(s, "|---|---|")?;
    for (k, v) in machine() {
        writeln!(s, "| {k} | {v} |")?;
    }
    writeln!(s, "| devices benchmarked | {} |", devices.join(", "))?;
    if let Some(first) = runs.first() {
        let j = &first.json;
        writeln!(
            s,
            "| molecules | {} from `{}` ({} rejected), mean {:.1} heavy atoms |",
            j["molecules"],
            j["molecules_file"].as_str().unwrap_or("?"),
            j["rejected"],
            f(&j["mean_atoms"])
        )?;
    }
    writeln!(s)?;

    writeln!(
        s,
        "## Featurisation (SMILES → radius-0 tokens + distance matrix)"
    )?;
    writeln!(s)?;
    if let Some(rows) = criterion.filter(|r| !r.is_empty()) {
        writeln!(
            s,
            "`cargo bench -p mole-featurize` (1,245 fixture molecules per pass):"
        )?;
        writeln!(s)?;
        writeln!(s, "| benchmark | time per pass | throughput |")?;
        writeln!(s, "|---|---:|---:|")?;
        for (name, time, thrpt) in rows {
            writeln!(s, "| {name} | {time} | {thrpt} |")?;
        }
        writeln!(s)?;
    }
    if let Some(fr) = runs
        .iter()
        .find_map(|r| r.json.get("featurize").filter(|v| !v.is_null()))
    {
        writeln!(
            s,
            "`mole bench` (whole passes over the molecules, ≥ 1 s each):"
        )?;
        writeln!(s)?;
        writeln!(
            s,
            "| single thread mol/s | rayon mol/s ({} threads) |",
            fr["rayon_threads"]
        )?;
        writeln!(s, "|---:|---:|")?;
        writeln!(
            s,
            "| {:.0} | {:.0} |",
            f(&fr["single_thread_mol_per_s"]),
            f(&fr["rayon_mol_per_s"])
        )?;
        writeln!(s)?;
    }
    writeln!(
        s,
        "For comparison, the original MolE's `MolDataset.__getitem__` (RDKit + NumPy, per \
         molecule) does about 360 mol/s per core."
    )?;
    writeln!(s)?;

    for device in devices {
        let dev_runs: Vec<&Run> = runs.iter().filter(|r| &r.device == device).collect();
        let Some(first) = dev_runs.first() else {
            continue;
        };
        writeln!(
            s,
            "## Models on `{device}` ({})",
            first.json["backend"].as_str().unwrap_or("?")
        )?;
        writeln!(s)?;
        writeln!(
            s,
            "rayon threads {}; inference = upload + `embed` (CLS embedding, no autodiff); training = \
             upload + forward + backward of the supervised regression loss + global-norm clipping \
             + Adam step. Length-bucketed batches of the molecules above.",
            first.json["rayon_threads"]
        )?;
        writeln!(s)?;
        let mfu = first.json["peak_tflops"].is_number();
        write!(
            s,
            "| model | params | batch | padded len | fwd GFLOP/mol | timed iters | inference mol/s | \
             ms/batch | training mol/s | ms/step | train/infer time | inference GFLOP/s | training GFLOP/s |"
        )?;
        if mfu {
            write!(s, " MFU inf. | MFU train |")?;
        }
        writeln!(s, " peak RSS MiB (inf / train) |")?;
        write!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        if mfu {
            write!(s, "---:|---:|")?;
        }
        writeln!(s, "---:|")?;
        for run in &dev_runs {
            for m in run.json["models"].as_array().into_iter().flatten() {
                let inf = &m["inference"];
                let tr = &m["training"];
                let opt = |t: &Value, key: &str, scale: f64, prec: usize| {
                    if t.is_null() {
                        "–".to_string()
                    } else {
                        format!("{:.*}", prec, f(&t[key]) * scale)
                    }
                };
                let ratio = if inf.is_null() || tr.is_null() {
                    "–".into()
                } else {
                    format!("{:.1}×", f(&tr["ms_per_batch"]) / f(&inf["ms_per_batch"]))
                };
                write!(
                    s,
                    "| {} | {:.2} M | {} | {:.1} | {:.3} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
                    m["size"].as_str().unwrap_or("?"),
                    f(&m["parameters"]) / 1e6,
                    m["batch_size"],
                    f(&m["mean_padded_seq_len"]),
                    f(&m["forward_gflop_per_molecule"]),
                    inf["iters"],
                    tr["iters"],
                    opt(inf, "mol_per_s", 1.0, 1),
                    opt(inf, "ms_per_batch", 1.0, 1),
                    opt(tr, "mol_per_s", 1.0, 1),
                    opt(tr, "ms_per_batch", 1.0, 1),
                    ratio,
                    opt(inf, "tflops", 1e3, 1),
                    opt(tr, "tflops", 1e3, 1),
                )?;
                if mfu {
                    write!(
                        s,
                        " {}% | {}% |",
                        opt(inf, "mfu", 100.0, 1),
                        opt(tr, "mfu", 100.0, 1)
                    )?;
                }
                writeln!(
                    s,
                    " {} / {} |",
                    opt(inf, "peak_rss_mib", 1.0, 0),
                    opt(tr, "peak_rss_mib", 1.0, 0)
                )?;
            }
        }
        writeln!(s)?;
    }

    writeln!(s, "## Where time goes")?;
    writeln!(s)?;
    writeln!(s, "{}", where_time_goes(runs))?;
    writeln!(s)?;
    writeln!(s, "## Not measured here")?;
    writeln!(s)?;
    if devices.len() == 1 {
        writeln!(
            s,
            "- No GPU was available on this machine, so there are no GPU numbers and no MFU. On \
             a machine with an NVIDIA GPU and no Rust toolchain, run `scripts/gpu-check.sh` with \
             a `mole` binary built with `--features cuda` (see `cargo xtask gpu-check`); with \
             Rust, `cargo xtask bench --features cuda --peak-tflops <T>`."
        )?;
    }
    writeln!(
        s,
        "- A quiet machine: this is a shared 2-core machine and other builds may have run \
         during the measurement (see the load average above); treat CPU numbers as lower \
         bounds with tens of percent of run-to-run variation."
    )?;
    writeln!(
        s,
        "- GPU memory: the RSS columns are host memory only (VmHWM, reset before each \
         measurement)."
    )?;
    writeln!(
        s,
        "- Iterations: tiny/small {} timed, base {} timed; fewer timed steps mean a wider \
         run-to-run spread. The CPU runs are f32 (`--precision bf16|f16` was not measured here).",
        o.iters, o.base_iters
    )?;
    Ok(s)
}

/// A short analysis from the numbers: FLOP split of the largest model and the gap between
/// featurisation and model throughput.
fn where_time_goes(runs: &[Run]) -> String {
    let mut out = String::new();
    let cpu: Vec<&Value> = runs
        .iter()
        .filter(|r| r.device == "cpu")
        .flat_map(|r| r.json["models"].as_array().into_iter().flatten())
        .collect();
    let feat = runs
        .iter()
        .find_map(|r| r.json.get("featurize").filter(|v| !v.is_null()))
        .map(|v| f(&v["rayon_mol_per_s"]));
    if let (Some(feat), Some(fastest)) = (
        feat,
        cpu.iter()
            .filter_map(|m| m["inference"]["mol_per_s"].as_f64())
            .reduce(f64::max),
    ) {
        let share = 100.0 * fastest / feat;
        // the verdict follows the numbers: a tenth of the model's time is where it starts to
        // matter
        let verdict = if share < 10.0 {
            "Featurisation is not the bottleneck"
        } else {
            "Featurisation is a real share of the work"
        };
        let _ = writeln!(
            out,
            "- {verdict}: all cores featurise {feat:.0} mol/s, while the fastest model measured \
             on the CPU embeds {fastest:.0} mol/s, so featurising a batch costs {share:.1}% of \
             embedding it (training featurises in memory once per run, or streaming once per \
             epoch in a background thread)."
        );
    }
    for m in &cpu {
        let (Some(inf), Some(tr)) = (
            m["inference"]["ms_per_batch"].as_f64(),
            m["training"]["ms_per_batch"].as_f64(),
        ) else {
            continue;
        };
        if m["size"] == "base" && m["batch_size"] == 32 {
            let _ = writeln!(
                out,
                "- base, batch 32 on the CPU: {:.1} GFLOP/s in inference and {:.1} GFLOP/s in \
                 training; a training step costs {:.1}× an inference batch (3× is the FLOP ratio).",
                f(&m["inference"]["tflops"]) * 1e3,
                f(&m["training"]["tflops"]) * 1e3,
                tr / inf,
            );
            let p = &m["training_phases"];
            if p.is_object() {
                let total: f64 = [
                    "upload_ms",
                    "forward_ms",
                    "backward_ms",
                    "clip_ms",
                    "optimizer_ms",
                ]
                .iter()
                .map(|k| f(&p[*k]))
                .sum();
                let share = |k: &str| 100.0 * f(&p[k]) / total.max(1e-9);
                let _ = writeln!(
                    out,
                    "- The training step of base at batch 32, phase by phase (device synchronised \
                     between phases): forward {:.0}%, backward {:.0}%, Adam {:.0}%, clipping \
                     {:.0}%, upload {:.1}%. Backward costs {:.1}× the training forward (about 2× \
                     is the FLOP ratio); the training forward costs {:.1}× an inference batch, \
                     since it records the autodiff graph and keeps every activation. Adam reads \
                     and writes the weights and both moment tensors of {:.0} M parameters each \
                     step, a memory-bound pass whose cost does not shrink with the batch.",
                    share("forward_ms"),
                    share("backward_ms"),
                    share("optimizer_ms"),
                    share("clip_ms"),
                    share("upload_ms"),
                    f(&p["backward_ms"]) / f(&p["forward_ms"]).max(1e-9),
                    f(&p["forward_ms"]) / inf,
                    f(&m["parameters"]) / 1e6
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "- Forward FLOPs by kind (first batch size of each model; % of the matmul FLOPs):"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  | model | batch | Q/K/V/O | feed-forward | q·k and p·v | c2p + p2c | table K_r/Q_r | head |"
    );
    let _ = writeln!(out, "  |---|---:|---:|---:|---:|---:|---:|---:|");
    let mut seen = Vec::new();
    for m in &cpu {
        let size = m["size"].as_str().unwrap_or("?");
        if seen.contains(&size) {
            continue;
        }
        seen.push(size);
        let sp = &m["forward_flop_split"];
        let pct = |k: &str| format!("{:.1}", 100.0 * f(&sp[k]));
        let _ = writeln!(
            out,
            "  | {size} | {} | {} | {} | {} | {} | {} | {} |",
            m["batch_size"],
            pct("projections"),
            pct("feed_forward"),
            pct("content_attention"),
            pct("relative_attention"),
            pct("relative_table"),
            pct("head")
        );
    }
    let phased: Vec<&&Value> = cpu
        .iter()
        .filter(|m| m["training_phases"].is_object())
        .collect();
    if !phased.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "- Training step by phase, ms per step (`mole bench` times each phase with the \
             device synchronised in between):"
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  | model | batch | upload | forward | backward | clip | Adam |"
        );
        let _ = writeln!(out, "  |---|---:|---:|---:|---:|---:|---:|");
        for m in phased {
            let p = &m["training_phases"];
            let _ = writeln!(
                out,
                "  | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                m["size"].as_str().unwrap_or("?"),
                m["batch_size"],
                f(&p["upload_ms"]),
                f(&p["forward_ms"]),
                f(&p["backward_ms"]),
                f(&p["clip_ms"]),
                f(&p["optimizer_ms"])
            );
        }
    }
    let _ = writeln!(out);
    let _ = write!(
        out,
        "- With ~26 tokens per molecule the dense projections and the feed-forward block dominate \
         as the hidden size grows. The c2p/p2c products use only the relative-table rows a batch \
         needs (its largest distance + 1, about 15–25 of the 128 rows for drug-like molecules), \
         so they stay a small share even in tiny. The element-wise work (softmax, LayerNorm, GELU, the \
         relative-position look-ups, dropout in training; fused kernels on the CPU) is not in \
         these FLOPs; compare the \
         achieved GFLOP/s of tiny and base above to see how much of tiny's time goes to it and \
         to per-op overhead rather than to matmuls. On GPUs, expect MFU to be lowest for tiny \
         and highest for base at batch 64."
    );
    out
}

fn gpu_check() -> Result<()> {
    let script = root().join("scripts/gpu-check.sh");
    println!(
        "GPU check for a machine with an NVIDIA GPU and no Rust toolchain ({}).",
        script.display()
    );
    println!();
    println!("1. Here (with Rust), build the binary with the CUDA backend:");
    println!("     CUDARC_CUDA_VERSION=13000 cargo build --release -p mole-cli --features cuda");
    println!("2. Copy target/release/mole, scripts/gpu-check.sh and the shared fixtures folder");
    println!("   (../shared/fixtures) to the GPU machine.");
    println!("3. There, run:");
    println!("     bash gpu-check.sh ./mole ./fixtures <peak dense bf16 TFLOP/s of the GPU>");
    println!("   e.g. 989 for an H100 SXM (756 for H100 PCIe); base's bf16 MFU is relative to it.");
    println!("   Keep its whole output.");
    println!();
    println!(
        "It prints `mole info`, `nvidia-smi`, then `mole bench --device cuda` for tiny, small"
    );
    println!("and base at batch 32 and 64 (inference and training mol/s, FLOPs, MFU), and exits");
    println!("non-zero on any failure.");
    println!();
    match std::fs::read_to_string(&script) {
        Ok(text) => {
            let header: Vec<&str> = text
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with('#'))
                .collect();
            println!("From the script's header:");
            for l in header {
                println!("  {l}");
            }
        }
        Err(e) => println!("({} is missing: {e})", script.display()),
    }
    Ok(())
}
