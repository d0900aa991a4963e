import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.curation.config import HeuristicsSection, PipelineConfig, QualitySection, load_pipeline_config

EXAMPLE = "examples/curation/kanana_pipeline.yaml"


def test_example_parses_into_sections():
    config = load_pipeline_config(EXAMPLE)
    assert isinstance(config.heuristics["ko"], HeuristicsSection)
    assert isinstance(config.quality["en"], QualitySection)
    assert config.heuristics["ko"].stop_word_match == "suffix"
    assert config.heuristics["ko"].dup_line_frac == 0.374  # FineWeb-2 kor_Hang
    assert config.dedup.num_bands * config.dedup.rows_per_band == 112


@pytest.mark.parametrize("data, message", [
    ({"dedup": {"num_band": 14}}, "unknown key.*dedup.num_band"),
    ({"dedup": {"rows_per_band": 0}}, "dedup.rows_per_band: must be >= 1"),
    ({"heuristics": {"en": {}, "ko": {"min_words": "many"}}}, "heuristics.ko.min_words: expected an integer"),
    ({"heuristics": {"en": {}}}, r"no threshold set for kept language\(s\) \['ko'\]"),
    ({"heuristics": {"en": {}, "ko": {"top_n_grams": [[2]]}}}, "heuristics.ko.top_n_grams"),
    ({"language": {"keep": ["ko", "fr"]}}, "min_confidence: no threshold"),
    ({"quality": {"en": {"threshold": 2}}, "heuristics": {"en": {}, "ko": {}}}, "quality.en.threshold"),
    ({"run": {"workers": 0}}, "run.workers"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_dict(data)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline_config(tmp_path / "nope.yaml")
