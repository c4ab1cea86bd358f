//! RDKit's ring finding (`findSSSR` + `symmetrizeSSSR`, RDKit 2022.09, `FindRings.cpp`),
//! ported step by step: the rings and their order, and the atom order inside each ring, are
//! RDKit's. Kekulisation walks ring systems in this order, so the Kekulé structure left in rings
//! that do not end aromatic follows it.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use crate::sanitize::Work;

/// RDKit's ring invariant (the atom set as a bitset), ordered as boost compares bitsets: atoms
/// sorted from the highest index down, compared lexicographically.
type RingInvariant = Vec<u32>;

fn ring_invariant(ring: &[usize]) -> RingInvariant {
    let mut v: Vec<u32> = ring.iter().map(|&a| a as u32).collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// Bond between two atoms, if any.
pub(crate) fn bond_between(work: &Work, a: usize, b: usize) -> Option<usize> {
    work.neighbors(a)
        .iter()
        .find(|&&(w, _)| w as usize == b)
        .map(|&(_, bond)| bond as usize)
}

/// `ring` (an atom path) as bond indices: consecutive atoms, then last to first.
pub(crate) fn ring_bonds(work: &Work, ring: &[usize]) -> Vec<usize> {
    let mut bonds = Vec::with_capacity(ring.len());
    for w in ring.windows(2) {
        if let Some(b) = bond_between(work, w[0], w[1]) {
            bonds.push(b);
        }
    }
    if ring.len() > 2 {
        if let Some(b) = bond_between(work, ring[0], ring[ring.len() - 1]) {
            bonds.push(b);
        }
    }
    bonds
}

struct State<'a> {
    work: &'a Work,
    degree: Vec<i32>,
    active: Vec<bool>,
    invariants: HashSet<RingInvariant>,
}

/// Removes `cand`'s active bonds; neighbours left with degree ≤ 2 go into `changed`.
fn trim_bonds(
    work: &Work,
    cand: usize,
    changed: &mut BTreeSet<usize>,
    degree: &mut [i32],
    active: &mut [bool],
) {
    for &(w, b) in work.neighbors(cand) {
        let (w, b) = (w as usize, b as usize);
        if !active[b] {
            continue;
        }
        if degree[w] <= 2 {
            changed.insert(w);
        }
        active[b] = false;
        degree[w] -= 1;
        degree[cand] -= 1;
    }
}

/// RDKit's `smallestRingsBfs`: all smallest rings through `root` (atom paths starting at the
/// root), avoiding `forbidden` atoms. `None` when the search grows past RDKit's limit.
fn smallest_rings_bfs(
    work: &Work,
    root: usize,
    active: &[bool],
    forbidden: &[usize],
) -> Option<Vec<Vec<usize>>> {
    const WHITE: u8 = 0;
    const GRAY: u8 = 1;
    const BLACK: u8 = 2;
    const MAX_QUEUE: usize = 200_000;
    let n = work.atoms.len();
    let mut done = vec![WHITE; n];
    for &f in forbidden {
        done[f] = BLACK;
    }
    let mut parent = vec![usize::MAX; n];
    let mut depth = vec![0usize; n];
    let mut queue = VecDeque::from([root]);
    let mut rings = Vec::new();
    let mut cur_size = usize::MAX;
    while let Some(curr) = queue.pop_front() {
        if queue.len() + 1 >= MAX_QUEUE {
            return None;
        }
        done[curr] = BLACK;
        let d = depth[curr] + 1;
        if d > cur_size {
            break;
        }
        for &(nbr, b) in work.neighbors(curr) {
            let (nbr, b) = (nbr as usize, b as usize);
            if !active[b] || done[nbr] == BLACK || parent[curr] == nbr {
                continue;
            }
            if done[nbr] == WHITE {
                parent[nbr] = curr;
                done[nbr] = GRAY;
                depth[nbr] = d;
                queue.push_back(nbr);
            } else {
                // reached again through another path: stitch the two paths together
                let mut ring = vec![nbr];
                let mut p = parent[nbr];
                while p != usize::MAX && p != root {
                    ring.push(p);
                    p = parent[p];
                }
                ring.insert(0, curr);
                let mut p = parent[curr];
                while p != usize::MAX {
                    if ring.contains(&p) {
                        ring.clear();
                        break;
                    }
                    ring.insert(0, p);
                    p = parent[p];
                }
                if ring.len() > 1 {
                    if ring.len() <= cur_size {
                        cur_size = ring.len();
                        rings.push(ring);
                    } else {
                        return Some(rings);
                    }
                }
            }
        }
    }
    Some(rings)
}

