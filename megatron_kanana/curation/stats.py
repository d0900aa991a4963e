"""Per-stage statistics: documents in/out, rejections by named reason, time, bytes.

Workers return plain dicts; the driver merges them, so a resumed run reports
the same totals as an uninterrupted one (each shard's stats are saved with its
done-marker).
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Iterable


@dataclasses.dataclass
class StageStats:
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    rejected: Counter = dataclasses.field(default_factory=Counter)
    counters: Counter = dataclasses.field(default_factory=Counter)  # non-rejecting events, e.g. PII replaced

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def merge(self, other: "StageStats") -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.seconds += other.seconds
        self.rejected.update(other.rejected)
        self.counters.update(other.counters)

    def to_dict(self) -> dict:
        secs = max(self.seconds, 1e-9)
        return {
            "docs_in": self.docs_in, "docs_out": self.docs_out, "bytes_in": self.bytes_in,
            "seconds": round(self.seconds, 4),
            "docs_per_s": round(self.docs_in / secs, 1) if self.seconds else None,
            "mb_per_s": round(self.bytes_in / secs / 1e6, 3) if self.seconds else None,
            "rejected": dict(sorted(self.rejected.items())),
            "counters": dict(sorted(self.counters.items())),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "StageStats":
        return cls(data["docs_in"], data["docs_out"], data["bytes_in"], data["seconds"],
                   Counter(data["rejected"]), Counter(data.get("counters", {})))


class PipelineStats:
    """Ordered stage name -> StageStats."""

    def __init__(self) -> None:
        self.stages: dict[str, StageStats] = {}

    def __getitem__(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats())

    def timed(self, name: str, nbytes: int) -> "_Timer":
        return _Timer(self[name], nbytes)

    def merge(self, other: "PipelineStats") -> None:
        for name, stage in other.stages.items():
            self[name].merge(stage)

    def to_dict(self) -> dict:
        return {name: stage.to_dict() for name, stage in self.stages.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineStats":
        out = cls()
        for name, stage in data.items():
            out.stages[name] = StageStats.from_dict(stage)
        return out

    @classmethod
    def merged(cls, parts: Iterable["PipelineStats"]) -> "PipelineStats":
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    def table(self) -> str:
        lines = [f"{'stage':<12} {'in':>9} {'out':>9} {'docs/s':>10} {'MB/s':>8}  rejected"]
        for name, s in self.stages.items():
            d = s.to_dict()
            rej = ", ".join(f"{k}={v}" for k, v in d["rejected"].items()) or "-"
            extra = ", ".join(f"{k}={v}" for k, v in d["counters"].items())
            rate, mbs = d["docs_per_s"], d["mb_per_s"]
            lines.append(f"{name:<12} {s.docs_in:>9} {s.docs_out:>9} {'-' if rate is None else rate:>10} "
                         f"{'-' if mbs is None else mbs:>8}  {rej}" + (f" [{extra}]" if extra else ""))
        return "\n".join(lines)


class _Timer:
    """Counts one document into a stage and times it; call .keep() if it survives."""

    def __init__(self, stage: StageStats, nbytes: int):
        self.stage, self.nbytes = stage, nbytes

    def __enter__(self) -> StageStats:
        self.start = time.perf_counter()
        self.stage.docs_in += 1
        self.stage.bytes_in += self.nbytes
        return self.stage

    def __exit__(self, *exc) -> None:
        self.stage.seconds += time.perf_counter() - self.start
