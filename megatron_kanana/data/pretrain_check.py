"""Pre-training data agrees with its tokenizer and model, checked before any process trains.

    check_pretraining_data(prefixes, tokenizer, model_vocab_size)

For each dataset prefix: PREFIX.meta.json (written by `kanana preprocess`) must name
the same tokenizer fingerprint as data.tokenizer, and its largest token id must be
below the model's vocabulary (an id past it would die as a bare IndexError in a worker).
Datasets written before the metadata existed are accepted with one warning; their ids
are scanned when the .bin is small enough to read in a moment (SCAN_LIMIT_BYTES), and
trusted otherwise. Reads metadata, not data, for datasets that have it.
"""
from __future__ import annotations

import os

import numpy as np

from megatron_kanana.data.indexed_datasets import META_SUFFIX, DatasetError, read_meta
from megatron_kanana.log import get_logger

log = get_logger(__name__)
SCAN_LIMIT_BYTES = 64 << 20


def check_pretraining_data(prefixes: list[str], tokenizer, model_vocab_size: int) -> None:
    """DatasetError naming the first dataset of another tokenizer or with ids >= model_vocab_size."""
    fingerprint = tokenizer.fingerprint
    unrecorded = []
    for prefix in dict.fromkeys(prefixes):
        meta = read_meta(prefix)
        if meta is None:
            unrecorded.append(prefix)
            largest = _scan_largest_id(prefix)
        else:
            stored = meta.get("tokenizer_fingerprint")
            if stored is not None and stored != fingerprint:
                raise DatasetError(
                    f"dataset {prefix} was tokenized with {meta.get('tokenizer')} ({meta.get('vocab_size')} pieces, "
                    f"fingerprint {stored[:12]}), not with data.tokenizer {tokenizer.path} ({tokenizer.vocab_size} "
                    f"pieces, fingerprint {fingerprint[:12]}): re-run `kanana preprocess` with data.tokenizer")
            largest = meta.get("max_token_id")
        if largest is not None and largest >= model_vocab_size:
            raise DatasetError(f"dataset {prefix} holds token id {largest}, but the model's vocabulary has "
                               f"{model_vocab_size} entries (model.vocab_size): ids must be below it")
    if unrecorded:
        log.warning(f"{len(unrecorded)} dataset(s) record no tokenizer ({unrecorded[0]}{META_SUFFIX} missing; "
                    f"written before `kanana preprocess` recorded one): their tokenizer cannot be checked")


def _scan_largest_id(prefix: str) -> int | None:
    """The largest id in PREFIX.bin when it is small enough to scan now; None otherwise."""
    path = prefix + ".bin"
    size = os.path.getsize(path)
    if size == 0 or size > SCAN_LIMIT_BYTES:
        return None
    from megatron_kanana.mcore.indexed import read_summary

    dtype = np.dtype(read_summary(prefix).dtype)
    if size % dtype.itemsize:
        raise DatasetError(f"dataset {prefix}: {path} is {size} bytes, not a whole number of {dtype.name} tokens "
                           "(truncated?)")
    return int(np.fromfile(path, dtype=dtype).max())
