"""DPO on CPU processes: the vocab-parallel sequence log-probs, DPO loss and policy-logit
gradient at TP=2 equal the single-process full-vocabulary computation."""
import json

import pytest

from tests.distributed.launch import torchrun

pytestmark = pytest.mark.distributed


def test_vocab_parallel_dpo_matches_single_process(tmp_path):
    torchrun("tests/distributed/dpo_worker.py", 2, ["--out", str(tmp_path)], timeout=120)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["loss"] == pytest.approx(got["expected"], rel=1e-5)
        assert got["logps_error"] <= 1e-5 * got["logps_scale"]
        assert got["grad_scale"] > 0 and got["grad_error"] <= 1e-5 * got["grad_scale"]
