"""`kanana generate CHECKPOINT --prompt TEXT ...`: continuations from a checkpoint.

    kanana generate demo_out/run/checkpoints --prompt "대한민국은" --prompt "The module" --max-new-tokens 24
    kanana generate RUN_DIR --prompt "..." --temperature 0.8 --top-p 0.9 --top-k 50 --seed 1
    kanana generate RUN_DIR --prompt "..." --repetition-penalty 1.3     # greedy, repeats discouraged

Loads the model at TP=1/PP=1 in this one process whatever layout it was trained
at (dist checkpoints reshard on load), with the tokenizer recorded in the
checkpoint unless --tokenizer is given. All prompts go through one KV-cached
batch (mcore/generate.py); greedy unless --temperature > 0. A prompt longer
than the model's context minus --max-new-tokens keeps its last tokens.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from megatron_kanana.checkpointing import layout, safe_load

if TYPE_CHECKING:
    from megatron_kanana.mcore.sampling import SamplingSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run checkpoint root (follows `latest`) or an iter_* directory")
    parser.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass kept when sampling, in (0, 1]")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens; 0 = all")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same output)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="> 1 discourages ids already in the prompt or output (CTRL / HF rule); 1 = off")
    parser.add_argument("--tokenizer", default=None, help="override the tokenizer recorded in the checkpoint")
    parser.add_argument("--chat", action="store_true",
                        help="each prompt is a user turn of the chat template; stop at the end of turn")
    parser.add_argument("--json", action="store_true", help="print one JSON object per prompt")


def generate(checkpoint: str | Path, prompts: list[str], max_new_tokens: int = 32,
             tokenizer_path: str | None = None, sampling: "SamplingSettings | None" = None,
             chat: bool = False) -> list[str]:
    """Completions of `prompts`; with `chat`, each prompt is a user turn rendered by the chat
    template (llama3 when the tokenizer has its specials, else plain) up to the assistant's
    header, and generation stops at the template's end of turn."""
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.mcore import checkpoint as mcore_ckpt, model as mcore_model, runtime
    from megatron_kanana.mcore.generate import generate as generate_tokens
    from megatron_kanana.mcore.sampling import SamplingSettings
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel.config import ParallelConfig

    directory = layout.resolve(Path(checkpoint))
    meta = layout.read_meta(directory)
    layout.check_model_kind(meta, directory, ("lm",), "kanana generate")
    shape = ModelShape.from_dict(meta["model"], prefix="checkpoint model")
    context = shape.max_position_embeddings
    if not 0 <= max_new_tokens < context:
        raise ValueError(f"--max-new-tokens must be in [0, {context}) for this model (its context is {context})")
    tokenizer = load_tokenizer(tokenizer_path or layout.recorded_tokenizer(meta, directory))
    if tokenizer.vocab_size > shape.vocab_size:
        raise ValueError(f"the tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces, more than the "
                         f"model's vocabulary ({shape.vocab_size}) in {directory}")
    safe_load.read_dcp_metadata(directory)  # refuse a tampered checkpoint before megatron starts
    stop = tokenizer.eod
    if chat:
        from megatron_kanana.data.chat_template import Message, get_template
        from megatron_kanana.posttrain.prompts import stop_token

        template = get_template("auto", tokenizer)
        stop = stop_token(template, tokenizer)
        encoded = [template.render([Message("user", p)], tokenizer, add_generation_prompt=True)[0] for p in prompts]
    else:
        encoded = [tokenizer.encode(prompt) for prompt in prompts]
    # keep each prompt's end: the continuation depends most on it, and prompt + output must fit the context
    encoded = [ids[-(context - max_new_tokens):] for ids in encoded]
    if not all(encoded):
        raise ValueError("a prompt encodes to no tokens")
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=0)
    try:
        chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
        mcore_ckpt.load_model(chunks, directory)
        # never emit an id the tokenizer lacks (the model's vocabulary may be padded past it)
        settings = dataclasses.replace(sampling or SamplingSettings(), vocab_limit=tokenizer.vocab_size)
        out = generate_tokens(chunks, encoded, max_new_tokens, settings, stop_token=stop)
        return [tokenizer.decode([t for t in ids if t not in (stop, tokenizer.eod)]) for ids in out.tokens]
    finally:
        runtime.shutdown()


def run(args: argparse.Namespace) -> int:
    from megatron_kanana.mcore.sampling import SamplingSettings

    try:
        sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                    seed=args.seed, repetition_penalty=args.repetition_penalty)
        outputs = generate(args.checkpoint, args.prompt, args.max_new_tokens, args.tokenizer, sampling, args.chat)
    except (layout.CheckpointError, ValueError) as e:
        print(f"kanana generate: error: {e}", file=sys.stderr)
        return 2
    for prompt, text in zip(args.prompt, outputs):
        print(json.dumps({"prompt": prompt, "completion": text}, ensure_ascii=False) if args.json
              else f"{prompt} ⟶ {text}")
    return 0
