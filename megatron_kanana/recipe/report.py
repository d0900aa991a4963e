"""Turn the finished sub-runs into report.json, report.md and PNG plots.

The numbers come from each run's metrics.jsonl (training/plot.py's reader): the last held-out
validation per category, the tokens each run consumed, and the validation curve; each arm's
FLOP ledger is its sub-runs' tokens × the trained model's `flops_per_token` (a distillation
adds the teacher's forward, a calibration pass the scored model's forward). The staged claim's
models are also scored on the miniature benchmarks (their `kanana eval` results JSON).
"""
from __future__ import annotations

import json
from pathlib import Path

from megatron_kanana.recipe import accounting, arms, claims
from megatron_kanana.recipe.arms import SEQ_LENGTH, TOKENS_PER_STEP, Layout, SubRun
from megatron_kanana.training.plot import read_metrics


def final_validation(run_dir: Path) -> dict[str, float]:
    _, validation = read_metrics(run_dir)
    if not validation:
        raise ValueError(f"{run_dir}/metrics.jsonl has no validation record")
    return dict(validation[-1]["losses"])


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(iteration, mean held-out loss) at each validation of the run."""
    _, validation = read_metrics(run_dir)
    return [(r["iteration"], claims.mean_loss(r["losses"])) for r in validation]


def benchmark_scores(results_json: Path) -> dict[str, dict[str, float]]:
    """{task: {acc, acc_norm, acc_stderr, n}} from a `kanana eval` results file."""
    results = json.loads(results_json.read_text())
    return {task: {"acc": row["acc,none"], "acc_norm": row["acc_norm,none"], "acc_stderr": row["acc_stderr,none"],
                   "n": results["n-samples"][task]["effective"]} for task, row in sorted(results["results"].items())}


def consumed_tokens(run_dir: Path) -> int:
    train, _ = read_metrics(run_dir)
    return int(train[-1]["consumed_tokens"])


def kept_units(pruned: Path) -> dict:
    """The source indices `kanana prune` kept (its kanana.json), per kind of unit."""
    from megatron_kanana.checkpointing import layout

    return layout.read_meta(layout.resolve(pruned))["pruning"]["kept"]


def units_not_in(kept: dict, reference: dict) -> dict[str, int]:
    """How many kept units (per layer where either keeps per-layer sets) the reference did not keep."""
    def per_layer(x, n):
        return x if x and isinstance(x[0], list) else [x] * n
    out = {}
    for key in ("hidden", "ffn", "heads"):
        a, b = kept[key], reference[key]
        n = max(len(a) if a and isinstance(a[0], list) else 1, len(b) if b and isinstance(b[0], list) else 1)
        out[key] = sum(len(set(x) - set(y)) for x, y in zip(per_layer(a, n), per_layer(b, n)))
    return out


# arm -> the sub-runs whose compute it spent, in order
def arm_runs(variants: list[str]) -> dict[str, list[str]]:
    out = {"staged/quality": ["stage1", "stage2_quality"], "staged/continue": ["stage1", "stage2_continue"],
           "dus/up-scaled": ["stage1", "dus_continued"], "dus/source continued": ["stage1", "shallow_continued"],
           "dus/deep from scratch": ["deep_scratch"], "prune/student from scratch": ["student_scratch"]}
    for variant in variants:
        score = "score_" + ("kanana" if not arms.PRUNE_VARIANTS[variant][0] else variant)
        out[f"prune/{variant}"] = ["stage1", "stage2_quality", score, f"distill_{variant}"]
    return out


def ledger(subruns: dict[str, SubRun], scale: arms.Scale) -> dict[str, float]:
    """FLOPs per arm whose sub-runs all ran here."""
    entries: dict[str, accounting.LedgerEntry] = {}
    for name, sub in subruns.items():
        if sub.kind == "train":
            entries[name] = accounting.ledger_entry(name, consumed_tokens(sub.output), sub.shape, SEQ_LENGTH,
                                                    teacher=sub.teacher)
        elif sub.kind == "prune-score":  # forward only: a third of training FLOPs
            tokens = scale.calibration_batches * TOKENS_PER_STEP
            entries[name] = accounting.LedgerEntry(name, tokens, sub.shape.flops_per_token(SEQ_LENGTH) / 3)
    variants = [n[len("distill_"):] for n in subruns if n.startswith("distill_")]
    return {arm: accounting.total_flops([entries[r] for r in runs])
            for arm, runs in arm_runs(variants).items() if all(r in entries for r in runs)}


def miniature_dus_saving(subruns: dict[str, SubRun]) -> float:
    """The paper's saving formula on the miniature: its shapes' FLOPs per token and its token counts."""
    pretrain, dus_tokens = consumed_tokens(subruns["stage1"].output), consumed_tokens(subruns["dus_continued"].output)
    pair = (arms.BASE_SHAPE.flops_per_token(SEQ_LENGTH), arms.deep_shape().flops_per_token(SEQ_LENGTH))
    return accounting.dus_saving([pair], pretrain, dus_tokens)


def evaluate(selected: tuple[str, ...], subruns: dict[str, SubRun], scale: arms.Scale) -> dict[str, dict]:
    final = {name: final_validation(sub.output) for name, sub in subruns.items() if sub.kind == "train"}
    mean = {name: claims.mean_loss(losses) for name, losses in final.items()}
    flops = ledger(subruns, scale)
    out: dict[str, dict] = {}
    if "staged" in selected:
        out["staged"] = claims.staged(final["stage2_quality"], final["stage2_continue"])
        # reported beside the checks, not checked: 60 items a task (stderr ~0.06) cannot tell two
        # miniature arms apart; the held-out losses over thousands of tokens can
        out["staged"]["measured"]["benchmarks"] = {
            arm: benchmark_scores(subruns[f"bench_{arm}"].output) for arm in arms.BENCHMARKED}
    if "dus" in selected:
        names = ("dus_continued", "shallow_continued", "deep_scratch")
        out["dus"] = claims.dus({n: mean[n] for n in names},
                                {k: v for k, v in flops.items() if k.startswith("dus/")})
    if "prune" in selected:
        out["prune"] = claims.prune(mean["distill_kanana"], mean["student_scratch"])
    if "ablations" in selected:
        out["ablations"] = claims.ablations(mean["distill_kanana"], {a: mean[f"distill_{a}"] for a in arms.ABLATIONS})
        kanana = kept_units(subruns["pruned_kanana"].output)
        # an ablation that keeps the same units as Kanana's rules prunes to the very same model
        out["ablations"]["measured"]["kept_units_not_kept_by_kanana"] = {
            a: units_not_in(kept_units(subruns[f"pruned_{a}"].output), kanana) for a in arms.ABLATIONS}
    if "tying" in selected:
        out["tying"] = claims.tying(mean["distill_tied"], mean["distill_kanana"])
    if "accounting" in selected:
        saving = miniature_dus_saving(subruns) if "dus_continued" in subruns else None
        out["accounting"] = claims.accounting_claim(accounting.paper_accounting(), flops, saving)
    students = {"prune": ["distill_kanana", "student_scratch"], "tying": ["distill_tied", "distill_kanana"],
                "ablations": ["distill_kanana", *(f"distill_{a}" for a in arms.ABLATIONS)]}
    for name in ("prune", "ablations", "tying"):
        if name in out:  # the pruned model, for scale; the students early on, nearer their initialisation
            out[name]["measured"]["teacher_heldout_mean_loss"] = mean["stage2_quality"]
            out[name]["measured"]["heldout_mean_loss_at_first_validation"] = {
                n: dict(zip(("step", "loss"), curve(subruns[n].output)[0])) for n in students[name]}
    return out


# ---------------------------------------------------------------- writing

def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def markdown(report: dict) -> str:
    lines = [f"# Kanana recipe in miniature (seed {report['seed']}, {'quick' if report['quick'] else 'full'})", "",
             "Held-out losses are nats per token on the miniature's validation documents (lower is better); "
             "the paper's figures are benchmark averages (higher is better). Only directions compare.", "",
             "| claim | paper | measured | verdict |", "|---|---|---|---|"]
    for c in report["claims"].values():
        paper = "; ".join(f"{k} {_fmt(v)}" for k, v in c["paper"].items() if not isinstance(v, dict))
        if any(isinstance(v, dict) for v in c["paper"].values()):
            paper += "; " + "; ".join(f"{k}: " + ", ".join(f"{n} {_fmt(s)}" for n, s in v.items())
                                      for k, v in c["paper"].items() if isinstance(v, dict))
        measured = "<br>".join(f"{'✓' if k['holds'] else '✗'} {k['check']}: {_fmt(k['lhs'])} {k['op']} {_fmt(k['rhs'])}"
                               for k in c["checks"])
        lines.append(f"| {c['title']} | {paper.strip('; ')} | {measured} | **{c['verdict']}** |")
    lines += ["", "## Measured figures", ""]
    for name, c in report["claims"].items():
        lines += [f"### {name}", "", "```json", json.dumps(c["measured"], indent=1), "```", ""]
    lines += ["## Sub-runs", "", "| sub-run | kind | this invocation | seconds |", "|---|---|---|---|"]
    lines += [f"| {n} | {r['kind']} | {r['status']} | {r['seconds']} |" for n, r in report["subruns"].items()]
    lines += ["", f"Wall time of this invocation: {report['wall_s']} s. Plots: " +
              ", ".join(f"`{p}`" for p in report["plots"]), ""]
    return "\n".join(lines)


def write(root: Path, report: dict) -> None:
    for name, text in (("report.json", json.dumps(report, indent=2) + "\n"), ("report.md", markdown(report))):
        tmp = root / f"{name}.partial"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(root / name)


def plots(layout: Layout, report: dict, subruns: dict[str, SubRun]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout.plots.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(layout.plots / name, dpi=110)
        plt.close(fig)
        written.append(f"plots/{name}")

    found = report["claims"]
    if "staged" in found:
        m = found["staged"]["measured"]
        cats = sorted(m["stage2_quality"])
        fig, ax = plt.subplots(figsize=(7, 4))
        for j, arm in enumerate(("stage2_quality", "stage2_continue")):
            ax.bar([i + 0.4 * j for i in range(len(cats))], [m[arm][c] for c in cats], 0.4, label=arm)
        ax.set_xticks([i + 0.2 for i in range(len(cats))], cats)
        ax.set_ylim(min(min(m[a].values()) for a in ("stage2_quality", "stage2_continue")) * 0.95, None)
        ax.set(title="Staged pre-training: held-out loss after stage 2", ylabel="loss")
        ax.legend()
        save(fig, "staged.png")
    if "dus" in found:
        fig, ax = plt.subplots(figsize=(7, 4))
        stage1_flops = consumed_tokens(subruns["stage1"].output) * arms.BASE_SHAPE.flops_per_token(SEQ_LENGTH)
        for name, offset in (("dus_continued", stage1_flops), ("shallow_continued", stage1_flops), ("deep_scratch", 0)):
            fpt = subruns[name].shape.flops_per_token(SEQ_LENGTH)
            points = curve(subruns[name].output)
            ax.plot([offset + i * TOKENS_PER_STEP * fpt for i, _ in points], [v for _, v in points], marker=".",
                    label=name)
        ax.set(title="Depth up-scaling: held-out loss vs training FLOPs (stage 1 included)", xlabel="FLOPs",
               ylabel="mean held-out loss")
        ax.legend()
        save(fig, "dus_loss_vs_flops.png")
    students = [n for n in subruns if n.startswith("distill_") or n == "student_scratch"]
    if students:
        bars = {n: claims.mean_loss(final_validation(subruns[n].output)) for n in ["stage2_quality", *students]}
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh([n.replace("stage2_quality", "teacher (stage 2)") for n in bars], list(bars.values()))
        ax.set_xlim(min(bars.values()) * 0.95, None)
        ax.set(title="Pruned students: held-out loss after distillation (or from scratch)", xlabel="mean held-out loss")
        save(fig, "pruning.png")
    return written
