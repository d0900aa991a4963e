import unicodedata

import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.curation.config import NormaliseSection
from megatron_kanana.curation.normalise import normalise_text

SECTION = NormaliseSection()


def test_nfd_hangul_is_composed_back():
    text = "한국어 문장입니다"
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text and len(nfd) > len(text)
    assert normalise_text(nfd, SECTION) == text


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\ufeff", "\u3164", "\u115f", "\u1160", "\uffa0", "\u00ad"])
def test_invisible_characters_and_hangul_fillers_removed(char):
    assert normalise_text(f"가{char}나 다{char}{char}라", SECTION) == "가나 다라"


def test_whitespace_runs_collapse_but_paragraphs_stay():
    text = "  one\u00a0\u00a0two\t\tthree \n\n\n\n four\u3000five  \r\nsix  "
    assert normalise_text(text, SECTION) == "one two three\n\nfour five\nsix"


def test_nfkc_compatibility_characters_survive():
    # NFKC would turn ㈜ into (주) and full-width Ａ into A; NFC keeps them.
    assert normalise_text("㈜카카오 Ａ", SECTION) == "㈜카카오 Ａ"


@pytest.mark.parametrize("form", ["NFD", "NFKC"])
def test_config_refuses_other_normal_forms(form):
    with pytest.raises(ConfigError, match="unicode_form"):
        NormaliseSection.from_dict({"unicode_form": form})
