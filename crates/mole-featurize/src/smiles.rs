//! SMILES parsing (OpenSMILES syntax) into a raw graph, followed by RDKit-compatible
//! sanitisation (see [`crate::sanitize`]).
//!
//! The parser never panics: every malformed input yields a [`SmilesError`] carrying the byte
//! position of the problem.

use crate::elements;
use crate::molecule::Molecule;

/// Why a SMILES string could not be turned into a molecule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmilesError {
    #[error("empty SMILES")]
    Empty,
    #[error("unexpected character {ch:?} at byte {pos}")]
    UnexpectedChar { pos: usize, ch: char },
    #[error("syntax error at byte {pos}: {reason}")]
    Syntax { pos: usize, reason: &'static str },
    #[error("unknown element {symbol:?} at byte {pos}")]
    UnknownElement { pos: usize, symbol: String },
    #[error("bad bracket atom at byte {pos}: {reason}")]
    BadBracketAtom { pos: usize, reason: &'static str },
    #[error("unbalanced parenthesis at byte {pos}")]
    UnbalancedParenthesis { pos: usize },
    #[error("bond symbol at byte {pos} is not followed by an atom")]
    DanglingBond { pos: usize },
    #[error("ring bond {label} opened at byte {pos} is never closed")]
    UnclosedRing { pos: usize, label: u32 },
    #[error("ring bond {label} at byte {pos} bonds an atom to itself or duplicates a bond")]
    InvalidRingClosure { pos: usize, label: u32 },
    #[error("atom {atom} ({symbol}) at byte {pos}: explicit valence {valence} is greater than permitted")]
    Valence {
        atom: usize,
        pos: usize,
        symbol: &'static str,
        valence: i32,
    },
    #[error("atom {atom} at byte {pos}: non-ring atom marked aromatic")]
    NonRingAromatic { atom: usize, pos: usize },
    #[error(
        "can't kekulize molecule: aromatic atom {atom} at byte {pos} cannot be given a double bond"
    )]
    Kekulization { atom: usize, pos: usize },
    #[error("molecule too large: {atoms} heavy atoms, the limit is {limit} (--max-atoms / data.max_atoms)")]
    TooLarge { atoms: usize, limit: usize },
}

/// Parse and sanitise a SMILES string like RDKit's `MolFromSmiles` (sanitize=True, Hs removed).
pub fn parse_smiles(smiles: &str) -> Result<Molecule, SmilesError> {
    let raw = parse_raw(smiles)?;
    crate::sanitize::sanitize(raw)
}

/// Largest molecule accepted (indices are stored as u32 and H counts as u8).
pub const MAX_ATOMS: usize = 1 << 20;

/// Bond as written in the SMILES (before sanitisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawBondOrder {
    Single,
    Double,
    Triple,
    Quadruple,
    Aromatic,
    /// `->` / `<-` (RDKit extension), stored from donor to acceptor.
    Dative,
    /// `~` (RDKit accepts the SMARTS "any bond" in SMILES).
    Unspecified,
}

