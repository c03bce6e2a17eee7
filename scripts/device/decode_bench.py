"""Device check for the model engine: wax's batched decode against transformers.generate.

Usage (on the GPU machine, from the repository root; see scripts/device/decode_check.sh):
    python3 scripts/device/decode_bench.py make DIR        # random-init Qwen3-0.6B-shaped model
    python3 scripts/device/decode_bench.py hf DIR OUT.json  # transformers.generate throughput
    python3 scripts/device/decode_bench.py summary WAX.json HF.json OUT.json  # ratio, roofline

The model has Qwen3-0.6B's shape (28 layers, hidden 1024, 16 heads / 8 KV heads, head_dim 128,
intermediate 3072, vocab 151,936, tied embeddings) with seeded random weights, saved in bf16 so
that wax and transformers decode the same weights. The measurement matches the issue: batch 512,
64-token prompts, 64 new tokens, top-p 0.95 sampling, bf16.
"""

import json
import os
import sys
import time

import torch
import transformers

BATCH, PROMPT, NEW, TOP_P = 512, 64, 64, 0.95


def make(out):
    config = transformers.Qwen3Config(
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
        max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": n, "dir": out}))


def hf(model_dir, out):
    device = "cuda"
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device)
    model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, PROMPT), generator=g).to(device)
    mask = torch.ones_like(ids)
    kwargs = dict(
        attention_mask=mask,
        do_sample=True,
        top_p=TOP_P,
        top_k=0,
        temperature=1.0,
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        pad_token_id=0,
    )
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        torch.cuda.synchronize()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            model.generate(ids, **kwargs)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    best = min(times)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    result = {
        "engine": "transformers.generate",
        "transformers": transformers.__version__,
        "batch": BATCH,
        "prompt_len": PROMPT,
        "new_tokens": NEW,
        "seconds": best,
        "new_tokens_per_s": BATCH * NEW / best,
        "weight_bytes": weights,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


def summary(wax_json, hf_json, out, variants=()):
    """Side-by-side ratio and the weights-read roofline measured with a device copy; each of
    `variants` (other wax bench JSONs of the same run) is compared with the shipped one too."""
    wax = json.load(open(wax_json))
    ref = json.load(open(hf_json))
    n = 1 << 30
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    read_bw = 10 * n / (time.perf_counter() - t0)  # bytes read per second (plus as many written)
    roofline = BATCH * read_bw / ref["weight_bytes"]
    # Compute bound of a decode step at this batch: 2 FLOP per parameter per token, at the
    # measured bf16 matmul rate.
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    flops = 10 * 2 * 8192**3 / (time.perf_counter() - t0)
    params = ref["weight_bytes"] / 2
    compute_bound = flops / (2 * params)
    # transformers.generate's time covers prefill and decode; compare it with wax's end to end.
    wax_e2e = BATCH * NEW / wax["total_s"]
    result = {
        "wax_end_to_end_new_tokens_per_s": wax_e2e,
        "wax_decode_loop_new_tokens_per_s": wax["decode_tokens_per_s"],
        "wax_decode_ms_per_step": wax["decode_ms_per_step"],
        "wax_sample_ms": wax.get("sample_ms"),
        "wax_capture_ms": wax.get("capture_ms"),
        "wax_prefill_tokens_per_s": wax["prefill_tokens_per_s"],
        "transformers_new_tokens_per_s": ref["new_tokens_per_s"],
        "ratio_wax_over_transformers_end_to_end": wax_e2e / ref["new_tokens_per_s"],
        "ratio_wax_decode_loop_over_transformers": wax["decode_tokens_per_s"] / ref["new_tokens_per_s"],
        "read_bandwidth_gb_s": read_bw / 1e9,
        "weights_read_roofline_tokens_per_s": roofline,
        "wax_decode_fraction_of_weights_read_roofline": wax["decode_tokens_per_s"] / roofline,
        "bf16_matmul_tflop_s": flops / 1e12,
        "compute_bound_tokens_per_s": compute_bound,
        "wax_decode_fraction_of_compute_bound": wax["decode_tokens_per_s"] / compute_bound,
        "device": torch.cuda.get_device_name(0),
    }
    for path in variants:
        try:
            v = json.load(open(path))
        except (OSError, ValueError) as e:
            result[os.path.basename(path)] = f"unreadable: {e}"
            continue
        v_e2e = BATCH * NEW / v["total_s"]
        result[os.path.basename(path)] = {
            "decode_loop_new_tokens_per_s": v["decode_tokens_per_s"],
            "decode_ms_per_step": v["decode_ms_per_step"],
            "end_to_end_new_tokens_per_s": v_e2e,
            "ratio_end_to_end_over_transformers": v_e2e / ref["new_tokens_per_s"],
            "decode_loop_speedup_over_shipped": v["decode_tokens_per_s"] / wax["decode_tokens_per_s"],
            "graphs": v.get("graphs"),
            "capture_ms": v.get("capture_ms"),
            "step_attention": v.get("step_attention"),
            "step_prep": v.get("step_prep"),
            "step_norm": v.get("step_norm"),
            "decode_logits": v.get("decode_logits"),
            "sample_bf16_ms": v.get("sample_bf16_ms"),
        }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "summary":
        summary(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
        sys.exit(0)
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "hf":
        hf(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
