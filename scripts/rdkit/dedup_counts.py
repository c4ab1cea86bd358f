"""Independent check of the bundled model's corpus deduplication (docs/model-card.md): unique
RDKit canonical SMILES (stereo left out) of MOSES train and the MolScore ChEMBL sample, and how
many ChEMBL molecules are not in MOSES. Run with rdkit-pypi==2022.9.5 and numpy<2:

    python scripts/rdkit/dedup_counts.py

Printed on 2026-11-30: moses unique 1584663 chembl unique 273626 chembl not in moses 220031
union 1804694 (mole's `data.deduplicate` kept 1,584,663 + 220,031 = 1,804,694).
"""
import gzip, csv
from rdkit import Chem, RDLogger
RDLogger.DisableLog('rdApp.*')
def canon(path):
    out=set()
    with gzip.open(path,'rt') as f:
        r=csv.reader(f); next(r)
        for row in r:
            m=Chem.MolFromSmiles(row[0])
            if m is not None: out.add(Chem.MolToSmiles(m, isomericSmiles=False))
    return out
moses=canon('/work/shared/datasets/moses/train.csv.gz')
chembl=canon('/work/shared/datasets/molscore/chembl_sample.csv.gz')
print('moses unique', len(moses), 'chembl unique', len(chembl), 'chembl not in moses', len(chembl-moses), 'union', len(moses|chembl))
