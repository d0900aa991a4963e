"""The parameter-count formula equals a megatron-core GPTModel built from the preset,
at TP=1 and summed over TP=2 ranks (tied and untied, head dim != hidden/heads)."""
import json

import pytest

from tests.distributed.launch import python, torchrun

pytestmark = pytest.mark.distributed
WORKER = "tests/distributed/build_worker.py"
PRESETS = "tiny,tiny-nano,tiny-untied"


def test_counts_match_built_models_single_process(tmp_path):
    out = tmp_path / "tp1.json"
    python([WORKER, "--presets", PRESETS, "--out", str(out)])
    for name, got in json.loads(out.read_text()).items():
        assert got["built"] == got["formula"], name


def test_counts_match_built_models_tp2(tmp_path):
    out = tmp_path / "tp2.json"
    torchrun(WORKER, 2, ["--presets", PRESETS, "--tp", "2", "--out", str(out)])
    for name, got in json.loads(out.read_text()).items():
        assert got["built"] == got["formula"], name
