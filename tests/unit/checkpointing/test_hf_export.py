"""A Hugging Face export is complete: `generate()` stops at the end of the assistant's turn,
config.json carries bos/eos/pad ids, and the model card lists the recipe steps that made the
model, oldest first. The model is built with transformers from a config (no download)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from megatron_kanana.checkpointing import layout, model_card
from megatron_kanana.checkpointing.hf_export import GENERATION_CONFIG, complete_export
from megatron_kanana.data.chat_template import Message, get_template
from megatron_kanana.data.tokenizer import load_tokenizer
from tests.unit.data.conftest import build_llama3_bpe

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama3_bpe(tmp_path_factory) -> str:
    return build_llama3_bpe(tmp_path_factory.mktemp("llama3") / "tokenizer.json")


def chain_model(directory, vocab: int, successor: dict[int, int], default: int):
    """A Llama whose greedy next token depends only on the current one: layers add nothing
    (zero output projections), embeddings are one-hot, and lm_head maps token i to successor[i]."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=vocab, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=8, vocab_size=vocab, tie_word_embeddings=False,
                         max_position_embeddings=256)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.zeros(vocab, vocab)
        for i in range(vocab):
            head[successor.get(i, default), i] = 1.0
        model.lm_head.weight.copy_(head)
    model.save_pretrained(directory)
    return model


def test_generate_stops_at_end_of_turn(llama3_bpe, tmp_path):
    ours = load_tokenizer(llama3_bpe)
    template = get_template("auto", ours)
    prompt, _ = template.render([Message("system", "be brief"), Message("user", "What is 12+30?")], ours,
                                add_generation_prompt=True)
    eot, answer, filler = ours.token_to_id("<|eot_id|>"), ours.encode(" 42"), ours.encode("z")[0]
    assert len(set(answer) | {prompt[-1], filler}) == len(answer) + 2
    chain = dict(zip([prompt[-1], *answer], [*answer, eot]))  # prompt -> " 42" -> <|eot_id|> -> z z z ...
    chain_model(tmp_path, ours.vocab_size, chain, filler)
    shutil.copy2(llama3_bpe, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / GENERATION_CONFIG).unlink()  # save_pretrained's own, without our stop ids
    config = complete_export(tmp_path, saved, {})
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert (config["bos_token_id"], config["pad_token_id"]) == (ours.token_to_id("<|begin_of_text|>"), ours.pad)
    assert config["eos_token_id"] == [ours.eod, eot]

    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path))
    inputs = tok.apply_chat_template([{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "What is 12+30?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert inputs["input_ids"][0].tolist() == prompt
    out = model.generate(**inputs, max_new_tokens=10)[0, len(prompt):].tolist()
    assert out == [*answer, eot]
    assert tok.decode(out, skip_special_tokens=True) == " 42"


def _checkpoint(root, name: str, meta: dict):
    directory = root / name / layout.step_name(0)
    directory.mkdir(parents=True)
    layout.write_meta(directory, meta)
    layout.write_latest(root / name, directory.name)
    return str(root / name)


def test_model_card_lists_the_recipe_oldest_first(tmp_path):
    shape = {"hidden_size": 64, "ffn_hidden_size": 128, "num_attention_heads": 4, "num_layers": 4}
    converted = _checkpoint(tmp_path, "converted", {"contents": ["model"], "model": {**shape, "num_layers": 2},
                                                    "hf_config": {"architectures": ["LlamaForCausalLM"]}})
    upscaled = _checkpoint(tmp_path, "upscaled", {"contents": ["model"], "model": shape, "layer_map": [0, 1, 0, 1],
                                                  "layer_spec": "0-1,0-1", "upscaled_from": converted})
    pretrained = _checkpoint(tmp_path, "pretrained", {"config": {
        "data": {"mixture": "kanana_dus.yaml", "stage_steps": {"stage1": 30, "stage2": 10}},
        "checkpoint": {"load": upscaled}}, "train_state": {"step": 40, "consumed_tokens": 81920}})
    pruned = _checkpoint(tmp_path, "pruned", {"contents": ["model"], "model": {**shape, "hidden_size": 48},
                                              "pruning": {"pruned_from": pretrained, "source_model": shape}})
    distilled = _checkpoint(tmp_path, "distilled", {"config": {
        "data": {"stage_steps": {"stage1": 8}}, "distill": {"teacher": pretrained}, "checkpoint": {"load": pruned}},
        "train_state": {"step": 8}})
    sft = {"config": {"sft": {"template": "auto"}, "data": {}, "checkpoint": {"load": distilled}},
           "train_state": {"step": 150}, "model_kind": "lm"}
    steps = [line for line in model_card.render(sft, {"num_hidden_layers": 4}).splitlines() if line[:2] in
             {f"{i}." for i in range(1, 9)}]
    assert [s.split()[1] for s in steps] == ["Converted", "Depth", "Pre-training", "Width", "Distillation",
                                             "Supervised"], steps
    assert "4 layers (spec `0-1,0-1`)" in steps[1] and "stage1: 30 steps, stage2: 10 steps" in steps[2]
    assert "81,920 tokens" in steps[2] and "hidden 64 → 48" in steps[3] and pretrained in steps[4]
    assert "150 steps" in steps[5]


def test_model_card_without_ancestors_on_disk(tmp_path):
    meta = {"config": {"dpo": {"reference": "/gone/ref"}, "data": {}, "checkpoint": {"load": "/gone/sft"}},
            "train_state": {"step": 5}}
    text = model_card.render(meta, {})
    assert "1. Direct preference optimisation (DPO), reference `/gone/ref`: 5 steps." in text
    assert "2." not in text
