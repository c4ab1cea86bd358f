//! The disentangled attention as one Flex operation with its own backward (see the module
//! documentation of `flex_kernels`).

use std::any::TypeId;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Shape, Tensor};
use rayon::prelude::*;

use super::{
    contiguous_f32, draw_seed, flex_tensor, from_autodiff, from_flex, into_autodiff, into_flex,
    keep_factor, padded8, sum_parts, transpose_into, transpose_padded, AutodiffFlex,
};

/// Shapes and constants of one fused attention call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    seq: usize,
    heads: usize,
    head_size: usize,
    /// Rows of the relative table used.
    rows: usize,
    /// `1 / sqrt(head_size * 3)`.
    inv_scale: f32,
    /// Dropout on the probabilities: `(seed, keep)`; `None` when off.
    dropout: Option<(u64, f32)>,
}

impl Geometry {
    fn width(&self) -> usize {
        self.heads * self.head_size
    }
    /// Dropout multipliers of the probabilities of molecule `b`, head `h`, into `out [seq,
    /// seq]`; probability `(b, h, i, j)` has stream index `((b·heads + h)·seq + i)·seq + j`.
    fn drop_factors(&self, b: usize, h: usize, out: &mut [f32]) {
        let Some((seed, keep)) = self.dropout else {
            out.fill(1.0);
            return;
        };
        let inv_keep = 1.0 / keep;
        let base = ((b * self.heads + h) * self.seq * self.seq) as u64;
        super::vectorized(
            #[inline(always)]
            || {
                for (t, f) in out.iter_mut().enumerate() {
                    *f = keep_factor(seed, base + t as u64, keep, inv_keep);
                }
            },
        )
    }
}

/// Which pairs attend and at which relative-table row, `[batch, seq(i), seq(j)]`.
#[derive(Debug, Clone)]
struct Pairs {
    /// Relative-table row of pair (i, j), clamped to the rows used.
    rel: Arc<Vec<u32>>,
    /// True where query i may attend key j.
    allowed: Arc<Vec<bool>>,
}

/// Host views of the attention's float inputs (all contiguous, row-major).
struct Operands<'a> {
    /// `[batch, seq, heads * head_size]` each.
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// `[rows, heads * head_size]`: the relative table through the key / query projections.
    pos_key: &'a [f32],
    pos_query: &'a [f32],
}

/// `table [rows, width]` → per head its transpose: `[heads][head_size][padded8(rows)]`, so
/// that the products against it run as contiguous 8-wide multiply-adds over the rows.
fn per_head_transpose(table: &[f32], rows: usize, heads: usize, d: usize) -> Vec<f32> {
    let rows8 = padded8(rows);
    let mut out = vec![0f32; heads * d * rows8];
    for h in 0..heads {
        let dst = &mut out[h * d * rows8..(h + 1) * d * rows8];
        transpose_padded(dst, &table[h * d..], (rows, d), heads * d, rows8);
    }
    out
}

/// `acc + a·b`; with `FMA` as one fused multiply-add (only where the CPU has it: without
/// hardware FMA, `mul_add` is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

/// Where a block of rows of `A` sits: row `r` is `data[r·stride..r·stride + len]`.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    stride: usize,
    len: usize,
}

impl<'a> Rows<'a> {
    fn new(data: &'a [f32], stride: usize, len: usize) -> Self {
        Self { data, stride, len }
    }
    /// Row `r`.
    #[inline(always)]
    fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.stride..r * self.stride + self.len]
    }
}

