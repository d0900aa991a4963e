"""megatron-core dist_checkpointing: layout-independent save and load.

A checkpoint written at one TP/PP/VPP layout loads at any other: each tensor
is stored with its global shape and offsets, and `load` reads just the slices
this rank owns. Loading never unpickles arbitrary objects.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
from megatron.core import dist_checkpointing


def model_sharded_state_dict(chunks: list[torch.nn.Module]) -> dict:
    """Megatron's convention: `model` for one chunk, `model0`, `model1`, ... with VPP."""
    modules = [getattr(c, "module", c) for c in chunks]
    if len(modules) == 1:
        return {"model": modules[0].sharded_state_dict()}
    return {f"model{i}": m.sharded_state_dict() for i, m in enumerate(modules)}


def save_model(chunks: list[torch.nn.Module], directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(model_sharded_state_dict(chunks), str(directory))


def load_model(chunks: list[torch.nn.Module], directory: str | Path, strict: bool = True) -> None:
    state = dist_checkpointing.load(model_sharded_state_dict(chunks), str(directory))
    modules = [getattr(c, "module", c) for c in chunks]
    if len(modules) == 1:
        modules[0].load_state_dict(state["model"], strict=strict)
    else:
        for i, m in enumerate(modules):
            m.load_state_dict(state[f"model{i}"], strict=strict)


@contextlib.contextmanager
def gradients_as_weights(chunks: list[torch.nn.Module]) -> Iterator[None]:
    """Temporarily point every parameter's data at its gradient, so the
    checkpoint machinery can save or reshard gradients like weights (used by
    the parity tests to compare gradients across layouts)."""
    saved = []
    for chunk in chunks:
        for p in chunk.parameters():
            grad = getattr(p, "main_grad", None)
            if grad is None:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
            saved.append((p, p.data))
            p.data = grad.detach().to(p.dtype).reshape(p.shape)
    try:
        yield
    finally:
        for p, data in saved:
            p.data = data
