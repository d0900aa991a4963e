"""Every shipped depth up-scaling config resolves, and its model is exactly what the
documented `kanana upscale-depth` command makes of the source model."""
from __future__ import annotations

from pathlib import Path

import pytest

from megatron_kanana.config.root import load_config
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import depth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# config -> (source preset, layer spec that makes its model)
SOURCES = {"upscale/tiny_cpu.yaml": ("demo", "0-2,1-3"),
           "pretrain/kanana_essence_9.8b_dus.yaml": ("kanana-8b", "essence-32-to-40")}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_config_model_is_the_upscaled_source(name):
    cfg = load_config(EXAMPLES / name)
    source, spec = SOURCES[name]
    layer_map = depth.parse_layer_spec(depth.EXAMPLES.get(spec, spec), get_preset(source).num_layers)
    assert depth.upscaled_shape(get_preset(source), layer_map) == cfg.model
    assert cfg.checkpoint.load
