"""`kanana convert`: HF -> megatron -> HF is bit-exact, and the megatron checkpoint
gives transformers' logits at TP=1, TP=2 and PP=2 (fp32, CPU) for several shapes."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from megatron_kanana.checkpointing import hf_dir, layout
from tests.tools.conftest import SHAPES, TOKENIZER_FILES, hf_logits, worker_tokens


def _all_tensors(directory) -> dict:
    index = directory / hf_dir.INDEX
    files = set(json.loads(index.read_text())["weight_map"].values()) if index.exists() else {hf_dir.SINGLE}
    out = {}
    for f in files:
        out.update(load_file(directory / f))
    return out


def _result(results, *fragments):
    (match,) = [r for r in results if all(f in " ".join(r["argv"]) for f in fragments)]
    return match


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_round_trip_is_bit_exact(converted, name):
    root, results = converted
    for r in results:
        if name in " ".join(r["argv"]) and "bad" not in " ".join(r["argv"]):
            assert r["rc"] == 0, r
    before, after = _all_tensors(root / f"{name}_hf"), _all_tensors(root / f"{name}_back")
    assert set(before) == set(after)
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    for fname, text in TOKENIZER_FILES.items():
        assert (root / f"{name}_back" / fname).read_text() == text
    config = json.loads((root / f"{name}_back" / "config.json").read_text())
    for key in ("head_dim", "tie_word_embeddings", "num_key_value_heads", "intermediate_size"):
        assert config[key] == SHAPES[name][0][key]
    assert config["rms_norm_eps"] == 1e-5 and config["rope_parameters"]["rope_theta"] == 500000.0
    # the model card comes from the megatron checkpoint's kanana.json (no tokenizer here: no chat files)
    card = (root / f"{name}_back" / "README.md").read_text()
    assert "1. Converted from a Hugging Face checkpoint (LlamaForCausalLM)." in card


def test_sharded_output_loads_in_transformers(converted):
    root, _ = converted
    assert (root / "gqa_sharded_hf" / hf_dir.INDEX).exists() and (root / "gqa_sharded_back" / hf_dir.INDEX).exists()
    tokens = worker_tokens(SHAPES["gqa_sharded"][0]["vocab_size"])
    assert torch.equal(hf_logits(root / "gqa_sharded_back", tokens), hf_logits(root / "gqa_sharded_hf", tokens))
    meta = layout.read_meta(layout.resolve(root / "gqa_sharded_mc"))
    assert meta["contents"] == ["model"] and meta["model"]["num_query_groups"] == 2
    assert (root / "gqa_sharded_mc" / "latest").read_text().strip() == "iter_0000000"


@pytest.mark.parametrize("name,layouts", [("nano", ["tp1_pp1", "tp2_pp1", "tp1_pp2"]),
                                          ("untied_mha", ["tp1_pp1", "tp2_pp1", "tp1_pp2"]),
                                          ("gqa_sharded", ["tp2_pp1", "tp1_pp2"])])
def test_megatron_logits_match_transformers(converted, name, layouts):
    root, _ = converted
    vocab = SHAPES[name][0]["vocab_size"]
    reference = hf_logits(root / f"{name}_hf", worker_tokens(vocab))
    for lay in layouts:
        ours = torch.load(root / f"logits_{name}_{lay}.pt")
        assert ours.shape == reference.shape, lay
        rel = ((ours - reference).abs().max() / reference.abs().max()).item()
        assert rel < 1e-4, (name, lay, rel)


def test_shape_contradicting_the_tensors_is_refused(converted):
    root, results = converted
    r = _result(results, "tampered_mc")
    assert r["rc"] == 2 and "mlp.linear_fc1.weight" in r["stderr"], r
    assert not (root / "tampered_hf").exists() and not (root / "tampered_hf.partial").exists()
