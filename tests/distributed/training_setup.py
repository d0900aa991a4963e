"""Inputs for multi-process training tests: a tokenizer, two indexed datasets
(Korean, English) from the embedded corpus, a two-stage mixture and a config
for the `tiny` preset. Built in a few seconds, no download."""
from __future__ import annotations

from pathlib import Path

import yaml

from megatron_kanana.data.demo_corpus import demo_corpus_files
from megatron_kanana.data.preprocess import preprocess
from tests.unit.data.conftest import build_hf_tokenizer


def make_inputs(root: Path) -> Path:
    """Tokenizer + datasets + mixture under root; returns the mixture path."""
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = build_hf_tokenizer(root / "tokenizer.json", vocab_size=512)
    for path in demo_corpus_files():
        preprocess([str(path)], tokenizer, str(root / "data" / path.stem), workers=1, append_eod=True)
    mixture = {"data_root": str(root / "data"), "stages": [
        {"name": "stage1", "tokens": "16k", "sources": [{"path": "en", "category": "en", "weight": 0.7},
                                                          {"path": "ko", "category": "ko", "weight": 0.3}]},
        {"name": "stage2", "tokens": "8k", "sources": [{"path": "en", "category": "en", "weight": 0.3},
                                                         {"path": "ko", "category": "ko", "weight": 0.7}]},
    ]}
    (root / "mixture.yaml").write_text(yaml.safe_dump(mixture))
    return root / "mixture.yaml"


def write_config(root: Path, run_dir: Path, **sections) -> Path:
    """A tiny-model config (stage1: 8 steps, stage2: 4 steps of 4 × 64 tokens)."""
    config = {
        "run": {"output_dir": str(run_dir), "seed": 7},
        "model": {"preset": "tiny"},
        "data": {"mixture": str(root / "mixture.yaml"), "tokenizer": str(root / "tokenizer.json"),
                 "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4, "split": [90, 10, 0],
                 "eval_samples": 4},
        "schedule": {"lr_decay_style": "cosine", "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 2},
        "checkpoint": {"keep_last": 0},
        "logging": {"log_interval": 1, "tensorboard": False},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
