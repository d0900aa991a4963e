"""Data for the post-training tests (the tokenizer fixtures are tests/unit/conftest.py's)."""
from __future__ import annotations

import json

TWO_TURNS = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is 1+2 ?"},
    {"role": "assistant", "content": "3"},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "bye"},
]}


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write("\n")
    return str(path)
