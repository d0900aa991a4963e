"""`make demo`: the whole recipe in miniature, offline, on CPU.

    python examples/demo/demo.py [--output demo_out]      # what `make demo` and `kanana demo` run

A script beside its configs, not a library module: it composes the library from the
outside through its CLI and public functions, as a user's pipeline would.

1. curate the embedded Korean/English help-pages corpus (dedup, language ID,
   heuristics, PII), four files: guides and reference pages per language;
2. train a bilingual SentencePiece tokenizer on it and preprocess it into
   megatron-core indexed datasets;
3. pre-train a tiny Kanana-architecture model, stage 1 (English-heavy) then
   stage 2 (Korean-heavy, leaning on the guides), on 2 processes at
   tensor-parallel size 2 — stopping half-way through stage 1 as a preempted job
   would, then resuming from the checkpoint; the held-out loss per language at
   the end of each stage shows what stage 2 did for Korean;
4. greedy (plain, and with a repetition penalty) and seeded sampled generations in
   Korean and English (the TP=2 checkpoint resharded to one process), loss plots;
5-7. post-training on synthetic bilingual arithmetic data: SFT, a Bradley–Terry
   reward model, offline DPO, online DPO with asynchronous sampling
   (posttrain_stages.py), each policy's held-out preference accuracy against
   the SFT model, and a Hugging Face export of the final policy;
8. a benchmark table through lm-evaluation-harness (eval_stages.py): the pre-trained
   and every post-trained model on held-out arithmetic and KMMLU-format questions;
and `summary.json` with the measured figures and each phase's wall time.
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

# ATen's kernels follow the host CPU (AVX512 vs AVX2 round sums differently), so the demo's
# figures would depend on the machine; pinned to AVX2 (every x86 host has it) they are the same
# everywhere. Set before torch loads here or in the training workers, which inherit it.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

from megatron_kanana.data.demo_corpus import HELP_FILES, help_corpus_files

sys.path.insert(0, str(Path(__file__).resolve().parent))  # posttrain_stages.py beside this script
from eval_stages import benchmark_table, print_table  # noqa: E402
from posttrain_stages import kanana, run_posttraining  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
MARKER = ".kanana-demo"
# The corpus is software help: prompts open sentences of the kind its pages are made of.
PROMPTS = ["이 명령을 선택하면", "문서를 저장하려면", "To open the dialog,", "If you select"]
VOCAB_SIZE = 4096  # train.yaml and posttrain_*.yaml set model.vocab_size to match
SAMPLING = {"temperature": 0.8, "top_p": 0.9, "seed": 1}  # the seeded samples beside greedy
# A model this small falls into one token repeated when greedy; the CTRL/HF repetition
# penalty (greedy still, so deterministic) shows what it has learnt beyond its loop.
REPETITION_PENALTY = 1.5  # CTRL suggests 1.2; at 1.2-1.3 English still loops on "the"


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


class Phases:
    """Wall time of each numbered demo step, for summary.json (the machine may be shared: upper bounds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def __call__(self, title: str) -> float:
        self.close()
        print(f"\n=== {title} ===", flush=True)
        self._current = (title.split(" ", 1)[0].rstrip("."), time.perf_counter())
        return self._current[1]

    def close(self) -> None:
        if self._current:
            name, start = self._current
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 1)
            self._current = None


def _train(config: Path, *overrides: str, nproc: int) -> None:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", str(nproc), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    code = subprocess.call(cmd, env=env)
    if code != 0:
        raise SystemExit(f"kanana demo: training failed (exit {code}): {' '.join(cmd)}")


def prepare_data(out: Path, step: Phases) -> dict:
    corpus = out / "corpus"
    corpus.mkdir()
    for path in help_corpus_files():
        shutil.copy(path, corpus / path.name)
    step("1. curate the embedded help-pages corpus (dedup, language ID, heuristics, PII)")
    kanana(["curate", "--config", str(EXAMPLES.parent / "curation" / "kanana_pipeline.yaml"),
            "--input", str(corpus), "--output", str(out / "curated"), "--workers", "2"])
    curated = {name: out / "curated" / "data" / f"{name}.jsonl" for name in HELP_FILES}
    step("2. train a bilingual tokenizer and preprocess into indexed datasets")
    # 4096 pieces, not the preset's 8192: the LM head is ~40% of this model's compute, and a tiny model
    # trained on 300k tokens learns a small vocabulary's statistics sooner
    kanana(["train-tokenizer", "--input", *map(str, curated.values()), "--vocab-size", str(VOCAB_SIZE),
            "--output", str(out / "tokenizer")])
    for name, path in curated.items():
        kanana(["preprocess", "--input", str(path), "--tokenizer", str(out / "tokenizer"),
                "--output-prefix", str(out / "data" / name), "--workers", "2", "--append-eod"])
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
    validation = {r["iteration"]: r["losses"] for r in records if r.get("kind") == "validation"}
    stages = {}
    for i, stage in enumerate(plan.stages):
        first, last = plan.first_step(i) + 1, plan.first_step(i + 1)
        logged = [train[s] for s in sorted(train) if first <= s <= last]
        # validated at each stage's last step on the same held-out documents (both stages list
        # every source), so the two stages' figures per language compare like with like
        stages[stage.name] = {"steps": stage.steps, "first_logged_loss": logged[0]["loss"],
                              "last_logged_loss": logged[-1]["loss"],
                              "first_logged_step": logged[0]["iteration"], "last_logged_step": logged[-1]["iteration"],
                              "heldout_loss_at_end": validation[last]}
    tokens_per_s = [r["tokens_per_s"] for r in train.values() if r.get("tokens_per_s")]
    return {"stages": stages, "validation": {str(k): v for k, v in validation.items()},
            "median_tokens_per_s": statistics.median(tokens_per_s) if tokens_per_s else None}


