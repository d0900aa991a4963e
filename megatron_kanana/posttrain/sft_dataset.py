"""The SFT dataset on disk (two indexed datasets and a small JSON) and its reader.

Format, for prefix P:
- P_tokens.bin/.idx: a megatron-core indexed dataset of token ids. Each *sequence* is one
  rendered conversation; each *document* is one training sample, i.e. one conversation, or
  with packing the conversations packed together.
- P_mask.bin/.idx: the same sequence lengths and document boundaries, uint8: 1 where the
  token is trained on (assistant content and its end-of-turn).
- P_sft.json: seq_length, packed, template, pad id, tokenizer and the preprocessing report;
  written last, so a dataset without it is incomplete.

A conversation of L tokens takes L - 1 positions: labels are shifted *within* each
conversation, so no token ever predicts the next conversation's first token.

    ds = SFTDataset("out/chat", seq_length=2048)
    ds[0] -> {tokens, labels, loss_mask, position_ids[, segment_ids when packed]}  # each [seq_length]
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.mcore.indexed import IndexedDataset, IndexedDatasetBuilder

FORMAT = "kanana-sft-1"
# The preference data (preference.py) is stored the same way under its own metadata file and
# format, so an SFT run can never pick up a preference dataset (and train on rejected answers).
FORMATS = {"sft": FORMAT, "pref": "kanana-pref-1"}


class SFTDatasetError(ValueError):
    """An SFT dataset is missing, incomplete, inconsistent, or built for longer sequences."""


def paths(prefix: str, kind: str = "sft") -> dict[str, str]:
    return {"tokens": f"{prefix}_tokens", "mask": f"{prefix}_mask", "meta": f"{prefix}_{kind}.json"}


class SFTWriter:
    """Writes samples into a temporary directory; `finish` renames them into place, metadata last
    (with the tokenizer's path, fingerprint, eod, pad and vocabulary size, so a reader can check
    it was built with its own tokenizer). As a context manager it removes the temporary directory
    when the body raises: nothing half-written stays behind.

        with SFTWriter(prefix, tokenizer) as writer:
            writer.add_sample([(ids, mask)]); ...; writer.finish({"seq_length": ...})
    """

    def __init__(self, prefix: str, tokenizer, kind: str = "sft"):
        self.prefix, self.kind = prefix, kind
        token_dtype = np.dtype(tokenizer.index_dtype_name()).type
        self.tokenizer_meta = {"tokenizer": tokenizer.path, "tokenizer_fingerprint": tokenizer.fingerprint,
                               "pad": tokenizer.pad, "eod": tokenizer.eod, "vocab_size": tokenizer.vocab_size}
        self.tmp = Path(f"{prefix}.tmp-{kind}")
        self.tmp.mkdir(parents=True, exist_ok=True)
        name = Path(prefix).name
        self._tmp_prefix = {k: str(self.tmp / f"{name}_{k}") for k in ("tokens", "mask")}
        self._tokens = IndexedDatasetBuilder(self._tmp_prefix["tokens"] + ".bin", dtype=token_dtype)
        self._mask = IndexedDatasetBuilder(self._tmp_prefix["mask"] + ".bin", dtype=np.uint8)
        self.samples = 0
        self.tokens = 0

    def __enter__(self) -> "SFTWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def add_sample(self, conversations: list[tuple[list[int], list[int]]]) -> None:
        """One training sample made of one or more (ids, mask) conversations."""
        for ids, mask in conversations:
            self._tokens.add_item(torch.tensor(ids, dtype=torch.int64))
            self._mask.add_item(torch.tensor(mask, dtype=torch.uint8))
            self.tokens += len(ids)
        self._tokens.end_document()
        self._mask.end_document()
        self.samples += 1

    def finish(self, meta: dict) -> None:
        final = paths(self.prefix, self.kind)
        for key in ("tokens", "mask"):
            builder = self._tokens if key == "tokens" else self._mask
            builder.finalize(self._tmp_prefix[key] + ".idx")
        for key in ("tokens", "mask"):  # .bin first, .idx after: an .idx means its .bin is whole
            os.replace(self._tmp_prefix[key] + ".bin", final[key] + ".bin")
        for key in ("tokens", "mask"):
            os.replace(self._tmp_prefix[key] + ".idx", final[key] + ".idx")
        tmp_meta = self.tmp / "meta.json"
        tmp_meta.write_text(json.dumps({"format": FORMATS[self.kind], **self.tokenizer_meta, **meta}, indent=1,
                                       ensure_ascii=False))
        os.replace(tmp_meta, final["meta"])
        self.tmp.rmdir()


def check_tokenizer(mode: str, prefix: str, meta: dict, fingerprint) -> None:
    """The dataset at `prefix` was tokenized with the tokenizer whose fingerprint is given
    (None: nothing to check against; a dataset that records none predates fingerprints)."""
    stored = meta.get("tokenizer_fingerprint")
    if fingerprint is not None and stored is not None and stored != fingerprint:
        raise ConfigError(f"{mode}: {prefix} was tokenized with {meta.get('tokenizer')} (fingerprint "
                              f"{stored[:12]}), not with data.tokenizer (fingerprint {fingerprint[:12]})")


def read_meta(prefix: str, kind: str = "sft") -> dict:
    meta_path = paths(prefix, kind)["meta"]
    if not os.path.isfile(meta_path):
        raise SFTDatasetError(f"{prefix}: no {meta_path}; not an {kind} dataset, or its preprocessing did not finish")
    meta = json.loads(Path(meta_path).read_text())
    if meta.get("format") != FORMATS[kind]:
        raise SFTDatasetError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMATS[kind]!r}")
    return meta


class SFTDataset(torch.utils.data.Dataset):
    """Samples of an SFT dataset, each padded to `seq_length` (at least the length it was built for)."""

    def __init__(self, prefix: str, seq_length: int, kind: str = "sft"):
        self.meta = read_meta(prefix, kind)
        if seq_length < self.meta["seq_length"]:
            raise SFTDatasetError(f"{prefix}: built for seq_length {self.meta['seq_length']}, "
                                  f"cannot read it at {seq_length}")
        self.prefix, self.seq_length = prefix, seq_length
        self.packed, self.pad = bool(self.meta["packed"]), int(self.meta["pad"])
        self._tokens = IndexedDataset(paths(prefix, kind)["tokens"])
        self._mask = IndexedDataset(paths(prefix, kind)["mask"])
        if (not np.array_equal(self._tokens.sequence_lengths, self._mask.sequence_lengths)
                or not np.array_equal(self._tokens.document_indices, self._mask.document_indices)):
            raise SFTDatasetError(f"{prefix}: _tokens and _mask have different sequence or document boundaries")
        self._docs = self._tokens.document_indices

    def __len__(self) -> int:
        return len(self._docs) - 1

    def conversations(self, index: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (ids, mask) conversations of sample `index`, as stored."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        lo, hi = int(self._docs[index]), int(self._docs[index + 1])
        return list(zip(self._tokens[lo:hi], self._mask[lo:hi]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.seq_length
        tokens = np.full(s, self.pad, dtype=np.int64)
        labels = np.full(s, self.pad, dtype=np.int64)
        loss_mask = np.zeros(s, dtype=np.float32)
        position_ids = np.arange(s, dtype=np.int64)
        segment_ids = np.zeros(s, dtype=np.int64)  # 0 = padding
        at = 0
        for segment, (ids, mask) in enumerate(self.conversations(index), start=1):
            n = len(ids) - 1
            if at + n > s:
                raise SFTDatasetError(f"{self.prefix}: sample {index} holds more than {s} positions")
            tokens[at:at + n] = ids[:-1]
            labels[at:at + n] = ids[1:]
            loss_mask[at:at + n] = mask[1:]
            position_ids[at:at + n] = np.arange(n)  # restart per conversation
            segment_ids[at:at + n] = segment
            at += n
        out = {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "position_ids": position_ids}
        if self.packed:
            out["segment_ids"] = segment_ids
        return {k: torch.from_numpy(v) for k, v in out.items()}
