"""Training throughput of `kanana train` on one GPU, next to Hugging Face transformers.

Measures tokens/s, model TFLOP/s per GPU, MFU and peak memory of a real run of
the trainer (a preset, default Kanana Nano-2.1B, sequence 4096, micro-batch 1,
bf16 on GPU) on generated inputs: a random-token indexed dataset (ids uniform
in [0, vocab)), a synthetic WordLevel tokenizer.json with the model's vocabulary,
a one-stage mixture and a config logging every step. Then, in a second
subprocess on the same GPU, transformers' LlamaForCausalLM at the same shape
(benchmarks/hf_llama_throughput.py). Warm-up steps are excluded; figures are
medians over the measured steps. FLOPs per token = 6 × matmul parameters
(incl. the output layer) + 6 × layers × seq × heads × head_dim (ModelShape.flops_per_token).
Prints a table and writes OUT/train_throughput.json (temp name, then renamed).

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/train_throughput.py --out benchmarks/results
    # CPU logic check (figures mean nothing for speed):
    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/train_throughput.py --device cpu --preset tiny --seq 128 --steps 4 --warmup 1

Exits with status 2 and a message when --device cuda and no GPU is present.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from megatron_kanana.models.presets import get_preset  # noqa: E402
from megatron_kanana.models.shape import ModelShape  # noqa: E402

H100_BF16_PEAK_TFLOPS = 989.0
EOD, PAD, UNK = "<|end_of_text|>", "<pad>", "<unk>"


# -- the arithmetic --------------------------------------------------------------------------
def figures(tokens_per_s: float, shape: ModelShape, seq: int, peak_tflops: float, num_gpus: int = 1) -> dict:
    """TFLOP/s per GPU and MFU of a measured tokens/s, with the formula of the reference notes."""
    flops_per_token = shape.flops_per_token(seq)
    tflops = tokens_per_s * flops_per_token / num_gpus / 1e12
    return {"tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token,
            "tflops_per_gpu": tflops, "mfu": tflops / peak_tflops}


def trainer_step_rates(records: list[dict], warmup: int, tokens_per_step: int) -> dict:
    """Medians over the measured iterations (> warmup) of a run logged every step.

    `step`: the trainer's own step timer (forward/backward/optimizer, as it logs it);
    `wall`: tokens / time between consecutive log records, which adds data loading
    and logging, the closer match to the baseline's whole-step timing."""
    train = sorted((r for r in records if r.get("kind") == "train"), key=lambda r: r["iteration"])
    measured = [r for r in train if r["iteration"] > warmup]
    if not measured:
        raise ValueError(f"no iterations after the {warmup} warm-up steps in the trainer's metrics")
    by_iter = {r["iteration"]: r for r in train}
    wall = [tokens_per_step / (r["time"] - by_iter[r["iteration"] - 1]["time"])
            for r in measured if r["iteration"] - 1 in by_iter and r["time"] > by_iter[r["iteration"] - 1]["time"]]
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in measured),
            "wall_tokens_per_s": statistics.median(wall) if wall else None,
            "measured_steps": len(measured),
            "memory_gib": max(r["memory_gib"] for r in train), "memory_kind": train[-1]["memory_kind"],
            "trainer_logged_mfu": [r.get("mfu") for r in measured],
            "losses": [r["loss"] for r in train]}


