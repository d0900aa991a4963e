"""`kanana prune-score CONFIG`: activation importance of channels, heads, neurons and layers.

    kanana prune-score examples/prune/score_8b.yaml --batches 64 --output scores/8b.safetensors
    torchrun --nproc-per-node 8 -m megatron_kanana.cli prune-score CONFIG --batches 64 --output F
    kanana prune-score CONFIG --nproc 2 --batches 4 --output F parallel.tensor_model_parallel_size=2

CONFIG is a training config: the model, its parallel layout, the data mixture
(the first selected stage, or --stage, gives the calibration batches; Kanana
uses the high-quality stage-2 data) and `checkpoint.load`, the model to score.
The model runs forward only, at any TP/PP/VPP/DP, through megatron's schedule;
hooks (mcore/activations.py) collect statistics; rank 0 writes one scores file
(surgery/scores_file.py). Defaults are Kanana's rules: L2 over the batch, mean
over the sequence, sum over layers, SwiGLU neurons by act(gate)·up.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

from megatron_kanana.checkpointing import layout
from megatron_kanana.config.root import TrainConfig, load_config
from megatron_kanana.config.section import ConfigError
from megatron_kanana.parallel.launch_env import LaunchEnv
from megatron_kanana.log import get_logger
from megatron_kanana.surgery import importance as imp
from megatron_kanana.surgery.scores_file import write_scores

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config YAML (model, parallel, data, checkpoint.load)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides (values parsed as YAML)")
    parser.add_argument("--batches", type=int, required=True, help="calibration batches of data.global_batch_size samples")
    parser.add_argument("--output", type=Path, required=True, help="scores file to write (.safetensors)")
    parser.add_argument("--stage", default=None, help="mixture stage to draw batches from (default: the first selected)")
    parser.add_argument("--batch-aggregation", choices=imp.BATCH_RULES, default="l2", help="over samples (Kanana: l2)")
    parser.add_argument("--sequence-aggregation", choices=imp.SEQUENCE_RULES, default="mean",
                        help="over positions (Kanana: mean)")
    parser.add_argument("--layer-aggregation", choices=imp.LAYER_RULES, default="sum",
                        help="heads/neurons: one ranking summed over layers (Kanana) or one per layer")
    parser.add_argument("--ffn-state", choices=imp.FFN_STATES, default="intermediate",
                        help="FFN neurons by act(gate)*up (Kanana) or the mean of |gate| and |up|")
    parser.add_argument("--nproc", type=int, default=None, help="launch this many local processes with torchrun")


def aggregation_from(args: argparse.Namespace) -> imp.Aggregation:
    return imp.Aggregation(batch=args.batch_aggregation, sequence=args.sequence_aggregation,
                           layers=args.layer_aggregation, ffn_state=args.ffn_state)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
        cfg.check()
        _check_request(cfg, args)
    except (ConfigError, layout.CheckpointError) as e:
        print(f"kanana prune-score: error: {e}", file=sys.stderr)
        return 2
    if args.nproc and not LaunchEnv.detect().under_launcher:
        return subprocess.call(_launch_command(args))
    try:
        score(cfg, aggregation_from(args), args.batches, args.output, stage=args.stage)
    except (ConfigError, layout.CheckpointError) as e:
        print(f"kanana prune-score: error: {e}", file=sys.stderr)
        return 2
    return 0


def _check_request(cfg: TrainConfig, args: argparse.Namespace) -> None:
    if args.batches < 1:
        raise ConfigError(f"--batches must be >= 1, got {args.batches}")
    if not cfg.checkpoint.load:
        raise ConfigError("checkpoint.load is not set: name the checkpoint to score")
    check_checkpoint_model(layout.resolve(Path(cfg.checkpoint.load)), cfg)
    if args.output.exists():
        raise ConfigError(f"{args.output} exists; choose a new --output")


def _launch_command(args: argparse.Namespace) -> list[str]:
    flags = ["--batches", str(args.batches), "--output", str(args.output),
             "--batch-aggregation", args.batch_aggregation, "--sequence-aggregation", args.sequence_aggregation,
             "--layer-aggregation", args.layer_aggregation, "--ffn-state", args.ffn_state]
    if args.stage:
        flags += ["--stage", args.stage]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc}", "--max-restarts=0",
            "-m", "megatron_kanana.cli", "prune-score", args.config, *args.overrides, *flags]


def check_checkpoint_model(directory: Path, cfg: TrainConfig) -> dict:
    meta = layout.read_meta(directory)
    saved, model = meta.get("model") or {}, cfg.model.to_dict()
    diff = sorted(k for k in set(saved) | set(model) if saved.get(k) != model.get(k))
    if diff:
        raise layout.CheckpointError(f"{directory} holds a different model than the config: " + ", ".join(
            f"{k} {saved.get(k)} (checkpoint) vs {model.get(k)} (config)" for k in diff))
    return meta


def calibration_batches(cfg: TrainConfig, num_batches: int, stage: str | None, dp_rank: int, dp_size: int,
                        tokenizer, cache_dir: Path) -> list[list[dict]]:
    """This DP rank's micro-batches of `num_batches` global batches from the start of a stage."""
    from megatron_kanana.mcore.datasets import build_gpt_datasets
    from megatron_kanana.training.data import micro_batches
    from megatron_kanana.training.stages import plan_stages

    plan = plan_stages(cfg.data, cfg.schedule, cfg.model)  # calibrates at data.seq_length, the base model
    names = [s.name for s in plan.stages]
    if stage is not None and stage not in names:
        raise ConfigError(f"--stage {stage!r} is not a stage of {cfg.data.mixture} (stages: {', '.join(names)})")
    chosen = plan.stages[names.index(stage) if stage else plan.start_index]
    cfg.data.accumulation_steps(dp_size)  # global batch divisible over DP ranks × micro-batch
    train, _ = build_gpt_datasets(chosen.blend, seq_length=cfg.data.seq_length, seed=cfg.run.seed,
                                  tokenizer=tokenizer, num_train_samples=num_batches * cfg.data.global_batch_size,
                                  num_valid_samples=0, split=cfg.data.split, cache_dir=cache_dir)
    return [micro_batches(train, step, cfg.data, dp_rank, dp_size) for step in range(num_batches)]


