"""`kanana generate CHECKPOINT --prompt TEXT ...`: greedy continuations from a checkpoint.

    kanana generate demo_out/run/checkpoints --prompt "대한민국은" --prompt "The module" --max-new-tokens 24

Loads the model at TP=1/PP=1 in this one process whatever layout it was trained
at (dist checkpoints reshard on load), with the tokenizer recorded in the
checkpoint unless --tokenizer is given.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from megatron_kanana.checkpointing import layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run checkpoint root (follows `latest`) or an iter_* directory")
    parser.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tokenizer", default=None, help="override the tokenizer recorded in the checkpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object per prompt")


def generate(checkpoint: str | Path, prompts: list[str], max_new_tokens: int = 32,
             tokenizer_path: str | None = None) -> list[str]:
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.mcore import checkpoint as mcore_ckpt, model as mcore_model, runtime
    from megatron_kanana.mcore.generate import greedy_generate
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel.config import ParallelConfig

    directory = layout.resolve(Path(checkpoint))
    meta = layout.read_meta(directory)
    shape = ModelShape.from_dict(meta["model"], prefix="checkpoint model")
    tokenizer = load_tokenizer(tokenizer_path or meta["tokenizer"])
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=0)
    try:
        chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
        mcore_ckpt.load_model(chunks, directory)
        outputs = []
        for prompt in prompts:
            ids = greedy_generate(chunks, tokenizer.encode(prompt), max_new_tokens, stop_token=tokenizer.eod,
                                  max_length=shape.max_position_embeddings)
            outputs.append(tokenizer.decode([t for t in ids if t != tokenizer.eod]))
        return outputs
    finally:
        runtime.shutdown()


def run(args: argparse.Namespace) -> int:
    try:
        outputs = generate(args.checkpoint, args.prompt, args.max_new_tokens, args.tokenizer)
    except layout.CheckpointError as e:
        print(f"kanana generate: {e}")
        return 2
    for prompt, text in zip(args.prompt, outputs):
        print(json.dumps({"prompt": prompt, "completion": text}, ensure_ascii=False) if args.json
              else f"{prompt} ⟶ {text}")
    return 0
