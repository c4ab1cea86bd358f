#!/usr/bin/env python
"""Checks that mole's scaffold groups equal RDKit's, line by line.

    python scripts/rdkit/compare_scaffolds.py rdkit.jsonl ours.jsonl

Both files come from the same input (scaffold_oracle.py and the `scaffold_jsonl` example). Two
molecules must share a scaffold in ours exactly when they share one in RDKit's (the strings
themselves differ: ours is not RDKit's canonical SMILES), and a molecule RDKit rejects
(null) must be rejected by ours too. Prints the agreement and up to 20 disagreements.
"""
import json
import sys


def main():
    rdkit = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
    ours = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
    assert len(rdkit) == len(ours), "different line counts"
    ours_of, rdkit_of = {}, {}
    bad = []
    for i, (r, o) in enumerate(zip(rdkit, ours)):
        rs, os_ = r["scaffold"], o["scaffold"]
        if (rs is None) != (os_ is None):
            bad.append((i, "rejected" if rs is None else "accepted", r["smiles"], rs, os_))
            continue
        if rs is None:
            continue
        first = ours_of.setdefault(rs, (os_, i))
        if first[0] != os_:
            bad.append((i, "rdkit groups, ours splits", r["smiles"], rs, os_))
            continue
        first = rdkit_of.setdefault(os_, (rs, i))
        if first[0] != rs:
            bad.append((i, "ours groups, rdkit splits", r["smiles"], rs, os_))
    n = len(rdkit)
    print(f"{n} molecules, {len(ours_of)} RDKit scaffolds, {len(rdkit_of)} ours; "
          f"{n - len(bad)} agree ({100 * (n - len(bad)) / max(n, 1):.3f} %)")
    for b in bad[:20]:
        print("  line", b[0] + 1, b[1], b[2], "| rdkit:", b[3], "| ours:", b[4])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
