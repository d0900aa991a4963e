"""megatron-core blended GPT datasets from (prefix, weight) lists.

    train, valid = build_gpt_datasets(blend, seq_length=512, seed=1234, tokenizer=tok,
                                      num_train_samples=N, num_valid_samples=M,
                                      split="98,2,0", cache_dir=run_dir / "data_cache")

Sample i of a dataset is a fixed function of (blend, split, seed, i), so a
run's data position is just the number of samples consumed: resume is exact.
Every prefix is checked for tokens first: megatron's GPTDataset loops forever
on a dataset (or split) with zero tokens.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from megatron_kanana.mcore.indexed import read_summary


class DatasetError(ValueError):
    """A dataset prefix is missing, empty, or cannot serve the requested split."""


class _TokenizerView:
    """What GPTDatasetConfig needs from a tokenizer: eod, pad and an identity for the cache key."""

    def __init__(self, tokenizer):
        self.eod = int(tokenizer.eod)
        self.vocab_size = int(tokenizer.vocab_size)
        self.pad = int(tokenizer.pad)
        self.unique_identifiers = {"class": type(tokenizer).__name__,
                                   "vocab_size": int(tokenizer.vocab_size), "eod": self.eod, "pad": self.pad}


def count_tokens(prefix: str) -> tuple[int, int]:
    """(documents, tokens) of an indexed dataset; a clear error when it is missing or empty."""
    if not (Path(prefix + ".bin").exists() and Path(prefix + ".idx").exists()):
        raise DatasetError(f"dataset {prefix!r}: {prefix}.bin/.idx not found")
    summary = read_summary(prefix)
    if summary.num_tokens == 0:
        raise DatasetError(f"dataset {prefix!r} has zero tokens (megatron's GPTDataset would loop forever on it)")
    return summary.num_documents, summary.num_tokens  # megatron splits train/valid by documents


def _split_has_documents(num_docs: int, split: Sequence[float], which: int) -> bool:
    # megatron rounds each split's share of documents; a tiny dataset can get none.
    total = sum(split)
    bounds = np.cumsum([0.0] + [s / total for s in split])
    start, end = (int(round(b * num_docs)) for b in bounds[which:which + 2])
    return end > start


def build_gpt_datasets(blend: Sequence[tuple[str, float]], *, seq_length: int, seed: int, tokenizer,
                       num_train_samples: int, num_valid_samples: int, split: Sequence[float],
                       cache_dir: Optional[Path] = None):
    """(train, valid) megatron datasets over `blend`; valid is None when num_valid_samples == 0."""
    if not blend:
        raise DatasetError("empty blend: no datasets given")
    for prefix, _ in blend:
        docs, _ = count_tokens(prefix)
        for which, name, wanted in ((0, "train", num_train_samples), (1, "valid", num_valid_samples)):
            if wanted and not _split_has_documents(docs, split, which):
                raise DatasetError(f"dataset {prefix!r} has {docs} documents: too few for a {name} share "
                                   f"of split {list(split)}")
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=([p for p, _ in blend], [float(w) for _, w in blend]),
        split=",".join(str(s) for s in split),
        path_to_cache=str(cache_dir) if cache_dir else None,
        tokenizer=_TokenizerView(tokenizer),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,  # causal attention is implicit in SDPA / TE
        mid_level_dataset_surplus=0.05,
    )
    # megatron refuses a None size next to a weighted blend; 0 builds nothing for that split
    sizes = [max(num_train_samples, 1), num_valid_samples, 0]
    # Every rank reads data (simple, and cheap at these index sizes); megatron builds the
    # index on rank 0 first and the others load it from the cache after a barrier.
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config)
    train, valid, _ = builder.build()
    return train, (valid if num_valid_samples else None)
