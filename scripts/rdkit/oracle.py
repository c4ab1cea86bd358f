#!/usr/bin/env python
"""RDKit oracle for the featurizer: what RDKit 2022.09.5 (the version the original MolE pins)
makes of each input string.

Reads one string per line from a file (or stdin), exactly as given: only the line ending is
removed, so surrounding whitespace and names after the SMILES reach RDKit as a CSV cell would.
Writes one JSON object per input line to stdout:

  {"smiles": s, "ok": false}                                    RDKit rejects s
  {"smiles": s, "ok": true, "num_atoms": n, "morgan_r0": [...],
   "morgan_r1": [...], "morgan_r2": [...], "dist": [[...]]}     the fields of
                                                                ../shared/fixtures/featurize

morgan_rK are the Morgan identifiers (connectivity invariants, default options) of the radius-K
environment of each atom as `bitInfo` of `AllChem.GetMorganFingerprint(mol, 2,
includeRedundantEnvironments=True)` reports them (null where an atom has none); dist is
`Chem.GetDistanceMatrix(mol)` with unreachable pairs as -1, as the original MolE featurizer uses.

Used only to generate expected values (tests and CI never run Python):
    python -m venv /tmp/rdkit-venv && /tmp/rdkit-venv/bin/pip install rdkit-pypi==2022.9.5
    /tmp/rdkit-venv/bin/python scripts/rdkit/oracle.py strings.txt > expected.jsonl
"""
import json
import sys

from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem import AllChem

RDLogger.DisableLog("rdApp.*")


def mol_features(mol):
    """Atom count, Morgan identifiers at radius 0, 1 and 2 of every atom, distance matrix."""
    n = mol.GetNumAtoms()
    info = {}
    AllChem.GetMorganFingerprint(mol, 2, bitInfo=info, includeRedundantEnvironments=True)
    env = [[None] * n for _ in range(3)]
    for ident, hits in info.items():
        for atom, radius in hits:
            env[radius][atom] = ident
    dist = Chem.GetDistanceMatrix(mol) if n else []
    return {
        "num_atoms": n,
        "morgan_r0": env[0],
        "morgan_r1": env[1],
        "morgan_r2": env[2],
        "dist": [[int(d) if d < 1e7 else -1 for d in row] for row in dist],
    }


def featurize(s):
    mol = Chem.MolFromSmiles(s)
    if mol is None:
        return {"smiles": s, "ok": False}
    return {"smiles": s, "ok": True, **mol_features(mol)}


def main():
    assert rdBase.rdkitVersion == "2022.09.5", rdBase.rdkitVersion
    src = open(sys.argv[1], encoding="utf-8", newline="") if len(sys.argv) > 1 else sys.stdin
    out = sys.stdout
    for line in src:
        s = line[:-1] if line.endswith("\n") else line
        if s.endswith("\r"):
            s = s[:-1]
        out.write(json.dumps(featurize(s)) + "\n")


if __name__ == "__main__":
    main()
