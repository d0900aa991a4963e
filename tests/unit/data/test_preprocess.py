"""`preprocess`: token ids read back through megatron-core equal the tokenizer's, whatever the sharding."""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from megatron_kanana.data.indexed_datasets import EmptyDatasetError, check_nonempty, dataset_summary, read_meta
from megatron_kanana.data.jsonl_reader import BadInputError, Shard, plan_shards, shard_lines
from megatron_kanana.data.preprocess import preprocess
from megatron_kanana.data.preprocess_merge import merge_datasets
from megatron_kanana.data.tokenizer import load_tokenizer


def texts_of(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.mark.parametrize("workers", [1, 4])
def test_ids_equal_tokenizer(tmp_path, tokenizer_path, bilingual_jsonl, read_documents, workers):
    tok = load_tokenizer(tokenizer_path)
    prefix = str(tmp_path / "out")
    # 20 kB shards cut the ~300 kB file into many byte ranges, most starting mid-line.
    result = preprocess([bilingual_jsonl], tokenizer_path, prefix, workers=workers, append_eod=True, shard_mb=0.02)
    expected = [tok.encode(t) + [tok.eod] for t in texts_of(bilingual_jsonl)]
    assert read_documents(prefix) == expected
    assert result.documents == len(expected) and result.tokens == sum(map(len, expected))
    assert result.report.total == 0
    assert dataset_summary(prefix).dtype == "uint16"
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "out.idx", "out.meta.json"]  # temporary directory gone
    meta = read_meta(prefix)  # what training checks against data.tokenizer and the model's vocabulary
    assert meta["tokenizer_fingerprint"] == tok.fingerprint
    assert meta["max_token_id"] == max(max(ids) for ids in expected)


def test_output_does_not_depend_on_workers(tmp_path, hf_tokenizer, bilingual_jsonl):
    preprocess([bilingual_jsonl], hf_tokenizer, str(tmp_path / "a"), workers=1)
    preprocess([bilingual_jsonl], hf_tokenizer, str(tmp_path / "b"), workers=3, shard_mb=0.01)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_byte_ranges_read_every_line_once(tmp_path):
    path = tmp_path / "lines.txt"
    lines = [f"line {i} {'x' * (i % 37)}\n".encode() for i in range(500)]
    path.write_bytes(b"".join(lines))
    for size in (1, 7, 100, 10_000):
        got = [line for shard in plan_shards([str(path)], size) for line in shard_lines(shard)]
        assert got == lines


def test_compressed_input(tmp_path, hf_tokenizer, bilingual_jsonl, read_documents):
    import zstandard

    raw = open(bilingual_jsonl, "rb").read()
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "in.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    preprocess([bilingual_jsonl], hf_tokenizer, str(tmp_path / "plain"), workers=2)
    plain = read_documents(str(tmp_path / "plain"))
    for name in ("gz", "zst"):
        preprocess([str(tmp_path / f"in.jsonl.{name}")], hf_tokenizer, str(tmp_path / name), workers=2)
        assert read_documents(str(tmp_path / name)) == plain
    # a glob over both, in sorted order: .gz then .zst
    preprocess([str(tmp_path / "in.jsonl.*")], hf_tokenizer, str(tmp_path / "both"), workers=2)
    assert read_documents(str(tmp_path / "both")) == plain + plain


def write_bad_input(tmp_path) -> list[str]:
    good = json.dumps({"text": "좋은 문서 good document"}).encode()
    lines = [good, b'{"text": "broken', good, json.dumps({"body": "no text key"}).encode(), good,
             b'{"text": "\xff\xfe bad utf-8"}', json.dumps({"text": ""}).encode(), json.dumps({"text": 5}).encode(),
             b"", good]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    return [str(tmp_path / "bad.jsonl"), str(tmp_path / "empty.jsonl")]


@pytest.mark.parametrize("shard_mb", [None, 0.00005])  # whole file, or ~50-byte ranges
def test_bad_input_is_counted_with_line_numbers(tmp_path, hf_tokenizer, read_documents, shard_mb):
    files = write_bad_input(tmp_path)
    result = preprocess(files, hf_tokenizer, str(tmp_path / "out"), workers=2, shard_mb=shard_mb)
    assert result.report.counts == {"malformed_json": 1, "missing_key": 2, "invalid_utf8": 1,
                                    "empty_document": 1, "empty_file": 1}
    assert len(read_documents(str(tmp_path / "out"))) == 4
    bad = files[0]
    assert f"{bad}:2: malformed json" in "\n".join(result.problems)
    assert f"{bad}:4: missing key" in "\n".join(result.problems)
    assert f"{bad}:6: invalid utf8" in "\n".join(result.problems)
    assert f"{bad}:7: empty document" in "\n".join(result.problems)
    assert f"{bad}:8: missing key" in "\n".join(result.problems)
    assert f"{files[1]}: empty file" in "\n".join(result.problems)


def test_strict_stops_and_leaves_nothing(tmp_path, hf_tokenizer):
    files = write_bad_input(tmp_path)
    with pytest.raises(BadInputError, match=r"bad.jsonl:2: malformed json"):
        preprocess(files, hf_tokenizer, str(tmp_path / "out"), workers=2, strict=True)
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl", "empty.jsonl"]


