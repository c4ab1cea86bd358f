//! Kekulisation of atoms written aromatic: every aromatic atom that needs a double bond gets
//! exactly one, chosen among its aromatic ring bonds (a perfect matching, found with Edmonds'
//! blossom algorithm so odd rings such as pyrrole's are handled).
//!
//! Which atoms need a double bond follows RDKit's `markDbondCands`: the atom's bond-order sum
//! (aromatic bonds counted 1) plus hydrogens must be one below its (charge-adjusted) valence.
//! Bracket atoms that are two below are candidates too. Dummy atoms in aromatic rings are
//! optional: matched when they can be (RDKit tries them as candidates first), else left single.
//! Only ring systems are kekulised; a `:` bond between chain atoms stays aromatic.

use crate::elements;
use crate::molecule::BondType;
use crate::rings::Ring;
use crate::sanitize::{valence_charge, Work};
use crate::smiles::SmilesError;

const NONE: usize = usize::MAX;

/// `rings`: RDKit's symmetrised SSSR (atom paths and their bonds, in its order), `None` where
/// it is not reproduced.
pub(crate) fn kekulize(
    work: &mut Work,
    explicit_valence: &[i32],
    rings: Option<&[Ring]>,
) -> Result<(), SmilesError> {
    let any_aromatic = work.atoms.iter().any(|a| a.aromatic)
        || work.bonds.iter().any(|b| b.bond_type == BondType::Aromatic);
    if !any_aromatic {
        return Ok(());
    }
    // aromatic atoms must be in rings
    for (i, a) in work.atoms.iter().enumerate() {
        if a.aromatic && !a.in_ring {
            return Err(SmilesError::NonRingAromatic {
                atom: i,
                pos: a.source_pos,
            });
        }
    }

    // RDKit walks each ring system from the first atom of its first ring (rings in its SSSR
    // order); where its ring finder gives up, a maximum matching stands in.
    match rings {
        Some(rings) => kekulize_like_rdkit(work, explicit_valence, rings)?,
        None => kekulize_by_matching(work, explicit_valence)?,
    }
    for a in work.atoms.iter_mut() {
        a.aromatic = false;
    }
    Ok(())
}

