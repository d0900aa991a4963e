"""Scaled RoPE (linear, llama3, yarn; a theta change) matches transformers: a tiny HF Llama of each
variant is converted to megatron, run the project's way at TP=1 on positions up to three times the
original window, exported back to HF, and transformers' logits from the export equal ours (fp32,
within 1e-5 of the largest logit); the export carries rope_theta / rope_scaling / max_position_embeddings exactly, and greedy
generation (KV cache, a left-padded row) gives transformers' tokens. One worker process for all."""
from __future__ import annotations

import json

import pytest
import torch

from tests.distributed.launch import python
from tests.tools.conftest import HERE
from tests.tools.tokens import ROPE_NEW_TOKENS as NEW_TOKENS, ROPE_PROMPT as PROMPT, rope_tokens as tokens

transformers = pytest.importorskip("transformers")

WINDOW = 16
VARIANTS = {  # name -> (rope_theta, rope_scaling or None)
    "default": (500000.0, None),
    "theta": (10000.0, None),
    "linear": (10000.0, {"rope_type": "linear", "factor": 3.0}),
    "llama3": (10000.0, {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": WINDOW}),
    # Kanana-1.5's betas; attention factor inferred from the factor
    "yarn": (10000.0, {"rope_type": "yarn", "factor": 4.4, "original_max_position_embeddings": WINDOW,
                       "beta_fast": 64.0, "beta_slow": 2.0}),
    "yarn_attention_factor": (10000.0, {"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.3,
                                        "original_max_position_embeddings": WINDOW}),
    "yarn_mscales": (10000.0, {"rope_type": "yarn", "factor": 4.0, "mscale": 0.707, "mscale_all_dim": 0.5,
                               "original_max_position_embeddings": WINDOW}),
}
SHAPE = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
             num_hidden_layers=2, vocab_size=128, tie_word_embeddings=False, max_position_embeddings=64,
             rms_norm_eps=1e-5)


def _hf_model(theta: float, scaling):
    config = transformers.LlamaConfig(**SHAPE, attn_implementation="eager",
                                      rope_parameters={"rope_theta": theta, **(scaling or {"rope_type": "default"})})
    torch.manual_seed(0)  # the same weights for every variant: only the RoPE differs
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 0.3 if "proj" in name else 1.0)  # large weights, so positions matter in the logits
    return model.eval()


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens(SHAPE["vocab_size"])).logits


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rope")
    tasks = []
    for name, (theta, scaling) in VARIANTS.items():
        _hf_model(theta, scaling).save_pretrained(root / f"{name}_hf")
        tasks.append({"hf": str(root / f"{name}_hf"), "mc": str(root / f"{name}_mc"),
                      "back": str(root / f"{name}_back"), "logits": str(root / f"{name}.pt"),
                      "generate": str(root / f"{name}_gen.json") if name == "yarn" else None})
    (root / "tasks.json").write_text(json.dumps(tasks))
    python([str(HERE / "rope_worker.py"), str(root / "tasks.json")], timeout=300)
    return root


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_logits_match_transformers_beyond_the_window(exported, name):
    from transformers import LlamaForCausalLM

    back = LlamaForCausalLM.from_pretrained(exported / f"{name}_back", attn_implementation="eager",
                                            dtype=torch.float32)
    reference = _logits(back)
    ours = torch.load(exported / f"{name}.pt")
    assert _relative(ours, reference) < 1e-5
    assert _relative(reference, _logits(_hf_model(*VARIANTS[name]))) < 1e-5  # the export is the source model
    if name != "default":  # the variant shows in the logits, so the match above can fail
        plain = torch.load(exported / "default.pt")
        assert _relative(ours[:, WINDOW:], plain[:, WINDOW:]) > 1e-2


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference over the largest logit (about 20 here; fp32 rounding gives ~1e-6)."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_export_carries_the_rope_config_exactly(exported, name):
    source = json.loads((exported / f"{name}_hf" / "config.json").read_text())
    back = json.loads((exported / f"{name}_back" / "config.json").read_text())
    assert back["rope_parameters"] == source["rope_parameters"]
    assert back["max_position_embeddings"] == source["max_position_embeddings"] == 64
    theta, scaling = VARIANTS[name]
    assert back["rope_theta"] == theta and back.get("rope_scaling") == scaling  # transformers 4.x's spelling
    meta = json.loads(next((exported / f"{name}_mc").glob("iter_*/kanana.json")).read_text())
    assert meta["model"]["rotary_base"] == theta
    assert {k: v for k, v in (meta["model"]["rope_scaling"] or {}).items() if v is not None} == (scaling or {})


def test_greedy_generation_matches_transformers(exported):
    from transformers import LlamaForCausalLM

    ours = json.loads((exported / "yarn_gen.json").read_text())
    back = LlamaForCausalLM.from_pretrained(exported / "yarn_back", attn_implementation="eager",
                                            dtype=torch.float32)
    for prompt, new in zip([PROMPT, PROMPT[5:]], ours):
        out = back.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                            pad_token_id=0, eos_token_id=None)
        assert new == out[0, len(prompt):].tolist()
