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
    gpt = mem.LayerShape(hidden=h, heads=a, q_width=h, kv_width=h, ffn=4 * h, gated=False, dropout=True, flash=False,
                         rope=False)
    assert mem.layer_activation_bytes(gpt, s, b, t, sp, selective) == pytest.approx(
        mem.korthikanti_layer_bytes(s, b, h, a, t, sp, selective))


def test_kanana_8b_layer_by_hand():
    # h=4096, q=4096, kv=1024, f=14336, SwiGLU, flash, RoPE, s=8192, b=1, t=1, bf16:
    # replicated 2·2sbh + 2sbh + 2sbh = 8sbh; Q,K,V,proj-in 2sb(4096) + 4sb(1024) + 2sb(4096) = 20480·sb;
    # the fused QKV output's Q and K parts kept by V's view 2sb(4096 + 1024) = 10240·sb;
    # lse 4·32·sb; MLP 6·14336·sb
    sb = 8192
    expected = sb * (8 * 4096 + 20480 + 10240 + 4 * 32 + 6 * 14336)
    assert mem.layer_activation_bytes(mem.LayerShape.of(get_preset("kanana-8b")), 8192, 1) == expected


def test_tiny_cpu_layer_by_hand():
    # tiny (h=64, q=64, kv=32, f=160, 4 heads), megatron's local spec on CPU in fp32, s=256, b=32:
    # per token, elements: norms' inputs, x·rsqrt and outputs 6h = 384; Q, K, V, proj-in, and the
    # QKV output's Q + K parts 2q + 2kv + (q + kv) = 288; unfused glu 4f + FC2 in f = 800;
    # lse 4 heads (fp32). The autograd graph of that run keeps 1478 elements a token (the two
    # norms' rsqrt rows are the other 2).
    layer = mem.LayerShape.of(get_preset("tiny"), fused_ops=False)
    per_token = 384 + 288 + 800 + 4
    assert mem.layer_activation_bytes(layer, 256, 32, dtype_bytes=4) == 4 * 256 * 32 * per_token
    assert per_token == 1476


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
    layer_input = 2 * s * b * 4096
    uniform = mem.Recompute("full", "uniform", 1)
    assert mem.stored_bytes(layer, 32, s, b, 1, False, uniform) == 32 * layer_input
    assert mem.backward_stored_bytes(layer, 32, s, b, 1, False, uniform) == 32 * layer_input + full_layer
    block = mem.Recompute("full", "block", 8)
    assert mem.stored_bytes(layer, 32, s, b, 1, False, block) == 8 * layer_input + 24 * full_layer
    # the 24 stored layers are back-propagated and freed before the first recomputation
    assert mem.backward_stored_bytes(layer, 32, s, b, 1, False, block) == 8 * layer_input + 24 * full_layer
    all_blocks = mem.Recompute("full", "block", 32)
    assert mem.backward_stored_bytes(layer, 32, s, b, 1, False, all_blocks) == 32 * layer_input + full_layer
    none = mem.stored_bytes(layer, 32, s, b, 1, False, mem.Recompute())
    assert none == 32 * full_layer > mem.stored_bytes(layer, 32, s, b, 1, False, block)
    assert mem.backward_stored_bytes(layer, 32, s, b, 1, False, mem.Recompute()) == none


def test_full_recompute_peak_is_layer_inputs_plus_one_layers_working_set():
    # fused head (a small loss working set): the peak is the last layer's backward, with every
    # layer's input stored, that layer recomputed, the incoming gradient 2sbh and fc1's 2·2sbf
    layer = mem.LayerShape.of(get_preset("kanana-8b"))
    s, b, h, f = 8192, 1, 4096, 14336
    head = mem.LossHead(vocab=128256, fused=True, chunk_tokens=1024)
    peak = mem.peak_activation_bytes(layer, 32, s, b, 1, False, mem.Recompute("full", "uniform", 1), 1, head)
    assert peak == {"activations": 32 * 2 * s * b * h + mem.layer_activation_bytes(layer, s, b),
                    "transient": 2 * s * b * h + 2 * s * b * 2 * f}


def test_no_recompute_unfused_peak_is_at_the_loss():
    # tiny on CPU (fp32), the benchmark's case: 4 stored layers + the head's input (last layer's
    # output, x·rsqrt, normed) + three fp32 [tokens, vocab] tensors; measured 238.9 MiB
    layer = mem.LayerShape.of(get_preset("tiny"), fused_ops=False)
    s, b, v = 256, 32, 512
    head = mem.LossHead(vocab=v, fused=False)
    peak = mem.peak_activation_bytes(layer, 4, s, b, 1, False, mem.Recompute(), 1, head, dtype_bytes=4)
    assert peak == {"activations": 4 * 4 * s * b * 1476 + 4 * 3 * s * b * 64, "transient": 12 * s * b * v}
    assert sum(peak.values()) / 2 ** 20 == pytest.approx(238.5, abs=0.05)


def test_pipeline_peak_takes_the_busier_of_first_and_last_stage():
    layer = mem.LayerShape.of(get_preset("kanana-8b"))
    s, b = 8192, 1
    head = mem.LossHead(vocab=128256, fused=False)
    stored = mem.stored_bytes(layer, 8, s, b, 1, False, mem.Recompute())
    first = 4 * stored + mem.backward_transient_bytes(layer, s, b, 1, False)
    last = stored + mem.head_input_bytes(layer, s, b, 1, False) + mem.logits_bytes(s, b, 128256, 1, False)
    peak = mem.peak_activation_bytes(layer, 8, s, b, 1, False, mem.Recompute(), 4, head)
    assert sum(peak.values()) == pytest.approx(max(first, last))


def test_logits_fused_vs_unfused():
    # unfused, bytes a logit: bf16 forward 2 (logits) + 4 (fp32 copy) + 4 (− max) + 4 (exp) = 14;
    # fp32 forward has no copy: 12, as does the backward (exp + gather's fp32 logits + its gradient)
    assert mem.logits_bytes(8192, 1, 128256, 2, fused=False) == 14 * 8192 * 128256 / 2
    assert mem.logits_bytes(8192, 1, 128256, 2, fused=False, dtype_bytes=4) == 12 * 8192 * 128256 / 2
    # fused: one 1024-token chunk of fp32 logits + its gradient, in any compute dtype
    fused = mem.logits_bytes(8192, 1, 128256, 2, fused=True, chunk_tokens=1024)
    assert fused == 8 * 1024 * 128256 / 2 == mem.logits_bytes(8192, 1, 128256, 2, True, 1024, dtype_bytes=4)
    assert fused < mem.logits_bytes(8192, 1, 128256, 2, fused=False) / 8
