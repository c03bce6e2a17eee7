#!/usr/bin/env python3
"""Token counts of synthetic maze trajectories under a model's chat template, three ways.

Usage: token_layout.py SNAPSHOT_DIR SYNTHETIC.jsonl [EXTRACTION.json]

- whole:      transformers' apply_chat_template of each whole conversation (the last move
              appended after the generation prompt, no end-of-turn), tokenized at once;
- per_turn:   every user turn rendered on its own with the generation prompt, joined by the
              close of an assistant turn (the layout wax used before 2026-12-04), tokenized turn
              by turn, plus one token per move;
- wax:        `meta.tokens` of a `wax extract` run's extraction.json on the same trajectories
              (optional).

SYNTHETIC.jsonl is `wax maze synthetic --per-class N` output. Prints JSON.
"""
import json
import sys

PROBE = "\ue000"


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    rows = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]

    def render(messages, gen):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    def count(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    close = render([{"role": "user", "content": "q"}, {"role": "assistant", "content": PROBE}], False)
    close = close.rsplit(PROBE, 1)[1]
    whole = per_turn = 0
    for r in rows:
        msgs = r["messages"]
        whole += count(render(msgs[:-1], True) + msgs[-1]["content"])
        users = [m for m in msgs if m["role"] == "user"]
        for t, u in enumerate(users):
            seg = render([u], True)
            per_turn += count(close + seg if t else seg) + 1
    out = {"trajectories": len(rows), "whole": whole, "per_turn": per_turn}
    if len(sys.argv) == 4:
        out["wax"] = json.load(open(sys.argv[3], encoding="utf-8"))["meta"]["tokens"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
