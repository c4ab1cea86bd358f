#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no Rust toolchain.
#
# usage: scripts/gpu-check.sh MOLE_BINARY FIXTURES_DIR [PEAK_TFLOPS]
#   MOLE_BINARY   a `mole` built with `cargo build --release -p mole-cli --features cuda`
#   FIXTURES_DIR  the shared fixtures folder (holds featurize/tdc_featurized.jsonl)
#   PEAK_TFLOPS   peak dense bf16 TFLOP/s of the GPU (for the bf16 MFU; default: none)
# env: MOLE_BENCH_ITERS (default 20), MOLE_BENCH_SIZES (tiny,small,base),
#      MOLE_BENCH_BATCHES (32,64), MOLE_BENCH_JSON (default: gpu-bench.json), CUDA_HOME.
# Prints everything; exits non-zero on the first failure. Writes its files (JSON results,
# cubecl.toml, gpu-autotune.log, gpu-dp-*/) into the current directory.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0"
  exit 2
fi
MOLE="$1"
FIXTURES="$2"
PEAK="${3:-}"
ITERS="${MOLE_BENCH_ITERS:-20}"
SIZES="${MOLE_BENCH_SIZES:-tiny,small,base}"
BATCHES="${MOLE_BENCH_BATCHES:-32,64}"
JSON="${MOLE_BENCH_JSON:-gpu-bench.json}"
MOLECULES="$FIXTURES/featurize/tdc_featurized.jsonl"

[ -x "$MOLE" ] || { echo "gpu-check: $MOLE is not an executable" >&2; exit 1; }
[ -f "$MOLECULES" ] || { echo "gpu-check: $MOLECULES not found" >&2; exit 1; }

# The CUDA runtime libraries (nvrtc, cublas, ...) must be on the loader path.
for dir in "${CUDA_HOME:-}/lib64" "${CUDA_PATH:-}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 \
           /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  if [ -d "$dir" ] && ls "$dir"/libnvrtc.so* >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu-check: CUDA libraries from $dir"
    break
  fi
done

echo "== date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -srm)"
echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi
else
  echo "gpu-check: nvidia-smi not found (continuing)"
fi

echo "== $MOLE info"
"$MOLE" info | tee /tmp/gpu-check-info.$$
if ! grep -q "cuda:0: available" /tmp/gpu-check-info.$$; then
  rm -f /tmp/gpu-check-info.$$
  echo "gpu-check: FAILED: cuda:0 is not available (binary built without --features cuda, or no driver/libraries)" >&2
  exit 1
fi
rm -f /tmp/gpu-check-info.$$

# GPU parity against the PyTorch fixtures: float32 at the CPU suite's tolerances, then bf16 and
# f16 mixed precision at the tolerances justified in
# crates/mole-model/tests/parity_mixed_precision.rs.
for PREC in f32 bf16 f16; do
  echo "== $MOLE parity --device cuda --precision $PREC --fixtures $FIXTURES/parity"
  "$MOLE" parity --device cuda --precision "$PREC" --fixtures "$FIXTURES/parity" --json "gpu-parity-$PREC.json"
done

# Peak GPU memory while the benchmark runs (sampled every 200 ms).
SMI_PID=""
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/gpu-check-mem.$$ 2>/dev/null &
  SMI_PID=$!
fi
stop_smi() {
  if [ -n "$SMI_PID" ]; then
    kill "$SMI_PID" 2>/dev/null || true
    wait "$SMI_PID" 2>/dev/null || true
    SMI_PID=""
  fi
}
trap stop_smi EXIT

# Which matmul kernels Burn's autotune picks: CubeCL reads ./cubecl.toml; the minimal autotune
# log names the fastest kernel of every tuned key.
cat > cubecl.toml <<'TOML'
[autotune.logger]
level = "minimal"
file = "gpu-autotune.log"
append = false
TOML
rm -f gpu-autotune.log

# Throughput in f32 and in bf16 (MFU of base in bf16 needs PEAK = the card's dense bf16 TFLOP/s).
for PREC in f32 bf16; do
  echo "== $MOLE bench --device cuda --precision $PREC --sizes $SIZES --batch-sizes $BATCHES"
  ARGS=(bench --device cuda --precision "$PREC" --sizes "$SIZES" --batch-sizes "$BATCHES"
        --molecules "$MOLECULES" --warmup "$ITERS" --iters "$ITERS" --json "${JSON%.json}-$PREC.json")
  if [ -n "$PEAK" ] && [ "$PREC" = bf16 ]; then
    ARGS+=(--peak-tflops "$PEAK")
  fi
  "$MOLE" "${ARGS[@]}"
done

stop_smi
if [ -s /tmp/gpu-check-mem.$$ ]; then
  echo "== peak GPU memory used during the benchmark: $(sort -n /tmp/gpu-check-mem.$$ | tail -1) MiB (whole GPU, nvidia-smi)"
fi
rm -f /tmp/gpu-check-mem.$$
if [ -s gpu-autotune.log ]; then
  echo "== autotune choices for matmul (gpu-autotune.log)"
  grep -i "matmul" gpu-autotune.log | sort | uniq -c | sort -rn | head -40 || true
fi

# Data parallel on two GPUs (when present): the trajectory must match one GPU with the combined
# batch (f32, dropout off; the tolerance allows for GPU reduction order).
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
if [ "${NGPU:-0}" -ge 2 ]; then
  echo "== data parallel: --devices cuda:0,cuda:1 against --device cuda:0"
  grep -o '"smiles":"[^"]*"' "$MOLECULES" | sed 's/^"smiles":"//; s/"$//; s/\\\\/\\/g' > gpu-check.smi
  cat > gpu-check-tiny.toml <<'TOML'
hidden_size = 64
num_hidden_layers = 2
num_attention_heads = 4
intermediate_size = 256
hidden_act = "gelu"
hidden_dropout_prob = 0.0
attention_probs_dropout_prob = 0.0
max_position_embeddings = 0
type_vocab_size = 0
initializer_range = 0.02
layer_norm_eps = 1e-7
relative_attention = true
max_relative_positions = 64
position_buckets = 0
pos_att_type = "p2c|c2p"
share_att_key = true
norm_rel_ebd = "layer_norm"
position_biased_input = false
TOML
  for RUN in "one --device cuda:0" "two --devices cuda:0,cuda:1"; do
    set -- $RUN
    rm -rf "gpu-dp-$1"
    "$MOLE" pretrain --data gpu-check.smi --model gpu-check-tiny.toml --precision f32 --max-steps 20 \
      --batch-size 15 --out "gpu-dp-$1" --set train.log_every=1 --set data.valid_fraction=0.05 "$2" "$3"
  done
  paste <(grep '"kind":"train"' gpu-dp-one/metrics.jsonl | grep -o '"loss":[^,]*' | cut -d: -f2) \
        <(grep '"kind":"train"' gpu-dp-two/metrics.jsonl | grep -o '"loss":[^,]*' | cut -d: -f2) |
    awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 1 ? $1 : 1); if (r > m) m = r; print "  step " NR ": " $1 "  " $2 }
         END { print "  largest relative difference: " m; if (m > 1e-4 || NR < 20) { print "gpu-check: FAILED: data-parallel trajectory differs"; exit 1 } }'
else
  echo "== data parallel: skipped (${NGPU:-0} GPU found, needs 2)"
fi
echo "== results: $JSON"
echo "gpu-check: OK"
