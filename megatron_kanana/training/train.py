"""`kanana train CONFIG.yaml [dotted.key=value ...]`: staged pre-training on megatron-core.

    torchrun --nproc-per-node 8 -m megatron_kanana.cli train examples/pretrain/kanana_8b_stage1.yaml
    srun ... python -m megatron_kanana.cli train CONFIG.yaml          # one task per GPU (SLURM)
    kanana train CONFIG.yaml --nproc 2                                # spawns torchrun itself (CPU dev)
    kanana train CONFIG.yaml --dry-run                                # resolved config + launch command

Parse config → build → train → close. Exit status: 0 when the run finished (or
stopped at run.exit_after_steps); 75 (EX_TEMPFAIL) when a signal stopped it
after saving, so a SLURM script can requeue; 3 when training diverged; 2 for a
bad config.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from megatron_kanana.config.root import TrainConfig, load_config
from megatron_kanana.config.section import ConfigError
from megatron_kanana.log import set_log_rank
from megatron_kanana.parallel.launch_env import LaunchEnv
from megatron_kanana.training import launcher, preflight

EXIT_RESUMABLE = 75  # EX_TEMPFAIL: stopped by a signal after saving; run again to resume
STATUS_FILE = "exit_status.json"  # why the last invocation stopped, for launchers that lose exit codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config YAML")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides (values parsed as YAML)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and launch command, then exit")
    parser.add_argument("--nproc", type=int, default=None,
                        help="launch this many local processes with torchrun (when not already under a launcher)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
        cfg.check()
    except ConfigError as e:
        print(f"kanana train: config error: {e}", file=sys.stderr)
        return 2
    env = LaunchEnv.detect()  # the one read of the launcher's variables
    nproc = args.nproc or cfg.parallel.model_parallel_size
    if args.dry_run:
        from megatron_kanana.planning.cli import memory_line, plan_config

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
        print("launch: " + " ".join(launcher.launch_command(args.config, args.overrides, nproc)))
        try:  # at parallel.planned_num_gpus (else --nproc) on H100s; refuse what cannot fit
            row = plan_config(cfg, "h100", args.nproc)
        except ConfigError as e:
            print(f"kanana train: config error: {e}", file=sys.stderr)
            return 2
        print(memory_line(row, "h100"))
        return 0 if row.fits else 2
    if env.torchelastic:
        launcher.bind_descendants_to_this_process()  # no worker (or its checkpoint writer) outlives torchrun
    preflight.check(cfg)  # cheap (metadata only); in the launcher's process, before any worker starts
    if args.nproc and not env.under_launcher:
        return launcher.launch(args.config, args.overrides, args.nproc, Path(cfg.run.output_dir) / STATUS_FILE)
    return _train(cfg, env)


def _train(cfg: TrainConfig, env: LaunchEnv) -> int:
    from megatron_kanana.training.trainer import build_trainer

    from megatron_kanana.checkpointing.layout import CheckpointError
    from megatron_kanana.data.chat_template import TemplateError
    from megatron_kanana.posttrain.conversations import ConversationError
    from megatron_kanana.posttrain.sft_dataset import SFTDatasetError

    set_log_rank(env.rank)
    try:
        trainer = build_trainer(cfg, env)
    except (ConfigError, CheckpointError, SFTDatasetError, ConversationError, TemplateError) as e:
        # what the config points at (checkpoints, datasets, prompts, tokenizers) is checked when
        # the trainer is built; a mismatch there is the user's input, not a crash
        print(f"kanana train: error (rank {env.rank}): {e}", file=sys.stderr)
        return 2
    try:
        reason = trainer.train()
    finally:
        trainer.close()
    status = {"diverged": 3, "signal": EXIT_RESUMABLE}.get(reason, 0)
    if trainer.rt.rank == 0:
        (Path(cfg.run.output_dir) / STATUS_FILE).write_text(
            json.dumps({"reason": reason, "status": status, "step": trainer.step}))
    return status