/// Columns `c..c + 8·BLOCKS` of `R` consecutive rows of `out = A · B` (`out` rows
/// `out_stride` apart, `B` rows `b_stride` apart): `R·BLOCKS` independent accumulator chains
/// share each load of `B`, so the multiply-adds overlap instead of waiting on each other's
/// latency. Every element is still `Σ_x a[x]·b[x][c]` accumulated in the order of `x`, as
/// a one-row product gives it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_blocks<const FMA: bool, const R: usize, const BLOCKS: usize>(
    out: &mut [f32],
    out_stride: usize,
    a: Rows<'_>,
    b: &[f32],
    b_stride: usize,
    c: usize,
) {
    const LANES: usize = 8;
    let a_rows: [&[f32]; R] = std::array::from_fn(|r| a.row(r));
    let mut acc = [[[0f32; LANES]; BLOCKS]; R];
    // `x` walks `R` rows of A and the rows of B together.
    #[allow(clippy::needless_range_loop)]
    for x in 0..a.len {
        let start = x * b_stride + c;
        let b_row = &b[start..start + BLOCKS * LANES];
        let ax: [f32; R] = std::array::from_fn(|r| a_rows[r][x]);
        for blk in 0..BLOCKS {
            let bv: &[f32; LANES] = b_row[blk * LANES..(blk + 1) * LANES]
                .try_into()
                .expect("LANES elements");
            for (acc, &ax) in acc.iter_mut().zip(&ax) {
                for l in 0..LANES {
                    acc[blk][l] = madd::<FMA>(ax, bv[l], acc[blk][l]);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = &mut out[r * out_stride + c..r * out_stride + c + BLOCKS * LANES];
        for (blk, acc) in acc.iter().enumerate() {
            row[blk * LANES..(blk + 1) * LANES].copy_from_slice(acc);
        }
    }
}

/// `R` rows of `out = A · B` over `cols` columns: blocks of 32 columns, then 24, 16 or 8, then
/// single columns.
#[inline(always)]
fn rows_block<const FMA: bool, const R: usize>(
    out: &mut [f32],
    out_stride: usize,
    a: Rows<'_>,
    b: &[f32],
    b_stride: usize,
    cols: usize,
) {
    let mut c = 0;
    while c + 32 <= cols {
        column_blocks::<FMA, R, 4>(out, out_stride, a, b, b_stride, c);
        c += 32;
    }
    match (cols - c) / 8 {
        3 => column_blocks::<FMA, R, 3>(out, out_stride, a, b, b_stride, c),
        2 => column_blocks::<FMA, R, 2>(out, out_stride, a, b, b_stride, c),
        1 => column_blocks::<FMA, R, 1>(out, out_stride, a, b, b_stride, c),
        _ => {}
    }
    c += (cols - c) / 8 * 8;
    for r in 0..R {
        let a_row = a.row(r);
        for cc in c..cols {
            let mut acc = 0f32;
            for (x, &ax) in a_row.iter().enumerate() {
                acc = madd::<FMA>(ax, b[x * b_stride + cc], acc);
            }
            out[r * out_stride + cc] = acc;
        }
    }
}

/// `out = A · B` for `rows` rows of `A` and `cols` columns of `B` (`B` rows `b_stride ≥ cols`
/// apart, `out` rows `out_stride ≥ cols` apart), two rows at a time.
#[inline(always)]
fn matmul_rows<const FMA: bool>(
    out: &mut [f32],
    out_stride: usize,
    a: Rows<'_>,
    rows: usize,
    b: &[f32],
    b_stride: usize,
    cols: usize,
) {
    let mut r = 0;
    while r + 2 <= rows {
        let a_here = Rows::new(&a.data[r * a.stride..], a.stride, a.len);
        rows_block::<FMA, 2>(
            &mut out[r * out_stride..],
            out_stride,
            a_here,
            b,
            b_stride,
            cols,
        );
        r += 2;
    }
    if r < rows {
        let a_here = Rows::new(&a.data[r * a.stride..], a.stride, a.len);
        rows_block::<FMA, 1>(
            &mut out[r * out_stride..],
            out_stride,
            a_here,
            b,
            b_stride,
            cols,
        );
    }
}

/// Scratch space of one molecule and head (rows padded to multiples of 8, see [`padded8`]).
struct HeadScratch {
    /// `[head_size][padded8(seq)]`: this head's keys, transposed.
    kt: Vec<f32>,
    /// `[seq][padded8(rows)]`: q_i · K_r and k_j · Q_r.
    c2p: Vec<f32>,
    p2c: Vec<f32>,
    /// `[seq][padded8(seq)]`: q·kᵀ.
    content: Vec<f32>,
    /// `[seq, seq]`: the molecule's relative-table rows transposed (`rel_t[i][j] =
    /// rel[j][i]`), so that the p2c term reads a row, not a column.
    rel_t: Vec<u32>,
}

impl HeadScratch {
    /// Scratch for one molecule whose pair rows are `rel [seq, seq]`.
    fn new(g: &Geometry, rel: &[u32]) -> Self {
        let (n, n8, rows8) = (g.seq, padded8(g.seq), padded8(g.rows));
        let mut rel_t = vec![0u32; n * n];
        for (i, row) in rel.chunks_exact(n.max(1)).enumerate() {
            for (j, &r) in row.iter().enumerate() {
                rel_t[j * n + i] = r;
            }
        }
        Self {
            kt: vec![0f32; g.head_size * n8],
            c2p: vec![0f32; g.seq * rows8],
            p2c: vec![0f32; g.seq * rows8],
            content: vec![0f32; g.seq * n8],
            rel_t,
        }
    }
}

/// Per head, the relative table through the key and query projections, transposed.
struct Tables {
    /// `[heads][head_size][rows]`
    pos_key_t: Vec<f32>,
    pos_query_t: Vec<f32>,
}

impl Tables {
    fn new(g: &Geometry, x: &Operands<'_>) -> Self {
        Self {
            pos_key_t: per_head_transpose(x.pos_key, g.rows, g.heads, g.head_size),
            pos_query_t: per_head_transpose(x.pos_query, g.rows, g.heads, g.head_size),
        }
    }
}

/// Softmax probabilities (before dropout) of molecule `b`, head `h`, into `p [seq, seq]`.
#[inline(always)]
fn head_probs<const FMA: bool>(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    tables: &Tables,
    (b, h): (usize, usize),
    scratch: &mut HeadScratch,
    p: &mut [f32],
) {
    let (n, d, w) = (g.seq, g.head_size, g.width());
    // Row lengths of the padded scratch matrices.
    let (n8, rows) = (padded8(n), padded8(g.rows));
    let rel = &pairs.rel[b * n * n..(b + 1) * n * n];
    let allowed = &pairs.allowed[b * n * n..(b + 1) * n * n];
    let row = |t: usize| (b * n + t) * w + h * d;
    transpose_padded(&mut scratch.kt, &x.k[row(0)..], (n, d), w, n8);
    let pk_t = &tables.pos_key_t[h * d * rows..(h + 1) * d * rows];
    let pq_t = &tables.pos_query_t[h * d * rows..(h + 1) * d * rows];
    // This head's queries and keys: rows `w` apart.
    let q_h = Rows::new(&x.q[row(0)..], w, d);
    let k_h = Rows::new(&x.k[row(0)..], w, d);
    // c2p[t] = q_t · K_r, p2c[t] = k_t · Q_r, content[i] = q_i · kᵀ.
    matmul_rows::<FMA>(&mut scratch.c2p, rows, q_h, n, pk_t, rows, rows);
    matmul_rows::<FMA>(&mut scratch.p2c, rows, k_h, n, pq_t, rows, rows);
    matmul_rows::<FMA>(&mut scratch.content, n8, q_h, n, &scratch.kt, n8, n8);
    for i in 0..n {
        let content = &scratch.content[i * n8..(i + 1) * n8];
        let p_row = &mut p[i * n..(i + 1) * n];
        let rel_i = &rel[i * n..(i + 1) * n];
        let rel_t_i = &scratch.rel_t[i * n..(i + 1) * n];
        let allowed_i = &allowed[i * n..(i + 1) * n];
        let c2p_i = &scratch.c2p[i * rows..(i + 1) * rows];
        let mut max = f32::NEG_INFINITY;
        for j in 0..n {
            // Same three terms, each scaled, as the op-by-op path. Masked pairs are computed
            // too (their rows are in the tables) and kept out of the max by a select: no
            // branch to mispredict; the exponentials below zero them.
            let logit = content[j] * g.inv_scale
                + c2p_i[rel_i[j] as usize] * g.inv_scale
                + scratch.p2c[j * rows + rel_t_i[j] as usize] * g.inv_scale;
            p_row[j] = logit;
            max = if allowed_i[j] && logit > max {
                logit
            } else {
                max
            };
        }
        if max == f32::NEG_INFINITY {
            // XSoftmax: a fully masked row becomes all zeros.
            p_row.fill(0.0);
            continue;
        }
        // Branch-free (masked entries hold stale values and are zeroed by the select), so
        // the exponentials run as SIMD.
        for (p, &ok) in p_row.iter_mut().zip(&allowed[i * n..(i + 1) * n]) {
            let e = super::math::exp(*p - max);
            *p = if ok { e } else { 0.0 };
        }
        let sum: f32 = p_row.iter().sum();
        let inv = 1.0 / sum;
        for v in p_row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Per-molecule outputs of the forward pass.
struct MoleculeForward<'a> {
    /// `[seq, width]`
    context: &'a mut [f32],
    /// `[heads, seq, seq]`: probabilities before dropout.
    probs: &'a mut [f32],
    /// `[heads, seq, seq]`: dropout multipliers (empty without dropout).
    factors: &'a mut [f32],
}

/// One molecule's attention, all heads.
#[inline(always)]
fn forward_molecule<const FMA: bool>(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    tables: &Tables,
    b: usize,
    out: MoleculeForward<'_>,
) {
    let (n, d, w) = (g.seq, g.head_size, g.width());
    let mut scratch = HeadScratch::new(g, &pairs.rel[b * n * n..(b + 1) * n * n]);
    // `[seq, seq]`: this head's probabilities times the dropout multipliers.
    let mut weights = vec![0f32; n * n];
    for h in 0..g.heads {
        let p_h = &mut out.probs[h * n * n..(h + 1) * n * n];
        head_probs::<FMA>(g, pairs, x, tables, (b, h), &mut scratch, p_h);
        let f_h: Option<&[f32]> = (!out.factors.is_empty()).then(|| {
            let f_h = &mut out.factors[h * n * n..(h + 1) * n * n];
            g.drop_factors(b, h, f_h);
            &*f_h
        });
        // context_i = Σ_j (p ⊙ dropout)[i, j] · v_j: rows of this head's values are `w` apart.
        let v_h = &x.v[b * n * w + h * d..];
        let weights: &[f32] = match f_h {
            Some(f) => {
                for ((weight, &p), &f) in weights.iter_mut().zip(&*p_h).zip(f) {
                    *weight = p * f;
                }
                &weights[..]
            }
            None => &*p_h,
        };
        let context_h = &mut out.context[h * d..];
        matmul_rows::<FMA>(context_h, w, Rows::new(weights, n, n), n, v_h, w, d);
    }
}

/// [`forward_molecule`] compiled for AVX2 + FMA (its body is inlined here, so every loop gets
/// the wider instructions and `mul_add` becomes one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_molecule_avx2(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    tables: &Tables,
    b: usize,
    out: MoleculeForward<'_>,
) {
    forward_molecule::<true>(g, pairs, x, tables, b, out)
}

/// Forward: `(context [batch, seq, width], probs, factors)`, the last two `[batch, heads, seq,
/// seq]`: probabilities before dropout (only when `keep_probs`) and dropout multipliers (only
/// with dropout and `keep_probs`).
fn forward_kernel(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    keep_probs: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, w) = (g.seq, g.width());
    let tables = Tables::new(g, x);
    let per_probs = g.heads * n * n;
    let mut context = vec![0f32; g.batch * n * w];
    let mut probs = vec![0f32; if keep_probs { g.batch * per_probs } else { 0 }];
    let with_factors = keep_probs && g.dropout.is_some();
    let mut factors = vec![0f32; if with_factors { g.batch * per_probs } else { 0 }];
    let run = |b: usize, context: &mut [f32], probs: &mut [f32], factors: &mut [f32]| {
        let out = MoleculeForward {
            context,
            probs,
            factors,
        };
        if super::has_avx2_fma() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (checked by `has_avx2_fma`).
            unsafe {
                forward_molecule_avx2(g, pairs, x, &tables, b, out)
            }
        } else {
            forward_molecule::<{ super::NATIVE_FMA }>(g, pairs, x, &tables, b, out)
        }
    };
    if keep_probs {
        let factor_chunks: Vec<&mut [f32]> = if with_factors {
            factors.chunks_mut(per_probs).collect()
        } else {
            (0..g.batch).map(|_| &mut [][..]).collect()
        };
        context
            .par_chunks_mut(n * w)
            .zip(probs.par_chunks_mut(per_probs))
            .zip(factor_chunks)
            .enumerate()
            .for_each(|(b, ((ctx, p), f))| run(b, ctx, p, f));
    } else {
        context
            .par_chunks_mut(n * w)
            .enumerate()
            .for_each(|(b, ctx)| {
                let mut p = vec![0f32; per_probs];
                // Nothing kept for a backward (inference, or autodiff with nothing to
                // differentiate): probabilities and multipliers live per molecule only.
                let mut f = if g.dropout.is_some() {
                    vec![0f32; per_probs]
                } else {
                    Vec::new()
                };
                run(b, ctx, &mut p, &mut f)
            });
    }
    (context, probs, factors)
}

/// Gradients of the five float inputs.
struct InputGrads {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    pos_key: Vec<f32>,
    pos_query: Vec<f32>,
}

/// What the forward pass kept, as host slices.
struct ForwardState<'a> {
    /// `[batch, heads, seq, seq]` probabilities before dropout.
    probs: &'a [f32],
    /// Same shape, dropout multipliers; empty without dropout.
    factors: &'a [f32],
}

