#!/usr/bin/env python
"""RDKit oracle for Bemis-Murcko scaffolds as TDC computes them (`create_scaffold_split`):
`MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(s), includeChirality=False)`,
with RDKit 2022.09.5 (the version the original MolE pins).

Reads one SMILES per line (only the line ending removed) and writes one JSON object per line:

  {"smiles": s, "scaffold": "c1ccccc1"}     the scaffold SMILES ("" for acyclic molecules)
  {"smiles": s, "scaffold": null}           RDKit raised (TDC omits such molecules)

Used only to generate expected values (tests and CI never run Python):
    /tmp/rdkit-venv/bin/python scripts/rdkit/scaffold_oracle.py strings.txt > scaffolds.jsonl
"""
import json
import sys

from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")


def scaffold(s):
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(s), includeChirality=False)
    except Exception:
        return None


def main():
    source = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin
    for line in source:
        s = line.rstrip("\r\n")
        print(json.dumps({"smiles": s, "scaffold": scaffold(s)}))


if __name__ == "__main__":
    main()
