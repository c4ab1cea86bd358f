//! `benchmark`: seeds of split → fine-tune → test.

use super::*;

/// The benchmark protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// For each seed, a new train/valid/test split of the data (`--split random|scaffold`).
    Random,
    /// TDC's ADMET group: a fixed scaffold test set, a scaffold train/valid split per seed
    /// 1..=N, TDC's metric per dataset; `--data` may be a folder of tables or of TDC group
    /// folders (train_val.csv + test.csv, columns Drug and Y), or several tables and folders,
    /// comma-separated.
    Tdc,
}

#[derive(Args)]
pub struct BenchmarkArgs {
    /// random (default) or tdc.
    #[arg(long, value_enum, default_value = "random")]
    pub protocol: Protocol,
    /// Number of seeds (default: 3 with --protocol random, 5 with tdc, seeds 1..=5 as TDC).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
    /// TDC protocol: the test metric (default: TDC's for ADMET dataset names, else MAE for
    /// regression and AUROC for classification).
    #[arg(long, value_enum)]
    pub metric: Option<crate::tdc::TdcMetric>,
    /// TDC protocol on a single table: the seed of the scaffold split that sets aside the
    /// fixed 20 % test set.
    #[arg(long, default_value_t = 42)]
    pub test_seed: u64,
    /// `--checkpoint` to fine-tune from (default: the bundled pretrained model; `--from-scratch`
    /// for random weights) and every fine-tuning option.
    #[command(flatten)]
    pub finetune: FinetuneArgs,
}

pub fn benchmark(mut args: BenchmarkArgs) -> Result<()> {
    args.finetune.checkpoint = args.finetune.starting_checkpoint()?;
    if args.finetune.train.nodes > 1 {
        // Its many short runs would each wait for every node; run seeds as separate jobs.
        bail!(
            "benchmark runs on one machine (--devices works); --nodes is for pretrain and finetune"
        );
    }
    if args.protocol == Protocol::Tdc {
        return crate::tdc::run(&args);
    }
    let seeds = args.seeds.unwrap_or(3);
    let out = run_dir(&args.finetune.train, "benchmark");
    let mut results = Vec::new();
    let mut primary_name = String::new();
    for seed in 0..seeds {
        let mut per_seed = args.finetune.clone();
        per_seed.train.seed = Some(seed);
        per_seed.train.out = Some(out.join(format!("seed_{seed}")));
        let a = &per_seed.train;
        let settings = RunSettings::resolve(
            settings::FINETUNE_TOML,
            a.config.as_deref(),
            &per_seed.overrides(),
        )?;
        let r = supervised_run(
            &settings,
            per_seed.checkpoint.as_deref(),
            a.out.as_deref().unwrap_or(&out),
            a,
        )?;
        let test = r
            .test
            .ok_or_else(|| anyhow!("benchmark needs a test split (data.test_fraction > 0)"))?;
        primary_name = match r.kind {
            TaskKind::Regression => "rmse",
            TaskKind::BinaryClassification => "auroc",
            TaskKind::MulticlassClassification { .. } => "accuracy",
        }
        .to_string();
        eprintln!(
            "benchmark seed {seed}: {} → test {test}",
            r.best_checkpoint.display()
        );
        results.push(test);
    }
    let mut keys: Vec<String> = results
        .first()
        .and_then(|r| r.as_object())
        .map(|o| {
            o.keys()
                .filter(|k| !k.contains("_task_"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    let mut summary = serde_json::Map::new();
    println!("| metric | mean | std | n |\n|---|---|---|---|");
    for k in &keys {
        let vals: Vec<f64> = results.iter().filter_map(|r| r[k].as_f64()).collect();
        if vals.is_empty() {
            continue;
        }
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let std = if vals.len() > 1 {
            (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        println!("| {k} | {mean:.4} | {std:.4} | {} |", vals.len());
        summary.insert(
            k.clone(),
            serde_json::json!({ "mean": mean, "std": std, "values": vals }),
        );
    }
    let report = serde_json::json!({
        "primary_metric": primary_name,
        "seeds": seeds,
        "checkpoint": args.finetune.checkpoint.as_ref().map(|p| p.display().to_string()),
        "metrics": summary,
    });
    std::fs::create_dir_all(&out)?;
    data::write_atomic(
        &out.join("benchmark.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    eprintln!(
        "benchmark: {} → {}",
        primary_name,
        out.join("benchmark.json").display()
    );
    crate::report::after_run(&out);
    Ok(())
}