/// Per-molecule gradient outputs: `[seq, width]` for q, k, v; `[rows, width]` for the tables.
struct MoleculeGrads<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    dpk: &'a mut [f32],
    dpq: &'a mut [f32],
}

#[inline(always)]
fn backward_molecule<const FMA: bool>(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    saved: &ForwardState<'_>,
    grad: &[f32],
    b: usize,
    out: MoleculeGrads<'_>,
) {
    let (n, d, w, rows) = (g.seq, g.head_size, g.width(), g.rows);
    let rel = &pairs.rel[b * n * n..(b + 1) * n * n];
    let allowed = &pairs.allowed[b * n * n..(b + 1) * n * n];
    let local = |t: usize, h: usize| t * w + h * d;
    // `[head_size][padded8(seq)]`: this head's values transposed, rows padded with zeros.
    let n8 = padded8(n);
    let mut vt = vec![0f32; d * n8];
    // (p ⊙ dropout)ᵀ, d logits (already × 1/scale) and its transpose.
    let mut dropped_t = vec![0f32; n * n];
    let mut dl = vec![0f32; n * n];
    let mut dl_t = vec![0f32; n * n];
    // d logits summed per relative-table row: e_q[i][r] = Σ_{j: δ(i,j) = r} dl[i][j] (c2p),
    // e_k[j][r] = Σ_{i: δ(j,i) = r} dl[i][j] (p2c), and their transposes.
    let mut e_q = vec![0f32; n * rows];
    let mut e_k = vec![0f32; n * rows];
    let mut e_q_t = vec![0f32; rows * n];
    let mut e_k_t = vec![0f32; rows * n];
    // `[seq][padded8(seq)]`: d probabilities (before dropout's backward), one row per query.
    let mut dlogits = vec![0f32; n * n8];
    // `[seq][head_size]`: the relative-table part of d q (then of d k).
    let mut extra = vec![0f32; n * d];
    for h in 0..g.heads {
        // This head's rows of q, k, v, the gradient and the two tables: `w` apart.
        let q_h = &x.q[b * n * w + h * d..];
        let k_h = &x.k[b * n * w + h * d..];
        let v_h = &x.v[b * n * w + h * d..];
        let grad_h = &grad[b * n * w + h * d..];
        let pk_h = &x.pos_key[h * d..];
        let pq_h = &x.pos_query[h * d..];
        transpose_padded(&mut vt, v_h, (n, d), w, n8);
        let at = (b * g.heads + h) * n * n;
        let p = &saved.probs[at..at + n * n];
        let factors = (!saved.factors.is_empty()).then(|| &saved.factors[at..at + n * n]);
        let factor = |k: usize| factors.map_or(1.0, |f| f[k]);
        for i in 0..n {
            for j in 0..n {
                dropped_t[j * n + i] = p[i * n + j] * factor(i * n + j);
            }
        }
        // d v_j = Σ_i (p ⊙ dropout)[i][j] · g_i
        matmul_rows::<FMA>(
            &mut out.dv[h * d..],
            w,
            Rows::new(&dropped_t, n, n),
            n,
            grad_h,
            w,
            d,
        );
        // d probs (through dropout), softmax backward, 1/scale.
        e_q.fill(0.0);
        e_k.fill(0.0);
        matmul_rows::<FMA>(&mut dlogits, n8, Rows::new(grad_h, w, d), n, &vt, n8, n8);
        for i in 0..n {
            let dlogit = &mut dlogits[i * n8..(i + 1) * n8];
            let mut weighted = 0f32;
            for j in 0..n {
                let dp = dlogit[j] * factor(i * n + j);
                dlogit[j] = dp;
                weighted += p[i * n + j] * dp;
            }
            for j in 0..n {
                let k = i * n + j;
                let v = if p[k] == 0.0 || !allowed[k] {
                    0.0
                } else {
                    p[k] * (dlogit[j] - weighted) * g.inv_scale
                };
                dl[k] = v;
                e_q[i * rows + rel[k] as usize] += v;
                e_k[j * rows + rel[j * n + i] as usize] += v;
            }
        }
        transpose_into(&mut dl_t, &dl, n, n, n);
        transpose_into(&mut e_q_t, &e_q, n, rows, rows);
        transpose_into(&mut e_k_t, &e_k, n, rows, rows);
        // d q_i = Σ_j dl[i][j] · k_j + Σ_r e_q[i][r] · K_r
        // d k_j = Σ_i dl[i][j] · q_i + Σ_r e_k[j][r] · Q_r
        matmul_rows::<FMA>(&mut out.dq[h * d..], w, Rows::new(&dl, n, n), n, k_h, w, d);
        matmul_rows::<FMA>(&mut extra, d, Rows::new(&e_q, rows, rows), n, pk_h, w, d);
        for t in 0..n {
            let dq_t = &mut out.dq[local(t, h)..local(t, h) + d];
            dq_t.iter_mut()
                .zip(&extra[t * d..(t + 1) * d])
                .for_each(|(o, e)| *o += e);
        }
        matmul_rows::<FMA>(
            &mut out.dk[h * d..],
            w,
            Rows::new(&dl_t, n, n),
            n,
            q_h,
            w,
            d,
        );
        matmul_rows::<FMA>(&mut extra, d, Rows::new(&e_k, rows, rows), n, pq_h, w, d);
        for t in 0..n {
            let dk_t = &mut out.dk[local(t, h)..local(t, h) + d];
            dk_t.iter_mut()
                .zip(&extra[t * d..(t + 1) * d])
                .for_each(|(o, e)| *o += e);
        }
        // d K_r = Σ_i e_q[i][r] · q_i, d Q_r = Σ_j e_k[j][r] · k_j
        let e_q_rows = Rows::new(&e_q_t, n, n);
        matmul_rows::<FMA>(&mut out.dpk[h * d..], w, e_q_rows, rows, q_h, w, d);
        let e_k_rows = Rows::new(&e_k_t, n, n);
        matmul_rows::<FMA>(&mut out.dpq[h * d..], w, e_k_rows, rows, k_h, w, d);
    }
}

