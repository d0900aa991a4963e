"""The local launcher of `kanana train CONFIG --nproc N`: torchrun that leaves no orphans.

    kanana train CONFIG --nproc 2          # launcher -> agent (torchrun, own session) -> 2 workers

Process tree and who ends whom:
- the launcher (the `kanana` process) starts the agent, torchrun's elastic agent run
  by `python -m megatron_kanana.training.launcher`, in its own session, so a terminal's
  Ctrl-C reaches only the launcher, which decides what the workers get;
- SIGTERM, SIGINT and SIGUSR1 to the launcher are forwarded to every worker as the
  save signal (SIGINT as SIGTERM), so they save at the next step boundary and exit 75,
  as under SLURM; a second signal stops the agent, which stops its workers;
- every process of the tree dies with its parent (Linux parent-death signal): the agent
  with the launcher, the workers with the agent, and whatever a worker forks or spawns
  (megatron's async checkpoint writer, its Manager server) with the worker. So no kill,
  even SIGKILL of the launcher's process group, leaves training running; a save cut
  short stays `iter_N.partial/` and the next run resumes from `latest`.
The agent prints no traceback of its own after a worker's clean error: the worker
already said why, and its exit status is what the launcher returns.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
_parent_at_fork: list[int] = []


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def bind_descendants_to_this_process() -> None:
    """This process dies with its parent, and every child it forks dies with it. A forked
    child loses the parent-death setting, so it is set again after each fork (megatron's
    async writer forks per save); spawned children (its Manager server) import the CLI
    module as __mp_main__, which does the same (megatron_kanana/cli.py)."""
    die_with_parent()
    os.register_at_fork(before=lambda: _parent_at_fork.insert(0, os.getpid()),
                        after_in_child=_child_after_fork, after_in_parent=lambda: _parent_at_fork.clear())


def _child_after_fork() -> None:
    parent = _parent_at_fork[0] if _parent_at_fork else None
    _parent_at_fork.clear()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if parent is not None and os.getppid() != parent:
            os._exit(1)


def launch_command(config_path: str, overrides: list[str], nproc: int) -> list[str]:
    return [sys.executable, "-m", "megatron_kanana.training.launcher", f"--nproc-per-node={nproc}",
            "--max-restarts=0", "-m", "megatron_kanana.cli", "train", config_path, *overrides]


def launch(config_path: str, overrides: list[str], nproc: int, status_file: Path) -> int:
    """Run the agent and return the workers' own status (from `status_file` when rank 0 wrote
    it: torchrun reports any failure as 1, which would hide "diverged" (3) and "resumable" (75))."""
    status_file.unlink(missing_ok=True)
    agent = subprocess.Popen(launch_command(config_path, overrides, nproc), start_new_session=True)
    signalled = threading.Event()

    def forward(signum, _frame) -> None:
        if signalled.is_set():  # a second signal: stop now (the agent stops its workers)
            _send(agent.pid, signal.SIGTERM)
            return
        signalled.set()
        for pid in _children(agent.pid):
            _send(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        code = agent.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if agent.poll() is None:  # the launcher itself is failing: take the tree down with it
            _send(agent.pid, signal.SIGKILL)
            agent.wait()
    if status_file.exists():
        try:
            return int(json.loads(status_file.read_text())["status"])
        except (ValueError, KeyError):
            pass
    return code


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def agent_main(argv: list[str]) -> int:
    """torchrun's agent, dying with the launcher and without torchrun's traceback."""
    die_with_parent()
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values() if f.exitcode and f.exitcode > 0]
        return codes[0] if codes else 1
    return 0


if __name__ == "__main__":
    sys.exit(agent_main(sys.argv[1:]))
