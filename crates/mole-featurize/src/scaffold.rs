//! Bemis–Murcko scaffolds as TDC's scaffold split computes them —
//! `MurckoScaffold.MurckoScaffoldSmiles(mol, includeChirality=False)` of RDKit — and a
//! canonical SMILES of the scaffold, so that two molecules share a scaffold string exactly when
//! RDKit gives them the same scaffold SMILES.
//!
//! The scaffold follows RDKit's `MurckoDecompose` step by step: ring atoms and the chains that
//! join ring systems are kept; an atom double-bonded to a kept atom stays (the `=O` of a
//! lactam); where a substituent is cut, an aromatic heteroatom or aromatic carbocation gets one
//! explicit hydrogen and a bracket atom loses its written hydrogens and bracket status; then
//! hydrogens are recounted with the valence model (strict: an over-valent result is an error,
//! as in RDKit, and TDC drops such molecules).
//!
//! The string is not RDKit's canonical SMILES (that would mean porting RDKit's canonical
//! ranking); it is our own canonical SMILES of the same graph — elements, charges, aromatic
//! flags, hydrogen counts, radicals and bond types; isotopes and stereo are left out, as
//! `includeChirality=False` leaves them out of RDKit's — so it groups molecules identically.

use crate::molecule::{Atom, Bond, BondType, Molecule};
use crate::smiles::SmilesError;
use crate::smiles_writer::{components, write_component, Isotopes};

/// The Bemis–Murcko scaffold of `mol` (RDKit's `GetScaffoldForMol`): an empty molecule for an
/// acyclic one. Fails where RDKit's strict property-cache update fails on the scaffold.
pub fn murcko_scaffold(mol: &Molecule) -> Result<Molecule, SmilesError> {
    let n = mol.num_atoms();
    // Keepers: ring atoms and the atoms on paths between rings. RDKit walks shortest paths
    // between every pair of rings; those cover exactly what is left after repeatedly stripping
    // non-ring atoms with at most one remaining neighbour (side chains, acyclic fragments).
    let mut keep = vec![true; n];
    let mut degree: Vec<usize> = (0..n).map(|i| mol.neighbors(i).len()).collect();
    let mut leaves: Vec<usize> = (0..n)
        .filter(|&i| !mol.atoms[i].in_ring && degree[i] <= 1)
        .collect();
    while let Some(i) = leaves.pop() {
        if !keep[i] {
            continue;
        }
        keep[i] = false;
        for &(nb, _) in mol.neighbors(i) {
            let nb = nb as usize;
            if keep[nb] {
                degree[nb] -= 1;
                if !mol.atoms[nb].in_ring && degree[nb] <= 1 {
                    leaves.push(nb);
                }
            }
        }
    }

    let mut atoms = mol.atoms.clone();
    let mut no_implicit = mol.no_implicit.clone();
    let mut removed = vec![false; n];
    for i in (0..n).filter(|&i| !keep[i]) {
        let mut remove = true;
        for &(nb, b) in mol.neighbors(i) {
            let nb = nb as usize;
            if !keep[nb] {
                continue;
            }
            if mol.bonds[b as usize].bond_type == BondType::Double {
                remove = false;
                break;
            }
            let atom = &mut atoms[nb];
            if atom.aromatic && (atom.atomic_num != 6 || atom.formal_charge == 1) {
                // aromatic heteroatoms and aromatic carbocations keep the substituent as an H
                atom.explicit_hs = 1;
            } else if no_implicit[nb] {
                // a bracket atom (chiral ones included) loses its written hydrogens
                no_implicit[nb] = false;
                atom.explicit_hs = 0;
            }
        }
        removed[i] = remove;
    }

    let mut new_index = vec![u32::MAX; n];
    let mut kept_atoms: Vec<Atom> = Vec::new();
    let mut kept_no_implicit = Vec::new();
    for i in (0..n).filter(|&i| !removed[i]) {
        new_index[i] = kept_atoms.len() as u32;
        kept_atoms.push(atoms[i].clone());
        kept_no_implicit.push(no_implicit[i]);
    }
    let bonds: Vec<Bond> = mol
        .bonds
        .iter()
        .filter(|b| !removed[b.begin as usize] && !removed[b.end as usize])
        .map(|b| Bond {
            begin: new_index[b.begin as usize],
            end: new_index[b.end as usize],
            bond_type: b.bond_type,
        })
        .collect();
    let (adjacency_start, adjacency) = Molecule::build_adjacency(kept_atoms.len(), &bonds);
    for (i, atom) in kept_atoms.iter_mut().enumerate() {
        atom.degree = (adjacency_start[i + 1] - adjacency_start[i]) as u8;
    }
    let mut scaffold = Molecule {
        atoms: kept_atoms,
        bonds,
        adjacency_start,
        adjacency,
        no_implicit: kept_no_implicit,
    };
    crate::sanitize::update_property_cache(&mut scaffold)?;
    Ok(scaffold)
}

