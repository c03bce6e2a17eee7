#!/usr/bin/env bash
# The full CPU form of the measurement, one command: train the builtin model in the paper's
# maze (examples/train-full.toml, unless runs/full/step-100 exists), extract v and u with the
# paper's 5,000 trajectories per class, and run every evaluation suite with CPU-sized counts.
#   scripts/measure_full.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs}
make -s build
wax=target/debug/wax
if [[ ! -d "$out/full/step-100/model" ]]; then
  "$wax" train examples/train-full.toml --out "$out/full"
fi
"$wax" extract --model "$out/full/step-100/model" --naive auto --out "$out/extract" --device cpu
"$wax" eval all --vectors "$out/extract" --config examples/eval-cpu.toml
echo "tables in $out/extract and $out/extract/eval"
