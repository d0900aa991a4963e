import dataclasses

import pytest

from megatron_kanana.curation.config import HeuristicsSection, load_pipeline_config
from megatron_kanana.curation.heuristics import check
from tests.unit.curation.corpus import english_doc, korean_doc

EXAMPLE = "examples/curation/kanana_pipeline.yaml"
# Every rule off; each case switches one on.
OFF = HeuristicsSection(**{f.name: None for f in dataclasses.fields(HeuristicsSection)
                           if f.type.endswith("| None")}, top_n_grams=[], dup_n_grams=[])

LINES = [f"Line number {w} says something different here." for w in "one two three four five six".split()]
CASES = [
    ("gopher_min_words", {"min_words": 50}, "too few words here."),
    ("gopher_max_words", {"max_words": 5}, "one two three four five six seven"),
    ("gopher_min_avg_word_length", {"min_avg_word_length": 3}, "a b c de f g"),
    ("gopher_max_avg_word_length", {"max_avg_word_length": 10}, "incomprehensibilities antidisestablishment"),
    ("gopher_symbol_word_ratio", {"max_symbol_word_ratio": 0.1}, "#tag #more #hash words here..."),
    ("gopher_bullet_lines_ratio", {"max_bullet_lines_ratio": 0.5}, "• first\n• second\n- third\nprose line"),
    ("gopher_ellipsis_lines_ratio", {"max_ellipsis_lines_ratio": 0.3}, "read more...\nand more…\nfine line"),
    ("gopher_alpha_words_ratio", {"max_non_alpha_words_ratio": 0.8}, "123 456 789 word 000"),
    ("gopher_stop_words", {"min_stop_words": 2}, "cats chase mice daily"),
    ("gopher_dup_line_frac", {"dup_line_frac": 0.3}, "same line\nsame line\nsame line\nother"),
    ("gopher_dup_line_char_frac", {"dup_line_char_frac": 0.2}, "\n".join(LINES[:3] + [LINES[0]])),
    ("gopher_dup_para_frac", {"dup_para_frac": 0.3}, "para one\n\npara one\n\npara one\n\npara two"),
    ("gopher_dup_para_char_frac", {"dup_para_char_frac": 0.2}, "a long paragraph text\n\na long paragraph text\n\nx"),
    ("gopher_top_2_gram", {"top_n_grams": [[2, 0.2]]}, "buy now buy now buy now cheap stuff today"),
    ("gopher_dup_5_gram", {"dup_n_grams": [[5, 0.15]]}, "a b c d e f a b c d e g h i"),
    ("fineweb_line_punct_ratio", {"line_punct_thr": 0.12}, "no punctuation\nnone here either\nnor here"),
    ("fineweb_short_line_ratio", {"short_line_thr": 0.67}, "short\ntiny\nsmall\n" + LINES[0]),
    ("fineweb_char_dup_ratio", {"char_duplicates_ratio": 0.01}, "\n".join(LINES + [LINES[2]])),
    ("fineweb_new_line_ratio", {"new_line_ratio": 0.3}, "one\ntwo\nthree\nfour words here now"),
    ("korean_hangul_ratio", {"min_hangul_ratio": 0.5}, "한국어 mostly english text here"),
]


@pytest.mark.parametrize("rule, thresholds, text", CASES, ids=[c[0] for c in CASES])
def test_each_rule_triggers_and_names_itself(rule, thresholds, text):
    assert check(text, OFF) is None
    assert check(text, OFF.replace(**thresholds)) == rule


def test_korean_stop_words_match_as_suffixes():
    section = OFF.replace(min_stop_words=2, stop_words=["에서", "는"])
    assert check("학교에서 공부를 한다", section.replace(stop_word_match="exact")) == "gopher_stop_words"
    assert check("학교에서 공부는 한다", section.replace(stop_word_match="suffix")) is None


def test_generated_documents_pass_the_example_thresholds():
    config = load_pipeline_config(EXAMPLE)
    for seed in range(5):
        assert check(english_doc(seed), config.heuristics["en"]) is None
        assert check(korean_doc(seed), config.heuristics["ko"]) is None
    # Korean thresholds reject English text on the Hangul rule first.
    assert check(english_doc(0), config.heuristics["ko"]) == "korean_hangul_ratio"
