"""The importance scores file written by `kanana prune-score` and read by `kanana prune`.

One safetensors file; the JSON header (safetensors metadata key "kanana") holds
the model shape, the aggregation rules and where the scores came from. Tensors
(float64, L = layers, h = hidden, H = query heads, F = FFN neurons):

    hidden            [h]        summed over every RMSNorm output (2L + 1 norms)
    hidden.per_norm   [2L+1, h]  norm 2l: before attention of layer l; 2l+1: before its MLP; 2L: final
    heads             [H] or [L, H]  after layer aggregation (sum: [H], one ranking for all layers)
    heads.per_layer   [L, H]
    ffn               [F] or [L, F]
    ffn.per_layer     [L, F]
    layers            [L]        block importance 1 - cos(layer input, layer output), token mean
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.shape import ModelShape

FORMAT = "kanana-importance/1"
REQUIRED = ("hidden", "heads", "ffn", "layers")


def write_scores(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> Path:
    """Write atomically: a killed run leaves no file that looks complete."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    # copies: with per-layer rankings "heads" is the very tensor "heads.per_layer" is, and
    # safetensors refuses names that share memory
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"kanana": json.dumps({"format": FORMAT, **header}, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_scores(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scores file {path} not found (write it with `kanana prune-score`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a corrupt file
        raise ConfigError(f"{path} is not a safetensors scores file: {e}") from None
    try:
        header = json.loads(meta.get("kanana", "{}"))
    except ValueError as e:
        raise ConfigError(f"{path}: its kanana header is not JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ConfigError(f"{path} is not a {FORMAT} scores file (header format {got!r})")
    missing = [k for k in REQUIRED if k not in tensors]
    if missing:
        raise ConfigError(f"{path} lacks scores {missing}")
    return tensors, header


def check_matches(tensors: dict[str, torch.Tensor], shape: ModelShape, path: Path) -> None:
    """The scores were computed on a model of this shape."""
    want = {"hidden": (shape.hidden_size,), "heads": (shape.num_attention_heads,),
            "ffn": (shape.ffn_hidden_size,), "layers": (shape.num_layers,)}
    for key, tail in want.items():
        got = tuple(tensors[key].shape)
        ok = got == tail or (key in ("heads", "ffn") and got == (shape.num_layers, *tail))
        if not ok:
            raise ConfigError(f"{path}: scores {key!r} have shape {list(got)}, but the checkpoint's model "
                              f"implies {list(tail)} (scores from a different model?)")
