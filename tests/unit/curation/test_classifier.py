import json
import random

import numpy as np
import pytest

from megatron_kanana.cli import main
from megatron_kanana.curation.classifier.labels import FileLabels, KeywordScorer
from megatron_kanana.curation.classifier.model import FastTextClassifier
from megatron_kanana.curation.classifier.train import prf, train_iterative
from megatron_kanana.curation.config import ClassifierTrainingSection
from tests.unit.curation.corpus import write_jsonl

EDU = "theorem proof equation molecule lecture algebra 정리 증명 방정식 분자".split()
SPAM = "casino discount click cheap bonus winner 할인 카지노 클릭 당첨".split()
FILLER = "the a of and is to in we 그리고 이 그 에서".split()
# Small and quick: no char n-grams, few buckets.
SECTION = ClassifierTrainingSection(buckets=1 << 12, dim=8, char_ngram_max=0, epochs=8, rounds=1, seed=0)


def _doc(rng, vocab, n=20):
    return " ".join(rng.choice(vocab + FILLER) for _ in range(n))


def _toy(n, seed):
    rng = random.Random(seed)
    texts = [_doc(rng, EDU) for _ in range(n)] + [_doc(rng, SPAM) for _ in range(n)]
    return texts, [1] * n + [0] * n


def test_learns_a_separable_task_and_round_trips(tmp_path):
    texts, labels = _toy(40, 0)
    model, reports = train_iterative(texts, labels, [], SECTION)
    assert reports[0].f1 == 1.0 and reports[0].precision == 1.0
    test_texts, test_labels = _toy(20, 1)
    scores = model.predict_proba(test_texts)
    assert prf(np.asarray(test_labels), scores, 0.5) == (1.0, 1.0, 1.0)
    model.save(tmp_path / "m.npz")
    np.testing.assert_allclose(FastTextClassifier.load(tmp_path / "m.npz").predict_proba(test_texts), scores)


def test_iterative_rounds_add_confident_positives():
    # Few labelled positives, as with Korean edu data; the pool holds more of both kinds.
    texts, labels = _toy(30, 2)
    texts, labels = texts[20:], labels[20:]  # 10 positives, 30 negatives
    pool, pool_labels = _toy(20, 3)
    model, reports = train_iterative(texts, labels, pool, SECTION.replace(rounds=3, add_threshold=0.7))
    assert [r.round for r in reports] == [0, 1, 2]
    assert reports[0].added_positives == 0 and reports[1].added_positives > 0
    assert reports[2].train_positives == reports[0].train_positives + sum(r.added_positives for r in reports[1:])
    # What was added is right: the spam half of the pool scores low.
    assert (model.predict_proba(pool[20:]) < 0.5).all()


def test_prf_values():
    labels = np.array([1, 1, 0, 0])
    assert prf(labels, np.array([0.9, 0.2, 0.8, 0.1]), 0.5) == (0.5, 0.5, 0.5)
    assert prf(labels, np.zeros(4), 0.5) == (0.0, 0.0, 0.0)


def test_needs_both_classes():
    with pytest.raises(ValueError, match="both positives and negatives"):
        train_iterative(["a", "b"], [1, 1], [], SECTION)


def test_keyword_scorer_and_file_labels(tmp_path):
    scorer = KeywordScorer(["theorem", "proof"], negative=["casino"], min_hits=2)
    assert scorer.score(["a theorem and its proof", "a theorem", "theorem proof casino"]) == [1.0, 0.5, 0.0]
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "x", "label": 1}, {"text": "y", "label": 0.2}])
    assert FileLabels(path).texts_and_scores() == (["x", "y"], [1.0, 0.2])
    write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "yes"}])
    with pytest.raises(ValueError, match="numeric 'label'"):
        FileLabels(tmp_path / "bad.jsonl")


def test_cli_trains_from_keywords(tmp_path, capsys):
    texts, _ = _toy(20, 4)
    write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in texts])
    (tmp_path / "kw.json").write_text(json.dumps({"positive": EDU, "min_hits": 2}))
    (tmp_path / "cfg.yaml").write_text(
        "language: {keep: [en], min_confidence: {en: 0.5}, min_script_ratio: {en: 0.5}}\n"
        "heuristics: {en: {}}\n"
        "classifier_training: {buckets: 4096, dim: 8, char_ngram_max: 0, rounds: 2}\n")
    rc = main(["curate-train-classifier", "--config", str(tmp_path / "cfg.yaml"), "--keywords", str(tmp_path / "kw.json"),
               "--texts", str(tmp_path / "texts.jsonl"), "--unlabelled", str(tmp_path / "texts.jsonl"),
               "--output", str(tmp_path / "m.npz")])
    assert rc == 0 and (tmp_path / "m.npz").is_file()
    out = capsys.readouterr().out
    rounds = json.loads(out[out.index("{\n"):])["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
