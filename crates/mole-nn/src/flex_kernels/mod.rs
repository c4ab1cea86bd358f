//! Fused CPU kernels for Burn's Flex backend (feature `flex`).
//!
//! Why: on the CPU, MolE's step was dominated not by its matrix products but by per-operation
//! costs: the disentangled attention's element-wise path (two gathers and their scatter-add
//! backward, transposes that Flex walks element by element, the masked softmax), LayerNorm,
//! which Burn decomposes into ~30 single-threaded operations under autodiff, GELU's erf on one
//! thread, Adam's twelve element-wise passes, and dropout masks drawn element by element from
//! ChaCha. Here, each as one parallel operation (with its own backward node in Burn's autodiff
//! graph where it has a backward):
//!
//! - [`attention`]: `softmax(mask(q·kᵀ + c2p + p2c) / scale) · v` with dropout on the
//!   probabilities, all heads, parallel over molecules;
//! - [`layer_norm`], [`gelu`]: one pass each way;
//! - [`adam_step`]: Adam's update in place;
//! - [`dropout`]: masks from a counter-based hash (SplitMix64), one multiplication.
//!
//! They apply only when the backend is Flex or `Autodiff<Flex>` (checked by `TypeId`), the
//! dtype is f32 and nothing asks for attention internals; everything else takes the generic
//! op-by-op path, whose numerics these kernels follow (same terms and formulas, the original's
//! XSoftmax masking). Random streams are seeded from the backend's RNG, so `Backend::seed` still
//! makes runs reproducible.

use std::any::{Any, TypeId};

use burn::backend::flex::{Flex, FlexDevice, FlexTensor};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Distribution, Int, Shape, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// True when the hot loops may run their AVX2 + FMA builds (`*_avx2` functions, compiled with
/// `#[target_feature]`; std caches the CPU check). The binary stays portable: other CPUs run
/// the baseline builds.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest vector instructions of this CPU that the element-wise loops use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VectorLevel {
    Avx512,
    Avx2,
    Baseline,
}

#[cfg(target_arch = "x86_64")]
fn vector_level() -> VectorLevel {
    static LEVEL: std::sync::OnceLock<VectorLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && has_avx2_fma()
        {
            VectorLevel::Avx512
        } else if has_avx2_fma() {
            VectorLevel::Avx2
        } else {
            VectorLevel::Baseline
        }
    })
}

/// Runs `f` compiled for the widest vector instructions the CPU has (AVX-512, else AVX2, else
/// the baseline build). For the element-wise loops (GELU, LayerNorm, dropout masks, Adam,
/// clipping): the baseline x86-64 build vectorises them 4 wide with SSE and cannot vectorise the
/// dropout hash's 64-bit products at all. `f` is inlined into a `#[target_feature]` function, so
/// its loops are compiled for those instructions — callers mark the closure
/// `#[inline(always)]`: a closure called from three places (AVX-512, AVX2, baseline) is
/// otherwise often compiled once, as a baseline SSE function the wide variants merely call.
/// Rust never contracts `a * b + c` into an FMA on its own, so every result is bit-identical to
/// the baseline build's.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match vector_level() {
            // SAFETY: the CPU has these features (checked by `vector_level`).
            VectorLevel::Avx512 => return unsafe { run_avx512(f) },
            // SAFETY: as above.
            VectorLevel::Avx2 => return unsafe { run_avx2(f) },
            VectorLevel::Baseline => {}
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether `f32::mul_add` is one instruction in the baseline build: on aarch64 (NEON) it is;
/// on baseline x86-64 it would be a slow library call, so the baseline loops multiply and add.
pub(crate) const NATIVE_FMA: bool = cfg!(target_arch = "aarch64");

mod adam;
mod attention;
mod linear;
pub mod math;
mod norm_act;

pub use adam::{adam_step, AdamCoefficients};
pub use attention::{attention, FusedAttentionInput};
pub use linear::{linear, Activation};
pub use norm_act::{gelu, layer_norm, residual_layer_norm, ResidualLayerNormInput};

