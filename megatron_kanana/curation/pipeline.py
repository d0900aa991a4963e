"""The three passes over the shards, and resume.

  pass 1 (parallel, per shard): read, normalise, MinHash -> _work/signatures/
  pass 2 (one process): exact + LSH clustering       -> _work/dedup/
  pass 3 (parallel, per shard): dedup decision, language ID, heuristics, PII,
         quality classifier -> OUTPUT/data/SHARD.jsonl (+ OUTPUT/rejected/SHARD.jsonl)

Resume is at shard granularity: a shard's pass is done when its done-marker
(JSON holding that shard's stats) exists; marker-less shards are redone from
scratch and their `.tmp` leftovers overwritten. Pass 2 is done when
_work/dedup/_DONE.json exists, otherwise recomputed from the pass-1 files; since
every pass is a deterministic function of input and config, a resumed run
produces byte-identical output. The same passes run as SLURM job arrays through
curation/array.py (`kanana curate --stage ...`), on the same files and markers.
`manifest.json` pins the shard list and config,
so a rerun into the same OUTPUT with different input or settings is refused.
Rejected documents are written as read (not anonymised): they are for audit.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_kanana.curation import dedup
from megatron_kanana.curation.config import PipelineConfig
from megatron_kanana.curation.filters import DocumentFilters, Verdict
from megatron_kanana.curation.normalise import normalise_text
from megatron_kanana.curation.shards import (AtomicJsonlWriter, discover_shards, read_documents,
                                             shard_name, write_json_atomic)
from megatron_kanana.curation.stats import PipelineStats, StageStats
from megatron_kanana.log import get_logger

log = get_logger(__name__)
_FILTERS: dict[str, DocumentFilters] = {}  # one per worker process and config


def _map(fn, tasks: list[tuple], workers: int) -> list:
    if workers == 1 or len(tasks) <= 1:
        return [fn(*t) for t in tasks]
    # spawn, not fork: a forked child can inherit a held lock from a parent thread.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as pool:
        return list(pool.map(fn, *zip(*tasks)))


def _pass1(shard: Path, sig_path: Path, done: Path, config: PipelineConfig) -> None:
    stats = dedup.signature_shard(shard, sig_path, config.run, config.normalise, config.dedup)
    write_json_atomic(done, stats.to_dict())


def _pass2(sig_files: list[Path], dedup_dir: Path, config: PipelineConfig) -> None:
    write_decisions(sig_files, dedup_dir, *dedup.cluster(sig_files, config.dedup))


def write_decisions(sig_files: list[Path], dedup_dir: Path, per_shard: list[dict], stats: PipelineStats) -> None:
    """Pass 2's output: one decision file per shard, then _DONE.json (the pass's done-marker)."""
    dedup_dir.mkdir(parents=True, exist_ok=True)
    for path, decision in zip(sig_files, per_shard):
        out = dedup_dir / path.name
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, **decision)
        tmp.replace(out)
    write_json_atomic(dedup_dir / "_DONE.json", stats.to_dict())


def _pass3(shard: Path, name: str, sig_path: Path, dedup_path: Path, output: Path,
           config: PipelineConfig) -> None:
    cache_key = json.dumps(config.to_dict(), sort_keys=True)
    if cache_key not in _FILTERS:  # loading the language model costs ~0.5 s: once per process
        _FILTERS[cache_key] = DocumentFilters(config)
    filters = _FILTERS[cache_key]
    with np.load(sig_path) as sig, np.load(dedup_path) as dec:
        index = {int(line): i for i, line in enumerate(sig["lines"])}
        keep, sizes, reasons = dec["keep"], dec["cluster_size"], dec["reason"]
    stats = PipelineStats()
    kept = AtomicJsonlWriter(output / "data" / name)
    rejected = AtomicJsonlWriter(output / "rejected" / name) if config.run.write_rejected else None
    key = config.run.text_key
    try:
        for line_no, doc, raw in read_documents(shard, key, config.run.max_doc_bytes, StageStats()):
            i = index.get(line_no)
            if i is None:  # empty after normalisation: counted in pass 1
                continue
            if keep[i]:
                verdict = filters.apply(normalise_text(raw, config.normalise), stats)
            else:  # counted in pass 2
                verdict = Verdict(raw, None, "dedup", dedup.REASONS[int(reasons[i])])
            if verdict.fields is None:
                if rejected is not None:
                    rejected.write({**doc, "line": line_no, "reject_stage": verdict.stage,
                                    "reject_reason": verdict.reason})
                continue
            kept.write({**doc, key: verdict.text, "cluster_size": int(sizes[i]), **verdict.fields})
        kept.commit()
        if rejected is not None:
            rejected.commit()
    except BaseException:
        kept.abort()
        if rejected is not None:
            rejected.abort()
        raise
    stats["output"].docs_in = stats["output"].docs_out = kept.count
    write_json_atomic(output / "_done" / f"{name}.json", stats.to_dict())


def _check_manifest(output: Path, names: list[str], config: PipelineConfig) -> None:
    settings = config.to_dict()
    settings["run"].pop("workers")  # may change between a run and its resume
    manifest = {"shards": names, "config": settings}
    path = output / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != json.loads(json.dumps(manifest)):
            raise ValueError(f"{output} holds a run with other input shards or settings "
                             f"(see {path}); choose a new --output or delete it")
        log.info("resuming the run in %s", output)
    else:
        write_json_atomic(path, manifest)


def _load_stats(paths: list[Path]) -> PipelineStats:
    return PipelineStats.merged(PipelineStats.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in paths)


@dataclass
class Layout:
    """Where a run's shards and each pass's files and done-markers live."""

    config: PipelineConfig
    output: Path
    shards: list[Path]
    names: list[str]

    @property
    def work(self) -> Path:
        return self.output / "_work"

    @property
    def sig(self) -> list[Path]:
        return [self.work / "signatures" / f"{n}.npz" for n in self.names]

    @property
    def sig_done(self) -> list[Path]:
        return [self.work / "signatures" / f"{n}.done.json" for n in self.names]

    @property
    def dedup_dir(self) -> Path:
        return self.work / "dedup"

    @property
    def done(self) -> list[Path]:
        return [self.output / "_done" / f"{n}.json" for n in self.names]

    def run_pass1(self, indices) -> None:
        todo = [(self.shards[i], self.sig[i], self.sig_done[i], self.config)
                for i in indices if not self.sig_done[i].exists()]
        log.info("pass 1 (normalise + MinHash): %d of %d shards to do", len(todo), len(indices))
        _map(_pass1, todo, self.config.run.workers)

    def run_pass3(self, indices) -> None:
        todo = [(self.shards[i], self.names[i], self.sig[i], self.dedup_dir / self.sig[i].name, self.output,
                 self.config) for i in indices if not self.done[i].exists()]
        log.info("pass 3 (language, heuristics, PII, quality): %d of %d shards to do", len(todo), len(indices))
        _map(_pass3, todo, self.config.run.workers)

    def write_stats(self) -> PipelineStats:
        stats = _load_stats(self.sig_done + [self.dedup_dir / "_DONE.json"] + self.done)
        write_json_atomic(self.output / "stats.json", stats.to_dict())
        return stats


def layout(config: PipelineConfig, input_dir: str | Path, output: str | Path) -> Layout:
    """The run's shards under INPUT_DIR, checked against OUTPUT's manifest (written on first use)."""
    input_dir, output = Path(input_dir), Path(output)
    shards = discover_shards(input_dir, config.run.shard_glob)
    names = [shard_name(s, input_dir) for s in shards]
    if len(set(names)) != len(names):
        raise ValueError(f"two input shards map to the same output name under {input_dir} (x.jsonl and x.jsonl.gz?)")
    _check_manifest(output, names, config)
    return Layout(config, output, shards, names)


def run_pipeline(config: PipelineConfig, input_dir: str | Path, output: str | Path) -> PipelineStats:
    """Curate every shard under INPUT_DIR into OUTPUT; returns the merged per-stage stats."""
    run = layout(config, input_dir, output)
    every = range(len(run.shards))
    run.run_pass1(every)
    if not (run.dedup_dir / "_DONE.json").exists():
        log.info("pass 2 (dedup clustering) over %d shards", len(run.shards))
        _pass2(run.sig, run.dedup_dir, config)
    run.run_pass3(every)
    return run.write_stats()
