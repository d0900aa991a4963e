"""`kanana mixture show FILE`: what a stage mixture asks of the data on disk.

    kanana mixture show examples/demo/mixture.yaml --data-root demo_out/data

For every stage: each source's effective share, the tokens its datasets hold (read from
their .idx), the tokens the stage's budget asks of it, and how many epochs that is;
then the category shares. A source that would repeat more than `max_epochs` times, or
whose datasets do not exist yet, gets a warning.
"""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.data.mixture import Mixture, load_mixture, source_datasets


def human(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def stage_report(mixture: Mixture, stage_index: int, data_root: str | None, max_epochs: float) -> tuple[list[str], list[str]]:
    """Printable lines and warnings for one stage."""
    from megatron_kanana.data.indexed_datasets import dataset_summary

    stage = mixture.stages[stage_index]
    budget = stage.token_budget
    lines = [f"stage {stage.name}: budget {human(budget)} tokens",
             f"  {'source':<32} {'category':<14} {'share':>7} {'datasets':>8} {'available':>10} {'needed':>10} {'epochs':>7}"]
    warnings = []
    for source, share in zip(stage.sources, stage.shares()):
        prefixes = source_datasets(mixture, source, data_root)
        needed = share * budget
        if prefixes:
            available = sum(dataset_summary(p).num_tokens for p in prefixes)
            epochs = needed / available if available else float("inf")
            avail_text, epochs_text = human(available), f"{epochs:.2f}"
            if epochs > max_epochs:
                warnings.append(f"WARNING: stage {stage.name}: {source.path} would be repeated {epochs:.1f} times "
                                f"(more than max_epochs {max_epochs:g})")
        else:
            avail_text, epochs_text = "missing", "-"
            warnings.append(f"WARNING: stage {stage.name}: {source.path}: no dataset found at "
                            f"{mixture.resolve(source.path, data_root)}")
        lines.append(f"  {source.path:<32} {source.category:<14} {share:>7.2%} {len(prefixes):>8} "
                     f"{avail_text:>10} {human(needed):>10} {epochs_text:>7}")
    cats = ", ".join(f"{c} {s:.1%}" for c, s in sorted(stage.category_shares().items(), key=lambda kv: -kv[1]))
    lines.append(f"  categories: {cats}")
    return lines, warnings


def show(path: str, data_root: str | None = None, max_epochs: float | None = None) -> str:
    mixture = load_mixture(path)
    limit = max_epochs if max_epochs is not None else mixture.max_epochs
    out, warnings = [f"mixture {path}: {len(mixture.stages)} stage(s)"], []
    for i in range(len(mixture.stages)):
        lines, warns = stage_report(mixture, i, data_root, limit)
        out += lines
        warnings += warns
    return "\n".join(out + warnings)


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["show"], help="show: print shares, tokens available and epochs per stage")
    parser.add_argument("file", help="mixture YAML")
    parser.add_argument("--data-root", default=None, help="base directory of relative dataset paths")
    parser.add_argument("--max-epochs", type=float, default=None, help="warn above this many repeats (default: the file's)")


def run(args) -> int:
    try:
        print(show(args.file, args.data_root, args.max_epochs))
    except (ConfigError, ValueError) as e:
        print(f"kanana mixture: error: {e}")
        return 1
    return 0
