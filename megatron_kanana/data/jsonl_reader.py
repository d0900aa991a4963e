"""Reading JSONL input in shards, with every bad line counted rather than fatal.

A plain file is cut into byte ranges; a range owns the lines that *start* inside it,
so shards can be read by separate processes without coordination and every line is
read exactly once. A compressed file (.gz, .zst) cannot be entered in the middle and is
one shard. Bad input (malformed JSON, missing key, invalid UTF-8, empty document, empty
file) is tallied in an `InputReport` with the first few locations, or raised as
`BadInputError` in strict mode.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")
PROBLEMS = ("malformed_json", "missing_key", "invalid_utf8", "empty_document", "empty_file")
EXAMPLES_KEPT = 5


class BadInputError(ValueError):
    """A bad input line in strict mode, or input that cannot be read at all."""


def expand_inputs(patterns: list[str]) -> list[str]:
    """Files named by paths or glob patterns, in the order given; a pattern matching nothing is an error."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise BadInputError(f"--input {pattern}: no such file")
        files += [m for m in matches if m not in files]
    return files


def is_compressed(path: str) -> bool:
    return path.endswith(COMPRESSED_SUFFIXES)


def open_binary(path: str) -> BinaryIO:
    """The decompressed byte stream of a plain, gzip or zstd file."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith((".zst", ".zstd")):
        import zstandard

        raw = open(path, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")


def open_text_lines(path: str) -> Iterator[str]:
    """Lines of a possibly compressed text file, undecodable bytes replaced."""
    with open_binary(path) as f:
        for raw in f:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")


@dataclass(frozen=True)
class Shard:
    """Lines of `path` starting in bytes [start, end); end None means to the end of the file."""

    index: int
    path: str
    start: int = 0
    end: int | None = None


def plan_shards(files: list[str], shard_bytes: int) -> list[Shard]:
    """Cut plain files into ranges of about `shard_bytes`; compressed files stay whole."""
    shards: list[Shard] = []
    for path in files:
        size = os.path.getsize(path)
        if is_compressed(path) or size <= shard_bytes:
            shards.append(Shard(len(shards), path))
            continue
        for start in range(0, size, shard_bytes):
            shards.append(Shard(len(shards), path, start, min(size, start + shard_bytes)))
    return shards


def shard_lines(shard: Shard) -> Iterator[bytes]:
    """The raw lines (newline kept) that start inside the shard's byte range."""
    with open_binary(shard.path) as f:
        pos = shard.start
        if shard.start > 0:
            f.seek(shard.start - 1)
            # The line holding byte start-1 belongs to the previous shard (it started there).
            pos = shard.start - 1 + len(f.readline())
        end = shard.end
        for line in f:
            if end is not None and pos >= end:
                return
            pos += len(line)
            yield line


@dataclass
class InputReport:
    """Counts of each kind of bad input, with the first few locations of each."""

    counts: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PROBLEMS})
    # (shard index, line number inside the shard, detail); the caller turns these into file:line.
    examples: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: {p: [] for p in PROBLEMS})

    def add(self, problem: str, shard: int, line: int, detail: str) -> None:
        self.counts[problem] += 1
        if len(self.examples[problem]) < EXAMPLES_KEPT:
            self.examples[problem].append((shard, line, detail))

    def merge(self, other: "InputReport") -> None:
        for problem in PROBLEMS:
            self.counts[problem] += other.counts[problem]
            room = EXAMPLES_KEPT - len(self.examples[problem])
            self.examples[problem] += other.examples[problem][:max(0, room)]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def shard_documents(shard: Shard, json_key: str, report: InputReport, strict: bool,
                    line_counter: list[int] | None = None) -> Iterator[tuple[str, int]]:
    """(text, raw byte length) of each good document in the shard; bad lines go to `report`.

    `line_counter[0]` is kept equal to the number of lines read, so the caller knows the
    shard's line count (to turn shard-relative line numbers into file line numbers).
    """
    counter = line_counter if line_counter is not None else [0]

    def bad(problem: str, line: int, detail: str) -> None:
        if strict:
            where = f"{shard.path}:{line}" if shard.start == 0 else f"{shard.path} (byte {shard.start}+, line {line} of the range)"
            raise BadInputError(f"{where}: {problem.replace('_', ' ')}: {detail}")
        report.add(problem, shard.index, line, detail)

    empty = True
    for number, raw in enumerate(shard_lines(shard), 1):
        counter[0] = number
        empty = False
        if not raw.strip():
            continue  # blank lines are separators, not documents
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad("invalid_utf8", number, f"byte {e.start}: {e.reason}")
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            bad("malformed_json", number, str(e))
            continue
        text = obj.get(json_key) if isinstance(obj, dict) else None
        if not isinstance(text, str):
            bad("missing_key", number, f"no string field {json_key!r}")
            continue
        if not text.strip():
            bad("empty_document", number, f"field {json_key!r} is empty")
            continue
        yield text, len(raw)
    if empty and shard.start == 0:
        bad("empty_file", 0, "the file holds no lines")
