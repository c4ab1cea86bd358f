//! Exact GELU and LayerNorm as single parallel Flex operations with their own backward.
//!
//! Why: under `Autodiff<Flex>`, Burn decomposes LayerNorm into about ten tracked element-wise
//! operations (twenty more in the backward) and runs GELU's erf and its derivative on one
//! thread; here each is one pass over the rows, split across the rayon pool, forward and
//! backward. The formulas are those of Flex and of Burn's decomposition (the same `libm::erff`,
//! two-pass mean and biased variance, division by `sqrt(var + eps)`).

use std::any::TypeId;
use std::f32::consts::{PI, SQRT_2};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use rayon::prelude::*;

use super::math::{erf, exp};

use super::{
    assume_init, contiguous_f32, draw_seed, flex_tensor, from_autodiff, from_flex, into_autodiff,
    into_flex, keep_factor, sum_parts, uninit, vectorized, AutodiffFlex, CHUNK,
};

/// Exact GELU, `x·Φ(x)`, with the vectorisable [`erf`](super::math::erf).
#[inline(always)]
pub(super) fn gelu_value(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / SQRT_2))
}

/// `(gelu(x), d gelu / dx)` from one `exp`: the value exactly as [`gelu_value`], the derivative
/// `Φ(x) + x·φ(x)` with `φ(x) = e^{-x²/2}/√(2π)` taken from the `e^{-(x/√2)²}` that `erf`
/// computes (within an ulp or two of [`gelu_derivative`]'s separate `exp`).
#[inline(always)]
pub(super) fn gelu_value_and_derivative(x: f32) -> (f32, f32) {
    let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
    let (erf, gaussian) = super::math::erf_and_gaussian(x / SQRT_2);
    let value = 0.5 * x * (1.0 + erf);
    let derivative = 0.5 * (1.0 + erf) + x * (inv_sqrt_2pi * gaussian);
    (value, derivative)
}

/// `d gelu / dx = Φ(x) + x·φ(x)`.
#[inline(always)]
pub(super) fn gelu_derivative(x: f32) -> f32 {
    let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
    let cdf = 0.5 * (1.0 + erf(x / SQRT_2));
    let pdf = inv_sqrt_2pi * exp(-0.5 * x * x);
    cdf + x * pdf
}

fn shape_of(t: &FlexTensor) -> Shape {
    t.layout().shape().clone()
}

fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    let x = contiguous_f32(x);
    let input: &[f32] = x.storage();
    let mut out = vec![0f32; input.len()];
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            vectorized(
                #[inline(always)]
                || {
                    for (o, &v) in o.iter_mut().zip(i) {
                        *o = gelu_value(v);
                    }
                },
            )
        });
    flex_tensor(out, shape_of(&x))
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input and the output, contiguous.
    /// The input, contiguous.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous_f32(&grads.consume::<Flex>(&ops.node));
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let input = &ops.state;
        let x: &[f32] = input.storage();
        let g: &[f32] = grad.storage();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((o, x), g)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                            *o = g * gelu_derivative(x);
                        }
                    },
                )
            });
        grads.register::<Flex>(node.id, flex_tensor(out, shape_of(input)));
    }
}

/// Exact (erf) GELU, in parallel; `Err(x)` when `B` is not Flex-based or `x` is not f32.
/// Shapes: `x [..]` (any rank) → the same shape.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        return Ok(from_flex(gelu_forward(&into_flex(x))));
    }
    if TypeId::of::<B>() != TypeId::of::<AutodiffFlex>() {
        return Err(x);
    }
    let x = into_autodiff(x);
    let input = contiguous_f32(&x.primitive);
    let output = gelu_forward(&input);
    let out = match GeluBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(input, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Ok(from_autodiff(out))
}

/// Sum with eight independent partial sums (vectorisable; a strict left-to-right f32 sum is
/// latency-bound).
#[inline(always)]
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0f32; 8];
    for (k, v) in values.enumerate() {
        lanes[k % 8] += v;
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// Rows per parallel task for LayerNorm.
const ROWS_PER_TASK: usize = 32;

/// What is added to the LayerNorm's input first: `LayerNorm(dropout(x) + residual)`.
#[derive(Clone, Copy)]
struct Residual<'a> {
    /// Same shape as `x`.
    values: &'a [f32],
    /// Dropout on `x`: `(seed, keep)`; the multiplier of element `t` is `keep_factor(seed, t)`,
    /// the stream of [`super::dropout`].
    dropout: Option<(u64, f32)>,
}

