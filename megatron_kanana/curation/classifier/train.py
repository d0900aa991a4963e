"""Train the quality classifier, iteratively as Kanana did for Korean.

    kanana curate-train-classifier --config PIPELINE.yaml --labels labelled.jsonl \
        [--unlabelled DIR_OR_JSONL] --output model.npz
    kanana curate-train-classifier --config PIPELINE.yaml --keywords kw.json \
        --texts DIR_OR_JSONL [--unlabelled ...] --output model.npz

Round 0 trains on the labelled documents (minus a held-out split). Each later
round first scores the unlabelled pool with the previous model and adds the
documents it is confident about (P >= add_threshold) as positives, then
retrains: most Korean pages scored as uneducational, so the positive class had
to grow this way (Kanana TR §2.2). Precision/recall/F1 at `threshold` are
reported on the same held-out split every round.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from megatron_kanana.curation.classifier.labels import FileLabels, KeywordScorer, read_texts
from megatron_kanana.curation.classifier.model import FastTextClassifier
from megatron_kanana.curation.config import ClassifierTrainingSection, load_pipeline_config
from megatron_kanana.log import get_logger

log = get_logger(__name__)


@dataclasses.dataclass
class RoundReport:
    round: int
    train_docs: int
    train_positives: int
    added_positives: int
    precision: float
    recall: float
    f1: float


def prf(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    predicted = scores >= threshold
    truth = labels.astype(bool)
    tp = float((predicted & truth).sum())
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / truth.sum() if truth.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * fraction))
    return order[cut:], order[:cut]


def train_iterative(texts: list[str], labels: list[int], unlabelled: list[str],
                    section: ClassifierTrainingSection) -> tuple[FastTextClassifier, list[RoundReport]]:
    if len(set(labels)) < 2:
        raise ValueError("labelled documents must contain both positives and negatives")
    train_idx, held_idx = split_holdout(len(texts), section.holdout_fraction, section.seed)
    if len(held_idx) == 0:
        raise ValueError("holdout_fraction leaves no held-out documents to report precision/recall on")
    train_texts = [texts[i] for i in train_idx]
    train_labels = [labels[i] for i in train_idx]
    held_texts, held_labels = [texts[i] for i in held_idx], np.asarray([labels[i] for i in held_idx])
    pool, reports, model, added = list(unlabelled), [], None, 0
    for rnd in range(section.rounds):
        if rnd > 0 and pool:
            scores = model.predict_proba(pool)
            confident = scores >= section.add_threshold
            new = [t for t, c in zip(pool, confident) if c]
            pool = [t for t, c in zip(pool, confident) if not c]
            train_texts += new
            train_labels += [1] * len(new)
            added = len(new)
        model = FastTextClassifier(section).fit(train_texts, train_labels)
        p, r, f = prf(held_labels, model.predict_proba(held_texts), section.threshold)
        reports.append(RoundReport(rnd, len(train_texts), int(sum(train_labels)), added, p, r, f))
        log.info("round %d: %d train docs (%d positive, %d added), held-out P=%.3f R=%.3f F1=%.3f",
                 rnd, len(train_texts), sum(train_labels), added, p, r, f)
    return model, reports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="pipeline YAML; its classifier_training section is used")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="JSONL (file or directory) with text and numeric label")
    src.add_argument("--keywords", help="JSON keyword scorer {positive, negative, min_hits}; needs --texts")
    parser.add_argument("--texts", help="JSONL documents to label with --keywords")
    parser.add_argument("--unlabelled", help="JSONL pool for iterative rounds")
    parser.add_argument("--output", required=True, help="model path (.npz)")
    parser.add_argument("--text-key", default="text", help="JSON field holding the text")


def run(args: argparse.Namespace) -> int:
    section = load_pipeline_config(args.config).classifier_training
    if args.labels:
        texts, scores = FileLabels(args.labels, args.text_key).texts_and_scores()
    else:
        if not args.texts:
            raise SystemExit("--keywords needs --texts (the documents to score)")
        texts = [d[args.text_key] for d in read_texts(args.texts, args.text_key)]
        scores = KeywordScorer.from_file(args.keywords).score(texts)
    labels = [int(s >= section.positive_min) for s in scores]
    pool = [d[args.text_key] for d in read_texts(args.unlabelled, args.text_key)] if args.unlabelled else []
    model, reports = train_iterative(texts, labels, pool, section)
    model.save(args.output)
    print(json.dumps({"model": args.output, "rounds": [dataclasses.asdict(r) for r in reports]}, indent=1))
    return 0
