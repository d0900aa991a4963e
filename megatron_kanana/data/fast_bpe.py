"""tiktoken as a faster, exact encoder for byte-level BPE `tokenizer.json` files (Llama 3, Kanana).

tiktoken's BPE merges, at each step, the adjacent pair whose concatenation has the lowest id;
`tokenizers` merges the pair listed first in `merges`. The two agree when the ids of merge
results never decrease along the merge list, which holds for tokenizers converted from
tiktoken (Llama 3: every split of every token is listed, in id order) and for those trained
by `tokenizers`' BpeTrainer (a merge's result gets the next id). `build_fast_encoder` checks
that and the rest of the file's shape (no normalizer, a byte-level pre-tokenizer with one
split regex, plain added tokens), builds the tiktoken encoding from the file's own
vocabulary and regex, and then encodes a Korean + English self-check sample both ways: any
id that differs, or a shape it does not handle, returns None with one log line, and the
caller keeps `tokenizers`. Text is never encoded differently, only faster.

Added tokens are matched inside the text, as `tokenizers` does with add_special_tokens=False
(that flag only controls the post-processor's BOS/EOS).
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Sequence

from megatron_kanana.log import get_logger

log = get_logger(__name__)

# What ByteLevel(use_regex=True) splits on (GPT-2's pattern, as `tokenizers` spells it).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Edge cases the corpus may not hold: digit runs, whitespace runs, contractions, scripts, specials.
EDGE_CASES = ("1234567 89 3.14159", "  \n\n\t  x  \r\n", "I'm HE'LL we'VE", "ㅋㅋ 진짜요? ㅎㅎ 漢字 🙂👍🏽",
              "tabs\tand\u00a0nbsp\u3000", "")
# tiktoken matches added tokens with one regex alternation: with 66k of them it ran 40x slower
# than `tokenizers` (measured); Llama 3 has 256.
MAX_ADDED_TOKENS = 1024
SAMPLE_CHARS_PER_FILE = 200_000  # enough to meet most merges; keeps start-up near a tenth of a second


class FastBPE:
    """tiktoken encoding of a tokenizer.json's vocabulary; ids equal `tokenizers`' (checked at build)."""

    def __init__(self, encoding, specials: frozenset[str]):
        self._enc = encoding
        self._specials = specials

    def encode(self, text: str) -> list[int]:
        # disallowed_special=() skips tiktoken's scan for specials it would refuse: all are allowed.
        return self._enc.encode(text, allowed_special=self._specials, disallowed_special=())

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # One thread: the data tools parallelise over processes already.
        return [self.encode(t) for t in texts]


def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character of each byte, reversed (the ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def unsupported_reason(spec: dict) -> str | None:
    """Why the fast path cannot be exact for this tokenizer.json, or None when it may be."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"model type {model.get('type')!r} is not BPE"
    if model.get("byte_fallback") or model.get("dropout") or model.get("continuing_subword_prefix") \
            or model.get("end_of_word_suffix"):
        return "BPE options byte_fallback/dropout/subword affixes are set"
    if spec.get("normalizer") is not None:
        return "the tokenizer has a normalizer"
    if split_pattern(spec.get("pre_tokenizer")) is None:
        return "the pre-tokenizer is not byte-level with one split regex"
    contents = sorted(t["content"] for t in spec.get("added_tokens", []))
    if len(contents) > MAX_ADDED_TOKENS:
        return f"{len(contents)} added tokens (tiktoken is slow past {MAX_ADDED_TOKENS})"
    for t in spec.get("added_tokens", []):
        if t.get("single_word") or t.get("lstrip") or t.get("rstrip"):
            return f"added token {t['content']!r} has single_word/lstrip/rstrip"
    # Sorted, a token that prefixes any other prefixes the one right after it.
    if any(b.startswith(a) for a, b in zip(contents, contents[1:])):
        return "one added token is a prefix of another"
    return None


def split_pattern(pre: dict | None) -> str | None:
    """The regex a byte-level pre-tokenizer splits on, or None for any other shape."""
    if not pre:
        return None
    if pre.get("type") == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    if pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return None
    split, level = pre["pretokenizers"]
    if (split.get("type") != "Split" or "Regex" not in (split.get("pattern") or {})
            or split.get("behavior") != "Isolated" or split.get("invert")):
        return None
    if level.get("type") != "ByteLevel" or level.get("use_regex", True) or level.get("add_prefix_space"):
        return None
    return split["pattern"]["Regex"]


def mergeable_ranks(spec: dict) -> tuple[dict[bytes, int] | None, str | None]:
    """{token bytes: id} of the BPE vocabulary (added tokens left out), or (None, why not)."""
    decode = byte_decoder()
    added = {t["content"] for t in spec.get("added_tokens", [])}
    vocab = spec["model"]["vocab"]
    ranks = {}
    for token, token_id in vocab.items():
        if token in added:
            continue
        try:
            ranks[bytes(decode[c] for c in token)] = token_id
        except KeyError:
            return None, f"vocabulary entry {token!r} is not byte-level"
    specials = {t["id"] for t in spec.get("added_tokens", [])}
    if len(set(ranks.values())) != len(ranks) or specials & set(ranks.values()):
        return None, "two vocabulary entries share an id"  # tiktoken would abort the process
    if any(bytes([b]) not in ranks for b in range(256)):
        return None, "not all 256 bytes are in the vocabulary"
    last = -1
    for merge in spec["model"].get("merges", []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        result = vocab.get(a + b)
        if result is None or result < last:
            return None, f"merge {a!r} {b!r}: its result's id is out of merge order"
        last = result
    return ranks, None


@lru_cache(maxsize=1)
def self_check_sample() -> tuple[str, ...]:
    """Korean and English documents from the embedded corpus, plus the edge cases."""
    from megatron_kanana.data.demo_corpus import demo_corpus_files

    texts = list(EDGE_CASES)
    for path in demo_corpus_files():
        chars = 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                chars += len(texts[-1])
                if chars >= SAMPLE_CHARS_PER_FILE:
                    break
    return tuple(texts)


def build_fast_encoder(path: str, hf_tokenizer, sample: Sequence[str] | None = None) -> FastBPE | None:
    """A FastBPE for the tokenizer.json at `path` when its ids equal `hf_tokenizer`'s, else None."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    reason = unsupported_reason(spec)
    ranks = None
    if reason is None:
        ranks, reason = mergeable_ranks(spec)
    if reason is not None:
        log.info("%s: encoding with tokenizers (tiktoken path off: %s)", path, reason)
        return None
    import tiktoken

    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    try:
        encoding = tiktoken.Encoding(f"kanana:{path}", pat_str=split_pattern(spec["pre_tokenizer"]),
                                     mergeable_ranks=ranks, special_tokens=specials)
    except ValueError as e:  # a regex tiktoken's engine does not accept, a colliding id
        log.info("%s: encoding with tokenizers (tiktoken cannot build it: %s)", path, e)
        return None
    fast = FastBPE(encoding, frozenset(specials))
    sample = list(self_check_sample() if sample is None else sample)
    # The specials inside text: as the project encodes (added tokens matched, no BOS).
    sample += [f"{s} mid{s}text" for s in list(specials)[:8]]
    expected = [e.ids for e in hf_tokenizer.encode_batch(sample, add_special_tokens=False)]
    for text, want in zip(sample, expected):
        if fast.encode(text) != want:
            log.warning("%s: encoding with tokenizers (tiktoken's ids differ on %r...)", path, text[:40])
            return None
    return fast