impl State<'_> {
    /// Keeps `ring` unless an equal atom set was found before.
    fn add_ring(&mut self, res: &mut Vec<Vec<usize>>, ring: Vec<usize>) {
        if self.invariants.insert(ring_invariant(&ring)) {
            res.push(ring);
        }
    }

    /// RDKit's `pickD2Nodes`: one degree-2 atom per chain of degree-2 atoms.
    fn pick_d2_nodes(&self, frag: &[usize]) -> Vec<usize> {
        let mut d2 = Vec::new();
        let mut forbidden = vec![false; self.work.atoms.len()];
        while let Some(root) = frag
            .iter()
            .copied()
            .find(|&a| self.degree[a] == 2 && !forbidden[a])
        {
            d2.push(root);
            forbidden[root] = true;
            // mark the degree-2 atoms reachable from root through degree-2 atoms
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                for &(w, b) in self.work.neighbors(v) {
                    let w = w as usize;
                    if self.active[b as usize] && !forbidden[w] && self.degree[w] == 2 {
                        forbidden[w] = true;
                        stack.push(w);
                    }
                }
            }
        }
        d2
    }

    fn find_rings_d2_nodes(&mut self, res: &mut Vec<Vec<usize>>, d2nodes: &[usize]) -> Option<()> {
        let mut dup_d2: BTreeMap<RingInvariant, Vec<usize>> = BTreeMap::new();
        let mut dup_map: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut node_invars: BTreeMap<usize, Vec<RingInvariant>> = BTreeMap::new();
        for &cand in d2nodes {
            let rings = smallest_rings_bfs(self.work, cand, &self.active, &[])?;
            for ring in &rings {
                let inv = ring_invariant(ring);
                self.add_ring(res, ring.clone());
                node_invars.entry(cand).or_default().push(inv.clone());
                let others: Vec<usize> = node_invars
                    .iter()
                    .filter(|(&node, invs)| node != cand && invs.contains(&inv))
                    .map(|(&node, _)| node)
                    .collect();
                for other in others {
                    dup_map.entry(cand).or_default().push(other);
                    dup_map.entry(other).or_default().push(cand);
                }
                dup_d2.entry(inv).or_default().push(cand);
            }
            if rings.is_empty() {
                let mut changed = BTreeSet::from([cand]);
                while let Some(c) = changed.pop_first() {
                    trim_bonds(
                        self.work,
                        c,
                        &mut changed,
                        &mut self.degree,
                        &mut self.active,
                    );
                }
            }
        }
        // d2 nodes that found the same ring: trim the others and look again
        for cands in dup_d2.values() {
            if cands.len() < 2 {
                continue;
            }
            let mut found = Vec::new();
            let mut min_size = usize::MAX;
            for &dup in cands {
                let mut degree = self.degree.clone();
                let mut active = self.active.clone();
                let mut changed = BTreeSet::new();
                for &other in dup_map.get(&dup).map(Vec::as_slice).unwrap_or(&[]) {
                    trim_bonds(self.work, other, &mut changed, &mut degree, &mut active);
                }
                for ring in smallest_rings_bfs(self.work, dup, &active, &[])? {
                    min_size = min_size.min(ring.len());
                    found.push(ring);
                }
            }
            for ring in found {
                if ring.len() == min_size {
                    self.add_ring(res, ring);
                }
            }
        }
        Some(())
    }

    fn find_rings_d3_node(&mut self, res: &mut Vec<Vec<usize>>, cand: usize) -> Option<()> {
        let active = self.active.clone();
        let small = smallest_rings_bfs(self.work, cand, &active, &[])?;
        for ring in &small {
            self.add_ring(res, ring.clone());
        }
        if small.len() >= 3 {
            return Some(());
        }
        let nbrs: Vec<usize> = self
            .work
            .neighbors(cand)
            .iter()
            .filter(|&&(_, b)| active[b as usize])
            .map(|&(w, _)| w as usize)
            .take(3)
            .collect();
        if nbrs.len() < 3 {
            return None;
        }
        let (n1, n2, n3) = (nbrs[0], nbrs[1], nbrs[2]);
        let extra = |forbid: usize, me: &mut Self, res: &mut Vec<Vec<usize>>| -> Option<()> {
            for ring in smallest_rings_bfs(me.work, cand, &active, &[forbid])? {
                me.add_ring(res, ring);
            }
            Some(())
        };
        if small.len() == 2 {
            let in_both = |x: usize| small[0].contains(&x) && small[1].contains(&x);
            let f = [n1, n2, n3].into_iter().find(|&x| in_both(x))?;
            extra(f, self, res)?;
        } else if small.len() == 1 {
            let (f1, f2) = if !small[0].contains(&n1) {
                (n2, n3)
            } else if !small[0].contains(&n2) {
                (n1, n3)
            } else if !small[0].contains(&n3) {
                (n1, n2)
            } else {
                return None;
            };
            extra(f2, self, res)?;
            extra(f1, self, res)?;
        }
        Some(())
    }
}

