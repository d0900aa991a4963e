"""GPU benchmark of kanana_kernels against the PyTorch references, at Kanana Nano-2.1B shapes.

For each op and implementation it measures forward and forward+backward time
(median over repeats, CUDA events), peak memory of forward+backward above what
was allocated before the call (torch.cuda.max_memory_allocated), and the error
against the reference (max |diff| / max |reference| over outputs and gradients).
Prints a table and writes JSON (written to a temporary name, then renamed).

Run on a machine with a CUDA GPU, from the repository root:
    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/kernels.py --out benchmarks/results/kernels.json
Exits with status 2 and a message when no GPU is present.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]

import kanana_kernels as kk  # noqa: E402

# Kanana Nano 2.1B (published config); teacher hidden is the 8B's (Llama-3-8B shape) for distillation.
NANO = dict(hidden=1792, heads=24, kv_heads=8, head_dim=128, ffn=8064, vocab=128256, seq=4096, micro_batch=1,
            teacher_hidden=4096, z_loss_coef=5e-6, temperature=1.0)


@dataclass
class Case:
    op: str
    impls: tuple[str, ...]  # the first is the reference the others are compared with
    make: Callable[[], dict]  # tensors; those with requires_grad are the leaves
    forward: Callable[[dict, str], list]  # outputs that receive an upstream gradient


def _cases(chunk_size: int) -> list[Case]:
    n = NANO
    tokens, dev, bf16 = n["seq"] * n["micro_batch"], "cuda", torch.bfloat16

    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, device=dev)).to(bf16).requires_grad_()

    def const(*shape, scale=1.0):
        return (scale * torch.randn(*shape, device=dev)).to(bf16)

    sbh = (n["seq"], n["micro_batch"], n["hidden"])
    cos, sin = kk.rope_cos_sin(n["seq"], n["head_dim"], device=dev)
    attn_impls = ("explicit", "torch") + (("flash_attn",) if kk.attention_backends.flash_attn_available() else ())
    return [
        Case("rms_norm+residual", ("torch", "triton"),
             lambda: dict(x=leaf(*sbh), residual=leaf(*sbh), weight=leaf(n["hidden"])),
             lambda t, impl: list(kk.rms_norm(t["x"], t["weight"], 1e-5, t["residual"], impl=impl))),
        Case("swiglu", ("torch", "triton"),
             lambda: dict(x=leaf(n["seq"], n["micro_batch"], 2 * n["ffn"])),
             lambda t, impl: [kk.swiglu(t["x"], impl=impl)]),
        Case("rope_qk", ("torch", "triton"),
             lambda: dict(q=leaf(n["seq"], n["micro_batch"], n["heads"], n["head_dim"]),
                          k=leaf(n["seq"], n["micro_batch"], n["kv_heads"], n["head_dim"])),
             lambda t, impl: list(kk.apply_rope(t["q"], t["k"], cos, sin, impl=impl))),
        Case("linear_cross_entropy", ("torch", "chunked", "triton"),
             lambda: dict(h=leaf(tokens, n["hidden"]), w=leaf(n["vocab"], n["hidden"], scale=0.02),
                          labels=torch.randint(0, n["vocab"], (tokens,), device=dev)),
             lambda t, impl: list(kk.fused_linear_cross_entropy(
                 t["h"], t["w"], t["labels"], z_loss_coef=n["z_loss_coef"], chunk_size=chunk_size, impl=impl))),
        Case("linear_kl_div", ("torch", "chunked", "triton"),
             lambda: dict(h=leaf(tokens, n["hidden"]), w=leaf(n["vocab"], n["hidden"], scale=0.02),
                          th=const(tokens, n["teacher_hidden"]),
                          tw=const(n["vocab"], n["teacher_hidden"], scale=0.02)),
             lambda t, impl: [kk.fused_linear_kl_div(t["h"], t["w"], t["th"], t["tw"], temperature=n["temperature"],
                                                     chunk_size=chunk_size, impl=impl)]),
        Case("attention_gqa_causal", attn_impls,
             lambda: dict(q=leaf(n["seq"], n["micro_batch"], n["heads"], n["head_dim"]),
                          k=leaf(n["seq"], n["micro_batch"], n["kv_heads"], n["head_dim"]),
                          v=leaf(n["seq"], n["micro_batch"], n["kv_heads"], n["head_dim"])),
             lambda t, impl: [_explicit_attention(t["q"], t["k"], t["v"]) if impl == "explicit"
                              else kk.attention(t["q"], t["k"], t["v"], causal=True, impl=impl)]),
    ]


def _explicit_attention(q, k, v):
    """Unfused attention as megatron-core's local spec computes it: repeated K/V, full score matrix."""
    group = q.shape[2] // k.shape[2]
    k, v = (x.repeat_interleave(group, dim=2) for x in (k, v))
    scores = torch.einsum("sbhd,tbhd->bhst", q, k) / math.sqrt(q.shape[-1])
    mask = torch.ones(q.shape[0], q.shape[0], dtype=torch.bool, device=q.device).triu(1)
    probs = scores.float().masked_fill(mask, float("-inf")).softmax(-1).to(q.dtype)
    return torch.einsum("bhst,tbhd->sbhd", probs, v)


