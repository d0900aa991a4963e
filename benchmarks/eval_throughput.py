"""Requests per second of `kanana eval`'s backend against lm-eval's HF backend, same model, one run.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/eval_throughput.py --preset demo --batch-size 8 \
        --threads 1 --repeats 5 --result benchmarks/results/eval-throughput-cpu.json

Builds a random model of the preset (a byte-level BPE tokenizer trained on the demo
corpus, at the preset's vocabulary), saves it as a checkpoint, exports it with
`kanana convert --from mcore --to hf`, then in this one process runs lm-eval on the
shipped local tasks (KMMLU-format multiple choice, GSM8K-format generation, rolling
perplexity; every document) twice: through KananaLM at TP=1 and through lm-eval's
HFLM on the export (fp32, CPU), same batch size and torch threads (--threads). Only the
time inside the LM's request methods is counted (task and dataset setup is the same for
both), per request type, as wall seconds and as CPU seconds of the process (the steadier
figure on a shared box). HF runs as `kanana eval --hf` runs it: without the CPU backend's
CUDA-to-CPU function mode, which the kanana side needs for megatron-core and which would
otherwise stay on for every later torch call in this process. The two backends alternate
--repeats times and each figure is the median of its repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local tasks only; before `datasets` is imported
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

LOCAL_TASKS = REPO / "megatron_kanana" / "evaluation" / "local_tasks"
TASKS = ["kanana_kmmlu_mini", "kanana_gsm8k_mini", "kanana_ppl_mini"]
REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")
CLOCKS = ("seconds", "cpu_seconds")  # wall, and CPU time of this process


def make_checkpoint(workdir: Path, preset: str) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from megatron_kanana.checkpointing import layout
    from megatron_kanana.data.demo_corpus import demo_corpus_files
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime
    from megatron_kanana.models.presets import get_preset
    from megatron_kanana.parallel.config import ParallelConfig

    shape = get_preset(preset)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=shape.vocab_size, special_tokens=["<|end_of_text|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [json.loads(line)["text"] for f in demo_corpus_files() for line in open(f, encoding="utf-8")]
    tok.train_from_iterator(texts, trainer)
    tok.save(str(workdir / "tokenizer.json"))
    tokenizer = load_tokenizer(workdir / "tokenizer.json")
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=1234)
    try:
        chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
        directory = workdir / "ckpt" / layout.step_name(0)
        checkpoint.save_model(chunks, directory)
    finally:
        runtime.shutdown()
    layout.write_meta(directory, {"contents": ["model"], "model": shape.to_dict(), "model_kind": "lm",
                                  "tokenizer": tokenizer.path, "tokenizer_fingerprint": tokenizer.fingerprint})
    layout.write_latest(workdir / "ckpt", directory.name)
    return workdir / "ckpt"


def timed(lm) -> dict:
    """Wrap the LM's request methods to add up their seconds and request counts."""
    stats = {name: {"requests": 0, "seconds": 0.0, "cpu_seconds": 0.0} for name in REQUEST_TYPES}
    for name in REQUEST_TYPES:
        method = getattr(lm, name)

        def wrapper(requests, *args, _method=method, _name=name, **kwargs):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = _method(requests, *args, **kwargs)
            stats[_name]["seconds"] += time.perf_counter() - start
            stats[_name]["cpu_seconds"] += time.process_time() - cpu_start
            stats[_name]["requests"] += len(requests)
            return out

        setattr(lm, name, wrapper)
    return stats


def run_kanana(checkpoint: Path, options) -> dict:
    from megatron_kanana.evaluation.checkpoint_checks import checked_checkpoint
    from megatron_kanana.evaluation.evaluate import run_lm_eval
    from megatron_kanana.evaluation.lm import KananaLM
    from megatron_kanana.mcore import runtime, scoring
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel.config import ParallelConfig

    directory, meta, tokenizer = checked_checkpoint(checkpoint)
    shape = ModelShape.from_dict(meta["model"])
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=1234)
    try:
        chunks = scoring.load_frozen_lm(shape, parallel, rt.device, directory)
        lm = KananaLM(chunks, tokenizer, shape.max_position_embeddings, options.batch_size)
        stats = timed(lm)
        results = run_lm_eval(lm, TASKS, options)
    finally:
        runtime.shutdown()
    return {"requests": stats, "results": results["results"]}


