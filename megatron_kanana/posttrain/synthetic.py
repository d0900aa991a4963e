"""Small bilingual toy SFT conversations (arithmetic Q/A in Korean and English), deterministic.

    kanana sft-synthetic --num 1000 --output data/sft_toy.jsonl --seed 0

For the CPU miniature: a tiny model can learn these in minutes, and whether it answers
"1 더하기 2는?" with "3입니다." is a readable check that SFT did something. Some
conversations have a system prompt and some are two turns long.
"""
from __future__ import annotations

import json
import os
import random

_OPS = {"+": ("더하기", "plus", lambda a, b: a + b), "-": ("빼기", "minus", lambda a, b: a - b),
        "*": ("곱하기", "times", lambda a, b: a * b)}
SYSTEM = {"ko": "당신은 계산을 돕는 친절한 조수입니다.", "en": "You are a helpful assistant who does arithmetic."}


def problem(rng: random.Random) -> tuple[str, int, int, int]:
    """(op, a, b, the right result) of one arithmetic question."""
    op = rng.choice(sorted(_OPS))
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return op, a, b, _OPS[op][2](a, b)


def phrase(language: str, op: str, a: int, b: int, value: int) -> tuple[str, str]:
    """(question, answer saying `value`) in Korean ("ko") or English ("en")."""
    ko, en, _ = _OPS[op]
    if language == "ko":
        return f"{a} {ko} {b}는?", f"{value}입니다."
    return f"What is {a} {en} {b}?", f"{a} {en} {b} is {value}."


def _question_answer(rng: random.Random, language: str) -> tuple[str, str]:
    op, a, b, result = problem(rng)
    return phrase(language, op, a, b, result)


def conversation(rng: random.Random) -> dict:
    language = rng.choice(("ko", "en"))
    messages = [{"role": "system", "content": SYSTEM[language]}] if rng.random() < 0.3 else []
    for _ in range(1 if rng.random() < 0.7 else 2):
        question, answer = _question_answer(rng, language)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def conversations(num: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [conversation(rng) for _ in range(num)]


def write_jsonl(path: str, num: int, seed: int = 0) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in conversations(num, seed):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # a partial file never carries the final name


def add_arguments(parser) -> None:
    parser.add_argument("--num", type=int, required=True, help="number of conversations")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    if args.num < 1:
        print("kanana sft-synthetic: error: --num must be >= 1")
        return 1
    write_jsonl(args.output, args.num, args.seed)
    print(f"{args.output}: {args.num} conversations (seed {args.seed})")
    return 0