/// Kekulisation as a maximum matching over the candidate atoms (any ring order): used where
/// RDKit's ring finder is not reproduced.
fn kekulize_by_matching(work: &mut Work, explicit_valence: &[i32]) -> Result<(), SmilesError> {
    let n = work.atoms.len();
    // candidates for a double bond
    let mut is_aromatic_atom = vec![false; n];
    for (i, a) in work.atoms.iter().enumerate() {
        is_aromatic_atom[i] = a.aromatic;
    }
    for b in &work.bonds {
        if b.bond_type == BondType::Aromatic {
            is_aromatic_atom[b.begin as usize] = true;
            is_aromatic_atom[b.end as usize] = true;
        }
    }
    let mut candidate = vec![false; n];
    let mut optional = vec![false; n];
    for i in 0..n {
        // RDKit kekulises ring systems only: `:` bonds between chain atoms stay aromatic
        if !work.atoms[i].in_ring {
            continue;
        }
        let atom = &work.atoms[i];
        let z = atom.atomic_num;
        if z == 0 {
            // a dummy in an aromatic ring may take a double bond but need not (RDKit's
            // "questionable" atoms): one when fewer of its ring neighbours are plain
            // non-aromatic atoms than it has rings
            let ring_bonds = work
                .neighbors(i)
                .iter()
                .filter(|&&(_, b)| work.bond_in_ring[b as usize])
                .count();
            let plain_neighbors = work
                .neighbors(i)
                .iter()
                .filter(|&&(w, b)| {
                    let other = &work.atoms[w as usize];
                    work.bond_in_ring[b as usize] && other.atomic_num != 0 && !other.aromatic
                })
                .count();
            let rings = ring_bonds.saturating_sub(1);
            if plain_neighbors < rings {
                candidate[i] = true;
                optional[i] = true;
            }
            continue;
        }
        if !is_aromatic_atom[i] {
            continue;
        }
        // bond orders with aromatic bonds counted 1; bonds that add no valence (the donor end
        // of a dative bond, `~`) do not count as neighbours either
        let mut sbo = 0i32;
        let mut ignored = 0i32;
        for &(_, b) in work.neighbors(i) {
            let bond = &work.bonds[b as usize];
            if bond.bond_type == BondType::Aromatic {
                sbo += 1;
            } else {
                let contrib = bond.valence_contrib(i).round() as i32;
                sbo += contrib;
                ignored += i32::from(contrib == 0);
            }
        }
        sbo += atom.total_num_hs() as i32;
        let chr = valence_charge(z, i32::from(atom.formal_charge));
        let valences = elements::valences(z);
        let mut dv = elements::default_valence(z) + chr;
        let total_valence = explicit_valence[i] + i32::from(atom.implicit_hs);
        let mut vi = 1;
        while total_valence > dv && vi < valences.len() && valences[vi] > 0 {
            dv = valences[vi] + chr;
            vi += 1;
        }
        let radicals = i32::from(atom.radical_electrons);
        let total_degree = i32::from(atom.degree) + i32::from(atom.implicit_hs) - ignored;
        if total_degree + radicals >= dv {
            continue;
        }
        // a bracket atom two short of its valence is a candidate too (RDKit: it would
        // otherwise be a radical), and like any other it must get its double bond
        if dv == sbo + 1 + radicals || (radicals == 0 && work.no_implicit[i] && dv == sbo + 2) {
            candidate[i] = true;
        }
    }

    // matching graph: aromatic ring bonds between candidates
    let mut local = vec![NONE; n];
    let mut atoms_of_local = Vec::new();
    for i in 0..n {
        if candidate[i] {
            local[i] = atoms_of_local.len();
            atoms_of_local.push(i);
        }
    }
    let m = atoms_of_local.len();
    let mut adj: Vec<Vec<(usize, usize)>> = vec![Vec::new(); m];
    for (bi, b) in work.bonds.iter().enumerate() {
        // aromatic ring bonds, and any ring bond of a dummy (RDKit's Issue 3525076 rule)
        let touches_dummy = work.atoms[b.begin as usize].atomic_num == 0
            || work.atoms[b.end as usize].atomic_num == 0;
        if !(b.bond_type == BondType::Aromatic || touches_dummy) || !work.bond_in_ring[bi] {
            continue;
        }
        let (u, v) = (local[b.begin as usize], local[b.end as usize]);
        if u != NONE && v != NONE {
            adj[u].push((v, bi));
            adj[v].push((u, bi));
        }
    }
    let mut matching = Matching::new(&adj);
    let required: Vec<bool> = atoms_of_local.iter().map(|&a| !optional[a]).collect();
    matching.greedy(&required);
    // Required atoms first, among themselves (so no dummy takes a place they need), then
    // through dummies, then the dummies: augmenting never unmatches a vertex.
    let everyone = vec![true; m];
    for (from_optional, through) in [(false, &required), (false, &everyone), (true, &everyone)] {
        for u in 0..m {
            if optional[atoms_of_local[u]] == from_optional && matching.mate[u] == NONE {
                matching.augment_from(u, through);
            }
        }
    }
    for (u, &atom) in atoms_of_local.iter().enumerate() {
        if matching.mate[u] == NONE {
            if optional[atom] {
                // a dummy needs no double bond
            } else {
                return Err(SmilesError::Kekulization {
                    atom,
                    pos: work.atoms[atom].source_pos,
                });
            }
        }
    }
    // aromatic bonds of ring atoms become single, matched ones double
    for b in work.bonds.iter_mut() {
        if b.bond_type == BondType::Aromatic
            && (work.atoms[b.begin as usize].in_ring || work.atoms[b.end as usize].in_ring)
        {
            b.bond_type = BondType::Single;
        }
    }
    for (u, edges) in adj.iter().enumerate() {
        let v = matching.mate[u];
        if v != NONE && u < v {
            if let Some(&(_, bi)) = edges.iter().find(|&&(w, _)| w == v) {
                work.bonds[bi].bond_type = BondType::Double;
            }
        }
    }
    Ok(())
}

/// Maximum-cardinality matching on a general graph (Edmonds' blossom algorithm, O(V^3)).
struct Matching<'a> {
    adj: &'a [Vec<(usize, usize)>],
    mate: Vec<usize>,
    parent: Vec<usize>,
    base: Vec<usize>,
    used: Vec<bool>,
    blossom: Vec<bool>,
    queue: Vec<usize>,
}

