//! `mole benchmark --protocol tdc`: the protocol of TDC's ADMET benchmark group, which the MolE
//! paper reports. Per dataset: a fixed scaffold test set (TDC's `test.csv` when the folder has
//! one, else 20 % of the molecules by TDC's scaffold split with `--test-seed`); then for each
//! seed 1..=N, TDC's `get_train_valid_split(seed)`: a scaffold split of the rest into 87.5 %
//! train / 12.5 % valid, fine-tune, and the test metric TDC uses for the dataset (MAE,
//! Spearman, AUROC, AUPRC); mean ± population std over the seeds (`np.std`, as TDC's
//! `evaluate_many`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use mole_featurize::split::{scaffold_split, Fractions, Part};

use crate::commands::{supervised_run, BenchmarkArgs};
use crate::data;
use crate::settings::{self, RunSettings};

/// The test metric of a TDC benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TdcMetric {
    Mae,
    Rmse,
    Spearman,
    Auroc,
    Auprc,
}

impl TdcMetric {
    /// Name of the metric in mole's metrics JSON.
    fn key(self) -> &'static str {
        match self {
            TdcMetric::Mae => "mae",
            TdcMetric::Rmse => "rmse",
            TdcMetric::Spearman => "spearman",
            TdcMetric::Auroc => "auroc",
            TdcMetric::Auprc => "auprc",
        }
    }

    fn is_classification(self) -> bool {
        matches!(self, TdcMetric::Auroc | TdcMetric::Auprc)
    }
}

/// TDC's ADMET group: dataset name → metric (`tdc.metadata.admet_metrics`).
const ADMET_METRICS: &[(&str, TdcMetric)] = &[
    ("caco2_wang", TdcMetric::Mae),
    ("hia_hou", TdcMetric::Auroc),
    ("pgp_broccatelli", TdcMetric::Auroc),
    ("bioavailability_ma", TdcMetric::Auroc),
    ("lipophilicity_astrazeneca", TdcMetric::Mae),
    ("solubility_aqsoldb", TdcMetric::Mae),
    ("bbb_martins", TdcMetric::Auroc),
    ("ppbr_az", TdcMetric::Mae),
    ("vdss_lombardo", TdcMetric::Spearman),
    ("cyp2c9_veith", TdcMetric::Auprc),
    ("cyp2d6_veith", TdcMetric::Auprc),
    ("cyp3a4_veith", TdcMetric::Auprc),
    ("cyp2c9_substrate_carbonmangels", TdcMetric::Auprc),
    ("cyp3a4_substrate_carbonmangels", TdcMetric::Auroc),
    ("cyp2d6_substrate_carbonmangels", TdcMetric::Auprc),
    ("half_life_obach", TdcMetric::Spearman),
    ("clearance_hepatocyte_az", TdcMetric::Spearman),
    ("clearance_microsome_az", TdcMetric::Spearman),
    ("ld50_zhu", TdcMetric::Mae),
    ("herg", TdcMetric::Auroc),
    ("ames", TdcMetric::Auroc),
    ("dili", TdcMetric::Auroc),
];

/// One dataset of a benchmark run.
struct Dataset {
    name: String,
    source: Source,
}

enum Source {
    /// One table: the test set is cut from it.
    Table(PathBuf),
    /// TDC's benchmark-group layout: `train_val.csv` and a fixed `test.csv`.
    Group { train_val: PathBuf, test: PathBuf },
}

/// The datasets of `--data`: a table, a folder in TDC's group layout, or a folder of either
/// (tables `*.csv`/`*.tsv`/`*.parquet`, sub-folders with `train_val.csv` and `test.csv`).
fn datasets_of(path: &Path) -> Result<Vec<Dataset>> {
    let group_of = |dir: &Path| {
        let (train_val, test) = (dir.join("train_val.csv"), dir.join("test.csv"));
        (train_val.is_file() && test.is_file()).then_some(Source::Group { train_val, test })
    };
    let name_of = |p: &Path| {
        let file = p.file_name().and_then(|n| n.to_str()).unwrap_or("data");
        file.split('.').next().unwrap_or(file).to_string()
    };
    if !path.is_dir() {
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        return Ok(vec![Dataset {
            name: name_of(path),
            source: Source::Table(path.to_path_buf()),
        }]);
    }
    if let Some(source) = group_of(path) {
        return Ok(vec![Dataset {
            name: name_of(path),
            source,
        }]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for entry in entries {
        let lower = entry.to_string_lossy().to_ascii_lowercase();
        if entry.is_dir() {
            if let Some(source) = group_of(&entry) {
                out.push(Dataset {
                    name: name_of(&entry),
                    source,
                });
            }
        } else if [".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            out.push(Dataset {
                name: name_of(&entry),
                source: Source::Table(entry),
            });
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no tables and no TDC group folders (train_val.csv + test.csv) in it",
            path.display()
        );
    }
    Ok(out)
}

