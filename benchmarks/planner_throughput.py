"""The planner's throughput estimate against published runs (figures from
/work/shared/reference/anchors.md; no network).

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/planner_throughput.py

Approximations, stated: NeMo's CP=2 is planned as DP (the planner has no CP term; CP's
KV exchange overlaps with attention in TE); llm-foundry's FSDP as the distributed optimizer;
MPT's GELU MLP (8h² parameters) as a SwiGLU of ffn = 8h/3 (the same parameters and FLOPs)
with ALiBi/no RoPE ignored. MFU here is the planner's (ModelShape.flops_per_token, causal).
"""
from __future__ import annotations

from megatron_kanana.models import get_preset
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.planning.hardware import GPUS
from megatron_kanana.planning.plan import Job, Layout, estimate


def mpt(hidden: int, layers: int, heads: int) -> ModelShape:
    return ModelShape(hidden_size=hidden, num_layers=layers, num_attention_heads=heads, num_query_groups=heads,
                      kv_channels=hidden // heads, ffn_hidden_size=round(8 * hidden / 3), vocab_size=50368,
                      max_position_embeddings=4096)


# (name, shape, seq, global batch, layout, fp8, published tokens/s/GPU)
RUNS = [
    ("NeMo 24.09 Llama-3 8B bf16, 8 H100, TP1 PP1 CP2", get_preset("kanana-8b"), 8192, 128, Layout(), False, 10153),
    ("NeMo 24.09 Llama-3 8B FP8, 8 H100", get_preset("kanana-8b"), 8192, 128, Layout(), True, 13554),
    ("llm-foundry MPT-1B seq 2048, 8 H100", mpt(2048, 24, 16), 2048, 512, Layout(), False, 45455),
    ("llm-foundry MPT-1B seq 4096, 8 H100", mpt(2048, 24, 16), 4096, 256, Layout(), False, 38535),
    ("llm-foundry MPT-3B seq 4096, 8 H100", mpt(2560, 32, 32), 4096, 256, Layout(), False, 20964),
]


def main() -> None:
    print(f"{'run':52} {'published':>10} {'planned':>9} {'error':>7} {'planned MFU':>12}")
    for name, shape, seq, gbs, layout, fp8, published in RUNS:
        job = Job(shape=shape, seq_length=seq, micro_batch_size=1, global_batch_size=gbs, layout=layout, fp8=fp8)
        row = estimate(job, layout, GPUS["h100"], 8)
        err = row.tokens_per_s_per_gpu / published - 1
        print(f"{name:52} {published:>10,} {row.tokens_per_s_per_gpu:>9,.0f} {err:>+7.1%} {row.mfu:>12.1%}")


if __name__ == "__main__":
    main()
