"""Rebuild the local lm-eval tasks `kanana_passkey_{128,256,512}` (megatron_kanana/evaluation/local_tasks/).

    python tools/build_passkey_task.py [--num 64] [--seed 12345]

Passkey-retrieval prompts (megatron_kanana/evaluation/passkey.py) of 128, 256 and 512 words,
the needle at a uniform depth; the defaults are the held-out prompts of
benchmarks/passkey_miniature.py (which trains on other seeds), so `kanana eval` on that
benchmark's checkpoints scores the same token sequences as the benchmark does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from megatron_kanana.evaluation.passkey import held_out

OUT = Path(__file__).resolve().parents[1] / "megatron_kanana" / "evaluation" / "local_tasks" / "kanana_passkey"
LENGTHS = (128, 256, 512)


def items(num: int, seed: int) -> dict[int, list[dict]]:
    return {n: [{"prompt": prompt, "key": key, "words": n} for prompt, key in pairs]
            for n, pairs in held_out(num, LENGTHS, seed).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=64, help="prompts per length")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for n, records in items(args.num, args.seed).items():
        (OUT / f"test_{n}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {OUT}/test_{{{','.join(map(str, LENGTHS))}}}.jsonl ({args.num} prompts each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
