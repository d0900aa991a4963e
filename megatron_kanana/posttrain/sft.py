"""The `sft` config section and what the trainer needs from it: a one-stage plan and datasets.

    sft:
      data_prefixes: [data/chat]        # written by `kanana sft-preprocess`
      seq_length: 2048
      pack: true
      epochs: 3

Fields describing how the data was built (seq_length, pack, template, on_overlong) are
checked against each dataset's P_sft.json, so a config cannot silently train on data
prepared differently. Epochs are reshuffled with `run.seed`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Literal, Optional

import numpy as np
import torch

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.data.chat_template import TEMPLATES


def check_dataset_stage(section, kind: str) -> None:
    """The fields every dataset-driven post-training section has: data_prefixes, seq_length,
    epochs, train_steps (SFT, reward model, DPO)."""
    if not section.data_prefixes:
        raise ConfigError(f"data_prefixes: at least one {kind} dataset prefix is needed")
    if section.seq_length < 2:
        raise ConfigError(f"seq_length must be >= 2, got {section.seq_length}")
    if section.epochs <= 0:
        raise ConfigError(f"epochs must be > 0, got {section.epochs}")
    if section.train_steps is not None and section.train_steps < 1:
        raise ConfigError(f"train_steps must be >= 1, got {section.train_steps}")


@dataclasses.dataclass(frozen=True)
class SFTConfig(Section):
    data_prefixes: list[str] = field(metadata={
        "path": True, "help": "SFT dataset prefixes (from `kanana sft-preprocess`)."})
    valid_prefixes: Optional[list[str]] = field(
        default=None, metadata={"path": True, "help": "Validation SFT dataset prefixes; None = no validation."})
    seq_length: int = field(default=2048, metadata={"help": "Positions per sample; must equal data.seq_length."})
    pack: bool = field(default=False, metadata={"help": "Several conversations per sample (block-diagonal attention)."})
    template: str = field(default="auto", metadata={"help": "Chat template: auto (llama3 if the tokenizer has "
                                                            "its specials, else plain), llama3 or plain."})
    on_overlong: Literal["drop", "truncate"] = field(
        default="drop", metadata={"help": "A conversation longer than seq_length + 1 tokens: drop it or cut it."})
    strict: bool = field(default=False, metadata={"help": "Preprocessing: a bad conversation is an error, not a skip."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training samples (sets the step count)."})
    train_steps: Optional[int] = field(default=None, metadata={"help": "Steps to train; overrides epochs."})

    def validate(self) -> None:
        check_dataset_stage(self, "SFT")
        if self.template not in ("auto", *TEMPLATES):
            raise ConfigError(f"template: {self.template!r} is not one of {['auto', *TEMPLATES]}")

    def check_dataset(self, prefix: str, meta: dict) -> None:
        """The dataset at `prefix` was built the way this section says."""
        for key in ("seq_length", "pack", "on_overlong"):
            stored = meta["packed"] if key == "pack" else meta[key]
            if stored != getattr(self, key):
                raise ConfigError(f"sft.{key} is {getattr(self, key)!r} but {prefix} was built with {stored!r}")
        if self.template != "auto" and meta["template"] != self.template:
            raise ConfigError(f"sft.template is {self.template!r} but {prefix} was built with {meta['template']!r}")


class ConcatDataset(torch.utils.data.Dataset):
    def __init__(self, datasets: list):
        self.datasets = datasets
        self.offsets = np.cumsum([0] + [len(d) for d in datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[which][index - int(self.offsets[which])]


class EpochShuffled(torch.utils.data.Dataset):
    """Index i -> sample perm_e[i mod n] of epoch e = i // n; each epoch its own permutation,
    a pure function of (seed, epoch), so a resumed run reads the same samples."""

    def __init__(self, dataset, num_samples: int, seed: int):
        if len(dataset) == 0:
            raise ConfigError("sft: the training datasets hold no samples")
        self.dataset, self.num_samples, self.seed = dataset, num_samples, seed
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        epoch, i = divmod(index, len(self.dataset))
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))}
        return self.dataset[int(self._perms[epoch][i])]


def open_datasets(cfg: SFTConfig, prefixes: list[str], tokenizer_fingerprint: Optional[str] = None) -> ConcatDataset:
    from megatron_kanana.posttrain.sft_dataset import SFTDataset, check_tokenizer

    datasets = []
    for prefix in prefixes:
        ds = SFTDataset(prefix, cfg.seq_length)
        cfg.check_dataset(prefix, ds.meta)
        check_tokenizer("sft", prefix, ds.meta, tokenizer_fingerprint)
        datasets.append(ds)
    return ConcatDataset(datasets)


def sft_steps(cfg: SFTConfig, global_batch_size: int) -> int:
    """Training steps: `train_steps`, or enough for `epochs` passes over the samples."""
    if cfg.train_steps is not None:
        return cfg.train_steps
    return max(1, math.ceil(cfg.epochs * len(open_datasets(cfg, cfg.data_prefixes)) / global_batch_size))


def sft_plan(cfg: SFTConfig, schedule, global_batch_size: int):
    """A one-stage StagePlan named "sft" (the trainer's loop, LR schedule and resume work unchanged)."""
    from megatron_kanana.training.stages import one_stage_plan

    return one_stage_plan("sft", sft_steps(cfg, global_batch_size), cfg.data_prefixes, schedule)


def build_sft_datasets(cfg: SFTConfig, seed: int, num_train_samples: int,
                       tokenizer_fingerprint: Optional[str] = None) -> tuple:
    """(train, {"sft": valid}) in the shape of the trainer's per-stage datasets."""
    train = EpochShuffled(open_datasets(cfg, cfg.data_prefixes, tokenizer_fingerprint), num_train_samples, seed)
    valid = {"sft": open_datasets(cfg, cfg.valid_prefixes, tokenizer_fingerprint)} if cfg.valid_prefixes else {}
    return train, valid
