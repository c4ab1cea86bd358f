//! Branch-free `exp` and `erf` for f32 that the compiler vectorises.
//!
//! Why: `f32::exp` and `libm::erff` are scalar calls, so GELU (forward and backward) and the
//! attention's softmax ran one element at a time; these are plain arithmetic on each element,
//! so loops over them become SIMD loops. `erf` is the approximation PyTorch's own vectorised CPU
//! GELU uses (Abramowitz & Stegun 7.1.26: absolute error < 1.5e-7 in exact arithmetic, < 5e-7
//! evaluated in f32, where `1 - …` cancels near 0; GELU only ever uses `1 + erf`, so that is a
//! few ulps of 1), so the fused GELU follows the original's CPU numerics; `exp` is Cephes' `expf` (relative error ~2e-7).

/// `e^x` (0 below -87.3, where f32 would be subnormal).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `x - k·ln 2` is exact for the integers k used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and subtracting 1.5·2²³ (`f32::round` is a library call on
    // baseline x86-64, which would keep the loop scalar); exact for |t| < 2²².
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.7);
    let k = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^k through the exponent bits (k ∈ [-126, 128]).
    let two_k = f32::from_bits(((k as i32 + 127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        e_r * two_k
    }
}

/// `erf(x)`: `sign(x)·(1 - t·P(t)·e^{-x²})`, `t = 1 / (1 + p·|x|)`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_and_gaussian(x).0
}

/// `(erf(x), e^{-x²})`: [`erf`] and the Gaussian factor it computes on the way, for callers
/// that need both (GELU's derivative is `Φ(x) + x·φ(x)`, and `φ` is that factor).
#[inline(always)]
pub fn erf_and_gaussian(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (P * a + 1.0);
    let poly = (((A5 * t + A4) * t + A3) * t + A2) * t + A1;
    let gaussian = exp(-x * x);
    let y = 1.0 - poly * t * gaussian;
    (y.copysign(x), gaussian)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulps() {
        let mut worst = 0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0044; // -88 .. 88
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            if want > 1e-37 {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_its_published_bound() {
        let mut worst = 0f64;
        for i in -10_000..=10_000 {
            let x = i as f32 * 6e-4; // -6 .. 6
            let want = libm::erf(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
        }
        // A&S 7.1.26: 1.5e-7, plus the f32 rounding of `1 - …` (a few ulps of 1 = 6e-8).
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert!(erf(0.0).abs() < 1e-7);
        assert_eq!(erf(-10.0), -1.0);
    }
}
