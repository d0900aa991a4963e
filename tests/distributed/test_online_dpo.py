"""Online DPO end to end on CPU processes: prompts → responses sampled by the policy's own
KV-cached generation on a duplicate-groups copy → rewards from the trained reward model →
best-vs-worst pairs → DPO against the frozen reference.

The asynchronous run (TP=2) samples step k+1 while step k trains, so every step after the
first trains on responses one update old (staleness 1); the synchronous run (PP=2) samples
then trains (staleness 0). Both start from the same weights, prompts and sampling seed, so
their first steps — generation, scoring, pairing and the DPO loss at two different layouts —
agree; after that the asynchronous run trains on older samples, by design."""
import json
import math
from pathlib import Path

import pytest

from tests.distributed.conftest import SEQ
from tests.distributed.launch import kanana
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed


def online_run(root: Path, reward: Path, name: str, steps: int, *overrides: str) -> tuple[Path, str]:
    run = root / name
    config = write_config(root, run, parallel={"tensor_model_parallel_size": 2},
                          data={"mixture": None, "micro_batch_size": 4, "global_batch_size": 8},
                          checkpoint={"load": str(root / "base"), "load_optimizer": False},
                          schedule={"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 1},
                          online_dpo={"prompts": [str(root / "train.jsonl")], "reward_model": str(reward),
                                      "seq_length": SEQ, "max_new_tokens": 12, "num_samples": 4,
                                      "train_steps": steps})
    proc = kanana("train", str(config), "--nproc", "2", *overrides)
    return run, proc.stdout + proc.stderr


def train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_online_dpo_async_at_tp2_and_sync_at_pp2(preference_root, reward_run):
    asynchronous, log = online_run(preference_root, reward_run, "online_tp2", 4)
    assert "prompts read" in log and "skipped" in log  # the prompt report (too-long prompts are counted)
    check_curve("online_dpo_tp2_async", asynchronous)
    records = train_records(asynchronous)
    assert [r["staleness"] for r in records] == [0, 1, 1, 1]
    first = records[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at step 1: every margin 0
    for r in records:
        assert 0 < r["response_length"] <= 12 and 0 <= r["finished_fraction"] <= 1
        assert r["generation_seconds"] > 0 and math.isfinite(r["sample_reward"])
    assert records[-1]["reward_margin"] != 0  # the policy has left the reference
    saved = json.loads((asynchronous / "checkpoints" / "iter_0000004" / "kanana.json").read_text())
    assert saved["model_kind"] == "lm"  # an online-DPO checkpoint is a policy, loadable anywhere an LM is

    synchronous, _ = online_run(preference_root, reward_run, "online_pp2", 2, "online_dpo.max_staleness=0",
                                "parallel.tensor_model_parallel_size=1", "parallel.pipeline_model_parallel_size=2")
    check_curve("online_dpo_pp2_sync", synchronous)
    sync = train_records(synchronous)
    assert [r["staleness"] for r in sync] == [0, 0]
    for key in ("sample_reward", "best_worst_gap", "response_length", "grad_norm"):
        assert sync[0][key] == pytest.approx(first[key], rel=1e-4, abs=1e-6), key


def test_a_language_model_as_reward_model_is_a_clear_error(preference_root):
    """online_dpo.reward_model pointing at an LM checkpoint: exit 2 naming the problem, no traceback."""
    import subprocess
    import sys

    from tests.distributed.launch import cpu_env

    root = preference_root
    config = write_config(root, root / "online_bad", data={"mixture": None, "micro_batch_size": 4,
                                                            "global_batch_size": 8},
                          checkpoint={"load": str(root / "base"), "load_optimizer": False},
                          online_dpo={"prompts": [str(root / "train.jsonl")], "reward_model": str(root / "base"),
                                      "seq_length": SEQ, "max_new_tokens": 12, "train_steps": 2})
    proc = subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "train", str(config)], env=cpu_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "is not a reward-model checkpoint" in proc.stderr and "Traceback" not in proc.stderr
