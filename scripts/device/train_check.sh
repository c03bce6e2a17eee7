#!/usr/bin/env bash
# Device check for maze RL (run on the GPU machine by the `device` tool, from the repository
# root, with a release `wax` binary built here and carried in device-bin/, and the builtin
# 100M model's config and tokenizer in device-bin/builtin-100m/ — scripts/device/prepare.sh):
#   1. random-init weights for that config (the GPU machine has no pretraining corpus, and the
#      weights do not matter for throughput);
#   2. a short Dr. GRPO run in bf16 with LoRA: 15-turn mazes, 16 mazes × 16 rollouts per step;
#   3. steps/s, the rollout share of step time and rollout tokens/s from metrics.jsonl.
# Results land in $OUT (train/metrics.jsonl, train/summary.json, train_summary.json).
set -euo pipefail
export LD_LIBRARY_PATH=${WAX_DEVICE_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}:/usr/local/cuda-13.0/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=${WAX_BIN:-device-bin/wax}
out=${OUT:-/tmp/wax-device-out}
steps=${WAX_TRAIN_STEPS:-12}
# Overrides for a local smoke run of this script (defaults: the device check itself).
device=${WAX_TRAIN_DEVICE:-cuda}
dtype=${WAX_TRAIN_DTYPE:-bf16}
mazes=${WAX_TRAIN_MAZES:-16}
group=${WAX_TRAIN_GROUP:-16}
turns=${WAX_TRAIN_TURNS:-15}
eval_mazes=${WAX_TRAIN_EVAL:-64}
mkdir -p "$out"
model=/tmp/wax-builtin-100m
rm -rf "$model" && cp -r device-bin/builtin-100m "$model"
python3 - "$model" <<'PY'
import sys, torch, transformers
d = sys.argv[1]
cfg = transformers.AutoConfig.from_pretrained(d)
torch.manual_seed(0)
m = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
m.save_pretrained(d, safe_serialization=True)
print("parameters", sum(p.numel() for p in m.parameters()))
PY
cat > /tmp/wax-train-check.toml <<TOML
model = "$model"
algorithm = "dr-grpo"
steps = $steps
mazes_per_step = $mazes
group_size = $group
lr = 1e-4
entropy_coef = 0.5
device = "$device"
dtype = "$dtype"
[env]
turns = $turns
[eval]
mazes = $eval_mazes
TOML
"$bin" train /tmp/wax-train-check.toml --out "$out/train" --quiet
python3 - "$out/train/metrics.jsonl" "$out/train_summary.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
timed = rows[1:] or rows  # the first step includes warm-up
step = sum(r["step_s"] for r in timed)
roll = sum(r["rollout_s"] for r in timed)
toks = sum(r["rollout_tokens"] for r in timed)
s = {
    "steps_timed": len(timed),
    "steps_per_s": len(timed) / step,
    "mean_step_s": step / len(timed),
    "rollout_share": roll / step,
    "rollout_tokens_per_s": toks / roll,
    "episodes_per_step": timed[0]["episodes"],
    "return_first": rows[0]["return_mean"],
    "return_last": rows[-1]["return_mean"],
}
json.dump(s, open(sys.argv[2], "w"), indent=2)
print(json.dumps(s, indent=2))
PY
