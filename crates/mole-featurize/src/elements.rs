//! Periodic-table data used by SMILES parsing and sanitisation.
//!
//! The numbers follow RDKit's periodic table (`atomic_data.cpp`): standard
//! atomic weight, number of outer-shell electrons and the list of allowed
//! valences (`-1` meaning "any valence", used for metals). Only what the
//! sanitiser and the Morgan invariants need is kept; isotope masses are in [`crate::isotopes`].

use crate::isotopes::ISOTOPE_MASSES;

/// One element: symbol, standard atomic weight, outer-shell electrons, allowed valences.
pub(crate) struct Element {
    pub symbol: &'static str,
    pub weight: f64,
    pub outer_electrons: i32,
    pub valences: &'static [i32],
}

const ANY: &[i32] = &[-1];

macro_rules! el {
    ($s:expr, $w:expr, $o:expr, $v:expr) => {
        Element {
            symbol: $s,
            weight: $w,
            outer_electrons: $o,
            valences: $v,
        }
    };
}

/// Indexed by atomic number (0 = dummy `*`).
static ELEMENTS: [Element; 119] = [
    el!("*", 0.0, 0, ANY),
    el!("H", 1.008, 1, &[1]),
    el!("He", 4.003, 2, &[0]),
    el!("Li", 6.941, 1, &[1]),
    el!("Be", 9.012, 2, &[2]),
    el!("B", 10.812, 3, &[3]),
    el!("C", 12.011, 4, &[4]),
    el!("N", 14.007, 5, &[3]),
    el!("O", 15.999, 6, &[2]),
    el!("F", 18.998, 7, &[1]),
    el!("Ne", 20.18, 8, &[0]),
    el!("Na", 22.99, 1, &[1]),
    el!("Mg", 24.305, 2, &[2, -1]),
    el!("Al", 26.982, 3, &[3, 6]),
    el!("Si", 28.086, 4, &[4, 6]),
    el!("P", 30.974, 5, &[3, 5, 7]),
    el!("S", 32.067, 6, &[2, 4, 6]),
    el!("Cl", 35.453, 7, &[1]),
    el!("Ar", 39.948, 8, &[0]),
    el!("K", 39.098, 1, &[1]),
    el!("Ca", 40.078, 2, &[2, -1]),
    el!("Sc", 44.956, 3, ANY),
    el!("Ti", 47.867, 4, ANY),
    el!("V", 50.942, 5, ANY),
    el!("Cr", 51.996, 6, ANY),
    el!("Mn", 54.938, 7, ANY),
    el!("Fe", 55.845, 8, ANY),
    el!("Co", 58.933, 9, ANY),
    el!("Ni", 58.693, 10, ANY),
    el!("Cu", 63.546, 11, ANY),
    el!("Zn", 65.39, 2, ANY),
    el!("Ga", 69.723, 3, &[3]),
    el!("Ge", 72.61, 4, &[4]),
    el!("As", 74.922, 5, &[3, 5, 7]),
    el!("Se", 78.96, 6, &[2, 4, 6]),
    el!("Br", 79.904, 7, &[1]),
    el!("Kr", 83.8, 8, &[0]),
    el!("Rb", 85.468, 1, &[1]),
    el!("Sr", 87.62, 2, &[2, -1]),
    el!("Y", 88.906, 3, ANY),
    el!("Zr", 91.224, 4, ANY),
    el!("Nb", 92.906, 5, ANY),
    el!("Mo", 95.94, 6, ANY),
    el!("Tc", 98.0, 7, ANY),
    el!("Ru", 101.07, 8, ANY),
    el!("Rh", 102.906, 9, ANY),
    el!("Pd", 106.42, 10, ANY),
    el!("Ag", 107.868, 11, ANY),
    el!("Cd", 112.412, 2, ANY),
    el!("In", 114.818, 3, &[3]),
    el!("Sn", 118.711, 4, &[2, 4]),
    el!("Sb", 121.76, 5, &[3, 5, 7]),
    el!("Te", 127.6, 6, &[2, 4, 6]),
    el!("I", 126.904, 7, &[1, 3, 5]),
    el!("Xe", 131.29, 8, &[0, 2, 4, 6]),
    el!("Cs", 132.905, 1, &[1]),
    el!("Ba", 137.328, 2, &[2, -1]),
    el!("La", 138.906, 3, ANY),
    el!("Ce", 140.116, 4, ANY),
    el!("Pr", 140.908, 3, ANY),
    el!("Nd", 144.24, 4, ANY),
    el!("Pm", 145.0, 5, ANY),
    el!("Sm", 150.36, 6, ANY),
    el!("Eu", 151.964, 7, ANY),
    el!("Gd", 157.25, 8, ANY),
    el!("Tb", 158.925, 9, ANY),
    el!("Dy", 162.5, 10, ANY),
    el!("Ho", 164.93, 11, ANY),
    el!("Er", 167.26, 12, ANY),
    el!("Tm", 168.934, 13, ANY),
    el!("Yb", 173.04, 14, ANY),
    el!("Lu", 174.967, 15, ANY),
    el!("Hf", 178.49, 4, ANY),
    el!("Ta", 180.948, 5, ANY),
    el!("W", 183.84, 6, ANY),
    el!("Re", 186.207, 7, ANY),
    el!("Os", 190.23, 8, ANY),
    el!("Ir", 192.217, 9, ANY),
    el!("Pt", 195.078, 10, ANY),
    el!("Au", 196.967, 11, ANY),
    el!("Hg", 200.59, 2, ANY),
    el!("Tl", 204.383, 3, &[3]),
    el!("Pb", 207.2, 4, &[2, 4]),
    el!("Bi", 208.98, 5, &[3, 5, 7]),
    el!("Po", 209.0, 6, &[2, 4, 6]),
    el!("At", 210.0, 7, &[1, 3, 5]),
    el!("Rn", 222.0, 8, &[0]),
    el!("Fr", 223.0, 1, &[1]),
    el!("Ra", 226.0, 2, &[2, -1]),
    el!("Ac", 227.0, 3, ANY),
    el!("Th", 232.038, 4, ANY),
    el!("Pa", 231.036, 3, ANY),
    el!("U", 238.029, 4, ANY),
    el!("Np", 237.0, 5, ANY),
    el!("Pu", 244.0, 6, ANY),
    el!("Am", 243.0, 7, ANY),
    el!("Cm", 247.0, 8, ANY),
    el!("Bk", 247.0, 9, ANY),
    el!("Cf", 251.0, 10, ANY),
    el!("Es", 252.0, 11, ANY),
    el!("Fm", 257.0, 12, ANY),
    el!("Md", 258.0, 13, ANY),
    el!("No", 259.0, 14, ANY),
    el!("Lr", 262.0, 15, ANY),
    el!("Rf", 267.0, 2, ANY),
    el!("Db", 268.0, 2, ANY),
    el!("Sg", 269.0, 2, ANY),
    el!("Bh", 270.0, 2, ANY),
    el!("Hs", 269.0, 2, ANY),
    el!("Mt", 278.0, 2, ANY),
    el!("Ds", 281.0, 2, ANY),
    el!("Rg", 281.0, 2, ANY),
    el!("Cn", 285.0, 2, ANY),
    el!("Nh", 284.0, 2, ANY),
    el!("Fl", 289.0, 2, ANY),
    el!("Mc", 288.0, 2, ANY),
    el!("Lv", 293.0, 2, ANY),
    el!("Ts", 292.0, 2, ANY),
    el!("Og", 294.0, 2, ANY),
];

