"""Finding and checking finished indexed datasets (PREFIX.bin + PREFIX.idx).

The trainer calls `check_nonempty(prefix)` on every dataset before handing it to
megatron-core: a dataset with zero tokens makes GPTDataset loop forever while it
counts epochs, so it is refused here with an error naming the file.

`kanana preprocess` also writes PREFIX.meta.json: the tokenizer's fingerprint and
the largest token id, so training can refuse data of another tokenizer without
reading the tokens (data/pretrain_check.py). Datasets written before it have none.
"""
from __future__ import annotations

import glob
import json
import os

from megatron_kanana.mcore.indexed import IndexSummary, read_summary


class DatasetError(ValueError):
    """An indexed dataset is missing, incomplete or unusable."""


class EmptyDatasetError(DatasetError):
    """An indexed dataset holds no tokens."""


META_SUFFIX = ".meta.json"


def write_meta(prefix: str, tokenizer, max_token_id: int) -> None:
    """The tokenizer and id range of PREFIX (written before the .idx, so a complete dataset has it)."""
    write_meta_dict(prefix, {"format": "kanana-indexed-1", "tokenizer": tokenizer.path,
                             "tokenizer_fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
                             "max_token_id": int(max_token_id)})


def merged_meta(prefixes: list[str]) -> dict | None:
    """The metadata of the concatenation of `prefixes`: one tokenizer, the largest id of all;
    None when any input predates the metadata (the merged dataset is then a legacy one too)."""
    metas = {p: read_meta(p) for p in prefixes}
    if any(m is None for m in metas.values()):
        return None
    fingerprints = {m.get("tokenizer_fingerprint") for m in metas.values()}
    if len(fingerprints) > 1:
        listing = ", ".join(f"{p} ({str(m.get('tokenizer_fingerprint'))[:12]})" for p, m in metas.items())
        raise DatasetError(f"cannot merge datasets made with different tokenizers: {listing}")
    first = next(iter(metas.values()))
    return {**first, "max_token_id": max(int(m["max_token_id"]) for m in metas.values())}


def write_meta_dict(prefix: str, meta: dict) -> None:
    tmp = prefix + META_SUFFIX + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, prefix + META_SUFFIX)


def read_meta(prefix: str) -> dict | None:
    """PREFIX.meta.json, or None for a dataset written before it existed."""
    path = prefix + META_SUFFIX
    if not os.path.isfile(path):
        return None
    try:
        meta = json.loads(open(path, encoding="utf-8").read())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return meta


def is_complete(prefix: str) -> bool:
    """Both halves exist (the .idx is written last, so a crashed run never looks complete)."""
    return os.path.isfile(prefix + ".bin") and os.path.isfile(prefix + ".idx")


def dataset_summary(prefix: str) -> IndexSummary:
    """Document and token counts of PREFIX, or a DatasetError saying what is missing."""
    if not is_complete(prefix):
        missing = [p for p in (prefix + ".bin", prefix + ".idx") if not os.path.isfile(p)]
        raise DatasetError(f"dataset {prefix}: missing {', '.join(missing)}")
    try:
        return read_summary(prefix)
    except Exception as e:  # megatron raises bare AssertionErrors on a foreign or truncated .idx
        raise DatasetError(f"dataset {prefix}: unreadable index ({type(e).__name__}: {e})") from None


def check_nonempty(prefix: str) -> IndexSummary:
    """The dataset's summary; EmptyDatasetError if it holds zero tokens."""
    summary = dataset_summary(prefix)
    if summary.num_tokens == 0:
        raise EmptyDatasetError(
            f"dataset {prefix} holds 0 tokens ({summary.num_documents} documents); megatron-core's GPTDataset "
            "would loop forever on it. Re-run `kanana preprocess` on non-empty input or drop it from the mixture."
        )
    return summary


def expand_prefixes(pattern: str) -> list[str]:
    """Dataset prefixes named by a prefix or a glob (matched against PREFIX.idx files), sorted."""
    if not glob.has_magic(pattern):
        return [pattern]
    found = sorted(p[: -len(".idx")] for p in glob.glob(pattern if pattern.endswith(".idx") else pattern + ".idx"))
    if not found:
        found = sorted(p[: -len(".idx")] for p in glob.glob(pattern) if p.endswith(".idx"))
    return found
