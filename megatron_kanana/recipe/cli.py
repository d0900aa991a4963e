"""`kanana recipe`: the Kanana paper's claims reproduced in miniature on CPU, one command.

    kanana recipe --output recipe_out                    # every claim (about 35-60 min on 2 cores)
    kanana recipe --output recipe_quick --quick          # fewer steps (about 10 min)
    kanana recipe --output recipe_out --only staged,dus  # some claims (and the sub-runs they need)

Claims: staged (TR Table 3), dus (Table 4), prune (Table 5), ablations (Table 15), tying
(Table 17), accounting (§2.3.2's 11.06% / 6.67%). Data: the package's bilingual help-pages
corpus (guides = the high-quality split), a 2,048-piece SentencePiece tokenizer trained on it,
indexed datasets. Every sub-run is an ordinary `kanana train` / `upscale-depth` / `prune-score`
/ `prune` / `eval` command with its own folder (arms.py, runner.py; `eval` scores the staged
claim's models on the corpus's miniature benchmarks, local_tasks/kanana_help_*); run the same command again after a
kill and finished sub-runs are skipped, an interrupted one resumes from its checkpoint. Writes
report.json, report.md (per claim: the paper's figure, the measured ones, a verdict computed
from them, the seed) and plots/*.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import yaml

from megatron_kanana.recipe import arms, report, runner
from megatron_kanana.recipe.runner import RecipeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="recipe folder (the same settings resume it)")
    parser.add_argument("--quick", action="store_true", help="fewer steps per sub-run (the test's setting)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of every sub-run (continued runs: seed + 1)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="sub-runs at a time, each on one thread (the figures do not depend on it)")
    parser.add_argument("--only", default=None, help="comma-separated claims; known: " + ", ".join(arms.CLAIMS))


def selected_claims(only: str | None) -> tuple[str, ...]:
    if not only:
        return arms.CLAIMS
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in arms.CLAIMS]
    if unknown or not names:
        raise RecipeError(f"--only: unknown claim {', '.join(unknown) or repr(only)}; known: {', '.join(arms.CLAIMS)}")
    return tuple(c for c in arms.CLAIMS if c in names)


def prepare_inputs(layout: arms.Layout, scale: arms.Scale) -> None:
    """Tokenizer and indexed datasets from the packaged corpus (skipped when present), and the mixtures."""
    from megatron_kanana.data.demo_corpus import HELP_FILES, help_corpus_files
    from megatron_kanana.data.preprocess import preprocess
    from megatron_kanana.data.tokenizer_training import sample_bilingual, train_sentencepiece, training_lines

    files = [str(p) for p in help_corpus_files()]
    if not (layout.tokenizer / "tokenizer.model").exists():
        lines, _ = sample_bilingual(training_lines(files, "text"), korean_ratio=0.5, max_lines=20_000, seed=0)
        train_sentencepiece(lines, arms.VOCAB_SIZE, layout.tokenizer, num_threads=1)
    for name, path in zip(HELP_FILES, files):
        prefix = layout.data / name
        if not prefix.with_suffix(".idx").exists():
            preprocess([path], str(layout.tokenizer), str(prefix), workers=1, append_eod=True, overwrite=True)
    layout.mixtures.mkdir(parents=True, exist_ok=True)
    layout.benchmarks.mkdir(parents=True, exist_ok=True)  # kanana eval wants its --output's folder
    for name, mixture in arms.mixtures(layout, scale).items():
        layout.mixture(name).write_text(yaml.safe_dump(mixture, sort_keys=False))


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    claims = selected_claims(args.only)
    if args.jobs < 1:
        raise RecipeError(f"--jobs must be >= 1, got {args.jobs}")
    root = args.output.resolve()
    scale = arms.QUICK if args.quick else arms.FULL
    runner.claim_output(root, {"seed": args.seed, "quick": bool(args.quick)})
    layout = arms.Layout(root)
    prepare_inputs(layout, scale)
    subruns = arms.plan(layout, scale, args.seed, claims)
    print(f"kanana recipe: {len(subruns)} sub-runs for {', '.join(claims)} in {root}", flush=True)
    timings = runner.run_all(subruns, layout.configs, layout.logs, say=lambda line: print(line, flush=True),
                             jobs=args.jobs)
    by_name = {s.name: s for s in subruns}
    found = report.evaluate(claims, by_name, scale)
    for c in found.values():
        c["seed"] = args.seed  # the recipe's; continued runs use seed + 1 (arms.py)
    result = {"seed": args.seed, "quick": bool(args.quick), "claims_selected": list(claims), "claims": found,
              "scale": dataclasses.asdict(scale), "plots": [],
              "subruns": {n: {"kind": by_name[n].kind, **t} for n, t in timings.items()}}
    result["plots"] = report.plots(layout, result, by_name)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    report.write(root, result)
    for name, c in found.items():
        print(f"  {name:<11} {c['verdict']:<18} " + "; ".join(
            f"{k['lhs']:.4g} {k['op']} {k['rhs']:.4g}" for k in c["checks"]), flush=True)
    print(f"wrote {root / 'report.md'}, {root / 'report.json'} ({result['wall_s']:.0f} s)")
    return 0
