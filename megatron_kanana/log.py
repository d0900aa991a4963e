"""The project's one logger: rank-aware, so multi-process runs stay readable.

Library code calls `get_logger(__name__)`; only rank 0 logs at INFO unless
`KANANA_LOG_ALL_RANKS=1`, and every line carries its rank. The rank is told once by
whoever knows it (`set_log_rank`, from the launch environment at process start), not
read from the environment here.
"""
from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False
_RANK = 0


def set_log_rank(rank: int) -> None:
    """This process's rank in the job (every log line carries it; only rank 0 logs INFO)."""
    global _RANK
    _RANK = rank


def _rank() -> int:
    return _RANK


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = _rank()
        if record.levelno >= logging.WARNING or os.environ.get("KANANA_LOG_ALL_RANKS") == "1":
            return True
        return record.rank == 0


def get_logger(name: str = "megatron_kanana") -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(_RankFilter())
        handler.setFormatter(logging.Formatter("[%(asctime)s rank %(rank)s] %(message)s", "%H:%M:%S"))
        root = logging.getLogger("megatron_kanana")
        root.addHandler(handler)
        root.setLevel(os.environ.get("KANANA_LOG_LEVEL", "INFO"))
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name if name.startswith("megatron_kanana") else f"megatron_kanana.{name}")
