//! MDL molfiles (V2000 and V3000 connection tables) read as RDKit 2022.09's `MolFromMolBlock`
//! reads them (sanitize, remove hydrogens), then sanitised like a SMILES:
//!
//! - atoms: element (`D`/`T` are hydrogen isotopes; `R#`, `A`, `Q`, `*`, `L`… are dummy atoms),
//!   charge, isotope (V2000 mass difference or `M  ISO`; V3000 `MASS=`), radicals (`M  RAD`,
//!   `RAD=`), the valence field (`vvv`, `VAL=`: the atom's hydrogens are then fixed), the query
//!   H count (`hhh` ≥ 1: no implicit hydrogens);
//! - the first `M  CHG` or `M  RAD` line resets every atom-block charge, as in RDKit;
//! - bonds: single, double, triple, aromatic (type 4, kekulised like a SMILES's aromatic
//!   bonds), dative (V3000 type 9), "any" (type 8, V2000 9 and 10: no valence);
//! - hydrogen atoms are folded into their neighbour's H count with RDKit's `removeHs` rules
//!   (isotopic, bridging, lone and stereo-defining hydrogens stay atoms).
//!
//! Query bonds (types 5–7), atom lists and V3000 hydrogen bonds describe searches, not
//! molecules, and are refused. Stereo is read only where it decides whether a hydrogen stays.

use crate::elements;
use crate::molecule::Molecule;
use crate::smiles::{RawAtom, RawBond, RawBondOrder, RawMolecule, SmilesError};

/// Why a connection table could not be read; `line` counts from the block's first line (1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MolfileError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    /// The table was read but is not a valid molecule (valence, kekulisation, size).
    #[error("{0}")]
    Chemistry(String),
}

fn syntax(line: usize, reason: impl Into<String>) -> MolfileError {
    MolfileError::Syntax {
        line,
        reason: reason.into(),
    }
}

/// One atom as the table gives it, before hydrogens are removed.
#[derive(Debug, Clone, Default)]
struct TableAtom {
    atomic_num: u8,
    isotope: u16,
    charge: i8,
    radicals: u8,
    /// RDKit `noImplicit`: query atoms, a query H count, a valence field.
    no_implicit: bool,
    /// A query atom (a query symbol or a query H count): a hydrogen that is one stays an atom.
    query: bool,
    /// Valence field: 0 none, 15 zero valence, else the atom's total valence.
    valence: u8,
    explicit_hs: u8,
}

#[derive(Debug, Clone)]
struct TableBond {
    begin: usize,
    end: usize,
    order: RawBondOrder,
    /// Wedge, dash or wavy: decides whether a hydrogen on a double-bonded atom stays.
    has_direction: bool,
}

#[derive(Debug, Default)]
struct Table {
    atoms: Vec<TableAtom>,
    bonds: Vec<TableBond>,
}

/// Reads the molecule of a molfile (`lines` from its name line through `M  END`; lines after
/// `M  END` are ignored). Returns the molecule and the number of lines the block used.
pub fn parse_molblock(lines: &[&str]) -> Result<(Molecule, usize), MolfileError> {
    let (table, used) = read_table(lines)?;
    let raw = remove_hydrogens(table)?;
    let mol = crate::sanitize::sanitize(raw).map_err(chemistry_error)?;
    Ok((mol, used))
}

/// A sanitiser error in molfile terms: atoms by their 1-based number in the table, not by a
/// byte of a SMILES.
fn chemistry_error(e: SmilesError) -> MolfileError {
    let atom_no = |pos: usize| pos + 1;
    MolfileError::Chemistry(match e {
        SmilesError::Valence {
            pos,
            symbol,
            valence,
            ..
        } => format!(
            "atom {} ({symbol}): explicit valence {valence} is greater than permitted",
            atom_no(pos)
        ),
        SmilesError::NonRingAromatic { pos, .. } => {
            format!("atom {}: non-ring atom marked aromatic", atom_no(pos))
        }
        SmilesError::Kekulization { pos, .. } => format!(
            "can't kekulize molecule: aromatic atom {} cannot be given a double bond",
            atom_no(pos)
        ),
        other => other.to_string(),
    })
}