def run_hf(hf_dir: Path, options) -> dict:
    import torch
    from lm_eval.models.huggingface import HFLM

    from megatron_kanana.evaluation.evaluate import hf_tokenizer, run_lm_eval
    from megatron_kanana.mcore import cpu_backend

    cpu_backend.disable()  # the kanana run turned it on; runtime.initialize turns it on again
    lm = HFLM(pretrained=str(hf_dir), tokenizer=hf_tokenizer(hf_dir), device="cpu", dtype=torch.float32,
              batch_size=options.batch_size)
    stats = timed(lm)
    results = run_lm_eval(lm, TASKS, options)
    return {"requests": stats, "results": results["results"]}


def differences(ours: dict, theirs: dict) -> dict:
    """Every metric (stderr aside) with both values: accuracies should be equal, perplexities
    equal to float precision."""
    out = {}
    for task, metrics in ours.items():
        for metric, value in metrics.items():
            other = theirs[task].get(metric)
            if "stderr" not in metric and isinstance(value, float) and isinstance(other, float):
                out[f"{task} {metric}"] = {"kanana": value, "hf": other}
    return out


def _figures(rates: dict) -> dict:
    """Requests per second and per CPU-second of each backend, and kanana / HF for both."""
    out = {}
    for clock, suffix in zip(CLOCKS, ("per_s", "per_cpu_s")):
        out.update({f"{n}_requests_{suffix}": r for n, r in rates[clock].items()})
        out["ratio" if clock == "seconds" else "cpu_ratio"] = rates[clock]["kanana"] / rates[clock]["hf"]
    return out


def _row(kind: str, requests: int, rates: dict) -> str:
    wall, cpu = rates["seconds"], rates["cpu_seconds"]
    return (f"{kind:<24} {requests:>8} {wall['kanana']:>13.1f} {wall['hf']:>10.1f} {wall['kanana'] / wall['hf']:>7.2f}"
            f" {cpu['kanana']:>17.1f} {cpu['hf']:>13.1f} {cpu['kanana'] / cpu['hf']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each backend (median)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both backends (1: steadiest on a shared box)")
    parser.add_argument("--result", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from megatron_kanana.evaluation.evaluate import EvalOptions

    options = EvalOptions(batch_size=args.batch_size, include_path=(str(LOCAL_TASKS),), bootstrap_iters=10)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = make_checkpoint(work, args.preset)
        subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "convert", "--from", "mcore", "--to", "hf",
                        "--input", str(checkpoint), "--output", str(work / "hf")], check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels")])})
        repeats = {"kanana": [], "hf": []}
        for repeat in range(args.repeats):  # alternate which backend goes first
            for name in ("kanana", "hf") if repeat % 2 == 0 else ("hf", "kanana"):
                repeats[name].append(run_kanana(checkpoint, options) if name == "kanana"
                                     else run_hf(work / "hf", options))
    runs = {name: {"results": rs[0]["results"], "requests": {kind: {
        "requests": rs[0]["requests"][kind]["requests"],
        **{clock: statistics.median(r["requests"][kind][clock] for r in rs) for clock in CLOCKS},
        **{f"{clock}_each": [r["requests"][kind][clock] for r in rs] for clock in CLOCKS}}
        for kind in REQUEST_TYPES}} for name, rs in repeats.items()}
    report = {"preset": args.preset, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
              "repeats": args.repeats, "tasks": TASKS, "load_average": os.getloadavg(), "backends": {}}
    print(f"{'request type':<24} {'requests':>8} {'kanana req/s':>13} {'hf req/s':>10} {'ratio':>7}"
          f" {'kanana req/CPU-s':>17} {'hf req/CPU-s':>13} {'ratio':>7}")
    totals = {name: {clock: 0.0 for clock in CLOCKS} | {"requests": 0} for name in runs}
    for kind in REQUEST_TYPES:
        row = {name: runs[name]["requests"][kind] for name in runs}
        if not row["kanana"]["requests"]:
            continue
        rates = {clock: {name: row[name]["requests"] / row[name][clock] for name in runs} for clock in CLOCKS}
        for name in runs:
            totals[name]["requests"] += row[name]["requests"]
            for clock in CLOCKS:
                totals[name][clock] += row[name][clock]
        print(_row(kind, row["kanana"]["requests"], rates))
        report["backends"][kind] = {"requests": row["kanana"]["requests"], **_figures(rates),
                                    **{f"{n}_{clock}_each": row[n][f"{clock}_each"] for n in runs for clock in CLOCKS}}
    overall = {clock: {name: t["requests"] / t[clock] for name, t in totals.items()} for clock in CLOCKS}
    report["overall"] = _figures(overall)
    print(_row("all", totals["kanana"]["requests"], overall))
    report["metric_differences"] = differences(runs["kanana"]["results"], runs["hf"]["results"])
    for key, diff in report["metric_differences"].items():
        print(f"{key}: kanana {diff['kanana']:.6g}, hf {diff['hf']:.6g}")
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
