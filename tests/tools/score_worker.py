"""Worker for the pruning tests: score one checkpoint at several layouts in one process group.

    torchrun --nproc-per-node 2 tests/tools/score_worker.py CONFIG OUT_DIR

Writes OUT_DIR/scores_tp{T}_pp{P}.safetensors for TP=1 (DP=2), TP=2 and PP=2
with `kanana prune-score`'s own `score` function, so the test can compare layouts.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from megatron_kanana.config.root import load_config
from megatron_kanana.mcore import runtime
from megatron_kanana.surgery import importance, score

LAYOUTS = ((1, 1), (2, 1), (1, 2))


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    for tp, pp in LAYOUTS:
        cfg = load_config(config, [f"parallel.tensor_model_parallel_size={tp}",
                                   f"parallel.pipeline_model_parallel_size={pp}"])
        score.score(cfg, importance.Aggregation(), 2, out / f"scores_tp{tp}_pp{pp}.safetensors", keep_runtime=True)
        dist.barrier()
    runtime.shutdown()


if __name__ == "__main__":
    main()
