"""JSONL shards: robust reading, atomic writing, done-markers for resume.

Reading never raises on bad data: lines that are too large, not UTF-8, not JSON
objects, or lack a string text field are counted under the `read` stage and
skipped. Line numbers (0-based, counting every physical line) identify documents
across passes, so pass 1 and pass 3 agree on which document is which.

Every output file is written under a `.tmp` name and renamed when complete, and
a shard is finished only when its done-marker (a JSON file with its stats)
exists; a killed run leaves at most a `.tmp` file, which the rerun overwrites.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import IO, Iterator

from megatron_kanana.curation.stats import StageStats
from megatron_kanana.data.jsonl_reader import open_binary


def discover_shards(input_dir: Path, pattern: str) -> list[Path]:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input directory {input_dir} does not exist")
    shards = sorted(p for p in input_dir.glob(pattern)
                    if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz")))
    if not shards:
        raise FileNotFoundError(f"no .jsonl or .jsonl.gz shards match {pattern!r} under {input_dir}")
    return shards


def shard_name(shard: Path, input_dir: Path) -> str:
    """Output name of a shard: its path under the input, flattened, always .jsonl."""
    rel = shard.relative_to(input_dir).as_posix()
    rel = rel[:-3] if rel.endswith(".gz") else rel
    return rel.replace("/", "__")


def _read_line(f: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """One line of at most `limit` bytes; (b"", False) at EOF; (prefix, True) if longer."""
    line = f.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line, False
    while True:  # discard the rest without holding it in memory
        rest = f.readline(1 << 20)
        if not rest or rest.endswith(b"\n"):
            return line, True


def read_documents(path: Path, text_key: str, max_doc_bytes: int,
                   stats: StageStats) -> Iterator[tuple[int, dict, str]]:
    """Yield (line number, document, text) for every readable document of a shard."""
    with open_binary(str(path)) as f:
        line_no = -1
        while True:
            raw, too_large = _read_line(f, max_doc_bytes)
            if not raw:
                return
            line_no += 1
            if not raw.strip():
                continue
            stats.docs_in += 1
            stats.bytes_in += len(raw)
            doc, reason = _parse(raw, text_key) if not too_large else (None, "too_large")
            if reason:
                stats.reject(reason)
                continue
            stats.docs_out += 1
            yield line_no, doc, doc[text_key]


def _parse(raw: bytes, text_key: str) -> tuple[dict | None, str | None]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        doc = json.loads(line)
    except ValueError:
        return None, "malformed_json"
    if not isinstance(doc, dict):
        return None, "malformed_json"
    text = doc.get(text_key)
    if not isinstance(text, str):
        return None, "missing_text"
    try:
        text.encode("utf-8")  # a JSON \ud800 escape decodes to a lone surrogate
    except UnicodeEncodeError:
        return None, "invalid_utf8"
    return doc, None


class AtomicJsonlWriter:
    """Writes JSON lines to PATH.tmp; `commit()` renames to PATH."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = io.open(self.tmp, "w", encoding="utf-8")
        self.count = 0

    def write(self, doc: dict) -> None:
        self._f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self) -> None:
        self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # array tasks may write one file at once
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
