"""Depth up-scaling layer maps."""
from __future__ import annotations

import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import depth


def test_solar_and_essence_maps():
    solar = depth.parse_layer_spec(depth.EXAMPLES["solar-32-to-48"], 32)
    assert len(solar) == 48 and solar[:24] == list(range(24)) and solar[24:] == list(range(8, 32))
    essence = depth.parse_layer_spec(depth.EXAMPLES["essence-32-to-40"], 32)
    assert len(essence) == 40 and essence[19:21] == [19, 12]
    assert depth.describe(essence) == "out 0-19 <- src 0-19; out 20-39 <- src 12-31"
    assert depth.upscaled_shape(get_preset("kanana-8b"), essence) == get_preset("kanana-essence-9.8b")


def test_single_indices_and_repeats():
    assert depth.parse_layer_spec("3, 0-1,3", 4) == [3, 0, 1, 3]


@pytest.mark.parametrize("spec,message", [("", "empty"), ("  ", "empty"), ("0-32", "outside"), ("-1", "is not"),
                                          ("5-2", "backwards"), ("a-b", "is not"), ("0-3,,4", "is not")])
def test_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        depth.parse_layer_spec(spec, 32)


def test_remap_layers_is_the_explicit_map():
    layers = {i: {"w": i} for i in range(3)}
    assert depth.remap_layers(layers, [0, 2, 2, 1]) == {0: {"w": 0}, 1: {"w": 2}, 2: {"w": 2}, 3: {"w": 1}}
    with pytest.raises(ConfigError):
        depth.upscaled_shape(get_preset("tiny"), [])