/// The datasets of a `--data` that lists several tables or folders, comma-separated and with
/// globs, as `data.train` does (`stream::corpus_files`), or of one path.
fn datasets_of_list(path: &Path) -> Result<Vec<Dataset>> {
    let mut out: Vec<Dataset> = Vec::new();
    for part in mole_train::data::stream::corpus_files(&path.to_string_lossy())? {
        for d in datasets_of(&part)? {
            if out.iter().any(|o| o.name == d.name) {
                bail!(
                    "--data: two datasets are named `{}` (their results would share a folder)",
                    d.name
                );
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// Rows of a table with its header.
struct Rows {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_rows(path: &Path) -> Result<Rows> {
    let (header, cells) = data::table_cells(path)?;
    let mut rows = Vec::new();
    for row in cells {
        let (line, row) = row?;
        let row = row.map_err(|e| anyhow!("{}:{line}: {e}", path.display()))?;
        rows.push(row);
    }
    Ok(Rows { header, rows })
}

/// A benchmark's result for one dataset.
struct Outcome {
    name: String,
    metric: TdcMetric,
    values: Vec<f64>,
}

pub fn run(args: &BenchmarkArgs) -> Result<()> {
    let a = &args.finetune.train;
    let data_path = a
        .data
        .clone()
        .ok_or_else(|| anyhow!("--protocol tdc needs --data (a table or a folder of them)"))?;
    let seeds = args.seeds.unwrap_or(5);
    let datasets = datasets_of_list(&data_path)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/benchmark-tdc"));
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut outcomes = Vec::new();
    for dataset in &datasets {
        outcomes.push(run_dataset(args, dataset, seeds, &out.join(&dataset.name))?);
    }

    println!("| dataset | metric | mean ± std | seeds |\n|---|---|---:|---:|");
    let mut report = serde_json::Map::new();
    for o in &outcomes {
        let (mean, std) = mean_and_population_std(&o.values);
        println!(
            "| {} | {} | {mean:.3} ± {std:.3} | {} |",
            o.name,
            o.metric.key(),
            o.values.len()
        );
        report.insert(
            o.name.clone(),
            serde_json::json!({
                "metric": o.metric.key(),
                "mean": mean,
                "std": std,
                "values": o.values,
            }),
        );
    }
    let report = serde_json::json!({
        "protocol": "tdc",
        "seeds": (1..=seeds).collect::<Vec<_>>(),
        "test_seed": args.test_seed,
        "checkpoint": args.finetune.checkpoint.as_ref().map(|p| p.display().to_string()),
        "datasets": report,
    });
    let path = out.join("benchmark.json");
    data::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    eprintln!("benchmark (TDC protocol) → {}", path.display());
    crate::report::after_run(&out);
    Ok(())
}

fn mean_and_population_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn run_dataset(args: &BenchmarkArgs, dataset: &Dataset, seeds: u64, out: &Path) -> Result<Outcome> {
    // train_val and test rows in one table, with a `tdc_part` cell (test / train_val / "")
    let (header, rows, parts): (Vec<String>, Vec<Vec<String>>, Vec<Option<bool>>) =
        match &dataset.source {
            Source::Group { train_val, test } => {
                let tv = read_rows(train_val)?;
                let te = read_rows(test)?;
                if tv.header != te.header {
                    bail!(
                        "{} and {}: different columns",
                        train_val.display(),
                        test.display()
                    );
                }
                let parts = std::iter::repeat_n(Some(false), tv.rows.len())
                    .chain(std::iter::repeat_n(Some(true), te.rows.len()))
                    .collect();
                let mut rows = tv.rows;
                rows.extend(te.rows);
                (tv.header, rows, parts)
            }
            Source::Table(path) => {
                let t = read_rows(path)?;
                (t.header, t.rows, Vec::new())
            }
        };
    let settings_now = RunSettings::resolve(
        settings::FINETUNE_TOML,
        args.finetune.train.config.as_deref(),
        &args.finetune.overrides(),
    )?;
    // TDC's files name the SMILES `Drug` and the label `Y`
    let tdc_columns = !header.contains(&settings_now.data.smiles_column)
        && header.iter().any(|h| h == "Drug")
        && header.iter().any(|h| h == "Y");
    let smiles_column = if tdc_columns {
        "Drug".to_string()
    } else {
        settings_now.data.smiles_column.clone()
    };
    let smiles_idx = header
        .iter()
        .position(|h| *h == smiles_column)
        .ok_or_else(|| anyhow!("{}: no `{smiles_column}` column", dataset.name))?;
    let smiles: Vec<&str> = rows
        .iter()
        .map(|r| r.get(smiles_idx).map_or("", String::as_str))
        .collect();
    let scaffolds = data::scaffolds_of(smiles.iter().copied());
    let is_test: Vec<Option<bool>> = if parts.is_empty() {
        // the fixed test set: 20 % by TDC's scaffold split with the test seed
        let split = scaffold_split(
            &scaffolds,
            args.test_seed,
            Fractions {
                train: 0.8,
                valid: 0.0,
                test: 0.2,
            },
        );
        split.iter().map(|p| p.map(|p| p == Part::Test)).collect()
    } else {
        parts
    };
    let metric = args
        .metric
        .or_else(|| {
            let name = dataset.name.to_ascii_lowercase();
            ADMET_METRICS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, m)| m)
        })
        .unwrap_or(match settings_now.task.as_ref().map(|t| t.kind) {
            Some(mole_model::TaskType::Classification) => TdcMetric::Auroc,
            _ => TdcMetric::Mae,
        });
    let train_val: Vec<usize> = (0..rows.len())
        .filter(|&i| is_test[i] == Some(false))
        .collect();
    let n_test = is_test.iter().filter(|&&t| t == Some(true)).count();
    if train_val.is_empty() || n_test == 0 {
        bail!(
            "{}: the scaffold split left {} train/valid and {n_test} test molecules",
            dataset.name,
            train_val.len()
        );
    }
    eprintln!(
        "{}: {} molecules for training and validation, {n_test} in the fixed test set; metric {}",
        dataset.name,
        train_val.len(),
        metric.key()
    );
    let tv_scaffolds: Vec<Option<String>> =
        train_val.iter().map(|&i| scaffolds[i].clone()).collect();

    let mut values = Vec::new();
    for seed in 1..=seeds {
        let seed_dir = out.join(format!("seed_{seed}"));
        std::fs::create_dir_all(&seed_dir)?;
        let tv_parts = scaffold_split(
            &tv_scaffolds,
            seed,
            Fractions {
                train: 0.875,
                valid: 0.125,
                test: 0.0,
            },
        );
        let mut part: Vec<&str> = is_test
            .iter()
            .map(|t| if *t == Some(true) { "test" } else { "" })
            .collect();
        for (k, &i) in train_val.iter().enumerate() {
            part[i] = match tv_parts[k] {
                Some(Part::Train) => "train",
                Some(_) => "valid",
                None => "",
            };
        }
        // the split written out, for the record and as the fine-tune's input
        let split_csv = seed_dir.join("split.csv");
        {
            let mut w = csv::Writer::from_writer(data::AtomicOutput::create(&split_csv)?);
            let mut h = header.clone();
            h.push("tdc_split".into());
            w.write_record(&h)?;
            for (row, p) in rows.iter().zip(&part) {
                if p.is_empty() {
                    continue;
                }
                let mut r = row.clone();
                r.resize(header.len(), String::new());
                r.push((*p).to_string());
                w.write_record(&r)?;
            }
            data::commit_csv(w)?;
        }
        let mut per_seed = args.finetune.clone();
        per_seed.train.seed = Some(seed);
        per_seed.train.out = Some(seed_dir.clone());
        per_seed.train.data = Some(split_csv.clone());
        let mut overrides = per_seed.overrides();
        overrides.push("data.split_column=\"tdc_split\"".into());
        overrides.push(format!("data.smiles_column={smiles_column:?}"));
        if tdc_columns && args.finetune.label_cols.is_none() {
            overrides.push("data.label_columns=[\"Y\"]".into());
        }
        if metric.is_classification() && args.finetune.task.is_none() {
            overrides.push("task.kind=\"classification\"".into());
        }
        let settings = RunSettings::resolve(
            settings::FINETUNE_TOML,
            per_seed.train.config.as_deref(),
            &overrides,
        )?;
        let r = supervised_run(
            &settings,
            per_seed.checkpoint.as_deref(),
            &seed_dir,
            &per_seed.train,
        )?;
        let test = r
            .test
            .ok_or_else(|| anyhow!("{} seed {seed}: no test metrics", dataset.name))?;
        let value = test[metric.key()].as_f64().ok_or_else(|| {
            anyhow!(
                "{} seed {seed}: the test metrics have no {} (task kind and metric disagree?)",
                dataset.name,
                metric.key()
            )
        })?;
        eprintln!(
            "{} seed {seed}: test {} = {value:.4}",
            dataset.name,
            metric.key()
        );
        values.push(value);
    }
    Ok(Outcome {
        name: dataset.name.clone(),
        metric,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lists_several_tables_and_refuses_two_of_one_name() {
        let dir = std::env::temp_dir().join(format!("mole-tdc-list-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("other")).unwrap();
        for f in ["esol.csv", "bace.csv", "other/esol.csv"] {
            std::fs::write(dir.join(f), "smiles,y\nCCO,1\n").unwrap();
        }
        let list = format!(
            "{},{}",
            dir.join("esol.csv").display(),
            dir.join("bace.csv").display()
        );
        let names: Vec<String> = datasets_of_list(Path::new(&list))
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["esol", "bace"]);
        // one path is one dataset, as before
        assert_eq!(datasets_of_list(&dir.join("bace.csv")).unwrap().len(), 1);
        let twice = format!(
            "{},{}",
            dir.join("esol.csv").display(),
            dir.join("other/esol.csv").display()
        );
        let err = datasets_of_list(Path::new(&twice))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("two datasets are named `esol`"), "{err}");
        let missing = format!(
            "{},{}",
            dir.join("esol.csv").display(),
            dir.join("nope.csv").display()
        );
        assert!(datasets_of_list(Path::new(&missing)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
