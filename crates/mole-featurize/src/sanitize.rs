//! RDKit-compatible sanitisation of a parsed SMILES graph, reproducing what
//! `Chem.MolFromSmiles` (sanitize=True) followed by hydrogen removal produces:
//!
//! 1. plain `[H]` atoms bonded to one heavy atom become H counts of that atom;
//! 2. ring membership (an atom or bond is in a ring when it lies on any cycle);
//! 3. functional-group clean-up (nitro, azide, per-halogen acids, P ylides);
//! 4. explicit/implicit valence with RDKit's rules, including its special handling of atoms
//!    written aromatic (implicit H counts are decided before kekulisation);
//! 5. kekulisation: a perfect matching of double bonds over the aromatic atoms that need one;
//! 6. radical assignment for bracket atoms;
//! 7. aromaticity perception with RDKit's default model on the Kekulé graph
//!    (see [`crate::aromaticity`]).

use crate::elements;
use crate::molecule::{Atom, Bond, BondType, Molecule};
use crate::smiles::{RawBondOrder, RawMolecule, SmilesError};

/// Working state shared by the sanitisation steps.
pub(crate) struct Work {
    pub atoms: Vec<Atom>,
    pub bonds: Vec<Bond>,
    /// Bracket atoms (RDKit `noImplicit`): no implicit hydrogens are ever added.
    pub no_implicit: Vec<bool>,
    pub bond_in_ring: Vec<bool>,
    pub adjacency_start: Vec<u32>,
    pub adjacency: Vec<(u32, u32)>,
}

impl Work {
    pub fn neighbors(&self, atom: usize) -> &[(u32, u32)] {
        let start = self.adjacency_start[atom] as usize;
        let end = self.adjacency_start[atom + 1] as usize;
        &self.adjacency[start..end]
    }
}

fn bond_type_of(order: RawBondOrder) -> BondType {
    match order {
        RawBondOrder::Single => BondType::Single,
        RawBondOrder::Double => BondType::Double,
        RawBondOrder::Triple => BondType::Triple,
        RawBondOrder::Quadruple => BondType::Quadruple,
        RawBondOrder::Aromatic => BondType::Aromatic,
        RawBondOrder::Dative => BondType::Dative,
        RawBondOrder::Unspecified => BondType::Unspecified,
    }
}

/// Sum of the valence contributions of `atom`'s bonds (aromatic 1.5, see
/// [`Bond::valence_contrib`]).
pub(crate) fn bond_valence_sum(work: &Work, atom: usize) -> f64 {
    work.neighbors(atom)
        .iter()
        .map(|&(_, b)| work.bonds[b as usize].valence_contrib(atom))
        .sum()
}

/// Formal charge as it shifts the valence: negated left of carbon, and a positive charge on
/// carbon counts like a negative one (RDKit's convention).
pub(crate) fn valence_charge(atomic_num: u8, charge: i32) -> i32 {
    let mut chr = charge;
    if elements::is_early_atom(atomic_num) {
        chr = -chr;
    }
    if atomic_num == 6 && chr > 0 {
        chr = -chr;
    }
    chr
}

pub(crate) fn sanitize(raw: RawMolecule) -> Result<Molecule, SmilesError> {
    let mut work = merge_hydrogens(raw)?;
    find_ring_bonds(&mut work);
    clean_up(&mut work);
    let mut explicit_valence = assign_valences(&mut work, Check::First)?;
    // RDKit's symmetrised SSSR, which both kekulisation and aromaticity walk in its order
    // (`None` where RDKit itself would fall back to approximate rings)
    let rings = if work.atoms.iter().any(|a| a.in_ring) {
        crate::sssr::symmetrized_sssr(&work).map(|rings| {
            rings
                .iter()
                .map(|r| crate::rings::Ring::of_path(&work, r))
                .collect::<Vec<_>>()
        })
    } else {
        Some(Vec::new())
    };
    let written_aromatic: Vec<bool> = work.atoms.iter().map(|a| a.aromatic).collect();
    crate::kekulize::kekulize(&mut work, &explicit_valence, rings.as_deref())?;
    free_bracket_pyrrole_hydrogens(&mut work, &written_aromatic, &mut explicit_valence)?;
    assign_radicals(&mut work);
    crate::aromaticity::perceive(&mut work, &explicit_valence, rings.as_deref());
    // RDKit's `adjustHs`, the last step of sanitising: valences recomputed from the final bonds
    // (non-strict); hydrogen counts rise where kekulisation and aromaticity lowered an atom's
    // bond orders (an `s` left non-aromatic, the C of `c1ccccc1:C`).
    assign_valences(&mut work, Check::Final)?;
    Ok(Molecule {
        atoms: work.atoms,
        bonds: work.bonds,
        adjacency_start: work.adjacency_start,
        adjacency: work.adjacency,
        no_implicit: work.no_implicit,
    })
}

