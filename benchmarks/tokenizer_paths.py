"""Benchmark: the two encoders of a byte-level BPE tokenizer.json, alone, one thread each.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/tokenizer_paths.py --mb 20 --repeats 3

`tokenizers`' encode_batch_fast (what kanana preprocess used before, and what it falls back
to) against the tiktoken encoder that data/fast_bpe.py builds from the same file, on the
same generated Korean+English documents (benchmarks/preprocess.py's generator), in 1 MB
batches as preprocessing hands them over. The tokenizer is trained here with Llama 3's
pre-tokenizer (Split on its regex + ByteLevel), vocabulary 8000: no real Llama 3 file is on
this machine. CPU seconds (process_time) per path, interleaved repeats, medians; the ids of
both paths are compared and must be equal. Not a test: figures go to benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

# One thread for tokenizers' Rust pool, set before it is imported: the comparison is per core.
os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "kernels")]

BATCH_BYTES = 1 << 20


def batches(path: str) -> list[list[str]]:
    out, batch, size = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            batch.append(json.loads(line)["text"])
            size += len(line.encode("utf-8"))
            if size >= BATCH_BYTES:
                out.append(batch)
                batch, size = [], 0
    return out + ([batch] if batch else [])


def cpu_seconds(encode, data: list[list[str]]) -> tuple[float, list]:
    start = time.process_time()
    ids = [encode(b) for b in data]
    return time.process_time() - start, ids


def main() -> None:
    from benchmarks.preprocess import generate_corpus
    from megatron_kanana.data.tokenizer import load_tokenizer
    from tests.unit.data.conftest import build_hf_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20, help="size of the generated JSONL")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_path, tok_path = os.path.join(tmp, "bench.jsonl"), os.path.join(tmp, "tokenizer.json")
        generate_corpus(data_path, args.mb)
        build_hf_tokenizer(tok_path, vocab_size=8000, llama3_split=True)
        mb = os.path.getsize(data_path) / 1e6
        data = batches(data_path)
        fast, slow = load_tokenizer(tok_path), load_tokenizer(tok_path, fast=False)
        start = time.process_time()
        assert fast.encoder_name == "tiktoken", "the fast path did not engage"
        print(f"input {mb:.1f} MB in {len(data)} batches; tiktoken build + self-check "
              f"{time.process_time() - start:.2f} CPU-s (once per process)", flush=True)
        rates: dict[str, list[float]] = {"tokenizers encode_batch_fast": [], "tiktoken (fast_bpe)": []}
        for i in range(args.repeats):
            t_slow, ids_slow = cpu_seconds(slow.encode_batch, data)
            t_fast, ids_fast = cpu_seconds(fast.encode_batch, data)
            assert ids_fast == ids_slow, "the paths disagree"
            rates["tokenizers encode_batch_fast"].append(mb / t_slow)
            rates["tiktoken (fast_bpe)"].append(mb / t_fast)
            print(f"  run {i + 1}: tokenizers {mb / t_slow:6.2f}, tiktoken {mb / t_fast:6.2f} MB per CPU-second; "
                  "ids identical", flush=True)
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name, rate in med.items():
            print(f"median {name:<30} {rate:6.2f} MB per CPU-second")
        print(f"speed-up {med['tiktoken (fast_bpe)'] / med['tokenizers encode_batch_fast']:.2f}x per CPU-second")


if __name__ == "__main__":
    main()