impl<'a> Matching<'a> {
    fn new(adj: &'a [Vec<(usize, usize)>]) -> Self {
        let m = adj.len();
        Matching {
            adj,
            mate: vec![NONE; m],
            parent: vec![NONE; m],
            base: (0..m).collect(),
            used: vec![false; m],
            blossom: vec![false; m],
            queue: Vec::new(),
        }
    }

    /// Fast start: match vertices with the fewest free neighbours first.
    /// Fast start among the `eligible` vertices only: a vertex matched here stays matched, so
    /// optional vertices must not take places the required ones may need.
    fn greedy(&mut self, eligible: &[bool]) {
        let m = self.adj.len();
        let mut order: Vec<usize> = (0..m).filter(|&u| eligible[u]).collect();
        order.sort_by_key(|&u| self.adj[u].len());
        for u in order {
            if self.mate[u] != NONE {
                continue;
            }
            if let Some(&(v, _)) = self.adj[u]
                .iter()
                .find(|&&(v, _)| eligible[v] && self.mate[v] == NONE)
            {
                self.mate[u] = v;
                self.mate[v] = u;
            }
        }
    }

    fn lca(&self, mut a: usize, mut b: usize) -> usize {
        let mut seen = vec![false; self.adj.len()];
        loop {
            a = self.base[a];
            seen[a] = true;
            if self.mate[a] == NONE {
                break;
            }
            a = self.parent[self.mate[a]];
            if a == NONE {
                break;
            }
        }
        loop {
            b = self.base[b];
            if seen[b] || self.mate[b] == NONE {
                return b;
            }
            let next = self.parent[self.mate[b]];
            if next == NONE {
                return b;
            }
            b = next;
        }
    }

    fn mark_path(&mut self, mut v: usize, b: usize, mut child: usize) {
        while self.base[v] != b {
            let mv = self.mate[v];
            if mv == NONE {
                break;
            }
            self.blossom[self.base[v]] = true;
            self.blossom[self.base[mv]] = true;
            self.parent[v] = child;
            child = mv;
            v = self.parent[mv];
            if v == NONE {
                break;
            }
        }
    }

    /// Searches an augmenting path from the free vertex `root` and applies it.
    /// Looks for an augmenting path from `root` through `eligible` vertices only.
    fn augment_from(&mut self, root: usize, eligible: &[bool]) -> bool {
        let m = self.adj.len();
        self.used.iter_mut().for_each(|x| *x = false);
        self.parent.iter_mut().for_each(|x| *x = NONE);
        for (i, b) in self.base.iter_mut().enumerate() {
            *b = i;
        }
        self.used[root] = true;
        self.queue.clear();
        self.queue.push(root);
        let mut head = 0;
        while head < self.queue.len() {
            let v = self.queue[head];
            head += 1;
            for k in 0..self.adj[v].len() {
                let to = self.adj[v][k].0;
                if !eligible[to] || self.base[v] == self.base[to] || self.mate[v] == to {
                    continue;
                }
                if to == root || (self.mate[to] != NONE && self.parent[self.mate[to]] != NONE) {
                    let cur_base = self.lca(v, to);
                    self.blossom.iter_mut().for_each(|x| *x = false);
                    self.mark_path(v, cur_base, to);
                    self.mark_path(to, cur_base, v);
                    for i in 0..m {
                        if self.blossom[self.base[i]] {
                            self.base[i] = cur_base;
                            if !self.used[i] {
                                self.used[i] = true;
                                self.queue.push(i);
                            }
                        }
                    }
                } else if self.parent[to] == NONE {
                    self.parent[to] = v;
                    if self.mate[to] == NONE {
                        // augment along the alternating path ending at `to`
                        let mut u = to;
                        while u != NONE {
                            let pu = self.parent[u];
                            if pu == NONE {
                                break;
                            }
                            let next = self.mate[pu];
                            self.mate[u] = pu;
                            self.mate[pu] = u;
                            u = next;
                        }
                        return true;
                    }
                    let next = self.mate[to];
                    self.used[next] = true;
                    self.queue.push(next);
                }
            }
        }
        false
    }
}