type AutodiffFlex = Autodiff<Flex>;

/// Elements per parallel task in element-wise passes.
pub(crate) const CHUNK: usize = 16 * 1024;

/// True when `B` runs on the Flex CPU device (Flex itself or Flex under autodiff).
pub fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B::Device>() == TypeId::of::<FlexDevice>()
}

/// Moves `x` into type `U` when it is one (a checked, copy-free downcast).
pub(crate) fn downcast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
    let mut slot = Some(x);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => Ok(u.take().expect("just filled")),
        None => Err(slot.expect("not taken")),
    }
}

/// The Flex primitive of `t`; the caller has checked that `B` is `Flex`.
pub(crate) fn into_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    let t: Tensor<Flex, D> = downcast(t).unwrap_or_else(|_| unreachable!("B is Flex"));
    t.into_primitive().tensor()
}

/// `t` as a tensor of `B`; the caller has checked that `B` is `Flex`.
pub(crate) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let t = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t));
    downcast(t).unwrap_or_else(|_| unreachable!("B is Flex"))
}

/// The `Autodiff<Flex>` primitive of `t` (Flex tensor + graph node); the caller has checked
/// that `B` is `Autodiff<Flex>`.
pub(crate) fn into_autodiff<B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> FloatTensor<AutodiffFlex> {
    let t: Tensor<AutodiffFlex, D> =
        downcast(t).unwrap_or_else(|_| unreachable!("B is Autodiff<Flex>"));
    t.into_primitive().tensor()
}

/// `t` as a tensor of `B`; the caller has checked that `B` is `Autodiff<Flex>`.
pub(crate) fn from_autodiff<B: Backend, const D: usize>(
    t: FloatTensor<AutodiffFlex>,
) -> Tensor<B, D> {
    let t = Tensor::<AutodiffFlex, D>::from_primitive(TensorPrimitive::Float(t));
    downcast(t).unwrap_or_else(|_| unreachable!("B is Autodiff<Flex>"))
}

/// `dst[j·rows + i] = src[i·stride + j]` for `i < rows`, `j < cols`: the transpose of a
/// `rows × cols` block whose rows start `stride` apart (e.g. one head's slice of `[seq, width]`).
pub(crate) fn transpose_into(
    dst: &mut [f32],
    src: &[f32],
    rows: usize,
    cols: usize,
    stride: usize,
) {
    transpose_padded(dst, src, (rows, cols), stride, rows);
}

/// [`transpose_into`] with the transposed rows `dst_stride ≥ rows` apart (row padding, left
/// untouched).
pub(crate) fn transpose_padded(
    dst: &mut [f32],
    src: &[f32],
    (rows, cols): (usize, usize),
    stride: usize,
    dst_stride: usize,
) {
    for i in 0..rows {
        for j in 0..cols {
            dst[j * dst_stride + i] = src[i * stride + j];
        }
    }
}

/// `n` rounded up to a multiple of 8 (one AVX2 register of f32): matrices whose rows are
/// multiplied against get their rows padded to this length with zeros, so that the products
/// run entirely in 8-wide blocks instead of ending in a scalar, latency-bound remainder.
pub(crate) const fn padded8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Element-wise sum of equally long partial results (one per parallel task) of length `len`.
pub(crate) fn sum_parts<'a>(parts: impl Iterator<Item = &'a [f32]>, len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// A 64-bit seed drawn from the backend's RNG (so `Backend::seed` governs it).
pub(crate) fn draw_seed<B: Backend>(device: &B::Device) -> u64 {
    // Four 16-bit draws: the backend's int type may be i32.
    let draws = Tensor::<B, 1, Int>::random([4], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap_or_default();
    draws
        .iter()
        .fold(0u64, |acc, &d| (acc << 16) | (d as u64 & 0xffff))
}

/// SplitMix64's finaliser: a well-mixed 64-bit value for each counter.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Dropout multiplier of element `index` of a stream: `1/keep` with probability `keep`, else 0.
#[inline(always)]
pub(crate) fn keep_factor(seed: u64, index: u64, keep: f32, inv_keep: f32) -> f32 {
    // 24 random bits: uniform in [0, 1) at f32 resolution.
    let u =
        (mix(seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03)) >> 40) as f32 * (1.0 / 16_777_216.0);
    if u < keep {
        inv_keep
    } else {
        0.0
    }
}