#[derive(Debug, Clone)]
pub(crate) struct RawAtom {
    pub atomic_num: u8,
    pub isotope: u16,
    pub charge: i8,
    /// Written H count of a bracket atom (organic atoms: 0).
    pub explicit_hs: u8,
    /// Bracket atoms get exactly the written H count (RDKit `noImplicit`).
    pub bracket: bool,
    /// Written lowercase.
    pub aromatic: bool,
    /// Unpaired electrons given by the source (a molfile's `M  RAD`); SMILES gives none, the
    /// sanitiser derives bracket atoms' radicals from their hydrogen deficit.
    pub radicals: u8,
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct RawBond {
    pub begin: usize,
    pub end: usize,
    pub order: RawBondOrder,
    /// Written `/` or `\\` (double-bond stereo).
    pub directional: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RawMolecule {
    pub atoms: Vec<RawAtom>,
    pub bonds: Vec<RawBond>,
}

/// Bond symbol as written; `/` and `\` are single bonds whose direction only matters to
/// hydrogen removal (stereo is otherwise ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BondSymbol {
    Single,
    Directional,
    Double,
    Triple,
    Quadruple,
    Aromatic,
    /// `->`: from the atom before to the atom after.
    Dative,
    /// `<-`: from the atom after to the atom before.
    DativeBack,
    Any,
}

struct OpenRing {
    label: u32,
    atom: usize,
    bond: Option<BondSymbol>,
    pos: usize,
}

/// The bond symbol starting with `c` (`next` is the byte after it) and its length in bytes.
fn bond_symbol(c: u8, next: Option<u8>) -> Option<(BondSymbol, usize)> {
    match (c, next) {
        (b'-', Some(b'>')) => Some((BondSymbol::Dative, 2)),
        (b'<', Some(b'-')) => Some((BondSymbol::DativeBack, 2)),
        (b'-', _) => Some((BondSymbol::Single, 1)),
        // RDKit also reads a doubled backslash (an escaping accident) as one `\`
        (b'\\', Some(b'\\')) => Some((BondSymbol::Directional, 2)),
        (b'/' | b'\\', _) => Some((BondSymbol::Directional, 1)),
        (b'=', _) => Some((BondSymbol::Double, 1)),
        (b'#', _) => Some((BondSymbol::Triple, 1)),
        (b'$', _) => Some((BondSymbol::Quadruple, 1)),
        (b':', _) => Some((BondSymbol::Aromatic, 1)),
        (b'~', _) => Some((BondSymbol::Any, 1)),
        _ => None,
    }
}

fn resolve_bond(symbol: Option<BondSymbol>, a: &RawAtom, b: &RawAtom) -> RawBondOrder {
    match symbol {
        // RDKit: a `/` or `\` between two aromatic atoms is an aromatic bond too
        None | Some(BondSymbol::Directional) if a.aromatic && b.aromatic => RawBondOrder::Aromatic,
        None | Some(BondSymbol::Single | BondSymbol::Directional) => RawBondOrder::Single,
        Some(BondSymbol::Dative | BondSymbol::DativeBack) => RawBondOrder::Dative,
        Some(BondSymbol::Any) => RawBondOrder::Unspecified,
        Some(BondSymbol::Double) => RawBondOrder::Double,
        Some(BondSymbol::Triple) => RawBondOrder::Triple,
        Some(BondSymbol::Quadruple) => RawBondOrder::Quadruple,
        Some(BondSymbol::Aromatic) => RawBondOrder::Aromatic,
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    mol: RawMolecule,
    /// Neighbour lists for the duplicate-bond check on ring closures.
    neighbors: Vec<Vec<usize>>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }
    fn char_at(&self, pos: usize) -> char {
        std::str::from_utf8(self.bytes.get(pos..).unwrap_or(&[]))
            .ok()
            .and_then(|s| s.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn add_atom(&mut self, atom: RawAtom) -> Result<usize, SmilesError> {
        if self.mol.atoms.len() >= MAX_ATOMS {
            return Err(SmilesError::TooLarge {
                atoms: self.mol.atoms.len() + 1,
                limit: MAX_ATOMS,
            });
        }
        self.mol.atoms.push(atom);
        self.neighbors.push(Vec::new());
        Ok(self.mol.atoms.len() - 1)
    }

    fn add_bond(&mut self, begin: usize, end: usize, symbol: Option<BondSymbol>) {
        self.push_bond(begin, end, symbol);
        self.neighbors[begin].push(end);
        self.neighbors[end].push(begin);
    }

    fn push_bond(&mut self, begin: usize, end: usize, symbol: Option<BondSymbol>) {
        let order = resolve_bond(symbol, &self.mol.atoms[begin], &self.mol.atoms[end]);
        let (begin, end) = if symbol == Some(BondSymbol::DativeBack) {
            (end, begin)
        } else {
            (begin, end)
        };
        self.mol.bonds.push(RawBond {
            begin,
            end,
            order,
            directional: symbol == Some(BondSymbol::Directional),
        });
    }

    fn read_number(&mut self, max_digits: usize) -> Option<u32> {
        let start = self.pos;
        let mut value: u32 = 0;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() || self.pos - start >= max_digits {
                break;
            }
            value = value * 10 + u32::from(c - b'0');
            self.pos += 1;
        }
        (self.pos > start).then_some(value)
    }

    /// Organic-subset atom (or `*`) outside brackets.
    fn parse_organic(&mut self) -> Result<RawAtom, SmilesError> {
        let pos = self.pos;
        let c = self.peek().unwrap_or(0);
        let next = self.peek_at(1);
        let (atomic_num, aromatic, len) = match (c, next) {
            (b'C', Some(b'l')) => (17, false, 2),
            (b'B', Some(b'r')) => (35, false, 2),
            (b'B', _) => (5, false, 1),
            (b'C', _) => (6, false, 1),
            (b'N', _) => (7, false, 1),
            (b'O', _) => (8, false, 1),
            (b'P', _) => (15, false, 1),
            (b'S', _) => (16, false, 1),
            (b'F', _) => (9, false, 1),
            (b'I', _) => (53, false, 1),
            (b'b', _) => (5, true, 1),
            (b'c', _) => (6, true, 1),
            (b'n', _) => (7, true, 1),
            (b'o', _) => (8, true, 1),
            (b'p', _) => (15, true, 1),
            (b's', _) => (16, true, 1),
            (b'*', _) => (0, false, 1),
            _ => {
                return Err(SmilesError::UnexpectedChar {
                    pos,
                    ch: self.char_at(pos),
                })
            }
        };
        self.pos += len;
        Ok(RawAtom {
            atomic_num,
            isotope: 0,
            charge: 0,
            explicit_hs: 0,
            // a dummy never gets implicit hydrogens
            bracket: atomic_num == 0,
            aromatic,
            radicals: 0,
            pos,
        })
    }

    /// `[isotope? symbol chirality? hcount? charge? class?]`, starting at `[`.
    fn parse_bracket(&mut self) -> Result<RawAtom, SmilesError> {
        let start = self.pos;
        self.pos += 1; // '['
        let bad = |reason| SmilesError::BadBracketAtom { pos: start, reason };
        let isotope = match self.read_number(5) {
            Some(v) => u16::try_from(v).map_err(|_| bad("isotope out of range"))?,
            None => 0,
        };
        // element symbol
        let sym_pos = self.pos;
        let c = self.peek().ok_or(bad("unterminated bracket atom"))?;
        let (atomic_num, aromatic) = if c == b'*' {
            self.pos += 1;
            (0, false)
        } else if c == b'#' {
            // RDKit extension: `[#6]`, an element by atomic number
            self.pos += 1;
            let z = self
                .read_number(3)
                .ok_or(bad("'#' must be followed by an atomic number"))?;
            let z = u8::try_from(z)
                .ok()
                .filter(|&z| z <= 118)
                .ok_or(bad("atomic number out of range"))?;
            (z, false)
        } else if c.is_ascii_uppercase() {
            let two = self
                .peek_at(1)
                .filter(|n| n.is_ascii_lowercase())
                .and_then(|n| {
                    let s = [c, n];
                    std::str::from_utf8(&s)
                        .ok()
                        .and_then(elements::atomic_number)
                });
            if let Some(z) = two {
                self.pos += 2;
                (z, false)
            } else {
                let s = [c];
                let z = std::str::from_utf8(&s)
                    .ok()
                    .and_then(elements::atomic_number)
                    .ok_or_else(|| SmilesError::UnknownElement {
                        pos: sym_pos,
                        symbol: (c as char).to_string(),
                    })?;
                self.pos += 1;
                (z, false)
            }
        } else if c.is_ascii_lowercase() {
            let two: Option<u8> = match (c, self.peek_at(1)) {
                (b's', Some(b'e')) => Some(34),
                (b'a', Some(b's')) => Some(33),
                (b't', Some(b'e')) => Some(52),
                (b's', Some(b'i')) => Some(14),
                _ => None,
            };
            if let Some(z) = two {
                self.pos += 2;
                (z, true)
            } else {
                let z = match c {
                    b'b' => 5,
                    b'c' => 6,
                    b'n' => 7,
                    b'o' => 8,
                    b'p' => 15,
                    b's' => 16,
                    _ => {
                        return Err(SmilesError::UnknownElement {
                            pos: sym_pos,
                            symbol: (c as char).to_string(),
                        })
                    }
                };
                self.pos += 1;
                (z, true)
            }
        } else {
            return Err(bad("missing element symbol"));
        };
        // chirality (parsed, ignored)
        if self.peek() == Some(b'@') {
            self.pos += 1;
            if self.peek() == Some(b'@') {
                self.pos += 1;
            } else {
                let class = (self.peek(), self.peek_at(1));
                let known = matches!(
                    class,
                    (Some(b'T'), Some(b'H'))
                        | (Some(b'A'), Some(b'L'))
                        | (Some(b'S'), Some(b'P'))
                        | (Some(b'T'), Some(b'B'))
                        | (Some(b'O'), Some(b'H'))
                );
                if known {
                    // the number is optional, as RDKit reads it
                    self.pos += 2;
                    self.read_number(2);
                }
            }
        }
        // hydrogen count
        let mut explicit_hs = 0u8;
        if self.peek() == Some(b'H') {
            self.pos += 1;
            explicit_hs = match self.read_number(2) {
                Some(n) => u8::try_from(n).map_err(|_| bad("hydrogen count out of range"))?,
                None => 1,
            };
        }
        // charge
        let mut charge: i32 = 0;
        if let Some(sign @ (b'+' | b'-')) = self.peek() {
            let unit = if sign == b'+' { 1 } else { -1 };
            self.pos += 1;
            if let Some(n) = self.read_number(3) {
                charge = unit * n as i32;
            } else {
                // RDKit reads `+`, `++`, `-` and `--`, not longer runs
                charge = unit;
                if self.peek() == Some(sign) {
                    self.pos += 1;
                    charge += unit;
                }
            }
            if charge.abs() > 127 {
                return Err(bad("charge out of range"));
            }
        }
        // atom class (ignored)
        if self.peek() == Some(b':') {
            self.pos += 1;
            if self.read_number(9).is_none() {
                return Err(bad("atom class without a number"));
            }
        }
        match self.peek() {
            Some(b']') => self.pos += 1,
            Some(_) => return Err(bad("unexpected character inside bracket atom")),
            None => return Err(bad("unterminated bracket atom")),
        }
        Ok(RawAtom {
            atomic_num,
            isotope,
            charge: charge as i8,
            explicit_hs,
            bracket: true,
            aromatic,
            radicals: 0,
            pos: start,
        })
    }

    fn parse(mut self) -> Result<RawMolecule, SmilesError> {
        if self.bytes.is_empty() {
            return Err(SmilesError::Empty);
        }
        let mut prev: Option<usize> = None;
        let mut pending: Option<(BondSymbol, usize)> = None;
        let mut branches: Vec<(usize, usize)> = Vec::new(); // (atom, position of '(')
        let mut rings: Vec<OpenRing> = Vec::new();
        // a '(' still waiting for the first atom of its branch
        let mut branch_open = false;
        let mut closures: Vec<(u32, usize, usize, Option<BondSymbol>)> = Vec::new();
        // a '.' still waiting for the atom that starts the next fragment
        let mut open_dot: Option<usize> = None;
        while let Some(c) = self.peek() {
            let pos = self.pos;
            match c {
                b'(' => {
                    let atom = prev.ok_or(SmilesError::Syntax {
                        pos,
                        reason: "branch without a preceding atom",
                    })?;
                    if pending.is_some() {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "bond symbol before a branch",
                        });
                    }
                    if self.peek_at(1) == Some(b')') {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "empty branch",
                        });
                    }
                    if matches!(self.peek_at(1), Some(b'(' | b'.' | b'%' | b'0'..=b'9')) {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "a branch must start with an atom or a bond",
                        });
                    }
                    branches.push((atom, pos));
                    branch_open = true;
                    self.pos += 1;
                }
                b')' => {
                    if let Some((_, bpos)) = pending {
                        return Err(SmilesError::DanglingBond { pos: bpos });
                    }
                    if let Some(dot) = open_dot {
                        return Err(SmilesError::Syntax {
                            pos: dot,
                            reason: "'.' must be followed by an atom",
                        });
                    }
                    let (atom, _) = branches
                        .pop()
                        .ok_or(SmilesError::UnbalancedParenthesis { pos })?;
                    prev = Some(atom);
                    self.pos += 1;
                }
                b'.' => {
                    if let Some((_, bpos)) = pending {
                        return Err(SmilesError::DanglingBond { pos: bpos });
                    }
                    if prev.is_none() {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "'.' without a preceding atom",
                        });
                    }
                    prev = None;
                    open_dot = Some(pos);
                    self.pos += 1;
                }
                b'0'..=b'9' | b'%' => {
                    let atom = prev.ok_or(SmilesError::Syntax {
                        pos,
                        reason: "ring bond without a preceding atom",
                    })?;
                    if branch_open {
                        // `(-1...`: RDKit wants an atom first in a branch
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "a branch must start with an atom or a bond",
                        });
                    }
                    let label = if c == b'%' {
                        self.pos += 1;
                        if self.peek() == Some(b'(') {
                            self.pos += 1;
                            let n = self.read_number(5).ok_or(SmilesError::Syntax {
                                pos,
                                reason: "bad %(nnn) ring bond label",
                            })?;
                            if self.peek() != Some(b')') {
                                return Err(SmilesError::Syntax {
                                    pos,
                                    reason: "bad %(nnn) ring bond label",
                                });
                            }
                            self.pos += 1;
                            n
                        } else {
                            let start = self.pos;
                            let n = self.read_number(2);
                            match n {
                                Some(n) if self.pos - start == 2 => n,
                                _ => {
                                    return Err(SmilesError::Syntax {
                                        pos,
                                        reason: "'%' must be followed by two digits",
                                    })
                                }
                            }
                        }
                    } else {
                        self.pos += 1;
                        u32::from(c - b'0')
                    };
                    let symbol = pending.take().map(|(s, _)| s);
                    if let Some(i) = rings.iter().position(|r| r.label == label) {
                        let open = rings.swap_remove(i);
                        // RDKit: when both ends carry a bond symbol, the opening one wins;
                        // `~` on a ring closure counts as no symbol
                        let written = |b: Option<BondSymbol>| b.filter(|&b| b != BondSymbol::Any);
                        let (bond, from_closing) = match (written(open.bond), written(symbol)) {
                            (Some(b), _) => (Some(b), false),
                            (None, b) => (b, b.is_some()),
                        };
                        if open.atom == atom || self.neighbors[open.atom].contains(&atom) {
                            return Err(SmilesError::InvalidRingClosure { pos, label });
                        }
                        // RDKit creates ring-closure bonds after the whole string, ordered by
                        // label, from the closing atom to the opening one (a dative symbol
                        // written at the opening atom points from there)
                        let dative =
                            matches!(bond, Some(BondSymbol::Dative | BondSymbol::DativeBack));
                        let (begin, end) = if dative && !from_closing {
                            (open.atom, atom)
                        } else {
                            (atom, open.atom)
                        };
                        self.neighbors[begin].push(end);
                        self.neighbors[end].push(begin);
                        closures.push((label, begin, end, bond));
                    } else {
                        rings.push(OpenRing {
                            label,
                            atom,
                            bond: symbol,
                            pos,
                        });
                    }
                }
                _ if bond_symbol(c, self.peek_at(1)).is_some() => {
                    if prev.is_none() {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "bond without a preceding atom",
                        });
                    }
                    if pending.is_some() {
                        return Err(SmilesError::Syntax {
                            pos,
                            reason: "two consecutive bond symbols",
                        });
                    }
                    let (symbol, len) =
                        bond_symbol(c, self.peek_at(1)).unwrap_or((BondSymbol::Single, 1));
                    pending = Some((symbol, pos));
                    self.pos += len;
                }
                _ => {
                    let atom = if c == b'[' {
                        self.parse_bracket()?
                    } else {
                        self.parse_organic()?
                    };
                    let idx = self.add_atom(atom)?;
                    if let Some(p) = prev {
                        let symbol = pending.take().map(|(s, _)| s);
                        self.add_bond(p, idx, symbol);
                    }
                    prev = Some(idx);
                    open_dot = None;
                    branch_open = false;
                }
            }
        }
        if let Some((_, bpos)) = pending {
            return Err(SmilesError::DanglingBond { pos: bpos });
        }
        if let Some(pos) = open_dot {
            return Err(SmilesError::Syntax {
                pos,
                reason: "'.' must be followed by an atom",
            });
        }
        if let Some(&(_, bpos)) = branches.last() {
            return Err(SmilesError::UnbalancedParenthesis { pos: bpos });
        }
        if let Some(open) = rings.iter().min_by_key(|r| r.pos) {
            return Err(SmilesError::UnclosedRing {
                pos: open.pos,
                label: open.label,
            });
        }
        closures.sort_by_key(|&(label, ..)| label);
        for (_, begin, end, bond) in closures {
            self.push_bond(begin, end, bond);
        }
        Ok(self.mol)
    }
}

