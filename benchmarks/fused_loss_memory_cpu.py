"""Peak host memory of the fused LM-head losses vs their full-logits references, on CPU.

The GPU benchmark (benchmarks/kernels.py) measures the Triton kernels; this one
measures the *algorithm* where no GPU is available: the chunked path
(impl="chunked", the same chunking the Triton kernels use, with PyTorch math per
chunk) against the reference that materialises [tokens, vocab] logits. Each case
runs forward + backward in a fresh process, and the figure is the growth of the
process's peak RSS over its RSS once the inputs exist — so weights, inputs and
the interpreter are not counted (the peak mark is reset once they are built: Linux
clear_refs), and a case never inherits another's high-water mark.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/fused_loss_memory_cpu.py --tokens 1024
    # Kanana Nano shapes: hidden 1792 (student), 4096 (8B teacher), vocabulary 128,256, fp32
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = [("linear_cross_entropy", "torch"), ("linear_cross_entropy", "chunked"),
         ("linear_kl_div", "torch"), ("linear_kl_div", "chunked")]


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets the peak-RSS mark (VmHWM) to the current RSS, so
    # building the inputs (randn temporaries of several GB) is not mistaken for the op's peak
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_case(op: str, impl: str, tokens: int, hidden: int, teacher_hidden: int, vocab: int, chunk: int) -> dict:
    import torch
    import kanana_kernels as kk

    torch.manual_seed(0)
    h = (torch.randn(tokens, hidden) * 0.5).requires_grad_()
    w = (torch.randn(vocab, hidden) * 0.02).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,))
    th, tw = torch.randn(tokens, teacher_hidden) * 0.5, torch.randn(vocab, teacher_hidden) * 0.02
    _reset_peak()
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    if op == "linear_cross_entropy":
        ce, z = kk.fused_linear_cross_entropy(h, w, labels, z_loss_coef=5e-6, chunk_size=chunk, impl=impl)
        loss = (ce + z).mean()
    else:
        loss = kk.fused_linear_kl_div(h, w, th, tw, temperature=1.0, chunk_size=chunk, impl=impl).mean()
    loss.backward()
    seconds = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    return {"op": op, "impl": impl, "peak_growth_mib": round(peak - before, 1), "seconds": round(seconds, 2),
            "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=1792)
    parser.add_argument("--teacher-hidden", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--case", nargs=2, metavar=("OP", "IMPL"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    shape = (args.tokens, args.hidden, args.teacher_hidden, args.vocab, args.chunk_size)
    if args.case:
        print(json.dumps(run_case(*args.case, *shape)))
        return
    results = []
    for op, impl in CASES:
        cmd = [sys.executable, __file__, "--case", op, impl, "--tokens", str(args.tokens), "--hidden",
               str(args.hidden), "--teacher-hidden", str(args.teacher_hidden), "--vocab", str(args.vocab),
               "--chunk-size", str(args.chunk_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    print(f"\ntokens {args.tokens}, hidden {args.hidden}/{args.teacher_hidden}, vocab {args.vocab}, "
          f"chunk {args.chunk_size}, fp32, CPU")
    print(f"{'op':22} {'impl':8} {'peak growth MiB':>16} {'ratio':>7} {'s':>7}")
    for r in results:
        ref = next(x for x in results if x["op"] == r["op"] and x["impl"] == "torch")
        print(f"{r['op']:22} {r['impl']:8} {r['peak_growth_mib']:16.1f} "
              f"{ref['peak_growth_mib'] / r['peak_growth_mib']:7.2f} {r['seconds']:7.2f}")


if __name__ == "__main__":
    main()
