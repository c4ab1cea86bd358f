//! Training objectives as a library: the masked atom-environment task of stage 1 (BERT's
//! 80/10/10 masking and MolE's attention-span mask) and the supervised tasks of stage 2 and
//! fine-tuning (multitask, missing labels, class weights, standardised regression targets).
//! A training loop prepares each batch on the host ([`HostBatch::prepare`]) and gets its loss
//! on a device from the model ([`crate::Model::loss`]); `mole_train` and `examples/pretrain.rs`
//! both do.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use mole_featurize::{collate, Batch, FeaturizedMolecule, MoleInput, Vocabulary};
use mole_metrics::TaskKind;
use rand::rngs::StdRng;
use rand::Rng;

use crate::TargetStandardization;

/// One featurised molecule ready for batching.
#[derive(Debug, Clone)]
pub struct Example {
    /// 1-based line in the input file.
    pub line: usize,
    pub smiles: String,
    pub input: MoleInput,
    /// One label per task, NaN = missing (empty for unlabelled data).
    pub labels: Vec<f32>,
    /// Radius-2 target token per atom (pretraining only).
    pub targets: Vec<u32>,
    /// Value of the split column, when there is one.
    pub split: Option<String>,
}

impl Example {
    /// An unlabelled molecule for stage 1: its tokens, and each atom's raw radius-2 identifier
    /// as its target ([`NO_ENVIRONMENT`] where it has none), to be mapped to target tokens by
    /// [`assign_targets`] once the target vocabulary is known.
    pub fn unlabelled(molecule: &FeaturizedMolecule, vocab: &Vocabulary) -> Self {
        Self {
            line: 0,
            smiles: molecule.smiles.clone(),
            input: MoleInput::from_featurized(molecule, vocab),
            labels: Vec::new(),
            targets: molecule
                .morgan_r2
                .iter()
                .map(|id| id.unwrap_or(NO_ENVIRONMENT))
                .collect(),
            split: None,
        }
    }
}

/// Radius-2 identifier stored for an atom that has none (an isolated atom).
pub const NO_ENVIRONMENT: u32 = u32::MAX;

