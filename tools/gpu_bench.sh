#!/usr/bin/env bash
# Pre-training speed on one GPU: benchmarks 1 (copy-and-append vs the naive passes) and 5 (one
# SSL training step: chunk, chunk with dense attention, offline, ESPnet HuBERT-style) of
# docs/benchmarks.md at the base preset (d 512, 12 layers), in bf16, then a summary per step:
# audio seconds per second per GPU, utilisation of the bf16 matmul rate measured in the same run,
# and peak memory per utterance.
#
# Usage: tools/gpu_bench.sh [--device cuda|cpu] [--out DIR]
#   --device cuda (default): base preset, 8 x 15 s per step, 5 timed steps per row.
#   --device cpu: the same commands at toy size and one step per row (what the test suite runs;
#                 its figures say nothing about a GPU).
# Results: DIR/ssl_throughput.json, DIR/copy_append.json, DIR/summary.md (default exp/bench/gpu).
set -euo pipefail
device=cuda
out=exp/bench/gpu
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
if [ "$device" = cuda ]; then
  "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "gpu_bench.sh: torch sees no CUDA GPU here; run with --device cpu for the toy run" >&2
    exit 1
  }
  ssl=(--size base --batch-size 8 --seconds 15 --repeats 5 --warmup 2 --matmul-size 8192)
  ca=(--presets base --frames 1500 --batch-size 8 --chunk-ms 640 1280 --repeats 5 --warmup 2)
elif [ "$device" = cpu ]; then
  ssl=(--size toy --batch-size 1 --seconds 1.5 --repeats 1 --warmup 0 --matmul-size 128)
  ca=(--presets tiny --frames 200 --batch-size 1 --chunk-ms 640 --repeats 1 --warmup 0)
else
  echo "gpu_bench.sh: --device must be cuda or cpu, got $device" >&2
  exit 2
fi
mkdir -p "$out"
"$py" -m chunkssl_espnet.bench.ssl_throughput --device "$device" --bf16 --no-profile \
  "${ssl[@]}" --out "$out/ssl_throughput.json"
"$py" -m chunkssl_espnet.bench.copy_append --device "$device" --bf16 "${ca[@]}" \
  --out "$out/copy_append.json"
"$py" -m chunkssl_espnet.bench.gpu_summary "$out/ssl_throughput.json" "$out/copy_append.json" \
  | tee "$out/summary.md"
