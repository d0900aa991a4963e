"""Shared, expensive set-up of the converter and up-scaling tests, run once per session:

1. tiny HF Llama models of several shapes are built with transformers and saved;
2. one subprocess runs every `kanana convert` / `kanana upscale-depth` call
   (tests/tools/cli_driver.py), so megatron is imported once;
3. one torchrun (2 CPU processes) loads the results at TP=1, TP=2 and PP=2 and
   returns logits, and takes a training step on the up-scaled model
   (tests/tools/mcore_worker.py).
The pytest process itself never starts megatron.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.distributed.launch import python, torchrun
from tests.tools.tokens import tokens_for

HERE = Path(__file__).resolve().parent

# name -> (LlamaConfig kwargs, save_pretrained kwargs)
SHAPES = {
    # Nano's quirk: 4 heads x 16 = 64 wider than hidden 48; GQA 2:1; tied
    "nano": (dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
                  num_hidden_layers=4, vocab_size=512, tie_word_embeddings=True), {}),
    # plain multi-head attention, untied embeddings
    "untied_mha": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                        intermediate_size=160, num_hidden_layers=4, vocab_size=512, tie_word_embeddings=False), {}),
    # GQA 4:1, untied, saved as several shards with an index
    "gqa_sharded": (dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
                         intermediate_size=96, num_hidden_layers=2, vocab_size=384, tie_word_embeddings=False),
                    {"max_shard_size": "100KB"}),
}
UPSCALE_SPEC = "0-2,1-3"  # nano: 4 -> 6 layers
TOKENIZER_FILES = {"tokenizer_config.json": '{"model_max_length": 256}', "special_tokens_map.json": '{"bos_token": "<s>"}'}


def build_hf(directory: Path, config_kwargs: dict, save_kwargs: dict, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=256,
                         attn_implementation="eager", **config_kwargs)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # non-trivial norms, so a swapped norm shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(directory, **save_kwargs)
    for name, text in TOKENIZER_FILES.items():
        (directory / name).write_text(text)
    return model


def hf_logits(directory: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        return model(tokens).logits


def _cli_calls(root: Path) -> list:
    calls = []
    for name in SHAPES:
        calls.append(["convert", "--from", "hf", "--to", "mcore", "--input", str(root / f"{name}_hf"),
                      "--output", str(root / f"{name}_mc"), "--tp", "2", "--pp", "2"])
        shards = ["--max-shard-size", "0.0001"] if name == "gqa_sharded" else []  # ~100 KiB shards
        calls.append(["convert", "--from", "mcore", "--to", "hf", "--input", str(root / f"{name}_mc"),
                      "--output", str(root / f"{name}_back"), *shards])
    calls.append(["upscale-depth", "--input", str(root / "nano_mc"), "--output", str(root / "up_mc"),
                  "--layers", UPSCALE_SPEC, "--tp", "2"])
    calls.append(["convert", "--from", "mcore", "--to", "hf", "--input", str(root / "up_mc"),
                  "--output", str(root / "up_hf")])
    calls.append(["upscale-depth", "--input", str(root / "nano_mc"), "--output", str(root / "bad_up"),
                  "--layers", "0-4"])
    calls.append({"tamper": str(root / "nano_mc"), "copy_to": str(root / "tampered_mc"),
                  "model": {"ffn_hidden_size": 96}})
    calls.append(["convert", "--from", "mcore", "--to", "hf", "--input", str(root / "tampered_mc"),
                  "--output", str(root / "tampered_hf")])
    return calls


def _worker_tasks(root: Path) -> list:
    tasks = []
    for name, layouts in (("nano", [(1, 1), (2, 1), (1, 2)]), ("untied_mha", [(1, 1), (2, 1), (1, 2)]),
                          ("gqa_sharded", [(2, 1), (1, 2)]), ("up", [(2, 1)])):
        for tp, pp in layouts:
            tasks.append({"kind": "logits", "ckpt": str(root / f"{name}_mc"), "tp": tp, "pp": pp,
                          "out": str(root / f"logits_{name}_tp{tp}_pp{pp}.pt")})
    tasks.append({"kind": "train", "ckpt": str(root / "up_mc"), "tp": 2, "pp": 1, "out": str(root / "train_up.json")})
    return tasks


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    for name, (config_kwargs, save_kwargs) in SHAPES.items():
        build_hf(root / f"{name}_hf", config_kwargs, save_kwargs)
    (root / "calls.json").write_text(json.dumps(_cli_calls(root)))
    python([str(HERE / "cli_driver.py"), str(root / "calls.json"), str(root / "results.json")], timeout=300)
    (root / "tasks.json").write_text(json.dumps({"tasks": _worker_tasks(root)}))
    torchrun(HERE / "mcore_worker.py", 2, [str(root / "tasks.json")], timeout=300)
    results = json.loads((root / "results.json").read_text())
    return root, results


def worker_tokens(vocab: int) -> torch.Tensor:
    return tokens_for(vocab)[:, :-1]
