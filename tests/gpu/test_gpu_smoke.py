"""GPU-only checks (skipped without CUDA): the real CUDA path of the mcore layer.

Run on a GPU machine with `make test` or `pytest tests/gpu`; each check runs in a
subprocess so megatron's global state never leaks into the pytest process.
"""
import pytest
import torch

from tests.distributed.launch import python

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SMOKE = r"""
import os, torch
os.environ["KANANA_DEVICE"] = "cuda"
from megatron_kanana.mcore import cpu_backend, model as M, runtime, step
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.training.lm_step import make_forward_step
shape, parallel = get_preset("tiny-nano"), ParallelConfig()
rt = runtime.initialize(parallel, shape, seed=0)
assert rt.device == "cuda" and not cpu_backend.is_enabled()
try:
    cpu_backend.enable()
    raise SystemExit("the CPU backend must refuse to start on a GPU machine")
except RuntimeError:
    pass
chunks = step.wrap_ddp(M.build_model(shape, M.transformer_config(shape, parallel, rt.device)))
opt = step.build_optimizer(chunks, step.OptimizerSettings(lr=1e-3))
tokens = torch.randint(0, shape.vocab_size, (1, 65))
batch = {"tokens": tokens[:, :-1].cuda(), "labels": tokens[:, 1:].cuda(), "loss_mask": torch.ones(1, 64).cuda(),
         "position_ids": torch.arange(64).unsqueeze(0).cuda()}
forward_step = make_forward_step(z_loss_coef=1e-4)
losses = [step.train_step(chunks, opt, forward_step, [batch], 1, 64).loss for _ in range(5)]
assert losses[-1] < losses[0], losses
print("ok", M.transformer_engine_available(), losses)
runtime.shutdown()
"""


def test_bf16_training_steps_on_cuda():
    out = python(["-c", SMOKE], timeout=300)
    assert "ok" in out.stdout
