#!/usr/bin/env python3
"""Nulls for cos(v_Mold, v_Gold) that keep the one-vs-rest construction (docs/results/smollm2-naive.md).

Usage: label_null.py VECTORS.safetensors [PERMUTATIONS=2000] [RESAMPLES=500]

Reads the per-block sums an extraction stores (blocks.<class> [K, L, H], block_counts.<class>)
and recomputes, with numpy only (independently of wax's Rust code):
- the one-vs-rest vectors from the block sums (checked against the stored v.mold / v.gold);
- a block bootstrap of the per-layer cosine (blocks resampled within each class);
- a label-permutation null: the 3K blocks are dealt to the three classes at random and the
  cosine recomputed. One-vs-rest vectors share their "rest" terms, so with no class signal
  their cosine is about −0.5, not 0; the random-direction null in `wax eval geometry` answers a
  different question (is v_Mold more anti-aligned with v_Gold than a random direction is).
Prints a Markdown table per layer and the average and minimum over layers with their p-values.
"""
import sys

import numpy as np
from safetensors.numpy import load_file

CLASSES = ("mold", "gold", "path")


def one_vs_rest(sums, counts, i):
    rest = [j for j in range(3) if j != i]
    return sums[i] / counts[i] - (sums[rest[0]] + sums[rest[1]]) / (counts[rest[0]] + counts[rest[1]])


def cosines(sums, counts):
    a, b = one_vs_rest(sums, counts, 0), one_vs_rest(sums, counts, 1)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    t = load_file(sys.argv[1])
    perms = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    resamples = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    blocks = [t[f"blocks.{c}"].astype(np.float64) for c in CLASSES]
    counts = [t[f"block_counts.{c}"].astype(np.float64) for c in CLASSES]
    k = blocks[0].shape[0]
    if any(b.shape[0] != k for b in blocks):
        sys.exit("error: the classes have different numbers of blocks")
    sums = [b.sum(0) for b in blocks]
    ns = [c.sum() for c in counts]
    for i, c in enumerate(CLASSES[:2]):
        err = np.abs(one_vs_rest(sums, ns, i) - t[f"v.{c}"]).max()
        if err > 1e-4 * max(1.0, np.abs(t[f"v.{c}"]).max()):
            sys.exit(f"error: v.{c} from the block sums differs from the stored one by {err}")
    est = cosines(sums, ns)

    rng = np.random.default_rng(0)
    boot = []
    for _ in range(resamples):
        idx = [rng.integers(0, k, k) for _ in range(3)]
        boot.append(cosines([blocks[i][idx[i]].sum(0) for i in range(3)],
                            [counts[i][idx[i]].sum() for i in range(3)]))
    boot = np.array(boot)

    x = np.concatenate(blocks)
    n = np.concatenate(counts)
    labels = np.repeat(np.arange(3), k)
    null = []
    for _ in range(perms):
        lab = rng.permutation(labels)
        null.append(cosines([x[lab == i].sum(0) for i in range(3)], [n[lab == i].sum() for i in range(3)]))
    null = np.array(null)

    def p_low(stat, dist):
        return ((dist <= stat).sum() + 1) / (len(dist) + 1)

    print(f"{k} blocks per class; {resamples} bootstrap resamples; {perms} label permutations.\n")
    print("| layer | cos | bootstrap 2.5–97.5% | bootstrap median | permutation null mean | null 2.5–97.5% | p (null ≤ cos) |")
    print("|---|---|---|---|---|---|---|")
    for layer, c in enumerate(est):
        lo, hi = np.percentile(boot[:, layer], [2.5, 97.5])
        nlo, nhi = np.percentile(null[:, layer], [2.5, 97.5])
        print(f"| {layer} | {c:+.3f} | {lo:+.3f} … {hi:+.3f} | {np.median(boot[:, layer]):+.3f} | "
              f"{null[:, layer].mean():+.3f} | {nlo:+.3f} … {nhi:+.3f} | {p_low(c, null[:, layer]):.3f} |")
    for name, f in (("average", np.mean), ("minimum", np.min)):
        s, dist, b = f(est), f(null, axis=1), f(boot, axis=1)
        lo, hi = np.percentile(dist, [2.5, 97.5])
        blo, bhi = np.percentile(b, [2.5, 97.5])
        print(f"\n{name} over layers: {s:+.3f}; bootstrap {blo:+.3f} … {bhi:+.3f}; permutation null mean "
              f"{dist.mean():+.3f}, 2.5–97.5% {lo:+.3f} … {hi:+.3f}; p = {p_low(s, dist):.3f}")


if __name__ == "__main__":
    main()
