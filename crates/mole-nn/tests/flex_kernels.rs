//! The fused Flex attention (feature `flex`) against Burn's op-by-op path on the same weights and
//! inputs: outputs and every gradient, with padding, a pretraining-style pair mask (a fully
//! masked query row included) and relative positions reaching the last table row used.
//!
//! The op-by-op path is what the parity tests check against the original PyTorch MolE; asking
//! the attention for its probabilities (`want_probs`) selects it, so both run in one binary.
//! Tolerance: both compute in f32 with different summation orders (gemm vs. row-wise
//! multiply-adds), so results agree to a few f32 ulps of the values' scale: 1e-5 relative to the
//! largest magnitude of each tensor.
#![cfg(feature = "flex")]

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData};
use mole_nn::{DebertaConfig, DisentangledSelfAttention};

type AD = Autodiff<Flex>;

/// Flex's RNG is process-global and the test harness runs tests on parallel threads: each test
/// holds this lock so that seeding and drawing are not interleaved.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

const BATCH: usize = 3;
const SEQ: usize = 7;
const ROWS: usize = 6;

fn config() -> DebertaConfig {
    // 2 heads of 8: exercises head slicing and the vector-loop remainders.
    DebertaConfig::new(20, 16, 1, 2, 32).with_dropout(0.0)
}

/// `[batch, 1, seq, seq]`: molecule 0 full, molecule 1 padded after 4 tokens, molecule 2 with a
/// pair mask that blocks query row 2 entirely and a few other pairs.
fn attend_mask() -> Vec<bool> {
    let mut allowed = vec![true; BATCH * SEQ * SEQ];
    for i in 0..SEQ {
        for j in 0..SEQ {
            if i >= 4 || j >= 4 {
                allowed[(SEQ + i) * SEQ + j] = false;
            }
        }
    }
    for j in 0..SEQ {
        allowed[(2 * SEQ + 2) * SEQ + j] = false;
    }
    allowed[(2 * SEQ + 5) * SEQ + 1] = false;
    allowed[(2 * SEQ + 1) * SEQ + 6] = false;
    allowed
}

/// Symmetric relative positions in `0..ROWS` (0 on the diagonal's CLS row/column).
fn relative_positions() -> Vec<i64> {
    let mut rel = vec![0i64; BATCH * SEQ * SEQ];
    for b in 0..BATCH {
        for i in 1..SEQ {
            for j in 1..SEQ {
                rel[(b * SEQ + i) * SEQ + j] =
                    ((i as i64 - j as i64).abs() + b as i64) % ROWS as i64 + 1;
            }
        }
    }
    rel.iter().map(|&r| r.min(ROWS as i64 - 1)).collect()
}

/// The attention mask `[batch, 1, seq, seq]` and relative index `[batch, heads, seq, seq]`
/// (heads expanded) of [`attend_mask`] and [`relative_positions`].
fn pair_inputs<B: Backend>() -> (Tensor<B, 4, Bool>, Tensor<B, 4, Int>) {
    let device = Default::default();
    let attend = Tensor::from_data(
        TensorData::new(attend_mask(), [BATCH, 1, SEQ, SEQ]),
        &device,
    );
    let rel = Tensor::<B, 3, Int>::from_data(
        TensorData::new(relative_positions(), [BATCH, SEQ, SEQ]),
        &device,
    )
    .unsqueeze_dim::<4>(1)
    .expand([BATCH, 2, SEQ, SEQ]);
    (attend, rel)
}

