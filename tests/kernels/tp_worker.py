"""Two-rank (gloo) check that the vocab-parallel losses equal the single-process ones.

Run by test_linear_loss_tp.py as a subprocess with a timeout:
    python tests/kernels/tp_worker.py INIT_FILE
Each rank holds half of the output weight's rows (its vocab shard) and the same
hidden states and labels; every implementation at TP=2 must reproduce the
single-process reference on the full weight: per-token values, grad_hidden, and
this rank's slice of grad_weight. Any mismatch raises, and the exit code is non-zero.
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kanana_kernels import fused_linear_cross_entropy, fused_linear_kl_div
from tests.kernels.tolerance import assert_close

WORLD = 2
# (vocab, tokens, hidden, teacher hidden, chunk): a small odd case, and Llama-3's 128,256 vocabulary.
CASES = [(64, 13, 24, 12, 5), (128256, 3, 8, 6, 2)]
IMPLS = ("triton", "chunked", "torch")


def _inputs(vocab, tokens, hidden, teacher_hidden):
    g = torch.Generator().manual_seed(vocab + tokens)
    labels = torch.randint(0, vocab, (tokens,), generator=g)
    labels[0] = -100
    return dict(hidden=torch.randn(tokens, hidden, generator=g),
                weight=torch.randn(vocab, hidden, generator=g) / hidden ** 0.5,
                labels=labels,
                t_hidden=torch.randn(tokens, teacher_hidden, generator=g),
                t_weight=torch.randn(vocab, teacher_hidden, generator=g) / teacher_hidden ** 0.5,
                g_loss=torch.rand(tokens, generator=g), g_z=torch.rand(tokens, generator=g))


def _ce(x, weight, group, impl, chunk):
    h, w = x["hidden"].clone().requires_grad_(), weight.clone().requires_grad_()
    loss, z = fused_linear_cross_entropy(h, w, x["labels"], z_loss_coef=1e-3, chunk_size=chunk,
                                         tp_group=group, impl=impl)
    ((loss * x["g_loss"]).sum() + (z * x["g_z"]).sum()).backward()
    return loss, z, h.grad, w.grad


def _kl(x, weight, t_weight, group, impl, chunk):
    h, w = x["hidden"].clone().requires_grad_(), weight.clone().requires_grad_()
    kl = fused_linear_kl_div(h, w, x["t_hidden"], t_weight, temperature=1.5, chunk_size=chunk,
                             tp_group=group, impl=impl)
    (kl * x["g_loss"]).sum().backward()
    return kl, h.grad, w.grad


def _check_case(rank, group, vocab, tokens, hidden, teacher_hidden, chunk):
    x = _inputs(vocab, tokens, hidden, teacher_hidden)
    shard = slice(rank * vocab // WORLD, (rank + 1) * vocab // WORLD)
    ce_full = _ce(x, x["weight"], None, "torch", chunk)
    kl_full = _kl(x, x["weight"], x["t_weight"], None, "torch", chunk)
    for impl in IMPLS:
        where = f"rank {rank} vocab {vocab} impl {impl}"
        ce = _ce(x, x["weight"][shard], group, impl, chunk)
        for name, a, e in zip(("loss", "z_loss", "grad_hidden"), ce, ce_full):
            assert_close(a, e, torch.float32, f"{where} CE {name}")
        assert_close(ce[3], ce_full[3][shard], torch.float32, f"{where} CE grad_weight")
        kl = _kl(x, x["weight"][shard], x["t_weight"][shard], group, impl, chunk)
        assert_close(kl[0], kl_full[0], torch.float32, f"{where} KL")
        assert_close(kl[1], kl_full[1], torch.float32, f"{where} KL grad_hidden")
        assert_close(kl[2], kl_full[2][shard], torch.float32, f"{where} KL grad_weight")


def _rank_main(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        group = dist.new_group(list(range(WORLD)))
        for case in CASES:
            _check_case(rank, group, *case)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/kernels/tp_worker.py INIT_FILE")
    torch.set_num_threads(1)
    mp.spawn(_rank_main, args=(sys.argv[1],), nprocs=WORLD)
    print("tp_worker: all cases match")
