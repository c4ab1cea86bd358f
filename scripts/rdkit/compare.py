#!/usr/bin/env python
"""Compares the featurizer's output (examples/featurize_jsonl.rs) with RDKit's
(scripts/rdkit/oracle.py), line by line, on every field, and lists the disagreements.

    python scripts/rdkit/compare.py expected.jsonl ours.jsonl [--show N]

A line agrees when both reject it, or both accept it with equal num_atoms, morgan_r0/r1/r2 and
dist. Prints the agreement per field and overall, false rejects (RDKit accepts, we reject) and
false accepts, then the first N disagreeing strings with the first field that differs.
"""
import argparse
import json


def main():
    p = argparse.ArgumentParser()
    p.add_argument("expected")
    p.add_argument("ours")
    p.add_argument("--show", type=int, default=20)
    a = p.parse_args()
    fields = ["num_atoms", "morgan_r0", "morgan_r1", "morgan_r2", "dist"]
    n = agree = false_reject = false_accept = both_ok = 0
    field_agree = {f: 0 for f in fields}
    bad = []
    with open(a.expected) as fe, open(a.ours) as fo:
        for le, lo in zip(fe, fo):
            e, o = json.loads(le), json.loads(lo)
            n += 1
            if not e["ok"] or not o["ok"]:
                if e["ok"] == o["ok"]:
                    agree += 1
                elif e["ok"]:
                    false_reject += 1
                    bad.append((e["smiles"], "rejected: " + o.get("error", "")))
                else:
                    false_accept += 1
                    bad.append((e["smiles"], "RDKit rejects it"))
                continue
            both_ok += 1
            differs = [f for f in fields if e[f] != o[f]]
            for f in fields:
                field_agree[f] += f not in differs
            if differs:
                bad.append((e["smiles"], "differs in " + ", ".join(differs)))
            else:
                agree += 1
    print(f"lines {n}, agree {agree} ({100 * agree / max(n, 1):.3f} %)")
    print(f"false rejects {false_reject} ({100 * false_reject / max(n, 1):.3f} %), false accepts {false_accept}")
    for f in fields:
        print(f"  {f}: {field_agree[f]} / {both_ok} accepted by both")
    for s, why in bad[: a.show]:
        print(f"  {s!r}: {why}")


if __name__ == "__main__":
    main()