/// RDKit's `updatePropertyCache(strict=true)` on an edited molecule (atoms or bonds removed,
/// hydrogen counts or `noImplicit` changed): implicit hydrogens recounted from the current
/// bonds with the valence model; an over-valent atom is an error.
pub(crate) fn update_property_cache(mol: &mut Molecule) -> Result<(), SmilesError> {
    let mut work = Work {
        atoms: std::mem::take(&mut mol.atoms),
        bonds: std::mem::take(&mut mol.bonds),
        no_implicit: std::mem::take(&mut mol.no_implicit),
        bond_in_ring: Vec::new(),
        adjacency_start: std::mem::take(&mut mol.adjacency_start),
        adjacency: std::mem::take(&mut mol.adjacency),
    };
    let result = (0..work.atoms.len()).try_for_each(|i| {
        let (_, implicit) = atom_valence(&work, i)?;
        work.atoms[i].implicit_hs = implicit.unwrap_or(0);
        Ok(())
    });
    mol.atoms = work.atoms;
    mol.bonds = work.bonds;
    mol.no_implicit = work.no_implicit;
    mol.adjacency_start = work.adjacency_start;
    mol.adjacency = work.adjacency;
    result
}

/// Folds hydrogen atoms into the H count of their neighbour as RDKit's `removeHs` (default
/// parameters, called by `MolFromSmiles` before sanitisation) does; builds the working graph.
/// An `[H]` is kept as an atom when it has no bond or more than one, carries an isotope, is
/// bonded only to hydrogens or to a dummy atom, or defines double-bond stereo (`[H]/C=C/F`).
fn merge_hydrogens(raw: RawMolecule) -> Result<Work, SmilesError> {
    let n = raw.atoms.len();
    let mut degree = vec![0u32; n];
    for b in &raw.bonds {
        degree[b.begin] += 1;
        degree[b.end] += 1;
    }
    // atoms with a double bond (for the stereo rule)
    let mut has_double = vec![false; n];
    for b in &raw.bonds {
        if b.order == RawBondOrder::Double {
            has_double[b.begin] = true;
            has_double[b.end] = true;
        }
    }
    let mut removable = vec![false; n];
    let mut added_hs = vec![0u32; n];
    for b in &raw.bonds {
        for (h, heavy) in [(b.begin, b.end), (b.end, b.begin)] {
            let a = &raw.atoms[h];
            let other = &raw.atoms[heavy];
            let defines_stereo = b.directional && degree[heavy] == 2 && has_double[heavy];
            if a.atomic_num == 1
                && a.isotope == 0
                && degree[h] == 1
                && other.atomic_num > 1
                && !defines_stereo
            {
                removable[h] = true;
                added_hs[heavy] += 1;
            }
        }
    }
    let mut new_index = vec![u32::MAX; n];
    let mut atoms = Vec::with_capacity(n);
    let mut no_implicit = Vec::with_capacity(n);
    for (i, a) in raw.atoms.iter().enumerate() {
        if removable[i] {
            continue;
        }
        new_index[i] = atoms.len() as u32;
        let explicit_hs = u32::from(a.explicit_hs) + added_hs[i];
        let explicit_hs = u8::try_from(explicit_hs).map_err(|_| SmilesError::Valence {
            atom: atoms.len(),
            pos: a.pos,
            symbol: elements::symbol(a.atomic_num),
            valence: explicit_hs as i32,
        })?;
        atoms.push(Atom {
            atomic_num: a.atomic_num,
            isotope: a.isotope,
            formal_charge: a.charge,
            explicit_hs,
            implicit_hs: 0,
            radical_electrons: a.radicals,
            aromatic: a.aromatic,
            in_ring: false,
            degree: 0,
            source_pos: a.pos,
        });
        no_implicit.push(a.bracket);
    }
    let mut bonds = Vec::with_capacity(raw.bonds.len());
    for b in &raw.bonds {
        if removable[b.begin] || removable[b.end] {
            continue;
        }
        bonds.push(Bond {
            begin: new_index[b.begin],
            end: new_index[b.end],
            bond_type: bond_type_of(b.order),
        });
    }
    let (adjacency_start, adjacency) = Molecule::build_adjacency(atoms.len(), &bonds);
    for (i, atom) in atoms.iter_mut().enumerate() {
        let d = adjacency_start[i + 1] - adjacency_start[i];
        atom.degree = u8::try_from(d).map_err(|_| SmilesError::Valence {
            atom: i,
            pos: atom.source_pos,
            symbol: elements::symbol(atom.atomic_num),
            valence: d as i32,
        })?;
    }
    let nb = bonds.len();
    Ok(Work {
        atoms,
        bonds,
        no_implicit,
        bond_in_ring: vec![false; nb],
        adjacency_start,
        adjacency,
    })
}

