"""Rebuild the local lm-eval tasks `kanana_help_{cloze,mc}_{en,ko}` from the help-pages corpus.

    python tools/build_corpus_tasks.py [--curated DIR] [--num 60] [--seed 2026]

Miniature benchmarks scored by log-likelihood (output_type multiple_choice, acc and
acc_norm; chance 0.25), written to megatron_kanana/evaluation/local_tasks/kanana_help/:
- cloze: a sentence of a held-out page with its last word removed; the word (then ".")
  among three words that end other held-out sentences of the language (so every choice can
  end a sentence: "있습니다." against "확인하십시오.", not against a particle no sentence
  ends with), of about its length and its frequency in the language's pages;
- mc: a sentence of a held-out page; its true next sentence among three sentences of about
  its length (±10%) from other held-out pages of the same language, novel as it is (below).
Length and frequency are matched because a model that has learnt nothing still prefers the
choice of fewer tokens (each costs about log V nats), and a frequent word is fewer tokens:
with page words of any frequency as distractors, a one-step model scored 0.60 on Korean cloze.

Held out (`heldout_ids`): a page is used only if neither the demo nor `kanana recipe` trains
on it. Both split each indexed dataset by document order with `data.split: [95, 5, 0]`
(megatron-core: documents [0, round(0.95·N)) train, the rest validate). The recipe
preprocesses the packaged files as they are; the demo curates them first
(examples/curation/kanana_pipeline.yaml, which keeps document order), so a page is held out
when it is in the last 5% of its packaged file *and* kept by the demo's curation in the last
5% of its curated file. A page curation drops is not used (it may be a near-duplicate of a
training page). On top, the sentence a cloze item completes, and every sentence of a
next-sentence item (context and the four choices), appear verbatim in no page outside the
held-out set (the help pages repeat many sentences). `--curated` takes a `kanana curate` output of the demo's
pipeline (e.g. demo_out/curated); without it the script runs that curation (~1 min). The
held-out ids go to kanana_help/heldout.json; the items are a pure function of the packaged
corpus, those ids and the seed, so a rebuild is byte-identical.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from megatron_kanana.data.demo_corpus import HELP_FILES, help_corpus_files, read_documents  # noqa: E402

OUT = REPO / "megatron_kanana" / "evaluation" / "local_tasks" / "kanana_help"
PIPELINE = REPO / "examples" / "curation" / "kanana_pipeline.yaml"
TRAIN_SHARE = 0.95  # examples/demo/train.yaml and recipe/arms.py: data.split [95, 5, 0]
LANGUAGES = ("en", "ko")
NUM_CHOICES = 4
MAX_PER_PAGE = 2  # items of one task from one page, so a few long pages do not make the task

_SPLIT = {"en": re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])"), "ko": re.compile(r"(?<=[.!?])\s+")}
_WORD = {"en": re.compile(r"[A-Za-z]{3,}"), "ko": re.compile(r"[가-힣]{2,}")}
_HANGUL = re.compile(r"[가-힣]")


def train_count(num_documents: int) -> int:
    """Documents megatron-core puts in the train split (blended_megatron_dataset_builder's rounding)."""
    return int(round(TRAIN_SHARE * num_documents))


def tail_ids(ids: list[str]) -> list[str]:
    return ids[train_count(len(ids)):]


def heldout_ids(packaged: dict[str, list[str]], curated: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per corpus file, the page ids in both the recipe's (packaged) and the demo's (curated) validation slice."""
    out = {}
    for name in HELP_FILES:
        demo = set(tail_ids(curated[name]))
        out[name] = [i for i in tail_ids(packaged[name]) if i in demo]
    return out


def load_corpus() -> dict[str, list[dict]]:
    return {name: list(read_documents(path)) for name, path in zip(HELP_FILES, help_corpus_files())}


def curated_ids(curated_dir: Path) -> dict[str, list[str]]:
    return {name: [d["id"] for d in read_documents(curated_dir / "data" / f"{name}.jsonl")] for name in HELP_FILES}


def sentences(text: str, lang: str) -> list[tuple[int, str]]:
    """(paragraph index, sentence) in page order."""
    return [(p, s.strip()) for p, line in enumerate(text.split("\n")) for s in _SPLIT[lang].split(line) if s.strip()]


def good_sentence(s: str, lang: str) -> bool:
    words = s.split()
    if not (40 <= len(s) <= 200 and s.endswith(".") and len(words) >= (6 if lang == "en" else 4)):
        return False
    hangul = len(_HANGUL.findall(s)) / len(s.replace(" ", ""))
    return hangul >= 0.5 if lang == "ko" else hangul == 0


class Pages:
    """The held-out pages of one language, and the text of every other page (what training may see)."""

    def __init__(self, corpus: dict[str, list[dict]], heldout: dict[str, list[str]], lang: str):
        keep = {i for name in HELP_FILES for i in heldout[name]}
        docs = [d for name in HELP_FILES if name.startswith(lang) for d in corpus[name]]
        self.lang = lang
        self.pages = [d for d in docs if d["id"] in keep]
        self.counts = collections.Counter(w for d in docs for w in _WORD[lang].findall(d["text"]))
        # English sentences are also looked for in the Korean pages, which quote untranslated strings
        self.seen = "\n".join(d["text"] for name in HELP_FILES for d in corpus[name]
                               if d["id"] not in keep and (lang == "en" or name.startswith(lang)))
        self._novel: dict[str, bool] = {}

    def novel(self, s: str) -> bool:
        if s not in self._novel:  # a 5 MB search: asked only of the candidates an item is taken from
            self._novel[s] = s not in self.seen
        return self._novel[s]


def _pick_sentences(rng: random.Random, pages: Pages, pool: list[str], gold: str) -> list[str] | None:
    """Three novel pool sentences of the gold's length (±10%): novel as the gold is, since a sentence the
    pages repeat is made of pieces the tokenizer merged, and fewer tokens win with an untrained model."""
    close = sorted({s for s in pool if abs(len(s) - len(gold)) <= 0.1 * len(gold)})
    rng.shuffle(close)
    picked = []
    for s in close:
        if len(picked) == NUM_CHOICES - 1:
            break
        if pages.novel(s):
            picked.append(s)
    return picked if len(picked) == NUM_CHOICES - 1 else None


def _pick_words(rng: random.Random, pages: Pages, pool: list[str], gold: str) -> list[str] | None:
    """Three of the eight pool words nearest the gold's log-frequency, of its length (±1 character; ±2 in English)."""
    tol = 2 if pages.lang == "en" else 1
    by_case = {}  # one spelling per word ("Preview", "preview"), none of the gold's
    for w in sorted(set(pool)):
        if w.lower() != gold.lower() and abs(len(w) - len(gold)) <= tol:
            by_case.setdefault(w.lower(), w)
    close = sorted(by_case.values())
    target = math.log(pages.counts[gold])
    nearest = sorted(close, key=lambda w: (abs(math.log(pages.counts[w]) - target), w))[:8]
    return rng.sample(nearest, NUM_CHOICES - 1) if len(nearest) >= NUM_CHOICES - 1 else None


def _item(rng: random.Random, page: dict, lang: str, context: str, gold: str, others: list[str]) -> dict:
    choices = [gold, *others]
    rng.shuffle(choices)
    return {"id": page["id"], "language": lang, "context": context, "choices": choices, "label": choices.index(gold)}


def cloze_items(pages: Pages, num: int, seed: int) -> list[dict]:
    rng, lang, out = random.Random(f"cloze-{pages.lang}-{seed}"), pages.lang, []
    candidates, finals = [], []
    for page in pages.pages:
        said = sentences(page["text"], lang)
        for k, (para, s) in enumerate(said):
            head, _, last = s[:-1].rpartition(" ")
            if not (good_sentence(s, lang) and _WORD[lang].fullmatch(last)):
                continue
            finals.append(last)
            before = said[k - 1][1] if k and said[k - 1][0] == para else ""
            context = f"{before} {head}".strip() if len(before) + len(head) < 300 else head
            candidates.append((page, s, context, last))
    rng.shuffle(candidates)
    per_page: dict[str, int] = {}
    for page, s, context, last in candidates:
        if len(out) == num or per_page.get(page["id"], 0) >= MAX_PER_PAGE or not pages.novel(s):
            continue
        others = _pick_words(rng, pages, finals, last)
        if others:
            per_page[page["id"]] = per_page.get(page["id"], 0) + 1
            out.append(_item(rng, page, lang, context, last + ".", [w + "." for w in others]))
    return out


def mc_items(pages: Pages, num: int, seed: int) -> list[dict]:
    rng, lang, out = random.Random(f"mc-{pages.lang}-{seed}"), pages.lang, []
    usable = {p["id"]: [s for _, s in sentences(p["text"], lang) if good_sentence(s, lang)] for p in pages.pages}
    pairs = []
    for page in pages.pages:
        said = [s for _, s in sentences(page["text"], lang)]
        ok = set(usable[page["id"]])
        pairs += [(page, a, b) for a, b in zip(said, said[1:]) if a in ok and b in ok and a != b]
    rng.shuffle(pairs)
    per_page: dict[str, int] = {}
    for page, a, b in pairs:
        if (len(out) == num or per_page.get(page["id"], 0) >= MAX_PER_PAGE
                or not (pages.novel(a) and pages.novel(b))):
            continue
        pool = [s for pid, ss in usable.items() if pid != page["id"] for s in ss if s not in (a, b)]
        others = _pick_sentences(rng, pages, pool, b)
        if others:
            per_page[page["id"]] = per_page.get(page["id"], 0) + 1
            out.append(_item(rng, page, lang, a, b, others))
    return out


def build(corpus: dict[str, list[dict]], heldout: dict[str, list[str]], num: int, seed: int) -> dict[str, list[dict]]:
    """{file stem: items} for the four tasks: cloze_en, cloze_ko, mc_en, mc_ko."""
    out = {}
    for lang in LANGUAGES:
        pages = Pages(corpus, heldout, lang)
        out[f"cloze_{lang}"] = cloze_items(pages, num, seed)
        out[f"mc_{lang}"] = mc_items(pages, num, seed)
    return dict(sorted(out.items()))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _curate(tmp: Path) -> Path:
    corpus = tmp / "corpus"
    corpus.mkdir()
    for path in help_corpus_files():
        (corpus / path.name).write_bytes(path.read_bytes())
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "curate", "--config", str(PIPELINE), "--input", str(corpus),
           "--output", str(tmp / "curated"), "--workers", "2"]  # the demo's call (examples/demo/demo.py)
    subprocess.run(cmd, check=True, cwd=REPO)
    return tmp / "curated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curated", type=Path, help="the demo's curation output (default: run it)")
    parser.add_argument("--num", type=int, default=60, help="items per task (fewer if the held-out pages run out)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    corpus = load_corpus()
    packaged = {name: [d["id"] for d in docs] for name, docs in corpus.items()}
    with tempfile.TemporaryDirectory() as tmp:
        curated = curated_ids(args.curated or _curate(Path(tmp)))
    heldout = heldout_ids(packaged, curated)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "heldout.json").write_text(json.dumps({"seed": args.seed, "num": args.num, "pages": heldout},
                                                 indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for stem, records in build(corpus, heldout, args.num, args.seed).items():
        _write_jsonl(OUT / f"{stem}.jsonl", records)
        print(f"wrote {OUT / stem}.jsonl ({len(records)} items from {len({r['id'] for r in records})} pages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