def pretrain(out: Path, args: argparse.Namespace, step: Phases):
    """Stage 1 stopped half-way as if preempted, then resumed through stage 2; returns the stage plan."""
    from megatron_kanana.config.root import load_config
    from megatron_kanana.training.stages import plan_stages

    cfg = load_config(out / "train.yaml")
    plan = plan_stages(cfg.data, cfg.schedule, cfg.model)
    stop_at = plan.stages[0].steps // 2
    step(f"3a. pre-train stage 1 on {args.nproc} processes (TP=2); stop at step {stop_at} as if preempted")
    _train(out / "train.yaml", f"run.exit_after_steps={stop_at}", nproc=args.nproc)
    step("3b. resume from the checkpoint; finish stage 1, then stage 2")
    _train(out / "train.yaml", nproc=args.nproc)
    return plan, stop_at


def generations(out: Path, step: Phases) -> dict:
    step("4. greedy, greedy with a repetition penalty, and seeded sampled generations (TP=2 checkpoint "
         "loaded in one process)")
    from megatron_kanana.inference.generate import generate
    from megatron_kanana.mcore.sampling import SamplingSettings

    greedy = generate(out / "run" / "checkpoints", PROMPTS, max_new_tokens=24)
    penalized = generate(out / "run" / "checkpoints", PROMPTS, max_new_tokens=24,
                         sampling=SamplingSettings(repetition_penalty=REPETITION_PENALTY))
    sampled = generate(out / "run" / "checkpoints", PROMPTS, max_new_tokens=24, sampling=SamplingSettings(**SAMPLING))
    pad = " " * 3
    for prompt, g, p, s in zip(PROMPTS, greedy, penalized, sampled):
        print(f"  {prompt} ⟶ greedy {g!r}\n  {' ' * len(prompt)}{pad}greedy, repetition penalty "
              f"{REPETITION_PENALTY} {p!r}\n  {' ' * len(prompt)}{pad}sampled {s!r}")
    kanana(["plot", str(out / "run")])
    return {"greedy": dict(zip(PROMPTS, greedy)), "greedy_penalized": dict(zip(PROMPTS, penalized)),
            "repetition_penalty": REPETITION_PENALTY, "sampled": dict(zip(PROMPTS, sampled)), "sampling": SAMPLING}


def print_summary(summary: dict, out: Path) -> None:
    print("\n=== summary ===")
    for name, s in summary["stages"].items():
        heldout = ", ".join(f"{lang} {loss:.3f}" for lang, loss in sorted(s["heldout_loss_at_end"].items()))
        print(f"  {name}: loss {s['first_logged_loss']:.3f} (step {s['first_logged_step']}) -> "
              f"{s['last_logged_loss']:.3f} (step {s['last_logged_step']}); held-out loss at its end: {heldout}")
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
    print("  benchmarks (lm-eval; arithmetic: held-out questions through the chat template, exact match; "
          "KMMLU-format: 0-shot accuracy, chance 0.25):")
    print_table(summary["benchmarks"])
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["phase_s"].items())
    print(f"  median tokens/s {summary['median_tokens_per_s']:.0f}, wall time {summary['wall_s']:.0f} s ({phases})")
    print(f"  wrote {out / 'summary.json'} and plots in {out / 'run' / 'plots'}")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = args.output.resolve()
    _fresh_output(out)
    step = Phases()
    config = prepare_data(out, step)
    t = time.perf_counter()
    plan, stop_at = pretrain(out, args, step)
    train_seconds = time.perf_counter() - t
    generated = generations(out, step)
    summary = stage_summary(out, plan)
    summary["posttraining"] = run_posttraining(out, lambda config: _train(config, nproc=args.nproc), step)
    step("8. benchmarks through lm-evaluation-harness (kanana eval's in-process form, local tasks)")
    summary["benchmarks"] = benchmark_table(out)
    step.close()
    summary.update(resumed_at_step=stop_at, training_wall_s=round(train_seconds, 1),
                   wall_s=round(time.perf_counter() - start, 1), phase_s=step.seconds, model=config["model"],
                   parallel=config["parallel"], generations=generated)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print_summary(summary, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.py", description="The Kanana recipe in miniature on CPU processes")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
