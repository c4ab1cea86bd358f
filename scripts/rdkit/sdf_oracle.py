#!/usr/bin/env python
"""SDF fixtures written by RDKit 2022.09.5 itself, and what RDKit makes of them when reading
them back.

Molecules: every SMILES of the TDC fixture (`../shared/fixtures/featurize/tdc_featurized.jsonl`,
1,245 rows, with their label `y`) and every SMILES of
`crates/mole-featurize/tests/data/rdkit_edge_cases.jsonl` with `ok: true` that
`Chem.MolFromSmiles` accepts (charges, isotopes, radicals, explicit H, dative bonds, metals,
CXSMILES extensions, names after whitespace, ...).

Writes, under `crates/mole-featurize/tests/data/`:

  rdkit_v2000.sdf.gz       all molecules, `Chem.SDWriter` with default settings (V2000,
                           kekulized; RDKit itself switches a record to V3000 where V2000 cannot
                           hold it, e.g. dative bonds). Name line `tdc-I` / `edge-I`, where I is
                           the 0-based line index in the source .jsonl; SD properties `smiles`
                           (the input string) and, for TDC rows only, `y` (the label as Python's
                           repr of the float, e.g. `0.0`, `2.8`).
  rdkit_v3000.sdf.gz       the same, `SetForceV3000(True)`, for the first 300 TDC rows and all
                           edge cases.
  rdkit_explicit_h.sdf.gz  the first 300 TDC rows with every hydrogen as an atom (`Chem.AddHs`),
                           every third with a 3D conformer (`EmbedMolecule(randomSeed=1)`), as
                           docking and conformer tools write SD files.
  rdkit_sdf_expected.jsonl.gz
                           (gzip: as plain JSON lines it would be 5.1 MB, mostly the distance
                           matrices and Morgan identifiers of 2,291 records; gzipped 0.8 MB)
                           one line per record of both files, in file order:
                           {"file": "v2000"|"v3000"|"explicit_h", "record": 1-based, "name", "smiles",
                            "ok", and when ok "num_atoms", "morgan_r0/r1/r2", "dist",
                            "same_as_smiles"}
                           as RDKit reads the record back with
                           `Chem.ForwardSDMolSupplier(gzip.open(path))` (sanitize=True,
                           removeHs=True). The features are exactly those of oracle.py;
                           `same_as_smiles` says whether they equal oracle.py's features of
                           `Chem.MolFromSmiles(smiles)`. Nothing is left out (`dist` is the full
                           matrix for every record).
  broken.sdf               hand-made records RDKit must reject, then one good one (ethanol)
  broken_expected.jsonl    RDKit's verdict per record of broken.sdf (same fields as above, plus
                           `what`: the fault; `smiles` is "CCO" for the good record, else null)

The SDF header's line 2 is RDKit's program line (`     RDKit          2D`, no timestamp); 2D
coordinates are computed by the writer (molecules from SMILES have no conformer). Dative bonds
cannot be written in V2000, so RDKit writes those records as V3000 in rdkit_v2000.sdf.gz too. The
gzip streams are written with mtime 0 and no file name, so the outputs are byte-for-byte
reproducible.

Used only to generate expected values (tests and CI never run Python):
    /tmp/rdkit-venv/bin/python scripts/rdkit/sdf_oracle.py [TDC_JSONL]
"""
import gzip
import io
import json
import os
import sys

from rdkit import Chem, RDLogger, rdBase

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (featurize(s): the SMILES side, exactly as for the other fixtures)

from rdkit.Chem import AllChem  # noqa: E402

RDLogger.DisableLog("rdApp.*")

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "crates", "mole-featurize", "tests", "data")
TDC_DEFAULT = os.path.join(ROOT, "..", "shared", "fixtures", "featurize", "tdc_featurized.jsonl")
V3000_TDC = 300
FEATURES = ("num_atoms", "morgan_r0", "morgan_r1", "morgan_r2", "dist")


mol_features = oracle.mol_features  # the same fields for an already-built molecule


