#!/usr/bin/env bash
# The maze-naive signature on a real pretrained model (docs/results/smollm2-naive.md): concept
# vectors of pretrained:smollm2-135m-instruct and of builtin:1m from N synthetic trajectories
# per class, then geometry, the logit lens and the emotion scatter on each; plus the token
# counts of the same trajectories under SmolLM2's template (whole conversation, the old
# per-turn layout, and wax's) and the label-permutation null of the Mold–Gold cosine.
#   scripts/science/naive_signature.sh [per_class=1000] [out=runs/science] [device=cpu]
# CPU cost: about 690 tokens per trajectory with SmolLM2 (maze lengths 1–15); 1,000 per class
# is ~2.1M tokens of 135M-parameter forwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
per_class=${1:-1000}
out=${2:-runs/science}
device=${3:-cpu}
make -s build
wax=target/debug/wax
mkdir -p "$out"
for model in pretrained:smollm2-135m-instruct builtin:1m; do
  name=${model#*:}
  dir="$out/$name-pc$per_class"
  if [[ ! -f "$dir/summary.json" ]]; then
    "$wax" extract --model "$model" --naive none --per-class "$per_class" --out "$dir" \
      --device "$device"
  fi
  for suite in geometry lens emotions; do
    "$wax" eval "$suite" --vectors "$dir" --device "$device" --output json > "$dir/eval-$suite.json"
  done
  .wax/python scripts/science/label_null.py "$dir/trained/vectors.safetensors" \
    > "$out/label-null-$name-pc$per_class.md"
done
"$wax" maze synthetic --per-class "$per_class" -o "$out/synthetic-$per_class.jsonl"
snapshot=$("$wax" model inspect pretrained:smollm2-135m-instruct --output json |
  .wax/python -c 'import json, sys; print(json.load(sys.stdin)["dir"])')
.wax/python scripts/science/token_layout.py "$snapshot" "$out/synthetic-$per_class.jsonl" \
  "$out/smollm2-135m-instruct-pc$per_class/trained/extraction.json" > "$out/token-layout-$per_class.json"
echo "results in $out (extraction folders, eval-*.json, token-layout-$per_class.json," \
  "label-null-*.md)"
