//! Pure-Rust featurisation for MolE: SMILES → RDKit-compatible molecular graph → Morgan
//! atom-environment identifiers (radius 0, 1, 2), topological distances, vocabulary tokens
//! and padded model batches.
//!
//! The sanitisation reproduces RDKit's `MolFromSmiles` (hydrogen handling, valence model,
//! kekulisation, default aromaticity model) so that the identifiers match RDKit exactly.

mod aromaticity;
pub mod batch;
mod elements;
pub mod io;
mod isotopes;
mod kekulize;
pub mod molecule;
pub mod molfile;
pub mod morgan;
mod rings;
mod sanitize;
pub mod scaffold;
pub mod sdf;
pub mod smiles;
pub mod smiles_writer;
pub mod split;
mod sssr;
pub mod vocab;

use serde::{Deserialize, Serialize};

pub use batch::{collate, Batch, MoleInput};
pub use io::{
    parquet_string_rows, read_molecules, read_parquet_strings, IoError, MoleculeReader,
    MoleculeRecord, ParquetStringRows,
};
pub use molecule::{Atom, Bond, BondType, Molecule};
pub use molfile::{parse_molblock, MolfileError};
pub use morgan::{distance_matrix, morgan_environments};
pub use sdf::{SdfReader, SdfRecord};
pub use smiles::{parse_smiles, SmilesError};
pub use smiles_writer::to_smiles;
pub use vocab::{VocabError, Vocabulary};

/// Everything the model needs from one molecule (the fields of the featurisation fixture).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturizedMolecule {
    pub smiles: String,
    pub num_atoms: usize,
    pub morgan_r0: Vec<u32>,
    pub morgan_r1: Vec<Option<u32>>,
    pub morgan_r2: Vec<Option<u32>>,
    /// Vocabulary token of each atom's radius-0 identifier (UNK if unknown); no CLS.
    pub tokens: Vec<u32>,
    pub dist: Vec<Vec<i32>>,
}

/// Largest molecule (heavy atoms, after hydrogens are removed) that [`featurize`] accepts. The
/// distance matrix and the model's attention grow with the square of the atom count: at this
/// size a molecule's distances take 4 MB and one attention layer of the base model about
/// 50 MB, while a 100,000-atom SMILES would need 40 GB before the model even runs. Drug-like
/// molecules have under 100 heavy atoms; the largest ChEMBL entries a few hundred.
pub const DEFAULT_MAX_ATOMS: usize = 1000;

/// Parses `smiles` and computes identifiers, tokens and distances; molecules of more than
/// [`DEFAULT_MAX_ATOMS`] heavy atoms are rejected ([`SmilesError::TooLarge`]).
pub fn featurize(smiles: &str, vocab: &Vocabulary) -> Result<FeaturizedMolecule, SmilesError> {
    featurize_with_limit(smiles, vocab, DEFAULT_MAX_ATOMS)
}

/// [`featurize`] with another size limit (`max_atoms` heavy atoms): larger molecules are
/// rejected with [`SmilesError::TooLarge`] before any quadratic work is done.
pub fn featurize_with_limit(
    smiles: &str,
    vocab: &Vocabulary,
    max_atoms: usize,
) -> Result<FeaturizedMolecule, SmilesError> {
    let mol = parse_smiles(smiles)?;
    if mol.num_atoms() > max_atoms {
        return Err(SmilesError::TooLarge {
            atoms: mol.num_atoms(),
            limit: max_atoms,
        });
    }
    Ok(featurize_molecule(smiles, &mol, vocab))
}

/// Featurises an already parsed molecule.
pub fn featurize_molecule(smiles: &str, mol: &Molecule, vocab: &Vocabulary) -> FeaturizedMolecule {
    let mut envs = morgan_environments(mol, 2).into_iter();
    let r0: Vec<u32> = envs
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let morgan_r1 = envs.next().unwrap_or_default();
    let morgan_r2 = envs.next().unwrap_or_default();
    let tokens = r0.iter().map(|&id| vocab.token(id)).collect();
    FeaturizedMolecule {
        smiles: smiles.to_string(),
        num_atoms: mol.num_atoms(),
        morgan_r0: r0,
        morgan_r1,
        morgan_r2,
        tokens,
        dist: distance_matrix(mol),
    }
}
