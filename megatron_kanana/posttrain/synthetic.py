"""Small bilingual toy SFT conversations (arithmetic Q/A in Korean and English), deterministic.

    kanana sft-synthetic --num 1000 --output data/sft_toy.jsonl --seed 0

For the CPU miniature: a tiny model can learn these in minutes, and whether it answers
"1 더하기 2는?" with "3입니다." is a readable check that SFT did something. Some
conversations have a system prompt and some are two turns long.

`--hedged-fraction F` makes a fraction F of the answers wrong and hedged ("잘 모르겠지만
…" / "I am not sure, but …"), the rejected style of `kanana pref-synthetic`: noisy SFT
data whose habit the SFT model picks up, so preference tuning has something to remove
(the demo's post-training measures how often its samples still hedge).
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


HEDGE = {"ko": "잘 모르겠지만 {}", "en": "I am not sure, but {}"}


def hedged_wrong_answer(rng: random.Random, language: str, op: str, a: int, b: int, result: int) -> str:
    """An answer off by 1 to 5, hedged: the bad style preference tuning learns to avoid."""
    wrong = result + rng.choice((-1, 1)) * rng.randint(1, 5)
    return HEDGE[language].format(phrase(language, op, a, b, wrong)[1])


def is_hedged(text: str) -> bool:
    return any(h.split("{}")[0] in text for h in HEDGE.values())


def _question_answer(rng: random.Random, language: str, hedged_fraction: float) -> tuple[str, str]:
    op, a, b, result = problem(rng)
    question, answer = phrase(language, op, a, b, result)
    if hedged_fraction and rng.random() < hedged_fraction:  # no extra draw at 0: the default data is unchanged
        answer = hedged_wrong_answer(rng, language, op, a, b, result)
    return question, answer


def conversation(rng: random.Random, hedged_fraction: float = 0.0) -> dict:
    language = rng.choice(("ko", "en"))
    messages = [{"role": "system", "content": SYSTEM[language]}] if rng.random() < 0.3 else []
    for _ in range(1 if rng.random() < 0.7 else 2):
        question, answer = _question_answer(rng, language, hedged_fraction)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def conversations(num: int, seed: int = 0, hedged_fraction: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    return [conversation(rng, hedged_fraction) for _ in range(num)]


def write_jsonl(path: str, num: int, seed: int = 0, hedged_fraction: float = 0.0) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in conversations(num, seed, hedged_fraction):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # a partial file never carries the final name


def add_arguments(parser) -> None:
    parser.add_argument("--num", type=int, required=True, help="number of conversations")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hedged-fraction", type=float, default=0.0,
                        help="fraction of answers that are wrong and hedged (noisy SFT data)")


def run(args) -> int:
    if args.num < 1:
        print("kanana sft-synthetic: error: --num must be >= 1")
        return 1
    if not 0.0 <= args.hedged_fraction <= 1.0:
        print(f"kanana sft-synthetic: error: --hedged-fraction must be in [0, 1], got {args.hedged_fraction}")
        return 1
    write_jsonl(args.output, args.num, args.seed, args.hedged_fraction)
    print(f"{args.output}: {args.num} conversations (seed {args.seed})")
    return 0
