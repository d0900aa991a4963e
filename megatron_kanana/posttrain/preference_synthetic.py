"""Toy preference pairs from the arithmetic chats of synthetic.py, deterministic.

    kanana pref-synthetic --num 1000 --output data/pref_toy.jsonl --seed 0

chosen states the right result; rejected states a wrong one (off by 1 to 5) and hedges
("잘 모르겠지만" / "I am not sure, but"). The hedge is a cue a tiny CPU model picks up in a
few dozen steps, so the miniature can show a reward model (or DPO) learning within a test's
budget; the wrong number is what a model large enough to do arithmetic would learn from.
Some prompts carry a system turn (then the prompt is a list of messages), most are a string.
"""
from __future__ import annotations

import json
import os
import random

from megatron_kanana.posttrain.synthetic import SYSTEM, hedged_wrong_answer, phrase, problem


def pair(rng: random.Random) -> dict:
    language = rng.choice(("ko", "en"))
    op, a, b, result = problem(rng)
    question, right = phrase(language, op, a, b, result)
    rejected = hedged_wrong_answer(rng, language, op, a, b, result)
    prompt = question
    if rng.random() < 0.3:
        prompt = [{"role": "system", "content": SYSTEM[language]}, {"role": "user", "content": question}]
    return {"prompt": prompt, "chosen": right, "rejected": rejected}


def pairs(num: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [pair(rng) for _ in range(num)]


def write_jsonl(path: str, num: int, seed: int = 0) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in pairs(num, seed):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # a partial file never carries the final name


def add_arguments(parser) -> None:
    parser.add_argument("--num", type=int, required=True, help="number of pairs")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    if args.num < 1:
        print("kanana pref-synthetic: error: --num must be >= 1")
        return 1
    write_jsonl(args.output, args.num, args.seed)
    print(f"{args.output}: {args.num} preference pairs (seed {args.seed})")
    return 0