/// Inverted dropout with probability `prob`, as `burn::nn::Dropout` (active only when the
/// backend records gradients), with masks drawn in parallel by a counter-based hash. Returns
/// `Err(x)` when `B` is not Flex-based or `x` is not f32, for the caller's generic path.
/// Shapes: `x [..]` (any rank) → the same shape.
pub fn dropout<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    prob: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !is_flex::<B>() || x.dtype() != DType::F32 {
        return Err(x);
    }
    let device = x.device();
    if !B::ad_enabled(&device) || prob == 0.0 {
        return Ok(x);
    }
    let keep = (1.0 - prob) as f32;
    let inv_keep = 1.0 / keep;
    let seed = draw_seed::<B>(&device);
    let shape = x.shape();
    let mut mask = vec![0f32; shape.num_elements()];
    mask.par_chunks_mut(4096)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * 4096) as u64;
            vectorized(
                #[inline(always)]
                || {
                    for (o, m) in chunk.iter_mut().enumerate() {
                        *m = keep_factor(seed, base + o as u64, keep, inv_keep);
                    }
                },
            )
        });
    let mask = Tensor::<B, D>::from_data(TensorData::new(mask, shape), &device);
    Ok(x * mask)
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `t` with its storage exactly its elements, in order (kernels read `storage()` whole).
pub(crate) fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    // Flex's `to_contiguous` copies when the storage is not exactly the tensor's elements in
    // order: a prefix view (a slice at offset 0 of a larger buffer) is contiguous at offset 0
    // yet must be copied, or a kernel would read the whole buffer.
    t.to_contiguous()
}

/// A read-only matrix for [`matmul_into`]: element `(i, j)` is `data[i·row_stride +
/// j·col_stride]`, so a transpose is a view with the strides swapped, not a copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatView<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatView<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (same memory).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Products of at least this many multiply-adds are split across the rayon pool (Flex's own
/// threshold).
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), `dst` dense row-major
/// `[lhs.rows, rhs.cols]`, with `gemm` (the kernels Flex uses, AVX-512 where the CPU has it).
///
/// Why not Flex's `matmul`: it allocates every output zeroed and then copies it once more to
/// realign it (on the main thread, before the product starts), and it cannot add into an
/// existing buffer (bias, gradient accumulation).
pub(crate) fn matmul_into(dst: &mut [f32], accumulate: bool, lhs: MatView<'_>, rhs: MatView<'_>) {
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "matmul_into: output size");
    // SAFETY: `dst` holds `lhs.rows × rhs.cols` initialised floats and aliases nothing.
    unsafe { gemm_raw(dst.as_mut_ptr(), accumulate, lhs, rhs) }
}

/// `lhs · rhs` in a new dense row-major buffer.
pub(crate) fn matmul(lhs: MatView<'_>, rhs: MatView<'_>) -> Vec<f32> {
    let len = lhs.rows * rhs.cols;
    let mut out = uninit(len);
    // SAFETY: `len` writable floats; without `accumulate` they are written, never read.
    unsafe { gemm_raw(out.as_mut_ptr().cast::<f32>(), false, lhs, rhs) };
    // SAFETY: every element was written by `gemm_raw`.
    unsafe { assume_init(out) }
}

/// A buffer of `len` floats to be written before use (saves the zero-fill of `vec![0.0; len]`,
/// a serial pass over fresh memory).
pub(crate) fn uninit(len: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation.
    unsafe { out.set_len(len) };
    out
}

/// `values` as plain floats.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn assume_init(values: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut values = std::mem::ManuallyDrop::new(values);
    let (ptr, len, cap) = (values.as_mut_ptr(), values.len(), values.capacity());
    // SAFETY: same allocation, length and capacity; `MaybeUninit<f32>` has the layout of
    // `f32`; the caller guarantees every element is initialised.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

