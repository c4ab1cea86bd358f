//! `x·W + b`, optionally followed by exact GELU, as one Flex operation with its own backward.
//!
//! Why: Flex's `matmul` zero-fills every output and then copies it once more to realign it, on
//! the main thread while the other cores wait; Burn's `linear` then adds the bias in a separate
//! broadcast pass, whose backward is a separate reduction, and GELU is one more pass each way.
//! Here the bias is written first and the product accumulated onto it (or, before GELU, added in
//! the activation's pass), the backward is two products written straight into fresh buffers
//! and one parallel column sum.

use std::any::TypeId;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use rayon::prelude::*;

use super::norm_act::{gelu_value, gelu_value_and_derivative};
use super::{
    assume_init, contiguous_f32, flex_tensor, from_autodiff, from_flex, into_autodiff, into_flex,
    matmul, matmul_into, sum_parts, uninit, vectorized, AutodiffFlex, MatView,
};

/// What follows the product `x·W + b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// Exact (erf) GELU.
    Gelu,
}

/// Rows per parallel task in the element-wise passes.
const ROWS_PER_TASK: usize = 16;

/// Sizes of one call: `x [rows, d_in]`, `W [d_in, d_out]`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    rows: usize,
    d_in: usize,
    d_out: usize,
}

/// Forward on host slices: `(GELU's derivative at each pre-activation, when `keep_derivative`,
/// output)`, both `[rows, d_out]`. The derivative comes almost free here (it shares GELU's
/// `exp`), and the backward is then one multiplication instead of a second `erf` and `exp`.
fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    dims: Dims,
    activation: Activation,
    keep_derivative: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let Dims { rows, d_in, d_out } = dims;
    let x_view = MatView::row_major(x, rows, d_in);
    let w_view = MatView::row_major(weight, d_in, d_out);
    match activation {
        Activation::Identity => {
            // Bias first (written in parallel, no zero-fill), then the product added onto it.
            let mut out = uninit(rows * d_out);
            out.par_chunks_mut(d_out).for_each(|row| {
                for (o, &b) in row.iter_mut().zip(bias) {
                    o.write(b);
                }
            });
            // SAFETY: every row was just written.
            let mut out = unsafe { assume_init(out) };
            matmul_into(&mut out, true, x_view, w_view);
            (None, out)
        }
        Activation::Gelu => {
            // `(x·W) + b` in this order, as the op-by-op path, in the activation's pass.
            let mut pre = matmul(x_view, w_view);
            let mut out = uninit(rows * d_out);
            pre.par_chunks_mut(ROWS_PER_TASK * d_out)
                .zip(out.par_chunks_mut(ROWS_PER_TASK * d_out))
                .for_each(|(pre, out)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            for (p, o) in pre.chunks_mut(d_out).zip(out.chunks_mut(d_out)) {
                                if keep_derivative {
                                    // the pre-activation's slot now holds the derivative
                                    for ((p, o), &b) in p.iter_mut().zip(o).zip(bias) {
                                        let (value, derivative) = gelu_value_and_derivative(*p + b);
                                        o.write(value);
                                        *p = derivative;
                                    }
                                } else {
                                    for ((p, o), &b) in p.iter_mut().zip(o).zip(bias) {
                                        o.write(gelu_value(*p + b));
                                    }
                                }
                            }
                        },
                    )
                });
            // SAFETY: every element was just written.
            let out = unsafe { assume_init(out) };
            (keep_derivative.then_some(pre), out)
        }
    }
}

