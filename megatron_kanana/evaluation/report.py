"""lm-eval's results JSON and console table, written whole or not at all.

The JSON is what lm-eval's own CLI writes (results per task and metric with
stderr, group results, configs, versions, n-samples, n-shot), through lm-eval's
serialiser; per-sample records go to --log-samples DIR as one JSONL per task.
Files appear under their final names only when complete (X.partial, renamed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional


def hf_path(output: Path) -> Path:
    """Where the HF backend's results go beside `output` (r.json -> r.hf.json)."""
    return output.with_name(f"{output.stem}.hf{output.suffix or '.json'}")


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write(results: dict, output: Path, samples_dir: Optional[Path]) -> None:
    from lm_eval.utils import handle_non_serializable, make_table

    samples = results.pop("samples", None)
    _atomic_write(Path(output), json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    if samples_dir is not None and samples:
        samples_dir.mkdir(parents=True, exist_ok=True)
        for task, rows in samples.items():
            _atomic_write(samples_dir / f"samples_{task}.jsonl", "".join(
                json.dumps(r, default=handle_non_serializable, ensure_ascii=False) + "\n" for r in rows))
    print(f"{results['config'].get('model')}: {output}")
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))


def print_side_by_side(kanana_output: Path, hf_output: Path) -> None:
    """One line per task and metric: kanana's value, the HF backend's, and their difference."""
    ours, theirs = (json.loads(Path(p).read_text())["results"] for p in (kanana_output, hf_output))
    print(f"{'task':<28} {'metric':<28} {'kanana':>10} {'hf':>10} {'diff':>10}")
    for task in sorted(ours):
        for metric, value in sorted(ours[task].items()):
            other = theirs.get(task, {}).get(metric)
            if "stderr" in metric or not isinstance(value, (int, float)) or not isinstance(other, (int, float)):
                continue
            print(f"{task:<28} {metric:<28} {value:>10.4f} {other:>10.4f} {value - other:>+10.4f}")
