//! `parity`: numerical parity with the original on its recorded fixtures.

use super::*;

#[derive(Args)]
pub struct ParityArgs {
    /// The parity fixture folder (batch.json, small_l2_h64/, medium_l4_h128/).
    #[arg(long, default_value = "../shared/fixtures/parity")]
    pub fixtures: PathBuf,
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// f32, bf16 or f16 (default: bf16 on CUDA, f32 elsewhere); reduced precision uses the
    /// tolerances justified in crates/mole-model/tests/parity_mixed_precision.rs.
    #[arg(long, value_enum)]
    pub precision: Option<crate::backend::Precision>,
    /// Multiply every tolerance by this factor (for reduced-precision backends; state why).
    #[arg(long, default_value_t = 1.0)]
    pub tolerance_scale: f64,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn parity(args: ParityArgs) -> Result<()> {
    let spec = args.device.unwrap_or_else(default_device);
    let report = with_backend!(spec, args.precision, |B, device, dtype| {
        // Reduced precision: the tolerances derived in
        // crates/mole-model/tests/parity_mixed_precision.rs.
        let tol =
            mole_model::parity::Tolerances::for_compute_dtype(dtype).scaled(args.tolerance_scale);
        let report = mole_model::parity::check_all::<B>(&args.fixtures, tol, dtype, &device)?;
        Ok::<_, anyhow::Error>((report, dtype.is_some()))
    })?;
    let reduced = report.1;
    let mut report = report.0;
    // Key-bias gradients, which the softmax cancels analytically, and the f32-exact Adam
    // comparison are left out in reduced precision.
    if reduced {
        report.checks.retain(|c| {
            !c.name.contains("attention.self.key_proj.bias") && !c.name.contains("Adam")
        });
    }
    for c in &report.checks {
        println!(
            "{} {:<72} {:.3e} (tolerance {:.1e})",
            if c.passed() { "ok  " } else { "FAIL" },
            c.name,
            c.error,
            c.tolerance
        );
    }
    if let Some(p) = &args.json {
        data::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    let failures = report.failures().len();
    println!(
        "parity on {spec}: {} checks, {failures} failed",
        report.checks.len()
    );
    if report.checks.is_empty() {
        bail!(
            "{}: no parity fixtures found (expected small_l2_h64/ or medium_l4_h128/ there)",
            args.fixtures.display()
        );
    }
    if failures > 0 {
        bail!("{failures} parity check(s) failed on {spec}");
    }
    Ok(())
}
