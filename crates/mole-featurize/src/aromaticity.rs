//! Aromaticity perception with RDKit's default model, applied to the Kekulé graph.
//!
//! Each ring atom gets an electron-donor type (how many pi electrons it can put into a ring);
//! rings made only of candidate atoms are grouped into fused systems (rings sharing exactly one
//! bond, rings of at most 24 atoms), and every connected combination of up to six rings of a system is
//! tested with Hückel's 4n+2 rule. Atoms of an aromatic combination become aromatic, and so do
//! its bonds that belong to exactly one ring of the combination.

use crate::elements;
use crate::molecule::BondType;
use crate::rings::{relevant_cycles, Ring};
use crate::sanitize::Work;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Donor {
    /// Empty p orbital (contributes 0).
    Vacant,
    One,
    Two,
    /// Dummy atom: 1 or 2.
    Any,
    None,
}

/// Largest ring that can take part in a fused aromatic system.
const MAX_FUSED_RING_SIZE: usize = 24;
/// Largest number of rings combined when testing a fused system.
const MAX_FUSED_RINGS: usize = 6;

struct AtomState {
    explicit_valence: i32,
    total_valence: i32,
}

/// `explicit_valence`: each atom's explicit valence as computed before kekulisation (aromatic
/// bonds 1.5, RDKit's aromatic adjustment); RDKit's aromaticity model reads these cached values,
/// not valences recomputed from the Kekulé bonds.
/// `rings`: RDKit's symmetrised SSSR (atom paths and their bonds, in its order); where it is not reproduced
/// (`None`), the relevant cycles stand in.
pub(crate) fn perceive(work: &mut Work, explicit_valence: &[i32], rings: Option<&[Ring]>) {
    let n = work.atoms.len();
    if !work.atoms.iter().any(|a| a.in_ring) {
        return;
    }
    let states: Vec<AtomState> = (0..n)
        .map(|i| {
            let a = &work.atoms[i];
            AtomState {
                explicit_valence: explicit_valence[i],
                total_valence: explicit_valence[i] + i32::from(a.implicit_hs),
            }
        })
        .collect();
    let mut donor = vec![Donor::None; n];
    let mut candidate = vec![false; n];
    let mut any_candidate = false;
    for i in 0..n {
        if !work.atoms[i].in_ring {
            continue;
        }
        donor[i] = donor_type(work, &states, i);
        candidate[i] = is_candidate(work, &states, i, donor[i]);
        any_candidate |= candidate[i];
    }
    if !any_candidate {
        return;
    }
    let relevant;
    let all_rings: &[Ring] = match rings {
        Some(rings) => rings,
        None => {
            relevant = relevant_cycles(work);
            &relevant
        }
    };
    let rings: Vec<&Ring> = all_rings
        .iter()
        .filter(|r| {
            r.atoms.iter().all(|&a| candidate[a as usize])
                && r.atoms
                    .iter()
                    .any(|&a| work.atoms[a as usize].atomic_num != 0)
        })
        .collect();
    if rings.is_empty() {
        return;
    }
    // rings are neighbours when they share exactly one bond (and neither is too large)
    let nr = rings.len();
    let mut neighbors: Vec<Vec<usize>> = vec![Vec::new(); nr];
    for i in 0..nr {
        if rings[i].bonds.len() > MAX_FUSED_RING_SIZE {
            continue;
        }
        for j in i + 1..nr {
            if rings[j].bonds.len() > MAX_FUSED_RING_SIZE {
                continue;
            }
            // RDKit's makeRingNeighborMap(.., maxOverlapSize = 1): rings that share two or
            // more bonds (a porphyrin's macrocycle and its pyrroles) are not fused.
            let shared = rings[i]
                .bonds
                .iter()
                .filter(|b| rings[j].bonds.contains(b))
                .count();
            if shared == 1 {
                neighbors[i].push(j);
                neighbors[j].push(i);
            }
        }
    }
    let mut assigned = vec![false; nr];
    let mut aromatic_atom = vec![false; n];
    let mut aromatic_bond = vec![false; work.bonds.len()];
    for start in 0..nr {
        if assigned[start] {
            continue;
        }
        // one fused system (connected component of the ring neighbour graph)
        let mut system = vec![start];
        assigned[start] = true;
        let mut k = 0;
        while k < system.len() {
            for &j in &neighbors[system[k]] {
                if !assigned[j] {
                    assigned[j] = true;
                    system.push(j);
                }
            }
            k += 1;
        }
        system.sort_unstable();
        huckel_on_system(
            work,
            &rings,
            &system,
            &neighbors,
            &donor,
            &mut aromatic_atom,
            &mut aromatic_bond,
        );
    }
    for (i, a) in work.atoms.iter_mut().enumerate() {
        a.aromatic = aromatic_atom[i];
    }
    for (bi, b) in work.bonds.iter_mut().enumerate() {
        if aromatic_bond[bi] && matches!(b.bond_type, BondType::Single | BondType::Double) {
            b.bond_type = BondType::Aromatic;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn huckel_on_system(
    work: &Work,
    rings: &[&Ring],
    system: &[usize],
    neighbors: &[Vec<usize>],
    donor: &[Donor],
    aromatic_atom: &mut [bool],
    aromatic_bond: &mut [bool],
) {
    let nrings = system.len();
    let mut system_bonds: Vec<u32> = system
        .iter()
        .flat_map(|&r| rings[r].bonds.iter().copied())
        .collect();
    system_bonds.sort_unstable();
    system_bonds.dedup();
    let n_ring_bonds = system_bonds.len();
    let mut done_bonds: Vec<u32> = Vec::new();
    let mut atom_count = vec![0u8; work.atoms.len()];
    let mut bond_count: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let max_size = nrings.min(MAX_FUSED_RINGS);
    for size in 1..=max_size {
        if done_bonds.len() >= n_ring_bonds {
            break;
        }
        if size > 2 && nrings > 300 {
            break;
        }
        let mut comb: Vec<usize> = (0..size).collect();
        loop {
            let chosen: Vec<usize> = comb.iter().map(|&c| system[c]).collect();
            if size == 1 || is_connected(&chosen, neighbors) {
                // atoms in one or two of the chosen rings count (an atom shared by three rings
                // is interior, as the centre of acepentalene)
                for &r in &chosen {
                    for &a in &rings[r].atoms {
                        atom_count[a as usize] = atom_count[a as usize].saturating_add(1);
                    }
                }
                let (mut low, mut high, mut n_any) = (0i32, 0i32, 0);
                let mut skip = false;
                for &r in &chosen {
                    for &a in &rings[r].atoms {
                        let c = atom_count[a as usize];
                        if c == 0 {
                            continue; // already counted
                        }
                        if c == 1 || c == 2 {
                            let (lo, hi) = match donor[a as usize] {
                                Donor::Any => {
                                    n_any += 1;
                                    (1, 2)
                                }
                                Donor::One => (1, 1),
                                Donor::Two => (2, 2),
                                Donor::Vacant | Donor::None => (0, 0),
                            };
                            low += lo;
                            high += hi;
                        }
                        atom_count[a as usize] = 0;
                    }
                }
                if n_any > 1 {
                    skip = true;
                }
                let aromatic = !skip
                    && if high >= 6 {
                        (low..=high).any(|e| (e - 2) % 4 == 0)
                    } else {
                        high == 2
                    };
                if aromatic {
                    bond_count.clear();
                    for &r in &chosen {
                        for &a in &rings[r].atoms {
                            aromatic_atom[a as usize] = true;
                        }
                        for &b in &rings[r].bonds {
                            *bond_count.entry(b).or_insert(0) += 1;
                        }
                    }
                    for (&b, &c) in &bond_count {
                        if c == 1 {
                            aromatic_bond[b as usize] = true;
                            if !done_bonds.contains(&b) {
                                done_bonds.push(b);
                            }
                        }
                    }
                }
            }
            if !next_combination(&mut comb, nrings) {
                break;
            }
        }
    }
}

/// Advances `comb` to the next k-combination of 0..n in lexicographic order.
fn next_combination(comb: &mut [usize], n: usize) -> bool {
    let k = comb.len();
    let mut i = k;
    while i > 0 {
        i -= 1;
        if comb[i] < n - k + i {
            comb[i] += 1;
            for j in i + 1..k {
                comb[j] = comb[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// Whether the chosen rings form one connected group through shared bonds.
fn is_connected(chosen: &[usize], neighbors: &[Vec<usize>]) -> bool {
    let mut reached = vec![false; chosen.len()];
    reached[0] = true;
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        for (j, &r) in chosen.iter().enumerate() {
            if !reached[j] && neighbors[chosen[i]].contains(&r) {
                reached[j] = true;
                stack.push(j);
            }
        }
    }
    reached.iter().all(|&x| x)
}

fn has_bond_where(
    work: &Work,
    atom: usize,
    pred: impl Fn(usize, BondType) -> bool,
) -> Option<usize> {
    work.neighbors(atom).iter().find_map(|&(w, b)| {
        let bi = b as usize;
        pred(bi, work.bonds[bi].bond_type).then_some(w as usize)
    })
}

/// Neighbour across a non-ring double (or higher) bond, if any.
fn exocyclic_multiple_bond(work: &Work, atom: usize) -> Option<usize> {
    has_bond_where(work, atom, |b, t| !work.bond_in_ring[b] && t.order() >= 2)
}

fn cyclic_multiple_bond(work: &Work, atom: usize) -> bool {
    has_bond_where(work, atom, |b, t| work.bond_in_ring[b] && t.order() >= 2).is_some()
}

/// Bonds that add no valence to `atom` (the donor end of a dative bond, `~`): RDKit leaves
/// them out of the degree when counting pi electrons.
fn no_valence_bonds(work: &Work, atom: usize) -> i32 {
    work.neighbors(atom)
        .iter()
        .filter(|&&(_, b)| work.bonds[b as usize].valence_contrib(atom).round() == 0.0)
        .count() as i32
}

/// RDKit's `countAtomElec`: electrons an atom can donate to a pi system, -1 if it cannot take
/// part (monovalent element, or more than three neighbours including hydrogens).
fn count_atom_electrons(work: &Work, states: &[AtomState], atom: usize) -> i32 {
    let a = &work.atoms[atom];
    let dv = elements::default_valence(a.atomic_num);
    if dv <= 1 {
        return -1;
    }
    let degree = i32::from(a.degree) + a.total_num_hs() as i32 - no_valence_bonds(work, atom);
    if degree > 3 {
        return -1;
    }
    let lone_pair_electrons =
        (elements::outer_electrons(a.atomic_num) - dv - i32::from(a.formal_charge)).max(0);
    let radicals = i32::from(a.radical_electrons);
    let mut res = (dv - degree) + lone_pair_electrons - radicals;
    if res > 1 {
        let unsaturations = states[atom].explicit_valence - i32::from(a.degree);
        if unsaturations > 1 {
            res = 1;
        }
    }
    res
}

fn donor_type(work: &Work, states: &[AtomState], atom: usize) -> Donor {
    let a = &work.atoms[atom];
    if a.atomic_num == 0 {
        return if cyclic_multiple_bond(work, atom) {
            Donor::One
        } else {
            Donor::Any
        };
    }
    let mut nelec = count_atom_electrons(work, states, atom);
    if nelec < 0 {
        return Donor::None;
    }
    let exo = exocyclic_multiple_bond(work, atom);
    if nelec == 0 {
        if exo.is_some() {
            Donor::Vacant
        } else if cyclic_multiple_bond(work, atom) {
            Donor::One
        } else {
            Donor::None
        }
    } else if nelec == 1 {
        if let Some(other) = exo {
            if elements::more_electronegative(work.atoms[other].atomic_num, a.atomic_num) {
                Donor::Vacant
            } else {
                Donor::One
            }
        } else {
            // a multiple bond means explicit valence above degree + explicit Hs (RDKit's
            // `incidentMultipleBond`, bonds that add no valence not counted)
            let deg = i32::from(a.degree) + i32::from(a.explicit_hs) - no_valence_bonds(work, atom);
            if states[atom].explicit_valence != deg {
                Donor::One
            } else if a.formal_charge == 1 {
                // tropylium and cyclopropenyl cations
                Donor::Vacant
            } else {
                Donor::None
            }
        }
    } else {
        if let Some(other) = exo {
            if elements::more_electronegative(work.atoms[other].atomic_num, a.atomic_num) {
                nelec -= 1;
            }
        }
        if nelec % 2 == 1 {
            Donor::One
        } else {
            Donor::Two
        }
    }
}

fn is_candidate(work: &Work, states: &[AtomState], atom: usize, donor: Donor) -> bool {
    let a = &work.atoms[atom];
    let z = a.atomic_num;
    // only the first rows of the periodic table, plus Se and Te
    if z > 18 && z != 34 && z != 52 {
        return false;
    }
    if donor == Donor::None {
        return false;
    }
    // atoms above their default valence are shut out
    let dv = elements::default_valence(z);
    if dv > 0
        && states[atom].total_valence
            > elements::default_valence_signed(i32::from(z) - i32::from(a.formal_charge))
    {
        return false;
    }
    if a.radical_electrons > 0 && (z != 6 || a.formal_charge != 0) {
        return false;
    }
    // at most one double or triple bond
    let unsaturations = states[atom].explicit_valence - i32::from(a.degree);
    if unsaturations > 1 {
        let multiple = work
            .neighbors(atom)
            .iter()
            .filter(|&&(_, b)| {
                matches!(
                    work.bonds[b as usize].bond_type,
                    BondType::Double | BondType::Triple
                )
            })
            .count();
        if multiple > 1 {
            return false;
        }
    }
    true
}