fn read_table(lines: &[&str]) -> Result<(Table, usize), MolfileError> {
    let counts = lines
        .get(3)
        .ok_or_else(|| syntax(lines.len() + 1, "the header ends before the counts line"))?;
    if counts.len() < 6 {
        return Err(syntax(4, "counts line too short"));
    }
    let version = if counts.len() > 35 {
        match counts.get(34..39) {
            Some("V3000") => 3000,
            Some("V2000") => 2000,
            other => {
                return Err(syntax(
                    4,
                    format!("unknown molfile version {:?}", other.unwrap_or(counts)),
                ))
            }
        }
    } else {
        2000
    };
    if version == 3000 {
        return read_v3000(lines);
    }
    let num_atoms = int_field(counts, 0, 3, 4, "atom count")?;
    let num_bonds = int_field(counts, 3, 6, 4, "bond count")?;
    let (num_atoms, num_bonds) = (num_atoms.max(0) as usize, num_bonds.max(0) as usize);
    let mut table = Table::default();
    let mut at = 4;
    for _ in 0..num_atoms {
        let line = lines
            .get(at)
            .ok_or_else(|| syntax(at + 1, "the atom block ends early"))?;
        table.atoms.push(v2000_atom(line, at + 1)?);
        at += 1;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..num_bonds {
        let line = lines
            .get(at)
            .ok_or_else(|| syntax(at + 1, "the bond block ends early"))?;
        let begin = int_field(line, 0, 3, at + 1, "bond atom")?;
        let end = int_field(line, 3, 6, at + 1, "bond atom")?;
        let kind = int_field(line, 6, 9, at + 1, "bond type")?;
        let stereo = int_field(line, 9, 12, at + 1, "bond stereo").unwrap_or(0);
        let order = match kind {
            1 => RawBondOrder::Single,
            2 => RawBondOrder::Double,
            3 => RawBondOrder::Triple,
            4 => RawBondOrder::Aromatic,
            5..=7 => return Err(query_bond(at + 1, kind)),
            // 0, 8 (any) and every other code, 9 and 10 included, are "any" bonds in V2000
            _ => RawBondOrder::Unspecified,
        };
        let bond = checked_bond(
            &mut seen,
            table.atoms.len(),
            begin,
            end,
            order,
            matches!(stereo, 1 | 4 | 6),
            at + 1,
        )?;
        table.bonds.push(bond);
        at += 1;
    }
    let used = v2000_properties(lines, at, &mut table)?;
    Ok((table, used))
}

fn query_bond(line: usize, kind: i64) -> MolfileError {
    syntax(
        line,
        format!("bond type {kind} is a query (single-or-double, single-or-aromatic or double-or-aromatic), not a molecule"),
    )
}

/// Checks a bond's atom numbers (1-based) and makes it; a self bond or a second bond between
/// the same atoms is an error, as in RDKit.
fn checked_bond(
    seen: &mut std::collections::HashSet<(usize, usize)>,
    num_atoms: usize,
    begin: i64,
    end: i64,
    order: RawBondOrder,
    has_direction: bool,
    line: usize,
) -> Result<TableBond, MolfileError> {
    let index = |a: i64| -> Result<usize, MolfileError> {
        if a < 1 || a as u64 > num_atoms as u64 {
            return Err(syntax(
                line,
                format!("bond to atom {a}, the table has {num_atoms} atoms"),
            ));
        }
        Ok(a as usize - 1)
    };
    let (b, e) = (index(begin)?, index(end)?);
    if b == e {
        return Err(syntax(line, format!("bond from atom {begin} to itself")));
    }
    if !seen.insert((b.min(e), b.max(e))) {
        return Err(syntax(
            line,
            format!("second bond between atoms {begin} and {end}"),
        ));
    }
    Ok(TableBond {
        begin: b,
        end: e,
        order,
        has_direction,
    })
}

/// An integer in columns `a..b` (blank = 0).
fn int_field(
    line: &str,
    a: usize,
    b: usize,
    line_no: usize,
    what: &str,
) -> Result<i64, MolfileError> {
    let end = b.min(line.len());
    if a >= end {
        return Ok(0);
    }
    let text = line
        .get(a..end)
        .ok_or_else(|| syntax(line_no, format!("{what}: not plain ASCII")))?
        .trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.trim_start_matches('+')
        .parse()
        .map_err(|_| syntax(line_no, format!("{what} {text:?} is not a number")))
}

/// Atomic number, isotope and whether the atom is a query atom (no implicit hydrogens) for an
/// atom symbol; `v3000` turns off the V2000-only `L`/`LP`.
fn atom_of_symbol(symbol: &str, line: usize, v3000: bool) -> Result<TableAtom, MolfileError> {
    let mut atom = TableAtom::default();
    match symbol {
        "D" => {
            atom.atomic_num = 1;
            atom.isotope = 2;
        }
        "T" => {
            atom.atomic_num = 1;
            atom.isotope = 3;
        }
        "R" | "*" | "A" | "AH" | "Q" | "QH" | "X" | "XH" | "M" | "MH" => {
            atom.no_implicit = true;
            atom.query = true;
        }
        "R#" | "Pol" | "Mod" => {}
        "L" | "LP" if !v3000 => {}
        s if s.starts_with('R') && s[1..].parse::<u8>().is_ok_and(|n| n <= 99) => {
            // R0..R99: an R group, numbered by its isotope
            atom.isotope = s[1..].parse().unwrap_or(0);
        }
        s if s.starts_with('[') || s.starts_with("NOT") => {
            return Err(syntax(
                line,
                format!("atom list {s} is a query, not an atom"),
            ))
        }
        s => {
            // `CL`, `NA`: a second capital is read as lower case, as RDKit does
            let mut name = s.to_string();
            if name.len() == 2 && name.as_bytes()[1].is_ascii_uppercase() {
                name = format!("{}{}", &name[..1], name[1..].to_ascii_lowercase());
            }
            atom.atomic_num = elements::atomic_number(&name)
                .filter(|&z| z > 0)
                .ok_or_else(|| syntax(line, format!("unknown element {s:?}")))?;
        }
    }
    Ok(atom)
}

/// The mass number of an element's most abundant isotope, the base of a V2000 mass
/// difference in RDKit: the rounded standard atomic weight, except where that is not an
/// abundant isotope (Br: weight 79.9, isotopes 79 and 81).
fn most_common_isotope(atomic_num: u8) -> i64 {
    match atomic_num {
        28 => 58,  // Ni
        29 => 63,  // Cu
        30 => 64,  // Zn
        31 => 69,  // Ga
        32 => 74,  // Ge
        34 => 80,  // Se
        35 => 79,  // Br
        40 => 90,  // Zr
        42 => 98,  // Mo
        44 => 102, // Ru
        47 => 107, // Ag
        48 => 114, // Cd
        50 => 120, // Sn
        51 => 121, // Sb
        52 => 130, // Te
        54 => 132, // Xe
        56 => 138, // Ba
        60 => 142, // Nd
        62 => 152, // Sm
        63 => 153, // Eu
        64 => 158, // Gd
        66 => 164, // Dy
        68 => 166, // Er
        70 => 174, // Yb
        72 => 180, // Hf
        75 => 187, // Re
        76 => 192, // Os
        77 => 193, // Ir
        80 => 202, // Hg
        81 => 205, // Tl
        82 => 208, // Pb
        z => elements::atomic_weight(z).round() as i64,
    }
}

fn v2000_atom(line: &str, line_no: usize) -> Result<TableAtom, MolfileError> {
    if line.len() < 34 || !line.is_ascii() {
        return Err(syntax(line_no, "atom line too short"));
    }
    for (a, b) in [(0, 10), (10, 20), (20, 30)] {
        let coordinate = line[a..b].trim();
        if coordinate.parse::<f64>().is_err() {
            return Err(syntax(
                line_no,
                format!("coordinate {coordinate:?} is not a number"),
            ));
        }
    }
    let symbol = line[31..34].trim();
    let mut atom = atom_of_symbol(symbol, line_no, false)?;
    let mass_difference = if line.len() >= 36 {
        int_field(line, 34, 36, line_no, "mass difference")?
    } else {
        0
    };
    if mass_difference != 0 && atom.atomic_num > 0 {
        let base = most_common_isotope(atom.atomic_num);
        atom.isotope = u16::try_from(base + mass_difference).unwrap_or(0);
    }
    let charge_code = int_field(line, 36, 39, line_no, "charge")?;
    if charge_code != 0 {
        atom.charge = i8::try_from(4 - charge_code)
            .map_err(|_| syntax(line_no, format!("charge code {charge_code} out of range")))?;
    }
    if int_field(line, 42, 45, line_no, "hydrogen count")? >= 1 {
        atom.no_implicit = true;
        atom.query = true;
    }
    let valence = int_field(line, 48, 51, line_no, "valence")?;
    atom.valence = u8::try_from(valence)
        .ok()
        .filter(|&v| v <= 15)
        .ok_or_else(|| syntax(line_no, format!("valence field {valence} out of range")))?;
    Ok(atom)
}

/// The V2000 properties block from `start` to `M  END`: charges, radicals, isotopes. Returns
/// the lines used through `M  END`.
fn v2000_properties(
    lines: &[&str],
    start: usize,
    table: &mut Table,
) -> Result<usize, MolfileError> {
    let mut charges_reset = false;
    let mut at = start;
    while let Some(line) = lines.get(at) {
        let line_no = at + 1;
        at += 1;
        if line.starts_with("M  END") {
            return Ok(at);
        }
        if line.starts_with("$$$$") {
            break;
        }
        if at - 1 == start && line.trim().is_empty() {
            return Err(syntax(
                line_no,
                "blank line where the properties block starts",
            ));
        }
        let key = line.get(..6).unwrap_or("");
        match key {
            "M  CHG" | "M  RAD" | "M  ISO" => {
                if key != "M  ISO" && !charges_reset {
                    // the first CHG or RAD line replaces every atom-block charge
                    for a in &mut table.atoms {
                        a.charge = 0;
                    }
                    charges_reset = true;
                }
                for (atom, value) in property_entries(line, line_no, table.atoms.len())? {
                    let a = &mut table.atoms[atom];
                    match key {
                        "M  CHG" => {
                            a.charge = i8::try_from(value).map_err(|_| {
                                syntax(line_no, format!("charge {value} out of range"))
                            })?
                        }
                        "M  RAD" => a.radicals = radicals_of(value, line_no)?,
                        _ if value >= 0 => a.isotope = u16::try_from(value).unwrap_or(u16::MAX),
                        _ => {}
                    }
                }
            }
            // an alias or a group abbreviation: its text is on the next line
            _ if line.starts_with("A  ") || line.starts_with("G  ") => at += 1,
            _ => {}
        }
    }
    Err(syntax(at, "no `M  END` line"))
}

/// RDKit's radical codes: 1 singlet and 3 triplet are two unpaired electrons, 2 doublet one.
fn radicals_of(code: i64, line: usize) -> Result<u8, MolfileError> {
    match code {
        1 | 3 => Ok(2),
        2 => Ok(1),
        _ => Err(syntax(
            line,
            format!("radical code {code} is not 1, 2 or 3"),
        )),
    }
}

/// The `(atom, value)` pairs of an `M  CHG`/`RAD`/`ISO` line (atoms 0-based).
fn property_entries(
    line: &str,
    line_no: usize,
    num_atoms: usize,
) -> Result<Vec<(usize, i64)>, MolfileError> {
    let mut fields = line.get(6..).unwrap_or("").split_whitespace().map(|f| {
        f.parse::<i64>()
            .map_err(|_| syntax(line_no, format!("{f:?} is not a number")))
    });
    let count = fields.next().transpose()?.unwrap_or(0);
    let mut entries = Vec::new();
    for _ in 0..count {
        let (Some(atom), Some(value)) = (fields.next(), fields.next()) else {
            return Err(syntax(
                line_no,
                format!("fewer than the {count} entries announced"),
            ));
        };
        let (atom, value) = (atom?, value?);
        if atom < 1 || atom as u64 > num_atoms as u64 {
            return Err(syntax(line_no, format!("atom {atom} does not exist")));
        }
        entries.push((atom as usize - 1, value));
    }
    Ok(entries)
}

/// V3000 lines: each starts with `M  V30 `; a trailing `-` continues on the next line.
fn v3000_lines(
    lines: &[&str],
    start: usize,
) -> Result<(Vec<(usize, String)>, usize), MolfileError> {
    let mut out = Vec::new();
    let mut at = start;
    let mut pending: Option<(usize, String)> = None;
    while let Some(line) = lines.get(at) {
        at += 1;
        if line.starts_with("M  END") {
            if pending.is_some() {
                return Err(syntax(at, "a continued V3000 line is never finished"));
            }
            return Ok((out, at));
        }
        let Some(text) = line.strip_prefix("M  V30 ") else {
            return Err(syntax(at, "V3000 line without `M  V30 `"));
        };
        let (first_line, mut joined) = pending.take().unwrap_or((at, String::new()));
        match text.strip_suffix('-') {
            Some(part) => {
                joined.push_str(part);
                pending = Some((first_line, joined));
            }
            None => {
                joined.push_str(text);
                out.push((first_line, joined));
            }
        }
    }
    Err(syntax(at, "no `M  END` line"))
}

/// Splits a V3000 line on blanks, keeping `(...)` and `"..."` whole.
fn v3000_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                current.push(c);
            }
            ')' if !quoted => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ' ' | '\t' if !quoted && depth == 0 => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn read_v3000(lines: &[&str]) -> Result<(Table, usize), MolfileError> {
    let (body, used) = v3000_lines(lines, 4)?;
    let mut table = Table::default();
    let mut index_of = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut block: Option<String> = None;
    let mut ended = false;
    for (line_no, text) in &body {
        let line_no = *line_no;
        let tokens = v3000_tokens(text);
        let Some(first) = tokens.first() else {
            continue;
        };
        let first = first.to_ascii_uppercase();
        if ended {
            return Err(syntax(line_no, "V3000 text after `END CTAB`"));
        }
        match (first.as_str(), block.as_deref()) {
            ("BEGIN", _) => {
                let name = tokens
                    .get(1)
                    .map(|t| t.to_ascii_uppercase())
                    .unwrap_or_default();
                if name != "CTAB" {
                    block = Some(name);
                }
            }
            ("END", Some(open)) if tokens.get(1).is_some_and(|t| t.eq_ignore_ascii_case(open)) => {
                block = None;
            }
            ("END", None) => ended = true,
            ("COUNTS", None) => {}
            (_, Some("ATOM")) => {
                let (index, atom) = v3000_atom(&tokens, line_no)?;
                if index_of.insert(index, table.atoms.len()).is_some() {
                    return Err(syntax(line_no, format!("atom {index} defined twice")));
                }
                table.atoms.push(atom);
            }
            (_, Some("BOND")) => {
                let field = |i: usize, what: &str| -> Result<i64, MolfileError> {
                    tokens.get(i).and_then(|t| t.parse().ok()).ok_or_else(|| {
                        syntax(line_no, format!("bond line without a numeric {what}"))
                    })
                };
                let kind = field(1, "type")?;
                let atom_number = |i: usize| -> Result<i64, MolfileError> {
                    let index = field(i, "atom")?;
                    index_of.get(&index).map(|&k| k as i64 + 1).ok_or_else(|| {
                        syntax(
                            line_no,
                            format!("bond to atom {index}, which is not defined"),
                        )
                    })
                };
                let (begin, end) = (atom_number(2)?, atom_number(3)?);
                let order = match kind {
                    1 => RawBondOrder::Single,
                    2 => RawBondOrder::Double,
                    3 => RawBondOrder::Triple,
                    4 => RawBondOrder::Aromatic,
                    9 => RawBondOrder::Dative,
                    5..=7 => return Err(query_bond(line_no, kind)),
                    10 => return Err(syntax(line_no, "hydrogen bonds (type 10) are not read")),
                    _ => RawBondOrder::Unspecified,
                };
                let has_direction = tokens.iter().skip(4).any(|t| {
                    t.to_ascii_uppercase()
                        .strip_prefix("CFG=")
                        .is_some_and(|v| matches!(v, "1" | "2" | "3"))
                });
                let bond = checked_bond(
                    &mut seen,
                    table.atoms.len(),
                    begin,
                    end,
                    order,
                    has_direction,
                    line_no,
                )?;
                table.bonds.push(bond);
            }
            // SGROUP, COLLECTION, OBJ3D and other blocks: nothing the graph needs
            _ => {}
        }
    }
    if block.is_some() || !ended {
        return Err(syntax(used, "a V3000 block is never closed"));
    }
    Ok((table, used))
}