/// The canonical SMILES of `mol`'s Murcko scaffold ("" for acyclic molecules): equal for two
/// molecules exactly when RDKit's `MurckoScaffoldSmiles(includeChirality=False)` is.
pub fn scaffold_smiles(mol: &Molecule) -> Result<String, SmilesError> {
    Ok(canonical_smiles(&murcko_scaffold(mol)?))
}

/// A canonical SMILES of `mol` without isotopes or stereo: the same string for any atom order
/// of the same graph (elements, charges, aromaticity, hydrogen counts, radicals, bond types).
/// Components are written in a canonical order, joined by `.`.
pub fn canonical_smiles(mol: &Molecule) -> String {
    let mut parts: Vec<(Certificate, String)> = components(mol)
        .into_iter()
        .map(|atoms| {
            let (certificate, order) = canonical_order(mol, &atoms);
            let smiles = write_component(mol, &order, Isotopes::Left);
            (certificate, smiles)
        })
        .collect();
    parts.sort();
    parts
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(".")
}

/// What the canonical SMILES shows of an atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AtomLabel {
    atomic_num: u8,
    aromatic: bool,
    formal_charge: i8,
    total_hs: u32,
    radicals: u8,
}

fn atom_label(atom: &Atom) -> AtomLabel {
    AtomLabel {
        atomic_num: atom.atomic_num,
        aromatic: atom.aromatic,
        formal_charge: atom.formal_charge,
        total_hs: atom.total_num_hs(),
        radicals: atom.radical_electrons,
    }
}

/// A bond's code in the canonical form; a dative bond's direction is part of it.
fn bond_code(bond: &Bond, from: usize) -> u32 {
    let code = bond.bond_type.rdkit_code();
    if bond.bond_type == BondType::Dative && bond.begin as usize != from {
        code + 100
    } else {
        code
    }
}

/// The graph of one component relabelled by a discrete colouring: atom labels in rank order,
/// then the sorted (rank, rank, bond code) edges. The smallest over all search leaves is the
/// canonical form.
type Certificate = (Vec<AtomLabel>, Vec<(u32, u32, u32)>);

/// Leaves of the canonical-labelling search beyond which the best one found is kept; only
/// scaffolds with huge symmetry groups get near it (benzene needs 12, C60 a few hundred).
const MAX_LEAVES: usize = 200_000;

/// Canonical labelling of one component by colour refinement with individualisation (the
/// search nauty and RDKit's canonicaliser prune; exhaustive here, molecules are small): the
/// certificate and the component's atoms in canonical order.
fn canonical_order(mol: &Molecule, atoms: &[usize]) -> (Certificate, Vec<usize>) {
    let local: std::collections::HashMap<usize, usize> =
        atoms.iter().enumerate().map(|(l, &a)| (a, l)).collect();
    let labels: Vec<AtomLabel> = atoms.iter().map(|&a| atom_label(&mol.atoms[a])).collect();
    let neighbors: Vec<Vec<(usize, u32)>> = atoms
        .iter()
        .map(|&a| {
            mol.neighbors(a)
                .iter()
                .map(|&(nb, b)| (local[&(nb as usize)], bond_code(&mol.bonds[b as usize], a)))
                .collect()
        })
        .collect();
    let graph = Graph { labels, neighbors };
    let mut sorted_labels = graph.labels.clone();
    sorted_labels.sort_unstable();
    sorted_labels.dedup();
    let colors: Vec<u32> = graph
        .labels
        .iter()
        .map(|l| sorted_labels.binary_search(l).unwrap_or(0) as u32)
        .collect();
    let colors = graph.refine(colors);
    let mut search = Search {
        graph: &graph,
        best: None,
        leaves: 0,
    };
    search.visit(colors);
    let (certificate, colors) = search.best.unwrap_or_default();
    let mut order: Vec<usize> = (0..atoms.len()).collect();
    order.sort_by_key(|&l| colors.get(l).copied().unwrap_or(0));
    (certificate, order.into_iter().map(|l| atoms[l]).collect())
}

struct Graph {
    labels: Vec<AtomLabel>,
    neighbors: Vec<Vec<(usize, u32)>>,
}

