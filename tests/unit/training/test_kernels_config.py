"""The kernels config section: defaults, choices, and errors that name the key."""
import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.kernels_config import KernelsConfig


def test_defaults_turn_the_kernels_on():
    k = KernelsConfig()
    assert (k.rms_norm, k.swiglu, k.rope, k.lm_head_loss, k.lm_head_impl) == \
        ("auto", "auto", "megatron", "fused", "auto")
    assert k.fused_lm_head and k.lm_head_chunk_size == 1024


def test_megatron_only_is_the_baseline():
    k = KernelsConfig.megatron_only()
    assert (k.rms_norm, k.swiglu, k.lm_head_loss) == ("megatron", "megatron", "unfused")
    assert not k.fused_lm_head


def test_from_dict_accepts_every_choice():
    for impl in ("auto", "megatron", "torch", "triton"):
        assert KernelsConfig.from_dict({"rms_norm": impl, "swiglu": impl}).swiglu == impl
    k = KernelsConfig.from_dict({"lm_head_loss": "unfused", "lm_head_impl": "chunked", "lm_head_chunk_size": 256})
    assert (k.lm_head_loss, k.lm_head_impl, k.lm_head_chunk_size) == ("unfused", "chunked", 256)


@pytest.mark.parametrize("data,needle", [
    ({"rms_norm": "cuda"}, "kernels.rms_norm: 'cuda' is not one of"),
    ({"swiglu": "fast"}, "kernels.swiglu: 'fast' is not one of"),
    ({"rope": "triton"}, "kernels.rope: only 'megatron' is wired"),
    ({"lm_head_loss": "yes"}, "kernels.lm_head_loss"),
    ({"lm_head_chunk_size": 0}, "kernels.lm_head_chunk_size must be >= 1"),
    ({"lm_head_chunk_size": "big"}, "kernels.lm_head_chunk_size: expected an integer"),
    ({"fused_norm": True}, "unknown key(s) kernels.fused_norm"),
])
def test_bad_values_name_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        KernelsConfig.from_dict(data, prefix="kernels")
    assert needle in str(e.value)


def test_every_field_is_documented():
    assert all(len(text) > 20 for text in KernelsConfig.help().values())