struct Run {
    context: Vec<f32>,
    grads: Vec<(&'static str, Vec<f32>)>,
}

fn run(attention: &DisentangledSelfAttention<AD>, fused: bool) -> Run {
    let device = Default::default();
    Flex::seed(&device, 7);
    let hidden = Tensor::<AD, 3>::random([BATCH, SEQ, 16], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let table =
        Tensor::<AD, 2>::random([ROWS, 16], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let weights =
        Tensor::<AD, 3>::random([BATCH, SEQ, 16], Distribution::Normal(0.0, 1.0), &device);
    let (attend, rel) = pair_inputs::<AD>();
    // want_probs = true selects the op-by-op path.
    let out = attention.forward(hidden.clone(), attend, rel, table.clone(), !fused, false);
    assert_eq!(out.probs.is_some(), !fused);
    let context = out.context.clone().into_data().to_vec::<f32>().unwrap();
    let grads = (out.context * weights).sum().backward();
    let host =
        |t: Option<Tensor<Flex, 2>>| t.expect("gradient").into_data().to_vec::<f32>().unwrap();
    let host3 =
        |t: Option<Tensor<Flex, 3>>| t.expect("gradient").into_data().to_vec::<f32>().unwrap();
    Run {
        context,
        grads: vec![
            ("hidden", host3(hidden.grad(&grads))),
            ("table", host(table.grad(&grads))),
            (
                "query_proj.weight",
                host(attention.query_proj.weight.val().grad(&grads)),
            ),
            (
                "key_proj.weight",
                host(attention.key_proj.weight.val().grad(&grads)),
            ),
            (
                "value_proj.weight",
                host(attention.value_proj.weight.val().grad(&grads)),
            ),
            (
                "key_proj.bias",
                attention
                    .key_proj
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            ),
        ],
    }
}

fn assert_close(name: &str, fused: &[f32], reference: &[f32]) {
    assert_eq!(fused.len(), reference.len(), "{name}: length");
    let scale = reference
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let worst = fused
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "{name}: max |fused - op-by-op| = {worst:e} (scale {scale:e})"
    );
}

#[test]
fn fused_attention_matches_the_op_by_op_path_with_gradients() {
    let _rng = lock();
    let device = Default::default();
    Flex::seed(&device, 1);
    let attention = DisentangledSelfAttention::<AD>::new(&config(), &device);
    let fused = run(&attention, true);
    let reference = run(&attention, false);
    assert_close("context", &fused.context, &reference.context);
    // Padded query rows and the fully blocked row give exactly zero context.
    for (b, i) in [(1usize, 5usize), (2, 2)] {
        let row = &fused.context[(b * SEQ + i) * 16..(b * SEQ + i + 1) * 16];
        assert!(
            row.iter().all(|&v| v == 0.0),
            "row ({b}, {i}) not zero: {row:?}"
        );
    }
    for ((name, f), (_, r)) in fused.grads.iter().zip(&reference.grads) {
        assert!(
            r.iter().any(|&v| v != 0.0),
            "{name}: reference gradient is all zero"
        );
        assert_close(name, f, r);
    }
}

#[test]
fn fused_attention_inference_matches_the_op_by_op_path() {
    let _rng = lock();
    let device = Default::default();
    Flex::seed(&device, 2);
    let attention = DisentangledSelfAttention::<Flex>::new(&config(), &device);
    let hidden =
        Tensor::<Flex, 3>::random([BATCH, SEQ, 16], Distribution::Normal(0.0, 1.0), &device);
    let table = Tensor::<Flex, 2>::random([ROWS, 16], Distribution::Normal(0.0, 1.0), &device);
    let (attend, rel) = pair_inputs::<Flex>();
    let fused = attention.forward(
        hidden.clone(),
        attend.clone(),
        rel.clone(),
        table.clone(),
        false,
        false,
    );
    let reference = attention.forward(hidden, attend, rel, table, true, false);
    assert_close(
        "context",
        &fused.context.into_data().to_vec::<f32>().unwrap(),
        &reference.context.into_data().to_vec::<f32>().unwrap(),
    );
}

#[test]
fn fused_dropout_is_seeded_and_keeps_the_expected_share() {
    let _rng = lock();
    let device = Default::default();
    let x = Tensor::<AD, 2>::ones([200, 500], &device);
    let draw = |seed| {
        Flex::seed(&device, seed);
        mole_nn::flex_kernels::dropout(x.clone(), 0.1)
            .unwrap_or_else(|_| panic!("Flex f32 takes the fast path"))
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let a = draw(3);
    assert_eq!(a, draw(3), "same seed, same mask");
    assert_ne!(a, draw(4), "another seed, another mask");
    let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    // 100,000 Bernoulli(0.9) draws: standard deviation 0.00095.
    assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
    let scale = 1.0 / 0.9f32;
    assert!(a.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
}

/// Deterministic inputs without the global RNG: a fixed pseudo-random sequence in [-3, 3).
fn values(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let z = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ salt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((z >> 40) as f32 / 16_777_216.0) * 6.0 - 3.0
        })
        .collect()
}

#[test]
fn fused_gelu_and_layer_norm_match_burn_with_gradients() {
    let _rng = lock();
    let device = Default::default();
    let (rows, d) = (37, 48);
    let x = || {
        Tensor::<AD, 2>::from_data(TensorData::new(values(rows * d, 1), [rows, d]), &device)
            .require_grad()
    };
    let weights =
        Tensor::<AD, 2>::from_data(TensorData::new(values(rows * d, 2), [rows, d]), &device);

    // GELU: mole_nn::gelu (fused) against Burn's activation (Flex's own kernels).
    let (xa, xb) = (x(), x());
    let ya = mole_nn::gelu(xa.clone());
    let yb = burn::tensor::activation::gelu(xb.clone());
    assert_close("gelu", &host(ya.clone()), &host(yb.clone()));
    let ga = (ya * weights.clone()).sum().backward();
    let gb = (yb * weights.clone()).sum().backward();
    assert_close(
        "gelu grad",
        &host(xa.grad(&ga).unwrap()),
        &host(xb.grad(&gb).unwrap()),
    );

    // LayerNorm: precision::layer_norm (fused under Autodiff<Flex>) against Burn's LayerNorm.
    let eps = 1e-7;
    let mut norm = burn::nn::LayerNormConfig::new(d)
        .with_epsilon(eps)
        .init::<AD>(&device);
    norm.gamma = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(values(d, 3), [d]),
        &device,
    ));
    norm.beta = Some(burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(values(d, 4), [d]),
        &device,
    )));
    let (xa, xb) = (x(), x());
    let ya = mole_nn::precision::layer_norm(&norm, eps, xa.clone());
    let yb = norm.forward(xb.clone());
    assert_close("layer_norm", &host(ya.clone()), &host(yb.clone()));
    let ga = (ya * weights.clone()).sum().backward();
    let gb = (yb * weights).sum().backward();
    assert_close(
        "layer_norm grad x",
        &host(xa.grad(&ga).unwrap()),
        &host(xb.grad(&gb).unwrap()),
    );
    for (name, p) in [
        ("gamma", &norm.gamma),
        ("beta", norm.beta.as_ref().unwrap()),
    ] {
        let (a, b) = (grad(&p.val(), &ga), grad(&p.val(), &gb));
        assert_close(name, &a, &b);
    }
}