/// [`backward_molecule`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_molecule_avx2(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    saved: &ForwardState<'_>,
    grad: &[f32],
    b: usize,
    out: MoleculeGrads<'_>,
) {
    backward_molecule::<true>(g, pairs, x, saved, grad, b, out)
}

/// Backward of [`forward_kernel`] given `grad` = d loss / d context `[batch, seq, width]`.
fn backward_kernel(
    g: &Geometry,
    pairs: &Pairs,
    x: &Operands<'_>,
    saved: &ForwardState<'_>,
    grad: &[f32],
) -> InputGrads {
    let per_b = g.seq * g.width();
    let table = g.rows * g.width();
    let mut dq = vec![0f32; g.batch * per_b];
    let mut dk = vec![0f32; g.batch * per_b];
    let mut dv = vec![0f32; g.batch * per_b];
    // Table gradients: one partial sum per molecule, added up afterwards (no shared writes).
    let mut dpk = vec![0f32; g.batch * table];
    let mut dpq = vec![0f32; g.batch * table];
    dq.par_chunks_mut(per_b)
        .zip(dk.par_chunks_mut(per_b))
        .zip(dv.par_chunks_mut(per_b))
        .zip(dpk.par_chunks_mut(table))
        .zip(dpq.par_chunks_mut(table))
        .enumerate()
        .for_each(|(b, ((((dq, dk), dv), dpk), dpq))| {
            let out = MoleculeGrads {
                dq,
                dk,
                dv,
                dpk,
                dpq,
            };
            if super::has_avx2_fma() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA (checked by `has_avx2_fma`).
                unsafe {
                    backward_molecule_avx2(g, pairs, x, saved, grad, b, out)
                }
            } else {
                backward_molecule::<{ super::NATIVE_FMA }>(g, pairs, x, saved, grad, b, out)
            }
        });
    InputGrads {
        q: dq,
        k: dk,
        v: dv,
        pos_key: sum_parts(dpk.chunks(table), table),
        pos_query: sum_parts(dpq.chunks(table), table),
    }
}

