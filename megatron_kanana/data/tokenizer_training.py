"""Train a bilingual (Korean/English) SentencePiece BPE tokenizer.

    kanana train-tokenizer --input ko.jsonl en.jsonl --vocab-size 32000 --output DIR [--korean-ratio 0.5]

Inputs are JSONL (the `--json-key` field, default "text") or plain text, optionally .gz/.zst.
Lines are classified Korean or English by their share of Hangul letters, sampled
(bounded reservoirs, so memory does not grow with the input) and mixed so that Korean
is `--korean-ratio` of the training characters. The model uses byte fallback (no
unknown tokens), splits digits, keeps whitespace as written, and normalises to Unicode
NFC through a rule table embedded in the model. SentencePiece's default `nmt_nfkc` is
avoided on purpose: NFKC rewrites Hangul compatibility jamo (ㅋㅋ becomes ᄏᄏ), so
Korean chat text would not round-trip. Pieces 0-3 are <pad>, <unk>, <s>, </s>; </s> is eod.
"""
from __future__ import annotations

import io
import json
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from megatron_kanana.data.jsonl_reader import open_text_lines
from megatron_kanana.log import get_logger

log = get_logger(__name__)

# SentencePiece silently drops training lines longer than max_sentence_length bytes;
# we raise the limit and cut longer lines ourselves so no text is lost.
MAX_LINE_BYTES = 16384


@dataclass
class SampleStats:
    korean_chars: int
    english_chars: int
    lines: int

    @property
    def korean_share(self) -> float:
        return self.korean_chars / max(1, self.korean_chars + self.english_chars)


def is_korean(text: str, threshold: float = 0.3) -> bool:
    """True when at least `threshold` of the letters are Hangul (syllables or jamo)."""
    letters = hangul = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if "\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f":
                hangul += 1
    return letters > 0 and hangul / letters >= threshold


def _cut(line: str) -> Iterator[str]:
    """Pieces of `line` of at most MAX_LINE_BYTES UTF-8 bytes (4 bytes per char at worst)."""
    step = MAX_LINE_BYTES // 4
    for i in range(0, len(line), step):
        yield line[i:i + step]


def training_lines(files: list[str], json_key: str | None) -> Iterator[str]:
    """NFC-normalised, non-empty lines of every document in `files`."""
    for file in files:
        for number, raw in enumerate(open_text_lines(file), 1):
            text = raw
            if json_key is not None and raw.lstrip().startswith("{"):
                try:
                    text = json.loads(raw)[json_key]
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d: skipped (not JSON with a %r string)", file, number, json_key)
                    continue
                if not isinstance(text, str):
                    continue
            for line in unicodedata.normalize("NFC", text).split("\n"):
                if line.strip():
                    yield from _cut(line)


def sample_bilingual(lines: Iterator[str], korean_ratio: float, max_lines: int,
                     seed: int = 0) -> tuple[list[str], SampleStats]:
    """Reservoir-sample each language, then mix so Korean is `korean_ratio` of the characters."""
    rng = random.Random(seed)
    pools: dict[bool, list[str]] = {True: [], False: []}
    seen = {True: 0, False: 0}
    for line in lines:
        ko = is_korean(line)
        seen[ko] += 1
        pool = pools[ko]
        if len(pool) < max_lines:
            pool.append(line)
        else:  # reservoir sampling: keep each line with probability max_lines / seen
            j = rng.randrange(seen[ko])
            if j < max_lines:
                pool[j] = line
    for pool in pools.values():
        rng.shuffle(pool)
    chars = {k: sum(map(len, v)) for k, v in pools.items()}
    if korean_ratio > 0 and chars[True] == 0 or korean_ratio < 1 and chars[False] == 0:
        missing = "Korean" if chars[True] == 0 else "English"
        raise ValueError(f"--korean-ratio {korean_ratio} needs {missing} text, but the input has none")
    # The scarcer language limits the total: take all of it, and the matching share of the other.
    total = min(chars[True] / korean_ratio if korean_ratio > 0 else float("inf"),
                chars[False] / (1 - korean_ratio) if korean_ratio < 1 else float("inf"))
    chosen, taken = [], {True: 0, False: 0}
    for ko, share in ((True, korean_ratio), (False, 1 - korean_ratio)):
        for line in pools[ko]:
            if taken[ko] >= share * total:
                break
            chosen.append(line)
            taken[ko] += len(line)
    rng.shuffle(chosen)
    return chosen, SampleStats(taken[True], taken[False], len(chosen))