/// Dropout multiplier of element `index` (1 without dropout).
#[inline(always)]
fn drop_multiplier(dropout: Option<(u64, f32)>, index: usize) -> f32 {
    match dropout {
        None => 1.0,
        Some((seed, keep)) => keep_factor(seed, index as u64, keep, 1.0 / keep),
    }
}

/// Normalises each row of `x [rows, d]` (first adding `residual`, if any): returns `(y, x̂,
/// inv_std)` where `x̂ = (x - mean) / sqrt(var + eps)` and `y = x̂·γ + β`.
fn layer_norm_forward(
    x: &[f32],
    residual: Option<Residual<'_>>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let rows = x.len() / d;
    let mut y = uninit(x.len());
    let mut normed = uninit(x.len());
    let mut inv_std = vec![0f32; rows];
    y.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(normed.par_chunks_mut(ROWS_PER_TASK * d))
        .zip(inv_std.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, ((y, normed), inv_std))| {
            vectorized(
                #[inline(always)]
                || {
                    let mut summed = vec![0f32; if residual.is_some() { d } else { 0 }];
                    for (r, inv) in inv_std.iter_mut().enumerate() {
                        let start = (task * ROWS_PER_TASK + r) * d;
                        let row: &[f32] = match residual {
                            None => &x[start..start + d],
                            Some(res) => {
                                let (x, values) =
                                    (&x[start..start + d], &res.values[start..start + d]);
                                for (c, z) in summed[..d].iter_mut().enumerate() {
                                    *z = x[c] * drop_multiplier(res.dropout, start + c) + values[c];
                                }
                                &summed
                            }
                        };
                        let mean = lane_sum(row.iter().copied()) / d as f32;
                        let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / d as f32;
                        let denom = (var + eps).sqrt();
                        *inv = 1.0 / denom;
                        let n_row = &mut normed[r * d..(r + 1) * d];
                        let y_row = &mut y[r * d..(r + 1) * d];
                        let (row, gamma, beta) = (&row[..d], &gamma[..d], beta.map(|b| &b[..d]));
                        for c in 0..d {
                            let n = (row[c] - mean) / denom;
                            n_row[c].write(n);
                            y_row[c].write(match beta {
                                Some(b) => n * gamma[c] + b[c],
                                None => n * gamma[c],
                            });
                        }
                    }
                },
            )
        });
    // SAFETY: every row of both was written above.
    unsafe { (assume_init(y), assume_init(normed), inv_std) }
}

/// LayerNorm's backward: `(dx, dγ, dβ)` from `dy`, `x̂` and `inv_std`.
fn layer_norm_backward(
    dy: &[f32],
    normed: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut dx = uninit(dy.len());
    // Per task: partial sums of dγ = Σ dy·x̂ and dβ = Σ dy, added up afterwards.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS_PER_TASK * d)
        .zip(dy.par_chunks(ROWS_PER_TASK * d))
        .zip(normed.par_chunks(ROWS_PER_TASK * d))
        .zip(inv_std.par_chunks(ROWS_PER_TASK))
        .map(|(((dx, dy), normed), inv_std)| {
            vectorized(
                #[inline(always)]
                || {
                    let mut dgamma = vec![0f32; d];
                    let mut dbeta = vec![0f32; d];
                    let mut dn = vec![0f32; d];
                    // every slice cut to exactly `d` first, so the loops carry no bounds checks and
                    // vectorise
                    let gamma = &gamma[..d];
                    for (r, &inv) in inv_std.iter().enumerate() {
                        let dy = &dy[r * d..(r + 1) * d];
                        let n = &normed[r * d..(r + 1) * d];
                        let (dn, dgamma, dbeta) = (&mut dn[..d], &mut dgamma[..d], &mut dbeta[..d]);
                        for c in 0..d {
                            dn[c] = dy[c] * gamma[c];
                            dgamma[c] += dy[c] * n[c];
                            dbeta[c] += dy[c];
                        }
                        let mean_dn = lane_sum(dn.iter().copied()) / d as f32;
                        let mean_dn_n = lane_sum(dn.iter().zip(n).map(|(a, b)| a * b)) / d as f32;
                        let dx = &mut dx[r * d..(r + 1) * d];
                        for c in 0..d {
                            dx[c].write(inv * (dn[c] - mean_dn - n[c] * mean_dn_n));
                        }
                    }
                    (dgamma, dbeta)
                },
            )
        })
        .collect();
    let dgamma = sum_parts(partials.iter().map(|p| &p.0[..]), d);
    let dbeta = sum_parts(partials.iter().map(|p| &p.1[..]), d);
    // SAFETY: every row was written above.
    (unsafe { assume_init(dx) }, dgamma, dbeta)
}

