"""Packing several conversations into one training sequence, and the mask that keeps them apart.

Conversations are placed greedily, first fit, into bins of `capacity` tokens. To stream
(SFT sets can exceed memory as token lists) at most `max_open_bins` bins stay open; when a
conversation fits none of them and the window is full, the oldest bin is emitted. Inside a
packed sequence each conversation is a segment (ids 1, 2, ...; padding is segment 0):
attention is causal *and* within a segment, and the loss never crosses a boundary because
labels are shifted per conversation (data side, sft_dataset.py).
"""
from __future__ import annotations

from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class FirstFitPacker(Generic[T]):
    """Greedy first-fit bin packing over a stream: `add` returns the bins it closed."""

    def __init__(self, capacity: int, max_open_bins: int = 256):
        if capacity < 1 or max_open_bins < 1:
            raise ValueError(f"capacity ({capacity}) and max_open_bins ({max_open_bins}) must be >= 1")
        self.capacity, self.max_open_bins = capacity, max_open_bins
        self._bins: list[list[T]] = []
        self._room: list[int] = []

    def add(self, item: T, length: int) -> list[list[T]]:
        if not 1 <= length <= self.capacity:
            raise ValueError(f"item of length {length} does not fit bins of {self.capacity}")
        for i, room in enumerate(self._room):
            if length <= room:
                self._bins[i].append(item)
                self._room[i] -= length
                return [self._close(i)] if self._room[i] == 0 else []
        closed = [self._close(0)] if len(self._bins) >= self.max_open_bins else []
        self._bins.append([item])
        self._room.append(self.capacity - length)
        if self._room[-1] == 0:
            closed.append(self._close(len(self._bins) - 1))
        return closed

    def finish(self) -> list[list[T]]:
        """The bins still open, oldest first."""
        bins, self._bins, self._room = self._bins, [], []
        return bins

    def _close(self, i: int) -> list[T]:
        del self._room[i]
        return self._bins.pop(i)


def packed_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[b, s] segment ids -> [b, 1, s, s] bool, megatron's convention: True = masked out.

    Query i may attend key j iff j <= i and both are in the same segment (block-diagonal
    causal). The diagonal is always allowed, so no row is fully masked (SDPA would give NaN).
    """
    s = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    return ~(same & causal).unsqueeze(1)
