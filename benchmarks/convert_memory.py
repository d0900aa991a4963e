"""Peak memory of `kanana convert` on a Kanana-Nano-shaped checkpoint (2.1B, bf16, ~4.2 GB).

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/convert_memory.py --workdir /tmp/nano_convert [--upscale]

1. writes a randomly initialised Nano-shaped HF checkpoint with safetensors
   (streamed, no transformers model), in 2 GiB shards;
2. runs `kanana convert --from hf --to mcore`, then `--from mcore --to hf`
   (and with --upscale, `kanana upscale-depth` 32 -> 48 layers on the megatron
   checkpoint), each as a subprocess, sampling the RSS of the process and all
   its children every 50 ms (psutil);
3. prints peak RSS per command next to the checkpoint size, and checks the
   round trip is bit-exact on a sample of tensors.
Needs ~13 GB of free disk (~20 GB with --upscale).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from safetensors import safe_open

from megatron_kanana.checkpointing import hf_dir
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import hf_mapping

REPO = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3


def make_random_hf(directory: Path, dtype=torch.bfloat16) -> int:
    shape = get_preset("kanana-nano-2.1b")
    names_shapes = list(hf_mapping.hf_tensor_shapes(shape).items())
    generator = torch.Generator().manual_seed(0)

    def get(name: str, rows=None) -> torch.Tensor:
        dims = dict(names_shapes)[name]
        if rows is not None:  # a row block of the embedding / output layer
            dims = (rows[1] - rows[0], *dims[1:])
        if len(dims) == 1:  # norms near one, as in a trained model
            return 1 + 0.1 * torch.randn(dims, generator=generator)
        return 0.02 * torch.randn(dims, generator=generator, dtype=dtype)

    config = hf_mapping.hf_config_from_shape(shape, dtype, base={"bos_token_id": 128000, "eos_token_id": 128001})
    hf_dir.write_hf_dir(directory, names_shapes, config, get, dtype, max_shard_bytes=2 * GIB)
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def peak_rss(argv: list[str]) -> tuple[int, float]:
    """Run a command; return the peak of (its RSS + its children's) and the wall time."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "kernels")]), OMP_NUM_THREADS="1")
    start = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output[-4000:]}")
    progress = [line for line in output.splitlines() if "layer" in line or "wrote" in line or "map" in line]
    print("  " + "\n  ".join(progress[:2] + ["..."] + progress[-2:]))
    return peak, time.time() - start


def sample_equal(a: Path, b: Path, names: list[str]) -> bool:
    index = json.loads((a / hf_dir.INDEX).read_text())["weight_map"]
    index_b = json.loads((b / hf_dir.INDEX).read_text())["weight_map"]
    for name in names:
        with safe_open(str(a / index[name]), "pt") as fa, safe_open(str(b / index_b[name]), "pt") as fb:
            if not torch.equal(fa.get_tensor(name), fb.get_tensor(name)):
                return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--upscale", action="store_true", help="also measure upscale-depth 32 -> 48")
    p.add_argument("--keep", action="store_true", help="keep the checkpoints")
    args = p.parse_args()
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.time()
    size = make_random_hf(work / "hf")
    print(f"random Nano-shaped HF checkpoint: {size / GIB:.2f} GiB in {time.time() - t0:.0f} s")
    cli = [sys.executable, "-m", "megatron_kanana.cli"]
    runs = [("hf -> mcore", cli + ["convert", "--from", "hf", "--to", "mcore", "--input", str(work / "hf"),
                                   "--output", str(work / "mc")]),
            ("mcore -> hf", cli + ["convert", "--from", "mcore", "--to", "hf", "--input", str(work / "mc"),
                                   "--output", str(work / "hf_back")])]
    if args.upscale:
        runs.append(("upscale-depth 32 -> 48 (mcore)", cli + ["upscale-depth", "--input", str(work / "mc"),
                                                             "--output", str(work / "up"), "--layers", "0-23,8-31"]))
    rows = []
    for label, argv in runs:
        print(label)
        peak, seconds = peak_rss(argv)
        rows.append((label, peak, seconds))
    exact = sample_equal(work / "hf", work / "hf_back", ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                                                          "model.layers.31.mlp.up_proj.weight", "model.norm.weight"])
    print(f"\ncheckpoint size {size / GIB:.2f} GiB (bf16); one third = {size / 3 / GIB:.2f} GiB")
    for label, peak, seconds in rows:
        print(f"{label:<32} peak RSS {peak / GIB:.2f} GiB = {peak / size:.1%} of the checkpoint, {seconds:.0f} s")
    print(f"round trip bit-exact on sampled tensors: {exact}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
