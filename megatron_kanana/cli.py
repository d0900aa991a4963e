"""The `kanana` console command.

    kanana SUBCOMMAND [args...]      e.g. `kanana model-info kanana-nano-2.1b --json`

Each subcommand lives in the module that owns its concept and exposes
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when
their subcommand runs, so `kanana model-info` never pays megatron-core's import.

This is the error boundary: the project's errors, and the third-party errors a
bad input file causes, become one line `kanana CMD: error: ...` and exit 2,
with the traceback only under KANANA_DEBUG=1; what the failed command had
started to write (OUT.partial, a new empty output directory) is removed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from megatron_kanana import errors

# name -> (module, one-line help). Keep sorted by name.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("megatron_kanana.surgery.convert", "Convert Hugging Face Llama <-> megatron-core checkpoints"),
    "curate": ("megatron_kanana.curation.curate", "Curate JSONL shards: dedup, heuristics, language ID, PII, quality"),
    "curate-train-classifier": ("megatron_kanana.curation.classifier.train",
                                "Train the fastText-style quality classifier, iteratively"),
    "demo": ("", "Run the main job (examples/demo/demo.py, as `make demo`): the recipe in miniature on CPU"),
    "eval": ("megatron_kanana.evaluation.cli", "Benchmarks (KMMLU, MMLU, GSM8K, ...) through lm-evaluation-harness, any TP/PP"),
    "generate": ("megatron_kanana.inference.generate", "Continuations of prompts from a checkpoint (KV-cached; greedy or sampled)"),
    "mixture": ("megatron_kanana.data.mixture_report", "Show a stage mixture: shares, tokens available, epochs"),
    "model-info": ("megatron_kanana.models.info", "Print a preset's shape and parameter counts"),
    "plan": ("megatron_kanana.planning.cli", "Per-GPU memory and estimated throughput of a config's layout, and better ones"),
    "plot": ("megatron_kanana.training.plot", "Draw a run's metrics (loss, validation, LR, throughput) as PNGs"),
    "prune": ("megatron_kanana.surgery.prune", "Width/depth pruning by importance scores (heads per KV group, tied embeddings)"),
    "prune-score": ("megatron_kanana.surgery.score", "Activation importance of channels, heads, neurons, layers for pruning"),
    "pref-eval": ("megatron_kanana.posttrain.pref_eval",
                  "Preference accuracy of a policy against a reference on held-out pairs (DPO's metric)"),
    "pref-preprocess": ("megatron_kanana.posttrain.preference_preprocess",
                        "Render preference JSONL into (chosen, rejected) pairs with SFT loss masks"),
    "pref-synthetic": ("megatron_kanana.posttrain.preference_synthetic",
                       "Write toy arithmetic preference pairs (right vs wrong, hedged answer)"),
    "preprocess": ("megatron_kanana.data.preprocess", "Tokenize JSONL into a megatron-core indexed dataset"),
    "preprocess-merge": ("megatron_kanana.data.preprocess_merge", "Concatenate indexed datasets into one"),
    "recipe": ("megatron_kanana.recipe.cli",
               "The paper's claims in miniature on CPU: staged, DUS, pruning + ablations, tying, compute"),
    "sft-preprocess": ("megatron_kanana.posttrain.sft_preprocess",
                       "Render chat JSONL into an SFT dataset (tokens + loss mask), optionally packed"),
    "sft-synthetic": ("megatron_kanana.posttrain.synthetic", "Write toy bilingual arithmetic SFT conversations"),
    "train": ("megatron_kanana.training.train", "Pre-train on megatron-core from a sectioned YAML config"),
    "train-tokenizer": ("megatron_kanana.data.tokenizer_training", "Train a bilingual SentencePiece BPE tokenizer"),
    "upscale-depth": ("megatron_kanana.surgery.upscale", "Depth up-scaling: stack source layers (SOLAR) into a deeper model"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: kanana SUBCOMMAND [args...]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(SUBCOMMANDS.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"kanana: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if name == "demo":
        return _run_demo(rest)
    module_name, help_ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"kanana {name}", description=help_)
    module.add_arguments(parser)
    # intermixed: `kanana train CONFIG --nproc 2 key=value` keeps positional overrides after options
    args = parser.parse_intermixed_args(rest)
    outputs = errors.OutputGuard.of(args)
    try:
        code = int(module.run(args) or 0)
    except errors.USER_ERRORS as e:
        outputs.clean()
        if os.environ.get("KANANA_DEBUG") == "1":
            raise
        print(f"kanana {name}: error: {errors.describe(e)}", file=sys.stderr)
        return 2
    except Exception:  # a bug: still no half-written output (an interrupt, like a kill, leaves it for the rerun)
        outputs.clean()
        raise
    if code != 0:  # the command reported its own failure
        outputs.clean()
    return code


def _run_demo(argv: list[str]) -> int:
    """The demo is a script of the source tree that uses the library from outside; the
    library itself never imports it."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "demo" / "demo.py"
    if not script.exists():
        print(f"kanana demo: {script} not found; the demo runs from a source checkout (`make demo`)",
              file=sys.stderr)
        return 2
    sys.argv = [str(script), *argv]
    return int(runpy.run_path(str(script), run_name="kanana_demo")["main"](argv) or 0)

if __name__ == "__mp_main__" and "TORCHELASTIC_RUN_ID" in os.environ:
    # a process spawned by a training worker (megatron's async writer starts a Manager server)
    # imports this module as __mp_main__: it must not outlive the worker (training/launcher.py)
    from megatron_kanana.training.launcher import die_with_parent

    die_with_parent()

if __name__ == "__main__":
    sys.exit(main())
