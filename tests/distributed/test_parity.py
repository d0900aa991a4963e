"""Parity: one fp32 training step of a tiny model at TP=2, PP=2, DP=2, TP=2×PP=2
and interleaved PP=2×VPP=2 matches the single-process run.

Every run uses the trainer's forward step (vocab-parallel CE + z-loss): the reference
and two layouts the unfused LM head, three layouts the fused one, so each head is
checked against the other as well as each layout against one process.

The reference saves its initial weights and step-1 gradients as dist
checkpoints; every layout loads those weights resharded to itself, runs the
same global batch of 4 sequences, and compares. Tolerance: 1e-5 relative on
the losses and grad norm, 1e-5 of the largest gradient on every gradient
element (fp32 reductions in another order differ by ~1e-7).
"""
import json

import pytest

from tests.distributed.launch import python, torchrun

WORKER = "tests/distributed/parity_worker.py"
pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("parity")
    python([WORKER, "--workdir", str(workdir), "--tag", "ref"], timeout=180)
    return workdir, json.loads((workdir / "ref.json").read_text())


@pytest.mark.parametrize("tag,nproc,layout", [
    ("tp2", 2, ["--tp", "2", "--lm-head", "fused"]),
    ("pp2", 2, ["--pp", "2"]),
    ("dp2", 2, ["--lm-head", "fused"]),
    ("tp2pp2", 4, ["--tp", "2", "--pp", "2", "--lm-head", "fused"]),
    ("pp2vpp2", 2, ["--pp", "2", "--vpp", "2"]),
])
def test_step_matches_single_process(reference, tag, nproc, layout):
    workdir, ref = reference
    torchrun(WORKER, nproc, ["--workdir", str(workdir), "--tag", tag, *layout], timeout=240)
    got = json.loads((workdir / f"{tag}.json").read_text())
    assert got["world_size"] == nproc
    assert got["loss1"] == pytest.approx(ref["loss1"], rel=1e-5)
    assert ref["z_loss1"] > 0 and got["z_loss1"] == pytest.approx(ref["z_loss1"], rel=1e-5)
    assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)
    assert got["num_grad_tensors_compared"] > 0
    assert got["max_grad_rel_diff"] < 1e-5
    # the optimizer step (distributed Adam) moved every layout's weights the same way
    assert got["loss2"] == pytest.approx(ref["loss2"], rel=1e-5)
    assert got["loss2"] < got["loss1"]
