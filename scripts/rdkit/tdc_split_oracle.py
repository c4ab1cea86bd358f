#!/usr/bin/env python
"""TDC's own scaffold split as the reference for `mole split --method scaffold`.

Runs `create_scaffold_split` from PyTDC's source (tdc/utils/split.py, loaded directly so its
package's other dependencies are not needed) on a CSV and prints, per data row, the part TDC
puts it in (train/valid/test, or "" where TDC omits the molecule):

    pip download PyTDC==0.4.1 --no-deps -d /tmp/tdc && tar xzf /tmp/tdc/PyTDC-0.4.1.tar.gz -C /tmp/tdc
    python scripts/rdkit/tdc_split_oracle.py /tmp/tdc/PyTDC-0.4.1 data.csv smiles SEED 0.8 0.1 0.1

Needs rdkit-pypi==2022.9.5, pandas and tqdm. Tests never run it; its output is committed.
"""
import sys
import types

import pandas as pd


def load_create_scaffold_split(tdc_root):
    misc = types.ModuleType("tdc_misc")
    misc.print_sys = lambda *a, **k: None
    source = open(f"{tdc_root}/tdc/utils/split.py", encoding="utf-8").read()
    source = source.replace("from .misc import print_sys", "")
    module = types.ModuleType("tdc_split")
    module.print_sys = misc.print_sys
    exec(compile(source, "tdc/utils/split.py", "exec"), module.__dict__)
    return module.create_scaffold_split


def main():
    tdc_root, path, column, seed = sys.argv[1:5]
    frac = [float(x) for x in sys.argv[5:8]]
    split = load_create_scaffold_split(tdc_root)
    df = pd.read_csv(path)
    df["_row"] = range(len(df))
    out = split(df, int(seed), frac, column)
    part = [""] * len(df)
    for name in ("train", "valid", "test"):
        for row in out[name]["_row"]:
            part[row] = name
    print("\n".join(part))


if __name__ == "__main__":
    main()
