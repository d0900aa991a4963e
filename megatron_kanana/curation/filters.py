"""Pass 3's per-document cascade: language ID -> heuristics -> PII -> quality classifier.

`DocumentFilters` holds the loaded stages (the language model, compiled PII
patterns, classifiers), built once per worker process and reused for every
shard it handles.
"""
from __future__ import annotations

from typing import NamedTuple

from megatron_kanana.curation.classifier.model import FastTextClassifier
from megatron_kanana.curation.config import PipelineConfig
from megatron_kanana.curation.heuristics import check
from megatron_kanana.curation.language import LanguageIdentifier
from megatron_kanana.curation.pii import Anonymiser
from megatron_kanana.curation.stats import PipelineStats


class Verdict(NamedTuple):
    text: str              # anonymised when kept
    fields: dict | None    # fields to add to the output document; None when rejected
    stage: str = ""        # the rejecting stage
    reason: str = ""       # the rejecting rule


class DocumentFilters:
    def __init__(self, config: PipelineConfig):
        self.config = config
        self.language = LanguageIdentifier(config.language)
        self.anonymiser = Anonymiser(config.pii)
        self.classifiers = {lang: FastTextClassifier.load(q.model_path)
                            for lang, q in config.quality.items() if q.model_path}

    def apply(self, text: str, stats: PipelineStats) -> Verdict:
        size = len(text.encode("utf-8"))
        with stats.timed("language", size) as st:
            lang = self.language.identify(text)
            if lang.reason:
                st.reject(lang.reason)
                return Verdict(text, None, "language", lang.reason)
            st.docs_out += 1
            st.counters[lang.language] += 1
        with stats.timed("heuristics", size) as st:
            reason = check(text, self.config.heuristics[lang.language])
            if reason:
                st.reject(reason)
                return Verdict(text, None, "heuristics", reason)
            st.docs_out += 1
        with stats.timed("pii", size) as st:
            text, replaced = self.anonymiser.anonymise(text)
            st.counters.update(replaced)
            st.docs_out += 1
        fields = {"language": lang.language, "language_score": round(lang.score, 4)}
        model = self.classifiers.get(lang.language)
        if model is not None:
            quality = self.config.quality[lang.language]
            with stats.timed("quality", size) as st:
                score = float(model.predict_proba([text])[0])
                fields[quality.score_field] = round(score, 4)
                if score < quality.threshold:
                    st.reject(f"quality_{lang.language}")
                    return Verdict(text, None, "quality", f"quality_{lang.language}")
                st.docs_out += 1
        return Verdict(text, fields)
