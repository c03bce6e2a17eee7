#!/usr/bin/env bash
# Device check for the model engine (run on the GPU machine by the `device` tool, from the
# repository root, with a release `wax` binary built here and carried in device-bin/):
#   1. `wax doctor` (libtorch sees CUDA);
#   2. a random-init Qwen3-0.6B-shaped model in bf16 (scripts/device/decode_bench.py make);
#   3. wax's decode throughput: batch 512, 64-token prompts, 64 new tokens, top-p 0.95;
#   4. transformers.generate on the same weights, in the same run;
#   5. the ratio and the weights-read roofline (measured copy bandwidth).
# Results land in $OUT (wax.json, hf.json, summary.json).
set -euo pipefail
export LD_LIBRARY_PATH=${WAX_DEVICE_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}:/usr/local/cuda-13.0/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=${WAX_BIN:-device-bin/wax}
out=${OUT:-/tmp/wax-device-out}
mkdir -p "$out"
model=/tmp/wax-qwen3-0.6b-shape
"$bin" doctor | tee "$out/doctor.txt"
python3 scripts/device/decode_bench.py make "$model"
"$bin" bench model "$model" --device cuda --dtype bf16 --batch 512 --prompt-len 64 \
  --new-tokens 64 --top-p 0.95 --repeats 2 --format json | tee "$out/wax.json"
python3 scripts/device/decode_bench.py hf "$model" "$out/hf.json"
python3 scripts/device/decode_bench.py summary "$out/wax.json" "$out/hf.json" "$out/summary.json"
# The same decode at batch 64: if ms/step barely changes, the step is bound by launches, not the GPU.
"$bin" bench model "$model" --device cuda --dtype bf16 --batch 64 --prompt-len 64 \
  --new-tokens 64 --top-p 0.95 --repeats 2 --format json > "$out/wax_b64.json"
cat "$out/wax_b64.json"
