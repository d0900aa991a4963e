"""`make demo`: the whole recipe in miniature, offline, on CPU.

    python examples/demo/demo.py [--output demo_out]      # what `make demo` and `kanana demo` run

A script beside its configs, not a library module: it composes the library from the
outside through its CLI and public functions, as a user's pipeline would.

1. curate the embedded Korean/English corpus (dedup, language ID, heuristics, PII);
2. train a bilingual SentencePiece tokenizer on it and preprocess it into
   megatron-core indexed datasets;
3. pre-train a tiny Kanana-architecture model, stage 1 then stage 2, on 2
   processes at tensor-parallel size 2 — stopping half-way through stage 1 as a
   preempted job would, then resuming from the checkpoint;
4. greedy generations in Korean and English (the TP=2 checkpoint resharded to
   one process), loss plots;
5-7. post-training on synthetic bilingual arithmetic data: SFT, a Bradley–Terry
   reward model, offline DPO, online DPO with asynchronous sampling
   (posttrain_stages.py), each policy's held-out preference accuracy against
   the SFT model, and a Hugging Face export of the final policy;
and `summary.json` with the measured figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from megatron_kanana.data.demo_corpus import demo_corpus_files

sys.path.insert(0, str(Path(__file__).resolve().parent))  # posttrain_stages.py beside this script
from posttrain_stages import kanana, run_posttraining  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
MARKER = ".kanana-demo"
PROMPTS = ["대한민국은", "국회는", "The module", "A function"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=Path("demo_out"), help="output folder (replaced if a previous demo's)")
    parser.add_argument("--nproc", type=int, default=2, help="training processes (tensor-parallel size 2)")


def _fresh_output(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise SystemExit(f"kanana demo: {out} exists and is not a previous demo's output; "
                             "choose another --output")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by kanana demo; safe to delete\n")


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def _train(config: Path, *overrides: str, nproc: int) -> None:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", str(nproc), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    code = subprocess.call(cmd, env=env)
    if code != 0:
        raise SystemExit(f"kanana demo: training failed (exit {code}): {' '.join(cmd)}")


def prepare_data(out: Path) -> dict:
    corpus = out / "corpus"
    corpus.mkdir()
    for path in demo_corpus_files():
        shutil.copy(path, corpus / path.name)
    _step("1. curate the embedded corpus (dedup, language ID, heuristics, PII)")
    kanana(["curate", "--config", str(EXAMPLES.parent / "curation" / "kanana_pipeline.yaml"),
            "--input", str(corpus), "--output", str(out / "curated"), "--workers", "2"])
    curated = {lang: out / "curated" / "data" / f"{lang}.jsonl" for lang in ("ko", "en")}
    _step("2. train a bilingual tokenizer and preprocess into indexed datasets")
    kanana(["train-tokenizer", "--input", *map(str, curated.values()), "--vocab-size", "8192",
            "--output", str(out / "tokenizer")])
    for lang, path in curated.items():
        kanana(["preprocess", "--input", str(path), "--tokenizer", str(out / "tokenizer"),
                "--output-prefix", str(out / "data" / lang), "--workers", "2", "--append-eod"])
    mixture = yaml.safe_load((EXAMPLES / "mixture.yaml").read_text())
    mixture["data_root"] = str(out / "data")
    (out / "mixture.yaml").write_text(yaml.safe_dump(mixture, sort_keys=False))
    kanana(["mixture", "show", str(out / "mixture.yaml")])
    config = yaml.safe_load((EXAMPLES / "train.yaml").read_text())
    (out / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def stage_summary(out: Path, plan) -> dict:
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    train = {r["iteration"]: r for r in records if r.get("kind") == "train"}
    stages = {}
    for i, stage in enumerate(plan.stages):
        first, last = plan.first_step(i) + 1, plan.first_step(i + 1)
        logged = [train[s] for s in sorted(train) if first <= s <= last]
        stages[stage.name] = {"steps": stage.steps, "first_logged_loss": logged[0]["loss"],
                              "last_logged_loss": logged[-1]["loss"],
                              "first_logged_step": logged[0]["iteration"], "last_logged_step": logged[-1]["iteration"]}
    validation = [r for r in records if r.get("kind") == "validation"]
    tokens_per_s = [r["tokens_per_s"] for r in train.values() if r.get("tokens_per_s")]
    return {"stages": stages, "validation": {str(r["iteration"]): r["losses"] for r in validation},
            "median_tokens_per_s": statistics.median(tokens_per_s) if tokens_per_s else None}


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = args.output.resolve()
    _fresh_output(out)
    config = prepare_data(out)
    from megatron_kanana.config.root import load_config
    from megatron_kanana.training.stages import plan_stages

    cfg = load_config(out / "train.yaml")
    plan = plan_stages(cfg.data, cfg.schedule)
    stop_at = plan.stages[0].steps // 2
    t = _step(f"3a. pre-train stage 1 on {args.nproc} processes (TP=2); stop at step {stop_at} as if preempted")
    _train(out / "train.yaml", f"run.exit_after_steps={stop_at}", nproc=args.nproc)
    _step("3b. resume from the checkpoint; finish stage 1, then stage 2")
    _train(out / "train.yaml", nproc=args.nproc)
    train_seconds = time.perf_counter() - t
    _step("4. greedy generations (TP=2 checkpoint loaded in one process)")
    from megatron_kanana.inference.generate import generate

    completions = generate(out / "run" / "checkpoints", PROMPTS, max_new_tokens=24)
    for prompt, text in zip(PROMPTS, completions):
        print(f"  {prompt} ⟶ {text!r}")
    kanana(["plot", str(out / "run")])
    summary = stage_summary(out, plan)
    summary["posttraining"] = run_posttraining(out, lambda config: _train(config, nproc=args.nproc), _step)
    summary.update(resumed_at_step=stop_at, training_wall_s=round(train_seconds, 1),
                   wall_s=round(time.perf_counter() - start, 1), model=config["model"], parallel=config["parallel"],
                   generations=dict(zip(PROMPTS, completions)))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print("\n=== summary ===")
    for name, s in summary["stages"].items():
        print(f"  {name}: loss {s['first_logged_loss']:.3f} (step {s['first_logged_step']}) -> "
              f"{s['last_logged_loss']:.3f} (step {s['last_logged_step']})")
    post = summary["posttraining"]
    print(f"  SFT loss {post['sft_loss'][0]:.3f} -> {post['sft_loss'][1]:.3f}; reward model held-out pairwise "
          f"accuracy {post['reward_model']['pairwise accuracy']:.3f}")
    for name, result in post["preference_vs_sft"].items():
        print(f"  {name}: held-out preference accuracy vs the SFT model {result['preference_accuracy']:.3f} "
              f"(mean log-ratio margin {result['mean_margin']:.2f}, {result['pairs']} pairs)")
    hedged = post["hedged_answers"]
    print(f"  sampled answers that hedge (the noisy SFT habit): SFT {hedged['sft']:.0%} -> DPO {hedged['dpo']:.0%} "
          f"-> online DPO {hedged['online_dpo']:.0%}")
    vs_ref = post["online_dpo"]["vs_reference"]
    print(f"  online DPO vs its fixed reference (the offline-DPO model), held out: preference accuracy "
          f"{vs_ref['preference accuracy']:.3f}, reward margin {vs_ref['reward margin']:.3f} (both 0 at the start)")
    print(f"  online DPO: mean sampled reward {post['online_dpo']['sample_reward'][0]:.3f} (first log) -> "
          f"{post['online_dpo']['sample_reward'][1]:.3f} (last); HF export in {post['hf_export']}")
    print(f"  median tokens/s {summary['median_tokens_per_s']:.0f}, wall time {summary['wall_s']:.0f} s")
    print(f"  wrote {out / 'summary.json'} and plots in {out / 'run' / 'plots'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.py", description="The Kanana recipe in miniature on CPU processes")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
