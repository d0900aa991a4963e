"""CPU miniature of a long-context check: passkey retrieval before and after a context-extension
stage (issue 20 item 4), on the `tiny` preset, scored in-process and through `kanana eval`.

    PYTHONPATH=.:kernels python benchmarks/passkey_miniature.py [--workdir DIR]

The task is ours (megatron_kanana/evaluation/passkey.py, after Mohtashami & Jaggi 2023): a
repeated filler ("the grass is green . the sky is blue . ..."), somewhere in it "the pass key :
37 . remember it . 37 is the pass key .", and at the end "what is the pass key ? the pass key :"
followed by the key, one of 90 numbers (10-99). A word-level tokenizer makes every word and
number one token, so a prompt's length is exact, and no other number occurs in a prompt:
retrieval is one look-up by content over the whole prompt, the simplest retrieval there is.
Measured (benchmarks/README.md): even this stays at chance for the `tiny` preset in this budget,
as did the harder variants tried first (five digits 0-9 after "the pass key is", with and
without copy drills; five distinct numbers with copy drills): the model learns the filler but
forms no retrieval head in 1.2M tokens, so the key columns cannot improve; the `beyond` columns
show what the extension stage changes.

1. `kanana preprocess` of generated documents: short passkey documents (fit 128 tokens) and long
   ones (512).
2. ONE `kanana train` run of a two-stage mixture: stage `short` at seq_length 128 (window 128,
   plain RoPE, theta 10,000) on short documents; stage `long` (the extension stage)
   sets seq_length 512, max_position_embeddings 512 and YaRN (factor 4, original window 128) and
   draws 80% long documents; the stage schedule restarts.
3. Scores, with the project's model build and `mcore.scoring.token_logprobs`, the held-out
   prompts of the local lm-eval tasks kanana_passkey_{128,256,512} (64 each, the needle at a
   uniform depth; tools/build_passkey_task.py): a prompt counts when the key is the greedy next
   token (`key@N`); `beyond@N` is the share of the prompt's tokens past position 128 that are
   the greedy next token (the filler is predictable there). Three rows: the stage-1 checkpoint
   with its plain RoPE ("before"), the same weights under the extension's YaRN without training
   ("YaRN, no training"), and the end of the extension stage ("after").
4. Scores the same three rows with `kanana eval --tasks kanana_passkey --max-length 512` (the
   YaRN row from a checkpoint directory linking the stage-1 files, its kanana.json carrying
   the extension's RoPE) and checks that lm-eval's `acc` equals key@N.
Prints both tables and writes DIR/summary.json. Finished runs and evaluations in DIR are reused.
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

from megatron_kanana.evaluation import passkey  # noqa: E402

SPECIALS = ["[UNK]", "<|end_of_text|>", "<pad>"]
SHORT, LONG = 128, 512
EVAL_LENGTHS = (128, 256, 512)
STEPS = {"short": 600, "long": 80}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": SHORT}
TASKS = REPO / "megatron_kanana" / "evaluation" / "local_tasks"  # kanana_passkey_N: the held-out prompts


def vocabulary() -> list[str]:
    return SPECIALS + passkey.vocabulary()


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


def make_inputs(root: Path, keys: tuple[str, ...], steps: dict[str, int]) -> None:
    """Tokenizer, the short and long datasets (keys drawn from `keys`), the mixture and the training
    config under root."""
    root.mkdir(parents=True, exist_ok=True)
    build_tokenizer(root / "tokenizer.json")
    rng = random.Random(0)
    for name, length, count in (("short", SHORT, 8000), ("long", LONG, 1500)):
        # lengths vary so the passkey-to-question distance covers the whole window
        docs = [passkey.passkey_document(rng, rng.randrange(length // 3, length + 1), keys) for _ in range(count)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        kanana("preprocess", "--input", str(root / f"{name}.jsonl"), "--tokenizer", str(root / "tokenizer.json"),
               "--output-prefix", str(root / "data" / name), "--workers", "1", "--append-eod", "--overwrite")
    batch = 16
    mixture = {"data_root": str(root / "data"), "stages": [
        {"name": "short", "tokens": steps["short"] * batch * SHORT,
         "sources": [{"path": "short", "category": "short", "weight": 1.0}]},
        {"name": "long", "tokens": steps["long"] * batch * LONG, "seq_length": LONG,
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


def score(checkpoint: Path, shape, examples: dict[int, list[tuple[str, str]]], tokenizer
          ) -> tuple[dict[str, float], dict[int, list[int]]]:
    """Per prompt length N: `key@N`, the share of prompts whose key is the greedy next token, and
    `beyond@N` (N > the original window), the share of the prompt's own tokens at positions past
    the original window that are the greedy next token (the filler is predictable, so this shows
    whether attention still works there). Also, per length, whether each prompt's key was greedy."""
    import torch

    from megatron_kanana.mcore import checkpoint as mcore_ckpt, model as mcore_model, scoring
    from megatron_kanana.parallel import ParallelConfig

    parallel = ParallelConfig()
    chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, "cpu"))
    mcore_ckpt.load_model(chunks, checkpoint, strict=True)
    out, hits = {}, {}
    for length, pairs in examples.items():
        rows = [tokenizer.encode(f"{prompt} {key}") for prompt, key in pairs]
        assert all(len(r) == length + 1 for r in rows), "every word is one token"
        ids = torch.tensor(rows)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        # every slot scored: the K = length slots ending at the last one (token_logprobs' contract since d36e49a)
        last = torch.full((len(rows),), length - 1, dtype=torch.long)
        _, greedy, _ = scoring.token_logprobs(chunks, inputs, targets, last)
        key_greedy = greedy[:, -passkey.KEY_LENGTH:].all(dim=1)
        hits[length] = key_greedy.int().tolist()
        out[f"key@{length}"] = key_greedy.float().mean().item()
        if length > SHORT:
            out[f"beyond@{length}"] = greedy[:, SHORT:-passkey.KEY_LENGTH].float().mean().item()
    return out, hits