/// What the backward pass keeps from the forward.
#[derive(Debug, Clone)]
struct SavedAttention {
    geometry: Geometry,
    pairs: Pairs,
    /// q, k, v, pos_key, pos_query, contiguous.
    inputs: [FlexTensor; 5],
    /// `[batch, heads, seq, seq]`: probabilities before dropout, and dropout multipliers
    /// (empty without dropout).
    probs: Arc<Vec<f32>>,
    factors: Arc<Vec<f32>>,
}

#[derive(Debug)]
struct FusedAttentionBackward;

impl Backward<Flex, 5> for FusedAttentionBackward {
    type State = SavedAttention;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous_f32(&grads.consume::<Flex>(&ops.node));
        let saved = ops.state;
        let [q, k, v, pk, pq] = &saved.inputs;
        let operands = Operands {
            q: q.storage(),
            k: k.storage(),
            v: v.storage(),
            pos_key: pk.storage(),
            pos_query: pq.storage(),
        };
        let g = saved.geometry;
        let state = ForwardState {
            probs: &saved.probs,
            factors: &saved.factors,
        };
        let out = backward_kernel(&g, &saved.pairs, &operands, &state, grad.storage());
        let tokens = Shape::new([g.batch, g.seq, g.width()]);
        let table = Shape::new([g.rows, g.width()]);
        let [nq, nk, nv, npk, npq] = ops.parents;
        let results = [
            (nq, out.q, tokens.clone()),
            (nk, out.k, tokens.clone()),
            (nv, out.v, tokens),
            (npk, out.pos_key, table.clone()),
            (npq, out.pos_query, table),
        ];
        for (node, values, shape) in results {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(values, shape));
            }
        }
    }
}