#[derive(Debug, Clone)]
struct SavedLayerNorm {
    /// `x̂`, `[rows * d]`, and `1 / sqrt(var + eps)` per row.
    normed: std::sync::Arc<Vec<f32>>,
    inv_std: std::sync::Arc<Vec<f32>>,
    gamma: FlexTensor,
    input_shape: Shape,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = SavedLayerNorm;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous_f32(&grads.consume::<Flex>(&ops.node));
        let saved = ops.state;
        let (dx, dgamma, dbeta) = layer_norm_backward(
            grad.storage(),
            &saved.normed,
            &saved.inv_std,
            saved.gamma.storage(),
        );
        let d = dgamma.len();
        let [node_x, node_gamma, node_beta] = ops.parents;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, saved.input_shape.clone()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, Shape::new([d])));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, Shape::new([d])));
        }
    }
}

/// LayerNorm over the last dimension with scale `gamma [d]` and shift `beta [d]`, as one
/// parallel operation with its own backward under `Autodiff<Flex>` (plain Flex already fuses
/// it). `Err` hands the inputs back when `B` is not `Autodiff<Flex>` or the dtype is not f32.
#[allow(clippy::type_complexity)]
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>)> {
    if TypeId::of::<B>() != TypeId::of::<AutodiffFlex>()
        || x.dtype() != DType::F32
        || gamma.dtype() != DType::F32
    {
        return Err((x, gamma, beta));
    }
    let (x, gamma, beta) = (into_autodiff(x), into_autodiff(gamma), into_autodiff(beta));
    let input = contiguous_f32(&x.primitive);
    let gamma_host = contiguous_f32(&gamma.primitive);
    let beta_host = contiguous_f32(&beta.primitive);
    let (y, normed, inv_std) = layer_norm_forward(
        input.storage(),
        None,
        gamma_host.storage(),
        Some(beta_host.storage()),
        eps as f32,
    );
    let input_shape = shape_of(&input);
    let output = flex_tensor(y, input_shape.clone());
    let out = match LayerNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            SavedLayerNorm {
                normed: std::sync::Arc::new(normed),
                inv_std: std::sync::Arc::new(inv_std),
                gamma: gamma_host,
                input_shape,
            },
            output,
        ),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Ok(from_autodiff(out))
}

/// Inputs of [`residual_layer_norm`]: `LayerNorm(dropout(x) + residual)`, the closing step of
/// each transformer sub-block.
pub struct ResidualLayerNormInput<B: Backend, const D: usize> {
    /// `[..., d]`: the sub-block's output.
    pub x: Tensor<B, D>,
    /// Same shape: the sub-block's input.
    pub residual: Tensor<B, D>,
    /// Dropout probability on `x` (applied when the backend records gradients, as
    /// `burn::nn::Dropout`).
    pub dropout: f64,
    /// `[d]` each.
    pub gamma: Tensor<B, 1>,
    pub beta: Tensor<B, 1>,
    pub eps: f64,
}

#[derive(Debug, Clone)]
struct SavedResidualLayerNorm {
    norm: SavedLayerNorm,
    dropout: Option<(u64, f32)>,
}

#[derive(Debug)]
struct ResidualLayerNormBackward;

