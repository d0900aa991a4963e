"""Every shipped depth up-scaling config parses into the sections it names, and its
model is what the documented `kanana upscale-depth` command produces."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megatron_kanana.models import ModelShape, get_preset
from megatron_kanana.parallel.config import ParallelConfig, check_layout
from megatron_kanana.surgery import depth
from megatron_kanana.training.lr_schedule import ScheduleConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "upscale"
# config -> (source preset, layer spec that makes its model)
SOURCES = {"essence_9.8b_stage1.yaml": ("kanana-8b", "essence-32-to-40"),
           "essence_9.8b_stage2.yaml": ("kanana-8b", "essence-32-to-40"),
           "tiny_cpu.yaml": ("tiny-nano", "0-2,1-3")}


def test_every_config_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(SOURCES)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_config_sections_parse(name):
    config = yaml.safe_load((EXAMPLES / name).read_text())
    assert set(config) == {"model", "parallel", "checkpoint", "data", "schedule"}
    model = config["model"]
    shape = get_preset(model["preset"]) if "preset" in model else ModelShape.from_dict(model["shape"])
    source, spec = SOURCES[name]
    layer_map = depth.parse_layer_spec(depth.EXAMPLES.get(spec, spec), get_preset(source).num_layers)
    assert depth.upscaled_shape(get_preset(source), layer_map) == shape
    parallel = ParallelConfig.from_dict(config["parallel"])
    check_layout(parallel, shape, world_size=parallel.model_parallel_size * 2, device="cuda")
    ScheduleConfig.from_dict(config["schedule"])
    assert config["checkpoint"]["load"] and config["data"]["stage"] in (1, 2)
