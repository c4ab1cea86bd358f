//! Model inputs: one molecule as token ids plus relative positions, and padded batches.

use crate::vocab::Vocabulary;
use crate::FeaturizedMolecule;

/// One molecule ready for the model: CLS followed by the atom tokens, and the
/// (n+1) x (n+1) relative-position matrix (row-major): topological distance + 1 between atoms,
/// 0 in the CLS row and column and between atoms of different fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoleInput {
    pub input_ids: Vec<u32>,
    pub relative_pos: Vec<u32>,
}

impl MoleInput {
    pub fn from_featurized(f: &FeaturizedMolecule, vocab: &Vocabulary) -> Self {
        Self::from_parts(&f.tokens, &f.dist, vocab.cls_id())
    }

    /// From atom tokens (no CLS) and the distance matrix (-1 between fragments).
    pub fn from_parts(tokens: &[u32], dist: &[Vec<i32>], cls_id: u32) -> Self {
        let n = tokens.len();
        let len = n + 1;
        let mut input_ids = Vec::with_capacity(len);
        input_ids.push(cls_id);
        input_ids.extend_from_slice(tokens);
        let mut relative_pos = vec![0u32; len * len];
        for (i, row) in dist.iter().enumerate().take(n) {
            for (j, &d) in row.iter().enumerate().take(n) {
                if d >= 0 {
                    relative_pos[(i + 1) * len + (j + 1)] = d as u32 + 1;
                }
            }
        }
        MoleInput {
            input_ids,
            relative_pos,
        }
    }

    /// Sequence length (atoms + CLS).
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// A padded batch, flattened row-major: `input_ids`/`input_mask` are `[B, N]`,
/// `relative_pos` is `[B, N, N]`; padding is token 0, mask false, relative position 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub input_mask: Vec<bool>,
    pub relative_pos: Vec<i64>,
}

/// Pads every input to the longest one.
pub fn collate(inputs: &[&MoleInput]) -> Batch {
    let batch_size = inputs.len();
    let seq_len = inputs.iter().map(|m| m.len()).max().unwrap_or(0);
    let mut input_ids = vec![0i64; batch_size * seq_len];
    let mut input_mask = vec![false; batch_size * seq_len];
    let mut relative_pos = vec![0i64; batch_size * seq_len * seq_len];
    for (b, m) in inputs.iter().enumerate() {
        let len = m.len();
        for (k, &id) in m.input_ids.iter().enumerate() {
            input_ids[b * seq_len + k] = i64::from(id);
            input_mask[b * seq_len + k] = true;
        }
        let base = b * seq_len * seq_len;
        for i in 0..len {
            let Some(src) = m.relative_pos.get(i * len..(i + 1) * len) else {
                break;
            };
            let dst = &mut relative_pos[base + i * seq_len..base + i * seq_len + len];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = i64::from(s);
            }
        }
    }
    Batch {
        batch_size,
        seq_len,
        input_ids,
        input_mask,
        relative_pos,
    }
}