/// # Safety
/// `dst` points to `lhs.rows × rhs.cols` writable floats (initialised when `accumulate`) that
/// do not overlap the operands.
unsafe fn gemm_raw(dst: *mut f32, accumulate: bool, lhs: MatView<'_>, rhs: MatView<'_>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && lhs.in_bounds() && rhs.in_bounds(),
        "matmul: mismatched operands"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: `m × n` writable floats (caller).
            unsafe { std::ptr::write_bytes(dst, 0, m * n) };
        }
        return;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_PRODUCT {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index gemm touches is inside the operands (`in_bounds`) and the `m × n`
    // dense output (caller); gemm reads `dst` only with `read_dst = accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `Σ x²` over all elements of `t`, in parallel (f64 partial sums), when `B` is Flex and `t`
/// is f32; `None` otherwise (the caller's generic path). For global-norm clipping: Flex's
/// `square().sum()` is two single-threaded passes and a temporary per parameter.
pub fn sum_of_squares<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<f64> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || t.dtype() != DType::F32 {
        return None;
    }
    let t = contiguous_f32(&into_flex(t.clone()));
    let values: &[f32] = t.storage();
    Some(
        values
            .par_chunks(CHUNK)
            .map(|chunk| {
                vectorized(
                    #[inline(always)]
                    || {
                        // `SQUARE_LANES` independent f64 partial sums: one running sum is a
                        // chain of dependent additions (one element per add latency); these
                        // vectorise and overlap. Only the order of the f64 additions changes.
                        let mut lanes = [0f64; SQUARE_LANES];
                        let mut blocks = chunk.chunks_exact(SQUARE_LANES);
                        for block in &mut blocks {
                            for (acc, &v) in lanes.iter_mut().zip(block) {
                                *acc += f64::from(v) * f64::from(v);
                            }
                        }
                        let tail: f64 = blocks
                            .remainder()
                            .iter()
                            .map(|&v| f64::from(v) * f64::from(v))
                            .sum();
                        lanes.iter().sum::<f64>() + tail
                    },
                )
            })
            .sum(),
    )
}

/// Whether `t` may be written where it is: its storage is ours alone and its elements are its
/// first `num_elements` values, in order (the storage may be longer: a unique prefix view;
/// callers write `storage_mut()[..num_elements]` only).
pub(crate) fn writable_in_place(t: &FlexTensor) -> bool {
    t.is_unique() && t.is_contiguous() && t.layout().start_offset() == 0
}

/// Partial sums per task in [`sum_of_squares`]: four AVX-512 registers of f64.
const SQUARE_LANES: usize = 32;

/// `t · factor` in one parallel pass when `B` is Flex and `t` is f32; `Err(t)` otherwise.
/// Shapes: `t [..]` (any rank) → the same shape.
pub fn scale<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    factor: f32,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || t.dtype() != DType::F32 {
        return Err(t);
    }
    let mut t = into_flex(t);
    if writable_in_place(&t) {
        // The gradient is ours alone: scale it where it is (no new buffer to fault in).
        let n = t.layout().shape().num_elements();
        let values = &mut t.storage_mut::<f32>()[..n];
        values.par_chunks_mut(CHUNK).for_each(|v| {
            vectorized(
                #[inline(always)]
                || v.iter_mut().for_each(|v| *v *= factor),
            )
        });
        return Ok(from_flex(t));
    }
    let t = contiguous_f32(&t);
    let values: &[f32] = t.storage();
    let mut out = uninit(values.len());
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(o, v)| {
            vectorized(
                #[inline(always)]
                || {
                    for (o, &v) in o.iter_mut().zip(v) {
                        o.write(v * factor);
                    }
                },
            )
        });
    // SAFETY: every element was just written.
    let out = unsafe { assume_init(out) };
    Ok(from_flex(flex_tensor(out, t.layout().shape().clone())))
}
