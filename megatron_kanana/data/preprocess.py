"""Tokenize JSONL into a megatron-core indexed dataset, in parallel and in flat memory.

    kanana preprocess --input 'data/*.jsonl.zst' --tokenizer tok/ --output-prefix out/web --workers 8 --append-eod

The input is cut into shards (byte ranges of plain files; whole compressed files). Each
worker process reads, tokenizes and writes its own shards as partial PREFIX.bin/.idx in
a temporary directory; nothing but a small tally travels back to the parent, so no
single writer falls behind and no queue of token lists grows with the input. At the end
the partials are concatenated in input order (so the output does not depend on the
worker count) and renamed into place, .idx last: an interrupted run leaves only the
temporary directory, never a dataset that looks complete. PREFIX.meta.json records
the tokenizer's fingerprint and the largest id, so training can check them cheaply.
"""
from __future__ import annotations

import gzip
import multiprocessing as mp
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from megatron_kanana.data import job_array
from megatron_kanana.data.indexed_datasets import EmptyDatasetError, write_meta
from megatron_kanana.data.jsonl_reader import (BadInputError, InputReport, Shard, expand_inputs, is_compressed, plan_shards,
                                               shard_documents)
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.log import get_logger

log = get_logger(__name__)

BATCH_BYTES = 1 << 20  # text handed to the tokenizer per call: large enough to amortise the call
PROGRESS_SECONDS = 5.0


@dataclass
class ShardResult:
    index: int
    documents: int = 0
    tokens: int = 0
    max_token_id: int = -1
    bytes_read: int = 0
    lines: int = 0
    report: InputReport = field(default_factory=InputReport)


@dataclass
class PreprocessResult:
    """What a run produced; `problems` lists the first bad-input locations as file:line: detail."""

    prefix: str
    documents: int
    tokens: int
    bytes_read: int
    seconds: float
    report: InputReport
    problems: list[str]

    def summary(self) -> str:
        s = max(self.seconds, 1e-9)
        return (f"{self.prefix}: {self.documents} documents, {self.tokens} tokens, "
                f"{self.bytes_read / 1e6:.1f} MB in {self.seconds:.1f}s: {self.documents / s:,.0f} docs/s, "
                f"{self.tokens / s:,.0f} tokens/s, {self.bytes_read / 1e6 / s:.2f} MB/s")


# Per-worker state, set once by the pool initializer (fork: inherited cheaply).
_WORKER: dict = {}


def _init_worker(tokenizer_path: str, json_key: str, append_eod: bool, strict: bool, progress, threads: int) -> None:
    # Workers already use every core; nested tokenizer threads would only oversubscribe them.
    os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")
    _WORKER.update(tokenizer=load_tokenizer(tokenizer_path), json_key=json_key, append_eod=append_eod,
                   strict=strict, progress=progress)


def _process_shard(shard: Shard, out_prefix: str) -> ShardResult:
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    tok = _WORKER["tokenizer"]
    dtype = np.dtype(tok.index_dtype_name()).type
    result = ShardResult(shard.index)
    lines = [0]
    builder = IndexedDatasetBuilder(out_prefix + ".bin", dtype=dtype)
    batch: list[str] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        for ids in tok.encode_batch(batch):
            if _WORKER["append_eod"]:
                ids.append(tok.eod)
            builder.add_document(ids, [len(ids)])
            result.tokens += len(ids)
            if ids:
                result.max_token_id = max(result.max_token_id, max(ids))
        result.documents += len(batch)
        with _WORKER["progress"].get_lock():
            _WORKER["progress"].value += batch_bytes
        batch, batch_bytes = [], 0

    try:
        for text, nbytes in shard_documents(shard, _WORKER["json_key"], result.report, _WORKER["strict"], lines):
            batch.append(text)
            batch_bytes += nbytes
            result.bytes_read += nbytes
            if batch_bytes >= BATCH_BYTES:
                flush()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # the decompressor does not say which file
        raise BadInputError(f"{shard.path}: truncated or corrupt compressed file ({e})") from None
    if batch:
        flush()
    builder.finalize(out_prefix + ".idx")
    result.lines = lines[0]
    return result


def _shard_size(files: list[str], workers: int, shard_mb: float | None) -> int:
    if shard_mb:
        return max(1, int(shard_mb * 1e6))
    plain = sum(os.path.getsize(f) for f in files if not is_compressed(f))
    # About four shards per worker balance the load; bounds keep tiny and huge inputs sensible.
    return int(min(256e6, max(1e6, plain / (4 * workers))))


def _run_pool(shards: list[Shard], tmpdir: str, workers: int, init_args: tuple, total_bytes: int) -> list[ShardResult]:
    ctx = mp.get_context("fork")
    progress = ctx.Value("q", 0)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(*init_args, progress, threads)) as pool:
        pending = [pool.apply_async(_process_shard, (s, os.path.join(tmpdir, f"part-{s.index:06d}"))) for s in shards]
        start = last = time.monotonic()
        while not all(p.ready() for p in pending):
            time.sleep(0.2)
            for p in pending:  # surface a worker's error (strict mode) at once
                if p.ready() and not p.successful():
                    p.get()
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                done = progress.value
                log.info("preprocess: %d/%d shards, %.1f/%.1f MB read, %.2f MB/s",
                         sum(p.ready() for p in pending), len(shards), done / 1e6, total_bytes / 1e6,
                         done / 1e6 / (last - start))
        return [p.get() for p in pending]


