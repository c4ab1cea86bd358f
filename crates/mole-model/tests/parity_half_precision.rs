//! Parity with the original float32 outputs when the model computes in float16 (Flex on the
//! CPU; the same code path as `--precision f16` on GPUs): parameters stay in f32 and are cast
//! for the matrix products; LayerNorm, softmax, losses and the global gradient norm run in f32.
//!
//! Tolerances, in units of f16's rounding error u = 2^-11 ≈ 4.9e-4 (the same reasoning as the
//! bf16 suite, `parity_reduced_precision.rs`, whose u is 8× larger):
//! - activations and logits: 25 u at the fixtures' largest magnitudes, 0.0125 absolute;
//! - mean losses: 5 u relative, 0.0025;
//! - gradients: 40 u, 2% of each tensor's largest gradient. The gradients of parameters shared
//!   by every atom pair (the relative-position table and the LayerNorm in front of it) sum
//!   contributions from every pair of every head, and their rounding error reaches ~9–12 u in
//!   both half formats (bf16: 4.6% of the largest gradient; f16: 0.44%); 40 u leaves headroom for
//!   that accumulation while still catching any wrong formula, which moves gradients by far more.
//!
//! f16's range (largest value 65504) is the other hazard: a sum of squared gradients overflows
//! it, so the global norm used for clipping is computed in f32 (an f16 norm read as infinity and
//! would have scaled every gradient to zero), and training keeps f32 parameters and Adam state
//! (a squared f16 gradient underflows, which made pure-f16 Adam divide by ~0 and diverge).
//! The key-projection biases are left out per tensor for the reason given in the bf16 suite
//! (the softmax cancels them; what is left is rounding).
//!

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use mole_model::parity::{self, FixtureBatch, Report, Tolerances, Variant};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
}

fn f16() -> Tolerances {
    // The same values `mole parity --precision f16` uses; derived in this file's header.
    Tolerances::f16()
}

fn show(report: &Report) {
    for c in &report.checks {
        println!("{:<72} {:.3e} (tol {:.1e})", c.name, c.error, c.tolerance);
    }
}

#[test]
fn f16_forward_and_gradients_stay_within_rounding_of_float32() {
    let tol = f16();
    let fb = FixtureBatch::load(&fixtures()).unwrap();
    let device = Default::default();
    let mut report = Report::default();
    for name in ["small_l2_h64", "medium_l4_h128"] {
        let v = Variant::load(&fixtures(), name)
            .unwrap()
            .computing_in(Some(DType::F16));
        report.extend(parity::check_forward::<B>(&v, &fb, tol, &device).unwrap());
        report.extend(parity::check_gradients::<AD>(&v, &fb, tol, &device).unwrap());
    }
    show(&report);
    report
        .checks
        .retain(|c| !c.name.contains("attention.self.key_proj.bias"));
    assert!(report.checks.len() > 80);
    let failures = report.failures();
    assert!(failures.is_empty(), "f16 parity failures: {failures:#?}");
}
