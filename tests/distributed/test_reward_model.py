"""Reward model end to end: synthetic pairs → preference dataset → `kanana train` with a
`reward` section at TP=2 from a tiny pre-trained checkpoint (session fixtures in conftest.py). The Bradley–Terry loss falls
and held-out pairwise accuracy is well above chance; the saved checkpoint holds the head, and
scoring the held-out pairs from it at TP=1, TP=2 and PP=2 gives the same rewards, whose loss
and accuracy are the ones the trainer's last validation logged."""
import json

import pytest

from tests.distributed.conftest import REWARD_STEPS
from tests.distributed.launch import torchrun

pytestmark = pytest.mark.distributed


def test_reward_model_trains_and_scores_alike_at_every_layout(preference_root, reward_run, tmp_path):
    run, tok = reward_run, str(preference_root / "tokenizer.json")
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    assert len(losses) == REWARD_STEPS and losses[0] == pytest.approx(0.6931, abs=1e-3)  # zero-init head: log 2
    assert sum(losses[-3:]) / 3 < 0.5, losses
    valid = [r for r in records if r.get("kind") == "validation"][-1]["losses"]
    assert valid["pairwise accuracy"] >= 0.85, valid

    torchrun("tests/distributed/reward_worker.py", 2,
             ["--checkpoint", str(run), "--pairs", str(preference_root / "pref_valid"), "--seq-length",
              "64", "--tokenizer", tok, "--out", str(tmp_path)], timeout=180)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        reference = got["tp1"]["rewards"]
        assert len(reference) >= 30 and len(set(reference)) > len(reference) // 2  # trained head: rewards differ per row
        for layout in ("tp2", "pp2"):
            assert got[layout]["rewards"] == pytest.approx(reference, abs=1e-4), layout
        # the reloaded checkpoint reproduces the trainer's own last validation
        assert got["tp1"]["loss"] == pytest.approx(valid["reward loss"], abs=1e-4)
        assert got["tp1"]["accuracy"] == pytest.approx(valid["pairwise accuracy"], abs=1e-6)
