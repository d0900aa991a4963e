"""Where training labels come from: a labelled file, or a pluggable `Scorer`.

A scorer maps texts to scores (higher = more educational / higher quality);
`positive_min` turns a score into a label. FineWeb-Edu and Kanana scored pages
with an LLM; that plugs in here as another `Scorer` (prompt the 0-5 rubric,
parse the number). None is shipped, because this project runs without network;
`KeywordScorer` and `FileLabels` are the offline implementations.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Protocol, Sequence


class Scorer(Protocol):
    def score(self, texts: Sequence[str]) -> list[float]:
        """One score per text; higher means more educational."""


class KeywordScorer:
    """Score = distinct positive keywords present / `min_hits`, capped at 1.

    A document also containing any `negative` keyword scores 0. Crude, which is
    the point: it seeds round 0, and iterative retraining generalises past it.
    """

    def __init__(self, positive: Sequence[str], negative: Sequence[str] = (), min_hits: int = 2):
        if not positive:
            raise ValueError("KeywordScorer needs at least one positive keyword")
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits}")
        self.positive = [k.lower() for k in positive]
        self.negative = [k.lower() for k in negative]
        self.min_hits = min_hits

    def score(self, texts: Sequence[str]) -> list[float]:
        out = []
        for text in texts:
            low = text.lower()
            if any(k in low for k in self.negative):
                out.append(0.0)
                continue
            out.append(min(1.0, sum(k in low for k in self.positive) / self.min_hits))
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> "KeywordScorer":
        """JSON {"positive": [...], "negative": [...], "min_hits": N}."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
            raise ValueError(f"{path}: not a readable JSON keyword file ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with positive, negative, min_hits")
        unknown = set(data) - {"positive", "negative", "min_hits"}
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; valid: positive, negative, min_hits")
        return cls(data.get("positive", []), data.get("negative", []), int(data.get("min_hits", 2)))


def read_texts(path: str | Path, text_key: str = "text") -> Iterator[dict]:
    """Documents of a JSONL file or of every *.jsonl under a directory; bad lines raise with their place."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no JSONL input at {path}")
    for file in files:
        with open(file, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:  # decoding per line, so invalid UTF-8 is reported with its place like bad JSON
                    doc = json.loads(raw.decode("utf-8"))
                except ValueError as e:
                    raise ValueError(f"{file}:{n}: not JSON ({e})") from None
                if not isinstance(doc, dict) or not isinstance(doc.get(text_key), str):
                    raise ValueError(f"{file}:{n}: expected an object with a string {text_key!r}")
                yield doc


class FileLabels:
    """Labels stored beside the texts: JSONL objects with `text` and a numeric `label`."""

    def __init__(self, path: str | Path, text_key: str = "text", label_key: str = "label"):
        self.docs = []
        for doc in read_texts(path, text_key):
            label = doc.get(label_key)
            if isinstance(label, bool) or not isinstance(label, (int, float)):
                raise ValueError(f"{path}: document without a numeric {label_key!r}: {str(doc)[:80]}")
            self.docs.append((doc[text_key], float(label)))

    def texts_and_scores(self) -> tuple[list[str], list[float]]:
        return [t for t, _ in self.docs], [s for _, s in self.docs]