def task_prompts() -> dict[int, list[tuple[str, str]]]:
    """The held-out prompts: the documents of the local tasks kanana_passkey_N (seed 12345, not the
    training documents' seed; tools/build_passkey_task.py), so `kanana eval` scores the same ones."""
    out = {}
    for n in EVAL_LENGTHS:
        lines = (TASKS / "kanana_passkey" / f"test_{n}.jsonl").read_text(encoding="utf-8").splitlines()
        out[n] = [(doc["prompt"], doc["key"]) for doc in map(json.loads, lines)]
    return out


def under_rope(source: Path, target_model: dict, directory: Path) -> Path:
    """A checkpoint of `source`'s weights (linked, not copied) whose kanana.json gives the model
    `target_model`'s RoPE and window: the stage-1 weights under the extension's YaRN, for `kanana eval`."""
    from megatron_kanana.checkpointing import layout

    directory.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != layout.META and not (directory / item.name).exists():
            (directory / item.name).symlink_to(item.resolve())
    meta = layout.read_meta(source)
    meta["model"] = {**meta["model"], **{k: target_model[k] for k in ("rope_scaling", "max_position_embeddings")}}
    layout.write_meta(directory, meta)
    return directory


def kanana_eval_rows(root: Path, checkpoints: dict[str, Path]
                     ) -> tuple[dict[str, dict[str, float]], dict[str, dict[int, list[int]]]]:
    """key@N of each row through `kanana eval --tasks kanana_passkey` (lm-eval's loglikelihood `acc`:
    every key token greedy) at --max-length 512, so the stage-1 model is scored past its window
    too; and each prompt's `acc` from lm-eval's per-sample log, in document order."""
    rows, hits = {}, {}
    for name, checkpoint in checkpoints.items():
        output, samples = root / f"eval_{checkpoint.name}.json", root / f"eval_{checkpoint.name}_samples"
        if not output.exists():
            kanana("eval", str(checkpoint), "--tasks", "kanana_passkey", "--include-path", str(TASKS),
                   "--max-length", str(LONG), "--batch-size", "16", "--bootstrap-iters", "0",
                   "--output", str(output), "--log-samples", str(samples))
        results = json.loads(output.read_text())["results"]
        rows[name] = {f"key@{n}": results[f"kanana_passkey_{n}"]["acc,none"] for n in EVAL_LENGTHS}
        hits[name] = {}
        for n in EVAL_LENGTHS:
            docs = map(json.loads, (samples / f"samples_kanana_passkey_{n}.jsonl").read_text().splitlines())
            hits[name][n] = [int(d["acc"]) for d in sorted(docs, key=lambda d: d["doc_id"])]
    return rows, hits


