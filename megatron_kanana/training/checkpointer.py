"""Saving and resuming a training run: when, where, and what survives a crash.

What a checkpoint holds: the model and optimizer (megatron-core dist
checkpoint, reshardable to any TP/PP/DP), each rank's RNG streams (plain
tensors, restored only when the layout is unchanged), and `kanana.json` with the
resolved config and the train state (step, stage, consumed tokens). Together
with deterministic batches (training/data.py) that makes resume exact.

Saves go to `iter_N.partial/` and are published by an atomic rename plus a
rewrite of `latest` after every rank has finished (checkpointing/layout.py), so
a `kill -9` mid-save leaves the previous checkpoint loadable. SIGTERM/SIGUSR1
(SLURM preemption: `#SBATCH --signal=USR1@120`) set a flag; the trainer saves
and exits at the next step boundary, all ranks agreeing through an all-reduce.
"""
from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from megatron_kanana.checkpointing import layout
from megatron_kanana.log import get_logger
from megatron_kanana.mcore import checkpoint as mcore_ckpt, runtime
from megatron_kanana.models import rope
from megatron_kanana.training.checkpoint_config import CheckpointConfig

log = get_logger(__name__)


class Checkpointer:
    def __init__(self, cfg: CheckpointConfig, run_dir: Path, rank: int, layout_key: dict, on_gpu: bool,
                 load_state=mcore_ckpt.load_training_state, loadable_kinds: tuple[str, ...] = ("lm",)):
        self.cfg = cfg
        self.loadable_kinds = loadable_kinds  # model kinds this run may start from (checkpoint meta "model_kind")
        # (chunks, optimizer or None, directory): the reward model's loader also takes LM checkpoints
        self.load_state = load_state
        self.root = Path(run_dir) / "checkpoints"
        self.rank = rank
        self.layout_key = layout_key
        async_save = on_gpu if cfg.async_save is None else cfg.async_save
        self.queue = mcore_ckpt.new_async_queue() if async_save else None
        self._signalled = False
        self._previous_handlers = {}

    # -- signals -------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for name in self.cfg.save_on_signals:
            signum = getattr(signal, name)
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        log.warning(f"received {signal.Signals(signum).name}: saving at the next step boundary, then exiting")
        self._signalled = True

    def signal_received(self) -> bool:
        """True on every rank once any rank got a save signal (a collective: call it on all ranks)."""
        flag = torch.tensor([1 if self._signalled else 0], dtype=torch.int32, device=runtime.comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    # -- save --------------------------------------------------------------------------------
    def save(self, chunks, optimizer, step: int, meta: dict[str, Any]) -> None:
        partial = layout.partial_dir(self.root, step)
        if self.rank == 0:
            if partial.exists():  # left by a killed save of the same step
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
        mcore_ckpt.barrier()
        rng = mcore_ckpt.rng_state()  # captured now; an async save finishes steps later
        meta = dict(meta, layout=self.layout_key, contents=["model", "optimizer", "rng"])

        def publish() -> None:  # runs on every rank after all shards are written
            (partial / "rng").mkdir(exist_ok=True)
            torch.save(rng, partial / "rng" / f"rank_{self.rank:05d}.pt")
            mcore_ckpt.barrier()
            if self.rank == 0:
                layout.write_meta(partial, meta)
                final = layout.publish(self.root, step)
                if self.cfg.keep_last:
                    layout.prune(self.root, self.cfg.keep_last)
                log.info(f"saved checkpoint {final}")
            mcore_ckpt.barrier()

        mcore_ckpt.save_training_state(chunks, optimizer, partial, self.queue, publish)

    def poll(self) -> None:
        if self.queue is not None:
            self.queue.maybe_finalize_async_calls(blocking=False)

    def finalize(self) -> None:
        if self.queue is not None:
            self.queue.maybe_finalize_async_calls(blocking=True)
            self.queue.close()
            self.queue = None

    # -- load --------------------------------------------------------------------------------
    def find_resume_point(self) -> tuple[Optional[Path], bool]:
        """(checkpoint dir, is_own_run): this run's latest, else the configured `load`, else None."""
        own = layout.latest(self.root) if self.root.exists() else None
        if own is not None:
            return own, True
        if self.cfg.load:
            return layout.resolve(Path(self.cfg.load)), False
        return None, False

    def load(self, chunks, optimizer, directory: Path, own_run: bool,
             expected_model: Callable[[dict, bool], dict[str, Any]]) -> dict[str, Any]:
        """Load `directory` into the model (and optimizer); `expected_model(meta, own_run)` is the
        model dict its kanana.json must hold (a stage's RoPE depends on the checkpoint's step)."""
        meta = layout.read_meta(directory)
        layout.check_model_kind(meta, directory, self.loadable_kinds, "this run")
        model = expected_model(meta, own_run)
        saved = meta.get("model")
        if saved is not None and not own_run and rope.is_context_extension(saved, model):
            rope.check_context_extension(saved, model, str(directory))  # preflight checked it too
            log.info(f"context extension from {directory}: model {saved} -> {model}")
        elif saved is not None:
            diff = sorted(k for k in set(saved) | set(model) if saved.get(k) != model.get(k))
            if diff:
                raise layout.CheckpointError(
                    f"{directory} holds a different model: " +
                    ", ".join(f"{k} {saved.get(k)} (checkpoint) vs {model.get(k)} (config)" for k in diff))
        with_optimizer = "optimizer" in meta.get("contents", []) and (own_run or self.cfg.load_optimizer)
        self.load_state(chunks, optimizer if with_optimizer else None, directory)
        rng_file = directory / "rng" / f"rank_{self.rank:05d}.pt"
        if meta.get("layout") == self.layout_key and rng_file.exists():
            mcore_ckpt.set_rng_state(torch.load(rng_file, weights_only=True))
        elif own_run:
            log.warning("parallel layout changed since the checkpoint: RNG streams are re-seeded, not restored")
        log.info(f"loaded {directory} (optimizer: {'restored' if with_optimizer else 'fresh'})")
        return meta