/// The gradient of `t` in `grads`, on the host.
fn grad<const D: usize>(
    t: &Tensor<AD, D>,
    grads: &<AD as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<f32> {
    t.grad(grads).unwrap().into_data().to_vec::<f32>().unwrap()
}

fn host<B: burn::tensor::backend::Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// The comparisons above would pass trivially if the fused path handed its inputs back: check
/// that it takes Flex and `Autodiff<Flex>` f32 inputs, and hands back other dtypes.
#[test]
fn fused_attention_takes_flex_f32_and_hands_back_the_rest() {
    fn input<B: burn::tensor::backend::Backend>(
        dtype: burn::tensor::DType,
    ) -> mole_nn::flex_kernels::FusedAttentionInput<B> {
        let device = Default::default();
        let tokens = || {
            Tensor::<B, 3>::from_data(
                TensorData::new(values(BATCH * SEQ * 16, 5), [BATCH, SEQ, 16]),
                &device,
            )
            .cast(dtype)
        };
        let table = || {
            Tensor::<B, 2>::from_data(TensorData::new(values(ROWS * 16, 6), [ROWS, 16]), &device)
                .cast(dtype)
        };
        let (attend, rel_index) = pair_inputs::<B>();
        mole_nn::flex_kernels::FusedAttentionInput {
            query: tokens(),
            key: tokens(),
            value: tokens(),
            pos_key: table(),
            pos_query: table(),
            attend,
            rel_index,
            num_heads: 2,
            dropout: 0.0,
        }
    }
    use burn::tensor::DType;
    assert!(mole_nn::flex_kernels::attention(input::<Flex>(DType::F32)).is_ok());
    assert!(mole_nn::flex_kernels::attention(input::<AD>(DType::F32)).is_ok());
    assert!(mole_nn::flex_kernels::attention(input::<Flex>(DType::F16)).is_err());
}

/// The fused linear layer (with and without GELU) against Burn's `linear` and `gelu` on
/// `Autodiff<Flex>`: outputs and the gradients of x, W and b; a small 3-D input and one large
/// enough for the product to be split across threads. Also checks that the fused path is taken
/// for f32 (Flex and `Autodiff<Flex>`) and handed back for f16.
#[test]
fn fused_linear_matches_burn_with_gradients() {
    use mole_nn::flex_kernels::{linear, Activation};
    let device = Default::default();
    for (batch, seq, d_in, d_out) in [(3, 7, 40, 20), (4, 50, 192, 200)] {
        let input = |salt| {
            Tensor::<AD, 3>::from_data(
                TensorData::new(values(batch * seq * d_in, salt), [batch, seq, d_in]),
                &device,
            )
            .require_grad()
        };
        let weight = || {
            Tensor::<AD, 2>::from_data(
                TensorData::new(values(d_in * d_out, 8), [d_in, d_out]),
                &device,
            )
            .mul_scalar(0.1)
            .detach()
            .require_grad()
        };
        let bias = || {
            Tensor::<AD, 1>::from_data(TensorData::new(values(d_out, 9), [d_out]), &device)
                .require_grad()
        };
        let upstream = Tensor::<AD, 3>::from_data(
            TensorData::new(values(batch * seq * d_out, 10), [batch, seq, d_out]),
            &device,
        );
        for activation in [Activation::Identity, Activation::Gelu] {
            let (xa, wa, ba) = (input(7), weight(), bias());
            let (xb, wb, bb) = (input(7), weight(), bias());
            let ya = linear(xa.clone(), wa.clone(), ba.clone(), activation)
                .unwrap_or_else(|_| panic!("fused linear refused Autodiff<Flex> f32"));
            let mut yb = burn::tensor::module::linear(xb.clone(), wb.clone(), Some(bb.clone()));
            if activation == Activation::Gelu {
                yb = burn::tensor::activation::gelu(yb);
            }
            let flat = |t: Tensor<AD, 3>| t.into_data().to_vec::<f32>().unwrap();
            let name = format!("{activation:?} {batch}x{seq}x{d_in}->{d_out}");
            assert_close(&name, &flat(ya.clone()), &flat(yb.clone()));
            let ga = (ya * upstream.clone()).sum().backward();
            let gb = (yb * upstream.clone()).sum().backward();
            assert_close(&format!("{name} dx"), &grad(&xa, &ga), &grad(&xb, &gb));
            assert_close(&format!("{name} dW"), &grad(&wa, &ga), &grad(&wb, &gb));
            assert_close(&format!("{name} db"), &grad(&ba, &ga), &grad(&bb, &gb));

            // Inference (plain Flex) gives the same values.
            let inner = |t: Tensor<AD, 3>| t.inner();
            let yc = linear(
                inner(xa.clone()),
                wa.clone().inner(),
                ba.clone().inner(),
                activation,
            )
            .unwrap_or_else(|_| panic!("fused linear refused Flex f32"));
            let yd = linear(xa, wa, ba, activation).unwrap_or_else(|_| panic!("refused"));
            assert_close(
                &format!("{name} inference"),
                &yc.into_data().to_vec::<f32>().unwrap(),
                &flat(yd),
            );
        }
    }
    let half = Tensor::<Flex, 2>::from_data(TensorData::new(values(8, 1), [2, 4]), &device)
        .cast(burn::tensor::DType::F16);
    let w = Tensor::<Flex, 2>::from_data(TensorData::new(values(12, 2), [4, 3]), &device)
        .cast(burn::tensor::DType::F16);
    let b = Tensor::<Flex, 1>::from_data(TensorData::new(values(3, 3), [3]), &device)
        .cast(burn::tensor::DType::F16);
    assert!(linear(half, w, b, Activation::Identity).is_err());
}

#[test]
fn kernels_read_only_a_slice_of_a_larger_buffer() {
    // A slice at offset 0 of a longer tensor is contiguous at offset 0 but shares the whole
    // buffer: the norm and the scaling must see its elements only (data-parallel gradients
    // arrive as slices of one flat tensor).
    use mole_nn::flex_kernels::{scale, sum_of_squares};
    let device = Default::default();
    let whole = Tensor::<Flex, 1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &device);
    let prefix = whole.clone().slice(0..2).reshape([1, 2]);
    assert_eq!(sum_of_squares(&prefix), Some(5.0));
    let middle = whole.clone().slice(2..4);
    assert_eq!(sum_of_squares(&middle), Some(25.0));
    let scaled = scale(prefix, 2.0).unwrap_or_else(|_| panic!("Flex f32 takes the kernel"));
    assert_eq!(scaled.dims(), [1, 2]);
    assert_eq!(scaled.into_data().to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    // the shared buffer is left as it was
    assert_eq!(
        whole.into_data().to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}