def print_table(rows: dict[str, dict[str, float]], title: str) -> None:
    columns = list(next(iter(rows.values())))
    print(f"{title:<30}" + "".join(f"{c:>12}" for c in columns))
    for name, r in rows.items():
        print(f"{name:<30}" + "".join(f"{r[c]:>12.3f}" for c in columns))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/kanana_passkey_miniature"))
    p.add_argument("--num-keys", type=int, default=len(passkey.KEY_TOKENS),
                   help="train and score on the first N keys (10-99); below 90 the held-out prompts are "
                        "generated (same seed) and `kanana eval` is not run (its task has all 90)")
    p.add_argument("--short-steps", type=int, default=STEPS["short"], help="steps of stage 1")
    args = p.parse_args()
    keys, steps = passkey.KEY_TOKENS[:args.num_keys], {**STEPS, "short": args.short_steps}
    full = keys == passkey.KEY_TOKENS
    root = args.workdir.resolve()
    start = time.time()
    if not (root / "train.yaml").exists():
        make_inputs(root, keys, steps)
    run = root / "run"
    total = sum(steps.values())
    if not (run / "checkpoints" / f"iter_{total:07d}").exists():
        kanana("train", str(root / "train.yaml"), "--nproc", "1",
               f"data.stage_steps={{short: {steps['short']}, long: {steps['long']}}}")
    trained = time.time() - start

    from megatron_kanana.checkpointing import layout
    from megatron_kanana.data.tokenizer import load_tokenizer
    # megatron's model modules are imported before runtime.initialize installs its CPU stand-ins
    # (as every worker does): imported after, torch.compile's decorators refuse the stand-ins
    from megatron_kanana.mcore import model as _model, runtime, scoring as _scoring  # noqa: F401
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel import ParallelConfig

    tokenizer = load_tokenizer(root / "tokenizer.json")
    examples = task_prompts() if full else passkey.held_out(64, EVAL_LENGTHS, 12345, keys)
    checkpoints = run / "checkpoints"
    before_dir, after_dir = checkpoints / f"iter_{steps['short']:07d}", checkpoints / f"iter_{total:07d}"
    before_meta, after_meta = layout.read_meta(before_dir), layout.read_meta(after_dir)
    before, after = ModelShape.from_dict(before_meta["model"]), ModelShape.from_dict(after_meta["model"])
    runtime.initialize(ParallelConfig(), before, seed=1)
    scores = {"before (stage 1, plain RoPE)": score(before_dir, before, examples, tokenizer),
              "YaRN, no training": score(before_dir, after, examples, tokenizer),
              "after (extension stage)": score(after_dir, after, examples, tokenizer)}
    runtime.shutdown()
    rows = {name: r for name, (r, _) in scores.items()}
    scored = time.time()
    summary = {"accuracy": rows, "prompts_per_length": len(examples[SHORT]), "num_keys": len(keys),
               "steps": steps, "window_before": SHORT, "window_after": LONG, "rope_after": YARN}
    print_table(rows, "accuracy")
    if full:
        yarn_dir = under_rope(before_dir, after_meta["model"], root / "stage1_under_yarn")
        via_eval, eval_hits = kanana_eval_rows(root, dict(zip(rows, (before_dir, yarn_dir, after_dir))))
        same = all(eval_hits[name] == hits for name, (_, hits) in scores.items())  # prompt by prompt
        summary.update(kanana_eval=via_eval, kanana_eval_same_per_prompt=same)
        print_table(via_eval, "kanana eval (kanana_passkey)")
        print(f"kanana eval's acc equals key@N prompt by prompt (3 rows x 3 lengths x 64): {same}")
    summary.update(train_seconds=round(trained, 1), kanana_eval_seconds=round(time.time() - scored, 1),
                   seconds=round(time.time() - start, 1))
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['seconds']} s ({summary['train_seconds']} s inputs + training, "
          f"{summary['kanana_eval_seconds']} s kanana eval); {root / 'summary.json'}")


if __name__ == "__main__":
    main()
