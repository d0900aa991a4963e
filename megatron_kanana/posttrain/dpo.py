"""The `dpo` config section and what the trainer needs from it: plan, datasets, batches, reference.

    dpo:
      data_prefixes: [data/prefs]      # written by `kanana pref-preprocess`
      valid_prefixes: [data/prefs_valid]
      seq_length: 2048
      beta: 0.1
      reference: null                  # frozen reference checkpoint; null = checkpoint.load

Offline DPO (Rafailov et al., 2023) on preference pairs. Batch sizes count *rows*
(sequences), two per pair, as in every pair-trained mode (posttrain/preference.py):
data.global_batch_size = 64 trains on 32 pairs a step.

The reference is a frozen copy of a checkpoint (usually the one the policy starts
from) run beside the policy at the same TP/PP (mcore/distill.py); it must have been
trained with the policy's tokenizer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class DPOConfig(Section):
    data_prefixes: list[str] = field(metadata={
        "path": True, "help": "Preference dataset prefixes (from `kanana pref-preprocess`)."})
    valid_prefixes: Optional[list[str]] = field(
        default=None, metadata={"path": True, "help": "Held-out preference datasets (loss, preference accuracy); None = none."})
    seq_length: int = field(default=2048, metadata={"help": "Positions per sequence; must equal data.seq_length."})
    beta: float = field(default=0.1, metadata={"help": "β: strength of the implicit KL tie to the reference."})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "ε of conservative DPO: the share of preference labels assumed flipped (0 = plain DPO)."})
    sft_loss_weight: float = field(default=0.0, metadata={
        "help": "λ: weight of the mean NLL of the chosen responses added to the DPO loss."})
    reference: Optional[str] = field(default=None, metadata={
        "path": True, "help": "Frozen reference checkpoint (checkpoint, iter_* or run dir); None = checkpoint.load."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training pairs (sets the step count)."})
    train_steps: Optional[int] = field(default=None, metadata={"help": "Steps to train; overrides epochs."})

    def validate(self) -> None:
        from megatron_kanana.posttrain.sft import check_dataset_stage

        check_dataset_stage(self, "preference")
        check_objective(self)

    def reference_checkpoint(self, load: Optional[str]) -> Path:
        """The reference's checkpoint directory: `reference`, else `checkpoint.load` (follows `latest`)."""
        return reference_directory("dpo", self.reference, load)


def dpo_steps(cfg: DPOConfig, global_batch_size: int) -> int:
    """Training steps: `train_steps`, or enough for `epochs` passes over the pairs."""
    from megatron_kanana.posttrain.preference import open_pair_datasets, pair_steps

    pairs = 0 if cfg.train_steps is not None else len(open_pair_datasets("dpo", cfg.data_prefixes, cfg.seq_length))
    return pair_steps(cfg.train_steps, cfg.epochs, pairs, global_batch_size)


def dpo_plan(cfg: DPOConfig, schedule, global_batch_size: int):
    """A one-stage StagePlan named "dpo" (the trainer's loop, LR schedule and resume work unchanged)."""
    from megatron_kanana.training.stages import one_stage_plan

    return one_stage_plan("dpo", dpo_steps(cfg, global_batch_size), cfg.data_prefixes, schedule)


def check_objective(section) -> None:
    """The DPO loss's fields (beta, label_smoothing, sft_loss_weight), offline and online."""
    if not section.beta > 0:
        raise ConfigError(f"beta must be > 0, got {section.beta}")
    if not 0 <= section.label_smoothing < 0.5:
        raise ConfigError(f"label_smoothing must be in [0, 0.5), got {section.label_smoothing}")
    if section.sft_loss_weight < 0:
        raise ConfigError(f"sft_loss_weight must be >= 0, got {section.sft_loss_weight}")


def reference_directory(mode: str, reference: Optional[str], load: Optional[str]) -> Path:
    """`<mode>.reference`, else `checkpoint.load` (follows `latest`): the frozen reference's checkpoint."""
    from megatron_kanana.checkpointing.layout import CheckpointError, resolve

    source = reference or load
    if not source:
        raise ConfigError(f"{mode}.reference: no reference model; set {mode}.reference or checkpoint.load "
                          "(DPO starts from a trained checkpoint and stays near it)")
    try:
        return resolve(Path(source))
    except CheckpointError as e:
        raise ConfigError(f"{mode}.reference: {e}") from None


def build_dpo_datasets(cfg: DPOConfig, seed: int, num_train_pairs: int,
                       tokenizer_fingerprint: Optional[str]) -> tuple:
    """(train pairs, {"dpo": held-out pairs}) in the shape of the trainer's per-stage datasets."""
    from megatron_kanana.posttrain.preference import open_pair_datasets
    from megatron_kanana.posttrain.sft import EpochShuffled

    train = open_pair_datasets("dpo", cfg.data_prefixes, cfg.seq_length, tokenizer_fingerprint)
    if len(train) == 0:
        raise ConfigError(f"dpo.data_prefixes: {cfg.data_prefixes} hold no preference pairs")
    valid = ({"dpo": open_pair_datasets("dpo", cfg.valid_prefixes, cfg.seq_length, tokenizer_fingerprint)}
             if cfg.valid_prefixes else {})
    return EpochShuffled(train, num_train_pairs, seed), valid


def check_reference_tokenizer(reference_meta: dict, reference_dir: Path, tokenizer: str | Path) -> None:
    """The reference was trained with the policy's tokenizer (same fingerprint: file contents,
    eod and pad), wherever each copy lives. Checkpoints record the tokenizer's path."""
    from megatron_kanana.checkpointing.layout import CheckpointError, recorded_tokenizer
    from megatron_kanana.data.tokenizer import load_tokenizer

    if not reference_meta.get("tokenizer"):
        raise ConfigError(f"dpo.reference: {reference_dir} records no tokenizer, so it cannot be checked against "
                          f"data.tokenizer ({tokenizer})")
    try:  # absolute, or relative to the checkpoint (converted ones carry a copy); never the cwd
        recorded = recorded_tokenizer(reference_meta, reference_dir)
    except CheckpointError as e:
        raise ConfigError(f"dpo.reference: {e}") from None
    try:
        same = load_tokenizer(recorded).fingerprint == load_tokenizer(tokenizer).fingerprint
    except (OSError, ValueError) as e:
        raise ConfigError(f"dpo.reference: cannot compare the reference's tokenizer {recorded} with "
                          f"data.tokenizer {tokenizer}: {e}") from None
    if not same:
        raise ConfigError(f"dpo.reference: {reference_dir} was trained with tokenizer {recorded}, which differs "
                          f"from data.tokenizer {tokenizer}; DPO compares log-probs of the same token ids")