impl Backward<Flex, 4> for ResidualLayerNormBackward {
    type State = SavedResidualLayerNorm;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous_f32(&grads.consume::<Flex>(&ops.node));
        let SavedResidualLayerNorm { norm, dropout } = ops.state;
        let (dz, dgamma, dbeta) = layer_norm_backward(
            grad.storage(),
            &norm.normed,
            &norm.inv_std,
            norm.gamma.storage(),
        );
        let d = dgamma.len();
        let [node_x, node_residual, node_gamma, node_beta] = ops.parents;
        // d residual = d z; d x = d z · dropout multiplier, the same buffer without dropout.
        let dz = flex_tensor(dz, norm.input_shape.clone());
        if let Some(node) = node_x {
            let dx = match dropout {
                None => dz.clone(),
                Some(_) => {
                    let dz: &[f32] = dz.storage();
                    let mut dx = uninit(dz.len());
                    dx.par_chunks_mut(CHUNK)
                        .zip(dz.par_chunks(CHUNK))
                        .enumerate()
                        .for_each(|(c, (dx, dz))| {
                            vectorized(
                                #[inline(always)]
                                || {
                                    for (o, (dx, &dz)) in dx.iter_mut().zip(dz).enumerate() {
                                        dx.write(dz * drop_multiplier(dropout, c * CHUNK + o));
                                    }
                                },
                            )
                        });
                    // SAFETY: every element was just written.
                    flex_tensor(unsafe { assume_init(dx) }, norm.input_shape.clone())
                }
            };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_residual {
            grads.register::<Flex>(node.id, dz);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, Shape::new([d])));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, Shape::new([d])));
        }
    }
}

/// `LayerNorm(dropout(x) + residual)` over the last dimension as one parallel operation (with
/// its own backward under `Autodiff<Flex>`); the dropout stream is that of [`super::dropout`]
/// (same seed draw, same element multipliers). `Err` hands the inputs back when `B` is not
/// Flex-based, a tensor is not f32 or the shapes do not match.
pub fn residual_layer_norm<B: Backend, const D: usize>(
    input: ResidualLayerNormInput<B, D>,
) -> Result<Tensor<B, D>, ResidualLayerNormInput<B, D>> {
    let flex_ad = TypeId::of::<B>() == TypeId::of::<AutodiffFlex>();
    let flex = TypeId::of::<B>() == TypeId::of::<Flex>();
    let d = input.gamma.dims()[0];
    let dtypes = [
        input.x.dtype(),
        input.residual.dtype(),
        input.gamma.dtype(),
        input.beta.dtype(),
    ];
    if !(flex || flex_ad)
        || dtypes != [DType::F32; 4]
        || input.x.dims() != input.residual.dims()
        || input.x.dims()[D - 1] != d
        || input.beta.dims() != [d]
    {
        return Err(input);
    }
    let device = input.x.device();
    let dropout = (B::ad_enabled(&device) && input.dropout > 0.0)
        .then(|| (draw_seed::<B>(&device), (1.0 - input.dropout) as f32));
    let eps = input.eps as f32;
    if flex {
        let x = contiguous_f32(&into_flex(input.x));
        let residual = contiguous_f32(&into_flex(input.residual));
        let gamma = contiguous_f32(&into_flex(input.gamma));
        let beta = contiguous_f32(&into_flex(input.beta));
        let res = Residual {
            values: residual.storage(),
            dropout,
        };
        let (y, _, _) = layer_norm_forward(
            x.storage(),
            Some(res),
            gamma.storage(),
            Some(beta.storage()),
            eps,
        );
        return Ok(from_flex(flex_tensor(y, shape_of(&x))));
    }
    let x = into_autodiff(input.x);
    let residual = into_autodiff(input.residual);
    let gamma = into_autodiff(input.gamma);
    let beta = into_autodiff(input.beta);
    let x_host = contiguous_f32(&x.primitive);
    let residual_host = contiguous_f32(&residual.primitive);
    let gamma_host = contiguous_f32(&gamma.primitive);
    let beta_host = contiguous_f32(&beta.primitive);
    let res = Residual {
        values: residual_host.storage(),
        dropout,
    };
    let (y, normed, inv_std) = layer_norm_forward(
        x_host.storage(),
        Some(res),
        gamma_host.storage(),
        Some(beta_host.storage()),
        eps,
    );
    let input_shape = shape_of(&x_host);
    let output = flex_tensor(y, input_shape.clone());
    let out = match ResidualLayerNormBackward
        .prepare::<NoCheckpointing>([
            x.node.clone(),
            residual.node.clone(),
            gamma.node.clone(),
            beta.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            SavedResidualLayerNorm {
                norm: SavedLayerNorm {
                    normed: std::sync::Arc::new(normed),
                    inv_std: std::sync::Arc::new(inv_std),
                    gamma: gamma_host,
                    input_shape,
                },
                dropout,
            },
            output,
        ),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Ok(from_autodiff(out))
}