/// RDKit's `removeExtraRings`: keeps, size by size, the rings that add bonds; returns the others.
fn remove_extra_rings(work: &Work, res: &mut Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    // RDKit sorts with std::sort, which orders rings of equal size in its own way
    libstdcxx_sort(res, |a, b| a.len() < b.len());
    let nb = work.bonds.len();
    let bonds: Vec<Vec<bool>> = res
        .iter()
        .map(|r| {
            let mut set = vec![false; nb];
            for b in ring_bonds(work, r) {
                set[b] = true;
            }
            set
        })
        .collect();
    let size = |i: usize| res[i].len();
    let subset = |a: &[bool], union: &[bool]| a.iter().zip(union).all(|(&x, &u)| !x || u);
    let mut avail = vec![true; res.len()];
    let mut keep = vec![false; res.len()];
    let mut union = vec![false; nb];
    for i in 0..res.len() {
        if subset(&bonds[i], &union) {
            avail[i] = false;
        }
        if !avail[i] {
            continue;
        }
        union.iter_mut().zip(&bonds[i]).for_each(|(u, &b)| *u |= b);
        keep[i] = true;
        let mut consider: Vec<bool> = (0..res.len())
            .map(|j| j > i && avail[j] && size(j) == size(i))
            .collect();
        while consider.iter().any(|&c| c) {
            let mut best_j = i + 1;
            let mut best_overlap: i64 = -1;
            let mut j = i + 1;
            while j < res.len() && size(j) == size(i) {
                if consider[j] && avail[j] {
                    let overlap = bonds[j]
                        .iter()
                        .zip(&union)
                        .filter(|(&b, &u)| b && u)
                        .count() as i64;
                    if overlap > best_overlap {
                        best_overlap = overlap;
                        best_j = j;
                    }
                }
                j += 1;
            }
            consider[best_j] = false;
            if subset(&bonds[best_j], &union) {
                avail[best_j] = false;
            } else {
                keep[best_j] = true;
                avail[best_j] = false;
                union
                    .iter_mut()
                    .zip(&bonds[best_j])
                    .for_each(|(u, &b)| *u |= b);
            }
        }
    }
    let all = std::mem::take(res);
    let mut extras = Vec::new();
    for (ring, k) in all.into_iter().zip(keep) {
        if k {
            res.push(ring);
        } else {
            extras.push(ring);
        }
    }
    extras
}