def _problem_lines(shards: list[Shard], results: list[ShardResult]) -> list[str]:
    """First few problems as file:line: turn shard-relative line numbers into file line numbers."""
    first_line = {}
    seen: dict[str, int] = {}
    for shard, res in zip(shards, results):
        first_line[shard.index] = seen.get(shard.path, 0)
        seen[shard.path] = first_line[shard.index] + res.lines
    out = []
    for res in results:
        for problem, examples in res.report.examples.items():
            for shard_index, line, detail in examples:
                shard = shards[shard_index]
                where = shard.path if line == 0 else f"{shard.path}:{first_line[shard_index] + line}"
                out.append((problem, f"{where}: {problem.replace('_', ' ')}: {detail}"))
    kept: dict[str, list[str]] = {}
    for problem, text in out:
        kept.setdefault(problem, [])
        if len(kept[problem]) < 5:
            kept[problem].append(text)
    return [t for texts in kept.values() for t in texts]


def install(tmp_bin: str, tmp_idx: str, prefix: str) -> None:
    """Move a finished dataset into place: old .idx out first, .idx in last, so no stale pair looks complete."""
    if os.path.exists(prefix + ".idx"):
        os.remove(prefix + ".idx")
    os.replace(tmp_bin, prefix + ".bin")
    os.replace(tmp_idx, prefix + ".idx")


def preprocess(inputs: list[str], tokenizer_path: str, output_prefix: str, workers: int = 1,
               json_key: str = "text", append_eod: bool = False, strict: bool = False,
               overwrite: bool = False, shard_mb: float | None = None) -> PreprocessResult:
    """Tokenize `inputs` into output_prefix.bin/.idx; see the module docstring."""
    from megatron_kanana.mcore.indexed import write_merged

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    files = expand_inputs(inputs)
    tok = load_tokenizer(tokenizer_path)  # fail before any work if the tokenizer is bad
    if not overwrite and any(os.path.exists(output_prefix + s) for s in (".bin", ".idx")):
        raise FileExistsError(f"{output_prefix}.bin/.idx exists; pass --overwrite to replace it")
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    shards = plan_shards(files, _shard_size(files, workers, shard_mb))
    total_bytes = sum(os.path.getsize(f) for f in files)
    tmpdir = f"{output_prefix}.tmp-{os.getpid()}"
    os.makedirs(tmpdir)
    start = time.monotonic()
    try:
        init_args = (tokenizer_path, json_key, append_eod, strict)
        results = _run_pool(shards, tmpdir, min(workers, len(shards)), init_args, total_bytes)
        report = InputReport()
        for res in results:
            report.merge(res.report)
        tokens = sum(r.tokens for r in results)
        if tokens == 0:
            raise EmptyDatasetError(f"{output_prefix}: the input holds no tokens ({report.total} bad lines, "
                                    f"{sum(r.documents for r in results)} documents); nothing written")
        parts = [os.path.join(tmpdir, f"part-{r.index:06d}") for r in results if r.documents]
        write_merged(parts, os.path.join(tmpdir, "all.bin"), os.path.join(tmpdir, "all.idx"),
                     np.dtype(tok.index_dtype_name()).type)
        write_meta(output_prefix, tok, max(r.max_token_id for r in results))
        install(os.path.join(tmpdir, "all.bin"), os.path.join(tmpdir, "all.idx"), output_prefix)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return PreprocessResult(output_prefix, sum(r.documents for r in results), tokens,
                            sum(r.bytes_read for r in results), time.monotonic() - start, report,
                            _problem_lines(shards, results))


def add_arguments(parser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files or globs (.gz/.zst too)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json, SentencePiece .model, or their directory")
    parser.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--json-key", default="text", help="JSON field holding the document text")
    parser.add_argument("--append-eod", action="store_true", help="end every document with the eod token")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line instead of counting it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PREFIX.bin/.idx")
    parser.add_argument("--shard-mb", type=float, default=None, help="byte-range size of plain files (default: auto)")
    job_array.add_arguments(parser)  # --task-id/--task-count/--plan: data/preprocess_array.py


def run(args) -> int:
    if args.plan or args.task_id is not None or args.task_count is not None:
        from megatron_kanana.data.preprocess_array import run as run_array_task

        return run_array_task(args)
    try:
        result = preprocess(args.input, args.tokenizer, args.output_prefix, args.workers, args.json_key,
                            args.append_eod, args.strict, args.overwrite, args.shard_mb)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"kanana preprocess: error: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    if result.report.total:
        counts = ", ".join(f"{n} {p.replace('_', ' ')}" for p, n in result.report.counts.items() if n)
        print(f"skipped bad input: {counts}; first ones:")
        for line in result.problems:
            print(f"  {line}")
    return 0
