#!/usr/bin/env python3
"""Markdown tables of a naive_signature.sh run (the tables of docs/results/smollm2-naive.md).

Usage: summarize.py OUT_DIR PER_CLASS [MODEL_NAME ...]

Reads, for each model name (default: smollm2-135m-instruct 1m), OUT_DIR/<name>-pc<N>/:
trained/extraction.json (counts, tokens, seconds, layer selection), trained/layers.jsonl
(held-out AUROC, d, overlap per layer and concept), eval/geometry.json (per-layer cosines,
the minimum's bootstrap interval and random-direction null, centred class means),
eval/emotions_summary.json and eval/lens.jsonl; and OUT_DIR/token-layout-<N>.json.
"""
import json
import os
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def model_section(d, name):
    ex = load(f"{d}/trained/extraction.json")
    meta, sel = ex["meta"], ex["selection"]
    g = load(f"{d}/eval/geometry.json")[0]
    emo = load(f"{d}/eval/emotions_summary.json")[0]
    rows = jsonl(f"{d}/trained/layers.jsonl")
    by = {(r["concept"], r["layer"]): r for r in rows}
    h = g["min_headline"]
    out = [f"### {meta['model']}", ""]
    out.append(
        f"{meta['num_layers']} blocks, width {meta['hidden']}; trajectories fit/held-out per class "
        f"(Path, Mold, Gold order as stored): {meta['fit_counts']} / {meta['heldout_counts']}; "
        f"{meta['tokens']:,} tokens; {meta['seconds']:.0f} s."
    )
    out.append("")
    out.append("| statistic | value |")
    out.append("|---|---|")
    out.append(f"| per-layer cos(v_Mold, v_Gold), average | {g['avg']:+.3f} |")
    out.append(
        f"| minimum (layer) | {g['min']:+.3f} ({g['argmin']}) |"
    )
    out.append(
        f"| 95% block-bootstrap interval of the minimum ({h['resamples']} resamples) | "
        f"{h['ci_lo']:+.3f} … {h['ci_hi']:+.3f} |"
    )
    out.append(
        f"| random-direction null at that layer ({h['null_draws']} draws): 2.5–97.5% | "
        f"{h['null_q025']:+.3f} … {h['null_q975']:+.3f} (p = {h['null_p']:.3f}) |"
    )
    c = g["centred"]
    out.append(
        f"| centred class means at layer {c['layer']}: Mold·Gold / Mold·Path / Gold·Path | "
        f"{c['mold_gold']:+.3f} / {c['mold_path']:+.3f} / {c['gold_path']:+.3f} |"
    )
    for concept in ("mold", "gold", "path"):
        s = sel[concept]
        lay = s["layer"]
        r = by.get((concept, lay))
        stats = "" if r is None else f"; AUROC {r['auroc']:.3f}, d {r['d']:+.3f}, overlap {r['overlap']:.3f}"
        out.append(
            f"| ℓ*{concept.capitalize()} (by AUROC / d / overlap) | {lay} "
            f"({s['by_auroc']} / {s['by_d']} / {s['by_overlap']}){stats} |"
        )
    sh = emo["slope_headline"]
    out.append(
        f"| emotion scatter at layer {emo['layer']}: slope of Gold-vs-Mold projections "
        f"({emo['emotions']} emotions) | {sh['estimate']:+.3f} [{sh['ci_lo']:+.3f}, {sh['ci_hi']:+.3f}], "
        f"null {sh['null_q025']:+.3f} … {sh['null_q975']:+.3f}, r = {emo['pearson_r']:+.3f} |"
    )
    out.append("")
    out.append("| layer | cos(v_Mold, v_Gold) | cos(ṽ_Mold, ṽ_Gold) (Path reference) | ‖v_Mold‖ | ‖v_Gold‖ | AUROC Mold | AUROC Gold |")
    out.append("|---|---|---|---|---|---|---|")
    for l in g["layers"]:
        am = by.get(("mold", l["layer"]), {}).get("auroc", float("nan"))
        ag = by.get(("gold", l["layer"]), {}).get("auroc", float("nan"))
        out.append(
            f"| {l['layer']} | {l['cos_mold_gold']:+.3f} | {l['cos_path_reference']:+.3f} | "
            f"{l['norm_mold']:.3f} | {l['norm_gold']:.3f} | {am:.3f} | {ag:.3f} |"
        )
    out.append("")
    out.append("Logit lens (top 5 promoted tokens; `␣` is a leading space):")
    out.append("")
    out.append("| vector | layer | final norm | promoted |")
    out.append("|---|---|---|---|")
    for r in jsonl(f"{d}/eval/lens.jsonl"):
        toks = ", ".join("`" + t["text"].replace("|", "\\|").replace("`", "'") + "`" for t in r["promoted"])
        out.append(f"| {r['name']} | {r['layer']} | {'yes' if r['final_norm'] else 'no'} | {toks} |")
    out.append("")
    return out


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, n = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or ["smollm2-135m-instruct", "1m"]
    lines = []
    for name in names:
        lines += model_section(f"{root}/{name}-pc{n}", name)
    tl = f"{root}/token-layout-{n}.json"
    if os.path.exists(tl):
        t = load(tl)
        lines.append(
            f"Token layout ({t['trajectories']} trajectories, SmolLM2 template): whole-conversation "
            f"rendering {t['whole']:,} tokens; per-turn rendering {t['per_turn']:,}; "
            f"wax {t.get('wax', 'n/a'):,}."
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
