"""Preference pairs: how one is read from JSONL, and the dataset of rendered pairs training reads.

One pair per JSONL line:

    {"prompt": "1 더하기 2는?" | [{"role": "system"|"user"|"assistant", "content": ...}, ..., {"role": "user", ...}],
     "chosen": "3입니다." | [{"role": "assistant", "content": ...}, ...],
     "rejected": <same as chosen>}

A string prompt is one user turn, a string response one assistant turn. `kanana pref-preprocess`
(preference_preprocess.py) renders prompt + chosen and prompt + rejected with the SFT chat
template and stores them like an unpacked SFT dataset (sft_dataset.py) under its own metadata
file P_pref.json: sample 2i is pair i's chosen, sample 2i + 1 its rejected.

    ds = PreferenceDataset("out/pref", seq_length=2048)
    chosen, rejected = ds[0]        # each {tokens, labels, loss_mask, position_ids, length}
    batch = collate_pairs([ds[0], ds[1]])   # [2b, s] rows: chosen 0, rejected 0, chosen 1, rejected 1

Every pair-trained mode (reward model, DPO, online DPO) counts data.micro_batch_size and
data.global_batch_size in *rows* (sequences), two per pair: a global batch of 64 is 32
pairs. Both must be even, so a pair's chosen and rejected always share a micro-batch
(their scores meet in one loss), and the schedules' micro-batch size, token counts and
throughput figures mean what they mean in every other mode.
"""
from __future__ import annotations

import json
import math
from typing import Optional

import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.data.chat_template import Message
from megatron_kanana.posttrain.conversations import _Bad, parse_messages
from megatron_kanana.posttrain.sft_dataset import SFTDataset, SFTDatasetError, check_tokenizer

PROBLEMS = ("malformed_json", "not_a_pair", "unknown_role", "empty_content", "bad_prompt", "no_response",
            "bad_response", "chosen_equals_rejected", "too_long", "nothing_trained_after_truncation",
            "identical_after_truncation")
FIELDS = ("prompt", "chosen", "rejected")


def parse_prompt(value, malformed: str = "not_a_pair") -> list[Message]:
    """A prompt field (a string, or messages ending with a user turn) as Messages; `malformed`
    is the problem a value of the wrong type counts as."""
    if isinstance(value, str):
        if not value.strip():
            raise _Bad("empty_content", "prompt is an empty string")
        return [Message("user", value)]
    if not isinstance(value, list) or not value:
        raise _Bad(malformed, f"prompt must be a string or a non-empty list of messages, "
                              f"got {type(value).__name__}")
    messages = parse_messages(value, "prompt", malformed)
    if messages[-1].role != "user":
        raise _Bad("bad_prompt", f"prompt must end with a user turn, ends with {messages[-1].role!r}")
    return messages


