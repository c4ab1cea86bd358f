#!/bin/bash
# Steps/s of 1 process, --devices cpu,cpu and two loopback nodes, same corpus and model.
# Run from the repository root after `cargo build --release -p mole-cli`; MODEL=tiny|small|base.
set -e
M=${MOLE:-target/release/mole}
D=${OUT:-/tmp/mole-bench-nodes}; rm -rf $D; mkdir -p $D
zcat ../shared/datasets/moses/train.csv.gz | head -20001 > $D/corpus.csv
COMMON="pretrain --data $D/corpus.csv --model ${MODEL:-small} --max-steps ${STEPS:-40} --batch-size 32 --set train.log_every=1000 --set data.valid_fraction=0.01"
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "one process:    $(t $M $COMMON --out $D/one --device cpu) s"
echo "two devices:    $(t $M $COMMON --out $D/dp --devices cpu,cpu) s"
s=$(date +%s.%N)
$M $COMMON --out $D/nodes --device cpu --nodes 2 --node-rank 0 --master-addr 127.0.0.1:29700 --node-addr 127.0.0.1 > /dev/null 2>&1 &
$M $COMMON --out $D/nodes --device cpu --nodes 2 --node-rank 1 --master-addr 127.0.0.1:29700 --node-addr 127.0.0.1 > /dev/null 2>&1
wait
echo "two nodes:      $(echo "$(date +%s.%N) - $s" | bc) s"
for r in one dp nodes; do python3 -c "
import json
m=[json.loads(l) for l in open('$D/$r/metrics.jsonl')]
t=[x for x in m if x['kind']=='train']
print('$r', 'steps', t[-1]['step'], 'loss', round(t[-1]['loss'],5), 'mol/s', round(t[-1]['mol_per_s'],1))
"; done
