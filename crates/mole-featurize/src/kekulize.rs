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
use crate::sanitize::{valence_charge, Work};
use crate::smiles::SmilesError;

const NONE: usize = usize::MAX;

pub(crate) fn kekulize(work: &mut Work, explicit_valence: &[i32]) -> Result<(), SmilesError> {
    let n = work.atoms.len();
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
    for a in work.atoms.iter_mut() {
        a.aromatic = false;
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
