//! Plots and a one-page report of a run directory, written at the end of every training run
//! and by `mole report RUN_DIR`: learning curves from `metrics.jsonl`; predicted vs measured
//! (regression) or ROC and precision–recall curves (classification) from
//! `test_predictions.csv`; a bar chart with error bars from a benchmark's `benchmark.json`.
//! SVG files in `RUN_DIR/plots/`, and `RUN_DIR/report.html`, self-contained (the SVGs inline),
//! with the run's final metrics and configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use plotters::prelude::*;

use crate::data;

#[derive(Args)]
pub struct ReportArgs {
    /// A run directory (pretrain, finetune, multitask or benchmark output).
    pub run: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<()> {
    let written = write_report(&args.run)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the report at the end of a run; a failure is a warning (the run itself succeeded).
pub fn after_run(run: &Path) {
    match write_report(run) {
        Ok(_) => eprintln!("report: {}", run.join("report.html").display()),
        Err(e) => tracing::warn!("{}: no report: {e:#}", run.display()),
    }
}

/// Name of the test-set predictions file a supervised run leaves (long format: `line,
/// smiles, task, measured, predicted`).
pub const TEST_PREDICTIONS: &str = "test_predictions.csv";

const WIDTH: u32 = 640;
const HEIGHT: u32 = 420;

/// One plot: its file name and SVG text.
struct Plot {
    file: String,
    title: String,
    svg: String,
}

/// Writes the plots and `report.html` of `run`; returns the files written.
pub fn write_report(run: &Path) -> Result<Vec<PathBuf>> {
    if !run.is_dir() {
        bail!("{}: not a run directory", run.display());
    }
    let entries = read_metrics(run)?;
    let mut plots = Vec::new();
    if !entries.is_empty() {
        plots.extend(learning_curves(&entries)?);
    }
    let predictions = run.join(TEST_PREDICTIONS);
    if predictions.exists() {
        plots.extend(prediction_plots(&predictions, &task_kind(run))?);
    }
    let benchmark = run.join("benchmark.json");
    let bars = if benchmark.exists() {
        benchmark_bars(&benchmark)?
    } else {
        Vec::new()
    };
    plots.extend(benchmark_plot(&bars)?);
    if plots.is_empty() {
        bail!(
            "{}: nothing to report (no metrics.jsonl, {TEST_PREDICTIONS} or benchmark.json)",
            run.display()
        );
    }
    let dir = run.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut written = Vec::new();
    for plot in &plots {
        let path = dir.join(&plot.file);
        data::write_atomic(&path, plot.svg.as_bytes())?;
        written.push(path);
    }
    let html = run.join("report.html");
    data::write_atomic(&html, page(run, &entries, &bars, &plots).as_bytes())?;
    written.push(html);
    Ok(written)
}

/// `metrics.jsonl`'s entries (none when the file is absent; a damaged line is skipped, as a
/// run killed mid-write leaves one).
fn read_metrics(run: &Path) -> Result<Vec<serde_json::Value>> {
    let path = run.join("metrics.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The run's task kind from its config.toml (`task.kind`), "" when it has none.
fn task_kind(run: &Path) -> String {
    std::fs::read_to_string(run.join("config.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("task")?.get("kind")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The metric a learning curve shows besides the loss: the first of masked-atom accuracy
/// (pretraining), AUROC (classification), RMSE (regression) the validation entries have.
fn main_metric(entries: &[serde_json::Value]) -> Option<&'static str> {
    ["masked_accuracy", "auroc", "rmse"].into_iter().find(|k| {
        entries
            .iter()
            .any(|e| e["kind"] == "valid" && e[*k].as_f64().is_some())
    })
}

/// (step, value) of the entries of one kind, one per step: a resumed run logs again the steps
/// after its last checkpoint, and the later entry wins.
fn points(entries: &[serde_json::Value], kind: &str, key: &str) -> Vec<(f64, f64)> {
    let mut by_step: BTreeMap<u64, f64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["kind"] == kind) {
        if let (Some(step), Some(value)) = (e["step"].as_u64(), e[key].as_f64()) {
            if value.is_finite() {
                by_step.insert(step, value);
            }
        }
    }
    by_step.into_iter().map(|(s, v)| (s as f64, v)).collect()
}

/// Range of `values` with a margin; a single value gets a unit-wide range.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    if hi - lo < 1e-12 {
        return (lo - 0.5)..(hi + 0.5);
    }
    (lo - pad)..(hi + pad)
}

/// Converts a plotters error (which borrows the backend) into an owned one.
fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// One line of a chart: its legend, (step, value) points and colour.
type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// A line chart of one or more series over steps.
fn line_chart(title: &str, y_label: &str, series: &[Series<'_>]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let xs = span(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
        let ys = span(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xs, ys)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_label)
            .draw()
            .map_err(plot_error)?;
        for (name, pts, color) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            if pts.len() < 60 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(plot_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALID: RGBColor = RGBColor(255, 127, 14);

fn learning_curves(entries: &[serde_json::Value]) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    let train = points(entries, "train", "loss");
    let valid = points(entries, "valid", "loss");
    if !train.is_empty() || !valid.is_empty() {
        plots.push(Plot {
            file: "loss.svg".into(),
            title: "Loss".into(),
            svg: line_chart(
                "Loss",
                "loss",
                &[("train", train, TRAIN), ("validation", valid, VALID)],
            )?,
        });
    }
    if let Some(metric) = main_metric(entries) {
        let valid = points(entries, "valid", metric);
        plots.push(Plot {
            file: format!("{metric}.svg"),
            title: format!("Validation {metric}"),
            svg: line_chart(
                &format!("Validation {metric}"),
                metric,
                &[("validation", valid, VALID)],
            )?,
        });
    }
    Ok(plots)
}

/// Test predictions by task: (measured, predicted) pairs with both present.
fn read_predictions(path: &Path) -> Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no `{name}` column", path.display()))
    };
    let (task, measured, predicted) = (column("task")?, column("measured")?, column("predicted")?);
    let mut by_task: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in reader.records() {
        let row = row?;
        let value = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(y), Some(p)) = (value(measured), value(predicted)) {
            if y.is_finite() && p.is_finite() {
                by_task
                    .entry(row.get(task).unwrap_or_default().to_string())
                    .or_default()
                    .push((y, p));
            }
        }
    }
    Ok(by_task)
}

/// A file-name-safe version of a task name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prediction_plots(path: &Path, kind: &str) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    for (task, pairs) in read_predictions(path)? {
        if pairs.is_empty() {
            continue;
        }
        if kind == "classification" {
            let roc = roc_points(&pairs);
            let pr = pr_points(&pairs);
            plots.push(Plot {
                file: format!("roc_{}.svg", file_safe(&task)),
                title: format!("ROC curve, {task} (test)"),
                svg: curve_chart(
                    &format!("ROC, {task}"),
                    "false positive rate",
                    "true positive rate",
                    &roc,
                    true,
                )?,
            });
            plots.push(Plot {
                file: format!("pr_{}.svg", file_safe(&task)),
                title: format!("Precision–recall, {task} (test)"),
                svg: curve_chart(
                    &format!("Precision–recall, {task}"),
                    "recall",
                    "precision",
                    &pr,
                    false,
                )?,
            });
        } else {
            plots.push(Plot {
                file: format!("parity_{}.svg", file_safe(&task)),
                title: format!("Predicted vs measured, {task} (test)"),
                svg: parity_chart(&task, &pairs)?,
            });
        }
    }
    Ok(plots)
}