/// Marks ring bonds (bonds that are not bridges) and ring atoms, with an iterative
/// Tarjan low-link search (no recursion, so long chains cannot overflow the stack).
fn find_ring_bonds(work: &mut Work) {
    let n = work.atoms.len();
    let mut order = vec![u32::MAX; n];
    let mut low = vec![0u32; n];
    let mut counter = 0u32;
    // stack of (atom, bond used to enter it, next neighbour slot)
    let mut stack: Vec<(usize, u32, usize)> = Vec::new();
    for root in 0..n {
        if order[root] != u32::MAX {
            continue;
        }
        order[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push((root, u32::MAX, work.adjacency_start[root] as usize));
        while let Some(top) = stack.last_mut() {
            let (v, via, slot) = *top;
            if slot < work.adjacency_start[v + 1] as usize {
                top.2 += 1;
                let (w, bond) = work.adjacency[slot];
                let w = w as usize;
                if bond == via {
                    continue;
                }
                if order[w] == u32::MAX {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push((w, bond, work.adjacency_start[w] as usize));
                } else {
                    // a non-tree edge of an undirected DFS closes a cycle
                    low[v] = low[v].min(order[w]);
                    work.bond_in_ring[bond as usize] = true;
                }
            } else {
                stack.pop();
                if let Some(&(parent, _, _)) = stack.last() {
                    low[parent] = low[parent].min(low[v]);
                    // the tree edge (parent, v) is a bridge iff nothing below v reaches above it
                    if low[v] <= order[parent] {
                        work.bond_in_ring[via as usize] = true;
                    }
                }
            }
        }
    }
    for (bi, b) in work.bonds.iter().enumerate() {
        if work.bond_in_ring[bi] {
            work.atoms[b.begin as usize].in_ring = true;
            work.atoms[b.end as usize].in_ring = true;
        }
    }
}

/// Explicit valence with every bond at its nominal order (aromatic 1.5) and no aromatic
/// adjustment, rounded like RDKit.
fn plain_explicit_valence(work: &Work, atom: usize) -> i32 {
    let accum = f64::from(work.atoms[atom].explicit_hs) + bond_valence_sum(work, atom);
    (accum + 0.1).round() as i32
}

/// RDKit's `cleanUp`: hypervalent nitro/azide N, P ylides and halogen oxoacids are rewritten
/// in charge-separated form.
fn clean_up(work: &mut Work) {
    for i in 0..work.atoms.len() {
        if work.atoms[i].formal_charge != 0 {
            continue;
        }
        match work.atoms[i].atomic_num {
            7 => {
                if plain_explicit_valence(work, i) != 5 {
                    continue;
                }
                let nbrs: Vec<(u32, u32)> = work.neighbors(i).to_vec();
                for &(w, b) in &nbrs {
                    let (w, b) = (w as usize, b as usize);
                    let other = &work.atoms[w];
                    let bt = work.bonds[b].bond_type;
                    if other.atomic_num == 8 && other.formal_charge == 0 && bt == BondType::Double {
                        work.bonds[b].bond_type = BondType::Single;
                        work.atoms[i].formal_charge = 1;
                        work.atoms[w].formal_charge = -1;
                        break;
                    }
                    if other.atomic_num == 7
                        && other.formal_charge == 0
                        && other.degree == 1
                        && bt == BondType::Triple
                    {
                        work.bonds[b].bond_type = BondType::Double;
                        work.atoms[i].formal_charge = 1;
                        work.atoms[w].formal_charge = -1;
                        break;
                    }
                }
            }
            15 => {
                if plain_explicit_valence(work, i) != 5 || work.atoms[i].degree != 3 {
                    continue;
                }
                let mut double_to_o = None;
                let mut double_to_c_or_n = false;
                for &(w, b) in work.neighbors(i) {
                    let other = &work.atoms[w as usize];
                    let bt = work.bonds[b as usize].bond_type;
                    if other.atomic_num == 8 && other.formal_charge == 0 && bt == BondType::Double {
                        double_to_o = Some((w as usize, b as usize));
                    } else if matches!(other.atomic_num, 6 | 7)
                        && other.degree >= 2
                        && bt == BondType::Double
                    {
                        double_to_c_or_n = true;
                    }
                }
                if let (true, Some((o, b))) = (double_to_c_or_n, double_to_o) {
                    work.bonds[b].bond_type = BondType::Single;
                    work.atoms[o].formal_charge = -1;
                    work.atoms[i].formal_charge = 1;
                }
            }
            17 | 35 | 53 => {
                let ev = plain_explicit_valence(work, i);
                if !matches!(ev, 3 | 5 | 7) {
                    continue;
                }
                let all_oxygen = work
                    .neighbors(i)
                    .iter()
                    .all(|&(w, _)| work.atoms[w as usize].atomic_num == 8);
                if !all_oxygen {
                    continue;
                }
                let nbrs: Vec<(u32, u32)> = work.neighbors(i).to_vec();
                let mut charge = 0i8;
                for (w, b) in nbrs {
                    if work.bonds[b as usize].bond_type == BondType::Double {
                        work.bonds[b as usize].bond_type = BondType::Single;
                        work.atoms[w as usize].formal_charge = -1;
                        charge += 1;
                    }
                }
                work.atoms[i].formal_charge = charge;
            }
            _ => {}
        }
    }
}

/// RDKit's `isAromaticAtom`: flagged aromatic or carrying an aromatic bond.
fn is_aromatic_atom(work: &Work, atom: usize) -> bool {
    work.atoms[atom].aromatic
        || work
            .neighbors(atom)
            .iter()
            .any(|&(_, b)| work.bonds[b as usize].bond_type == BondType::Aromatic)
}

fn valence_error(work: &Work, atom: usize, valence: i32) -> SmilesError {
    let a = &work.atoms[atom];
    SmilesError::Valence {
        atom,
        pos: a.source_pos,
        symbol: elements::symbol(a.atomic_num),
        valence,
    }
}

/// Which pass of [`assign_valences`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Before kekulisation: valences and implicit hydrogens.
    First,
    /// After aromaticity perception, on the final bonds: over-valent atoms rejected again (an
    /// atom written aromatic that ended non-aromatic, as the `n` of `Cn1=cccc1`), implicit
    /// hydrogens recounted as RDKit's `adjustHs` does.
    Final,
}

