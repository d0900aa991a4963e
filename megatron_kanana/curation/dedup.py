"""Stage 2: exact and MinHash-LSH near-duplicate removal, global across shards.

Two passes, so worker processes never share an index:
  pass 1 (`signature_shard`, parallel, one call per shard) normalises each
    document and stores, per document, its line number, byte size, a 64-bit
    hash of the normalised text and one 64-bit hash per LSH band;
  pass 2 (`cluster`, one process) unions documents that share the exact hash
    or any band hash, keeps the first document (lowest shard, then line) of
    each cluster and records the cluster size on it for later up-sampling.

Pass 2 also runs as a job array (curation/array.py): each task takes the
partitions of one bucket (`bucket_edges`), and a small reduce (`resolve`)
unions every bucket's edges, as datatrove does.

Memory in pass 2 is bounded by `max_index_entries`: each hash column (exact,
then band by band) is split into hash-range partitions of at most about that
many (hash, doc) pairs, each sorted on its own, so equal hashes meet in one
partition. What stays whole is the union-find array: 8 bytes per document.

Both passes are deterministic functions of the input shards and config, which
is what makes resume consistent: pass-1 files are per shard with done-markers,
and pass 2 either finished (its marker exists) or is recomputed from them.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import numpy as np

from megatron_kanana.curation.config import DedupSection, NormaliseSection, RunSection
from megatron_kanana.curation.minhash import MinHasher
from megatron_kanana.curation.normalise import normalise_text
from megatron_kanana.curation.shards import read_documents
from megatron_kanana.curation.stats import PipelineStats

KEEP, EXACT_DUP, NEAR_DUP = 0, 1, 2
REASONS = {EXACT_DUP: "exact_duplicate", NEAR_DUP: "near_duplicate"}


def exact_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def signature_shard(shard: Path, out_path: Path, run: RunSection, norm: NormaliseSection,
                    dedup: DedupSection) -> PipelineStats:
    """Pass 1 for one shard: write OUT_PATH (.npz) with lines, nbytes, exact, bands."""
    stats = PipelineStats()
    hasher = MinHasher(dedup)
    lines, nbytes, exact, bands = [], [], [], []
    for line_no, _doc, text in read_documents(shard, run.text_key, run.max_doc_bytes, stats["read"]):
        with stats.timed("normalise", len(text.encode("utf-8"))) as st:
            text = normalise_text(text, norm)
            if not text:
                st.reject("empty")
                continue
            st.docs_out += 1
        size = len(text.encode("utf-8"))
        with stats.timed("minhash", size) as st:
            lines.append(line_no)
            nbytes.append(size)
            exact.append(exact_hash(text))
            bands.append(hasher.band_hashes(text) if dedup.near else np.zeros(0, np.uint64))
            st.docs_out += 1
    width = dedup.num_bands if dedup.near else 0
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, lines=np.asarray(lines, np.int64), nbytes=np.asarray(nbytes, np.int64),
             exact=np.asarray(exact, np.uint64),
             bands=np.asarray(bands, np.uint64).reshape(len(lines), width))
    os.replace(tmp, out_path)
    return stats


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the lower id becomes the root: the first-seen document is kept
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        parent = self.parent
        while True:  # pointer jumping, vectorised
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand


def _column_groups(files: list[Path], offsets: np.ndarray, column, num_parts: int, parts: range):
    """Yield (sorted hashes, matching global ids) for each of `parts`, hash-range partitions of one column."""
    for part in parts:
        hashes, ids = [], []
        for i, path in enumerate(files):
            with np.load(path) as data:
                h = column(data)
            mask = (h % np.uint64(num_parts)) == part if num_parts > 1 else slice(None)
            hashes.append(h[mask])
            ids.append(np.arange(len(h), dtype=np.int64)[mask] + offsets[i])
        h, g = np.concatenate(hashes), np.concatenate(ids)
        order = np.lexsort((g, h))  # by hash, then by id so the first-seen doc leads each run
        yield h[order], g[order]


def _offsets(files: list[Path]) -> tuple[np.ndarray, int]:
    """Global id of each shard's first document, and the total signature bytes."""
    counts, nbytes = [], 0
    for path in files:
        with np.load(path) as data:
            counts.append(len(data["lines"]))
            nbytes += int(data["nbytes"].sum())
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64), nbytes