/// Counts radius-2 identifiers over `examples` (after `featurize_rows(.., keep_r2 = true, ..)`).
pub fn count_targets<'a>(
    examples: impl Iterator<Item = &'a Example>,
) -> std::collections::HashMap<u32, u64> {
    let mut counts = std::collections::HashMap::new();
    for e in examples {
        for &id in &e.targets {
            if id != NO_ENVIRONMENT {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Replaces raw radius-2 identifiers by target tokens (UNK for rare or missing ones).
pub fn assign_targets(examples: &mut [Example], target_vocab: &Vocabulary) {
    for e in examples {
        for t in &mut e.targets {
            *t = if *t == NO_ENVIRONMENT {
                target_vocab.unk_id()
            } else {
                target_vocab.token(*t)
            };
        }
    }
}

/// What the model learns.
#[derive(Debug, Clone)]
pub enum Objective {
    /// Masked atom-environment prediction (stage 1).
    AtomEnv { mask_prob: f64, span: i64 },
    /// Supervised tasks on the CLS state (stage 2 and fine-tuning).
    Supervised {
        kind: TaskKind,
        num_tasks: usize,
        /// Per-task weight of positive entries (balanced class weights), binary tasks only.
        positive_weights: Option<Vec<f32>>,
        /// Regression targets standardised on the training split: the loss sees standardised
        /// labels, metrics are in original units, saved checkpoints predict original units.
        standardization: Option<TargetStandardization>,
    },
}

/// Host-side masking of one pretraining batch.
#[derive(Debug, Clone)]
pub struct MaskedBatch {
    pub input_ids: Vec<i64>,
    /// `[batch * seq * seq]`
    pub span_mask: Vec<bool>,
    /// Flat `b * seq + i` positions of the masked atoms.
    pub positions: Vec<i64>,
    pub targets: Vec<i64>,
}

/// Masks ~`mask_prob` of each molecule's atoms (at least one): 80% become MASK, 10% a random
/// identifier token, 10% stay; builds the attention-span mask (a masked query sees keys with
/// relative position ≤ 1 or > `span`, never padding).
pub fn mask_batch(
    examples: &[&Example],
    batch: &mole_featurize::Batch,
    vocab: &Vocabulary,
    mask_prob: f64,
    span: i64,
    rng: &mut StdRng,
) -> MaskedBatch {
    let (b, n) = (batch.batch_size, batch.seq_len);
    let mut input_ids = batch.input_ids.clone();
    let mut masked = vec![false; b * n];
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    let n_ids = vocab.num_identifiers().max(1) as u32;
    for (k, ex) in examples.iter().enumerate() {
        let atoms = ex.input.len() - 1;
        let n_mask = ((atoms as f64 * mask_prob).round() as usize).clamp(1, atoms);
        let chosen = rand::seq::index::sample(rng, atoms, n_mask);
        let mut chosen: Vec<usize> = chosen.into_iter().collect();
        chosen.sort_unstable();
        for a in chosen {
            let pos = k * n + a + 1;
            masked[pos] = true;
            positions.push(pos as i64);
            targets.push(i64::from(ex.targets[a]));
            let r: f64 = rng.random();
            if r < 0.8 {
                input_ids[pos] = i64::from(vocab.mask_id());
            } else if r < 0.9 {
                input_ids[pos] = i64::from(rng.random_range(1..=n_ids));
            }
        }
    }
    let mut span_mask = vec![false; b * n * n];
    for k in 0..b {
        for i in 0..n {
            if !batch.input_mask[k * n + i] {
                continue;
            }
            for j in 0..n {
                if !batch.input_mask[k * n + j] {
                    continue;
                }
                let rel = batch.relative_pos[k * n * n + i * n + j];
                span_mask[k * n * n + i * n + j] = !masked[k * n + i] || rel <= 1 || rel > span;
            }
        }
    }
    MaskedBatch {
        input_ids,
        span_mask,
        positions,
        targets,
    }
}

/// A batch prepared on the host (collated, masked, labels gathered): everything a replica needs
/// to compute its loss, and `Send` so it can go to another device's thread.
#[derive(Debug, Clone)]
pub enum HostBatch {
    AtomEnv {
        batch: Batch,
        masked: MaskedBatch,
    },
    Supervised {
        batch: Batch,
        /// `[batch * tasks]`, NaN = missing.
        labels: Vec<f32>,
        /// Per-entry weights (balanced classes), `[batch * tasks]`.
        weights: Option<Vec<f32>>,
        num_tasks: usize,
    },
}

impl HostBatch {
    /// Collates `examples` and, for pretraining, masks them with `rng`. Masking draws from `rng`
    /// molecule by molecule, so preparing consecutive shards with one `rng` masks them exactly as
    /// preparing the combined batch would.
    pub fn prepare(
        examples: &[&Example],
        objective: &Objective,
        vocab: &Vocabulary,
        rng: &mut StdRng,
    ) -> Self {
        let inputs: Vec<_> = examples.iter().map(|e| &e.input).collect();
        let batch = collate(&inputs);
        match objective {
            Objective::AtomEnv { mask_prob, span } => {
                let masked = mask_batch(examples, &batch, vocab, *mask_prob, *span, rng);
                Self::AtomEnv { batch, masked }
            }
            Objective::Supervised {
                num_tasks,
                positive_weights,
                standardization,
                ..
            } => {
                let labels: Vec<f32> = examples
                    .iter()
                    .flat_map(|e| {
                        e.labels
                            .iter()
                            .enumerate()
                            .map(|(t, &y)| match standardization {
                                Some(s) => s.standardize(t, y),
                                None => y,
                            })
                    })
                    .collect();
                let weights = positive_weights.as_ref().map(|pw| {
                    examples
                        .iter()
                        .flat_map(|e| {
                            e.labels
                                .iter()
                                .enumerate()
                                .map(|(t, &y)| if y > 0.5 { pw[t] } else { 1.0 })
                        })
                        .collect()
                });
                Self::Supervised {
                    batch,
                    labels,
                    weights,
                    num_tasks: *num_tasks,
                }
            }
        }
    }

    /// The loss's normaliser: masked atoms, or labels present.
    pub fn loss_count(&self) -> usize {
        match self {
            Self::AtomEnv { masked, .. } => masked.positions.len(),
            Self::Supervised { labels, .. } => labels.iter().filter(|y| !y.is_nan()).count(),
        }
    }
}

/// Loss (and accuracy numerator for pretraining) of one batch; the tensors stay on the device.
pub struct BatchLoss<B: Backend> {
    /// `[1]`: the batch's mean loss.
    pub loss: Tensor<B, 1>,
    /// `[1]`: correctly predicted masked atoms, as a float count (summable across devices).
    pub correct: Option<Tensor<B, 1>>,
    /// The loss's normaliser (masked atoms or labels present).
    pub count: usize,
    /// `[batch, tasks]` (classes per task for multiclass) predictions in the head's units.
    pub predictions: Option<Tensor<B, 2>>,
}
