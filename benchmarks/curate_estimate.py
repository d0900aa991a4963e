"""Benchmark + estimate: curation's MB per CPU-second, and the node-hours to curate and tokenize
Kanana's 3T-token mixture at the measured rates.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/curate_estimate.py --mb 5 \
        --preprocess-mb-per-cpu-s 7.9 --raw-tb 48 --curated-tb 12 --cores-per-node 64

Runs `kanana curate --workers 1` (examples/curation/kanana_pipeline.yaml: all passes) on
generated Korean+English documents that pass its filters (tests/unit/curation/corpus.py)
and takes user+sys CPU seconds of that process. The tokenizing rate comes from
benchmarks/preprocess.py (kanana's median MB per CPU-second). The estimate assumes the
array's tasks scale by cores (per-shard passes share nothing; the global dedup pass is
well under 1% of curation's CPU) and ignores file-system limits. Not a test: figures go to
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "kernels")]


def generate(root: str, megabytes: float, shards: int = 4) -> float:
    from tests.unit.curation.corpus import english_doc, korean_doc

    rng, written, n = random.Random(0), 0, 0
    files = [open(os.path.join(root, f"s{i}.jsonl"), "w", encoding="utf-8") for i in range(shards)]
    while written < megabytes * 1e6:
        text = english_doc(n) if rng.random() < 0.5 else korean_doc(n)
        line = json.dumps({"id": n, "text": text}, ensure_ascii=False) + "\n"
        files[n % shards].write(line)
        written += len(line.encode("utf-8"))
        n += 1
    for f in files:
        f.close()
    return written / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=5, help="generated input for the curation run")
    parser.add_argument("--preprocess-mb-per-cpu-s", type=float, required=True,
                        help="kanana preprocess's median from benchmarks/preprocess.py")
    parser.add_argument("--raw-tb", type=float, default=48, help="text entering curation (TB)")
    parser.add_argument("--curated-tb", type=float, default=12, help="text left to tokenize (TB): ~3T tokens")
    parser.add_argument("--cores-per-node", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in")
        os.makedirs(src)
        mb = generate(src, args.mb)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "curate", "--config",
                        os.path.join(REPO, "examples/curation/kanana_pipeline.yaml"), "--input", src,
                        "--output", os.path.join(tmp, "out"), "--workers", "1"],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO}/kernels"})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    curate_rate = mb / cpu
    print(f"curate: {mb:.1f} MB in {cpu:.1f} CPU-s = {curate_rate:.2f} MB per CPU-second (start-up included)")
    node_s = 3600 * args.cores_per_node
    curate_h = args.raw_tb * 1e6 / curate_rate / node_s
    tokenize_h = args.curated_tb * 1e6 / args.preprocess_mb_per_cpu_s / node_s
    print(f"curate {args.raw_tb:g} TB: {curate_h:,.0f} node-hours of {args.cores_per_node} cores")
    print(f"tokenize {args.curated_tb:g} TB at {args.preprocess_mb_per_cpu_s:.2f} MB/CPU-s: "
          f"{tokenize_h:,.0f} node-hours")
    print(f"total {curate_h + tokenize_h:,.0f} node-hours; on 100 nodes {(curate_h + tokenize_h) / 100:,.1f} hours")


if __name__ == "__main__":
    main()
