"""Worker for the RoPE-variant parity tests (one process, a world of one, megatron imported once).

    python tests/tools/rope_worker.py TASKS.json

TASKS.json: [{"hf": DIR or null, "mc": DIR, "back": DIR, "logits": FILE, "generate": FILE or null,
"seq": N (default ROPE_SEQ)}, ...].
Per task: `kanana convert` HF -> megatron (when `hf` is given; else `mc` is a training run's
checkpoint), build the model the project's way at TP=1 and load it, save its logits on the
fixed tokens `rope_tokens(vocab, seq)` (tests/tools/tokens.py) and, if asked, a greedy
continuation of ROPE_PROMPT; then
`kanana convert` megatron -> HF into `back`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from megatron_kanana import cli
from megatron_kanana.checkpointing import layout
from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime
from megatron_kanana.mcore.generate import generate
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel import ParallelConfig
from tests.tools.tokens import ROPE_NEW_TOKENS, ROPE_PROMPT, ROPE_SEQ, rope_tokens



def _convert(src: str, dst: str, input_: str, output: str) -> None:
    rc = cli.main(["convert", "--from", src, "--to", dst, "--input", input_, "--output", output])
    if rc != 0:
        raise SystemExit(f"convert {input_} -> {output} failed ({rc})")


def run_task(task: dict) -> None:
    if task.get("hf"):
        _convert("hf", "mcore", task["hf"], task["mc"])
    directory = layout.resolve(Path(task["mc"]))
    shape = ModelShape.from_dict(layout.read_meta(directory)["model"])
    parallel = ParallelConfig()
    runtime.reset_model_parallel()
    rt = runtime.initialize(parallel, shape, seed=1234)
    chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
    checkpoint.load_model(chunks, directory, strict=True)
    (model,) = chunks
    model.eval()
    ids = rope_tokens(shape.vocab_size, task.get("seq", ROPE_SEQ))
    with torch.no_grad():
        logits = model(ids, torch.arange(ids.shape[1]).expand_as(ids), None)
    torch.save(logits, task["logits"])
    if task.get("generate"):
        out = generate(chunks, [ROPE_PROMPT, ROPE_PROMPT[5:]], ROPE_NEW_TOKENS)  # the second row is left-padded
        Path(task["generate"]).write_text(json.dumps(out.tokens))
    _convert("mcore", "hf", task["mc"], task["back"])


def main() -> None:
    for task in json.loads(Path(sys.argv[1]).read_text()):
        run_task(task)
    runtime.shutdown()


if __name__ == "__main__":
    main()
