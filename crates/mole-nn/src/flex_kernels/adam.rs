//! Adam's update as one parallel pass on Flex (parameter, gradient and both moments read once,
//! written in place), instead of Burn's twelve single-threaded element-wise operations.

use std::any::TypeId;

use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::{flex_tensor, from_flex, into_flex, vectorized};

/// Elements per parallel task.
const CHUNK: usize = 32 * 1024;

/// The scalars of one Adam step, as Burn's `Adam` computes them (all f32).
#[derive(Debug, Clone, Copy)]
pub struct AdamCoefficients {
    pub beta_1: f32,
    pub beta_2: f32,
    /// `sqrt(1 - beta_2^t) / (1 - beta_1^t)`
    pub combined: f32,
    /// `epsilon · sqrt(1 - beta_2^t)`
    pub epsilon: f32,
    pub lr: f32,
}

/// `(parameter, first moment, second moment)` after the step.
pub type AdamOutput<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>);
/// The inputs handed back: parameter, gradient and moments (`None` on the first step).
pub type AdamInput<B, const D: usize> = (
    Tensor<B, D>,
    Tensor<B, D>,
    Option<(Tensor<B, D>, Tensor<B, D>)>,
);

/// A contiguous f32 tensor this code may write: `t` itself when it is the only owner of its
/// storage, else a copy.
fn writable(t: FlexTensor) -> FlexTensor {
    if super::writable_in_place(&t) {
        t
    } else {
        let shape = t.layout().shape().clone();
        let values: Vec<f32> = t.to_contiguous().storage::<f32>().to_vec();
        flex_tensor(values, shape)
    }
}

/// One Adam step (Burn's formulas: `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
/// `p -= lr · (m·combined) / (sqrt(v) + ε')`) when `B` is Flex and everything is f32; `Err`
/// hands the inputs back otherwise.
pub fn adam_step<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    c: AdamCoefficients,
) -> Result<AdamOutput<B, D>, AdamInput<B, D>> {
    let all_f32 = param.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && moments
            .as_ref()
            .is_none_or(|(m, v)| m.dtype() == DType::F32 && v.dtype() == DType::F32);
    if TypeId::of::<B>() != TypeId::of::<Flex>() || !all_f32 {
        return Err((param, grad, moments));
    }
    let shape = param.shape();
    let n = shape.num_elements();
    let mut p = writable(into_flex(param));
    let g = into_flex(grad).to_contiguous();
    let (mut m, mut v, first) = match moments {
        Some((m, v)) => (writable(into_flex(m)), writable(into_flex(v)), false),
        None => (
            flex_tensor(vec![0f32; n], shape.clone()),
            flex_tensor(vec![0f32; n], shape.clone()),
            true,
        ),
    };
    {
        let g: &[f32] = &g.storage::<f32>()[..n];
        let p: &mut [f32] = &mut p.storage_mut::<f32>()[..n];
        let m: &mut [f32] = &mut m.storage_mut::<f32>()[..n];
        let v: &mut [f32] = &mut v.storage_mut::<f32>()[..n];
        let AdamCoefficients {
            beta_1,
            beta_2,
            combined,
            epsilon,
            lr,
        } = c;
        let (one_minus_b1, one_minus_b2) = (1.0 - beta_1, 1.0 - beta_2);
        // The same formula for every element; written over equal-length slices with the
        // coefficients in locals and `first` decided outside the loop, so it compiles to
        // full-width SIMD (sqrt and division included) instead of a scalar loop with bounds
        // checks. The operations and their order are unchanged: results are bit-identical.
        #[inline(always)]
        fn update(p: &mut f32, mk: f32, vk: f32, combined: f32, epsilon: f32, lr: f32) {
            let step = (mk * combined) / (vk.sqrt() + epsilon);
            *p -= step * lr;
        }
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                let len = p.len();
                let (m, v, g) = (&mut m[..len], &mut v[..len], &g[..len]);
                vectorized(
                    #[inline(always)]
                    || {
                        let lanes = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
                        if first {
                            for (((p, m), v), &gk) in lanes {
                                let (mk, vk) = (gk * one_minus_b1, gk * gk * one_minus_b2);
                                *m = mk;
                                *v = vk;
                                update(p, mk, vk, combined, epsilon, lr);
                            }
                        } else {
                            for (((p, m), v), &gk) in lanes {
                                let mk = *m * beta_1 + gk * one_minus_b1;
                                let vk = *v * beta_2 + gk * gk * one_minus_b2;
                                *m = mk;
                                *v = vk;
                                update(p, mk, vk, combined, epsilon, lr);
                            }
                        }
                    },
                )
            });
    }
    Ok((from_flex(p), from_flex(m), from_flex(v)))
}
