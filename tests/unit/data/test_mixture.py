"""Stage mixtures: parsing errors, shares, blends for the trainer, and `kanana mixture show`."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megatron_kanana.config.section import ConfigError
from megatron_kanana.data.demo_corpus import demo_corpus_files
from megatron_kanana.data.indexed_datasets import DatasetError
from megatron_kanana.data.mixture import Mixture, load_mixture, parse_token_count, stage_blends
from megatron_kanana.data.mixture_report import show
from megatron_kanana.data.preprocess import preprocess

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "mixtures"


def mixture(stages, **top) -> Mixture:
    return Mixture.from_dict({"stages": stages, **top})


def stage(sources, tokens=1000, name="s1"):
    return {"name": name, "tokens": tokens, "sources": sources}


@pytest.mark.parametrize("stages, message", [
    ([stage([{"path": "a", "category": "x"}])], r"stages\[0\].sources\[0\].weight/tokens: give exactly one"),
    ([stage([{"path": "a", "category": "x", "weight": 1, "tokens": 5}])], "give exactly one"),
    ([stage([{"path": "a", "category": "x", "weight": -1}])], r"sources\[0\].weight: must be >= 0"),
    ([stage([{"path": "a", "category": "x", "tokens": "12X"}])], "'12X' is not a token count"),
    ([stage([{"path": "a", "category": "x", "tokens": 2000}])], "sum to 2000, more than the stage's tokens 1000"),
    ([stage([{"path": "a", "category": "x", "tokens": 500}])], "sum to 500, not the stage's tokens 1000"),
    ([stage([{"path": "a", "category": "x", "weight": 0}])], "weights sum to 0"),
    ([stage([{"path": "a", "category": "x", "weight": 1}], tokens=None)], "tokens: required"),
    ([stage([])], r"stages\[0\].sources: needs at least one source"),
    ([stage([{"path": "a", "category": "x", "weight": 1, "colour": 3}])], r"unknown key\(s\) stages\[0\].sources\[0\].colour"),
    ([stage([{"path": "a", "weight": 1}])], "missing 1 required positional argument: 'category'"),
    ([stage([{"path": "a", "category": "x", "weight": 1}]), stage([{"path": "a", "category": "x", "weight": 1}])],
     r"duplicate stage name\(s\) \['s1'\]"),
    ([], "stages: needs at least one stage"),
])
def test_parse_errors_name_the_key(stages, message):
    with pytest.raises(ConfigError, match=message):
        mixture(stages)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such mixture file"):
        load_mixture(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("stages: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mixture(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_mixture(tmp_path / "list.yaml")


def test_token_counts():
    assert parse_token_count("2.7T", "t") == 2_700_000_000_000
    assert parse_token_count("300B", "t") == 300 * 10**9
    assert parse_token_count("20m", "t") == 20_000_000
    assert parse_token_count(1_000, "t") == 1000
    with pytest.raises(ConfigError, match="must be positive"):
        parse_token_count(0, "t")


def test_token_budgets_then_weights_share_the_rest():
    m = mixture([stage([{"path": "a", "category": "x", "tokens": 250},
                        {"path": "b", "category": "y", "weight": 1},
                        {"path": "c", "category": "y", "weight": 2}])])
    assert m.stages[0].shares() == pytest.approx([0.25, 0.25, 0.5])
    assert m.stages[0].category_shares() == pytest.approx({"x": 0.25, "y": 0.75})
    only_budgets = mixture([stage([{"path": "a", "category": "x", "tokens": "3k"},
                                   {"path": "b", "category": "x", "tokens": "1k"}], tokens=None)])
    assert only_budgets.stages[0].token_budget == 4000 and only_budgets.stages[0].shares() == [0.75, 0.25]


def test_kanana_example_matches_the_recipe():
    m = load_mixture(EXAMPLES / "kanana_3t.yaml")
    s1, s2 = m.stage("stage1"), m.stage("stage2")
    assert (s1.token_budget, s2.token_budget) == (2_700_000_000_000, 300_000_000_000)
    published = {"stage1": {"english_web": 67.8, "korean_web": 9.6, "academic": 8.7, "code": 12.8, "encyclopedia": 1.0},
                 "stage2": {"english_web": 5.3, "korean_web": 20.5, "academic": 35.8, "code": 34.3,
                            "encyclopedia": 2.4, "instruction": 1.8}}
    for s in (s1, s2):
        shares = s.category_shares()
        assert shares.keys() == published[s.name].keys()
        for cat, pct in published[s.name].items():
            assert shares[cat] == pytest.approx(pct / 100, abs=0.002)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory, hf_tokenizer) -> str:
    """Small datasets under the demo mixture's source names (the test corpus: fast to tokenize)."""
    root = tmp_path_factory.mktemp("demo_data")
    for path in demo_corpus_files():
        for quality in ("guide", "reference"):
            preprocess([str(path)], hf_tokenizer, str(root / f"{path.stem}_{quality}"), workers=1, append_eod=True)
    return str(root)


