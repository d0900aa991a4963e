"""`kanana plot RUN_DIR [--output DIR] [--compare OTHER_RUN ...]`: PNG curves of a run's metrics JSONL.

Reads RUN_DIR/metrics.jsonl (written by `MetricsLogger`) and writes into
RUN_DIR/plots/ (or --output): loss.png (LM loss, z-loss on its own axis),
validation.png (validation loss per data category), lr.png, throughput.png
(tokens/s, and MFU when the run was on GPUs), and eval_TASK.png per benchmark
task of an `evaluation` section (its metrics over the iterations; with --compare,
also those of other runs, e.g. two stage-2 candidates on the same benchmarks). Figures are drawn with
matplotlib's Agg canvas (no display needed) and each PNG is written under a
temporary name and renamed, so an interrupted plot never leaves a half file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from megatron_kanana.training.metric_sinks import METRICS_FILENAME


class MetricsFileError(ValueError):
    """The run directory has no usable metrics."""


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train records, validation records), each sorted by iteration."""
    records = read_records(run_dir)
    return records["train"], records["validation"]


def read_records(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Records by kind ("train", "validation", "evaluation", ...), each sorted by iteration.

    A resumed run appends records for iterations it replays; the last record per
    (kind, iteration) wins, so the curves show what the surviving run did.
    """
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILENAME
    if not run_dir.is_dir():
        raise MetricsFileError(f"{run_dir} is not a directory")
    if not path.is_file():
        raise MetricsFileError(f"{run_dir} has no {METRICS_FILENAME}: was it written by a run with logging.jsonl on?")
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (record["kind"], int(record["iteration"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                if number > 1 and not line.endswith("\n"):
                    continue  # a last line cut short by a crash: plot what came before
                raise MetricsFileError(f"{path}:{number}: not a metrics record ({e})") from None
            latest[key] = record
    if not latest:
        raise MetricsFileError(f"{path} holds no metrics records")
    by_kind = {"train": [], "validation": [], "evaluation": []}
    for (kind, _), record in sorted(latest.items(), key=lambda kv: kv[0][1]):
        by_kind.setdefault(kind, []).append(record)
    return by_kind


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Iterations and values where `key` has a value (a fully skipped interval has none)."""
    points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure  # lazy: the OO API needs no global backend

    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _with_twin(ax, records, key: str, label: str, color: str) -> bool:
    """Draw `key` on a right-hand axis of its own scale; False when the run has none."""
    xs, ys = _series(records, key)
    if not xs:
        return False
    twin = ax.twinx()
    twin.plot(xs, ys, color=color, label=label, linewidth=1)
    twin.set_ylabel(label, color=color)
    return True


def plot_loss(train, out: Path) -> Path | None:
    xs, ys = _series(train, "loss")
    if not xs:
        return None
    fig, ax = _figure("Training loss", "lm loss")
    ax.plot(xs, ys, color="tab:blue", linewidth=1)
    ax.set_ylabel("lm loss", color="tab:blue")
    _with_twin(ax, train, "z_loss", "z-loss", "tab:orange")
    return _save(fig, out / "loss.png")


def plot_validation(validation, out: Path) -> Path | None:
    if not validation:
        return None
    fig, ax = _figure("Validation loss by category", "loss")
    categories = sorted({name for r in validation for name in r["losses"]})
    for name in categories:
        points = [(r["iteration"], r["losses"][name]) for r in validation if r["losses"].get(name) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    ax.legend()
    return _save(fig, out / "validation.png")


def plot_evaluation(runs: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """One eval_TASK.png per benchmark task: each metric of each run (label -> its evaluation
    records) against the iteration, with its stderr (when lm-eval gave one) as error bars."""
    tasks = sorted({task for records in runs.values() for r in records for task in r["results"]})
    written = []
    for task in tasks:
        fig, ax = _figure(f"Benchmark: {task}", "value")
        for label, records in runs.items():
            rows = [(r["iteration"], r["results"][task]) for r in records if task in r["results"]]
            for metric in sorted({m for _, ms in rows for m in ms if not m.endswith("_stderr")}):
                points = [(i, ms[metric], ms.get(_stderr_key(metric))) for i, ms in rows if metric in ms]
                errors = [e for _, _, e in points]
                ax.errorbar([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, capsize=3,
                            yerr=errors if all(e is not None for e in errors) else None,
                            label=metric if len(runs) == 1 else f"{label}: {metric}")
        ax.legend()
        written.append(_save(fig, out / f"eval_{task.replace('/', '_')}.png"))
    return written


def _stderr_key(metric: str) -> str:
    """lm-eval's stderr of "acc" is "acc_stderr"; of "exact_match/strict-match", "exact_match_stderr/strict-match"."""
    name, sep, filter_name = metric.partition("/")
    return f"{name}_stderr{sep}{filter_name}"


def plot_lr(train, out: Path) -> Path | None:
    xs, ys = _series(train, "lr")
    if not xs:
        return None
    fig, ax = _figure("Learning rate", "learning rate")
    ax.plot(xs, ys, color="tab:green", linewidth=1)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    return _save(fig, out / "lr.png")


def plot_throughput(train, out: Path) -> Path | None:
    xs, ys = _series(train, "tokens_per_s")
    if not xs:
        return None
    fig, ax = _figure("Throughput", "tokens/s (all GPUs)")
    ax.plot(xs, ys, color="tab:purple", linewidth=1)
    ax.set_ylabel("tokens/s (all GPUs)", color="tab:purple")
    _with_twin(ax, train, "mfu", "MFU", "tab:red")
    return _save(fig, out / "throughput.png")


def plot_run(run_dir: str | Path, output: str | Path | None = None,
             compare: Sequence[str | Path] = ()) -> list[Path]:
    """Write every plot the run's metrics allow; returns the PNG paths. Runs in `compare` (e.g.
    another stage-2 candidate) join the benchmark plots, one curve per run and metric."""
    records = read_records(run_dir)
    train, validation = records["train"], records["validation"]
    out = Path(output) if output is not None else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_loss(train, out), plot_validation(validation, out),
               plot_lr(train, out), plot_throughput(train, out)]
    runs = {_label(run_dir, compare): records["evaluation"]}
    runs.update({_label(other, [run_dir, *compare]): read_records(other)["evaluation"] for other in compare})
    return [p for p in written if p is not None] + plot_evaluation(runs, out)


def _label(run_dir: str | Path, others: Sequence[str | Path]) -> str:
    """A run's name in a legend: its folder's name, or its path when another run shares the name."""
    name = Path(run_dir).name
    clash = [o for o in others if Path(o).name == name and Path(o).resolve() != Path(run_dir).resolve()]
    return str(run_dir) if clash else name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help=f"a run directory holding {METRICS_FILENAME}")
    parser.add_argument("--output", default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    parser.add_argument("--compare", action="append", default=[], metavar="RUN_DIR",
                        help="another run whose benchmarks (evaluation section) join the eval_TASK.png plots")


def run(args: argparse.Namespace) -> int:
    try:
        paths = plot_run(args.run_dir, args.output, args.compare)
    except MetricsFileError as e:
        print(f"kanana plot: error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
