"""Which lm-eval tasks a request names, whether they may run, and whether their data is here.

    offline = choose_hub_mode()                 # before anything imports `datasets`
    manager = task_manager(include_path)
    check_tasks(manager, ["kmmlu", "gsm8k"], confirm_unsafe_code=False, offline=offline)

Tasks are lm-eval's own, by lm-eval's names (plus any folder given as
--include-path); nothing here defines a prompt or a metric. The checks run before
a model is loaded, so a typo, a code task without consent, or a dataset that is
neither cached nor reachable fails in seconds with one line naming the fix.

Data comes as lm-eval gets it: `datasets.load_dataset` and the Hugging Face
cache. When the user set neither HF_HUB_OFFLINE nor HF_DATASETS_OFFLINE, the hub
is probed once (2 s); unreachable, both are set to 1, so `datasets` reads the
cache instead of retrying the network for minutes.
"""
from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Iterator, Optional

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}  # datasets' file builders: nothing to fetch
LOCAL_TASKS = Path(__file__).parent / "local_tasks"  # our small KMMLU/GSM8K-format tasks (tests, demo)


class EvalError(ValueError):
    """A request `kanana eval` cannot run: the message names the input and the fix."""


def _is_on(value: Optional[str]) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def choose_hub_mode(host: str = "huggingface.co", timeout_s: float = 2.0) -> bool:
    """Whether datasets must come from the local cache; sets the offline variables when the
    hub is unreachable. Call before `datasets` is imported: it reads them at import."""
    if any(v in os.environ for v in OFFLINE_VARS):
        return any(_is_on(os.environ.get(v)) for v in OFFLINE_VARS)
    try:
        socket.create_connection((os.environ.get("KANANA_HUB_HOST", host), 443), timeout=timeout_s).close()
        return False
    except OSError:
        for name in OFFLINE_VARS:
            os.environ[name] = "1"
        return True


def task_manager(include_path: Optional[list[str]] = None, names: Optional[list[str]] = None,
                 key: str = "--include-path"):
    """lm-eval's task index over its own tasks and `include_path`. When every name is found in
    `include_path` alone, lm-eval's ~15k built-in configs are not indexed (about 15 s of CPU).
    `key`: how errors name include_path (the CLI flag, or a config key)."""
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in include_path or []]
    for path in paths:
        if not Path(path).is_dir():
            raise EvalError(f"{key} {path}: no such directory")
    if paths and names:
        local = TaskManager(include_path=paths, include_defaults=False)
        if set(names) <= set(local.all_tasks):
            return local
    return TaskManager(include_path=paths or None)


def check_tasks(manager, names: list[str], confirm_unsafe_code: bool, offline: bool, key: str = "--tasks",
                consent: str = "pass --confirm-run-unsafe-code") -> None:
    """Every name is a task, group or tag; code tasks are confirmed; offline, every dataset is cached.
    `key` and `consent`: how errors name the task list and the switch that allows code tasks."""
    known = set(manager.all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else "; `lm-eval ls tasks` lists them"
            raise EvalError(f"{key}: unknown task {name!r}{hint}")
    leaves = {leaf: cfg for name in names for leaf, cfg in leaf_configs(manager, name)}
    unsafe = sorted(leaf for leaf, cfg in leaves.items() if cfg.get("unsafe_code"))
    if unsafe and not confirm_unsafe_code:
        raise EvalError(f"{key}: {', '.join(unsafe[:5])}{' ...' if len(unsafe) > 5 else ''}: code tasks "
                        f"run model-written code on this machine; {consent} to allow it")
    if offline:
        for path, config_name in sorted({_dataset_of(cfg) for cfg in leaves.values()} - {None}, key=str):
            _check_cached(path, config_name, [leaf for leaf, cfg in leaves.items()
                                               if _dataset_of(cfg) == (path, config_name)])


def leaf_configs(manager, name: str, seen: Optional[set] = None) -> Iterator[tuple[str, dict]]:
    """(task name, its indexed config) of every task a name expands to (groups and tags recursively)."""
    from lm_eval.tasks._index import Kind

    seen = set() if seen is None else seen
    if name in seen:
        return
    seen.add(name)
    entry = manager.task_index.get(name)
    if entry is None:
        return
    if entry.kind == Kind.GROUP:
        for child in (entry.cfg or {}).get("task", []):
            if isinstance(child, str):
                yield from leaf_configs(manager, child, seen)
            elif isinstance(child, dict) and "task" in child:
                yield child["task"], child
    elif entry.kind == Kind.TAG:
        for other, e in manager.task_index.items():
            if name in (e.tags or ()):
                yield from leaf_configs(manager, other, seen)
    else:
        yield name, entry.cfg or {}


def _dataset_of(cfg: dict) -> Optional[tuple[str, Optional[str]]]:
    path = cfg.get("dataset_path")
    if not path or path in LOCAL_BUILDERS or Path(path).exists() or cfg.get("custom_dataset"):
        return None
    return path, cfg.get("dataset_name")


def _check_cached(path: str, config_name: Optional[str], tasks: list[str]) -> None:
    """Offline: the dataset loads from the Hugging Face cache, or an error says how to get it."""
    import datasets

    try:
        datasets.load_dataset_builder(path, config_name)
    except Exception:  # datasets raises ConnectionError, FileNotFoundError or its own classes offline
        name_arg = f", {config_name!r}" if config_name else ""
        cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "datasets")
        raise EvalError(
            f"dataset {path}{f' ({config_name})' if config_name else ''} for task {tasks[0]}"
            f"{f' (+{len(tasks) - 1} more)' if len(tasks) > 1 else ''} is not in the Hugging Face cache ({cache}) "
            f"and the hub is offline: fetch it beforehand on a connected machine "
            f"(python -c \"import datasets; datasets.load_dataset({path!r}{name_arg})\" with the same HF_HOME), "
            f"or point a task YAML at a local copy (dataset_path: json + data_files) and pass --include-path"
        ) from None
