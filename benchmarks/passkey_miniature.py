"""CPU miniature of a long-context check: passkey retrieval before and after a context-extension
stage (issue 20 item 4), on the `tiny` preset.

    PYTHONPATH=.:kernels python benchmarks/passkey_miniature.py [--workdir DIR]

The task is generated here (ours, after Mohtashami & Jaggi 2023): a repeated filler ("the grass
is green . the sky is blue . ..."), somewhere in it "the pass key : 37 . remember it . 37 is the
pass key .", and at the end "what is the pass key ? the pass key :" followed by the key, one of 90
numbers (10-99). A word-level tokenizer makes every word and number one token, so a prompt's
length is exact, and no other number occurs in a prompt: retrieval is one look-up by content
over the whole prompt, the simplest retrieval there is. Measured (benchmarks/README.md): even
this stays at chance for the `tiny` preset in this budget, as did the harder variants tried first
(five digits 0-9 after "the pass key is", with and without copy drills; five distinct numbers
with copy drills): the model learns the filler but forms no retrieval head in 1.2M tokens, so
the key columns cannot improve; the `beyond` columns show what the extension stage changes.

1. `kanana preprocess` of generated documents: short passkey documents (fit 128 tokens) and long
   ones (512).
2. ONE `kanana train` run of a two-stage mixture: stage `short` at seq_length 128 (window 128,
   plain RoPE, theta 10,000) on short documents; stage `long` (the extension stage)
   sets seq_length 512, max_position_embeddings 512 and YaRN (factor 4, original window 128) and
   draws 80% long documents; the stage schedule restarts.
3. Scores, with the project's model build and `mcore.scoring.token_logprobs`, held-out prompts
   of 128, 256 and 512 tokens (the needle at a uniform depth): a prompt counts when the key is
   the greedy next token (`key@N`); `beyond@N` is the share of the prompt's tokens past position
   128 that are the greedy next token (the filler is predictable there). Three rows: the
   stage-1 checkpoint with its plain RoPE ("before"), the same weights under the extension's
   YaRN without training ("YaRN, no training"), and the end of the extension stage ("after").
Prints the table and writes DIR/summary.json. Finished runs in DIR are reused.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]

FILLER = "the grass is green . the sky is blue . the sun is yellow . here we go . there and back again ."
SENTENCES = [s.strip() + " ." for s in FILLER.split(" .") if s.strip()]
NEEDLE = "the pass key : {key} . remember it . {key} is the pass key ."
QUESTION = "what is the pass key ? the pass key : {key} ."
KEY_LENGTH = 1  # tokens of a key (the code handles longer keys; see the docstring for why one)
KEY_TOKENS = [str(n) for n in range(10, 100)]
SPECIALS = ["[UNK]", "<|end_of_text|>", "<pad>"]
SHORT, LONG = 128, 512
EVAL_LENGTHS = (128, 256, 512)
STEPS = {"short": 600, "long": 80}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": SHORT}


def vocabulary() -> list[str]:
    words = sorted({w for text in (FILLER, NEEDLE, QUESTION) for w in text.split() if w != "{key}"})
    return SPECIALS + words + KEY_TOKENS


def passkey_example(rng: random.Random, num_tokens: int) -> tuple[str, str]:
    """(prompt, answer): a prompt of exactly `num_tokens` words whose last five are answered by
    `answer` (the key's tokens). The needle starts after a uniformly drawn number of filler words."""
    key = " ".join(rng.sample(KEY_TOKENS, KEY_LENGTH))
    needle, question = NEEDLE.format(key=key).split(), QUESTION.format(key=key).split()[:-KEY_LENGTH - 1]
    filler_len = num_tokens - len(needle) - len(question)
    if filler_len < 0:
        raise ValueError(f"passkey_example: {num_tokens} tokens cannot hold the needle and the question")
    filler = (" ".join(SENTENCES[i % len(SENTENCES)] for i in range(filler_len // 3 + 2))).split()[:filler_len]
    depth = rng.randrange(filler_len + 1)
    words = filler[:depth] + needle + filler[depth:] + question
    return " ".join(words), key


def passkey_document(rng: random.Random, num_tokens: int) -> str:
    """A training document: a prompt of `num_tokens` words with its answer and a full stop."""
    prompt, key = passkey_example(rng, num_tokens - KEY_LENGTH - 1)
    return f"{prompt} {key} ."


def build_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary())}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(SPECIALS[1:])
    tok.save(str(path))


def kanana(*args: str) -> None:
    from tests.distributed.launch import cpu_env

    cmd = [sys.executable, "-m", "megatron_kanana.cli", *args]
    proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def make_inputs(root: Path) -> None:
    """Tokenizer, the short and long datasets, the mixture and the training config under root."""
    root.mkdir(parents=True, exist_ok=True)
    build_tokenizer(root / "tokenizer.json")
    rng = random.Random(0)
    for name, length, count in (("short", SHORT, 8000), ("long", LONG, 1500)):
        # lengths vary so the passkey-to-question distance covers the whole window
        docs = [passkey_document(rng, rng.randrange(length // 3, length + 1)) for _ in range(count)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        kanana("preprocess", "--input", str(root / f"{name}.jsonl"), "--tokenizer", str(root / "tokenizer.json"),
               "--output-prefix", str(root / "data" / name), "--workers", "1", "--append-eod", "--overwrite")
    batch = 16
    mixture = {"data_root": str(root / "data"), "stages": [
        {"name": "short", "tokens": STEPS["short"] * batch * SHORT,
         "sources": [{"path": "short", "category": "short", "weight": 1.0}]},
        {"name": "long", "tokens": STEPS["long"] * batch * LONG, "seq_length": LONG,
         "max_position_embeddings": LONG, "rope_scaling": YARN,
         "sources": [{"path": "long", "category": "long", "weight": 0.8},      # the long-document source
                     {"path": "short", "category": "short", "weight": 0.2}]},  # weighted up, as recipes do
    ]}
    (root / "mixture.yaml").write_text(yaml.safe_dump(mixture))
    config = {
        "run": {"output_dir": str(root / "run"), "seed": 1},
        "model": {"preset": "tiny", "max_position_embeddings": SHORT, "rotary_base": 10000},
        "data": {"mixture": str(root / "mixture.yaml"), "tokenizer": str(root / "tokenizer.json"),
                 "seq_length": SHORT, "micro_batch_size": batch, "global_batch_size": batch, "split": [98, 2, 0],
                 "eval_samples": 8, "stage_schedule": "restart"},
        "schedule": {"lr_decay_style": "cosine", "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 20},
        "checkpoint": {"keep_last": 0, "save_interval": 200},
        "logging": {"log_interval": 50, "tensorboard": False},
    }
    (root / "train.yaml").write_text(yaml.safe_dump(config))


def score(checkpoint: Path, shape, examples: dict[int, list[tuple[str, str]]], tokenizer) -> dict[str, float]:
    """Per prompt length N: `key@N`, the share of prompts whose key is the greedy next token, and
    `beyond@N` (N > the original window), the share of the prompt's own tokens at positions past
    the original window that are the greedy next token (the filler is predictable, so this shows
    whether attention still works there)."""
    import torch

    from megatron_kanana.mcore import checkpoint as mcore_ckpt, model as mcore_model, scoring
    from megatron_kanana.parallel import ParallelConfig

    parallel = ParallelConfig()
    chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, "cpu"))
    mcore_ckpt.load_model(chunks, checkpoint, strict=True)
    out = {}
    for length, pairs in examples.items():
        rows = [tokenizer.encode(f"{prompt} {key}") for prompt, key in pairs]
        assert all(len(r) == length + 1 for r in rows), "every word is one token"
        ids = torch.tensor(rows)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        _, greedy, _ = scoring.token_logprobs(chunks, inputs, targets, torch.zeros(len(rows), dtype=torch.long))
        out[f"key@{length}"] = greedy[:, -KEY_LENGTH:].all(dim=1).float().mean().item()
        if length > SHORT:
            out[f"beyond@{length}"] = greedy[:, SHORT:-KEY_LENGTH].float().mean().item()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/kanana_passkey_miniature"))
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts per length")
    args = p.parse_args()
    root = args.workdir.resolve()
    start = time.time()
    if not (root / "train.yaml").exists():
        make_inputs(root)
    run = root / "run"
    total = sum(STEPS.values())
    if not (run / "checkpoints" / f"iter_{total:07d}").exists():
        kanana("train", str(root / "train.yaml"), "--nproc", "1",
               f"data.stage_steps={{short: {STEPS['short']}, long: {STEPS['long']}}}")
    trained = time.time() - start

    from megatron_kanana.checkpointing import layout
    from megatron_kanana.data.tokenizer import load_tokenizer
    # megatron's model modules are imported before runtime.initialize installs its CPU stand-ins
    # (as every worker does): imported after, torch.compile's decorators refuse the stand-ins
    from megatron_kanana.mcore import model as _model, runtime, scoring as _scoring  # noqa: F401
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel import ParallelConfig

    tokenizer = load_tokenizer(root / "tokenizer.json")
    rng = random.Random(12345)  # held out: not the training documents' seed
    # a length is the model's input: the prompt (and a longer key's tokens but its last)
    examples = {n: [passkey_example(rng, n - KEY_LENGTH + 1) for _ in range(args.prompts)] for n in EVAL_LENGTHS}
    before_dir, after_dir = (run / "checkpoints" / f"iter_{STEPS['short']:07d}", run / "checkpoints" / f"iter_{total:07d}")
    before = ModelShape.from_dict(layout.read_meta(before_dir)["model"])
    after = ModelShape.from_dict(layout.read_meta(after_dir)["model"])
    runtime.initialize(ParallelConfig(), before, seed=1)
    rows = {"before (stage 1, plain RoPE)": score(before_dir, before, examples, tokenizer),
            "YaRN, no training": score(before_dir, after, examples, tokenizer),
            "after (extension stage)": score(after_dir, after, examples, tokenizer)}
    runtime.shutdown()
    summary = {"accuracy": rows,
               "prompts_per_length": args.prompts, "steps": STEPS, "window_before": SHORT, "window_after": LONG,
               "rope_after": YARN, "train_seconds": round(trained, 1), "seconds": round(time.time() - start, 1)}
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    columns = list(next(iter(rows.values())))
    print(f"{'accuracy':<30}" + "".join(f"{c:>12}" for c in columns))
    for name, r in rows.items():
        print(f"{name:<30}" + "".join(f"{r[c]:>12.3f}" for c in columns))
    print(f"{summary['seconds']} s ({summary['train_seconds']} s inputs + training); {root / 'summary.json'}")


if __name__ == "__main__":
    main()