def _response(value, name: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise _Bad("no_response", f"{name} is an empty string")
        return [Message("assistant", value)]
    if not isinstance(value, list):
        raise _Bad("not_a_pair", f"{name} must be a string or a list of assistant messages, got {type(value).__name__}")
    if not value:
        raise _Bad("no_response", f"{name} is an empty list")
    messages = parse_messages(value, name, "not_a_pair")
    roles = sorted({m.role for m in messages} - {"assistant"})
    if roles:
        raise _Bad("bad_response", f"{name} may hold only assistant messages, has {roles}")
    return messages


def parse_pair(line: str) -> tuple[list[Message], list[Message], list[Message]]:
    """(prompt, chosen, rejected) messages of one JSONL line; raises _Bad naming what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise _Bad("malformed_json", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise _Bad("not_a_pair", f"expected an object with {list(FIELDS)}, got {type(record).__name__}")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise _Bad("not_a_pair", f"missing field(s) {missing}")
    prompt = parse_prompt(record["prompt"])
    chosen, rejected = _response(record["chosen"], "chosen"), _response(record["rejected"], "rejected")
    if chosen == rejected:
        raise _Bad("chosen_equals_rejected", "chosen and rejected are the same response")
    return prompt, chosen, rejected


class PreferenceDataset(torch.utils.data.Dataset):
    """Pairs of a preference dataset; each side padded to `seq_length` like an SFT sample."""

    def __init__(self, prefix: str, seq_length: int):
        self.samples = SFTDataset(prefix, seq_length, kind="pref")
        self.meta, self.prefix, self.seq_length = self.samples.meta, prefix, seq_length
        if len(self.samples) % 2:
            raise SFTDatasetError(f"{prefix}: {len(self.samples)} samples, not (chosen, rejected) pairs")

    def __len__(self) -> int:
        return len(self.samples) // 2

    def _side(self, index: int) -> dict:
        sample = dict(self.samples[index])
        (ids, _), = self.samples.conversations(index)  # unpacked: one conversation per sample
        sample["length"] = len(ids) - 1  # tokens holds ids[:-1]; labels are shifted
        return sample

    def __getitem__(self, index: int) -> tuple[dict, dict]:
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} of {len(self)}")
        return self._side(2 * index), self._side(2 * index + 1)


def collate_pairs(pairs: list[tuple[dict, dict]]) -> dict[str, torch.Tensor]:
    """[2b, s] tensors (row 2j: pair j's chosen, row 2j + 1: its rejected) and `lengths` [2b]."""
    if not pairs:
        raise ValueError("collate_pairs: no pairs")
    rows = [side for pair in pairs for side in pair]
    batch = {k: torch.stack([r[k] for r in rows]) for k in ("tokens", "labels", "loss_mask", "position_ids")}
    batch["tokens"], batch["labels"] = batch["tokens"].long(), batch["labels"].long()
    batch["lengths"] = torch.tensor([int(r["length"]) for r in rows], dtype=torch.int64)
    for key in ("pair_weight",):  # online DPO: 0 for a prompt whose sampled extremes tie
        if key in rows[0]:
            batch[key] = torch.stack([torch.as_tensor(r[key], dtype=torch.float32) for r in rows])
    return batch


def check_pair_batch(mode: str, global_batch_size: int, micro_batch_size: int) -> None:
    """Rows come in (chosen, rejected) pairs that must share a micro-batch."""
    if micro_batch_size % 2 or global_batch_size % 2:
        raise ConfigError(f"{mode}: data.micro_batch_size ({micro_batch_size}) and data.global_batch_size "
                          f"({global_batch_size}) count rows, two per preference pair; both must be even")


def open_pair_datasets(mode: str, prefixes: list[str], seq_length: int, tokenizer_fingerprint: Optional[str] = None):
    """The pairs of `prefixes`, one after another; each checked to be built with the tokenizer
    whose fingerprint is given (when one is)."""
    from megatron_kanana.posttrain.sft import ConcatDataset

    datasets = [PreferenceDataset(prefix, seq_length) for prefix in prefixes]
    for ds in datasets:
        check_tokenizer(mode, ds.prefix, ds.meta, tokenizer_fingerprint)
    return ConcatDataset(datasets)


def pair_steps(train_steps: Optional[int], epochs: float, num_pairs: int, global_batch_size: int) -> int:
    """Training steps: `train_steps`, or enough for `epochs` passes over `num_pairs` pairs."""
    if train_steps is not None:
        return train_steps
    return max(1, math.ceil(epochs * num_pairs / (global_batch_size // 2)))


def pair_micro_batches(pairs, first_pair: int, num_rows: int, micro_batch_size: int) -> list[dict]:
    """`num_rows` rows from pair `first_pair` on, as micro-batches of `micro_batch_size` rows."""
    per_micro = micro_batch_size // 2
    return [collate_pairs([pairs[i] for i in range(start, start + per_micro)])
            for start in range(first_pair, first_pair + num_rows // 2, per_micro)]


def step_pair_micro_batches(pairs, step: int, data, dp_rank: int, dp_size: int) -> list[dict]:
    """This rank's micro-batches for optimizer step `step` (training.data.micro_batches, for pairs)."""
    per_rank = data.global_batch_size // dp_size
    first = (step * data.global_batch_size + dp_rank * per_rank) // 2
    return pair_micro_batches(pairs, first, per_rank, data.micro_batch_size)
