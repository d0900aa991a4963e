"""Save the checkpoint the evaluation parity tests score: `tiny-untied`, random, at TP=1.

Untied and random on purpose: greedy generations vary from prompt to prompt (a
tiny tied model trained a few steps repeats one byte token, so equal texts
would prove little), and its log-probs are far from ties. It is saved as any
checkpoint is (dist_checkpointing + kanana.json) and resharded on load at TP=2
and PP=2 exactly as training reshards.

    python tests/distributed/evaluation_worker.py --workdir DIR   # DIR/ckpt, DIR/tokenizer.json
"""
import argparse
from pathlib import Path

from megatron_kanana.checkpointing import layout
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from tests.unit.data.conftest import build_hf_tokenizer

PRESET = "tiny-untied"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    workdir = parser.parse_args().workdir
    shape = get_preset(PRESET)
    tokenizer = load_tokenizer(build_hf_tokenizer(workdir / "tokenizer.json", vocab_size=shape.vocab_size))
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=1234)
    try:
        chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
        directory = workdir / "ckpt" / layout.step_name(0)
        checkpoint.save_model(chunks, directory)
    finally:
        runtime.shutdown()
    layout.write_meta(directory, {"contents": ["model"], "model": shape.to_dict(), "model_kind": "lm",
                                  "tokenizer": tokenizer.path, "tokenizer_fingerprint": tokenizer.fingerprint})
    layout.write_latest(workdir / "ckpt", directory.name)


if __name__ == "__main__":
    main()
