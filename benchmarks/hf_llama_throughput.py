"""The baseline of benchmarks/train_throughput.py: Hugging Face LlamaForCausalLM training steps.

Builds transformers' LlamaForCausalLM at a Kanana model shape (fp32 weights,
attn_implementation="sdpa", bf16 autocast on GPU, torch.optim.AdamW(fused=True),
gradient clipping at 1.0 as the trainer does), runs warm-up + measured steps on
random tokens uniform over the vocabulary, and writes per-step seconds and peak
memory as JSON. train_throughput.py runs it in a subprocess, so the trainer's and
this baseline's GPU memory never share a process; it can also be run alone:

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/hf_llama_throughput.py \
        --preset kanana-nano-2.1b --seq 4096 --steps 20 --warmup 5 --result hf.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]

from megatron_kanana.models.presets import get_preset  # noqa: E402
from megatron_kanana.models.shape import ModelShape  # noqa: E402

GIB = 1024**3


def llama_config(shape: ModelShape):
    """A LlamaConfig of `shape`, with head_dim kept independent of hidden / heads.

    transformers' config validator refuses hidden % heads != 0 even when head_dim is
    given (Nano: 1792 / 24), though the model itself only needs head_dim. So such a
    shape is built with a head count that divides hidden, then given its real one;
    the layers read the attribute when the model is built."""
    from transformers import LlamaConfig

    kwargs = dict(hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
                  num_key_value_heads=shape.num_query_groups, head_dim=shape.kv_channels,
                  intermediate_size=shape.ffn_hidden_size, vocab_size=shape.vocab_size,
                  tie_word_embeddings=shape.tie_embeddings, rope_theta=float(shape.rotary_base),
                  rms_norm_eps=shape.norm_epsilon, max_position_embeddings=shape.max_position_embeddings,
                  initializer_range=shape.init_method_std, attention_bias=False, mlp_bias=False,
                  attn_implementation="sdpa", use_cache=False)
    if shape.hidden_size % shape.num_attention_heads == 0:
        return LlamaConfig(num_attention_heads=shape.num_attention_heads, **kwargs)
    config = LlamaConfig(num_attention_heads=shape.num_query_groups, **kwargs)
    config.num_attention_heads = shape.num_attention_heads
    return config


def peak_memory_gib(device: str) -> tuple[float, str]:
    """(GiB, what was measured): torch.cuda.max_memory_allocated on GPU, peak RSS on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / GIB, "gpu_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, "peak_rss"


def measure(shape: ModelShape, *, seq: int, micro_batch: int, steps: int, warmup: int, device: str,
            seed: int = 1234) -> dict:
    """Seconds of each of warmup + steps training steps (synchronised), and peak memory."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(shape)).to(device)  # fp32 weights, as with autocast training
    parameters = sum(p.numel() for p in model.parameters())
    if parameters != shape.parameters:
        raise RuntimeError(f"the Llama baseline has {parameters:,} parameters, the shape {shape.parameters:,}: "
                           "the two sides would not train the same model")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    on_gpu = device == "cuda"
    seconds, losses = [], []
    for _ in range(warmup + steps):
        ids = torch.randint(0, shape.vocab_size, (micro_batch, seq), device=device, generator=generator)
        _sync(on_gpu)
        start = time.perf_counter()
        # bf16 autocast on GPU; plain fp32 on CPU, as the trainer runs there
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(on_gpu)
        seconds.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    memory, kind = peak_memory_gib(device)
    return {"step_seconds": seconds, "losses": losses, "tokens_per_step": micro_batch * seq,
            "parameters": parameters, "memory_gib": memory, "memory_kind": kind,
            "torch": torch.__version__, "transformers": _transformers_version()}


def _sync(on_gpu: bool) -> None:
    if on_gpu:
        torch.cuda.synchronize()


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="kanana-nano-2.1b")
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="measured steps")
    p.add_argument("--warmup", type=int, default=5, help="steps run first and not measured")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--result", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("hf_llama_throughput: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    result = measure(get_preset(args.preset), seq=args.seq, micro_batch=args.micro_batch, steps=args.steps,
                     warmup=args.warmup, device=args.device)
    out = Path(args.result)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
