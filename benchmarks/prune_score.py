"""Cost of importance scoring: megatron's forward-only schedule with and without the hooks.

    PYTHONPATH=$PWD:$PWD/kernels KANANA_DEVICE=cpu python benchmarks/prune_score.py [--preset demo --seq 256]

One process (TP=1), randomly initialised weights, random tokens: times the
forward-only schedule over --micro micro-batches with no hooks, then with
`mcore/activations.ActivationRecorder` (Kanana's rules, and with the gate/up
option), interleaved, median of --repeats rounds; prints ms per batch and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from megatron_kanana.mcore import model as mcore_model, runtime, step
from megatron_kanana.mcore.activations import ActivationRecorder
from megatron_kanana.models import get_preset
from megatron_kanana.parallel.config import ParallelConfig
from megatron_kanana.surgery import importance


def _forward(batch_iter, model):
    b = next(batch_iter)
    return model(b["tokens"], b["position_ids"], None), lambda out: (out.sum() * 0, {})


def time_schedule(chunks, batches, mbs, seq, repeats) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            step.run_schedule(chunks, _forward, batches, mbs, seq, forward_only=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--mbs", type=int, default=2)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shape, parallel = get_preset(args.preset), ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=0)
    chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device),
                                     max_sequence_length=args.seq)
    for c in chunks:
        c.eval()
    g = torch.Generator().manual_seed(0)
    batches = [{"tokens": torch.randint(0, shape.vocab_size, (args.mbs, args.seq), generator=g),
                "position_ids": torch.arange(args.seq).expand(args.mbs, args.seq)} for _ in range(args.micro)]
    # interleaved (none, hooks, gate/up hooks) rounds, so load from other jobs hits all alike
    aggs = {"intermediate": importance.Aggregation(), "gate-up-mean": importance.Aggregation(ffn_state="gate-up-mean")}
    runs: dict[str, list[float]] = {"none": [], **{k: [] for k in aggs}}
    time_schedule(chunks, batches, args.mbs, args.seq, 1)  # warm-up
    for _ in range(args.repeats):
        runs["none"].append(time_schedule(chunks, batches, args.mbs, args.seq, 1))
        for name, agg in aggs.items():
            recorder = ActivationRecorder(chunks, shape, agg)
            runs[name].append(time_schedule(chunks, batches, args.mbs, args.seq, 1))
            recorder.remove()
    base = statistics.median(runs["none"])
    print(f"{args.preset} seq {args.seq} x {args.mbs * args.micro} samples: no hooks {1000 * base:.0f} ms (median)")
    for name in aggs:
        hooked = statistics.median(runs[name])
        print(f"  hooks ({name}): {1000 * hooked:.0f} ms, x{hooked / base:.2f}")
    runtime.shutdown()


if __name__ == "__main__":
    main()
