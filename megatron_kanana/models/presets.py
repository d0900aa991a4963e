"""Named Kanana model presets.

Published: `kanana-nano-2.1b` (the Hugging Face config of
kakaocorp/kanana-nano-2.1b-base). Inferred, not published: `kanana-8b` (Llama-3-8B
shape; the blog says untied), `kanana-essence-9.8b` (that shape at 40 layers
after depth up-scaling), and the pruned tiers `kanana-4.5b`, `kanana-1.3b`
(TR Table 16's best 1.3B candidate) and `kanana-635m`: all 32 layers with 8 KV
heads of dim 128, widths inferred from the paper's lineage 8B → 4.5B → 2.1B →
1.3B → 635M. The `tiny-*` presets are for tests and the demo.
"""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.shape import ModelShape


def _kanana(hidden: int, ffn: int, heads: int, *, layers: int = 32, tied: bool) -> ModelShape:
    return ModelShape(hidden_size=hidden, num_layers=layers, num_attention_heads=heads,
                      num_query_groups=8, kv_channels=128, ffn_hidden_size=ffn, tie_embeddings=tied)


PRESETS: dict[str, ModelShape] = {
    "kanana-8b": _kanana(4096, 14336, 32, tied=False),
    "kanana-essence-9.8b": _kanana(4096, 14336, 32, layers=40, tied=False),
    "kanana-4.5b": _kanana(3072, 9216, 32, tied=False),
    "kanana-nano-2.1b": _kanana(1792, 8064, 24, tied=True),
    "kanana-1.3b": _kanana(1536, 4608, 24, tied=True),
    "kanana-635m": _kanana(1024, 3072, 16, tied=True),
    # Tiny shapes for tests and the demo. `tiny-nano` keeps Nano's quirk: the
    # query projection (4 × 16 = 64) is wider than the residual stream (48).
    "tiny": ModelShape(hidden_size=64, num_layers=4, num_attention_heads=4, num_query_groups=2,
                       kv_channels=16, ffn_hidden_size=160, vocab_size=512, tie_embeddings=True,
                       max_position_embeddings=256),
    "tiny-nano": ModelShape(hidden_size=48, num_layers=4, num_attention_heads=4, num_query_groups=2,
                            kv_channels=16, ffn_hidden_size=128, vocab_size=512, tie_embeddings=True,
                            max_position_embeddings=256),
    "tiny-untied": ModelShape(hidden_size=64, num_layers=4, num_attention_heads=4, num_query_groups=4,
                              kv_channels=16, ffn_hidden_size=160, vocab_size=512, tie_embeddings=False,
                              max_position_embeddings=256),
    "demo": ModelShape(hidden_size=256, num_layers=4, num_attention_heads=8, num_query_groups=2,
                       kv_channels=32, ffn_hidden_size=704, vocab_size=8192, tie_embeddings=True,
                       max_position_embeddings=512),
}


def get_preset(name: str) -> ModelShape:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None
