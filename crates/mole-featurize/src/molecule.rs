//! The sanitised molecular graph: heavy atoms (hydrogens folded into H counts) and bonds,
//! with the per-atom properties RDKit reports after `MolFromSmiles`.

use crate::elements;

/// Bond order after sanitisation. Aromatic bonds are those RDKit's aromaticity model marks
/// (plus bonds written `:` outside rings, which RDKit keeps as aromatic bonds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BondType {
    Single,
    Double,
    Triple,
    Quadruple,
    Aromatic,
    /// A dative bond (`->`, RDKit's SMILES extension) from the donor (begin) to the acceptor.
    Dative,
    /// `~` (any bond): part of the graph, no valence.
    Unspecified,
}

impl BondType {
    /// RDKit `BondType` enum value (1, 2, 3, 4, 12, 17, 0), the code hashed into Morgan
    /// environments.
    pub fn rdkit_code(self) -> u32 {
        match self {
            BondType::Unspecified => 0,
            BondType::Single => 1,
            BondType::Double => 2,
            BondType::Triple => 3,
            BondType::Quadruple => 4,
            BondType::Aromatic => 12,
            BondType::Dative => 17,
        }
    }

    /// Integer bond order of a Kekulé bond (aromatic and dative bonds count 1, `~` 0); used
    /// for "is this a multiple bond" tests. Valence sums go through [`Bond::valence_contrib`].
    pub(crate) fn order(self) -> u32 {
        match self {
            BondType::Unspecified => 0,
            BondType::Single | BondType::Aromatic | BondType::Dative => 1,
            BondType::Double => 2,
            BondType::Triple => 3,
            BondType::Quadruple => 4,
        }
    }
}

/// One heavy atom (or a hydrogen kept as an atom, e.g. an isotope-labelled one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub(crate) atomic_num: u8,
    pub(crate) isotope: u16,
    pub(crate) formal_charge: i8,
    /// Hydrogens written explicitly: bracket H count plus merged `[H]` atoms.
    pub(crate) explicit_hs: u8,
    /// Hydrogens implied by the valence model (organic-subset atoms only).
    pub(crate) implicit_hs: u8,
    pub(crate) radical_electrons: u8,
    pub(crate) aromatic: bool,
    pub(crate) in_ring: bool,
    pub(crate) degree: u8,
    /// Byte offset of the atom in the SMILES string (for error messages).
    pub(crate) source_pos: usize,
}

impl Atom {
    pub fn atomic_num(&self) -> u8 {
        self.atomic_num
    }
    pub fn symbol(&self) -> &'static str {
        elements::symbol(self.atomic_num)
    }
    pub fn is_aromatic(&self) -> bool {
        self.aromatic
    }
    /// Number of explicit (graph) neighbours, i.e. heavy neighbours after H removal.
    pub fn degree(&self) -> u32 {
        u32::from(self.degree)
    }
    /// Neighbours including hydrogens.
    pub fn total_degree(&self) -> u32 {
        u32::from(self.degree) + self.total_num_hs()
    }
    /// Attached hydrogens, explicit plus implicit.
    pub fn total_num_hs(&self) -> u32 {
        u32::from(self.explicit_hs) + u32::from(self.implicit_hs)
    }
    pub fn formal_charge(&self) -> i32 {
        i32::from(self.formal_charge)
    }
    /// Isotope label, 0 when none.
    pub fn isotope(&self) -> u32 {
        u32::from(self.isotope)
    }
    /// `trunc(mass - standard atomic weight)`, 0 without isotope label.
    pub fn delta_mass(&self) -> i32 {
        elements::delta_mass(self.atomic_num, self.isotope)
    }
    /// Whether the atom belongs to at least one ring.
    pub fn in_ring(&self) -> bool {
        self.in_ring
    }
    pub fn num_radical_electrons(&self) -> u32 {
        u32::from(self.radical_electrons)
    }
}

/// One bond between two atom indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub(crate) begin: u32,
    pub(crate) end: u32,
    pub(crate) bond_type: BondType,
}

impl Bond {
    pub fn begin(&self) -> usize {
        self.begin as usize
    }
    pub fn end(&self) -> usize {
        self.end as usize
    }
    pub fn bond_type(&self) -> BondType {
        self.bond_type
    }
    /// RDKit's `getValenceContrib(atom)`: the bond's order (aromatic 1.5) towards `atom`; a
    /// dative bond counts only for its acceptor (end) atom, `~` for neither.
    pub(crate) fn valence_contrib(&self, atom: usize) -> f64 {
        match self.bond_type {
            BondType::Unspecified => 0.0,
            BondType::Single => 1.0,
            BondType::Double => 2.0,
            BondType::Triple => 3.0,
            BondType::Quadruple => 4.0,
            BondType::Aromatic => 1.5,
            BondType::Dative if self.end as usize == atom => 1.0,
            BondType::Dative => 0.0,
        }
    }
    /// The other end of the bond seen from `atom`.
    pub fn other(&self, atom: usize) -> usize {
        if self.begin as usize == atom {
            self.end as usize
        } else {
            self.begin as usize
        }
    }
}

/// A sanitised molecule. Atoms are in RDKit atom order (SMILES order, removed H atoms dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Molecule {
    pub(crate) atoms: Vec<Atom>,
    pub(crate) bonds: Vec<Bond>,
    /// CSR adjacency: neighbours of atom `i` are `adjacency[adjacency_start[i]..adjacency_start[i+1]]`
    /// as (neighbour, bond index).
    pub(crate) adjacency_start: Vec<u32>,
    pub(crate) adjacency: Vec<(u32, u32)>,
    /// RDKit's `noImplicit` per atom: bracket atoms, whose hydrogens are all explicit.
    pub(crate) no_implicit: Vec<bool>,
}

impl Molecule {
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }
    pub fn bonds(&self) -> &[Bond] {
        &self.bonds
    }
    pub fn num_atoms(&self) -> usize {
        self.atoms.len()
    }
    pub fn num_bonds(&self) -> usize {
        self.bonds.len()
    }
    /// (neighbour atom, bond index) pairs of `atom`.
    pub fn neighbors(&self, atom: usize) -> &[(u32, u32)] {
        let start = self.adjacency_start.get(atom).copied().unwrap_or(0) as usize;
        let end = self.adjacency_start.get(atom + 1).copied().unwrap_or(0) as usize;
        self.adjacency.get(start..end).unwrap_or(&[])
    }

    /// Builds the CSR adjacency from the bond list (neighbours in bond order).
    pub(crate) fn build_adjacency(num_atoms: usize, bonds: &[Bond]) -> (Vec<u32>, Vec<(u32, u32)>) {
        let mut counts = vec![0u32; num_atoms + 1];
        for b in bonds {
            counts[b.begin as usize + 1] += 1;
            counts[b.end as usize + 1] += 1;
        }
        for i in 0..num_atoms {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut adjacency = vec![(0u32, 0u32); bonds.len() * 2];
        for (bi, b) in bonds.iter().enumerate() {
            let (a, e) = (b.begin as usize, b.end as usize);
            adjacency[fill[a] as usize] = (b.end, bi as u32);
            fill[a] += 1;
            adjacency[fill[e] as usize] = (b.begin, bi as u32);
            fill[e] += 1;
        }
        (counts, adjacency)
    }
}
