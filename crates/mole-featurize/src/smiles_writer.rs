//! Writing a molecule as SMILES: the text our SMILES reader turns back into the same graph
//! (elements, isotopes, charges, aromatic flags, hydrogen counts, radicals, bond types) with the
//! same atom order, for molecules read from other formats (an SD file's records get a SMILES
//! column this way). Stereo is not written: the featurizer ignores it.

use crate::elements;
use crate::molecule::{Bond, BondType, Molecule};

/// Whether isotope labels are written (the scaffold's canonical SMILES leaves them out, as
/// RDKit's `includeChirality=False` scaffold does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isotopes {
    Written,
    Left,
}

/// `mol` as SMILES, atoms in their index order: each connected component is written
/// depth-first from its lowest-numbered atom, neighbours taken in index order, components
/// joined by `.`. For a molecule whose atom order is a depth-first order (every molecule read
/// from a SMILES, and so every SD file written from one), [`crate::parse_smiles`] of the result
/// numbers the atoms as `mol` does, so the two featurise identically.
pub fn to_smiles(mol: &Molecule) -> String {
    components(mol)
        .iter()
        .map(|atoms| write_component(mol, atoms, Isotopes::Written))
        .collect::<Vec<_>>()
        .join(".")
}

/// Atom indices of each connected component, in atom order.
pub(crate) fn components(mol: &Molecule) -> Vec<Vec<usize>> {
    let n = mol.num_atoms();
    let mut seen = vec![false; n];
    let mut out = Vec::new();
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut members = vec![start];
        let mut next = 0;
        while next < members.len() {
            let a = members[next];
            next += 1;
            for &(nb, _) in mol.neighbors(a) {
                if !seen[nb as usize] {
                    seen[nb as usize] = true;
                    members.push(nb as usize);
                }
            }
        }
        members.sort_unstable();
        out.push(members);
    }
    out
}

/// Writes one component as SMILES: a depth-first walk from the first atom of `order`, taking
/// neighbours in canonical order; ring closures numbered from 1, reusing freed digits. Both
/// walks keep their own stacks (a scaffold may have thousands of atoms).
pub(crate) fn write_component(mol: &Molecule, order: &[usize], isotopes: Isotopes) -> String {
    let Some(&root) = order.first() else {
        return String::new();
    };
    let n = mol.num_atoms();
    let mut rank = vec![usize::MAX; n];
    for (r, &a) in order.iter().enumerate() {
        rank[a] = r;
    }
    // neighbours in canonical order, for this component's atoms only
    let sorted_neighbors: Vec<Vec<(usize, usize)>> = (0..n)
        .map(|a| {
            if rank[a] == usize::MAX {
                return Vec::new();
            }
            let mut nbs: Vec<(usize, usize)> = mol
                .neighbors(a)
                .iter()
                .map(|&(nb, b)| (nb as usize, b as usize))
                .collect();
            nbs.sort_by_key(|&(nb, _)| rank[nb]);
            nbs
        })
        .collect();

    // first walk: tree children, and ring closures (opened at the ancestor, closed at the
    // descendant that reaches it again)
    let mut visited = vec![false; n];
    let mut recorded = vec![false; mol.num_bonds()];
    let mut children: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut openings: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut closings: Vec<Vec<usize>> = vec![Vec::new(); n];
    visited[root] = true;
    let mut stack: Vec<(usize, usize, usize)> = vec![(root, usize::MAX, 0)];
    while let Some(top) = stack.last_mut() {
        let (a, via, next) = *top;
        let Some(&(nb, b)) = sorted_neighbors[a].get(next) else {
            stack.pop();
            continue;
        };
        top.2 += 1;
        if b == via || recorded[b] {
            continue;
        }
        recorded[b] = true;
        if visited[nb] {
            openings[nb].push(b);
            closings[a].push(b);
        } else {
            visited[nb] = true;
            children[a].push((nb, b));
            stack.push((nb, b, 0));
        }
    }

    // second walk: the text
    enum Step {
        Atom(usize, usize),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut digits: Vec<bool> = Vec::new();
    let mut digit_of = vec![0usize; mol.num_bonds()];
    let mut steps = vec![Step::Atom(root, usize::MAX)];
    while let Some(step) = steps.pop() {
        let (atom, via) = match step {
            Step::Text(t) => {
                out.push_str(t);
                continue;
            }
            Step::Atom(atom, via) => (atom, via),
        };
        if via != usize::MAX {
            out.push_str(bond_symbol(mol, via, mol.bonds[via].other(atom)));
        }
        out.push_str(&atom_symbol(mol, atom, isotopes));
        // ring closures ending here, then those starting here; a digit closed here is free
        // again only after this atom (`C11` is valid SMILES but hard to read)
        for &b in &closings[atom] {
            out.push_str(bond_symbol(mol, b, atom));
            push_digit(&mut out, digit_of[b]);
        }
        for &b in &openings[atom] {
            let d = match digits.iter().position(|used| !used) {
                Some(free) => {
                    digits[free] = true;
                    free + 1
                }
                None => {
                    digits.push(true);
                    digits.len()
                }
            };
            digit_of[b] = d;
            push_digit(&mut out, d);
        }
        for &b in &closings[atom] {
            digits[digit_of[b] - 1] = false;
        }
        // children: all but the last in parentheses; pushed in reverse for the stack
        let kids = &children[atom];
        for (k, &(child, bond)) in kids.iter().enumerate().rev() {
            if k + 1 < kids.len() {
                steps.push(Step::Text(")"));
                steps.push(Step::Atom(child, bond));
                steps.push(Step::Text("("));
            } else {
                steps.push(Step::Atom(child, bond));
            }
        }
    }
    out
}

fn push_digit(out: &mut String, d: usize) {
    if d < 10 {
        out.push_str(&d.to_string());
    } else {
        out.push_str(&format!("%{d}"));
    }
}

/// The bond symbol written between `from` and the other end of `bond`.
fn bond_symbol(mol: &Molecule, bond: usize, from: usize) -> &'static str {
    let b = &mol.bonds[bond];
    let both_aromatic = mol.atoms[b.begin as usize].aromatic && mol.atoms[b.end as usize].aromatic;
    let plain_h =
        |a: u32| mol.atoms[a as usize].atomic_num == 1 && mol.atoms[a as usize].isotope == 0;
    let to_hydrogen = plain_h(b.begin) || plain_h(b.end);
    match b.bond_type {
        // a plain hydrogen still an atom after parsing was kept because its bond was written
        // with a stereo slash next to a double bond (or for reasons a slash does not change):
        // without one the reader would fold it into its neighbour's H count
        BondType::Single if to_hydrogen => "/",
        BondType::Single if both_aromatic => "-",
        BondType::Single => "",
        BondType::Aromatic if both_aromatic => "",
        BondType::Aromatic => ":",
        BondType::Double => "=",
        BondType::Triple => "#",
        BondType::Quadruple => "$",
        BondType::Dative if b.begin as usize == from => "->",
        BondType::Dative => "<-",
        BondType::Unspecified => "~",
    }
}