def _forward_step(batch_iter, model):
    batch = next(batch_iter)
    device = next(model.parameters()).device
    output = model(batch["tokens"].to(device), batch["position_ids"].to(device), None)
    return output, lambda out: (out.sum() * 0, {})  # nothing to learn: the hooks collect everything


def score(cfg: TrainConfig, aggregation: imp.Aggregation, num_batches: int, output: Path,
          stage: str | None = None, keep_runtime: bool = False) -> dict:
    """Score the checkpoint at cfg's layout; rank 0 writes `output`. Returns the scores on every rank.
    `keep_runtime` leaves torch.distributed up (a caller that scores several layouts in turn)."""
    import torch

    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.mcore import checkpoint as mcore_ckpt, model as mcore_model, runtime
    from megatron_kanana.mcore.activations import ActivationRecorder

    os.environ.setdefault("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    directory = layout.resolve(Path(cfg.checkpoint.load))
    meta = check_checkpoint_model(directory, cfg)
    # forward-only: sequence parallelism would only split the statistics across TP ranks
    parallel = cfg.parallel.replace(sequence_parallel=False)
    rt = runtime.initialize(parallel, cfg.model, seed=cfg.run.seed)
    try:
        tokenizer = load_tokenizer(cfg.data.tokenizer)
        batches = calibration_batches(cfg, num_batches, stage, rt.data_rank, rt.layout.data, tokenizer,
                                      Path(cfg.run.output_dir) / "data_cache")
        tconfig = mcore_model.transformer_config(cfg.model, parallel, rt.device, bf16=cfg.optim.bf16)
        chunks = mcore_model.build_model(cfg.model, tconfig, max_sequence_length=cfg.data.seq_length)
        mcore_ckpt.load_model(chunks, directory, strict=True)
        for chunk in chunks:
            chunk.eval()
        recorder = ActivationRecorder(chunks, cfg.model, aggregation)
        start = time.perf_counter()
        with torch.no_grad():
            for i, micro in enumerate(batches):
                _forward_batch(chunks, micro, cfg)
                log.info("scored batch %d/%d", i + 1, num_batches)
        stats = recorder.reduce()
        recorder.remove()
        seconds = time.perf_counter() - start
        scores = imp.scores_from_statistics(stats, aggregation)
        if rt.rank == 0:
            header = {"model": cfg.model.to_dict(), "aggregation": dataclasses.asdict(aggregation),
                      "samples": int(stats["samples"].item()), "tokens": int(stats["samples"].item()) * cfg.data.seq_length,
                      "batches": num_batches, "stage": stage, "checkpoint": str(directory),
                      "iteration": meta.get("iteration", meta.get("train_state", {}).get("step")),
                      "layout": {"tp": rt.layout.tensor, "pp": rt.layout.pipeline, "dp": rt.layout.data,
                                 "vpp": rt.layout.virtual_pipeline}, "seconds": round(seconds, 3)}
            write_scores(output, scores, header)
            log.info("wrote %s (%d samples, %.1f s)", output, header["samples"], seconds)
        return scores
    finally:
        runtime.reset_model_parallel() if keep_runtime else runtime.shutdown()


def _forward_batch(chunks, micro: list[dict], cfg: TrainConfig) -> None:
    from megatron_kanana.mcore import step as mcore_step

    mcore_step.run_schedule(chunks, _forward_step, micro, cfg.data.micro_batch_size, cfg.data.seq_length,
                            forward_only=True)