def num_partitions(total: int, dedup: DedupSection, num_buckets: int = 1) -> int:
    """Hash-range partitions of the index: a multiple of the bucket count, each near max_index_entries."""
    return num_buckets * max(1, math.ceil(math.ceil(total / dedup.max_index_entries) / num_buckets))


def bucket_edges(files: list[Path], dedup: DedupSection, bucket: int = 0, num_buckets: int = 1) -> dict:
    """The pairs of documents that share a hash whose partition falls in `bucket`.

    Partition p belongs to bucket p % num_buckets; equal hashes always meet in one partition,
    so the buckets' edges together are the single-process run's. Returns arrays `a`, `b`
    (global ids joined) and `exact` (ids that repeat an earlier document's exact hash)."""
    offsets, _ = _offsets(files)
    num_parts = num_partitions(int(offsets[-1]), dedup, num_buckets)
    columns = []
    if dedup.exact:
        columns.append(("exact", lambda d: d["exact"]))
    if dedup.near:
        columns += [(f"band{b}", lambda d, b=b: d["bands"][:, b]) for b in range(dedup.num_bands)]
    a, b, exact = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for name, column in columns:
        for h, g in _column_groups(files, offsets, column, num_parts, range(bucket, num_parts, num_buckets)):
            same = np.flatnonzero(h[1:] == h[:-1])
            a.append(g[same])
            b.append(g[same + 1])
            if name == "exact":
                exact.append(g[same + 1])
    return {"a": np.concatenate(a), "b": np.concatenate(b), "exact": np.concatenate(exact),
            "num_parts": np.int64(num_parts)}


def cluster(files: list[Path], dedup: DedupSection) -> tuple[list[dict], PipelineStats]:
    """Pass 2 in one process: per shard {keep, cluster_size, reason} arrays, plus the stage's stats."""
    start = time.perf_counter()
    per_shard, stats = resolve(files, [bucket_edges(files, dedup)])
    stats["dedup"].seconds = time.perf_counter() - start
    return per_shard, stats


def resolve(files: list[Path], edge_sets) -> tuple[list[dict], PipelineStats]:
    """Union the buckets' edges: the first document (lowest global id) of each cluster is kept."""
    start = time.perf_counter()
    offsets, nbytes = _offsets(files)
    total = int(offsets[-1])
    uf = _UnionFind(total)
    exact_dup = np.zeros(total, dtype=bool)
    num_parts = 0
    for edges in edge_sets:
        exact_dup[edges["exact"]] = True
        num_parts = int(edges["num_parts"])
        for i, j in zip(edges["a"].tolist(), edges["b"].tolist()):
            uf.union(i, j)
    # The root of a cluster is its lowest id whatever order the unions came in: buckets commute.
    roots = uf.roots()
    sizes = np.bincount(roots, minlength=total)
    keep = roots == np.arange(total)
    reason = np.where(keep, KEEP, np.where(exact_dup, EXACT_DUP, NEAR_DUP)).astype(np.int8)
    stats = PipelineStats()
    st = stats["dedup"]
    st.docs_in, st.docs_out, st.bytes_in = total, int(keep.sum()), nbytes
    for code, label in REASONS.items():
        if (reason == code).any():
            st.rejected[label] = int((reason == code).sum())
    st.counters["index_partitions"] = num_parts
    st.seconds = time.perf_counter() - start
    per_shard = [{"keep": keep[a:b], "cluster_size": sizes[roots[a:b]].astype(np.int64), "reason": reason[a:b]}
                 for a, b in zip(offsets[:-1], offsets[1:])]
    return per_shard, stats
