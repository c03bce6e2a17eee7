"""Reads a pulled sweep the way a researcher would: vectors with `safetensors`, tables with
`pandas`, summaries with `json`. Used by tests/tests/sweep_e2e.rs.

    python sweep_artifacts.py check DIR          every artifact loads; prints a JSON summary
    python sweep_artifacts.py compare DIR_A DIR_B  the same stage ids and the same numbers
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

TIMING = ["rollout_s", "update_s", "step_s", "tokens_per_s"]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(root):
    root = Path(root)
    plan = json.loads((root / "plan.json").read_text())
    counts = {"safetensors": 0, "jsonl": 0, "json": 0, "tensors": 0, "rows": 0}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            tensors = load_file(str(path))
            counts["safetensors"] += 1
            counts["tensors"] += len(tensors)
            for name, t in tensors.items():
                if t.dtype.kind == "f" and not np.isfinite(t).all():
                    fail(f"{path}: {name} has non-finite values")
        elif path.suffix == ".jsonl":
            if path.stat().st_size > 0:
                df = pd.read_json(path, lines=True)
                counts["rows"] += len(df)
            counts["jsonl"] += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
            counts["json"] += 1
    for t in plan["trials"]:
        tdir = root / "trials" / f"{t['index']:03d}"
        for role in ["extract-trained", "extract-naive"]:
            meta = json.loads((tdir / role / "extraction.json").read_text())["meta"]
            v = load_file(str(tdir / role / "vectors.safetensors"))
            for c in ["mold", "gold", "path"]:
                if v[f"v.{c}"].shape != (meta["num_layers"], meta["hidden"]):
                    fail(f"{tdir / role}: v.{c} has shape {v[f'v.{c}'].shape}")
        metrics = pd.read_json(tdir / "rl" / "metrics.jsonl", lines=True)
        if len(metrics) == 0 or "return_mean" not in metrics:
            fail(f"{tdir}: rl/metrics.jsonl has no steps")
    trials = pd.read_json(root / "report" / "trials.jsonl", lines=True)
    if len(trials) != len(plan["trials"]):
        fail(f"report has {len(trials)} rows for {len(plan['trials'])} trials")
    for col in ["return_before", "return_after", "cos_min_trained", "cos_min_naive"]:
        if col not in trials or not trials[col].map(lambda x: isinstance(x, float) and math.isfinite(x)).all():
            fail(f"report column {col}: {trials.get(col)}")
    counts["trials"] = len(plan["trials"])
    print(json.dumps(counts))


def trial_dirs(root):
    plan = json.loads((Path(root) / "plan.json").read_text())
    return {json.dumps(t["params"], sort_keys=True): (t, Path(root) / "trials" / f"{t['index']:03d}") for t in plan["trials"]}


def compare(a, b):
    ta, tb = trial_dirs(a), trial_dirs(b)
    if ta.keys() != tb.keys():
        fail(f"different trials: {sorted(ta)} vs {sorted(tb)}")
    compared = 0
    for key, (pa, da) in ta.items():
        pb, db = tb[key]
        if pa["stages"] != pb["stages"]:
            fail(f"trial {key}: stage ids differ: {pa['stages']} vs {pb['stages']}")
        ma = pd.read_json(da / "rl" / "metrics.jsonl", lines=True).drop(columns=TIMING)
        mb = pd.read_json(db / "rl" / "metrics.jsonl", lines=True).drop(columns=TIMING)
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
        sa = json.loads((da / "rl" / "summary.json").read_text())
        sb = json.loads((db / "rl" / "summary.json").read_text())
        for k in ["before", "after", "comparison", "steps"]:
            if sa[k] != sb[k]:
                fail(f"trial {key}: rl summary {k} differs: {sa[k]} vs {sb[k]}")
        for role in ["extract-trained", "extract-naive"]:
            va = load_file(str(da / role / "vectors.safetensors"))
            vb = load_file(str(db / role / "vectors.safetensors"))
            if va.keys() != vb.keys():
                fail(f"trial {key} {role}: tensors {sorted(va)} vs {sorted(vb)}")
            for name in va:
                if not np.array_equal(va[name], vb[name]):
                    fail(f"trial {key} {role}: {name} differs (max |Δ| {np.abs(va[name] - vb[name]).max()})")
                compared += 1
        ea = json.loads((da / "evaluate" / "trial.json").read_text())
        eb = json.loads((db / "evaluate" / "trial.json").read_text())
        if ea != eb:
            fail(f"trial {key}: evaluate/trial.json differs:\n{ea}\n{eb}")
    ra = pd.read_json(Path(a) / "report" / "trials.jsonl", lines=True).drop(columns=["evaluate"])
    rb = pd.read_json(Path(b) / "report" / "trials.jsonl", lines=True).drop(columns=["evaluate"])
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)
    print(json.dumps({"trials": len(ta), "tensors_compared": compared}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        fail(__doc__)