def _leaves(tensors: dict) -> list[torch.Tensor]:
    return [t for t in tensors.values() if isinstance(t, torch.Tensor) and t.requires_grad]


def _step(case: Case, tensors: dict, impl: str, upstream: list | None, backward: bool) -> list:
    for t in _leaves(tensors):
        t.grad = None
    outs = case.forward(tensors, impl)
    if backward:
        torch.autograd.backward(outs, upstream)
    return outs


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _peak_mib(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _relative_error(actual: list, expected: list) -> float:
    worst = 0.0
    for a, e in zip(actual, expected):
        scale = e.float().abs().max().clamp_min(1e-6)
        worst = max(worst, ((a.float() - e.float()).abs().max() / scale).item())
    return worst


def _run_case(case: Case, warmup: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    tensors = case.make()
    ref_outs = _step(case, tensors, case.impls[0], None, backward=False)
    upstream = [torch.randn_like(o, dtype=torch.float32).to(o.dtype) for o in ref_outs]
    rows, expected = [], None
    for impl in case.impls:
        outs = _step(case, tensors, impl, upstream, backward=True)
        got = [o.detach().clone() for o in outs] + [t.grad.clone() for t in _leaves(tensors)]
        del outs
        expected = expected if expected is not None else got
        rows.append(dict(
            op=case.op, impl=impl, max_error=_relative_error(got, expected),
            fwd_ms=_median_ms(lambda: _step(case, tensors, impl, upstream, backward=False), warmup, repeats),
            fwd_bwd_ms=_median_ms(lambda: _step(case, tensors, impl, upstream, backward=True), warmup, repeats),
            peak_mib=_peak_mib(lambda: _step(case, tensors, impl, upstream, backward=True)),
        ))
        del got
    for t in _leaves(tensors):
        t.grad = None
    ref = rows[0]
    for row in rows:
        row["speedup_vs_ref"] = ref["fwd_bwd_ms"] / row["fwd_bwd_ms"]
        row["memory_ratio_vs_ref"] = ref["peak_mib"] / max(row["peak_mib"], 1e-6)
    return rows


def _print_table(rows: list[dict]) -> None:
    header = f"{'op':<22} {'impl':<11} {'fwd ms':>8} {'fwd+bwd ms':>11} {'peak MiB':>9} {'speedup':>8} " \
             f"{'mem ratio':>9} {'max err':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['op']:<22} {r['impl']:<11} {r['fwd_ms']:>8.3f} {r['fwd_bwd_ms']:>11.3f} {r['peak_mib']:>9.1f} "
              f"{r['speedup_vs_ref']:>7.2f}x {r['memory_ratio_vs_ref']:>8.2f}x {r['max_error']:>9.2e}")


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)  # an interrupted run never leaves a complete-looking file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kernels.json",
                        help="JSON results path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs; the median is reported")
    parser.add_argument("--chunk-size", type=int, default=1024, help="token chunk of the fused CE / KL")
    parser.add_argument("--ops", nargs="*", help="subset of ops to run (default: all)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU; none is visible (torch.cuda.is_available() is False). "
              "The kernels are tested on CPU by `pytest tests/kernels` through Triton's interpreter.",
              file=sys.stderr)
        return 2
    if args.warmup < 0 or args.repeats < 1:
        parser.error("--warmup must be >= 0 and --repeats >= 1")
    all_cases = _cases(args.chunk_size)
    cases = [c for c in all_cases if not args.ops or c.op in args.ops]
    unknown = set(args.ops or ()) - {c.op for c in all_cases}
    if unknown:
        parser.error(f"unknown ops: {', '.join(sorted(unknown))}")
    rows = []
    for case in cases:
        rows += _run_case(case, args.warmup, args.repeats)
        torch.cuda.empty_cache()
    _print_table(rows)
    import triton

    _write_json(args.out, dict(
        date=datetime.date.today().isoformat(), device=torch.cuda.get_device_name(),
        torch=torch.__version__, triton=triton.__version__, shape=NANO, chunk_size=args.chunk_size,
        warmup=args.warmup, repeats=args.repeats, results=rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
