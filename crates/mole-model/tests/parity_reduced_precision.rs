//! Parity with the original float32 outputs when the model computes in bfloat16 (Flex on the
//! CPU; the same code path as `--precision bf16` on GPUs): parameters stay in f32 and are cast
//! for the matrix products; LayerNorm, softmax and losses run in f32 (PyTorch autocast's split).
//!
//! Tolerances, and why: bf16 keeps 8 significant bits, so every stored value carries a relative
//! rounding error up to u = 2^-8 ≈ 3.9e-3. Weights are rounded once (relative error u), and each
//! layer re-rounds its activations; LayerNorm outputs are O(1–4) in these fixtures, so one
//! rounding already moves an activation by up to ~1.6e-2, and errors compound through 2–4
//! layers. We therefore allow 0.1 absolute on activations and logits (≈ 25 u at the fixtures'
//! largest magnitudes), 2% relative on the mean losses (their inputs are logits with error up to
//! 0.1 against label scales of 1–33), and 5% of each tensor's largest gradient. These bound
//! bf16 rounding, not a wrong formula: a deliberate error (one weight off by 0.01 in f32, see
//! `parity.rs`) or a wrong index shifts activations by far more than the f32 tolerance, and the
//! f32 suite (`parity.rs`) checks the same code at 1e-4.
//!
//! One family of gradients is not compared per tensor: the key-projection biases. A key bias
//! adds the same `q·b_k` to every key of a query, which the softmax cancels exactly; only the
//! small position-term share survives, so in bf16 these gradients are differences of large,
//! rounded terms (the fixture README already marks the last layer's as pure rounding noise in
//! f32). They still enter the global gradient norm, which is checked.
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

fn bf16() -> Tolerances {
    // The same values `mole parity --precision bf16` uses; derived in this file's header.
    Tolerances::bf16()
}

fn show(report: &Report) {
    for c in &report.checks {
        println!("{:<72} {:.3e} (tol {:.1e})", c.name, c.error, c.tolerance);
    }
}

#[test]
fn bf16_forward_and_gradients_stay_within_rounding_of_float32() {
    let tol = bf16();
    let fb = FixtureBatch::load(&fixtures()).unwrap();
    let device = Default::default();
    let mut report = Report::default();
    for name in ["small_l2_h64", "medium_l4_h128"] {
        let v = Variant::load(&fixtures(), name)
            .unwrap()
            .computing_in(Some(DType::BF16));
        report.extend(parity::check_forward::<B>(&v, &fb, tol, &device).unwrap());
        report.extend(parity::check_gradients::<AD>(&v, &fb, tol, &device).unwrap());
    }
    show(&report);
    report
        .checks
        .retain(|c| !c.name.contains("attention.self.key_proj.bias"));
    assert!(report.checks.len() > 80);
    let failures = report.failures();
    assert!(failures.is_empty(), "bf16 parity failures: {failures:#?}");
}
