#!/usr/bin/env python
"""Hand-made edge cases of every family RDKit's SMILES reader treats specially, with what RDKit
2022.09.5 makes of them (the fields of scripts/rdkit/oracle.py plus "family"). Writes
crates/mole-featurize/tests/data/rdkit_edge_cases.jsonl, which tests/rdkit_edge_cases.rs checks:

    /tmp/rdkit-venv/bin/python scripts/rdkit/edge_cases.py > crates/mole-featurize/tests/data/rdkit_edge_cases.jsonl
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from oracle import featurize  # noqa: E402

FAMILIES = {
    "isotope_hydrogen": [
        "[2H]C", "[3H]C", "[1H]C", "[2H]OC", "[2H]N([2H])C", "[2H]C([2H])([2H])O",
        "[2H]c1ccccc1", "[2H]c1cc([2H])cc([2H])c1", "C([2H])([2H])([2H])C(=O)O",
        "[2H]C([2H])([2H])Oc1ccc(CC(=O)O)cc1", "[2H]C([2H])([2H])N1CCN(CC1)C(=O)c1ccccc1",
        "[2H][C@@]([2H])(O)C", "[3H]C([3H])([3H])C", "OC([2H])=O", "[2H]O[2H]", "[2H]S",
        "[2H]N1C=CC=C1", "[2H]n1cccc1", "[2H]/C=C/C", "[2H]C#N", "[2H][N+](C)(C)C",
        "C[2H]C", "[2H][2H]", "[2H]", "[2H+]", "[2H-]", "[2H-].[Na+]", "[1H]O[1H]",
        "CC([2H])([2H])N", "[13CH3][2H]",
    ],
    "isotope": [
        "[13C]", "[13CH4]", "[14CH3]C", "[11CH3]N1CCCC1", "[11C]", "[12C]", "[15NH3]",
        "[18F]c1ccccc1", "[17O]", "[18OH2]", "[17OH]C", "[67Ga]", "[67Ga+3]", "[89Zr]",
        "[89Zr+4]", "[201Tl]", "[201Tl+]", "[99Tc]", "[99mTc]", "[123I]c1ccccc1", "[125I-]",
        "[131I]C", "[32P](=O)(O)(O)O", "[35S]", "[3He]", "[226Ra]", "[223Ra]", "[75Se]",
        "C[75Se]CC(N)C(=O)O", "[1000C]", "[3C]", "[0C]", "[60Co]", "[90Y+3]", "[177Lu+3]",
        "[68Ga+3]", "[64Cu+2]", "[111In+3]", "[153Sm]", "[2C]", "[13*]", "[1*]C", "[13*]CC",
        "[2*]c1ccccc1", "[99*]", "[13c]1ccccc1", "[15n]1ccccc1", "[13CH2]=[13CH2]",
        "Cl[223Ra]Cl", "[14C]([2H])([2H])([2H])O",
    ],
    "hydrogen_only": [
        "[H][H]", "[HH]", "[H]", "[H+]", "[H-]", "[H][H-]", "[H-][H]", "[H-].[Li+]",
        "[Na+].[H-]", "[H]1[BH2][H][BH2]1", "[BH2]1[H][BH2][H]1", "[H-]B([H-])([H-])[H-]",
        "[BH4-]", "[BH3-][H]", "[H][H].[H][H]", "[H]*", "*[H]", "[H][*]", "[H]C", "[H]OC",
        "[H]/C=C/F", "F/C=C/[H]", "[H]C=C", "[H+]O", "[H-]C", "[H:1]C", "C[H:2]",
        "[H][2H]", "[2H][H]", "[H]N([H])[H]", "[H][N+]([H])([H])[H]", "[H]c1ccccc1",
        "[H]n1cccc1", "[H]C([H])([H])[H]", "[H][Fe]", "[Fe][H]", "[H][Pt][H]",
        "[H][Mn+]1[H-][Mn+]1", "F[B-](F)(F)F.[H][H-][B-]1([H-][H])[n+]2ccccc2-c2cccc[n+]21",
    ],
    "extensions": [
        "C->[Fe]", "[Fe]<-C", "N->[Cu]<-N", "[NH3]->[Pt+2]<-[NH3]", "c1ccccn1->[Ru]",
        "O=C->[Fe]", "CC(=O)O->[Zn]", "[#8]", "[#16-]", "[#6]", "[#6]1=[#6][#6]=[#6][#6]=[#6]1",
        "[#1]C", "[#0]", "[#7+](C)(C)(C)C", "[#26+2]", "[13#6]", "[#118]", "[#6H4]",
        "C~C", "C~O", "c1ccccc1~C", "C1~CC1", "C:C", "C:O", "CC:CC", "C1:CC1",
        "c1ccccc1:c1ccccc1", "c1cccc:c1", "C=1CC1", "C=1CC=1", "C1CC=1", "C-1CC1",
        "C=1CC-1", "C-1CC=1", "C#1CC=1", "C1CC-1", "C/1CC1", "C1CC/1", "C=1CCCC/1",
        "c1cc*cc1", "*1ccccc1", "c1cc*c1", "c1cc**c1", "c1c*ccc1C", "*1cccc1", "c1*ccc1",
        "[Fe+++]", "[O--]", "[N++]", "[Fe++]", "[O-2]", "[C--]", "[Cl---]", "[Na++++]",
        "[Fe+3]", "[Ti++++]", "[NH4+]", "[NH4]", "[N+4]", "[C+-]", "[C-+]",
    ],
    "whitespace": [
        " CCO", "CCO ", "  CCO  ", "\tCCO", "CCO\t", "CCO ethanol", "CCO\tethanol",
        "CCO ethanol 2", "c1ccccc1 benzene", " c1ccccc1 benzene ", "CC O", "C C", " ",
        "\t", "CCO |$;;$|", "CC(=O)O acetic acid", "CCO\t\tname",
    ],
    "verdict": [
        "", "C(C)(C)(C)(C)C", "[NH4]", "N(C)(C)(C)C", "c1ccccc1c", "c1cccc1", "C1CC",
        "C((C))", "C()C", "(C)C", "C)C", "C.", ".C", "C..C", "[C", "C]", "[Xx]", "[c]",
        "[cH]1cccc1", "c1ccc2c(c1)cccc2", "n1cccc1", "o1cccc1", "[nH]1cccc1", "s1cccc1",
        "c1ccoc1", "b1ccccc1", "[se]1cccc1", "[te]1cccc1", "[as]1cccc1", "[si]1cccc1",
        "C1CCCCC1C1CCCCC1", "C12CC1C2", "C11", "C1C1", "C%10CC%10", "C%(100)CC%(100)",
        "C%1CC%1", "[C@@H](F)(Cl)Br", "F/C=C\\F", "F/C=C/F", "F\\C=C/F", "C/C", "[C@]",
        "[C@TH1](F)(Cl)(Br)I", "[Co@OH1](F)(F)(F)(F)(F)F", "[Pt@SP1](F)(Cl)(Br)I",
        "[As@TB1](F)(Cl)(Br)(N)S", "[CH5]", "[CH3]", "[CH2]", "[CH]", "[C]", "[O]", "[OH]",
        "[N]", "[NH]", "[NH2]", "[Cl+]", "[Cl+2]", "[Cl+3]", "[I+3]", "O=[Cl+3]([O-])([O-])O",
        "[O-][Cl+3]([O-])([O-])O", "P(F)(F)(F)(F)F", "S(F)(F)(F)(F)(F)F", "[PH5]", "[SH6]",
        "B(C)(C)(C)C", "[B-](C)(C)(C)C", "[Si](C)(C)(C)(C)C", "C=[N+]=[N-]", "[N-]=[N+]=N",
        "C=N#N", "O=N(=O)C", "C[N+](=O)[O-]", "C1=CC=CC=C1", "C1=CC=CC1", "c1ccc1",
        "c1cccccc1", "C1=CC=CC=CC=C1", "c1ccccccc1", "[Na]", "[Na+].[Cl-]", "Cl[Na]",
        "[Li]C", "C[Mg]Br", "[Hg]", "[U]", "[Og]", "[Ts]", "[Uue]", "[Db]", "[Nh]",
    ],
    "large_aromatic": [
        "c1cc2cc3ccc(cc4ccc(cc5ccc(cc1n2)[nH]5)n4)[nH]3",
        "C1=CC2=CC3=CC=C(N3)C=C4C=CC(=N4)C=C5C=CC(=N5)C=C1N2",
        "c1ccc2c(c1)c1nc2nc2[nH]c(nc3nc(nc4[nH]c(n1)c1ccccc41)c1ccccc31)c1ccccc21",
        "c1ccc2c(c1)c1nc2nc2n3c(nc4nc(nc5n6c(n1)c1ccccc15)c1ccccc14)c1ccccc1c3[Cu]6",
        "c1cc2cc3ccc4n3[Zn]n3c(cc5ccc(cc1n2)n5)ccc3c4",
        "c1cc2cc3ccc(cc4ccc(cc5ccc(cc1n2)n5[Fe])n4)n3",
        "[Mg]1n2c3ccc2cc2ccc(n21)cc1ccc(n1)cc1ccc(c3)n1",
        "c1cc2ccc3cccc4ccc(c1)c2c34", "c1cc2ccc3ccc4ccc5ccc6ccc1c7c2c3c4c5c67",
        "c1ccc2cc3ccccc3cc2c1", "c1ccc2c(c1)ccc1ccccc12", "c1ccc2ccccc2c1",
        "c1ccc2cc3cc4ccccc4cc3cc2c1", "c1ccc-2c(c1)-c1cccc3cccc-2c13",
        "C1=CC=CC=CC=CC=CC=CC=CC=CC=C1", "c1ccccccccccccccccc1", "c1cccccccccccccc1",
        "c1cc2ccc1cc1ccc(cc1)cc1ccc(cc1)c2", "c1cc2ccc3cc1cc1ccc(cc31)c2",
        "C1=CC2=CC=C1C=C1C=CC(C=C1)=C2", "c1ccc2c(c1)-c1ccccc1-c1ccccc1-2",
        "c1ccc2c(c1)c1ccccc1c1ccccc21", "c1cc2c3c(c1)ccc1cccc(c13)cc2",
        "c12c3c4c5c1c1c6c7c2c2c8c3c3c9c4c4c%10c5c5c1c1c6c6c%11c7c2c2c7c8c3c3c8c9c4c4c9c%10c5c5c1c1c6c6c%11c2c2c7c3c3c8c4c4c9c5c1c1c6c2c3c41",
        "O=c1c2ccccc2c(=O)c2ccccc12", "c1ccc2c(c1)[nH]c1ccccc12",
        "C1=Cc2cccc3cccc1c23", "c1cc2cccc3c4cccc5cccc(c(c1)c23)c54",
        "c1ccc2c(c1)c1cccc3c1c2ccc3",
        "CC1=C(CCC(=O)O)c2cc3[nH]c(cc4nc(cc5[nH]c(cc1n2)c(C)c5C=C)c(C)c4C=C)c(C)c3CCC(=O)O",
    ],
}


def main():
    for family, strings in FAMILIES.items():
        for s in strings:
            rec = featurize(s)
            rec["family"] = family
            print(json.dumps(rec))


if __name__ == "__main__":
    main()