def test_demo_mixture_blends(demo_data):
    m = load_mixture(EXAMPLES.parent / "demo" / "mixture.yaml")
    blends = stage_blends(m, data_root=demo_data)
    assert set(blends) == {"stage1", "stage2"}
    for name, ko_share, ko_guide in (("stage1", 0.3, 0.15), ("stage2", 0.7, 0.5)):
        weights = dict(blends[name])
        assert sum(weights.values()) == pytest.approx(1.0)
        assert weights[f"{demo_data}/ko_guide"] + weights[f"{demo_data}/ko_reference"] == pytest.approx(ko_share)
        assert weights[f"{demo_data}/ko_guide"] == pytest.approx(ko_guide)
    # every source in both stages: the held-out set of a language is the same at either stage's end
    assert [sorted(s.path for s in stage.sources) for stage in m.stages] == [
        ["en_guide", "en_reference", "ko_guide", "ko_reference"]] * 2


def test_glob_source_splits_by_tokens(tmp_path, demo_data):
    m = mixture([stage([{"path": "*", "category": "all", "weight": 1}])], data_root=demo_data)
    from megatron_kanana.data.indexed_datasets import dataset_summary

    pairs = dict(stage_blends(m)["s1"])
    tokens = {p: dataset_summary(p).num_tokens for p in pairs}
    assert sorted(pairs) == sorted(f"{demo_data}/{lang}_{q}" for lang in ("en", "ko") for q in ("guide", "reference"))
    for p, w in pairs.items():
        assert w == pytest.approx(tokens[p] / sum(tokens.values()))
    missing = mixture([stage([{"path": "nope", "category": "x", "weight": 1}])], data_root=demo_data)
    with pytest.raises(DatasetError, match="source nope: no dataset found"):
        stage_blends(missing)


def test_show_reports_epochs_and_warns(tmp_path, demo_data):
    text = (EXAMPLES.parent / "demo" / "mixture.yaml").read_text()
    out = show(str(EXAMPLES.parent / "demo" / "mixture.yaml"), data_root=demo_data)
    assert "stage stage1: budget 200k tokens" in out and "categories: en 70.0%, ko 30.0%" in out
    ko_line = next(line for line in out.splitlines() if line.strip().startswith("ko_guide ") and "15.00%" in line)
    assert ko_line.split()[-1] != "-" and float(ko_line.split()[-1]) > 0
    assert "WARNING" not in out
    data = yaml.safe_load(text)
    data["stages"][0]["tokens"] = "50M"
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(data))
    out = show(str(tmp_path / "big.yaml"), data_root=demo_data)
    assert "WARNING: stage stage1: ko_guide would be repeated" in out and "more than max_epochs 1" in out
    out = show(str(EXAMPLES / "kanana_3t.yaml"), data_root=str(tmp_path))
    assert "english_web/*" in out and "missing" in out and "no dataset found" in out