/// `std::sort` as GCC's libstdc++ implements it (introsort with a median-of-three pivot, then
/// insertion sort; 16-element threshold), so that equal elements end where RDKit's build leaves
/// them. Past the depth limit libstdc++ switches to heapsort; this falls back to a stable sort
/// there (not reached for ring lists).
fn libstdcxx_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool + Copy) {
    const THRESHOLD: usize = 16;
    fn introsort<T>(v: &mut [T], depth: u32, less: impl Fn(&T, &T) -> bool + Copy) {
        let mut last = v.len();
        let mut depth = depth;
        while last > THRESHOLD {
            if depth == 0 {
                v[..last].sort_by(|a, b| {
                    if less(a, b) {
                        std::cmp::Ordering::Less
                    } else if less(b, a) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                return;
            }
            depth -= 1;
            // median of v[1], v[mid], v[last - 1] moved to v[0]
            let mid = last / 2;
            let (a, b, c) = (1, mid, last - 1);
            let median = if less(&v[a], &v[b]) {
                if less(&v[b], &v[c]) {
                    b
                } else if less(&v[a], &v[c]) {
                    c
                } else {
                    a
                }
            } else if less(&v[a], &v[c]) {
                a
            } else if less(&v[b], &v[c]) {
                c
            } else {
                b
            };
            v.swap(0, median);
            // unguarded partition of v[1..last] around v[0]
            let (mut first, mut end) = (1, last);
            let cut = loop {
                while less(&v[first], &v[0]) {
                    first += 1;
                }
                end -= 1;
                while less(&v[0], &v[end]) {
                    end -= 1;
                }
                if first >= end {
                    break first;
                }
                v.swap(first, end);
                first += 1;
            };
            introsort(&mut v[cut..last], depth, less);
            last = cut;
        }
    }
    fn linear_insert<T>(v: &mut [T], mut i: usize, less: impl Fn(&T, &T) -> bool) {
        while i > 0 && less(&v[i], &v[i - 1]) {
            v.swap(i, i - 1);
            i -= 1;
        }
    }
    let n = v.len();
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros());
    introsort(v, depth, less);
    // insertion sort (the unguarded variant past the first 16 behaves the same here)
    for i in 1..n {
        if less(&v[i], &v[0]) {
            v[..=i].rotate_right(1);
        } else {
            linear_insert(v, i, less);
        }
    }
}

/// RDKit's symmetrised SSSR: `findSSSR` then `symmetrizeSSSR`. `None` where RDKit falls back
/// to its approximate ring finder (or its search limit), for the caller's own ring handling.
pub(crate) fn symmetrized_sssr(work: &Work) -> Option<Vec<Vec<usize>>> {
    let n = work.atoms.len();
    let mut st = State {
        work,
        degree: (0..n).map(|i| work.neighbors(i).len() as i32).collect(),
        active: vec![true; work.bonds.len()],
        invariants: HashSet::new(),
    };
    // fragments, ordered by their first atom, atoms ascending
    let mut frag_of = vec![usize::MAX; n];
    let mut frags: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if frag_of[start] != usize::MAX {
            continue;
        }
        let id = frags.len();
        let mut atoms = vec![start];
        frag_of[start] = id;
        let mut k = 0;
        while k < atoms.len() {
            for &(w, _) in work.neighbors(atoms[k]) {
                if frag_of[w as usize] == usize::MAX {
                    frag_of[w as usize] = id;
                    atoms.push(w as usize);
                }
            }
            k += 1;
        }
        atoms.sort_unstable();
        frags.push(atoms);
    }
    let mut res: Vec<Vec<usize>> = Vec::new();
    let mut extras: Vec<Vec<usize>> = Vec::new();
    for frag in &frags {
        if frag.len() < 3 {
            continue;
        }
        let mut changed = BTreeSet::new();
        let mut degree_sum = 0i64;
        for &a in frag {
            degree_sum += i64::from(st.degree[a]);
            if st.degree[a] < 2 {
                changed.insert(a);
            }
        }
        let nbonds = degree_sum / 2;
        let expected = nbonds - frag.len() as i64 + 1;
        if expected < 1 {
            continue;
        }
        let mut frag_res: Vec<Vec<usize>> = Vec::new();
        let mut done = vec![false; n];
        let mut n_done = 0;
        while n_done < frag.len() {
            while let Some(cand) = changed.pop_first() {
                if !done[cand] {
                    done[cand] = true;
                    n_done += 1;
                    trim_bonds(work, cand, &mut changed, &mut st.degree, &mut st.active);
                }
            }
            let d2 = st.pick_d2_nodes(frag);
            if !d2.is_empty() {
                st.find_rings_d2_nodes(&mut frag_res, &d2)?;
                for &d in &d2 {
                    done[d] = true;
                    n_done += 1;
                    trim_bonds(work, d, &mut changed, &mut st.degree, &mut st.active);
                }
            } else if n_done < frag.len() {
                let Some(cand) = frag.iter().copied().find(|&a| st.degree[a] == 3) else {
                    break;
                };
                st.find_rings_d3_node(&mut frag_res, cand)?;
                done[cand] = true;
                n_done += 1;
                trim_bonds(work, cand, &mut changed, &mut st.degree, &mut st.active);
            }
        }
        if (frag_res.len() as i64) < expected {
            // RDKit's fix for highly fused systems, then its approximate fallback
            return None;
        }
        if frag_res.len() as i64 > expected {
            // RDKit keeps only the last fragment's extra rings (a molecule property)
            extras = remove_extra_rings(work, &mut frag_res);
        }
        res.extend(frag_res);
    }
    // symmetrise: an extra ring joins when it can replace one SSSR ring of its size
    let sssr_bonds: Vec<Vec<usize>> = res.iter().map(|r| ring_bonds(work, r)).collect();
    let mut bond_count = vec![0u32; work.bonds.len()];
    for r in &sssr_bonds {
        for &b in r {
            bond_count[b] += 1;
        }
    }
    for extra in extras {
        let extra_bonds = ring_bonds(work, &extra);
        for ring in &sssr_bonds {
            if ring.len() != extra_bonds.len() {
                continue;
            }
            let mut share = false;
            let mut replaces_unique = true;
            for &b in ring {
                let count = bond_count[b];
                if count == 1 || !share {
                    if extra_bonds.contains(&b) {
                        share = true;
                    } else if count == 1 {
                        replaces_unique = false;
                    }
                }
            }
            if share && replaces_unique {
                res.push(extra);
                break;
            }
        }
    }
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::symmetrized_sssr;

    /// Rings, their order and the atom order inside each, as RDKit 2022.09.5 reports them
    /// (`tests/data/rdkit_rings.jsonl`, written by `scripts/rdkit/rings.py`).
    #[test]
    fn rings_match_rdkit() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rdkit_rings.jsonl");
        let text = std::fs::read_to_string(path).expect("ring expectations");
        let mut failures = Vec::new();
        let mut checked = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let smiles = v["smiles"].as_str().expect("smiles");
            let expected: Vec<Vec<usize>> =
                serde_json::from_value(v["rings"].clone()).expect("rings");
            let work = crate::sanitize::ring_graph(smiles).expect("RDKit accepts it");
            let ours = if work.atoms.iter().any(|a| a.in_ring) {
                symmetrized_sssr(&work)
            } else {
                Some(Vec::new())
            };
            checked += 1;
            if ours.as_ref() != Some(&expected) {
                failures.push(format!("{smiles}: RDKit {expected:?}, ours {ours:?}"));
            }
        }
        assert!(checked > 1500, "only {checked} molecules read");
        assert!(
            failures.is_empty(),
            "{} of {checked} differ:\n{}",
            failures.len(),
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