/// Predicted against measured, with the identity line.
fn parity_chart(task: &str, pairs: &[(f64, f64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let range = span(pairs.iter().flat_map(|&(y, p)| [y, p]));
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Predicted vs measured, {task}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(range.clone(), range.clone())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("measured")
            .y_desc("predicted")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                [(range.start, range.start), (range.end, range.end)],
                BLACK.mix(0.5),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(
                pairs
                    .iter()
                    .map(|&(y, p)| Circle::new((y, p), 3, TRAIN.mix(0.6).filled())),
            )
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A curve in the unit square (ROC with its chance diagonal, or precision–recall).
fn curve_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    diagonal: bool,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.02)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(plot_error)?;
        if diagonal {
            chart
                .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))
                .map_err(plot_error)?;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                TRAIN.stroke_width(2),
            ))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Scores sorted from the highest, with ties kept together: the thresholds of a curve.
fn by_score(pairs: &[(f64, f64)]) -> (Vec<(bool, f64)>, f64, f64) {
    let mut sorted: Vec<(bool, f64)> = pairs.iter().map(|&(y, p)| (y >= 0.5, p)).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let positives = sorted.iter().filter(|s| s.0).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    (sorted, positives, negatives)
}

/// (false positive rate, true positive rate) at every distinct threshold.
fn roc_points(pairs: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let (sorted, positives, negatives) = by_score(pairs);
    let mut out = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &(positive, score)) in sorted.iter().enumerate() {
        if positive {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = sorted.get(i + 1).is_none_or(|next| next.1 != score);
        if last_of_tie {
            out.push((fp / negatives.max(1.0), tp / positives.max(1.0)));
        }
    }
    out
}

