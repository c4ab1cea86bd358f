//! The results table and peak resident memory (Linux `/proc/self/status`).

use super::*;

pub(super) fn print_model_table(models: &[ModelResult], peak: Option<f64>) {
    println!("## Model throughput (molecules per second)");
    println!();
    let mfu = peak.is_some();
    print!(
        "| model | params | batch | padded len | fwd GFLOP/mol | inference mol/s | ms/batch | \
         training mol/s | ms/step | inference TFLOP/s | training TFLOP/s |"
    );
    if mfu {
        print!(" MFU inference | MFU training |");
    }
    println!(" peak RSS MiB (inf / train) |");
    print!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if mfu {
        print!("---:|---:|");
    }
    println!("---:|");
    let opt =
        |t: &Option<Timing>, f: &dyn Fn(&Timing) -> String| t.as_ref().map_or("–".to_string(), f);
    for m in models {
        print!(
            "| {} | {:.2} M | {} | {:.1} | {:.3} | {} | {} | {} | {} | {} | {} |",
            m.size,
            m.parameters as f64 / 1e6,
            m.batch_size,
            m.mean_padded_seq_len,
            m.forward_gflop_per_molecule,
            opt(&m.inference, &|t| format!("{:.1}", t.mol_per_s)),
            opt(&m.inference, &|t| format!("{:.1}", t.ms_per_batch)),
            opt(&m.training, &|t| format!("{:.1}", t.mol_per_s)),
            opt(&m.training, &|t| format!("{:.1}", t.ms_per_batch)),
            opt(&m.inference, &|t| format!("{:.3}", t.tflops)),
            opt(&m.training, &|t| format!("{:.3}", t.tflops)),
        );
        if mfu {
            let pct = |t: &Timing| t.mfu.map_or("n/a".into(), |v| format!("{:.1}%", 100.0 * v));
            print!(
                " {} | {} |",
                opt(&m.inference, &pct),
                opt(&m.training, &pct)
            );
        }
        let rss = |t: &Timing| t.peak_rss_mib.map_or("n/a".into(), |v| format!("{v:.0}"));
        println!(
            " {} / {} |",
            opt(&m.inference, &rss),
            opt(&m.training, &rss)
        );
    }
    println!();
    println!(
        "FLOPs: matmuls only, padded tokens, training = 3 × forward; MFU = achieved / --peak-tflops. \
         Peak RSS is host memory (VmHWM, reset before each measurement), not GPU memory."
    );
    let phased: Vec<_> = models
        .iter()
        .filter_map(|m| m.training_phases.map(|p| (m, p)))
        .collect();
    if !phased.is_empty() {
        println!();
        println!("Training step by phase, ms (device synchronised between phases):");
        println!();
        println!("| model | batch | upload | forward | backward | clip | Adam |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (m, p) in phased {
            println!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                m.size,
                m.batch_size,
                p.upload_ms,
                p.forward_ms,
                p.backward_ms,
                p.clip_ms,
                p.optimizer_ms
            );
        }
    }
}

pub(super) fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of /proc/self/status (Linux); None elsewhere.
pub(super) fn read_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resets the peak resident set (VmHWM) to the current one (Linux ≥ 4.0; ignored elsewhere).
pub(super) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
