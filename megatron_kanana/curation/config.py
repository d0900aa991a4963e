"""The curation pipeline's config: one Section per stage, parsed from PIPELINE.yaml.

Each stage receives its own section, never the root. The shipped example is
`examples/curation/kanana_pipeline.yaml`; a test parses it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Literal

import yaml

from megatron_kanana.config.section import ConfigError, Section


def _help(text: str, default=dataclasses.MISSING, factory=dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class RunSection(Section):
    workers: int = _help("worker processes for the per-shard passes (1 = run in this process)", 2)
    text_key: str = _help("JSON field holding the document text", "text")
    max_doc_bytes: int = _help("input lines longer than this are counted as too_large and skipped", 1_000_000)
    write_rejected: bool = _help("write rejected documents with their reason under OUTPUT/rejected/", True)
    shard_glob: str = _help("which files of --input are shards (.jsonl or .jsonl.gz)", "**/*.jsonl*")

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {self.workers}")
        if self.max_doc_bytes < 1:
            raise ConfigError(f"max_doc_bytes: must be >= 1, got {self.max_doc_bytes}")


@dataclasses.dataclass(frozen=True)
class NormaliseSection(Section):
    # Only NFC is accepted: NFD splits Hangul syllables into jamo (datatrove's bug) and
    # NFKC rewrites compatibility characters Korean text uses (e.g. full-width forms, ㈜).
    unicode_form: Literal["NFC"] = _help("Unicode normal form; only NFC keeps Hangul syllables intact", "NFC")
    remove_invisible: bool = _help("drop zero-width characters and Hangul fillers (U+3164, U+115F, U+1160, U+FFA0)", True)
    collapse_whitespace: bool = _help("collapse runs of spaces/tabs to one space and 3+ newlines to two", True)


@dataclasses.dataclass(frozen=True)
class DedupSection(Section):
    exact: bool = _help("drop exact duplicates of the normalised text", True)
    near: bool = _help("drop near duplicates found by MinHash LSH", True)
    num_bands: int = _help("LSH bands", 14)
    rows_per_band: int = _help("MinHash rows per band (num_bands * rows_per_band permutations)", 8)
    word_ngram: int = _help("shingle size in words for non-Korean text", 5)
    hangul_char_ngram: int = _help("shingle size in syllables (whitespace removed) for Korean text", 5)
    hangul_shingle_ratio: float = _help("documents whose letters are at least this Hangul use syllable shingles", 0.5)
    max_index_entries: int = _help("most (hash, doc) pairs held in memory at once by the LSH pass", 4_000_000)
    seed: int = _help("seed of the MinHash permutations", 1)

    def validate(self) -> None:
        for name in ("num_bands", "rows_per_band", "word_ngram", "hangul_char_ngram", "max_index_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.hangul_shingle_ratio <= 1.0:
            raise ConfigError(f"hangul_shingle_ratio: must be in [0, 1], got {self.hangul_shingle_ratio}")


@dataclasses.dataclass(frozen=True)
class LanguageSection(Section):
    keep: list[str] = _help("languages to keep (ISO 639-1, py3langid codes)", factory=lambda: ["ko", "en"])
    min_confidence: dict = _help("per language: least py3langid probability to keep", factory=lambda: {"ko": 0.5, "en": 0.65})
    min_script_ratio: dict = _help("per language: least share of letters in its script (ko: Hangul, en: Latin)",
                                   factory=lambda: {"ko": 0.3, "en": 0.7})
    # py3langid walks its byte DFA in Python (~1 MB/s); the opening of a page decides its language.
    max_chars: int = _help("py3langid reads at most this many leading characters (script ratio: all)", 4000)

    def validate(self) -> None:
        if not self.keep:
            raise ConfigError("keep: list at least one language")
        if self.max_chars < 1:
            raise ConfigError(f"max_chars: must be >= 1, got {self.max_chars}")
        for name in ("min_confidence", "min_script_ratio"):
            table = getattr(self, name)
            missing = [lang for lang in self.keep if lang not in table]
            if missing:
                raise ConfigError(f"{name}: no threshold for kept language(s) {missing}")
            for lang, value in table.items():
                if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                    raise ConfigError(f"{name}.{lang}: must be a number in [0, 1], got {value!r}")
        unknown_script = [lang for lang in self.keep if lang not in ("ko", "en")]
        if unknown_script:
            raise ConfigError(f"keep: script ratios are defined for ko and en only, got {unknown_script}")


@dataclasses.dataclass(frozen=True)
class HeuristicsSection(Section):
    """One language's thresholds. None switches a rule off."""

    min_words: int | None = _help("Gopher: least words", 50)
    max_words: int | None = _help("Gopher: most words", 100_000)
    min_avg_word_length: float | None = _help("Gopher: least mean word length (characters)", 3.0)
    max_avg_word_length: float | None = _help("Gopher: most mean word length (characters)", 10.0)
    max_symbol_word_ratio: float | None = _help("Gopher: most ('#' + '...') per word", 0.1)
    max_bullet_lines_ratio: float | None = _help("Gopher: most share of lines starting with a bullet", 0.9)
    max_ellipsis_lines_ratio: float | None = _help("Gopher: most share of lines ending with an ellipsis", 0.3)
    max_non_alpha_words_ratio: float | None = _help("Gopher: least share of words with a letter (kept name)", 0.8)
    min_stop_words: int | None = _help("Gopher: least stop-word occurrences", 2)
    stop_words: list[str] = _help("stop words", factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    stop_word_match: Literal["exact", "suffix"] = _help("exact: a word equals a stop word; suffix: a word ends with "
                                                        "one (Korean particles attach to the word)", "exact")
    dup_line_frac: float | None = _help("Gopher: most share of duplicated lines", 0.3)
    dup_para_frac: float | None = _help("Gopher: most share of duplicated paragraphs", 0.3)
    dup_line_char_frac: float | None = _help("Gopher: most share of characters in duplicated lines", 0.2)
    dup_para_char_frac: float | None = _help("Gopher: most share of characters in duplicated paragraphs", 0.2)
    top_n_grams: list[list[float]] = _help("Gopher: [n, most char share of the top n-gram]",
                                           factory=lambda: [[2, 0.2], [3, 0.18], [4, 0.16]])
    dup_n_grams: list[list[float]] = _help("Gopher: [n, most char share of duplicated n-grams]",
                                           factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]])
    line_punct_thr: float | None = _help("FineWeb: least share of lines ending in terminal punctuation", 0.12)
    terminal_punctuation: list[str] = _help("FineWeb: line endings counted as terminal", factory=lambda: [".", "!", "?", '"', "'"])
    short_line_length: int = _help("FineWeb: a line this short (characters) or shorter is short", 30)
    short_line_thr: float | None = _help("FineWeb: most share of short lines", 0.67)
    char_duplicates_ratio: float | None = _help("FineWeb: most share of characters in duplicated lines", 0.01)
    new_line_ratio: float | None = _help("FineWeb: most newlines per word", 0.3)
    min_hangul_ratio: float | None = _help("Korean: least share of letters that are Hangul", None)

    def validate(self) -> None:
        for name in ("top_n_grams", "dup_n_grams"):
            for pair in getattr(self, name):
                if len(pair) != 2 or int(pair[0]) != pair[0] or pair[0] < 1 or not 0 <= pair[1] <= 1:
                    raise ConfigError(f"{name}: each entry is [n >= 1, share in [0, 1]], got {pair}")
        if self.min_words is not None and self.max_words is not None and self.min_words > self.max_words:
            raise ConfigError(f"min_words: {self.min_words} exceeds max_words {self.max_words}")


