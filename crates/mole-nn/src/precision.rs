//! Mixed precision the way PyTorch autocast does it: parameters (and the optimiser state) stay
//! in f32, matrix products run in the compute dtype of the activations (bf16 or f16), and
//! numerically sensitive steps (LayerNorm, softmax, losses, gradient norms) run in f32.
//!
//! The compute dtype is chosen once, where the embeddings enter the encoder; every layer after
//! that follows the dtype of its input. With f32 parameters and f32 activations (the default)
//! these helpers are exactly the plain Burn modules.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{backend::Backend, DType, Tensor};

/// `x` in f32 (no copy when it already is).
/// Shapes: `x [..]` (any rank) → the same shape, in f32.
pub fn to_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    cast_to(x, DType::F32)
}

/// `x` in `dtype` (no copy when it already is).
/// Shapes: `x [..]` (any rank) → the same shape, in `dtype`.
pub fn cast_to<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(dtype)
    }
}

/// `x·W + b` in the dtype of `x`: f32 weights are cast for the product (their gradients flow
/// back to the f32 weights through the cast).
///
/// `x [..., in]` is flattened to `[rows, in]` for one 2-D product. Burn's `Linear` on a 3-D
/// input broadcasts the weight to `[1, in, out]` and takes a batched product, whose backward
/// materialises one weight gradient per batch item before summing them (`[batch, in, out]`):
/// on the CPU that made base's backward 4–5× slower than its forward.
///
/// With feature `flex`, on the CPU backend in f32 it is one fused operation
/// (`flex_kernels::linear`).
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match fused_linear(layer, x, crate::flex_kernels::Activation::Identity) {
        Ok(y) => return y,
        Err(x) => x,
    };
    plain_linear(layer, x)
}

/// `gelu(x·W + b)` (exact GELU), as [`linear`] followed by [`crate::gelu`]; with feature `flex`
/// one fused operation on the CPU backend in f32.
pub fn linear_gelu<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match fused_linear(layer, x, crate::flex_kernels::Activation::Gelu) {
        Ok(y) => return y,
        Err(x) => x,
    };
    crate::gelu(plain_linear(layer, x))
}

#[cfg(feature = "flex")]
fn fused_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    activation: crate::flex_kernels::Activation,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let Some(bias) = &layer.bias else {
        return Err(x);
    };
    crate::flex_kernels::linear(x, layer.weight.val(), bias.val(), activation).map_err(|e| e.0)
}

fn plain_linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    let mut weight = layer.weight.val();
    let mut bias = layer.bias.as_ref().map(|b| b.val());
    if weight.dtype() != dtype {
        weight = weight.cast(dtype);
        bias = bias.map(|b| b.cast(dtype));
    }
    let dims = x.dims();
    let d_in = dims[D - 1];
    let d_out = weight.dims()[1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let flat: Tensor<B, 2> = x.reshape([rows, d_in]);
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    burn::tensor::module::linear(flat, weight, bias).reshape(out_dims)
}

/// LayerNorm computed in the parameters' dtype (f32 under mixed precision), returned in the
/// dtype of `x`. `eps` must be the norm's own epsilon (Burn keeps it private): with feature
/// `flex`, training on the CPU runs it as one fused operation (`flex_kernels::layer_norm`).
/// Shapes: `x [.., hidden]` (normalised over the last axis) → `[.., hidden]`.
pub fn layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    eps: f64,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let param_dtype = norm.gamma.val().dtype();
    if param_dtype == dtype {
        #[cfg(feature = "flex")]
        if let Some(beta) = &norm.beta {
            match crate::flex_kernels::layer_norm(x, norm.gamma.val(), beta.val(), eps) {
                Ok(y) => return y,
                Err((x, _, _)) => return norm.forward(x),
            }
        }
        let _ = eps;
        return norm.forward(x);
    }
    norm.forward(x.cast(param_dtype)).cast(dtype)
}
