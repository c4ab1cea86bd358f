//! Train/valid/test splits of a molecule table: TDC's scaffold split, reproduced exactly
//! (same groups, same shuffle, same sizes for the same seed), and its random-number generator.

use serde::{Deserialize, Serialize};

/// How rows are split into train/valid/test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// Rows shuffled with the seed, then cut at the fractions.
    #[default]
    Random,
    /// Whole Bemis–Murcko scaffold groups per part, as TDC's `create_scaffold_split`.
    Scaffold,
}

impl SplitMethod {
    /// The name in configs (`data.split_method`), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitMethod::Random => "random",
            SplitMethod::Scaffold => "scaffold",
        }
    }
}

/// The part of a split a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Train,
    Valid,
    Test,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Valid => "valid",
            Part::Test => "test",
        }
    }
}

/// Train/valid/test fractions; they need not sum to 1 (TDC takes train and valid sizes from
/// their fractions and gives the test part the rest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fractions {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

/// TDC's `create_scaffold_split(df, seed, frac)` on rows whose scaffolds are given (`None`:
/// a molecule the scaffold code rejects, which TDC leaves out of every part): scaffold groups
/// in order of first appearance, divided into "big" groups (more than half the valid or test
/// size) and the rest, each list shuffled by Python's `random.Random(seed)`, big ones first;
/// then each group goes whole to train while it fits, else to valid while it fits, else to
/// test (to valid when the test fraction is 0). Returns each row's part.
pub fn scaffold_split<S: AsRef<str>>(
    scaffolds: &[Option<S>],
    seed: u64,
    fractions: Fractions,
) -> Vec<Option<Part>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (row, scaffold) in scaffolds.iter().enumerate() {
        let Some(s) = scaffold else { continue };
        let g = *group_of.entry(s.as_ref()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(row);
    }
    let n = scaffolds.iter().filter(|s| s.is_some()).count();
    // Python's int() of the products, as TDC computes the sizes
    let train_size = (n as f64 * fractions.train) as usize;
    let valid_size = (n as f64 * fractions.valid) as usize;
    let test_size = n - train_size.min(n) - valid_size.min(n - train_size.min(n));
    let (mut big, mut small): (Vec<Vec<usize>>, Vec<Vec<usize>>) =
        groups.into_iter().partition(|g| {
            g.len() as f64 > valid_size as f64 / 2.0 || g.len() as f64 > test_size as f64 / 2.0
        });
    let mut rng = PyRandom::new(seed);
    rng.shuffle(&mut big);
    rng.shuffle(&mut small);
    let mut part = vec![None; scaffolds.len()];
    let (mut n_train, mut n_valid) = (0usize, 0usize);
    for group in big.iter().chain(small.iter()) {
        let to = if n_train + group.len() <= train_size {
            n_train += group.len();
            Part::Train
        } else if fractions.test == 0.0 || n_valid + group.len() <= valid_size {
            n_valid += group.len();
            Part::Valid
        } else {
            Part::Test
        };
        for &row in group {
            part[row] = Some(to);
        }
    }
    part
}

/// CPython's `random.Random`: the Mersenne Twister MT19937 seeded from an integer the way
/// `random.seed(int)` does (`init_by_array` over the integer's 32-bit words), with
/// `shuffle` drawing by `_randbelow` (rejection sampling on `getrandbits`).
pub struct PyRandom {
    state: [u32; 624],
    index: usize,
}

impl PyRandom {
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        let mut rng = PyRandom {
            state: [0; 624],
            index: 624,
        };
        rng.init_genrand(19_650_218);
        let mt = &mut rng.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        rng
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..624 {
            let prev = self.state[i - 1] ^ (self.state[i - 1] >> 30);
            self.state[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    /// `genrand_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            const UPPER: u32 = 0x8000_0000;
            const LOWER: u32 = 0x7fff_ffff;
            const MATRIX_A: u32 = 0x9908_b0df;
            for k in 0..624 {
                let y = (self.state[k] & UPPER) | (self.state[(k + 1) % 624] & LOWER);
                let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
                self.state[k] = self.state[(k + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for 1 ≤ k ≤ 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)`: uniform in `0..n`, n ≥ 1.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(x)`: Fisher–Yates from the end.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values CPython 3.11 gives: `r = random.Random(seed)`, then `[r.getrandbits(32) for _ in
    /// range(3)]`, and `x = list(range(10)); random.Random(seed).shuffle(x)`.
    #[test]
    fn matches_cpython() {
        let mut r = PyRandom::new(1);
        let words: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
        assert_eq!(words, PY_WORDS_SEED1);
        let mut x: Vec<u32> = (0..10).collect();
        PyRandom::new(42).shuffle(&mut x);
        assert_eq!(x, PY_SHUFFLE_SEED42);
        let mut x: Vec<u32> = (0..10).collect();
        PyRandom::new(5_000_000_000).shuffle(&mut x);
        assert_eq!(x, PY_SHUFFLE_SEED5E9);
    }

    const PY_WORDS_SEED1: [u32; 3] = [577_090_037, 2_444_712_010, 3_639_700_191];
    const PY_SHUFFLE_SEED42: [u32; 10] = [7, 3, 2, 8, 5, 6, 9, 4, 0, 1];
    const PY_SHUFFLE_SEED5E9: [u32; 10] = [9, 8, 5, 4, 3, 2, 6, 7, 0, 1];
}
