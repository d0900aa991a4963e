"""The model card (README.md) of a Hugging Face export: which recipe steps made the model.

The steps are read from checkpoint metadata (kanana.json), following each checkpoint back to
the one it started from (a training run's `checkpoint.load`, depth up-scaling's
`upscaled_from`, pruning's `pruned_from`) while those are still on disk, and written oldest
first: conversion, training stages, DUS layer maps, prune sizes, distillation teachers,
post-training stages.

    text = render(meta, hf_config)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from megatron_kanana.checkpointing import layout
from megatron_kanana.surgery import depth

MAX_ANCESTORS = 16  # a cycle of `load` paths must not loop forever
_POST_TRAINING = {"sft": "supervised fine-tuning (SFT)", "reward": "reward model training",
                  "dpo": "direct preference optimisation (DPO)", "online_dpo": "online DPO"}


def render(meta: Mapping[str, Any], hf_config: Mapping[str, Any]) -> str:
    steps = [describe(m) for m in reversed(list(lineage(meta)))]
    shape = (f"{hf_config.get('num_hidden_layers')} layers, hidden {hf_config.get('hidden_size')}, "
             f"{hf_config.get('num_attention_heads')} query heads / {hf_config.get('num_key_value_heads')} KV heads "
             f"of dim {hf_config.get('head_dim')}, FFN {hf_config.get('intermediate_size')}, "
             f"vocabulary {hf_config.get('vocab_size')}")
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             "tags: [kanana, megatron-core, megatron_kanana]", "---", "",
             "# A Kanana-recipe model exported by megatron_kanana", "",
             f"Llama architecture ({shape}).", "", "## How it was made", ""]
    lines += [f"{i}. {s}" for i, s in enumerate(steps, 1)] or ["No recipe metadata was found."]
    lines += ["", "## Use", "",
              "`tokenizer_config.json` holds the chat template the model was trained with and",
              "`generation_config.json` stops at the end of a turn:", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "tok = AutoTokenizer.from_pretrained(path)", "model = AutoModelForCausalLM.from_pretrained(path)",
              "ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"...\"}],",
              "                              add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)",
              "out = model.generate(**ids, max_new_tokens=128)", "```", ""]
    return "\n".join(lines)


def lineage(meta: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """`meta`, then the metadata of the checkpoint it started from, and so on, newest first."""
    seen = set()
    for _ in range(MAX_ANCESTORS):
        yield meta
        parent = _parent(meta)
        if parent is None:
            return
        try:
            directory = layout.resolve(Path(parent))
            if directory.resolve() in seen:
                return
            seen.add(directory.resolve())
            meta = layout.read_meta(directory)
        except (layout.CheckpointError, OSError, ValueError):
            return  # moved or deleted since: the card says what it knows


def _parent(meta: Mapping[str, Any]) -> str | None:
    if meta.get("upscaled_from"):
        return meta["upscaled_from"]
    if (meta.get("pruning") or {}).get("pruned_from"):
        return meta["pruning"]["pruned_from"]
    return ((meta.get("config") or {}).get("checkpoint") or {}).get("load")


def describe(meta: Mapping[str, Any]) -> str:
    """One recipe step from one checkpoint's metadata."""
    if "layer_map" in meta:
        layer_map = meta["layer_map"]
        return (f"Depth up-scaling (DUS) of `{meta.get('upscaled_from')}` to {len(layer_map)} layers "
                f"(spec `{meta.get('layer_spec')}`): {depth.describe(layer_map)}.")
    if "pruning" in meta:
        old, new = meta["pruning"].get("source_model", {}), meta.get("model", {})
        sizes = ", ".join(f"{label} {old.get(k)} → {new.get(k)}" for label, k in (
            ("hidden", "hidden_size"), ("FFN", "ffn_hidden_size"), ("query heads", "num_attention_heads"),
            ("layers", "num_layers")) if old.get(k) != new.get(k))
        return f"Width pruning of `{meta['pruning'].get('pruned_from')}`: {sizes or 'no size changed'}."
    if "config" in meta:
        return _training_step(meta)
    if meta.get("hf_config"):
        return f"Converted from a Hugging Face checkpoint ({', '.join(meta['hf_config'].get('architectures', []))})."
    return "A megatron_kanana checkpoint without recipe metadata."


def _training_step(meta: Mapping[str, Any]) -> str:
    config, state = meta["config"], meta.get("train_state", {})
    mode = next((label for key, label in _POST_TRAINING.items() if config.get(key)), None)
    distill = config.get("distill")
    if mode is None:
        mode = f"distillation from teacher `{distill.get('teacher')}`" if distill else "pre-training"
    elif distill:
        mode += f", distilled from `{distill.get('teacher')}`"
    data = config.get("data", {})
    stages = data.get("stage_steps") or {}
    stage_text = (", stages " + ", ".join(f"{k}: {v} steps" for k, v in stages.items()) if stages else
                  f", stages {', '.join(data['stages'])}" if data.get("stages") else "")
    mixture = f" on mixture `{data['mixture']}`" if data.get("mixture") else ""
    reference = next((f", reference `{config[k]['reference']}`" for k in ("dpo", "online_dpo")
                      if (config.get(k) or {}).get("reference")), "")
    tokens = state.get("consumed_tokens")
    return (f"{mode[0].upper()}{mode[1:]}{mixture}{stage_text}{reference}: {state.get('step', '?')} steps"
            + (f", {tokens:,} tokens" if isinstance(tokens, int) else "") + ".")
