//! Hand-written chemistry cases. Expectations come from chemistry / RDKit documentation, not
//! from this crate's output.

use mole_featurize::{distance_matrix, morgan_environments, parse_smiles, Molecule, SmilesError};

fn mol(smiles: &str) -> Molecule {
    parse_smiles(smiles).unwrap_or_else(|e| panic!("{smiles}: {e}"))
}

fn hs(m: &Molecule) -> Vec<u32> {
    m.atoms().iter().map(|a| a.total_num_hs()).collect()
}

fn aromatic(m: &Molecule) -> Vec<bool> {
    m.atoms().iter().map(|a| a.is_aromatic()).collect()
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Two spellings of the same molecule have the same multiset of environments at every radius
/// (atom order may differ between spellings).
fn same_environments(a: &str, b: &str) {
    let (ma, mb) = (mol(a), mol(b));
    let (ea, eb) = (morgan_environments(&ma, 2), morgan_environments(&mb, 2));
    for r in 0..3 {
        assert_eq!(sorted(&ea[r]), sorted(&eb[r]), "{a} vs {b}, radius {r}");
    }
    assert_eq!(sorted(&aromatic(&ma)), sorted(&aromatic(&mb)), "{a} vs {b}");
    assert_eq!(sorted(&hs(&ma)), sorted(&hs(&mb)), "{a} vs {b}");
}

#[test]
fn explicit_hydrogen_atoms_are_folded_into_counts() {
    let m = mol("[H]C([H])([H])[H]");
    assert_eq!(m.num_atoms(), 1);
    assert_eq!(m.atoms()[0].total_num_hs(), 4);
    assert_eq!(m.atoms()[0].degree(), 0);
    assert_eq!(m.atoms()[0].total_degree(), 4);
    same_environments("[H]C([H])([H])[H]", "C");
    same_environments("[H]OC", "OC");
    // an H on an aromatic carbon
    same_environments("[H]c1ccccc1", "c1ccccc1");
}

#[test]
fn isotopes() {
    // deuterium stays an atom; its mass 2.014 vs 1.008 gives delta mass 1
    let m = mol("[2H]C");
    assert_eq!(m.num_atoms(), 2);
    assert_eq!(m.atoms()[0].atomic_num(), 1);
    assert_eq!(m.atoms()[0].isotope(), 2);
    assert_eq!(m.atoms()[0].delta_mass(), 1);
    assert_eq!(m.atoms()[1].total_num_hs(), 3);
    assert_eq!(m.atoms()[1].degree(), 1);

    // 13C: 13.003 - 12.011 truncates to 0; 14C: 14.003 - 12.011 -> 1
    let c13 = mol("[13CH4]");
    assert_eq!(c13.atoms()[0].isotope(), 13);
    assert_eq!(c13.atoms()[0].delta_mass(), 0);
    assert_eq!(c13.atoms()[0].total_num_hs(), 4);
    let c14 = mol("[14CH4]");
    assert_eq!(c14.atoms()[0].delta_mass(), 1);
    // the isotope changes the radius-0 identifier only through the mass term
    let plain = morgan_environments(&mol("C"), 0);
    assert_eq!(morgan_environments(&c13, 0), plain);
    assert_ne!(morgan_environments(&c14, 0), plain);
}

#[test]
fn bracket_atoms_have_exactly_the_written_hydrogens() {
    assert_eq!(hs(&mol("[CH2]")), vec![2]);
    assert_eq!(hs(&mol("[NH4+]")), vec![4]);
    assert_eq!(hs(&mol("[OH-]")), vec![1]);
    assert_eq!(hs(&mol("[C@@H](F)(Cl)Br")), vec![1, 0, 0, 0]);
    // organic subset: smallest allowed valence >= bond orders
    assert_eq!(hs(&mol("CS(=O)(=O)C")), vec![3, 0, 0, 0, 3]);
    assert_eq!(hs(&mol("OP(=O)(O)O")), vec![1, 0, 0, 1, 1]);
    assert_eq!(hs(&mol("C#N")), vec![1, 0]);
}

#[test]
fn charged_aromatics() {
    let m = mol("c1cc[n+](C)cc1");
    assert_eq!(
        aromatic(&m),
        vec![true, true, true, true, false, true, true]
    );
    assert_eq!(m.atoms()[3].formal_charge(), 1);
    assert_eq!(m.atoms()[3].total_num_hs(), 0);

    let m = mol("[O-][n+]1ccccc1");
    assert_eq!(
        aromatic(&m),
        vec![false, true, true, true, true, true, true]
    );
    assert_eq!(m.atoms()[0].formal_charge(), -1);
    assert_eq!(hs(&m), vec![0, 0, 1, 1, 1, 1, 1]);
    same_environments("[O-][n+]1ccccc1", "[O-][N+]1=CC=CC=C1");

    // cyclopentadienyl anion and tropylium cation are aromatic (6 pi electrons)
    assert!(aromatic(&mol("[CH-]1C=CC=C1")).iter().all(|&a| a));
    assert!(aromatic(&mol("[CH+]1C=CC=CC=C1")).iter().all(|&a| a));
}

#[test]
fn pyrrole_and_other_heteroaromatics() {
    let m = mol("c1cc[nH]c1");
    assert!(aromatic(&m).iter().all(|&a| a));
    assert_eq!(hs(&m), vec![1, 1, 1, 1, 1]);
    same_environments("c1cc[nH]c1", "C1=CNC=C1");
    same_environments("c1ccoc1", "C1=COC=C1");
    same_environments("c1ccsc1", "C1=CSC=C1");
    same_environments("c1ccncc1", "C1=CC=NC=C1");
    // N-methylpyrrole: aromatic n with three bonds gets no H
    let m = mol("Cn1cccc1");
    assert_eq!(hs(&m), vec![3, 0, 1, 1, 1, 1]);
    assert!(aromatic(&m)[1..].iter().all(|&a| a));
}

#[test]
fn kekule_and_aromatic_spellings_agree() {
    same_environments("c1ccccc1", "C1=CC=CC=C1");
    same_environments("Cc1ccccc1O", "CC1=CC=CC=C1O");
    same_environments("c1ccc2ccccc2c1", "C1=CC=C2C=CC=CC2=C1");
    // 2-pyridone is aromatic in RDKit's model (the C=O carbon gives its vacant orbital, the
    // NH two electrons)
    same_environments("O=c1cccc[nH]1", "O=C1C=CC=CN1");
    assert!(aromatic(&mol("O=C1C=CC=CN1"))[1..].iter().all(|&a| a));
}

#[test]
fn non_aromatic_rings() {
    // 4 pi electrons / sp3 carbon / 8 pi electrons
    assert!(aromatic(&mol("C1=CC=CC1")).iter().all(|&a| !a));
    assert!(aromatic(&mol("C1=CC=CC=CC=C1")).iter().all(|&a| !a));
    // para-quinone: the carbonyl carbons have no electron to give
    assert!(aromatic(&mol("O=C1C=CC(=O)C=C1")).iter().all(|&a| !a));
    assert!(aromatic(&mol("C1CCCCC1")).iter().all(|&a| !a));
}

#[test]
fn nitro_groups_are_charge_separated() {
    same_environments("CN(=O)=O", "C[N+](=O)[O-]");
    let m = mol("CN(=O)=O");
    let charges: Vec<i32> = m.atoms().iter().map(|a| a.formal_charge()).collect();
    assert_eq!(sorted(&charges), vec![-1, 0, 0, 1]);
    assert_eq!(charges[1], 1);
}

#[test]
fn ring_membership_counts_any_cycle() {
    let m = mol("C1CC1CC2CCCC2");
    let in_ring: Vec<bool> = m.atoms().iter().map(|a| a.in_ring()).collect();
    assert_eq!(
        in_ring,
        vec![true, true, true, false, true, true, true, true, true]
    );
    // bicyclic bridgehead and spiro atoms
    assert!(mol("C12CCC1CC2").atoms().iter().all(|a| a.in_ring()));
    assert!(mol("C1CCC11CCCC1").atoms().iter().all(|a| a.in_ring()));
}

#[test]
fn salts_and_isolated_atoms() {
    let m = mol("[Na+].[Cl-]");
    assert_eq!(m.num_atoms(), 2);
    let envs = morgan_environments(&m, 2);
    assert!(envs[0].iter().all(|e| e.is_some()));
    assert!(envs[1].iter().all(|e| e.is_none()));
    assert!(envs[2].iter().all(|e| e.is_none()));
    assert_eq!(distance_matrix(&m), vec![vec![0, -1], vec![-1, 0]]);
    assert_eq!(hs(&m), vec![0, 0]);

    let m = mol("CC(=O)[O-].[Li+]");
    let envs = morgan_environments(&m, 2);
    assert!(envs[1][..4].iter().all(|e| e.is_some()));
    assert_eq!(envs[1][4], None);
    assert_eq!(m.atoms()[4].symbol(), "Li");
    // a metal with a bond keeps its environments
    let m = mol("C[Fe]C");
    assert!(morgan_environments(&m, 2)[2].iter().all(|e| e.is_some()));
}

#[test]
fn distances() {
    let m = mol("CCOC.C");
    assert_eq!(
        distance_matrix(&m),
        vec![
            vec![0, 1, 2, 3, -1],
            vec![1, 0, 1, 2, -1],
            vec![2, 1, 0, 1, -1],
            vec![3, 2, 1, 0, -1],
            vec![-1, -1, -1, -1, 0],
        ]
    );
    let ring = distance_matrix(&mol("C1CCCCC1"));
    assert_eq!(ring[0], vec![0, 1, 2, 3, 2, 1]);
}

#[test]
fn smiles_syntax_features() {
    // ring closure with %nn and bond symbols on either side
    same_environments("C%10CCCCC%10", "C1CCCCC1");
    same_environments("C=1CCCCC1", "C1CCCCC=1");
    assert_eq!(mol("C1CCCCC=1").bonds().len(), 6);
    // charges written in several ways
    assert_eq!(mol("[Fe++]").atoms()[0].formal_charge(), 2);
    assert_eq!(mol("[Fe+2]").atoms()[0].formal_charge(), 2);
    assert_eq!(mol("[O--]").atoms()[0].formal_charge(), -2);
    assert_eq!(mol("[N-3]").atoms()[0].formal_charge(), -3);
    // chirality forms and atom classes are accepted and ignored
    same_environments("[C@TH1H](F)(Cl)Br", "C(F)(Cl)Br");
    same_environments("[CH3:7]C", "CC");
    same_environments("F/C=C/F", "FC=CF");
    // aromatic selenium / arsenic bracket atoms
    assert!(aromatic(&mol("c1cc[se]c1")).iter().all(|&a| a));
    // dummy atom
    assert_eq!(mol("*C").atoms()[0].atomic_num(), 0);
}

#[test]
fn invalid_smiles_are_errors() {
    let cases = [
        "",
        "   ",
        "C1CC",
        "C(C",
        "C)C",
        "CC=",
        "C(=O",
        "=C",
        "C==C",
        "()",
        "C()",
        "[C",
        "[Zz]",
        "Xx",
        "C%1",
        "C11",
        "C12CC12",
        "C((C))",
        "C(-1CC1)C",
        "C(.C)C",
        "C(1CC1)C",
        "[Fe+++]",
        "c1cccc1",
        "n1cccc1",
        "c1ccccc",
        "c",
        "C(C)(C)(C)(C)C",
        "F(C)C",
        "[NH4]",
        ".C",
        "C..C",
        "C.",
        "[13]",
        "[C@XY]",
        "[C+++++++++++++++++++++]",
    ];
    let accepted: Vec<&str> = cases
        .iter()
        .copied()
        .filter(|s| parse_smiles(s).is_ok())
        .collect();
    assert!(accepted.is_empty(), "accepted invalid SMILES: {accepted:?}");
    assert_eq!(parse_smiles(""), Err(SmilesError::Empty));
    assert!(matches!(
        parse_smiles("C1CC"),
        Err(SmilesError::UnclosedRing { pos: 1, label: 1 })
    ));
    assert!(matches!(
        parse_smiles("CC(C"),
        Err(SmilesError::UnbalancedParenthesis { pos: 2 })
    ));
    assert!(matches!(
        parse_smiles("c1cccc1"),
        Err(SmilesError::Kekulization { .. })
    ));
    assert!(matches!(
        parse_smiles("CC(C)(C)(C)C"),
        Err(SmilesError::Valence { atom: 1, .. })
    ));
    assert!(matches!(
        parse_smiles("C[Qq]"),
        Err(SmilesError::UnknownElement { pos: 2, .. })
    ));
    // messages mention the position
    let msg = parse_smiles("CC(C").map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("byte 2"), "{msg}");
}
