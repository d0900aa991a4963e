"""megatron-core's indexed datasets (PREFIX.bin + PREFIX.idx), the format the trainer reads.

The only place the data tools touch megatron.core: write documents with
`IndexedDatasetBuilder`, concatenate finished datasets with `add_index`, read them with
`IndexedDataset`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

__all__ = ["IndexedDataset", "IndexedDatasetBuilder", "IndexSummary", "read_summary", "write_merged"]


@dataclass(frozen=True)
class IndexSummary:
    """What a dataset's .idx says about it."""

    num_documents: int
    num_sequences: int
    num_tokens: int
    dtype: str


def read_summary(prefix: str) -> IndexSummary:
    """Counts from PREFIX.idx (memory-mapped; the .bin is opened but not read)."""
    ds = IndexedDataset(prefix, mmap=True)
    lengths = ds.index.sequence_lengths
    return IndexSummary(
        num_documents=len(ds.document_indices) - 1,
        num_sequences=len(lengths),
        num_tokens=int(np.asarray(lengths, dtype=np.int64).sum()),
        dtype=np.dtype(ds.index.dtype).name,
    )


def write_merged(prefixes: list[str], bin_path: str, idx_path: str, dtype: np.dtype) -> None:
    """Concatenate the datasets `prefixes`, in order, into bin_path/idx_path."""
    builder = IndexedDatasetBuilder(bin_path, dtype=dtype)
    for prefix in prefixes:
        builder.add_index(prefix)
    builder.finalize(idx_path)