/// Computes explicit valences and implicit hydrogen counts with RDKit's rules (aromatic bonds
/// counting 1.5) and rejects over-valent atoms. Returns the explicit valences (RDKit caches
/// those of the first pass; kekulisation and aromaticity read them).
fn assign_valences(work: &mut Work, check: Check) -> Result<Vec<i32>, SmilesError> {
    let n = work.atoms.len();
    let mut explicit = vec![0i32; n];
    for (i, ev) in explicit.iter_mut().enumerate() {
        let (valence, implicit) = atom_valence(work, i)?;
        *ev = valence;
        let Some(implicit) = implicit else { continue };
        if check == Check::Final {
            // RDKit's `adjustHs`: hydrogens the new count drops become explicit (a pyrrole N
            // that ends aromatic keeps its H); a higher count is taken as it is
            let old = work.atoms[i].implicit_hs;
            if implicit < old {
                let atom = &mut work.atoms[i];
                atom.explicit_hs = atom.explicit_hs.saturating_add(old - implicit);
            }
        }
        work.atoms[i].implicit_hs = implicit;
    }
    Ok(explicit)
}

/// RDKit's `calcExplicitValence` / `calcImplicitValence` (strict) for one atom on the current
/// bonds: the explicit valence, and the implicit hydrogen count (`None` for bracket and dummy
/// atoms, which never get implicit hydrogens).
fn atom_valence(work: &Work, i: usize) -> Result<(i32, Option<u8>), SmilesError> {
    let aromatic = is_aromatic_atom(work, i);
    let atom = &work.atoms[i];
    let z = atom.atomic_num;
    let charge = i32::from(atom.formal_charge);
    let mut accum = f64::from(atom.explicit_hs) + bond_valence_sum(work, i);
    let dv = elements::default_valence(z);
    let chr = valence_charge(z, charge);
    let valences = elements::valences(z);
    if aromatic && accum > f64::from(dv + chr) {
        // an aromatic atom above its default valence takes the closest allowed valence
        // below the bond-order sum, when within 1.5 of it (e.g. the N of c1cccn1C)
        let mut pval = dv + chr;
        for &v in valences {
            if v == -1 {
                break;
            }
            let val = v + chr;
            if f64::from(val) > accum {
                break;
            }
            pval = val;
        }
        if accum - f64::from(pval) <= 1.5 {
            accum = f64::from(pval);
        }
    }
    let ev = (accum + 0.1).round() as i32;
    // over-valence check
    let effective = if elements::outer_electrons(z) >= 4 {
        ev - charge
    } else {
        ev + charge
    };
    let max_valence = valences.last().copied().unwrap_or(-1);
    if max_valence > 0 && effective > max_valence {
        return Err(valence_error(work, i, effective));
    }
    if work.no_implicit[i] || z == 0 {
        return Ok((ev, None));
    }
    // radical electrons take valence as bonds do (RDKit's `explicitPlusRadV`; only atoms that
    // lost their bracket status after radicals were assigned have both)
    let ev_rad = ev + i32::from(atom.radical_electrons);
    let implicit = if z == 1 && ev == 0 {
        match charge {
            0 => 1,
            1 | -1 => 0,
            _ => return Err(valence_error(work, i, ev)),
        }
    } else if dv == -1 {
        0
    } else if aromatic {
        if ev_rad <= dv + chr {
            dv + chr - ev_rad
        } else {
            let satisfied = valences
                .iter()
                .take_while(|&&v| v > 0)
                .any(|&v| ev_rad == v + chr);
            if !satisfied {
                return Err(valence_error(work, i, ev));
            }
            0
        }
    } else {
        let fits = valences
            .iter()
            .take_while(|&&v| v >= 0)
            .map(|&v| v + chr)
            .find(|&total| ev_rad <= total);
        match fits {
            Some(total) => total - ev_rad,
            None if max_valence != -1 => return Err(valence_error(work, i, ev_rad)),
            None => 0,
        }
    };
    Ok((ev, Some(u8::try_from(implicit.max(0)).unwrap_or(u8::MAX))))
}

