"""Rebuild the local lm-eval task `kanana_arith_mini` (megatron_kanana/evaluation/local_tasks/).

    python tools/build_arith_task.py [--num 40] [--seed 2026]

Held-out bilingual arithmetic questions in the format of `kanana sft-synthetic` (the
demo's post-training data), with the right answer only. A question the demo's SFT
training set asks (600 conversations, seed 0, hedged fraction 0.3: what
examples/demo/posttrain_stages.py generates) is skipped, so the demo scores its models
on questions they did not train on.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from megatron_kanana.posttrain.synthetic import conversations, phrase, problem

OUT = Path(__file__).resolve().parents[1] / "megatron_kanana" / "evaluation" / "local_tasks" / "kanana_arith_mini"
DEMO_SFT_TRAIN = dict(num=600, seed=0, hedged_fraction=0.3)


def items(num: int, seed: int) -> list[dict]:
    seen = {m["content"] for c in conversations(**DEMO_SFT_TRAIN) for m in c["messages"] if m["role"] == "user"}
    rng = random.Random(seed)
    out: list[dict] = []
    taken: set[str] = set()
    while len(out) < num:
        language = ("ko", "en")[len(out) % 2]  # half Korean, half English, alternating
        op, a, b, value = problem(rng)
        question, _ = phrase(language, op, a, b, value)
        if question not in seen and question not in taken:
            taken.add(question)
            out.append({"question": question, "answer": str(value), "language": language})
    return out


def write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    write(OUT / "test.jsonl", items(args.num, args.seed))
    print(f"wrote {OUT / 'test.jsonl'} ({args.num} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