/// RDKit's `KekulizeFragment` → `kekulizeFused` → `markDbondCands` + `kekulizeWorker`
/// (2022.09), ported step by step so that the Kekulé structure is RDKit's even where it
/// matters: in rings that stay non-aromatic after perception.
fn kekulize_like_rdkit(
    work: &mut Work,
    explicit_valence: &[i32],
    rings: &[Ring],
) -> Result<(), SmilesError> {
    let n = work.atoms.len();
    // bonds RDKit flags aromatic (fixed during kekulisation; their type changes)
    let aromatic_bond: Vec<bool> = work
        .bonds
        .iter()
        .map(|b| b.bond_type == BondType::Aromatic)
        .collect();
    let mut aromatic_atom = vec![false; n];
    for (i, a) in work.atoms.iter().enumerate() {
        aromatic_atom[i] = a.aromatic;
    }
    for (b, bond) in work.bonds.iter().enumerate() {
        if aromatic_bond[b] {
            aromatic_atom[bond.begin as usize] = true;
            aromatic_atom[bond.end as usize] = true;
        }
    }
    let rings_containing: Vec<Vec<usize>> = {
        let mut v = vec![Vec::new(); n];
        for (ri, ring) in rings.iter().enumerate() {
            for &a in &ring.atoms {
                v[a as usize].push(ri);
            }
        }
        v
    };
    // rings without an aromatic atom that sits in that ring only cannot take double bonds
    let ring_not_candidate: Vec<bool> = rings
        .iter()
        .map(|r| {
            !r.atoms
                .iter()
                .any(|&a| aromatic_atom[a as usize] && rings_containing[a as usize].len() == 1)
        })
        .collect();
    // rings that are not all dummies; fused when they share a bond
    let arings: Vec<&Ring> = rings
        .iter()
        .filter(|r| {
            r.atoms
                .iter()
                .any(|&a| work.atoms[a as usize].atomic_num != 0)
        })
        .collect();
    let nr = arings.len();
    let mut neighbors: Vec<Vec<usize>> = vec![Vec::new(); nr];
    for i in 0..nr {
        for j in i + 1..nr {
            if arings[i].bonds.iter().any(|b| arings[j].bonds.contains(b)) {
                neighbors[i].push(j);
                neighbors[j].push(i);
            }
        }
    }
    for list in &mut neighbors {
        list.sort_unstable();
    }
    let mut ring_done = vec![false; nr];
    for start in 0..nr {
        if ring_done[start] {
            continue;
        }
        // RDKit's `pickFusedRings`: depth-first, neighbours in ring order
        let mut fused = Vec::new();
        let mut stack = vec![start];
        while let Some(r) = stack.pop() {
            if ring_done[r] {
                continue;
            }
            ring_done[r] = true;
            fused.push(r);
            for &next in neighbors[r].iter().rev() {
                if !ring_done[next] {
                    stack.push(next);
                }
            }
        }
        let mut all_atoms: Vec<usize> = Vec::new();
        for &r in &fused {
            for &a in &arings[r].atoms {
                if !all_atoms.contains(&(a as usize)) {
                    all_atoms.push(a as usize);
                }
            }
        }
        let system = System {
            atoms: &all_atoms,
            aromatic_atom: &aromatic_atom,
            aromatic_bond: &aromatic_bond,
            rings_containing: &rings_containing,
            ring_not_candidate: &ring_not_candidate,
        };
        kekulize_system(work, explicit_valence, &system)?;
    }
    Ok(())
}

/// One fused ring system and the molecule-wide flags its kekulisation reads.
struct System<'a> {
    /// Atoms of the system in RDKit's order (rings in fused order, atoms in ring order).
    atoms: &'a [usize],
    aromatic_atom: &'a [bool],
    aromatic_bond: &'a [bool],
    rings_containing: &'a [Vec<usize>],
    ring_not_candidate: &'a [bool],
}

