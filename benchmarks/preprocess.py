"""Benchmark: `kanana preprocess` against Megatron-LM's tools/preprocess_data.py algorithm.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/preprocess.py --mb 200 --workers 2 --repeats 2

Both tokenize the same generated Korean+English JSONL (documents recombined from the
embedded demo corpus) with the same byte-level BPE tokenizer.json (trained here with the
`tokenizers` library and Llama 3's pre-tokenizer) and the same worker count; kanana encodes
through tiktoken where exact (data/fast_bpe.py), the baseline through `tokenizers` as Megatron-LM, each in its own subprocess; the parent
samples the RSS of that process tree (psutil, summed over children) every 0.1 s.
Reports MB/s and peak RSS per run and their medians. Not a test: figures go to
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "kernels")]


def generate_corpus(path: str, megabytes: float, seed: int = 0) -> None:
    """Documents of 2-12 random paragraphs of one language, until the file reaches `megabytes`."""
    from megatron_kanana.data.demo_corpus import demo_corpus_files

    paragraphs = {}
    for f in demo_corpus_files():
        with open(f, encoding="utf-8") as fh:
            docs = [json.loads(line)["text"] for line in fh]
        paragraphs[f.stem] = [p for d in docs for p in d.split("\n\n") if p.strip()]
    rng = random.Random(seed)
    target, written = megabytes * 1e6, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            lang = "ko" if rng.random() < 0.5 else "en"
            text = "\n\n".join(rng.choices(paragraphs[lang], k=rng.randint(2, 12)))
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))


def build_tokenizer(path: str) -> None:
    sys.path.insert(0, os.path.join(REPO, "tests", "unit", "data"))
    from tests.unit.data.conftest import build_hf_tokenizer

    build_hf_tokenizer(path, vocab_size=8000, llama3_split=True)  # Llama 3's pre-tokenizer


def megatron_lm_baseline(input_path: str, tokenizer_path: str, prefix: str, workers: int) -> None:
    """Megatron-LM tools/preprocess_data.py's algorithm, reproduced (the megatron-core wheel lacks tools/).

    As there: the parent reads the input line by line in text mode and feeds it to
    multiprocessing.Pool.imap(encoder.encode, fin, 32); each worker json-decodes one line
    and tokenizes its text, returning the ids; the parent appends every document to one
    IndexedDatasetBuilder (add_document with the document's sentence lengths) and
    finalizes the .idx at the end. No sentence splitting (the default), --append-eod.
    """
    import multiprocessing

    import numpy as np

    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    encoder = _Encoder(tokenizer_path)
    with open(input_path, "r", encoding="utf-8") as fin:
        pool = multiprocessing.Pool(workers, initializer=encoder.initializer)
        encoded_docs = pool.imap(encoder.encode, fin, 32)
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
        for doc_ids, sentence_lens, _ in encoded_docs:
            builder.add_document(doc_ids, sentence_lens)
        builder.finalize(prefix + ".idx")
        pool.close()
        pool.join()


class _Encoder:
    """preprocess_data.py's Encoder: a tokenizer per worker, one JSON line per call."""

    def __init__(self, tokenizer_path: str):
        self.tokenizer_path = tokenizer_path

    def initializer(self) -> None:
        from megatron_kanana.data.tokenizer import load_tokenizer

        # Megatron-LM encodes through Hugging Face's tokenizers: no tiktoken path for the baseline.
        _Encoder.tokenizer = load_tokenizer(self.tokenizer_path, fast=False)

    def encode(self, json_line: str):
        data = json.loads(json_line)
        ids = _Encoder.tokenizer.encode(data["text"])
        ids.append(_Encoder.tokenizer.eod)
        return ids, [len(ids)], len(json_line)


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak summed RSS (MB) and CPU seconds (user+sys) of `cmd` and all its descendants.

    CPU seconds are the load-robust figure on a shared machine: wall time swings 2x with
    other jobs, CPU time much less.
    """
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO}/kernels"})
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.monotonic() - start, peak / 1e6, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200, help="size of the generated JSONL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-run", nargs=3, metavar=("INPUT", "TOKENIZER", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_run:
        megatron_lm_baseline(*args.baseline_run, workers=args.workers)
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        data, tok = os.path.join(tmp, "bench.jsonl"), os.path.join(tmp, "tokenizer.json")
        generate_corpus(data, args.mb)
        build_tokenizer(tok)
        size_mb = os.path.getsize(data) / 1e6
        print(f"input {size_mb:.0f} MB, {args.workers} workers, tokenizer vocab 8000 (byte-level BPE, Llama 3 split)", flush=True)
        runs: dict[str, list[tuple[float, float, float]]] = {"kanana preprocess": [], "Megatron-LM algorithm": []}
        for i in range(args.repeats):
            for name in runs:
                prefix = os.path.join(tmp, f"out-{i}-{len(runs[name])}-{name[0]}")
                if name.startswith("kanana"):
                    cmd = [sys.executable, "-m", "megatron_kanana.cli", "preprocess", "--input", data, "--tokenizer",
                           tok, "--output-prefix", prefix, "--workers", str(args.workers), "--append-eod"]
                else:
                    cmd = [sys.executable, __file__, "--workers", str(args.workers), "--baseline-run", data, tok, prefix]
                seconds, peak, cpu = measure(cmd)
                runs[name].append((size_mb / seconds, peak, size_mb / cpu))
                print(f"  {name:<24} run {i + 1}: {size_mb / seconds:6.2f} MB/s, peak RSS {peak:7.0f} MB, "
                      f"{size_mb / cpu:5.2f} MB per CPU-second", flush=True)
                for suffix in (".bin", ".idx"):
                    os.remove(prefix + suffix)
        med = {n: [statistics.median(r[k] for r in v) for k in range(3)] for n, v in runs.items()}
        for name, (mbps, peak, per_cpu) in med.items():
            print(f"median {name:<24} {mbps:6.2f} MB/s, peak RSS {peak:7.0f} MB, {per_cpu:5.2f} MB per CPU-second")
        ours, theirs = med["kanana preprocess"], med["Megatron-LM algorithm"]
        print(f"speed-up {ours[0] / theirs[0]:.2f}x wall, {ours[2] / theirs[2]:.2f}x per CPU-second; "
              f"peak RSS ratio {ours[1] / theirs[1]:.2f}")


if __name__ == "__main__":
    main()