def test_zero_tokens_refused(tmp_path, hf_tokenizer):
    (tmp_path / "in.jsonl").write_text('{"text": ""}\n{"other": "x"}\n')
    with pytest.raises(EmptyDatasetError, match="no tokens"):
        preprocess([str(tmp_path / "in.jsonl")], hf_tokenizer, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_check_nonempty_refuses_empty_dataset(tmp_path):
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(tmp_path / "e.bin"), dtype=np.uint16)
    builder.add_document([], [0])
    builder.finalize(str(tmp_path / "e.idx"))
    with pytest.raises(EmptyDatasetError, match="0 tokens"):
        check_nonempty(str(tmp_path / "e"))
    (tmp_path / "e.idx").unlink()
    with pytest.raises(ValueError, match="missing .*e.idx"):
        check_nonempty(str(tmp_path / "e"))


def test_existing_output_is_kept_unless_overwrite(tmp_path, hf_tokenizer, bilingual_jsonl):
    prefix = str(tmp_path / "out")
    preprocess([bilingual_jsonl], hf_tokenizer, prefix)
    before = (tmp_path / "out.bin").read_bytes()
    with pytest.raises(FileExistsError):
        preprocess([bilingual_jsonl], hf_tokenizer, prefix, append_eod=True)
    assert (tmp_path / "out.bin").read_bytes() == before
    preprocess([bilingual_jsonl], hf_tokenizer, prefix, append_eod=True, overwrite=True)
    assert (tmp_path / "out.bin").stat().st_size > len(before)


def test_int32_for_big_vocab(tmp_path, bilingual_jsonl, read_documents):
    from tests.unit.data.conftest import build_hf_tokenizer

    path = build_hf_tokenizer(tmp_path / "tokenizer.json", vocab_size=300, extra_tokens=66_000)
    tok = load_tokenizer(path)
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "a <extra_65999> b"}) + "\n")
    preprocess([str(tmp_path / "in.jsonl")], path, str(tmp_path / "out"))
    assert dataset_summary(str(tmp_path / "out")).dtype == "int32"
    assert read_documents(str(tmp_path / "out")) == [tok.encode("a <extra_65999> b")]
    assert max(read_documents(str(tmp_path / "out"))[0]) > 65535


def test_merge(tmp_path, hf_tokenizer, sp_tokenizer, bilingual_jsonl, read_documents):
    (tmp_path / "two.jsonl").write_text(json.dumps({"text": "둘째 파일 second file"}, ensure_ascii=False) + "\n")
    preprocess([bilingual_jsonl], hf_tokenizer, str(tmp_path / "p-0"))
    preprocess([str(tmp_path / "two.jsonl")], hf_tokenizer, str(tmp_path / "p-1"))
    tokens = merge_datasets([str(tmp_path / "p-*")], str(tmp_path / "all"))
    docs = read_documents(str(tmp_path / "all"))
    assert docs == read_documents(str(tmp_path / "p-0")) + read_documents(str(tmp_path / "p-1"))
    assert tokens == sum(map(len, docs))
    from megatron_kanana.data.indexed_datasets import read_meta
    merged, parts = read_meta(str(tmp_path / "all")), [read_meta(str(tmp_path / f"p-{i}")) for i in (0, 1)]
    assert merged["tokenizer_fingerprint"] == parts[0]["tokenizer_fingerprint"]  # carried to the merged dataset
    assert merged["max_token_id"] == max(p["max_token_id"] for p in parts) == max(max(d) for d in docs)
    preprocess([str(tmp_path / "two.jsonl")], sp_tokenizer, str(tmp_path / "q"))  # also uint16: dtype matches
    with pytest.raises(ValueError, match="different tokenizers"):
        merge_datasets([str(tmp_path / "p-0"), str(tmp_path / "q")], str(tmp_path / "mixed"))
    assert not (tmp_path / "mixed.idx").exists()
    with pytest.raises(ValueError, match="matches no PREFIX.idx"):
        merge_datasets([str(tmp_path / "zz*")], str(tmp_path / "x"))
    with pytest.raises(FileExistsError):
        merge_datasets([str(tmp_path / "q")], str(tmp_path / "all"))


def test_merge_refuses_mixed_dtypes(tmp_path, hf_tokenizer):
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    preprocess([str(tmp_path / "in.jsonl")], hf_tokenizer, str(tmp_path / "a"))
    builder = IndexedDatasetBuilder(str(tmp_path / "b.bin"), dtype=np.int32)
    builder.add_document([1, 2], [2])
    builder.finalize(str(tmp_path / "b.idx"))
    with pytest.raises(ValueError, match="different token dtypes"):
        merge_datasets([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "c"))
    assert not (tmp_path / "c.idx").exists()


def test_shard_owning_rule_on_crlf_and_no_trailing_newline(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n{"text": "b"}\r\n{"text": "c"}')
    shards = plan_shards([str(path)], 5)
    assert [line for s in shards for line in shard_lines(s)] == [b'{"text": "a"}\r\n', b'{"text": "b"}\r\n',
                                                                  b'{"text": "c"}']
    assert isinstance(shards[0], Shard)