/// RDKit's `kekulizeFused` for one system.
fn kekulize_system(
    work: &mut Work,
    explicit_valence: &[i32],
    system: &System<'_>,
) -> Result<(), SmilesError> {
    let n = work.atoms.len();
    let in_system = {
        let mut v = vec![false; n];
        for &a in system.atoms {
            v[a] = true;
        }
        v
    };
    // markDbondCands
    if !system
        .atoms
        .iter()
        .any(|&a| work.atoms[a].atomic_num == 0 || system.aromatic_atom[a])
    {
        return Ok(());
    }
    let mut candidate = vec![false; n];
    let mut questions: Vec<usize> = Vec::new();
    let mut done: Vec<usize> = Vec::new();
    let mut make_single: Vec<usize> = Vec::new();
    for &i in system.atoms {
        let atom = &work.atoms[i];
        let z = atom.atomic_num;
        if z != 0 && !system.aromatic_atom[i] {
            done.push(i);
            continue;
        }
        let mut sbo = 0i32;
        let mut ignored = 0i32;
        let mut plain_neighbors = 0usize;
        for &(w, b) in work.neighbors(i) {
            let (w, b) = (w as usize, b as usize);
            let other = &work.atoms[w];
            if other.atomic_num != 0 && !other.aromatic && in_system[w] {
                plain_neighbors += 1;
            }
            let bond = &work.bonds[b];
            if system.aromatic_bond[b]
                && matches!(
                    bond.bond_type,
                    BondType::Single | BondType::Double | BondType::Aromatic
                )
            {
                sbo += 1;
                make_single.push(b);
            } else {
                let contrib = bond.valence_contrib(i).round() as i32;
                sbo += contrib;
                ignored += i32::from(contrib == 0);
            }
        }
        let num_rings = system.rings_containing[i].len();
        let non_candidate_rings = system.rings_containing[i]
            .iter()
            .filter(|&&r| system.ring_not_candidate[r])
            .count();
        if z == 0 && plain_neighbors < num_rings && non_candidate_rings < num_rings {
            candidate[i] = true;
            questions.push(i);
            continue;
        }
        if z == 0 {
            continue;
        }
        sbo += atom.total_num_hs() as i32;
        let mut chrg = i32::from(atom.formal_charge);
        if elements::is_early_atom(z) {
            chrg = -chrg;
        }
        if z == 6 && chrg > 0 {
            chrg = -chrg;
        }
        let valences = elements::valences(z);
        let mut dv = elements::default_valence(z) + chrg;
        let tbo = explicit_valence[i] + i32::from(atom.implicit_hs);
        let radicals = i32::from(atom.radical_electrons);
        let total_degree = i32::from(atom.degree) + i32::from(atom.implicit_hs) - ignored;
        let mut vi = 1;
        while tbo > dv && vi < valences.len() && valences[vi] > 0 {
            dv = valences[vi] + chrg;
            vi += 1;
        }
        // aromatic N-oxides such as O=n1ccccc1
        if tbo == 5
            && sbo == 4
            && dv == 3
            && total_degree == 3
            && radicals == 0
            && chrg == 0
            && atom.total_num_hs() == 0
            && matches!(z, 7 | 15 | 33)
        {
            dv = 5;
        }
        if total_degree + radicals >= dv {
            continue;
        }
        if dv == sbo + 1 + radicals || (radicals == 0 && work.no_implicit[i] && dv == sbo + 2) {
            candidate[i] = true;
        }
    }
    for b in make_single {
        work.bonds[b].bond_type = BondType::Single;
    }
    let mut worker = Worker {
        work,
        in_system: &in_system,
        aromatic_bond: system.aromatic_bond,
        all_atoms: system.atoms,
    };
    if worker.run(candidate.clone(), done)? {
        return Ok(());
    }
    // dummies may go without a double bond: switch subsets of them off, as RDKit enumerates
    if !questions.is_empty() && questions.len() < 16 {
        for mask in 1u32..(1u32 << questions.len()) {
            worker.reset_aromatic_bonds();
            let mut trial = candidate.clone();
            for (k, &q) in questions.iter().enumerate() {
                if mask & (1 << k) != 0 {
                    trial[q] = false;
                }
            }
            if worker.run(trial, Vec::new())? {
                return Ok(());
            }
        }
    }
    let atom = system
        .atoms
        .iter()
        .copied()
        .find(|&a| candidate[a])
        .unwrap_or(system.atoms[0]);
    Err(SmilesError::Kekulization {
        atom,
        pos: worker.work.atoms[atom].source_pos,
    })
}

/// RDKit's `kekulizeWorker`: a breadth-first walk that gives each candidate atom a double bond
/// to the first candidate neighbour, backtracking to the last choice when an atom is left
/// without one.
struct Worker<'a> {
    work: &'a mut Work,
    in_system: &'a [bool],
    aromatic_bond: &'a [bool],
    all_atoms: &'a [usize],
}