def nfc_rule_tsv(path: Path) -> None:
    """Write SentencePiece's normalisation rule table for Unicode NFC (decomposed -> composed)."""
    rules: dict[str, str] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        composed = unicodedata.normalize("NFC", ch)
        decomposed = unicodedata.normalize("NFD", ch)
        if decomposed != composed:
            rules[decomposed] = composed
        if ch != composed:
            rules[ch] = composed
    with open(path, "w", encoding="utf-8") as f:
        for src, dst in rules.items():
            f.write(" ".join(f"{ord(c):X}" for c in src) + "\t" + " ".join(f"{ord(c):X}" for c in dst) + "\n")


def train_sentencepiece(lines: list[str], vocab_size: int, output_dir: Path, num_threads: int = 2) -> Path:
    """Train on `lines` and write output_dir/tokenizer.model (+ .vocab); returns the model path."""
    import sentencepiece as spm

    output_dir.mkdir(parents=True, exist_ok=True)
    rule_file = output_dir / ".nfc_rules.tsv"
    nfc_rule_tsv(rule_file)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, split_digits=True, normalization_rule_tsv=str(rule_file),
            remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=0.9995,
            max_sentence_length=MAX_LINE_BYTES, input_sentence_size=0, shuffle_input_sentence=False,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=num_threads, minloglevel=2,
            train_extremely_large_corpus=False,
        )
    except RuntimeError as e:
        # e.g. "Vocabulary size is too high": the input has fewer distinct pieces than --vocab-size
        raise ValueError(f"SentencePiece training failed for {output_dir}: {str(e).strip().splitlines()[-1]}") from None
    finally:
        rule_file.unlink(missing_ok=True)
    target = output_dir / "tokenizer.model"
    tmp = output_dir / "tokenizer.model.tmp"
    tmp.write_bytes(model.getvalue())
    tmp.replace(target)  # a half-written model never carries the final name
    return target


def add_arguments(parser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="JSONL or text files (.gz/.zst too)")
    parser.add_argument("--vocab-size", type=int, required=True, help="vocabulary size, special pieces included")
    parser.add_argument("--output", type=Path, required=True, help="directory for tokenizer.model")
    parser.add_argument("--korean-ratio", type=float, default=0.5, help="Korean share of training characters")
    parser.add_argument("--json-key", default="text", help="JSON field holding the text (plain text lines are used as-is)")
    parser.add_argument("--max-lines", type=int, default=2_000_000, help="lines kept per language before mixing")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    # errors are ValueErrors: cli.py prints them and removes the output directory if it is new and empty
    if not 0.0 <= args.korean_ratio <= 1.0:
        raise ValueError(f"--korean-ratio must be in [0, 1], got {args.korean_ratio}")
    if args.vocab_size < 300:
        raise ValueError(f"--vocab-size must be at least 300 (256 byte pieces + specials), got {args.vocab_size}")
    for file in args.input:
        if not Path(file).is_file():
            raise ValueError(f"--input {file}: no such file")
    try:
        lines, stats = sample_bilingual(training_lines(args.input, args.json_key), args.korean_ratio,
                                        args.max_lines, args.seed)
    except ValueError as e:
        raise ValueError(f"--input {' '.join(args.input)}: {e}") from None
    if not lines:
        raise ValueError(f"--input {' '.join(args.input)}: no text to train on")
    print(f"training on {stats.lines} lines, {stats.korean_chars} Korean + {stats.english_chars} English "
          f"characters (Korean share {stats.korean_share:.3f})")
    model = train_sentencepiece(lines, args.vocab_size, args.output)
    print(f"wrote {model}")
    return 0
