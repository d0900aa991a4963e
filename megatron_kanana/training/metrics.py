"""Training metrics: a Megatron-style log line, a metrics JSONL, TensorBoard, wandb, a progress bar.

The trainer calls `MetricsLogger.log_step(...)` after every optimizer step; the
logger sums the interval and, every `log_interval` iterations, writes averages
to every enabled sink. `log_validation` records per-category validation losses,
`log_evaluation` benchmark metrics per task (evaluation/in_training.py).
Only rank 0 writes anything; on other ranks every method is a no-op, so the
trainer needs no rank checks. `kanana plot RUN_DIR` draws the JSONL.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.log import get_logger
from megatron_kanana.training import metric_sinks as sinks

logger = get_logger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class LoggingConfig(Section):
    """What the trainer reports, and where."""

    log_interval: int = field(default=10, metadata={"help": "write averaged metrics every this many iterations"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard scalars to RUN_DIR/tensorboard"})
    wandb: bool = field(default=False, metadata={"help": "log to wandb (offline unless WANDB_MODE is set)"})
    wandb_project: str = field(default="megatron_kanana", metadata={"help": "wandb project name"})
    jsonl: bool = field(default=True, metadata={"help": "append metrics to RUN_DIR/metrics.jsonl (read by `kanana plot`)"})
    progress_bar: bool = field(default=True, metadata={"help": "show a progress bar when stdout is a terminal"})
    peak_tflops_per_gpu: float = field(
        default=989.0, metadata={"help": "dense peak TFLOP/s of one GPU for MFU (989 = H100 SXM bf16)"})

    def validate(self) -> None:
        if self.log_interval < 1:
            raise ConfigError(f"log_interval: must be >= 1, got {self.log_interval}")
        if not self.peak_tflops_per_gpu > 0:
            raise ConfigError(f"peak_tflops_per_gpu: must be > 0, got {self.peak_tflops_per_gpu}")
        if self.wandb and not self.wandb_project:
            raise ConfigError("wandb_project: must be set when wandb is on")


class Throughput(NamedTuple):
    tokens_per_s: float
    tflops_per_gpu: float
    mfu: float  # model FLOPs utilisation, a fraction of peak_tflops


def throughput(tokens: int, seconds: float, flops_per_token: float, num_gpus: int, peak_tflops: float) -> Throughput:
    """Tokens/s over all GPUs, achieved TFLOP/s per GPU, and MFU.

    `flops_per_token` is training FLOPs (forward + backward, e.g.
    `ModelShape.flops_per_token(seq_length)`), so this is model FLOPs
    utilisation: activation recomputation does not count as useful work.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if num_gpus < 1:
        raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be > 0, got {peak_tflops}")
    tokens_per_s = tokens / seconds
    tflops_per_gpu = tokens_per_s * flops_per_token / num_gpus / 1e12
    return Throughput(tokens_per_s, tflops_per_gpu, tflops_per_gpu / peak_tflops)


def memory_in_use(on_gpu: bool) -> tuple[float, str]:
    """(GiB, what was measured): peak allocated GPU memory, or the process RSS on CPU."""
    if on_gpu:
        import torch

        return torch.cuda.max_memory_allocated() / GIB, "gpu_max_allocated"
    import psutil

    return psutil.Process().memory_info().rss / GIB, "rss"


def _default_on_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@dataclass
class _Interval:
    """Sums over the iterations since the last log line."""

    iterations: int = 0
    good: int = 0
    skipped: int = 0
    loss: float = 0.0
    z_loss: float = 0.0
    grad_norm: float = 0.0
    has_z_loss: bool = False
    has_grad_norm: bool = False
    tokens: int = 0
    flops: float = 0.0  # model FLOPs of those tokens (a stage's length changes the FLOPs per token)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def mean(self, total: float, present: bool = True) -> float | None:
        return total / self.good if self.good and present else None