fn v3000_atom(tokens: &[String], line_no: usize) -> Result<(i64, TableAtom), MolfileError> {
    if tokens.len() < 6 {
        return Err(syntax(line_no, "atom line too short"));
    }
    let index: i64 = tokens[0].parse().map_err(|_| {
        syntax(
            line_no,
            format!("atom index {:?} is not a number", tokens[0]),
        )
    })?;
    let mut atom = atom_of_symbol(&tokens[1], line_no, true)?;
    for token in &tokens[6..] {
        let Some((key, value)) = token.split_once('=') else {
            return Err(syntax(line_no, format!("{token:?} is not KEY=VALUE")));
        };
        let number = || -> Result<i64, MolfileError> {
            value
                .parse::<i64>()
                .or_else(|_| value.parse::<f64>().map(|v| v.floor() as i64))
                .map_err(|_| syntax(line_no, format!("{key}={value}: not a number")))
        };
        match key.to_ascii_uppercase().as_str() {
            "CHG" => {
                atom.charge = i8::try_from(number()?)
                    .map_err(|_| syntax(line_no, format!("charge {value} out of range")))?
            }
            "RAD" => {
                atom.radicals = match number()? {
                    0 => 0,
                    code => radicals_of(code, line_no)?,
                }
            }
            "MASS" => {
                atom.isotope = u16::try_from(number()?)
                    .map_err(|_| syntax(line_no, format!("mass {value} out of range")))?
            }
            "VAL" => {
                atom.valence = match number()? {
                    -1 => 15,
                    v @ 0..=15 => v as u8,
                    v => return Err(syntax(line_no, format!("valence {v} out of range"))),
                }
            }
            _ => {}
        }
    }
    Ok((index, atom))
}

