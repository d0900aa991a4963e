"""Requests per second of `kanana eval`'s backend against lm-eval's HF backend, same model, one run.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/eval_throughput.py --preset demo --batch-size 8 \
        --result benchmarks/results/eval-throughput-cpu.json

Builds a random model of the preset (a byte-level BPE tokenizer trained on the demo
corpus, at the preset's vocabulary), saves it as a checkpoint, exports it with
`kanana convert --from mcore --to hf`, then in this one process runs lm-eval on the
shipped local tasks (KMMLU-format multiple choice, GSM8K-format generation, rolling
perplexity; every document) twice: through KananaLM at TP=1 and through lm-eval's
HFLM on the export (fp32, CPU), same batch size. Only the time inside the LM's request
methods is counted (task and dataset setup is the same for both), per request type.
The box is shared, so the two backends alternate --repeats times and each figure is
the median of its repeats.
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
    stats = {name: {"requests": 0, "seconds": 0.0} for name in REQUEST_TYPES}
    for name in REQUEST_TYPES:
        method = getattr(lm, name)

        def wrapper(requests, *args, _method=method, _name=name, **kwargs):
            start = time.perf_counter()
            out = _method(requests, *args, **kwargs)
            stats[_name]["seconds"] += time.perf_counter() - start
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each backend (median)")
    parser.add_argument("--result", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from megatron_kanana.evaluation.evaluate import EvalOptions

    options = EvalOptions(batch_size=args.batch_size, include_path=(str(LOCAL_TASKS),), bootstrap_iters=10)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = make_checkpoint(work, args.preset)
        subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "convert", "--from", "mcore", "--to", "hf",
                        "--input", str(checkpoint), "--output", str(work / "hf")], check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels")])})
        repeats = {"kanana": [], "hf": []}
        for _ in range(args.repeats):
            repeats["kanana"].append(run_kanana(checkpoint, options))
            repeats["hf"].append(run_hf(work / "hf", options))
    runs = {name: {"results": rs[0]["results"], "requests": {kind: {
        "requests": rs[0]["requests"][kind]["requests"],
        "seconds": statistics.median(r["requests"][kind]["seconds"] for r in rs)} for kind in REQUEST_TYPES}}
        for name, rs in repeats.items()}
    report = {"preset": args.preset, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
              "repeats": args.repeats, "tasks": TASKS, "load_average": os.getloadavg(), "backends": {}}
    print(f"{'request type':<24} {'requests':>8} {'kanana req/s':>13} {'hf req/s':>10} {'ratio':>7}")
    totals = {name: [0, 0.0] for name in runs}
    for kind in REQUEST_TYPES:
        row = {name: runs[name]["requests"][kind] for name in runs}
        if not row["kanana"]["requests"]:
            continue
        rates = {name: row[name]["requests"] / row[name]["seconds"] for name in runs}
        for name in runs:
            totals[name][0] += row[name]["requests"]
            totals[name][1] += row[name]["seconds"]
        print(f"{kind:<24} {row['kanana']['requests']:>8} {rates['kanana']:>13.1f} {rates['hf']:>10.1f} "
              f"{rates['kanana'] / rates['hf']:>7.2f}")
        report["backends"][kind] = {**{f"{n}_requests_per_s": r for n, r in rates.items()},
                                    "requests": row["kanana"]["requests"], "ratio": rates["kanana"] / rates["hf"]}
    overall = {name: n / s for name, (n, s) in totals.items()}
    report["overall"] = {**{f"{n}_requests_per_s": r for n, r in overall.items()},
                         "ratio": overall["kanana"] / overall["hf"]}
    print(f"{'all':<24} {totals['kanana'][0]:>8} {overall['kanana']:>13.1f} {overall['hf']:>10.1f} "
          f"{overall['kanana'] / overall['hf']:>7.2f}")
    report["metric_differences"] = differences(runs["kanana"]["results"], runs["hf"]["results"])
    for key, diff in report["metric_differences"].items():
        print(f"{key}: kanana {diff['kanana']:.6g}, hf {diff['hf']:.6g}")
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