class MetricsLogger:
    """Writes training metrics of one run to RUN_DIR; see the module doc.

    Iterations are 1-based counts of finished optimizer steps (Megatron's
    "iteration"): iteration i ran with `learning_rate(cfg, i - 1)`.
    """

    def __init__(self, run_dir: str | Path, cfg: LoggingConfig, *, total_iterations: int,
                 flops_per_token: float | None = None, num_gpus: int = 1, start_iteration: int = 0,
                 run_config: Mapping[str, Any] | None = None, rank: int = 0,
                 on_gpu: bool | None = None, run_name: str | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.total_iterations = total_iterations
        self.flops_per_token = flops_per_token
        self.num_gpus = num_gpus
        self.on_gpu = _default_on_gpu() if on_gpu is None else on_gpu
        self.skipped_total = 0
        self.active = rank == 0  # one writer per run: the job's rank 0
        self._interval = _Interval()
        self._closed = False
        self.jsonl = self.tensorboard = self.wandb = self.progress = None
        if not self.active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.jsonl:
            self.jsonl = sinks.JsonlSink(self.run_dir)
        if cfg.tensorboard:
            self.tensorboard = sinks.try_open("TensorBoard", sinks.TensorBoardSink, self.run_dir)
        if cfg.wandb:
            self.wandb = sinks.try_open("wandb", sinks.WandbSink, self.run_dir, cfg.wandb_project,
                                        run_name or self.run_dir.name, run_config)
        if cfg.progress_bar and sys.stdout.isatty():
            self.progress = sinks.try_open("progress bar", sinks.ProgressBar, total_iterations, start_iteration)

    def log_step(self, iteration: int, *, loss: float, lr: float, tokens: int, seconds: float,
                 consumed_tokens: int, z_loss: float | None = None, grad_norm: float | None = None,
                 skipped: bool = False, extra: Mapping[str, float] | None = None,
                 flops_per_token: float | None = None) -> dict[str, Any] | None:
        """Record one finished iteration; returns the record when this one was logged.

        `tokens`: tokens of this iteration over all data-parallel ranks;
        `consumed_tokens`: the run's total after it (restored on resume);
        `skipped`: the NaN guard skipped this step (its loss is left out of the mean);
        `extra`: further losses (e.g. distillation's "kl loss"), averaged like the loss,
        recorded with spaces as underscores ("kl_loss");
        `flops_per_token`: this iteration's (None: the logger's), for a stage at another length.
        """
        if not self.active:
            return None
        iv = self._interval
        iv.iterations += 1
        iv.tokens += tokens
        iv.flops += tokens * (flops_per_token or self.flops_per_token or 0.0)
        iv.seconds += seconds
        if skipped:
            iv.skipped += 1
            self.skipped_total += 1
        else:
            iv.good += 1
            iv.loss += float(loss)
            if z_loss is not None:
                iv.z_loss, iv.has_z_loss = iv.z_loss + float(z_loss), True
            if grad_norm is not None:
                iv.grad_norm, iv.has_grad_norm = iv.grad_norm + float(grad_norm), True
            for key, value in (extra or {}).items():
                iv.extra[key] = iv.extra.get(key, 0.0) + float(value)
        due = iteration % self.cfg.log_interval == 0 or iteration >= self.total_iterations
        record = self._emit(iteration, lr, consumed_tokens) if due else None
        if self.progress is not None:
            post = {"loss": f"{record['loss']:.4f}"} if record and record.get("loss") is not None else None
            self.progress.advance(post)
        return record

    def _emit(self, iteration: int, lr: float, consumed_tokens: int) -> dict[str, Any]:
        iv, self._interval = self._interval, _Interval()
        memory_gib, memory_kind = memory_in_use(self.on_gpu)
        record: dict[str, Any] = {
            "kind": "train", "iteration": iteration, "total_iterations": self.total_iterations,
            "consumed_tokens": consumed_tokens, "lr": lr,
            "loss": iv.mean(iv.loss), "z_loss": iv.mean(iv.z_loss, iv.has_z_loss),
            "grad_norm": iv.mean(iv.grad_norm, iv.has_grad_norm),
            "seconds_per_iteration": iv.seconds / iv.iterations if iv.iterations else None,
            "tokens_per_s": iv.tokens / iv.seconds if iv.seconds > 0 else None,
            "memory_gib": memory_gib, "memory_kind": memory_kind,
            "skipped_iterations": iv.skipped, "skipped_total": self.skipped_total, "time": time.time(),
        }
        for key, total in iv.extra.items():
            record[key.replace(" ", "_")] = iv.mean(total)
        if self.on_gpu and iv.flops and iv.seconds > 0:
            tp = throughput(iv.tokens, iv.seconds, iv.flops / iv.tokens, self.num_gpus, self.cfg.peak_tflops_per_gpu)
            record["tflops_per_gpu"], record["mfu"] = tp.tflops_per_gpu, tp.mfu
        self._write(record, format_train_line(record), "train")
        return record

    def log_validation(self, iteration: int, losses: Mapping[str, float]) -> dict[str, Any] | None:
        """Record validation losses by data category (e.g. {"all": 2.1, "code": 1.4})."""
        if not self.active:
            return None
        if not losses:
            raise ValueError("log_validation: no losses given")
        record = {"kind": "validation", "iteration": iteration,
                  "losses": {str(k): float(v) for k, v in losses.items()}, "time": time.time()}
        parts = " | ".join(f"{name}: {value:.6E}" for name, value in record["losses"].items())
        self._write(record, f" validation at iteration {iteration:8d} | {parts}", "validation")
        return record

    def log_evaluation(self, iteration: int, results: Mapping[str, Mapping[str, float]],
                       seconds: float | None = None) -> dict[str, Any] | None:
        """Record benchmark metrics by task (e.g. {"kmmlu": {"acc": 0.41, "acc_stderr": 0.01}}),
        as scalars `eval/TASK/METRIC`; `seconds`: how long the evaluation took."""
        if not self.active:
            return None
        if not results:
            raise ValueError("log_evaluation: no results given")
        record = {"kind": "evaluation", "iteration": iteration, "seconds": seconds,
                  "results": {str(t): {str(m): float(v) for m, v in ms.items()} for t, ms in results.items()},
                  "time": time.time()}
        parts = " | ".join(f"{task} {metric}: {value:.4f}" for task, ms in record["results"].items()
                           for metric, value in ms.items() if not metric.endswith("_stderr"))
        self._write(record, f" evaluation at iteration {iteration:8d} | {parts}", "eval")
        return record

    def _write(self, record: dict[str, Any], line: str, prefix: str) -> None:
        around = self.progress.around_output() if self.progress is not None else contextlib.nullcontext()
        with around:
            logger.info(line)
        if self.jsonl is not None:
            self.jsonl.write(record)
        scalars = _scalars(record, prefix)
        for sink in (self.tensorboard, self.wandb):
            if sink is not None:
                sink.write(record["iteration"], scalars)

    def close(self) -> None:
        """Flush and close every sink; safe to call twice."""
        if self._closed or not self.active:
            self._closed = True
            return
        self._closed = True
        for sink in (self.progress, self.tensorboard, self.wandb, self.jsonl):
            if sink is not None:
                try:
                    sink.close()
                except Exception as e:  # noqa: BLE001 - close the rest even if one fails
                    logger.warning("closing %s failed: %s", type(sink).__name__, e)

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_SCALAR_SKIP = {"kind", "iteration", "total_iterations", "memory_kind", "time"}


def _scalars(record: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Flatten a record to `prefix/name` scalars for TensorBoard and wandb."""
    if record["kind"] == "validation":
        return {f"{prefix}/{name}": v for name, v in record["losses"].items()}
    if record["kind"] == "evaluation":
        return {f"{prefix}/{task}/{name}": v for task, ms in record["results"].items() for name, v in ms.items()}
    return {f"{prefix}/{k}": v for k, v in record.items()
            if k not in _SCALAR_SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_train_line(r: Mapping[str, Any]) -> str:
    """The Megatron-style one-line summary of a train record."""
    width = len(str(r["total_iterations"]))
    ms = None if r["seconds_per_iteration"] is None else 1e3 * r["seconds_per_iteration"]
    parts = [
        f" iteration {r['iteration']:>{width}d}/{r['total_iterations']}",
        f"consumed tokens: {r['consumed_tokens']}",
        f"elapsed time per iteration (ms): {_fmt(ms, '.1f')}",
        f"learning rate: {r['lr']:.6E}",
    ]
    if r.get("kl_loss") is not None:  # distillation: the loss is the KL mix; show both parts
        parts += [f"loss: {_fmt(r['loss'], '.6E')}", f"kl loss: {r['kl_loss']:.6E}",
                  f"lm loss: {_fmt(r.get('lm_loss'), '.6E')}"]
    elif r.get("dpo_loss") is not None:  # (online) DPO: the loss, and how the pairs are ranked
        parts += [f"loss: {_fmt(r['loss'], '.6E')}", f"reward margin: {r['reward_margin']:.4f}",
                  f"preference accuracy: {r['preference_accuracy']:.3f}"]
        if r.get("staleness") is not None:
            parts += [f"staleness: {r['staleness']:.1f}", f"sample reward: {r['sample_reward']:.4f}"]
    elif r.get("accuracy") is not None:  # reward model
        parts += [f"reward loss: {_fmt(r['loss'], '.6E')}", f"accuracy: {r['accuracy']:.3f}"]
    else:
        parts.append(f"lm loss: {_fmt(r['loss'], '.6E')}")
    if r.get("z_loss") is not None:
        parts.append(f"z loss: {r['z_loss']:.6E}")
    if r.get("grad_norm") is not None:
        parts.append(f"grad norm: {r['grad_norm']:.3f}")
    parts.append(f"tokens/s: {_fmt(r['tokens_per_s'], ',.0f')}")
    if "tflops_per_gpu" in r:
        parts.append(f"TFLOP/s/GPU: {r['tflops_per_gpu']:.1f} | MFU: {100 * r['mfu']:.1f}%")
    kind = "GPU max allocated" if r["memory_kind"] == "gpu_max_allocated" else "RSS"
    parts.append(f"mem ({kind}): {r['memory_gib']:.2f} GiB")
    parts.append(f"skipped (nan/inf): {r['skipped_iterations']} (total {r['skipped_total']})")
    return " | ".join(parts)
