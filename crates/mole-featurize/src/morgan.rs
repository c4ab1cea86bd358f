//! RDKit Morgan atom-environment identifiers (connectivity invariants, default options,
//! `includeRedundantEnvironments=True`) and the topological distance matrix.

use crate::molecule::Molecule;

/// boost::hash_combine on 32-bit values, as RDKit uses it.
#[inline]
fn hash_combine(seed: u32, value: u32) -> u32 {
    seed ^ (value
        .wrapping_add(0x9e37_79b9)
        .wrapping_add(seed << 6)
        .wrapping_add(seed >> 2))
}

#[inline]
fn hash_slice(values: &[u32]) -> u32 {
    values.iter().fold(0, |seed, &v| hash_combine(seed, v))
}

/// Radius-0 identifier of every atom: RDKit's connectivity invariant with ring membership.
pub fn atom_invariants(mol: &Molecule) -> Vec<u32> {
    mol.atoms()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            // `getTotalNumHs(includeNeighbors = true)`: hydrogens kept as atoms (isotopes,
            // H2, bridging hydrides) count too
            let h_neighbors = mol
                .neighbors(i)
                .iter()
                .filter(|&&(w, _)| mol.atoms()[w as usize].atomic_num() == 1)
                .count() as u32;
            let values = [
                u32::from(a.atomic_num()),
                a.total_degree(),
                a.total_num_hs() + h_neighbors,
                a.formal_charge() as u32,
                a.delta_mass() as u32,
                1, // ring membership, hashed only for ring atoms
            ];
            let len = if a.in_ring() { 6 } else { 5 };
            hash_slice(&values[..len])
        })
        .collect()
}

/// Morgan environment identifiers for radius 0..=`radius`: `result[r][atom]`.
/// Radius 0 is always present; an atom without bonds has no environment at radius >= 1.
pub fn morgan_environments(mol: &Molecule, radius: usize) -> Vec<Vec<Option<u32>>> {
    let n = mol.num_atoms();
    let r0 = atom_invariants(mol);
    let mut result = Vec::with_capacity(radius + 1);
    result.push(r0.iter().map(|&v| Some(v)).collect::<Vec<_>>());
    let mut current = r0;
    let mut next = vec![0u32; n];
    let mut neighbor_keys: Vec<(u32, u32)> = Vec::with_capacity(8);
    for layer in 0..radius {
        let mut row = Vec::with_capacity(n);
        for (atom, slot) in next.iter_mut().enumerate() {
            let neighbors = mol.neighbors(atom);
            if neighbors.is_empty() {
                *slot = current[atom];
                row.push(None);
                continue;
            }
            neighbor_keys.clear();
            neighbor_keys.extend(neighbors.iter().map(|&(w, b)| {
                (
                    mol.bonds()[b as usize].bond_type().rdkit_code(),
                    current[w as usize],
                )
            }));
            neighbor_keys.sort_unstable();
            let mut seed = hash_combine(layer as u32, current[atom]);
            for &(bond_code, invariant) in &neighbor_keys {
                seed = hash_combine(seed, hash_slice(&[bond_code, invariant]));
            }
            *slot = seed;
            row.push(Some(seed));
        }
        std::mem::swap(&mut current, &mut next);
        result.push(row);
    }
    result
}

/// Topological distances (bonds on the shortest path); -1 between atoms of different fragments.
pub fn distance_matrix(mol: &Molecule) -> Vec<Vec<i32>> {
    // Breadth-first search from every atom on bitsets: a whole frontier expands with one OR
    // of neighbour sets per frontier atom, and every atom is set once per source.
    let n = mol.num_atoms();
    let words = n.div_ceil(64).max(1);
    let mut adjacency = vec![0u64; n * words];
    for (i, row) in adjacency.chunks_mut(words).enumerate() {
        for &(w, _) in mol.neighbors(i) {
            row[w as usize / 64] |= 1 << (w % 64);
        }
    }
    let mut matrix = vec![vec![-1i32; n]; n];
    let (mut visited, mut frontier, mut next) =
        (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    for (source, row) in matrix.iter_mut().enumerate() {
        row[source] = 0;
        visited.fill(0);
        frontier.fill(0);
        visited[source / 64] = 1 << (source % 64);
        frontier[source / 64] = 1 << (source % 64);
        let mut distance = 0;
        loop {
            distance += 1;
            next.fill(0);
            for (word, &bits) in frontier.iter().enumerate() {
                let mut bits = bits;
                while bits != 0 {
                    let atom = word * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let neighbours = &adjacency[atom * words..(atom + 1) * words];
                    next.iter_mut().zip(neighbours).for_each(|(x, &m)| *x |= m);
                }
            }
            let mut any = false;
            for (word, (x, seen)) in next.iter_mut().zip(visited.iter_mut()).enumerate() {
                *x &= !*seen;
                *seen |= *x;
                let mut bits = *x;
                any |= bits != 0;
                while bits != 0 {
                    row[word * 64 + bits.trailing_zeros() as usize] = distance;
                    bits &= bits - 1;
                }
            }
            if !any {
                break;
            }
            std::mem::swap(&mut frontier, &mut next);
        }
    }
    matrix
}
