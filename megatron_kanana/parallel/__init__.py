"""Where the model runs: the parallel section and its layout checks."""
from megatron_kanana.parallel.config import ParallelConfig, ParallelLayout

__all__ = ["ParallelConfig", "ParallelLayout"]
