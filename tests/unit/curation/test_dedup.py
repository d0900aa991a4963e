import unicodedata

import numpy as np

from megatron_kanana.curation.config import DedupSection, NormaliseSection, RunSection
from megatron_kanana.curation.dedup import EXACT_DUP, KEEP, NEAR_DUP, cluster, signature_shard
from megatron_kanana.curation.minhash import MinHasher, jaccard_estimate
from tests.unit.curation.corpus import english_doc, korean_doc, write_jsonl


def _dedup(tmp_path, shards: list[list[str]], **dedup_kw):
    section = DedupSection(**dedup_kw)
    files = []
    for i, texts in enumerate(shards):
        src = write_jsonl(tmp_path / f"in{i}.jsonl", [{"text": t} for t in texts])
        out = tmp_path / f"sig{i}.npz"
        signature_shard(src, out, RunSection(), NormaliseSection(), section)
        files.append(out)
    return cluster(files, section)


def test_nfd_copy_is_an_exact_duplicate_across_shards(tmp_path):
    ko = korean_doc(1)
    per_shard, stats = _dedup(tmp_path, [[ko, english_doc(1)], [unicodedata.normalize("NFD", ko)]])
    assert per_shard[1]["reason"].tolist() == [EXACT_DUP]
    assert per_shard[0]["keep"].tolist() == [True, True]
    assert per_shard[0]["cluster_size"].tolist() == [2, 1]
    assert stats.stages["dedup"].rejected == {"exact_duplicate": 1}


def test_korean_spacing_variant_is_a_near_duplicate(tmp_path):
    ko = korean_doc(2)
    respaced = ko.replace(" ", "", 4).replace("에서 ", "에서  ")
    assert respaced != ko
    per_shard, _ = _dedup(tmp_path, [[ko, respaced, korean_doc(3)]])
    assert per_shard[0]["reason"].tolist() == [KEEP, NEAR_DUP, KEEP]
    assert per_shard[0]["cluster_size"].tolist() == [2, 2, 1]


def test_english_near_duplicate_and_distinct_documents(tmp_path):
    en = english_doc(5, sentences=30)
    edited = en.replace("The", "A", 1) + "\nOne more closing sentence of the page."
    per_shard, _ = _dedup(tmp_path, [[en, english_doc(6, 30), edited, english_doc(7, 30)]])
    assert per_shard[0]["reason"].tolist() == [KEEP, KEEP, NEAR_DUP, KEEP]


def test_bounded_index_partitions_give_the_same_answer(tmp_path):
    texts = [korean_doc(i) for i in range(6)] + [korean_doc(2), english_doc(1), english_doc(1) + " End."]
    whole, _ = _dedup(tmp_path / "a", [texts[:5], texts[5:]])
    parted, stats = _dedup(tmp_path / "b", [texts[:5], texts[5:]], max_index_entries=2)
    assert stats.stages["dedup"].counters["index_partitions"] == 5
    for a, b in zip(whole, parted):
        for key in ("keep", "cluster_size", "reason"):
            np.testing.assert_array_equal(a[key], b[key])


def test_minhash_jaccard_estimate_tracks_similarity():
    hasher = MinHasher(DedupSection())
    base = english_doc(9, sentences=40)
    same = hasher.signature(hasher.shingles(base))
    assert jaccard_estimate(same, hasher.signature(hasher.shingles(base + " extra words here"))) > 0.8
    assert jaccard_estimate(same, hasher.signature(hasher.shingles(english_doc(10, 40)))) < 0.2


def test_korean_uses_syllable_shingles_so_spacing_does_not_matter():
    hasher = MinHasher(DedupSection())
    a, b = "대한민국의 수도는 서울이다", "대한 민국의수도는 서울 이다"
    np.testing.assert_array_equal(np.sort(hasher.shingles(a)), np.sort(hasher.shingles(b)))