def molecules(tdc_path):
    """(name, smiles, y or None) in file order: TDC rows, then the accepted edge cases."""
    out = []
    with open(tdc_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            out.append((f"tdc-{i}", row["smiles"], row["y"]))
    with open(os.path.join(DATA, "rdkit_edge_cases.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            if row["ok"] and Chem.MolFromSmiles(row["smiles"]) is not None:
                out.append((f"edge-{i}", row["smiles"], None))
    return out


def write_gz(path, text):
    """A reproducible gzip (mtime 0, no file name in the header)."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(text.encode("utf-8"))


def write_sdf_gz(path, mols, force_v3000, hydrogens=False):
    """SDWriter into memory, then write_gz. With `hydrogens`, every molecule gets its hydrogens
    as atoms (`Chem.AddHs`) and every third a 3D conformer (`EmbedMolecule(randomSeed=1)`, 2D
    where embedding fails), as docking and conformer tools write them."""
    sio = io.StringIO()
    w = Chem.SDWriter(sio)
    if force_v3000:
        w.SetForceV3000(True)
    written = []
    for k, (name, smiles, y) in enumerate(mols):
        mol = Chem.MolFromSmiles(smiles)
        if hydrogens:
            mol = Chem.AddHs(mol)
            if k % 3 == 0 and AllChem.EmbedMolecule(mol, randomSeed=1) != 0:
                AllChem.Compute2DCoords(mol)
        mol.SetProp("_Name", name)  # replaces a name the SMILES parser took from after a space
        mol.SetProp("smiles", smiles)
        if y is not None:
            mol.SetProp("y", repr(float(y)))
        w.write(mol)
        written.append((name, smiles))
    w.close()
    write_gz(path, sio.getvalue())
    return written


def read_back(fileobj, label, names_smiles):
    """One expected row per record ForwardSDMolSupplier yields (None = rejected)."""
    rows = []
    for k, mol in enumerate(Chem.ForwardSDMolSupplier(fileobj), start=1):
        name, smiles = names_smiles[k - 1] if k <= len(names_smiles) else (None, None)
        row = {"file": label, "record": k, "name": name, "smiles": smiles, "ok": mol is not None}
        if mol is not None:
            if mol.HasProp("_Name") and mol.GetProp("_Name") != name:
                raise SystemExit(f"{label} record {k}: name {mol.GetProp('_Name')!r} != {name!r}")
            feats = mol_features(mol)
            row.update(feats)
            if smiles is not None:
                ref = oracle.featurize(smiles)
                row["same_as_smiles"] = bool(ref["ok"]) and all(ref[f] == feats[f] for f in FEATURES)
        rows.append(row)
    return rows


# Hand-made records RDKit should reject (one fault each), then a good one.
def _atom(x, sym):
    return f"{x:10.4f}{0:10.4f}{0:10.4f} {sym:<3} 0  0  0  0  0  0  0  0  0  0  0  0\n"


def _counts(na, nb):
    return f"{na:3d}{nb:3d}  0  0  0  0  0  0  0  0999 V2000\n"


def _bond(a, b, order=1):
    return f"{a:3d}{b:3d}{order:3d}  0\n"


def _record(name, body, what):
    return name, what, f"{name}\n  handmade\n\n{body}M  END\n>  <what>\n{what}\n\n$$$$\n"


BROKEN = [
    _record("broken-truncated-atoms",
            _counts(3, 2) + _atom(0, "C") + _atom(1.5, "C") + _bond(1, 2) + _bond(2, 3),
            "counts line says 3 atoms, the atom block has 2"),
    _record("broken-unknown-element",
            _counts(2, 1) + _atom(0, "C") + _atom(1.5, "Xx") + _bond(1, 2),
            "unknown element symbol Xx"),
    _record("broken-bond-to-99",
            _counts(2, 1) + _atom(0, "C") + _atom(1.5, "O") + _bond(1, 99),
            "bond to atom 99 of 2"),
    _record("broken-counts-not-numeric",
            "  a  b  0  0  0  0  0  0  0  0999 V2000\n" + _atom(0, "C") + _atom(1.5, "O")
            + _bond(1, 2),
            "counts line is not numeric"),
    _record("broken-pentavalent-carbon",
            _counts(6, 5) + "".join(_atom(1.5 * i, "C") for i in range(6))
            + "".join(_bond(1, j) for j in range(2, 7)),
            "carbon with five single bonds (valence error on sanitize)"),
    _record("good-ethanol",
            _counts(3, 2) + _atom(0, "C") + _atom(1.5, "C") + _atom(3, "O") + _bond(1, 2)
            + _bond(2, 3),
            "ethanol, fine"),
]


def main():
    assert rdBase.rdkitVersion == "2022.09.5", rdBase.rdkitVersion
    tdc_path = sys.argv[1] if len(sys.argv) > 1 else TDC_DEFAULT
    mols = molecules(tdc_path)
    tdc = [m for m in mols if m[0].startswith("tdc-")]
    edge = [m for m in mols if m[0].startswith("edge-")]

    expected = []
    for label, subset, force, hydrogens in (("v2000", mols, False, False),
                                            ("v3000", tdc[:V3000_TDC] + edge, True, False),
                                            ("explicit_h", tdc[:V3000_TDC], False, True)):
        path = os.path.join(DATA, f"rdkit_{label}.sdf.gz")
        written = write_sdf_gz(path, subset, force, hydrogens)
        with gzip.open(path) as f:
            rows = read_back(f, label, written)
        if len(rows) != len(written):
            raise SystemExit(f"{label}: wrote {len(written)} records, read {len(rows)}")
        expected += rows
    write_gz(os.path.join(DATA, "rdkit_sdf_expected.jsonl.gz"),
             "".join(json.dumps(row) + "\n" for row in expected))

    path = os.path.join(DATA, "broken.sdf")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(text for _, _, text in BROKEN))
    with open(path, "rb") as f:
        rows = read_back(f, "broken", [(name, "CCO" if name == "good-ethanol" else None)
                                       for name, _, _ in BROKEN])
    for row, (_, what, _) in zip(rows, BROKEN):
        row["what"] = what
    with open(os.path.join(DATA, "broken_expected.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")

    print(f"{len(tdc)} tdc + {len(edge)} edge molecules; "
          f"{len(expected)} expected rows; broken.sdf: {len(rows)} records yielded, "
          f"{sum(r['ok'] for r in rows)} ok", file=sys.stderr)


if __name__ == "__main__":
    main()