/// The part of `input` RDKit's `MolFromSmiles` reads: up to the first space or tab (the rest
/// is a name, or a CXSMILES extension `|...|`), or, when the string starts with whitespace or
/// has none, everything up to a newline without the surrounding whitespace. Returns the text
/// ending where the SMILES ends and the byte where it starts.
fn smiles_part(input: &str) -> Result<(&str, usize), SmilesError> {
    if let Some(cut) = input.find([' ', '\t']).filter(|&cut| cut > 0) {
        let rest = input[cut..].trim();
        if let Some(extension) = rest.strip_prefix('|') {
            if !extension.contains('|') {
                return Err(SmilesError::Syntax {
                    pos: input.len() - rest.len(),
                    reason: "CXSMILES extension without its closing '|'",
                });
            }
        }
        return Ok((&input[..cut], 0));
    }
    let line = input.split('\n').next().unwrap_or_default().trim_end();
    let start = line.len() - line.trim_start().len();
    Ok((line, start))
}

/// Parse the SMILES syntax only (no valence model, no aromaticity).
pub(crate) fn parse_raw(smiles: &str) -> Result<RawMolecule, SmilesError> {
    let (text, start) = smiles_part(smiles)?;
    if start == text.len() {
        return Err(SmilesError::Empty);
    }
    let parser = Parser {
        bytes: text.as_bytes(),
        pos: start,
        mol: RawMolecule::default(),
        neighbors: Vec::new(),
    };
    parser.parse()
}
