"""Depth up-scaling (SOLAR, Kanana TR §2.3.2): stack copies of source layers.

A layer map is an explicit list: output layer j is a copy of source layer
`layer_map[j]`. Embeddings, the final norm and the output layer carry over
unchanged. Examples (32 source layers):

    SOLAR 32 -> 48:       "0-23,8-31"   (drop the last 8 of one copy, the first 8 of the other)
    Essence 8B -> 9.8B:   "0-19,12-31"  (32 -> 40; the paper does not publish Kanana's map,
                                         this is the SOLAR recipe with m = 12)
"""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.shape import ModelShape

EXAMPLES = {"solar-32-to-48": "0-23,8-31", "essence-32-to-40": "0-19,12-31"}


def parse_layer_spec(spec: str, num_source_layers: int) -> list[int]:
    """"0-23,8-31" -> [0, ..., 23, 8, ..., 31]; ranges are inclusive, single indices allowed."""
    if not spec or not spec.strip():
        raise ConfigError("layer spec is empty: give source layer ranges such as '0-23,8-31'")
    layer_map: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            first, _, last = part.partition("-")
            start, stop = int(first), int(last) if last else int(first)
        except ValueError:
            raise ConfigError(f"layer spec part {part!r} is not 'N' or 'A-B' (in {spec!r})") from None
        if start > stop:
            raise ConfigError(f"layer range {part!r} runs backwards (in {spec!r})")
        if start < 0 or stop >= num_source_layers:
            raise ConfigError(f"layer range {part!r} is outside the source's layers 0-{num_source_layers - 1}")
        layer_map.extend(range(start, stop + 1))
    return layer_map


def upscaled_shape(shape: ModelShape, layer_map: list[int]) -> ModelShape:
    if not layer_map:
        raise ConfigError("layer map is empty")
    bad = [i for i in layer_map if not 0 <= i < shape.num_layers]
    if bad:
        raise ConfigError(f"layer map refers to layers {bad} outside the source's 0-{shape.num_layers - 1}")
    return shape.replace(num_layers=len(layer_map))


def remap_layers(layers: dict[int, dict], layer_map: list[int]) -> dict[int, dict]:
    """Whole-model form: {source index: layer tensors} -> {output index: the same tensors}."""
    return {j: layers[i] for j, i in enumerate(layer_map)}


def describe(layer_map: list[int]) -> str:
    """Compact text of a map, e.g. 'out 0-23 <- src 0-23; out 24-47 <- src 8-31'."""
    runs, start = [], 0
    for j in range(1, len(layer_map) + 1):
        if j == len(layer_map) or layer_map[j] != layer_map[j - 1] + 1:
            runs.append(f"out {start}-{j - 1} <- src {layer_map[start]}-{layer_map[j - 1]}")
            start = j
    return "; ".join(runs)