/// An atom in SMILES: the bare organic-subset symbol where a SMILES reader would infer its
/// hydrogens, a bracket atom otherwise.
fn atom_symbol(mol: &Molecule, a: usize, isotopes: Isotopes) -> String {
    let atom = &mol.atoms[a];
    let z = atom.atomic_num;
    let symbol = elements::symbol(z);
    let aromatic_symbol = atom.aromatic && matches!(z, 5 | 6 | 7 | 8 | 15 | 16 | 33 | 34 | 52);
    let written = if aromatic_symbol {
        symbol.to_ascii_lowercase()
    } else {
        symbol.to_string()
    };
    let hs = atom.total_num_hs();
    let isotope = match isotopes {
        Isotopes::Written if atom.isotope != 0 => atom.isotope.to_string(),
        _ => String::new(),
    };
    if isotope.is_empty()
        && atom.formal_charge == 0
        && atom.radical_electrons == 0
        && implied_hs(mol, a) == Some(hs)
    {
        return written;
    }
    let mut s = format!("[{isotope}{written}");
    match hs {
        0 => {}
        1 => s.push('H'),
        k => s.push_str(&format!("H{k}")),
    }
    match atom.formal_charge {
        0 => {}
        1 => s.push('+'),
        -1 => s.push('-'),
        c if c > 0 => s.push_str(&format!("+{c}")),
        c => s.push_str(&format!("-{}", -i32::from(c))),
    }
    s.push(']');
    s
}

/// Hydrogens a SMILES reader gives the bare symbol of atom `a` (None where it must be written
/// in brackets: outside the organic subset, or aromatic in a way this writer does not infer).
fn implied_hs(mol: &Molecule, a: usize) -> Option<u32> {
    let atom = &mol.atoms[a];
    let z = atom.atomic_num;
    if !matches!(z, 5 | 6 | 7 | 8 | 9 | 15 | 16 | 17 | 35 | 53) {
        return None;
    }
    let bonds: Vec<&Bond> = mol
        .neighbors(a)
        .iter()
        .map(|&(_, b)| &mol.bonds[b as usize])
        .collect();
    let aromatic_bonds = bonds
        .iter()
        .filter(|b| b.bond_type == BondType::Aromatic)
        .count();
    if atom.aromatic {
        // a bare `c` with two ring bonds carries one H, other bare aromatic atoms none
        if !matches!(z, 5 | 6 | 7 | 8 | 15 | 16) || aromatic_bonds < 2 {
            return None;
        }
        return Some(u32::from(z == 6 && bonds.len() == 2));
    }
    // the valence model's explicit valence: aromatic bonds count 1.5, a dative bond only at
    // its acceptor, `~` nothing; rounded as RDKit rounds it
    let accum: f64 = bonds.iter().map(|b| b.valence_contrib(a)).sum();
    let valence = (accum + 0.1).round() as u32;
    elements::valences(z)
        .iter()
        .filter(|&&v| v >= 0)
        .map(|&v| v as u32)
        .find(|&v| v >= valence)
        .map(|v| v - valence)
}