/// What the backward keeps.
#[derive(Debug, Clone)]
struct SavedLinear {
    /// `[rows, d_in]` and `[d_in, d_out]`, contiguous.
    x: FlexTensor,
    weight: FlexTensor,
    /// GELU only: its derivative at each pre-activation, `[rows, d_out]`.
    gelu: Option<Arc<Vec<f32>>>,
    x_shape: Shape,
    dims: Dims,
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = SavedLinear;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous_f32(&grads.consume::<Flex>(&ops.node));
        let saved = ops.state;
        let Dims { rows, d_in, d_out } = saved.dims;
        // d pre-activation.
        let through_gelu;
        let g: &[f32] = match &saved.gelu {
            None => grad.storage(),
            Some(derivative) => {
                let (derivative, dy): (&[f32], &[f32]) = (derivative, grad.storage());
                let mut g = uninit(derivative.len());
                g.par_chunks_mut(ROWS_PER_TASK * d_out)
                    .zip(derivative.par_chunks(ROWS_PER_TASK * d_out))
                    .zip(dy.par_chunks(ROWS_PER_TASK * d_out))
                    .for_each(|((g, derivative), dy)| {
                        vectorized(
                            #[inline(always)]
                            || {
                                for ((g, &d), &dy) in g.iter_mut().zip(derivative).zip(dy) {
                                    g.write(dy * d);
                                }
                            },
                        )
                    });
                // SAFETY: every element was just written.
                through_gelu = unsafe { assume_init(g) };
                &through_gelu
            }
        };
        let g_view = MatView::row_major(g, rows, d_out);
        let [node_x, node_w, node_b] = ops.parents;
        if let Some(node) = node_x {
            // dx = g · Wᵀ
            let w = MatView::row_major(saved.weight.storage(), d_in, d_out);
            let dx = matmul(g_view, w.t());
            grads.register::<Flex>(node.id, flex_tensor(dx, saved.x_shape.clone()));
        }
        if let Some(node) = node_w {
            // dW = xᵀ · g
            let x = MatView::row_major(saved.x.storage(), rows, d_in);
            let dw = matmul(x.t(), g_view);
            grads.register::<Flex>(node.id, flex_tensor(dw, Shape::new([d_in, d_out])));
        }
        if let Some(node) = node_b {
            // db = Σ_rows g, one partial sum per task.
            let parts: Vec<Vec<f32>> = g
                .par_chunks(ROWS_PER_TASK * 4 * d_out)
                .map(|chunk| {
                    let mut acc = vec![0f32; d_out];
                    vectorized(
                        #[inline(always)]
                        || {
                            for row in chunk.chunks(d_out) {
                                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                            }
                        },
                    );
                    acc
                })
                .collect();
            let db = sum_parts(parts.iter().map(|p| &p[..]), d_out);
            grads.register::<Flex>(node.id, flex_tensor(db, Shape::new([d_out])));
        }
    }
}

/// `activation(x·W + b)` for `x [..., d_in]`, `W [d_in, d_out]` (Burn's `Linear` layout), `b
/// [d_out]`, as one operation on Flex (with its own backward under autodiff). `Err` hands the
/// inputs back when `B` is not Flex-based or a tensor is not f32, for the caller's generic path.
#[allow(clippy::type_complexity)]
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    activation: Activation,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 2>, Tensor<B, 1>)> {
    let flex_ad = TypeId::of::<B>() == TypeId::of::<AutodiffFlex>();
    let flex = TypeId::of::<B>() == TypeId::of::<Flex>();
    let [d_in, d_out] = weight.dims();
    let x_dims = x.dims();
    if !(flex || flex_ad)
        || [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3]
        || x_dims[D - 1] != d_in
        || bias.dims() != [d_out]
    {
        return Err((x, weight, bias));
    }
    let dims = Dims {
        rows: x_dims[..D - 1].iter().product(),
        d_in,
        d_out,
    };
    let mut out_dims = x_dims;
    out_dims[D - 1] = d_out;
    let out_shape = Shape::new(out_dims);

    if flex {
        let (x, w, b) = (
            contiguous_f32(&into_flex(x)),
            contiguous_f32(&into_flex(weight)),
            contiguous_f32(&into_flex(bias)),
        );
        let (_, out) = forward(
            x.storage(),
            w.storage(),
            b.storage(),
            dims,
            activation,
            false,
        );
        return Ok(from_flex(flex_tensor(out, out_shape)));
    }

    let (x, weight, bias) = (into_autodiff(x), into_autodiff(weight), into_autodiff(bias));
    let x_host = contiguous_f32(&x.primitive);
    let w_host = contiguous_f32(&weight.primitive);
    let b_host = contiguous_f32(&bias.primitive);
    let (pre, out) = forward(
        x_host.storage(),
        w_host.storage(),
        b_host.storage(),
        dims,
        activation,
        true,
    );
    let output = flex_tensor(out, out_shape);
    let result = match LinearBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let x_shape = x_host.layout().shape().clone();
            let saved = SavedLinear {
                x: x_host,
                weight: w_host,
                gelu: pre.map(Arc::new),
                x_shape,
                dims,
            };
            prep.finish(saved, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Ok(from_autodiff(result))
}
