"""The `reward` config section and what the trainer needs for a Bradley–Terry reward model.

    reward:
      data_prefixes: [data/pref_train]   # written by `kanana pref-preprocess`
      valid_prefixes: [data/pref_valid]  # held-out pairs: validation reports pairwise accuracy
      seq_length: 2048
      epochs: 1
    checkpoint: {load: runs/sft, load_optimizer: false}   # initialise from an SFT (or any LM) checkpoint

data.micro_batch_size and data.global_batch_size count *rows*, two per pair, as in every
pair-trained mode (posttrain/preference.py), so both sides of a pair are always scored together. The
model is the policy's architecture with a scalar head (mcore/reward_head.py); its checkpoint
meta says "model_kind": "reward" and records the tokenizer's fingerprint, which
`check_reward_checkpoint` compares with the policy's before scoring with it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.posttrain.sft import EpochShuffled, check_dataset_stage

MODEL_KIND = "reward"


@dataclasses.dataclass(frozen=True)
class RewardConfig(Section):
    data_prefixes: list[str] = field(metadata={
        "path": True, "help": "Preference dataset prefixes (from `kanana pref-preprocess`)."})
    valid_prefixes: Optional[list[str]] = field(
        default=None, metadata={"path": True, "help": "Held-out preference prefixes for pairwise accuracy; None = no validation."})
    seq_length: int = field(default=2048, metadata={"help": "Positions per side of a pair; must equal data.seq_length."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training pairs (sets the step count)."})
    train_steps: Optional[int] = field(default=None, metadata={"help": "Steps to train; overrides epochs."})

    def validate(self) -> None:
        check_dataset_stage(self, "preference")


def reward_steps(cfg: RewardConfig, global_batch_size: int) -> int:
    from megatron_kanana.posttrain.preference import open_pair_datasets, pair_steps

    pairs = 0 if cfg.train_steps is not None else len(open_pair_datasets("reward", cfg.data_prefixes, cfg.seq_length))
    return pair_steps(cfg.train_steps, cfg.epochs, pairs, global_batch_size)


def reward_plan(cfg: RewardConfig, schedule, global_batch_size: int):
    """A one-stage StagePlan named "reward" (the trainer's loop, LR schedule and resume work unchanged)."""
    from megatron_kanana.training.stages import one_stage_plan

    return one_stage_plan("reward", reward_steps(cfg, global_batch_size), cfg.data_prefixes, schedule)


def build_reward_datasets(cfg: RewardConfig, seed: int, num_train_pairs: int, tokenizer_fingerprint: str) -> tuple:
    """(train, {"reward": valid}) in the shape of the trainer's per-stage datasets; items are pairs."""
    from megatron_kanana.posttrain.preference import open_pair_datasets

    train = EpochShuffled(open_pair_datasets("reward", cfg.data_prefixes, cfg.seq_length, tokenizer_fingerprint),
                          num_train_pairs, seed)
    valid = ({"reward": open_pair_datasets("reward", cfg.valid_prefixes, cfg.seq_length, tokenizer_fingerprint)}
             if cfg.valid_prefixes else {})
    return train, valid


def check_reward_checkpoint(directory: str | Path, policy_tokenizer_fingerprint: str) -> dict:
    """The meta of a reward-model checkpoint, after checking it is one and shares the policy's tokenizer."""
    from megatron_kanana.checkpointing.layout import read_meta, resolve

    resolved = resolve(Path(directory))
    meta = read_meta(resolved)
    if meta.get("model_kind") != MODEL_KIND:
        raise ConfigError(f"{resolved} is not a reward-model checkpoint (model_kind {meta.get('model_kind')!r})")
    recorded = meta.get("tokenizer_fingerprint")
    if recorded != policy_tokenizer_fingerprint:
        raise ConfigError(f"{resolved}: the reward model was trained with tokenizer {meta.get('tokenizer')} "
                          f"(fingerprint {str(recorded)[:12]}), which differs from the policy's (fingerprint "
                          f"{policy_tokenizer_fingerprint[:12]}); its scores of the policy's tokens would be meaningless")
    return meta
