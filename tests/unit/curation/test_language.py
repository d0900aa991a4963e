import pytest

from megatron_kanana.curation.config import LanguageSection
from megatron_kanana.curation.language import LanguageIdentifier
from tests.unit.curation.corpus import english_doc, korean_doc


@pytest.fixture(scope="module")
def lid():
    # Loads py3langid's model from inside the installed wheel: no network.
    return LanguageIdentifier(LanguageSection())


def test_korean_and_english_are_kept(lid):
    ko, en = lid.identify(korean_doc(0)), lid.identify(english_doc(0))
    assert (ko.language, ko.reason) == ("ko", None) and ko.script_ratio == 1.0
    assert (en.language, en.reason) == ("en", None) and en.score > 0.9


@pytest.mark.parametrize("text", [
    "Die Hauptstadt von Deutschland ist Berlin, und die Stadt ist sehr groß und schön.",
    "東京は日本の首都であり、世界でも有数の大都市です。",
    "Столица России — Москва, это очень большой город.",
])
def test_other_languages_are_rejected(lid, text):
    assert lid.identify(text).reason == "language_other"


def test_script_ratio_rejects_mostly_latin_text_labelled_korean(lid):
    strict = LanguageIdentifier(LanguageSection(min_script_ratio={"ko": 0.9, "en": 0.7}))
    text = "오늘은 터미널에서 numpy 설치 명령을 실행하고 결과를 확인합니다"
    decision = strict.identify(text)
    assert decision.language == "ko" and decision.reason == "low_script_ratio_ko"
    assert lid.identify(text).reason is None  # the default 0.3 keeps it


def test_confidence_threshold(lid):
    # Short text is English to py3langid, but without confidence.
    assert lid.identify("I like it").reason == "low_confidence_en"
    loose = LanguageIdentifier(LanguageSection(keep=["en"], min_confidence={"en": 0.3}, min_script_ratio={"en": 0.5}))
    assert loose.identify("I like it").reason is None
    assert loose.identify(korean_doc(0)).reason == "language_ko"
