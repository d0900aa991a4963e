"""Run the recipe's sub-runs in order, each an ordinary `kanana` command in its own process.

A finished sub-run is detected and skipped (a training run's exit_status.json says "done"; a
surgery output has `latest`; a scores file exists, written atomically); an interrupted training
run is started again with the same config and resumes from its own checkpoint, as `kanana train`
always does. Each sub-run's output goes to logs/NAME.log (appended, so a resume keeps the history)
and one progress line is printed per sub-run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

import megatron_kanana
from megatron_kanana.recipe.arms import SubRun
from megatron_kanana.training.launcher import die_with_parent

FORMAT = 1  # bump when the same settings would no longer reproduce an earlier folder's sub-runs
MARKER = "recipe.json"


class RecipeError(ValueError):
    """A bad request or a failed sub-run; the CLI prints it as one line."""


def claim_output(root: Path, settings: dict) -> None:
    """Refuse a folder written by another configuration; the same configuration resumes."""
    marker = root / MARKER
    settings = {"format": FORMAT, **settings}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved != settings:
            diff = ", ".join(f"{k} {saved.get(k)!r} there vs {v!r} now" for k, v in settings.items()
                             if saved.get(k) != v)
            raise RecipeError(f"{root} holds a recipe run of another configuration ({diff}); "
                              "choose another --output or repeat its settings to resume it")
        return
    if root.exists() and any(root.iterdir()):
        raise RecipeError(f"{root} is not empty and holds no {MARKER}: not a recipe folder; choose another --output")
    root.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(MARKER + ".partial")
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    tmp.replace(marker)


def child_env() -> dict:
    """This source tree first on the path; one thread per sub-run (bit-identical reruns, a shared
    machine); ATen's AVX2 kernels, so the figures do not depend on whether the host has AVX512
    (the two round sums differently); megatron's warnings off the logs."""
    package_root = Path(megatron_kanana.__file__).resolve().parents[1]
    paths = [str(package_root), str(package_root / "kernels"), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), OMP_NUM_THREADS="1",
                PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1", KANANA_DEVICE="cpu",
                ATEN_CPU_CAPABILITY=os.environ.get("ATEN_CPU_CAPABILITY", "avx2"))


def is_finished(sub: SubRun) -> bool:
    if sub.kind == "train":
        status = sub.output / "exit_status.json"
        return status.exists() and json.loads(status.read_text()).get("reason") == "done"
    if sub.kind in ("prune-score", "eval"):  # a scores file / kanana eval's results, both written atomically
        return sub.output.exists()
    return (sub.output / "latest").exists()


def _resume_step(sub: SubRun) -> int | None:
    latest = sub.output / "checkpoints" / "latest"
    if sub.kind != "train" or not latest.exists():
        return None
    text = latest.read_text().strip()
    digits = "".join(ch for ch in text.split("_")[-1] if ch.isdigit())
    return int(digits) if digits else None


def _argv(sub: SubRun, configs: Path) -> list[str]:
    if sub.config is None:
        return list(sub.argv)
    configs.mkdir(parents=True, exist_ok=True)
    path = configs / f"{sub.name}.yaml"
    path.write_text(yaml.safe_dump(sub.config, sort_keys=False))
    return [str(path) if a == "{config}" else a for a in sub.argv]


def _run_one(sub: SubRun, configs: Path, logs: Path) -> dict:
    step = _resume_step(sub)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "megatron_kanana.cli", *_argv(sub, configs)]
    log = logs / f"{sub.name}.log"
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        # a killed recipe takes its sub-runs with it: SIGTERM makes `kanana train` save and exit,
        # so the rerun resumes from there instead of racing an orphan for the same folder
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(),
                               preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    seconds = time.perf_counter() - start
    if code != 0 or not is_finished(sub):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise RecipeError(f"sub-run {sub.name} failed (exit {code}) after {seconds:.0f} s; see {log}: {tail[0]}")
    return {"status": f"resumed from step {step}" if step is not None else "ran", "seconds": round(seconds, 1)}


def run_all(subruns: list[SubRun], configs: Path, logs: Path, say=print, jobs: int = 1) -> dict[str, dict]:
    """Run what is not finished, up to `jobs` sub-runs at a time (each one thread, so the
    numbers do not depend on `jobs`), each once its inputs are done; returns per sub-run
    {status, seconds}. A failure stops new starts and is raised once the running ones end."""
    logs.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    width = max((len(s.name) for s in subruns), default=0)

    def report(sub: SubRun, result: dict) -> None:
        done[sub.name] = {"status": result["status"], "seconds": result["seconds"]}
        finished = "finished earlier: skipped" if result["status"] == "finished earlier" else \
            f"{result['status']}, {result['seconds']:.0f} s"
        say(f"[{len(done):>2}/{len(subruns)}] {sub.kind:<13} {sub.name:<{width}}  {finished}")

    pending = []
    for sub in subruns:
        if is_finished(sub):
            report(sub, {"status": "finished earlier", "seconds": 0.0})
        else:
            pending.append(sub)
    failure = None
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running: dict = {}
        while (pending and failure is None) or running:
            for sub in [s for s in pending if all(n in done for n in s.needs)][:max(0, jobs - len(running))]:
                if failure is None:
                    pending.remove(sub)
                    running[pool.submit(_run_one, sub, configs, logs)] = sub
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                sub = running.pop(future)
                try:
                    report(sub, future.result())
                except RecipeError as e:
                    failure = failure or e
    if failure is not None:
        raise failure
    if pending:  # unreachable unless a sub-run names an input outside the plan
        raise RecipeError(f"sub-runs {', '.join(s.name for s in pending)} wait for inputs the plan lacks")
    return done