# -- generated inputs ------------------------------------------------------------------------
def write_tokenizer(path: Path, vocab_size: int) -> Path:
    """A WordLevel tokenizer.json of exactly `vocab_size` entries with eod, pad and unk."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4, got {vocab_size}")
    vocab = {EOD: 0, PAD: 1, UNK: 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_random_dataset(prefix: Path, *, num_tokens: int, vocab_size: int, doc_length: int, seed: int = 0) -> None:
    """PREFIX.bin/.idx of documents of `doc_length` random ids uniform in [0, vocab_size)."""
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    dtype = np.uint16 if vocab_size <= 65536 else np.int32
    rng = np.random.default_rng(seed)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=dtype)
    written = 0
    while written < num_tokens:
        doc = rng.integers(0, vocab_size, size=min(doc_length, num_tokens - written), dtype=np.int64).astype(dtype)
        builder.add_document(doc, [len(doc)])
        written += len(doc)
    builder.finalize(str(prefix) + ".idx")


def write_trainer_inputs(work: Path, shape: ModelShape, preset: str, *, seq: int, micro_batch: int,
                         total_steps: int, seed: int) -> Path:
    """Tokenizer, dataset, mixture and config of the trainer run; returns the config path."""
    tokenizer = write_tokenizer(work / "tokenizer" / "tokenizer.json", shape.vocab_size)
    # 10% spare over the samples the run draws (each needs seq + 1 tokens), so one epoch covers them
    tokens = int(1.1 * total_steps * micro_batch * (seq + 1)) + seq + 1
    write_random_dataset(work / "data" / "random", num_tokens=tokens, vocab_size=shape.vocab_size,
                         doc_length=seq, seed=seed)
    mixture = {"data_root": str(work / "data"), "stages": [
        {"name": "bench", "tokens": total_steps * micro_batch * seq,
         "sources": [{"path": "random", "category": "random", "weight": 1.0}]}]}
    (work / "mixture.yaml").write_text(yaml.safe_dump(mixture, sort_keys=False))
    model = {"preset": preset}
    if seq > shape.max_position_embeddings:
        model["max_position_embeddings"] = seq
    config = {
        "run": {"output_dir": str(work / "run"), "seed": seed},
        "model": model,
        "data": {"mixture": str(work / "mixture.yaml"), "tokenizer": str(tokenizer.parent), "seq_length": seq,
                 "micro_batch_size": micro_batch, "global_batch_size": micro_batch, "split": [100, 0, 0],
                 "eval_samples": 0},
        "schedule": {"lr_decay_style": "constant", "lr": 1.0e-4, "warmup_steps": 0},
        "checkpoint": {"save_interval": 0, "keep_last": 1, "async_save": False},
        "logging": {"log_interval": 1, "tensorboard": False, "wandb": False, "jsonl": True,
                    "progress_bar": False},
    }
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- the two runs ----------------------------------------------------------------------------
def _env(device: str) -> dict:
    env = dict(os.environ, KANANA_DEVICE=device)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]  # the last line may be half-written


def run_trainer(config: Path, *, device: str, total_steps: int, final_save: bool, timeout_s: float) -> list[dict]:
    """`kanana train CONFIG` in a subprocess (its own process group); returns its metrics records.

    Without `final_save`, the run is stopped once the last step's metrics are written:
    the end-of-run checkpoint (about 30 GB with optimizer state for Nano) measures nothing."""
    work = config.parent
    metrics = work / "run" / "metrics.jsonl"
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config)]
    with open(work / "trainer.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(device), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            while proc.poll() is None:
                if not final_save and any(r.get("iteration") == total_steps for r in _read_jsonl(metrics)):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the trainer ran past {timeout_s:.0f} s; see {work / 'trainer.log'}")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started: the trainer and its helpers
                proc.wait()
    records = _read_jsonl(metrics)
    if not any(r.get("iteration") == total_steps for r in records):
        tail = (work / "trainer.log").read_text()[-3000:]
        raise RuntimeError(f"the trainer stopped (exit {proc.returncode}) before step {total_steps}:\n{tail}")
    if final_save and proc.returncode != 0:
        raise RuntimeError(f"the trainer exited with status {proc.returncode}; see {work / 'trainer.log'}")
    return records


def run_hf(work: Path, *, preset: str, seq: int, micro_batch: int, steps: int, warmup: int, device: str,
           timeout_s: float) -> dict:
    result = work / "hf.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "hf_llama_throughput.py"), "--preset", preset,
           "--seq", str(seq), "--micro-batch", str(micro_batch), "--steps", str(steps), "--warmup", str(warmup),
           "--device", device, "--result", str(result)]
    with open(work / "hf.log", "w") as log:
        code = subprocess.call(cmd, cwd=REPO, env=_env(device), stdout=log, stderr=subprocess.STDOUT,
                               timeout=timeout_s)
    if code != 0 or not result.exists():
        raise RuntimeError(f"the transformers baseline failed (exit {code}):\n{(work / 'hf.log').read_text()[-3000:]}")
    return json.loads(result.read_text())


def gpu_name() -> str:
    """The card's name, asked in a child process: creating a CUDA context here would hold
    GPU memory through both runs."""
    code = "import torch; print(torch.cuda.get_device_name())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()


# -- report ----------------------------------------------------------------------------------
def table(result: dict) -> str:
    rows = ["| stack | tokens/s (median) | TFLOP/s/GPU | MFU | peak memory |", "|---|---|---|---|---|"]
    for name in ("trainer", "transformers"):
        r = result.get(name)
        if r:
            rows.append(f"| {r['label']} | {r['tokens_per_s']:,.0f} | {r['tflops_per_gpu']:.1f} | "
                        f"{100 * r['mfu']:.1f}% | {r['memory_gib']:.2f} GiB ({r['memory_kind']}) |")
    if "ratio_tokens_per_s" in result:
        rows.append(f"trainer / transformers: tokens/s {result['ratio_tokens_per_s']:.3f}, "
                    f"peak memory {result['ratio_memory']:.3f}")
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="kanana-nano-2.1b", help="model preset (tiny/demo for a CPU logic check)")
    p.add_argument("--seq", type=int, default=4096, help="sequence length")
    p.add_argument("--micro-batch", type=int, default=1, help="micro-batch (= global batch: one GPU)")
    p.add_argument("--steps", type=int, default=20, help="measured steps")
    p.add_argument("--warmup", type=int, default=5, help="steps run first and left out of the figures")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS,
                   help="dense bf16 peak of the GPU for MFU (989 = H100 SXM)")
    p.add_argument("--skip-hf", action="store_true", help="run the trainer only")
    p.add_argument("--skip-trainer", action="store_true", help="run the transformers baseline only")
    p.add_argument("--final-save", action="store_true",
                   help="let the trainer write its end-of-run checkpoint (default: stop it after the last step)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds allowed for each of the two runs")
    p.add_argument("--out", default="benchmarks/results", help="directory of train_throughput.json")
    p.add_argument("--keep-work", action="store_true", help="keep OUT/train_throughput_work (inputs, logs)")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    for name in ("seq", "micro_batch", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.skip_hf and args.skip_trainer:
        p.error("--skip-hf and --skip-trainer leave nothing to run")
    return args


def measure(args: argparse.Namespace, shape: ModelShape, work: Path) -> dict:
    """Run the selected sides one after the other; the result JSON's content."""
    tokens_per_step = args.micro_batch * args.seq
    total = args.warmup + args.steps
    result = {"preset": args.preset, "seq": args.seq, "micro_batch": args.micro_batch, "steps": args.steps,
              "warmup": args.warmup, "device": args.device, "peak_tflops": args.peak_tflops,
              "gpu": gpu_name() if args.device == "cuda" else None,
              "date": datetime.date.today().isoformat(), "parameters": shape.parameters}
    if not args.skip_trainer:
        config = write_trainer_inputs(work, shape, args.preset, seq=args.seq, micro_batch=args.micro_batch,
                                      total_steps=total, seed=args.seed)
        records = run_trainer(config, device=args.device, total_steps=total, final_save=args.final_save,
                              timeout_s=args.timeout)
        rates = trainer_step_rates(records, args.warmup, tokens_per_step)
        result["trainer"] = {"label": "kanana train (megatron-core)", **rates,
                             **figures(rates["tokens_per_s"], shape, args.seq, args.peak_tflops)}
    if not args.skip_hf:
        hf = run_hf(work, preset=args.preset, seq=args.seq, micro_batch=args.micro_batch, steps=args.steps,
                    warmup=args.warmup, device=args.device, timeout_s=args.timeout)
        rates = [tokens_per_step / s for s in hf["step_seconds"][args.warmup:]]
        result["transformers"] = {"label": f"transformers {hf['transformers']} LlamaForCausalLM (sdpa)", **hf,
                                  **figures(statistics.median(rates), shape, args.seq, args.peak_tflops)}
    if "trainer" in result and "transformers" in result:
        t, h = result["trainer"], result["transformers"]
        result["ratio_tokens_per_s"] = t["tokens_per_s"] / h["tokens_per_s"]
        result["ratio_memory"] = t["memory_gib"] / h["memory_gib"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("train_throughput: --device cuda but no CUDA GPU is available (use --device cpu with "
              "--preset tiny for a logic check)", file=sys.stderr)
        return 2
    shape = get_preset(args.preset)
    out = Path(args.out).resolve()
    work = out / "train_throughput_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        result = measure(args, shape, work)
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as e:
        print(f"train_throughput: {e}\n(inputs and logs kept in {work})", file=sys.stderr)
        return 1
    path = out / "train_throughput.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.preset}, seq {args.seq}, micro-batch {args.micro_batch}, {args.steps} measured steps after "
          f"{args.warmup} warm-up, on {result['gpu'] or args.device}; MFU against {args.peak_tflops:g} TFLOP/s")
    print(table(result))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
