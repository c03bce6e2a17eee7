#!/usr/bin/env bash
# Device check for the model engine (run on the GPU machine by the `device` tool, from the
# repository root, with binaries built here by scripts/device/prepare.sh and carried in
# device-bin/):
#   1. `wax doctor` (libtorch sees CUDA);
#   2. a random-init Qwen3-0.6B-shaped model in bf16 (scripts/device/decode_bench.py make);
#   3. GPU tests (worker/tests/gpu_decode.rs): the fused sampler kernel against the libtorch
#      sampler, CUDA-graph decoding against the op-by-op loop (plain and steered), packed
#      projections and causal prefill against the general path, the split-K decode-attention
#      kernels against their host algorithm and SDPA, the q/k preparation kernel against the ops
#      and its host arithmetic, the residual-norm kernel against its host arithmetic and the
#      ops, and graph decoding with all three;
#   4. wax's decode throughput, batch 512, 64-token prompts, 64 new tokens, top-p 0.95: as shipped
#      (CUDA graphs + fused sampler + packed projections), op by op, without packed q/k/v and
#      gate/up matmuls (WAX_PACKED_PROJECTIONS=0), and with the decode kernels: attention
#      (WAX_DECODE_ATTENTION=kernel), q/k preparation (WAX_DECODE_PREP=kernel), residual adds
#      fused into the norms (WAX_DECODE_NORM=kernel), logits kept in bf16 for the sampler
#      (WAX_DECODE_LOGITS=bf16), all four together, the three kernels, and each alone;
#      The decode step's attention alone: SDPA against the kernel (`wax bench attention`);
#   5. transformers.generate on the same weights, in the same run;
#   6. the ratios (every variant against transformers and against the shipped loop), the
#      weights-read roofline and the compute bound; batch 64 as shipped and with the kernels.
# BENCH_ENV (e.g. `WAX_PACKED_PROJECTIONS=0`) is passed to one bench's environment.
# Every step runs even if an earlier one failed; results land in $OUT. Steps run in order of
# importance and each is skipped once it would overrun BUDGET_S seconds (default 540, under the
# device tool's 600-second limit per call): PARTS (default `tests bench`) picks the groups.
set -uo pipefail
# NVRTC (for the CUDA kernels) lives in the CUDA wheel next to torch.
export LD_LIBRARY_PATH=${WAX_DEVICE_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=${WAX_BIN:-device-bin/wax}
out=${OUT:-/tmp/wax-device-out}
export OUT=$out
mkdir -p "$out"
model=/tmp/wax-qwen3-0.6b-shape
budget=${BUDGET_S:-540}
parts=" ${PARTS:-tests bench} "
step() { echo "== $* ($(date +%T), $((budget - SECONDS)) s left)"; }
# fits SECONDS_NEEDED: whether a step of that length still fits the budget (says so if not).
fits() {
  if (( SECONDS + $1 > budget )); then
    echo "== skipped: needs ~$1 s, $((budget - SECONDS)) s left"
    return 1
  fi
}
step doctor
"$bin" doctor > "$out/doctor.txt" 2>&1
step make model
[ -d "$model" ] || python3 scripts/device/decode_bench.py make "$model"
if [[ $parts == *" tests "* ]] && fits 150; then
  step gpu tests
  [ -n "${WAX_SKIP_GPU_TESTS:-}" ] || WAX_GPU_TESTS=1 WAX_GPU_TEST_MODEL="$model" \
    timeout $((budget - SECONDS)) device-bin/gpu_decode --test-threads=1 --nocapture 2>&1 \
    | tee "$out/gpu_tests.txt" | grep -v "^scale" | tail -24
fi
bench() { # name, extra args…
  local name=$1
  shift
  fits 45 || return 0
  step "bench $name"
  timeout $((budget - SECONDS)) env ${BENCH_ENV:-} "$bin" bench model "$model" --device cuda \
    --dtype bf16 --prompt-len 64 --new-tokens 64 --top-p 0.95 --repeats 2 --format json "$@" \
    > "$out/$name.json" 2> "$out/$name.err"
  tail -3 "$out/$name.err"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ('decode_tokens_per_s','decode_ms_per_step','total_s','sample_ms','sample_bf16_ms','sample_reference_ms','sampler','decode_logits','graphs','capture_ms','step_attention','step_prep','step_norm','prefill_tokens_per_s')})" "$out/$name.json"
}
if [[ $parts == *" bench "* ]]; then
  if fits 30; then
    step bench attention
    timeout 60 "$bin" bench attention --device cuda --dtype bf16 | tee "$out/attention.txt"
  fi
  bench wax --batch 512
  kernels="WAX_DECODE_ATTENTION=kernel WAX_DECODE_PREP=kernel WAX_DECODE_NORM=kernel"
  BENCH_ENV="$kernels WAX_DECODE_LOGITS=bf16" bench wax_all --batch 512
  if fits 60; then
    step transformers
    python3 scripts/device/decode_bench.py hf "$model" "$out/hf.json"
  fi
  BENCH_ENV=$kernels bench wax_kernels --batch 512
  BENCH_ENV=WAX_DECODE_LOGITS=bf16 bench wax_bf16_logits --batch 512
  BENCH_ENV=WAX_DECODE_ATTENTION=kernel bench wax_attn_kernel --batch 512
  BENCH_ENV=WAX_DECODE_PREP=kernel bench wax_prep_kernel --batch 512
  BENCH_ENV=WAX_DECODE_NORM=kernel bench wax_norm_kernel --batch 512
  bench wax_eager --batch 512 --decode eager
  BENCH_ENV=WAX_PACKED_PROJECTIONS=0 bench wax_unpacked --batch 512
  if [ -s "$out/wax.json" ] && [ -s "$out/hf.json" ]; then
    step summary
    python3 scripts/device/decode_bench.py summary "$out/wax.json" "$out/hf.json" \
      "$out/summary.json" "$out"/wax_all.json "$out"/wax_kernels.json \
      "$out"/wax_bf16_logits.json "$out"/wax_attn_kernel.json \
      "$out"/wax_prep_kernel.json "$out"/wax_norm_kernel.json "$out"/wax_eager.json "$out"/wax_unpacked.json
  fi
  bench wax_b64 --batch 64
  BENCH_ENV="$kernels WAX_DECODE_LOGITS=bf16" bench wax_b64_all --batch 64
fi
step done