@dataclasses.dataclass(frozen=True)
class PIISection(Section):
    email: bool = _help("replace e-mail addresses with <EMAIL>", True)
    phone: bool = _help("replace phone numbers (Korean and international) with <PHONE>", True)
    rrn: bool = _help("replace Korean resident registration numbers with <RRN>", True)
    # Off by default: numbers issued since October 2020 carry a random last digit.
    rrn_checksum: bool = _help("also require the pre-2020 RRN check digit", False)
    ip: bool = _help("replace IPv4/IPv6 addresses with <IP>", True)
    card: bool = _help("replace Luhn-valid payment-card numbers with <CARD>", True)


@dataclasses.dataclass(frozen=True)
class QualitySection(Section):
    model_path: str | None = _help("classifier from `kanana curate-train-classifier` (None: stage skipped)", None)
    threshold: float = _help("least positive-class probability to keep a document", 0.5)
    score_field: str = _help("output field receiving the score", "quality_score")

    def validate(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold: must be in [0, 1], got {self.threshold}")


@dataclasses.dataclass(frozen=True)
class ClassifierTrainingSection(Section):
    buckets: int = _help("hash buckets of the feature embedding table", 1 << 18)
    dim: int = _help("embedding size", 16)
    word_ngrams: int = _help("longest word n-gram feature", 2)
    char_ngram_min: int = _help("shortest character n-gram of <word> (0 = none)", 2)
    char_ngram_max: int = _help("longest character n-gram of <word> (0 = none)", 4)
    max_tokens: int = _help("words read per document", 2000)
    epochs: int = _help("passes over the training set per round", 10)
    lr: float = _help("initial SGD learning rate (decays linearly to 0)", 1.0)
    balance_classes: bool = _help("weight positives by negatives/positives", True)
    seed: int = _help("seed of initialisation, shuffling and the held-out split", 0)
    holdout_fraction: float = _help("share of labelled documents held out for precision/recall/F1", 0.2)
    positive_min: float = _help("a label or scorer score at least this is positive (FineWeb-Edu: 3 of 5)", 0.5)
    threshold: float = _help("P(positive) at least this counts as positive in the metrics", 0.5)
    rounds: int = _help("training rounds; each adds the previous round's predicted positives", 1)
    add_threshold: float = _help("P(positive) an unlabelled document needs to join the next round as positive", 0.9)

    def validate(self) -> None:
        for name in ("buckets", "dim", "word_ngrams", "max_tokens", "epochs", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.char_ngram_max > 0 and self.char_ngram_min > self.char_ngram_max:
            raise ConfigError(f"char_ngram_min: {self.char_ngram_min} exceeds char_ngram_max {self.char_ngram_max}")
        for name in ("holdout_fraction", "threshold", "add_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig(Section):
    run: RunSection = _help("workers and I/O", factory=RunSection)
    normalise: NormaliseSection = _help("text normalisation", factory=NormaliseSection)
    dedup: DedupSection = _help("exact and MinHash dedup", factory=DedupSection)
    language: LanguageSection = _help("language identification", factory=LanguageSection)
    heuristics: dict = _help("language -> HeuristicsSection thresholds", factory=dict)
    pii: PIISection = _help("PII anonymisation", factory=PIISection)
    quality: dict = _help("language -> QualitySection classifier", factory=dict)
    classifier_training: ClassifierTrainingSection = _help("`kanana curate-train-classifier` settings",
                                                           factory=ClassifierTrainingSection)

    def validate(self) -> None:
        # dict-of-sections fields are parsed here so errors name heuristics.ko.min_words etc.
        for name, section_type in (("heuristics", HeuristicsSection), ("quality", QualitySection)):
            table = getattr(self, name)
            for lang, value in table.items():
                if not isinstance(value, section_type):
                    if not isinstance(value, dict):
                        raise ConfigError(f"{name}.{lang}: expected a mapping, got {type(value).__name__}")
                    table[lang] = section_type.from_dict(value, prefix=f"{name}.{lang}")
        missing = [lang for lang in self.language.keep if lang not in self.heuristics]
        if missing:
            raise ConfigError(f"heuristics: no threshold set for kept language(s) {missing}")


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    try:
        return PipelineConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
