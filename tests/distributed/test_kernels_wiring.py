"""Kanana's kernels wired into the model (kernels section) match megatron-core's own modules.

One fp32 step with RMSNorm/SwiGLU through kanana_kernels (PyTorch references)
and the fused LM head (chunked PyTorch algorithm, no [tokens, vocab] logits)
against the same weights on megatron's norm, MLP activation and output layer
-> logits -> loss: losses and every gradient element within 1e-5 of the
largest gradient; identical dist-checkpoint keys; checkpoints load strictly
both ways. Layouts cover the three places the output weight lives: untied
(output_layer.weight), tied on a first+last stage (the word embedding) and tied
on a last-only stage (PP=2: the output layer's copy).
"""
import json

import pytest

from tests.distributed.launch import torchrun

WORKER = "tests/distributed/kernels_wiring_worker.py"
pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("tag,nproc,args", [
    ("tp1_untied", 1, ["--preset", "tiny-untied"]),
    ("tp2_tied", 2, ["--tp", "2", "--preset", "tiny"]),
    ("pp2_tied", 2, ["--pp", "2", "--preset", "tiny"]),
])
def test_kernels_match_megatron_modules(tmp_path, tag, nproc, args):
    torchrun(WORKER, nproc, ["--workdir", str(tmp_path), "--tag", tag, *args], timeout=240)
    got = json.loads((tmp_path / f"{tag}.json").read_text())
    assert got["world_size"] == nproc
    # the "on" model really runs the kernel modules, the "off" model none of them
    assert got["census_on"] == {"KernelRMSNorm": 9, "KernelSwiGLUMLP": 4, "FusedLMHeadOutputLayer": 1}
    assert set(got["census_off"].values()) == {0}
    for key in ("lm loss", "z loss"):
        assert got["losses_on"][key] == pytest.approx(got["losses_off"][key], rel=1e-5)
    assert got["num_grad_tensors"] > 0
    assert got["max_grad_rel_diff"] < 1e-5
    assert got["keys_on"] == got["keys_off"] and len(got["keys_on"]) > 5
    # the unfused path holds whole [tokens, V/tp] logits; the fused head at most one chunk
    assert got["logit_rows_off"] >= got["tokens_per_micro_batch"]
    assert got["logit_rows_on"] <= got["chunk"] < got["tokens_per_micro_batch"]
