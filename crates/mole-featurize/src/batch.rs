//! Model inputs: one molecule's tokens and relative positions, and padded batches.

/// One molecule as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoleInput {
    /// CLS followed by one token per heavy atom.
    pub input_ids: Vec<u32>,
    /// `(n+1) × (n+1)` row-major: topological distance + 1 between atoms; 0 in the CLS row and
    /// column and between atoms of different fragments.
    pub relative_pos: Vec<u32>,
}

impl MoleInput {
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
                    relative_pos[(i + 1) * len + j + 1] = d as u32 + 1;
                }
            }
        }
        Self {
            input_ids,
            relative_pos,
        }
    }

    /// Tokens including CLS.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// A padded batch in host memory, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    /// `[batch * seq]`, PAD = 0.
    pub input_ids: Vec<i64>,
    /// `[batch * seq]`, true for CLS and atoms.
    pub input_mask: Vec<bool>,
    /// `[batch * seq * seq]`, 0 at padding.
    pub relative_pos: Vec<i64>,
}

/// Pads `inputs` to the longest: PAD 0, mask false, relative position 0.
pub fn collate(inputs: &[&MoleInput]) -> Batch {
    let b = inputs.len();
    let n = inputs.iter().map(|m| m.len()).max().unwrap_or(0);
    let mut batch = Batch {
        batch_size: b,
        seq_len: n,
        input_ids: vec![0; b * n],
        input_mask: vec![false; b * n],
        relative_pos: vec![0; b * n * n],
    };
    for (k, m) in inputs.iter().enumerate() {
        let len = m.len();
        for (i, &t) in m.input_ids.iter().enumerate() {
            batch.input_ids[k * n + i] = i64::from(t);
            batch.input_mask[k * n + i] = true;
        }
        for i in 0..len {
            let src = &m.relative_pos[i * len..(i + 1) * len];
            let dst = &mut batch.relative_pos[k * n * n + i * n..k * n * n + i * n + len];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = i64::from(s);
            }
        }
    }
    batch
}
