"""The planner's memory formulas against hand-computed values."""
import pytest

from megatron_kanana.models import get_preset
from megatron_kanana.planning import memory as mem


def test_korthikanti_gpt3_layer():
    # GPT-3 175B (s=2048, b=1, h=12288, a=96), the paper's Table 2 setting at t=8:
    # sbh(34 + 5as/h) / t with SP = 2048·12288·(34 + 5·96·2048/12288) / 8 = 2048·12288·114/8
    s, b, h, a = 2048, 1, 12288, 96
    assert mem.korthikanti_layer_bytes(s, b, h, a, t=8, sequence_parallel=True) == 2048 * 12288 * 114 / 8
    assert mem.korthikanti_layer_bytes(s, b, h, a, t=1) == 2048 * 12288 * (34 + 80)
    assert mem.korthikanti_layer_bytes(s, b, h, a, t=8, sequence_parallel=True, selective=True) == 2048 * 12288 * 34 / 8
    assert mem.korthikanti_layer_bytes(s, b, h, a, t=8) == 2048 * 12288 * (10 + 24 / 8 + 80 / 8)


@pytest.mark.parametrize("t,sp,selective", [(1, False, False), (8, False, False), (8, True, False), (8, True, True)])
def test_general_accounting_reduces_to_the_paper_for_its_gpt_layer(t, sp, selective):
    s, b, h, a = 2048, 1, 12288, 96
    gpt = mem.LayerShape(hidden=h, heads=a, q_width=h, kv_width=h, ffn=4 * h, gated=False, dropout=True, flash=False)
    assert mem.layer_activation_bytes(gpt, s, b, t, sp, selective) == pytest.approx(
        mem.korthikanti_layer_bytes(s, b, h, a, t, sp, selective))


def test_kanana_8b_layer_by_hand():
    # h=4096, q=4096, kv=1024, f=14336, SwiGLU, flash, s=8192, b=1, t=1:
    # replicated 2·2sbh + 2sbh + 2sbh = 8sbh; Q,K,V,proj-in 2sb(4096) + 4sb(1024) + 2sb(4096) = 20480·sb;
    # lse 4·32·sb; MLP 6·14336·sb
    sb = 8192
    expected = sb * (8 * 4096 + 20480 + 4 * 32 + 6 * 14336)
    assert mem.layer_activation_bytes(mem.LayerShape.of(get_preset("kanana-8b")), 8192, 1) == expected


def test_8b_parameter_bytes():
    shape = get_preset("kanana-8b")
    params = mem.stage_parameters(shape, tp=1, pp=1)
    assert params == shape.parameters  # one rank holds everything: 8,030,261,248
    assert params == 8_030_261_248
    state = mem.model_state_bytes(params, dp=1, bf16=True, grad_fp32=True, distributed_optimizer=True)
    assert state == {"weights": 2 * params, "gradients": 4 * params, "optimizer": 12 * params}
    assert mem.model_state_bytes(params, 128, True, True, True)["optimizer"] == 12 * params / 128


def test_tp_splits_matmuls_not_norms():
    shape = get_preset("kanana-8b")
    h, v = shape.hidden_size, shape.vocab_size
    per_layer = (shape.layer_parameters - 2 * h) // 2 + 2 * h
    assert mem.stage_parameters(shape, tp=2, pp=1) == 32 * per_layer + 2 * v * h // 2 + h
    assert mem.stage_parameters(shape, tp=2, pp=2) == 16 * per_layer + v * h // 2 + h


def test_full_recompute_keeps_layer_inputs():
    layer = mem.LayerShape.of(get_preset("kanana-8b"))
    s, b = 8192, 1
    full_layer = mem.layer_activation_bytes(layer, s, b)
    uniform = mem.stage_activation_bytes(layer, 32, s, b, 1, False, mem.Recompute("full", "uniform", 1), in_flight=1)
    assert uniform == 32 * 2 * s * b * 4096 + full_layer
    block = mem.stage_activation_bytes(layer, 32, s, b, 1, False, mem.Recompute("full", "block", 8), in_flight=1)
    assert block == 8 * 2 * s * b * 4096 + 24 * full_layer + full_layer  # one layer recomputed at a time
    none = mem.stage_activation_bytes(layer, 32, s, b, 1, False, mem.Recompute(), in_flight=1)
    assert none == 32 * full_layer > block > uniform


def test_logits_fused_vs_unfused():
    assert mem.logits_bytes(8192, 1, 128256, 2, fused=False) == 6 * 8192 * 128256 / 2
    assert mem.logits_bytes(8192, 1, 128256, 2, fused=True, chunk_tokens=1024) == 8 * 1024 * 128256 / 2