/// (recall, precision) at every distinct threshold.
fn pr_points(pairs: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let (sorted, positives, _) = by_score(pairs);
    let mut out = Vec::new();
    let (mut tp, mut seen) = (0.0, 0.0);
    for (i, &(positive, score)) in sorted.iter().enumerate() {
        seen += 1.0;
        if positive {
            tp += 1.0;
        }
        let last_of_tie = sorted.get(i + 1).is_none_or(|next| next.1 != score);
        if last_of_tie {
            out.push((tp / positives.max(1.0), tp / seen));
        }
    }
    out
}

/// One bar of a benchmark: its label, mean and standard deviation over seeds.
type Bar = (String, f64, f64);

/// A benchmark's results from its `benchmark.json`: one bar per dataset (TDC protocol, the
/// label naming the metric) or per metric (random protocol).
fn benchmark_bars(path: &Path) -> Result<Vec<Bar>> {
    let text = std::fs::read_to_string(path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let group = if json["datasets"].is_object() {
        &json["datasets"]
    } else {
        &json["metrics"]
    };
    let Some(group) = group.as_object() else {
        return Ok(Vec::new());
    };
    Ok(group
        .iter()
        .filter_map(|(name, v)| {
            let label = match v["metric"].as_str() {
                Some(metric) => format!("{name} ({metric})"),
                None => name.clone(),
            };
            Some((label, v["mean"].as_f64()?, v["std"].as_f64().unwrap_or(0.0)))
        })
        .filter(|(_, m, s)| m.is_finite() && s.is_finite())
        .collect())
}

/// Bars with error bars (mean ± std over seeds) of a benchmark; none without bars.
fn benchmark_plot(bars: &[Bar]) -> Result<Vec<Plot>> {
    if bars.is_empty() {
        return Ok(Vec::new());
    }
    let mut svg = String::new();
    {
        let width = WIDTH.max(120 * bars.len() as u32);
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let top = bars
            .iter()
            .map(|(_, m, s)| m + s)
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let bottom = bars.iter().map(|(_, m, s)| m - s).fold(0.0f64, f64::min) * 1.1;
        let n = bars.len();
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("Benchmark (mean ± std over seeds)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), bottom..top)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x: &SegmentValue<usize>| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, mean, _))| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *mean),
                    ],
                    TRAIN.mix(0.8).filled(),
                );
                bar.set_margin(0, 0, 20, 20);
                bar
            }))
            .map_err(plot_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, mean, std))| {
                ErrorBar::new_vertical(
                    SegmentValue::CenterOf(i),
                    mean - std,
                    *mean,
                    mean + std,
                    BLACK.filled(),
                    12,
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(vec![Plot {
        file: "benchmark.svg".into(),
        title: "Benchmark".into(),
        svg,
    }])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The final metrics: the test entry, else the last validation entry.
fn final_metrics(entries: &[serde_json::Value]) -> Option<(&'static str, &serde_json::Value)> {
    entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "test")
        .map(|e| ("test", e))
        .or_else(|| {
            entries
                .iter()
                .rev()
                .find(|e| e["kind"] == "valid")
                .map(|e| ("last validation", e))
        })
}

fn page(run: &Path, entries: &[serde_json::Value], bars: &[Bar], plots: &[Plot]) -> String {
    let name = run
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string());
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>mole run {0}</title><style>\
         body{{font-family:sans-serif;max-width:1340px;margin:1.5em auto;padding:0 1em;color:#222}}\
         .plots{{display:flex;flex-wrap:wrap;gap:12px}} figure{{margin:0}}\
         figcaption{{font-size:90%;color:#555}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 10px;text-align:left}} td.n{{text-align:right}}\
         pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>\n\
         <h1>mole run <code>{0}</code></h1>\n",
        escape(&name)
    );
    if let Some((which, metrics)) = final_metrics(entries) {
        html.push_str(&format!(
            "<h2>Final metrics ({which})</h2>\n<table><tr><th>metric</th><th>value</th></tr>\n"
        ));
        if let Some(map) = metrics.as_object() {
            for (k, v) in map {
                if k == "kind" || k == "step" || k == "epoch" || k.contains("_task_") {
                    continue;
                }
                let value = match v.as_f64() {
                    Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
                    Some(x) => format!("{x:.4}"),
                    None => "–".to_string(),
                };
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=\"n\">{value}</td></tr>\n",
                    escape(k)
                ));
            }
        }
        html.push_str("</table>\n");
    }
    if !bars.is_empty() {
        html.push_str(
            "<h2>Benchmark (test, over seeds)</h2>\n<table><tr><th></th><th>mean</th><th>std</th></tr>\n",
        );
        for (label, mean, std) in bars {
            html.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{mean:.4}</td><td class=\"n\">{std:.4}</td></tr>\n",
                escape(label)
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str("<h2>Plots</h2>\n<div class=\"plots\">\n");
    for plot in plots {
        // the SVG's own XML declaration is not allowed inside HTML
        let svg = plot.svg.trim_start_matches(|c: char| c != '<').trim_start();
        let svg = match svg.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or(rest, |(_, s)| s),
            None => svg,
        };
        html.push_str(&format!(
            "<figure>{svg}<figcaption>{} — <a href=\"plots/{}\">{}</a></figcaption></figure>\n",
            escape(&plot.title),
            escape(&plot.file),
            escape(&plot.file)
        ));
    }
    html.push_str("</div>\n");
    if let Ok(config) = std::fs::read_to_string(run.join("config.toml")) {
        html.push_str(&format!(
            "<h2>Configuration</h2>\n<pre>{}</pre>\n",
            escape(&config)
        ));
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_and_pr_curves_of_a_perfect_and_a_useless_ranking() {
        let perfect = [(1.0, 0.9), (1.0, 0.8), (0.0, 0.3), (0.0, 0.1)];
        let roc = roc_points(&perfect);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert!(roc.contains(&(0.0, 1.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        assert_eq!(pr_points(&perfect)[1], (1.0, 1.0));
        // one tied score: a single step from (0, 0) to (1, 1)
        let tied = [(1.0, 0.5), (0.0, 0.5)];
        assert_eq!(roc_points(&tied), vec![(0.0, 0.0), (1.0, 1.0)]);
        assert_eq!(pr_points(&tied), vec![(1.0, 0.5)]);
    }
}
