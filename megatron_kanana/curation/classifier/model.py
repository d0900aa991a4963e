"""A fastText-style binary classifier in numpy.

Features are hashed into `buckets` rows of an embedding table: lower-cased
words, word n-grams up to `word_ngrams`, and character n-grams of `<word>`
(sizes char_ngram_min..char_ngram_max; for Korean these are syllable n-grams,
which stand in for the morphemes a tokenizer would find). A document is the
mean of its feature embeddings; a linear layer and a sigmoid give
P(positive). Training is plain SGD with fastText's linearly decaying rate.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

import numpy as np

from megatron_kanana.curation.config import ClassifierTrainingSection

_TOKEN = re.compile(r"\w+")


def _hash(feature: str, buckets: int) -> int:
    # crc32 is stable across processes (str hash() is salted per process).
    return zlib.crc32(feature.encode("utf-8")) % buckets


class FastTextClassifier:
    def __init__(self, section: ClassifierTrainingSection):
        self.section = section
        rng = np.random.default_rng(section.seed)
        dim = section.dim
        self.embeddings = rng.uniform(-1.0 / dim, 1.0 / dim, (section.buckets, dim)).astype(np.float32)
        self.weights = np.zeros(dim, dtype=np.float32)
        self.bias = 0.0

    def features(self, text: str) -> np.ndarray:
        s = self.section
        words = _TOKEN.findall(text.lower())[: s.max_tokens]
        feats = list(words)
        for n in range(2, s.word_ngrams + 1):
            feats += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        for word in words:
            marked = f"<{word}>"
            for n in range(max(s.char_ngram_min, 1), s.char_ngram_max + 1):
                feats += ["#" + marked[i:i + n] for i in range(len(marked) - n + 1)]
        if not feats:
            feats = ["<empty>"]
        return np.fromiter((_hash(f, s.buckets) for f in feats), dtype=np.int64, count=len(feats))

    def _logit(self, ids: np.ndarray) -> tuple[float, np.ndarray]:
        hidden = self.embeddings[ids].mean(axis=0)
        return float(hidden @ self.weights) + self.bias, hidden

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        logits = [self._logit(self.features(t))[0] for t in texts]
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    def fit(self, texts: list[str], labels: list[int]) -> "FastTextClassifier":
        s = self.section
        if not texts:
            raise ValueError("no training documents")
        y = np.asarray(labels, dtype=np.float32)
        pos = float(y.sum())
        # Positives are rare in Kanana's Korean web data; balancing keeps the model from
        # learning "always negative".
        w_pos = (len(y) - pos) / max(pos, 1.0) if s.balance_classes and pos else 1.0
        feats = [self.features(t) for t in texts]
        rng = np.random.default_rng(s.seed)
        steps, step = s.epochs * len(texts), 0
        for _ in range(s.epochs):
            for i in rng.permutation(len(texts)):
                lr = s.lr * (1.0 - step / steps)
                step += 1
                ids = feats[i]
                logit, hidden = self._logit(ids)
                p = 1.0 / (1.0 + np.exp(-logit))
                grad = (p - y[i]) * (w_pos if y[i] > 0.5 else 1.0)
                grad_hidden = grad * self.weights / len(ids)
                self.weights -= lr * grad * hidden
                self.bias -= lr * grad
                np.add.at(self.embeddings, ids, -lr * grad_hidden)
        return self

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, embeddings=self.embeddings, weights=self.weights, bias=np.float64(self.bias),
                 section=np.array(json.dumps(self.section.to_dict())))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "FastTextClassifier":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"classifier model {path} does not exist")
        with np.load(path) as data:
            section = ClassifierTrainingSection.from_dict(json.loads(str(data["section"])))
            model = cls.__new__(cls)
            model.section = section
            model.embeddings = data["embeddings"]
            model.weights = data["weights"]
            model.bias = float(data["bias"])
        return model
