"""Stage 3: offline language identification (py3langid) checked against the script.

py3langid ships its naive-Bayes model inside the wheel, so nothing is downloaded
at run time (datatrove, Dolma and NeMo Curator fetch fastText lid.176 instead).
Its probability alone confuses short Korean/English mixes, so a document is
kept as language L only if py3langid says L with at least `min_confidence[L]`
and at least `min_script_ratio[L]` of its letters are in L's script.
"""
from __future__ import annotations

import dataclasses

from megatron_kanana.curation.config import LanguageSection
from megatron_kanana.curation.script import codepoints, hangul_letter_ratio, latin_letter_ratio


SCRIPT_RATIO = {"ko": hangul_letter_ratio, "en": latin_letter_ratio}


@dataclasses.dataclass(frozen=True)
class LanguageDecision:
    language: str       # py3langid's label, "und" when the text has no features
    score: float        # its probability
    script_ratio: float  # share of letters in that language's script (0 for other languages)
    reason: str | None  # None when kept


class LanguageIdentifier:
    def __init__(self, section: LanguageSection):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier as _Model

        self.section = section
        # norm_probs gives probabilities, so thresholds are comparable across lengths.
        self._model = _Model.from_model_file(MODEL_FILE, norm_probs=True)

    def identify(self, text: str) -> LanguageDecision:
        lang, score = self._model.classify(text[: self.section.max_chars])
        ratio_fn = SCRIPT_RATIO.get(lang)
        ratio = ratio_fn(codepoints(text)) if ratio_fn else 0.0
        if lang not in self.section.keep:
            reason = f"language_{lang}" if lang in ("ko", "en") else "language_other"
        elif score < self.section.min_confidence[lang]:
            reason = f"low_confidence_{lang}"
        elif ratio < self.section.min_script_ratio[lang]:
            reason = f"low_script_ratio_{lang}"
        else:
            reason = None
        return LanguageDecision(lang, float(score), ratio, reason)
