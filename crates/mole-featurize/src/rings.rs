//! Ring perception for aromaticity: the relevant cycles of the ring-bond graph (every cycle
//! that is not a sum of strictly shorter cycles). This is the union of all minimum cycle bases,
//! i.e. the SSSR together with the equally short alternatives RDKit adds when it symmetrises
//! the SSSR (e.g. all six faces of cubane).

use crate::sanitize::Work;

/// One ring: its atoms and its bonds (indices into the molecule).
pub(crate) struct Ring {
    pub atoms: Vec<u32>,
    pub bonds: Vec<u32>,
}

impl Ring {
    /// A ring given as an atom path (consecutive atoms bonded, last to first closing it).
    pub(crate) fn of_path(work: &Work, path: &[usize]) -> Self {
        Ring {
            atoms: path.iter().map(|&a| a as u32).collect(),
            bonds: crate::sssr::ring_bonds(work, path)
                .into_iter()
                .map(|b| b as u32)
                .collect(),
        }
    }
}

/// Relevant cycles of the molecule, shortest first.
pub(crate) fn relevant_cycles(work: &Work) -> Vec<Ring> {
    let n = work.atoms.len();
    let ring_bonds: Vec<usize> = (0..work.bonds.len())
        .filter(|&b| work.bond_in_ring[b])
        .collect();
    if ring_bonds.is_empty() {
        return Vec::new();
    }
    // dense index of ring bonds for bitsets
    let mut bond_slot = vec![usize::MAX; work.bonds.len()];
    for (k, &b) in ring_bonds.iter().enumerate() {
        bond_slot[b] = k;
    }
    let words = ring_bonds.len().div_ceil(64);
    let ring_atoms: Vec<usize> = (0..n).filter(|&i| work.atoms[i].in_ring).collect();
    // cycle rank of the ring-bond graph: E - V + C
    let components = count_components(work, &ring_atoms);
    let rank = ring_bonds.len() + components - ring_atoms.len();

    // Horton candidates: for each root, each non-tree ring edge closes a cycle through the
    // root when the two tree paths meet only at the root.
    let mut dist = vec![u32::MAX; n];
    let mut parent_bond = vec![u32::MAX; n];
    let mut parent_atom = vec![u32::MAX; n];
    let mut on_path = vec![false; n];
    let mut queue: Vec<usize> = Vec::new();
    let mut candidates: Vec<(usize, Vec<u64>)> = Vec::new();
    let mut seen_sets: std::collections::HashSet<Vec<u64>> = std::collections::HashSet::new();
    for &root in &ring_atoms {
        queue.clear();
        for &a in &ring_atoms {
            dist[a] = u32::MAX;
            parent_bond[a] = u32::MAX;
            parent_atom[a] = u32::MAX;
        }
        dist[root] = 0;
        queue.push(root);
        let mut head = 0;
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            for &(w, b) in work.neighbors(v) {
                let w = w as usize;
                if !work.bond_in_ring[b as usize] || dist[w] != u32::MAX {
                    continue;
                }
                dist[w] = dist[v] + 1;
                parent_bond[w] = b;
                parent_atom[w] = v as u32;
                queue.push(w);
            }
        }
        for &b in &ring_bonds {
            let bond = &work.bonds[b];
            let (mut x, mut y) = (bond.begin as usize, bond.end as usize);
            if dist[x] == u32::MAX || dist[y] == u32::MAX {
                continue;
            }
            if dist[x] > dist[y] {
                std::mem::swap(&mut x, &mut y);
            }
            let odd = dist[x] == dist[y];
            let even = dist[y] == dist[x] + 1 && parent_bond[y] != b as u32;
            if !(odd || even) {
                continue;
            }
            // paths must be vertex-disjoint except for the root
            let mut bits = vec![0u64; words];
            let mut v = x;
            while v != root {
                on_path[v] = true;
                v = parent_atom[v] as usize;
            }
            let mut disjoint = true;
            let mut v = y;
            while v != root {
                if on_path[v] {
                    disjoint = false;
                    break;
                }
                v = parent_atom[v] as usize;
            }
            let mut v = x;
            while v != root {
                on_path[v] = false;
                v = parent_atom[v] as usize;
            }
            if !disjoint {
                continue;
            }
            for start in [x, y] {
                let mut v = start;
                while v != root {
                    let k = bond_slot[parent_bond[v] as usize];
                    bits[k / 64] |= 1 << (k % 64);
                    v = parent_atom[v] as usize;
                }
            }
            let k = bond_slot[b];
            bits[k / 64] |= 1 << (k % 64);
            let len = (dist[x] + dist[y] + 1) as usize;
            if seen_sets.insert(bits.clone()) {
                candidates.push((len, bits));
            }
        }
    }
    candidates.sort_by_key(|c| c.0);

    // Gaussian elimination over GF(2), one length class at a time: a cycle is relevant when it
    // is independent of all strictly shorter cycles.
    let mut basis: Vec<(usize, Vec<u64>)> = Vec::new(); // (pivot bit, row)
    let mut relevant: Vec<Vec<u64>> = Vec::new();
    let mut i = 0;
    while i < candidates.len() && basis.len() < rank {
        let len = candidates[i].0;
        let mut j = i;
        while j < candidates.len() && candidates[j].0 == len {
            j += 1;
        }
        let shorter = basis.len();
        for (_, bits) in &candidates[i..j] {
            if reduce(bits, &basis[..shorter]).is_some() {
                relevant.push(bits.clone());
                if let Some(row) = reduce(bits, &basis) {
                    basis.push(row);
                }
            }
        }
        i = j;
    }

    relevant
        .into_iter()
        .map(|bits| ring_from_bits(work, &ring_bonds, &bits))
        .collect()
}

/// Reduces `row` by the echelon rows; returns (pivot, reduced row) when it is independent.
fn reduce(row: &[u64], basis: &[(usize, Vec<u64>)]) -> Option<(usize, Vec<u64>)> {
    let mut r = row.to_vec();
    for (pivot, b) in basis {
        if r[pivot / 64] >> (pivot % 64) & 1 == 1 {
            for (x, y) in r.iter_mut().zip(b) {
                *x ^= *y;
            }
        }
    }
    r.iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(k, w)| k * 64 + w.trailing_zeros() as usize)
        .map(|pivot| (pivot, r))
}

fn ring_from_bits(work: &Work, ring_bonds: &[usize], bits: &[u64]) -> Ring {
    let mut bonds = Vec::new();
    let mut atoms = Vec::new();
    for (k, &b) in ring_bonds.iter().enumerate() {
        if bits[k / 64] >> (k % 64) & 1 == 1 {
            bonds.push(b as u32);
            let bond = &work.bonds[b];
            for a in [bond.begin, bond.end] {
                if !atoms.contains(&a) {
                    atoms.push(a);
                }
            }
        }
    }
    Ring { atoms, bonds }
}

fn count_components(work: &Work, ring_atoms: &[usize]) -> usize {
    let mut seen = vec![false; work.atoms.len()];
    let mut components = 0;
    let mut stack = Vec::new();
    for &start in ring_atoms {
        if seen[start] {
            continue;
        }
        components += 1;
        seen[start] = true;
        stack.push(start);
        while let Some(v) = stack.pop() {
            for &(w, b) in work.neighbors(v) {
                if work.bond_in_ring[b as usize] && !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push(w as usize);
                }
            }
        }
    }
    components
}