impl Graph {
    /// Refines a colouring until stable: an atom's new colour is the rank of its colour with
    /// the sorted (bond, neighbour colour) pairs. Colours are ranks, so they only depend on the
    /// graph, never on the atom order.
    fn refine(&self, mut colors: Vec<u32>) -> Vec<u32> {
        let mut classes = count_distinct(&colors);
        loop {
            let keys: Vec<(u32, Vec<(u32, u32)>)> = (0..colors.len())
                .map(|a| {
                    let mut env: Vec<(u32, u32)> = self.neighbors[a]
                        .iter()
                        .map(|&(nb, code)| (code, colors[nb]))
                        .collect();
                    env.sort_unstable();
                    (colors[a], env)
                })
                .collect();
            let mut sorted: Vec<&(u32, Vec<(u32, u32)>)> = keys.iter().collect();
            sorted.sort_unstable();
            sorted.dedup();
            colors = keys
                .iter()
                .map(|k| sorted.binary_search(&k).unwrap_or(0) as u32)
                .collect();
            let now = sorted.len();
            if now == classes {
                return colors;
            }
            classes = now;
        }
    }

    fn certificate(&self, colors: &[u32]) -> Certificate {
        let mut by_rank: Vec<usize> = (0..colors.len()).collect();
        by_rank.sort_by_key(|&a| colors[a]);
        let labels = by_rank.iter().map(|&a| self.labels[a]).collect();
        let mut edges = Vec::new();
        for (a, nbs) in self.neighbors.iter().enumerate() {
            for &(b, code) in nbs {
                let (ra, rb) = (colors[a], colors[b]);
                // each bond seen from both ends; kept from its lower-ranked end (a dative
                // bond's code says its direction from there)
                if ra < rb {
                    edges.push((ra, rb, code));
                }
            }
        }
        edges.sort_unstable();
        (labels, edges)
    }
}

fn count_distinct(colors: &[u32]) -> usize {
    let mut c = colors.to_vec();
    c.sort_unstable();
    c.dedup();
    c.len()
}

struct Search<'g> {
    graph: &'g Graph,
    best: Option<(Certificate, Vec<u32>)>,
    leaves: usize,
}

impl Search<'_> {
    fn visit(&mut self, colors: Vec<u32>) {
        if self.leaves >= MAX_LEAVES {
            return;
        }
        // the first non-singleton cell (lowest colour) is split, one member at a time
        let mut counts = vec![0usize; colors.len()];
        for &c in &colors {
            counts[c as usize] += 1;
        }
        let Some(cell) = counts.iter().position(|&k| k > 1) else {
            self.leaves += 1;
            let certificate = self.graph.certificate(&colors);
            if self.best.as_ref().is_none_or(|(b, _)| certificate < *b) {
                self.best = Some((certificate, colors));
            }
            return;
        };
        let members: Vec<usize> = (0..colors.len())
            .filter(|&a| colors[a] as usize == cell)
            .collect();
        for &v in &members {
            // v first in its cell; the rest of the cell follows it
            let individualised: Vec<u32> = colors
                .iter()
                .enumerate()
                .map(|(a, &c)| {
                    if c as usize > cell || (c as usize == cell && a != v) {
                        c + 1
                    } else {
                        c
                    }
                })
                .collect();
            self.visit(self.graph.refine(individualised));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_smiles;

    fn scaffold(s: &str) -> String {
        scaffold_smiles(&parse_smiles(s).expect("parses")).expect("scaffold")
    }

    #[test]
    fn same_scaffold_whatever_the_atom_order() {
        let a = scaffold("Cc1cc(Oc2nccc(CCC)c2)ccc1");
        let b = scaffold("c1ccccc1Oc1cc(CCCC)ccn1");
        assert_eq!(a, b);
        assert_eq!(scaffold("CCCCO"), "");
        assert_eq!(scaffold("Cc1ccccc1"), scaffold("c1ccccc1CC(=O)O"));
        assert_ne!(scaffold("c1ccccc1"), scaffold("c1ccncc1"));
    }

    #[test]
    fn scaffold_smiles_reads_back_as_the_same_scaffold() {
        for s in [
            "Cc1cc(Oc2nccc(CCC)c2)ccc1",
            "CNc1nc2sc(SC)nc2c2c1ncn2C",
            "O=S(=O)(CCO)c1no[n+]([O-])c1-c1ccccc1",
            "Cc1cccc(NC(=S)Nc2ccc3c(c2)C(=O)OC3)c1",
            "C1CC2CCC1C2",
            "c1ccc2c(c1)[nH]c1ccccc12",
        ] {
            let first = scaffold(s);
            let again = scaffold(&first);
            assert_eq!(first, again, "{s}");
        }
    }
}