/// Inputs of [`attention`].
pub struct FusedAttentionInput<B: Backend> {
    /// `[batch, seq, heads * head_size]` each: the projected queries, keys and values.
    pub query: Tensor<B, 3>,
    pub key: Tensor<B, 3>,
    pub value: Tensor<B, 3>,
    /// `[rows, heads * head_size]`: the relative table through the key / query projections.
    pub pos_key: Tensor<B, 2>,
    pub pos_query: Tensor<B, 2>,
    /// `[batch, 1, seq, seq]`, true where query i may attend key j.
    pub attend: Tensor<B, 4, Bool>,
    /// `[batch, heads, seq, seq]` (heads may be expanded): clamped relative-table rows.
    pub rel_index: Tensor<B, 4, Int>,
    pub num_heads: usize,
    /// Dropout probability on the attention probabilities (applied when autodiff is on).
    pub dropout: f64,
}

/// Disentangled attention (content + c2p + p2c, masked softmax, dropout, · v) as one operation
/// on Flex; `[batch, seq, heads * head_size]`. Returns the input back (`Err`) when `B` is not
/// Flex or `Autodiff<Flex>` or the dtype is not f32, for the caller's generic path.
pub fn attention<B: Backend>(
    input: FusedAttentionInput<B>,
) -> Result<Tensor<B, 3>, FusedAttentionInput<B>> {
    let flex_ad = TypeId::of::<B>() == TypeId::of::<AutodiffFlex>();
    let flex = TypeId::of::<B>() == TypeId::of::<Flex>();
    if !(flex || flex_ad) || input.query.dtype() != DType::F32 {
        return Err(input);
    }
    let [batch, seq, width] = input.query.dims();
    let rows = input.pos_key.dims()[0];
    let heads = input.num_heads;
    let head_size = width.checked_div(heads).unwrap_or(0);
    let device = input.query.device();
    // The pair structure on the host (Flex: no transfer). Anything unexpected (a shape or
    // element type these loops do not handle) hands the inputs back to the generic path.
    let pairs_len = batch * seq * seq;
    let rel: Option<Vec<u32>> = input
        .rel_index
        .clone()
        .slice([0..batch, 0..1, 0..seq, 0..seq])
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .ok()
        .map(|v| {
            v.into_iter()
                .map(|r| r.clamp(0, rows as i64 - 1) as u32)
                .collect()
        });
    let allowed: Option<Vec<bool>> = (input.attend.dims() == [batch, 1, seq, seq])
        .then(|| input.attend.clone().into_data().to_vec::<bool>().ok())
        .flatten();
    let (Some(rel), Some(allowed)) = (rel, allowed) else {
        return Err(input);
    };
    if rel.len() != pairs_len || allowed.len() != pairs_len || heads == 0 || width % heads != 0 {
        return Err(input);
    }
    let pairs = Pairs {
        rel: Arc::new(rel),
        allowed: Arc::new(allowed),
    };
    let dropout = (flex_ad && input.dropout > 0.0)
        .then(|| (draw_seed::<B>(&device), (1.0 - input.dropout) as f32));
    let geometry = Geometry {
        batch,
        seq,
        heads,
        head_size,
        rows,
        inv_scale: 1.0 / ((head_size * 3) as f32).sqrt(),
        dropout,
    };
    let tokens = Shape::new([batch, seq, width]);

    if flex {
        let q = contiguous_f32(&into_flex(input.query));
        let k = contiguous_f32(&into_flex(input.key));
        let v = contiguous_f32(&into_flex(input.value));
        let pk = contiguous_f32(&into_flex(input.pos_key));
        let pq = contiguous_f32(&into_flex(input.pos_query));
        let operands = Operands {
            q: q.storage(),
            k: k.storage(),
            v: v.storage(),
            pos_key: pk.storage(),
            pos_query: pq.storage(),
        };
        let (context, _, _) = forward_kernel(&geometry, &pairs, &operands, false);
        return Ok(from_flex(flex_tensor(context, tokens)));
    }

    let (q, k, v) = (
        into_autodiff(input.query),
        into_autodiff(input.key),
        into_autodiff(input.value),
    );
    let (pk, pq) = (into_autodiff(input.pos_key), into_autodiff(input.pos_query));
    let inputs = [
        contiguous_f32(&q.primitive),
        contiguous_f32(&k.primitive),
        contiguous_f32(&v.primitive),
        contiguous_f32(&pk.primitive),
        contiguous_f32(&pq.primitive),
    ];
    let prep = FusedAttentionBackward
        .prepare::<NoCheckpointing>([
            q.node.clone(),
            k.node.clone(),
            v.node.clone(),
            pk.node.clone(),
            pq.node.clone(),
        ])
        .compute_bound()
        .stateful();
    let tracked = matches!(prep, OpsKind::Tracked(_));
    let operands = Operands {
        q: inputs[0].storage(),
        k: inputs[1].storage(),
        v: inputs[2].storage(),
        pos_key: inputs[3].storage(),
        pos_query: inputs[4].storage(),
    };
    let (context, probs, factors) = forward_kernel(&geometry, &pairs, &operands, tracked);
    let output = flex_tensor(context, tokens);
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish(
            SavedAttention {
                geometry,
                pairs,
                inputs,
                probs: Arc::new(probs),
                factors: Arc::new(factors),
            },
            output,
        ),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Ok(from_autodiff(out))
}
