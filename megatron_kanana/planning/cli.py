"""`kanana plan CONFIG [--gpus N] [--gpu h100|h200|a100] [--json] [dotted.key=value ...]`:
per-GPU memory and estimated throughput of a training config, and the best layouts for the
same GPU count. Exit 2 on a bad config; the plan itself never starts a process.
"""
from __future__ import annotations

import argparse
import json
import sys

from megatron_kanana.config.section import ConfigError
from megatron_kanana.planning.hardware import COMPUTE_EFFICIENCY, GIB, GPUS
from megatron_kanana.planning.plan import Job, Row, alternatives, estimate, layout_problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config YAML")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides (values parsed as YAML)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPU count (default: parallel.planned_num_gpus, else TP × PP)")
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h100")
    parser.add_argument("--efficiency", type=float, default=COMPUTE_EFFICIENCY,
                        help=f"fraction of the bf16 peak the GEMMs reach (default {COMPUTE_EFFICIENCY})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def planned_gpus(cfg, gpus=None) -> int:
    return gpus or cfg.parallel.planned_num_gpus or cfg.parallel.model_parallel_size


def plan_config(cfg, gpu_name: str = "h100", num_gpus=None, efficiency: float = COMPUTE_EFFICIENCY) -> Row:
    """The config's own layout; a ConfigError when it cannot run at this GPU count."""
    from megatron_kanana.parallel.config import check_layout

    num_gpus = planned_gpus(cfg, num_gpus)
    check_layout(cfg.parallel, cfg.model, num_gpus, device="cuda")
    job = Job.from_config(cfg)
    problem = layout_problem(job, job.layout, num_gpus)
    if problem:
        raise ConfigError(f"parallel: {problem}")
    return estimate(job, job.layout, GPUS[gpu_name], num_gpus, efficiency)


def memory_line(row: Row, gpu_name: str) -> str:
    gpu = GPUS[gpu_name]
    terms = ", ".join(f"{k} {v / GIB:.1f}" for k, v in row.memory.items())
    verdict = "fits" if row.fits else "DOES NOT FIT"
    return (f"plan: {row.layout.label()} DP{row.dp} on {row.num_gpus} × {gpu.name}: {row.total_memory / GIB:.1f} GiB "
            f"per GPU ({terms}) — {verdict} in {gpu.usable_memory / GIB:.1f} GiB usable; "
            f"~{row.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, MFU {row.mfu:.1%}")


def table(rows: list[tuple[str, Row]]) -> str:
    head = f"{'':10} {'layout':44} {'DP':>4} {'GiB/GPU':>8} {'fits':>5} {'step s':>7} {'tok/s/GPU':>10} {'MFU':>6}"
    lines = [head, "-" * len(head)]
    for tag, r in rows:
        lines.append(f"{tag:10} {r.layout.label():44} {r.dp:>4} {r.total_memory / GIB:>8.1f} "
                     f"{'yes' if r.fits else 'NO':>5} {r.step.total:>7.2f} {r.tokens_per_s_per_gpu:>10,.0f} "
                     f"{r.mfu:>6.1%}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from megatron_kanana.config.root import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        row = plan_config(cfg, args.gpu, args.gpus, args.efficiency)
    except ConfigError as e:
        print(f"kanana plan: config error: {e}", file=sys.stderr)
        return 2
    best = alternatives(Job.from_config(cfg), GPUS[args.gpu], row.num_gpus, args.efficiency)
    if args.json:
        print(json.dumps({"gpu": args.gpu, "num_gpus": row.num_gpus, "efficiency": args.efficiency,
                          "config": row.to_dict(), "alternatives": [r.to_dict() for r in best]}, indent=1))
        return 0
    print(memory_line(row, args.gpu))
    b = row.step
    print(f"step {b.total:.2f} s = compute {b.compute:.2f} + bubble {b.bubble:.2f} + TP {b.tp_comm:.2f} + "
          f"PP {b.pp_comm:.2f} + DP grads {b.dp_grad_comm:.2f} + DP params {b.dp_param_comm:.2f} (exposed) + "
          f"optimizer {b.optimizer:.2f}" + (f" + CP {b.cp_comm:.2f} (exposed)" if row.layout.cp > 1 else ""))
    print()
    print(table([("config", row)] + [(f"alt {i + 1}", r) for i, r in enumerate(best)]))
    return 0
