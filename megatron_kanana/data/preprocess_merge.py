"""Concatenate several indexed datasets into one.

    kanana preprocess-merge --input out/web-00 'out/web-1*' --output-prefix out/web
    kanana preprocess-merge --input out/web.parts --output-prefix out/web   # a job array's parts

Inputs are prefixes, globs, or the PREFIX.parts directory of a `kanana preprocess` job array
(merged in shard order, refused until every shard is finished). Prefixes and globs are (matched against PREFIX.idx), merged in the order given
(globs sorted). All must share one token dtype, i.e. come from the same tokenizer.
The result is written under temporary names and renamed into place, .idx last.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from megatron_kanana.data.indexed_datasets import (DatasetError, check_nonempty, dataset_summary, expand_prefixes,
                                                 merged_meta, write_meta_dict)
from megatron_kanana.data.preprocess import install
from megatron_kanana.data.preprocess_array import PIN, array_parts


def merge_datasets(inputs: list[str], output_prefix: str, overwrite: bool = False) -> int:
    """Merge the datasets named by `inputs` into output_prefix; returns the token count."""
    from megatron_kanana.mcore.indexed import write_merged

    prefixes: list[str] = []
    for pattern in inputs:
        if os.path.isfile(os.path.join(pattern, PIN)):
            prefixes += array_parts(Path(pattern))
            continue
        found = expand_prefixes(pattern)
        if not found:
            raise DatasetError(f"--input {pattern}: matches no PREFIX.idx")
        prefixes += found
    if os.path.abspath(output_prefix) in {os.path.abspath(p) for p in prefixes}:
        raise DatasetError(f"--output-prefix {output_prefix} is also an input")
    if not overwrite and any(os.path.exists(output_prefix + s) for s in (".bin", ".idx")):
        raise FileExistsError(f"{output_prefix}.bin/.idx exists; pass --overwrite to replace it")
    summaries = {p: dataset_summary(p) for p in prefixes}
    dtypes = {s.dtype for s in summaries.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{p} ({s.dtype})" for p, s in summaries.items())
        raise DatasetError(f"cannot merge datasets of different token dtypes (different tokenizers?): {listing}")
    tokens = sum(s.num_tokens for s in summaries.values())
    meta = merged_meta(prefixes)  # before any output: inputs of two tokenizers are refused
    tmpdir = f"{output_prefix}.tmp-{os.getpid()}"
    os.makedirs(tmpdir)
    try:
        bin_path, idx_path = os.path.join(tmpdir, "all.bin"), os.path.join(tmpdir, "all.idx")
        write_merged(prefixes, bin_path, idx_path, np.dtype(dtypes.pop()).type)
        if meta is not None:  # beside the .idx before it is published, as preprocess writes it
            write_meta_dict(output_prefix, meta)
        install(bin_path, idx_path, output_prefix)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    check_nonempty(output_prefix)
    return tokens


def add_arguments(parser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="dataset prefixes, globs or a job array's PREFIX.parts, merged in order")
    parser.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PREFIX.bin/.idx")


def run(args) -> int:
    try:
        tokens = merge_datasets(args.input, args.output_prefix, args.overwrite)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"kanana preprocess-merge: error: {e}")
        return 1
    print(f"{args.output_prefix}: {tokens} tokens")
    return 0
