"""Reward model end to end: `kanana pref-synthetic` → `kanana pref-preprocess` → `kanana train`
with a `reward` section at TP=2 from a tiny pre-trained checkpoint. The Bradley–Terry loss falls
and held-out pairwise accuracy is well above chance; the saved checkpoint holds the head, and
scoring the held-out pairs from it at TP=1, TP=2 and PP=2 gives the same rewards, whose loss
and accuracy are the ones the trainer's last validation logged."""
import json

import pytest

from megatron_kanana.posttrain import preference_synthetic
from megatron_kanana.posttrain.preference_preprocess import preprocess_pairs
from tests.distributed.launch import kanana, torchrun
from tests.distributed.training_setup import make_inputs, write_config

pytestmark = pytest.mark.distributed
STEPS = 12


def test_reward_model_trains_and_scores_alike_at_every_layout(tmp_path):
    make_inputs(tmp_path)
    base = tmp_path / "base"
    kanana("train", str(write_config(tmp_path, base)), "--nproc", "1", "data.stage_steps={stage1: 4, stage2: 2}")
    tok = str(tmp_path / "tokenizer.json")
    for name, num, seed in (("train", 200, 0), ("valid", 40, 1)):  # in-process: the CLIs have unit tests
        preference_synthetic.write_jsonl(str(tmp_path / f"{name}.jsonl"), num, seed)
        preprocess_pairs([str(tmp_path / f"{name}.jsonl")], tok, str(tmp_path / f"pref_{name}"), seq_length=64)
    run = tmp_path / "rm"
    config = write_config(tmp_path, run, parallel={"tensor_model_parallel_size": 2},
                          data={"micro_batch_size": 4, "global_batch_size": 8},  # rows: 2 and 4 pairs
                          checkpoint={"load": str(base), "load_optimizer": False},
                          reward={"data_prefixes": [str(tmp_path / "pref_train")],
                                  "valid_prefixes": [str(tmp_path / "pref_valid")],
                                  "seq_length": 64, "train_steps": STEPS})
    kanana("train", str(config), "--nproc", "2", "data.mixture=null")
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    assert len(losses) == STEPS and losses[0] == pytest.approx(0.6931, abs=1e-3)  # zero-init head: log 2
    assert sum(losses[-3:]) / 3 < 0.5, losses
    valid = [r for r in records if r.get("kind") == "validation"][-1]["losses"]
    assert valid["pairwise accuracy"] >= 0.85, valid

    torchrun("tests/distributed/reward_worker.py", 2,
             ["--checkpoint", str(run), "--pairs", str(tmp_path / "pref_valid"), "--seq-length",
              "64", "--tokenizer", tok, "--out", str(tmp_path)], timeout=180)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        reference = got["tp1"]["rewards"]
        assert len(reference) >= 40 and len(set(reference)) > len(reference) // 2  # trained head: rewards differ per row
        for layout in ("tp2", "pp2"):
            assert got[layout]["rewards"] == pytest.approx(reference, abs=1e-4), layout
        # the reloaded checkpoint reproduces the trainer's own last validation
        assert got["tp1"]["loss"] == pytest.approx(valid["reward loss"], abs=1e-4)
        assert got["tp1"]["accuracy"] == pytest.approx(valid["pairwise accuracy"], abs=1e-6)
