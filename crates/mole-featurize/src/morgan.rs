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
    let n = mol.num_atoms();
    let mut matrix = vec![vec![-1i32; n]; n];
    let mut queue = Vec::with_capacity(n);
    for (source, row) in matrix.iter_mut().enumerate() {
        row[source] = 0;
        queue.clear();
        queue.push(source);
        let mut head = 0;
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            let d = row[v] + 1;
            for &(w, _) in mol.neighbors(v) {
                let w = w as usize;
                if row[w] < 0 {
                    row[w] = d;
                    queue.push(w);
                }
            }
        }
    }
    matrix
}