/// Highest supported atomic number.
pub(crate) const MAX_ATOMIC_NUM: u8 = 118;

fn element(atomic_num: u8) -> &'static Element {
    // Atomic numbers are validated at parse time; fall back to the dummy for safety.
    ELEMENTS.get(atomic_num as usize).unwrap_or(&ELEMENTS[0])
}

pub(crate) fn symbol(atomic_num: u8) -> &'static str {
    element(atomic_num).symbol
}

/// Atomic number for an element symbol with exact capitalisation (`"Cl"`), `None` if unknown.
pub(crate) fn atomic_number(symbol: &str) -> Option<u8> {
    ELEMENTS
        .iter()
        .position(|e| e.symbol == symbol)
        .and_then(|i| u8::try_from(i).ok())
}

pub(crate) fn atomic_weight(atomic_num: u8) -> f64 {
    element(atomic_num).weight
}

pub(crate) fn outer_electrons(atomic_num: u8) -> i32 {
    element(atomic_num).outer_electrons
}

pub(crate) fn valences(atomic_num: u8) -> &'static [i32] {
    element(atomic_num).valences
}

/// First allowed valence (RDKit's "default valence"); -1 when any valence is allowed.
pub(crate) fn default_valence(atomic_num: u8) -> i32 {
    valences(atomic_num).first().copied().unwrap_or(-1)
}

/// Default valence of an element given as a signed atomic number (out of range → -1).
pub(crate) fn default_valence_signed(atomic_num: i32) -> i32 {
    match u8::try_from(atomic_num) {
        Ok(z) if z <= MAX_ATOMIC_NUM => default_valence(z),
        _ => -1,
    }
}

/// Elements left of carbon, for which a positive charge removes (rather than adds) valence.
pub(crate) fn is_early_atom(atomic_num: u8) -> bool {
    matches!(
        atomic_num,
        3 | 4 | 5 | 11 | 12 | 13 | 19 | 20 | 21 | 22 | 30 | 31 | 32 | 37..=41 | 48..=51 | 55..=61
            | 72 | 73 | 80..=83 | 87..=93 | 104..=118
    )
}

/// RDKit's electronegativity order: more outer electrons wins, then the lighter element.
pub(crate) fn more_electronegative(a: u8, b: u8) -> bool {
    let (na, nb) = (outer_electrons(a), outer_electrons(b));
    na > nb || (na == nb && a < b)
}

/// Mass of an atom as RDKit's `Atom::getMass` gives it: the isotope's mass when labelled (the
/// mass number when RDKit's table lacks that isotope; 0 for a labelled dummy atom), else the
/// standard atomic weight.
pub(crate) fn atom_mass(atomic_num: u8, isotope: u16) -> f64 {
    if isotope == 0 {
        return atomic_weight(atomic_num);
    }
    match ISOTOPE_MASSES.binary_search_by_key(&(atomic_num, isotope), |&(z, a, _)| (z, a)) {
        Ok(i) => ISOTOPE_MASSES[i].2,
        Err(_) if atomic_num == 0 => 0.0,
        Err(_) => f64::from(isotope),
    }
}

/// `trunc(mass - standard weight)`, the Morgan invariant's mass term.
pub(crate) fn delta_mass(atomic_num: u8, isotope: u16) -> i32 {
    if isotope == 0 {
        return 0;
    }
    (atom_mass(atomic_num, isotope) - atomic_weight(atomic_num)).trunc() as i32
}