impl Worker<'_> {
    const MAX_BACKTRACKS: usize = 100;

    fn bond(&self, a: usize, b: usize) -> usize {
        crate::sssr::bond_between(self.work, a, b).unwrap_or(usize::MAX)
    }

    /// Aromatic bonds of the system that are not single become single again.
    fn reset_aromatic_bonds(&mut self) {
        for (b, bond) in self.work.bonds.iter_mut().enumerate() {
            if self.aromatic_bond[b]
                && bond.bond_type != BondType::Single
                && self.in_system[bond.begin as usize]
                && self.in_system[bond.end as usize]
            {
                bond.bond_type = BondType::Single;
            }
        }
    }

    fn run(&mut self, mut candidate: Vec<bool>, mut done: Vec<usize>) -> Result<bool, SmilesError> {
        use std::collections::hash_map::Entry;
        use std::collections::{HashMap, VecDeque};
        let nb = self.work.bonds.len();
        let mut added = vec![false; nb];
        let mut local_added = vec![false; nb];
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut options: HashMap<usize, VecDeque<usize>> = HashMap::new();
        let mut last_opt: Option<usize> = None;
        let mut moves: Vec<usize> = Vec::new();
        let mut backtracks = 0;
        while done.len() < self.all_atoms.len() || !queue.is_empty() {
            let curr = match queue.pop_front() {
                Some(a) => a,
                None => match self.all_atoms.iter().copied().find(|a| !done.contains(a)) {
                    Some(a) => a,
                    None => break,
                },
            };
            done.push(curr);
            let is_candidate = candidate[curr];
            let mut opts: VecDeque<usize> = VecDeque::new();
            if let Some(stored) = options.get(&curr) {
                opts = stored.clone();
            } else {
                for &(w, b) in self.work.neighbors(curr) {
                    let (w, b) = (w as usize, b as usize);
                    if done.contains(&w) || !self.in_system[w] {
                        continue;
                    }
                    if !queue.contains(&w) {
                        queue.push_back(w);
                    }
                    if is_candidate
                        && candidate[w]
                        && (self.aromatic_bond[b]
                            || self.work.atoms[curr].atomic_num == 0
                            || self.work.atoms[w].atomic_num == 0)
                    {
                        opts.push_back(w);
                    }
                }
            }
            if !is_candidate {
                continue;
            }
            if let Some(partner) = opts.pop_front() {
                let b = self.bond(curr, partner);
                if b == usize::MAX {
                    return Ok(false);
                }
                self.work.bonds[b].bond_type = BondType::Double;
                candidate[curr] = false;
                candidate[partner] = false;
                added[b] = true;
                local_added[b] = true;
                match options.entry(curr) {
                    // revisited after a backtrack: the options left for this atom
                    Entry::Occupied(mut entry) => {
                        if opts.is_empty() {
                            entry.remove();
                            moves.pop();
                            last_opt = moves.last().copied();
                        } else {
                            entry.insert(opts);
                        }
                    }
                    // a new choice point
                    Entry::Vacant(entry) => {
                        if !opts.is_empty() {
                            last_opt = Some(curr);
                            moves.push(curr);
                            entry.insert(opts);
                        }
                    }
                }
            } else if self.work.atoms[curr].atomic_num != 0 {
                match last_opt {
                    Some(opt) if backtracks < Self::MAX_BACKTRACKS => {
                        self.backtrack(opt, &mut done, &mut queue, &mut candidate, &mut added);
                        backtracks += 1;
                    }
                    _ => {
                        for (b, &was_added) in local_added.iter().enumerate() {
                            if was_added {
                                self.work.bonds[b].bond_type = BondType::Single;
                            }
                        }
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// RDKit's `backTrack`: undo everything since `last_opt` was decided and revisit from there.
    fn backtrack(
        &mut self,
        last_opt: usize,
        done: &mut Vec<usize>,
        queue: &mut std::collections::VecDeque<usize>,
        candidate: &mut [bool],
        added: &mut [bool],
    ) {
        let pos = done
            .iter()
            .position(|&a| a == last_opt)
            .unwrap_or(done.len());
        let kept: Vec<usize> = done[..pos].to_vec();
        for &a in done[pos..].iter().rev() {
            queue.push_front(a);
        }
        for (b, was_added) in added.iter_mut().enumerate() {
            if !*was_added {
                continue;
            }
            let (a1, a2) = (
                self.work.bonds[b].begin as usize,
                self.work.bonds[b].end as usize,
            );
            if !kept.contains(&a1) && !kept.contains(&a2) {
                *was_added = false;
                self.work.bonds[b].bond_type = BondType::Single;
                candidate[a1] = true;
                candidate[a2] = true;
            }
        }
        *done = kept;
    }
}
