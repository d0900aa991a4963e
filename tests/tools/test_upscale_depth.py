"""`kanana upscale-depth`: output layers are exact copies of their mapped source
layers, the rest carries over, and the up-scaled model loads and trains at TP=2."""
from __future__ import annotations

import json
import math

import torch

from megatron_kanana.checkpointing import layout
from megatron_kanana.surgery import depth
from tests.tools.conftest import SHAPES, UPSCALE_SPEC, hf_logits, worker_tokens
from tests.tools.test_convert import _all_tensors, _result


def test_every_output_layer_equals_its_source_layer(converted):
    root, results = converted
    assert _result(results, "up_mc", "--layers")["rc"] == 0
    source, upscaled = _all_tensors(root / "nano_hf"), _all_tensors(root / "up_hf")
    layer_map = depth.parse_layer_spec(UPSCALE_SPEC, SHAPES["nano"][0]["num_hidden_layers"])
    assert layer_map == [0, 1, 2, 1, 2, 3]
    for j, i in enumerate(layer_map):
        for key in [k for k in source if k.startswith(f"model.layers.{i}.")]:
            out_key = key.replace(f"model.layers.{i}.", f"model.layers.{j}.", 1)
            assert torch.equal(upscaled[out_key], source[key]), out_key
    for key in ("model.embed_tokens.weight", "model.norm.weight"):
        assert torch.equal(upscaled[key], source[key])
    assert len(upscaled) == len(source) + 2 * 9  # two more layers of 9 tensors


def test_layer_map_is_saved_and_optimizer_dropped(converted):
    root, _ = converted
    meta = layout.read_meta(layout.resolve(root / "up_mc"))
    assert meta["layer_map"] == [0, 1, 2, 1, 2, 3] and meta["contents"] == ["model"]
    assert meta["model"]["num_layers"] == 6
    assert json.loads((root / "up_hf" / "config.json").read_text())["num_hidden_layers"] == 6


def test_upscaled_model_matches_transformers_and_trains_at_tp2(converted):
    root, _ = converted
    reference = hf_logits(root / "up_hf", worker_tokens(512))
    ours = torch.load(root / "logits_up_tp2_pp1.pt")
    assert ((ours - reference).abs().max() / reference.abs().max()).item() < 1e-4
    step = json.loads((root / "train_up.json").read_text())
    assert step["update_successful"] and math.isfinite(step["loss"]) and step["grad_norm"] > 0
    assert abs(step["loss"] - math.log(512)) < 1.0  # a near-uniform random model


def test_out_of_range_spec_is_refused_before_writing(converted):
    root, results = converted
    r = _result(results, "bad_up")
    assert r["rc"] == 2 and "outside" in r["stderr"]
    assert not (root / "bad_up").exists()
