"""The miniature benchmarks built from the help-pages corpus (local_tasks/kanana_help_*): the
committed items are what tools/build_corpus_tasks.py builds, they come from pages neither the
demo nor `kanana recipe` trains on, Korean survives intact, and lm-eval scores them by
log-likelihood as intended (the gold choice right, any other wrong)."""
import json
import unicodedata

import pytest
import yaml

from megatron_kanana.data.demo_corpus import HELP_FILES
from tests.distributed.launch import REPO
from tests.scripts import load_script

TASK_DIR = REPO / "megatron_kanana" / "evaluation" / "local_tasks"
DATA = TASK_DIR / "kanana_help"
TASKS = ("cloze_en", "cloze_ko", "mc_en", "mc_ko")


@pytest.fixture(scope="module")
def builder():
    return load_script("tools/build_corpus_tasks.py")


@pytest.fixture(scope="module")
def corpus(builder):
    return builder.load_corpus()


def _meta() -> dict:
    return json.loads((DATA / "heldout.json").read_text(encoding="utf-8"))


def _committed(stem: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_committed_items_are_the_builders(builder, corpus):
    meta = _meta()
    built = builder.build(corpus, meta["pages"], meta["num"], meta["seed"])
    assert sorted(built) == sorted(TASKS)
    for stem in TASKS:
        assert _committed(stem) == built[stem], stem
        assert len(built[stem]) == meta["num"] >= 40


def test_both_training_runs_split_off_the_slice_the_items_come_from():
    # the held-out rule assumes megatron's document split [95, 5, 0] in the demo and the recipe
    from megatron_kanana.recipe import arms

    demo = yaml.safe_load((REPO / "examples" / "demo" / "train.yaml").read_text())["data"]["split"]
    recipe = arms._train_config(arms.Layout(REPO / "unused"), "x", arms.QUICK, 1, shape=arms.BASE_SHAPE,
                                mixture="m", stage_steps={})["data"]["split"]
    assert demo == recipe == [95, 5, 0]


def test_items_come_from_held_out_pages_and_quote_no_training_page(corpus):
    pages = _meta()["pages"]
    by_id = {}
    for name in HELP_FILES:
        ids = [d["id"] for d in corpus[name]]
        first_validation = int(round(0.95 * len(ids)))  # megatron-core's rounding of the train share
        # the recipe validates on the packaged file's tail; the demo's curated tail is a subset of it
        assert set(pages[name]) <= set(ids[first_validation:]) and pages[name], name
        by_id.update({d["id"]: d for d in corpus[name]})
    heldout = {i for ids in pages.values() for i in ids}
    # the training pages' text; Korean sentences cannot be in English pages (no Hangul kept there)
    seen = {lang: "\n".join(d["text"] for i, d in by_id.items() if i not in heldout and lang in ("en", d["lang"]))
            for lang in ("en", "ko")}
    for stem in TASKS:
        seen_here = seen[stem[-2:]]
        for item in _committed(stem):
            assert item["id"] in heldout
            text = by_id[item["id"]]["text"]
            gold = item["choices"][item["label"]]
            if stem.startswith("cloze"):
                sentence = item["context"].rsplit(". ", 1)[-1] + " " + gold  # the completed sentence
                assert sentence in text and sentence not in seen_here, item
                assert len({c.lower() for c in item["choices"]}) == 4
            else:
                assert f"{item['context']} {gold}" in text or f"{item['context']}\n{gold}" in text, item
                # the distractors too: a sentence the pages repeat would be cheap to an untrained model
                assert all(s not in seen_here for s in (item["context"], *item["choices"])), item
                assert all(c not in text for i, c in enumerate(item["choices"]) if i != item["label"])


def test_korean_items_are_korean_and_intact():
    for stem in ("cloze_ko", "mc_ko"):
        raw = (DATA / f"{stem}.jsonl").read_bytes().decode("utf-8")  # written as UTF-8, not \\u escapes
        assert "\\u" not in raw and "\ufffd" not in raw
        for item in _committed(stem):
            for text in (item["context"], *item["choices"]):
                assert unicodedata.normalize("NFC", text) == text
                assert sum("가" <= ch <= "힣" for ch in text) >= 0.3 * len(text.replace(" ", "")), text


class _Picks:
    """An lm-eval LM that gives the gold choice the highest log-likelihood on even documents and
    the next choice on odd ones, checking that each request is the item's context and choice."""

    def __new__(cls):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def loglikelihood(self, requests):
                out = []
                for request in requests:
                    doc, choice = request.doc, request.idx
                    assert request.args == (doc["context"], " " + doc["choices"][choice])
                    wanted = doc["label"] if request.doc_id % 2 == 0 else (doc["label"] + 1) % 4
                    out.append((0.0 if choice == wanted else -5.0, choice == wanted))
                return out

            def loglikelihood_rolling(self, requests):
                raise AssertionError("loglikelihood only")

            generate_until = loglikelihood_rolling

        return Scripted()


def test_lm_eval_scores_the_gold_choice_right_and_another_wrong():
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = [f"kanana_help_{stem}" for stem in TASKS]
    results = lm_eval.simple_evaluate(model=_Picks(), tasks=["kanana_help"],
                                      task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
                                      bootstrap_iters=0)
    assert sorted(results["results"]) == sorted(names)  # the tag runs all four
    for name in names:
        n = results["n-samples"][name]["effective"]
        expected = ((n + 1) // 2) / n  # documents 0, 2, 4, ... right
        assert results["results"][name]["acc,none"] == pytest.approx(expected)
        assert results["results"][name]["acc_norm,none"] == pytest.approx(expected)
