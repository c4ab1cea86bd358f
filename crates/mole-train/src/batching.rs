//! How a run orders its molecules: length-bucketed random batches for training, input order
//! for evaluation, and the per-step seeds that make a resumed run repeat an uninterrupted one.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Shuffles, then groups molecules of similar size: pools of 50 batches are sorted by length
/// and cut into batches, and the batches are shuffled, so padding stays small while the order
/// stays random.
pub fn length_bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let pool = batch_size * 50;
    let mut batches = Vec::new();
    for chunk in order.chunks(pool) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

/// Batches in input order (prediction, evaluation), sorted by nothing.
pub fn sequential_batches(n: usize, batch_size: usize) -> Vec<Vec<usize>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .map(|c| c.to_vec())
        .collect()
}

/// The seed of step `step` of a run seeded with `seed` (its masking and dropout).
pub fn step_seed(seed: u64, step: usize) -> u64 {
    // SplitMix64 of (seed, step): independent, reproducible streams per step.
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