/// RDKit's fix for "disappearing" pyrrole hydrogens (end of `Kekulize`): an `[nH]` or `[pH]`
/// (neutral, one written H) loses its bracket status and gets its hydrogens from the valence
/// model again, on the Kekulé bonds; its cached explicit valence is refreshed. So an `[nH]`
/// written with three heavy neighbours keeps no H instead of being over-valent.
fn free_bracket_pyrrole_hydrogens(
    work: &mut Work,
    written_aromatic: &[bool],
    explicit_valence: &mut [i32],
) -> Result<(), SmilesError> {
    for i in 0..work.atoms.len() {
        let atom = &work.atoms[i];
        if written_aromatic[i]
            && matches!(atom.atomic_num, 7 | 15)
            && atom.formal_charge == 0
            && atom.explicit_hs == 1
        {
            work.atoms[i].explicit_hs = 0;
            work.no_implicit[i] = false;
            let (ev, implicit) = atom_valence(work, i)?;
            explicit_valence[i] = ev;
            work.atoms[i].implicit_hs = implicit.unwrap_or(0);
        }
    }
    Ok(())
}

/// RDKit's `assignRadicals` for bracket atoms (which never get implicit hydrogens).
fn assign_radicals(work: &mut Work) {
    for i in 0..work.atoms.len() {
        let atom = &work.atoms[i];
        if !work.no_implicit[i] || atom.radical_electrons != 0 || atom.atomic_num == 0 {
            continue;
        }
        let z = atom.atomic_num;
        let charge = i32::from(atom.formal_charge);
        let n_outer = elements::outer_electrons(z);
        let valences = elements::valences(z);
        let radicals = if valences == [-1] {
            let n_valence = (n_outer - charge).max(0);
            n_valence % 2
        } else {
            let accum = f64::from(atom.explicit_hs) + bond_valence_sum(work, i);
            let total_valence = (accum + 0.1) as i32;
            let base = if z == 1 || z == 2 { 2 } else { 8 };
            let mut radicals = base - n_outer - total_valence + charge;
            if radicals < 0 {
                radicals = 0;
                if valences.len() > 1 {
                    for &v in valences {
                        if v - total_valence + charge >= 0 {
                            radicals = v - total_valence + charge;
                            break;
                        }
                    }
                }
            }
            let radicals2 = n_outer - total_valence - charge;
            if radicals2 >= 0 {
                radicals = radicals.min(radicals2);
            }
            radicals
        };
        work.atoms[i].radical_electrons = u8::try_from(radicals.clamp(0, 255)).unwrap_or(0);
    }
}

/// The graph ring perception sees (hydrogens folded, ring bonds marked), for tests.
#[cfg(test)]
pub(crate) fn ring_graph(smiles: &str) -> Result<Work, SmilesError> {
    let mut work = merge_hydrogens(crate::smiles::parse_raw(smiles)?)?;
    find_ring_bonds(&mut work);
    Ok(work)
}