/// Valence contributions of `atom`'s bonds as RDKit counts them (aromatic 1.5, a dative bond
/// only at its acceptor, "any" nothing), rounded as its explicit valence is.
fn explicit_valence(table: &Table, atom: usize) -> i32 {
    let sum: f64 = table
        .bonds
        .iter()
        .filter(|b| b.begin == atom || b.end == atom)
        .map(|b| match b.order {
            RawBondOrder::Single => 1.0,
            RawBondOrder::Double => 2.0,
            RawBondOrder::Triple => 3.0,
            RawBondOrder::Quadruple => 4.0,
            RawBondOrder::Aromatic => 1.5,
            RawBondOrder::Dative if b.end == atom => 1.0,
            RawBondOrder::Dative | RawBondOrder::Unspecified => 0.0,
        })
        .sum();
    (sum + f64::from(table.atoms[atom].explicit_hs) + 0.1).round() as i32
}

/// The valence field (RDKit applies it while hydrogen atoms are still in the table), then
/// RDKit's `removeHs`: a hydrogen bonded to one heavy atom goes, adding to that atom's
/// explicit H count only where the atom's hydrogens are fixed or it sits at a higher valence
/// state (elsewhere the valence model gives the hydrogen back).
fn remove_hydrogens(mut table: Table) -> Result<RawMolecule, MolfileError> {
    let n = table.atoms.len();
    for i in 0..n {
        let valence = table.atoms[i].valence;
        if valence == 0 {
            continue;
        }
        let ev = explicit_valence(&table, i);
        let atom = &mut table.atoms[i];
        atom.no_implicit = true;
        atom.explicit_hs = if valence == 15 || ev > i32::from(valence) {
            0
        } else {
            (i32::from(valence) - ev) as u8
        };
    }
    let mut degree = vec![0usize; n];
    let mut has_double = vec![false; n];
    for b in &table.bonds {
        degree[b.begin] += 1;
        degree[b.end] += 1;
        if b.order == RawBondOrder::Double {
            has_double[b.begin] = true;
            has_double[b.end] = true;
        }
    }
    let total_valence: Vec<i32> = (0..n).map(|i| total_valence(&table, i)).collect();
    let mut removed = vec![false; n];
    let mut kept_for_stereo = vec![false; table.bonds.len()];
    for (bi, b) in table.bonds.iter().enumerate() {
        for (h, heavy) in [(b.begin, b.end), (b.end, b.begin)] {
            let (ha, xa) = (&table.atoms[h], &table.atoms[heavy]);
            if ha.atomic_num != 1 || ha.isotope != 0 || ha.query || degree[h] != 1 {
                continue;
            }
            if xa.atomic_num <= 1 {
                continue;
            }
            if degree[heavy] == 2 && has_double[heavy] && b.has_direction {
                kept_for_stereo[bi] = true;
                continue;
            }
            removed[h] = true;
        }
    }
    let mut added = vec![0u32; n];
    for b in &table.bonds {
        for (h, heavy) in [(b.begin, b.end), (b.end, b.begin)] {
            if !removed[h] || removed[heavy] {
                continue;
            }
            let x = &table.atoms[heavy];
            let higher_state = elements::valences(x.atomic_num)
                .iter()
                .skip(1)
                .any(|&v| v > 0 && v == total_valence[heavy]);
            if x.no_implicit || higher_state {
                added[heavy] += 1;
            }
        }
    }
    let mut new_index = vec![usize::MAX; n];
    let mut atoms = Vec::with_capacity(n);
    for (i, a) in table.atoms.iter().enumerate() {
        if removed[i] {
            continue;
        }
        new_index[i] = atoms.len();
        let explicit_hs = u8::try_from(u32::from(a.explicit_hs) + added[i])
            .map_err(|_| MolfileError::Chemistry(format!("atom {}: too many hydrogens", i + 1)))?;
        atoms.push(RawAtom {
            atomic_num: a.atomic_num,
            isotope: a.isotope,
            charge: a.charge,
            explicit_hs,
            bracket: a.no_implicit,
            aromatic: false,
            radicals: a.radicals,
            pos: i,
        });
    }
    let bonds = table
        .bonds
        .iter()
        .enumerate()
        .filter(|(_, b)| !removed[b.begin] && !removed[b.end])
        .map(|(bi, b)| RawBond {
            begin: new_index[b.begin],
            end: new_index[b.end],
            order: b.order,
            directional: kept_for_stereo[bi],
        })
        .collect();
    Ok(RawMolecule { atoms, bonds })
}

/// RDKit's total valence (explicit + implicit) of a table atom before hydrogen removal.
fn total_valence(table: &Table, i: usize) -> i32 {
    let ev = explicit_valence(table, i);
    let atom = &table.atoms[i];
    if atom.no_implicit || atom.atomic_num == 0 {
        return ev;
    }
    let chr = crate::sanitize::valence_charge(atom.atomic_num, i32::from(atom.charge));
    elements::valences(atom.atomic_num)
        .iter()
        .take_while(|&&v| v >= 0)
        .map(|&v| v + chr)
        .find(|&total| ev + i32::from(atom.radicals) <= total)
        .map_or(ev, |total| total - i32::from(atom.radicals))
}
