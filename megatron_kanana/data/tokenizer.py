"""Tokenizers behind one interface, used by the trainer and every data tool.

Two kinds, picked by `load_tokenizer(path)`:
- a Hugging Face `tokenizer.json` (the Llama-3 / Kanana format) through the `tokenizers` library;
  path is the file or a directory holding it (its `tokenizer_config.json`, when present,
  names the eos and pad tokens);
- a SentencePiece `.model`, such as the one `kanana train-tokenizer` writes; path is the
  file or a directory holding `tokenizer.model`.

Every tokenizer has `vocab_size`, `eod`, `pad` (distinct ids), `encode(str) -> list[int]`
without added special tokens, `decode(list[int]) -> str`, `unique_identifiers`, the
description megatron-core's GPTDatasetConfig hashes to name its cached sample indices, and
`fingerprint`, a content hash that tells whether two models share a tokenizer.

A byte-level BPE tokenizer.json encodes through tiktoken where that gives the same ids
(checked at first use, see data/fast_bpe.py): about 3x faster, the ids unchanged.
"""
from __future__ import annotations

import abc
import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

# Tried in order when a tokenizer does not name its end-of-document / padding token.
EOD_CANDIDATES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|eot_id|>")
PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|reserved_special_token_0|>")


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or lacks an eod or pad token."""


class Tokenizer(abc.ABC):
    """What the trainer and the data tools need from a tokenizer."""

    path: str
    vocab_size: int
    eod: int
    pad: int

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS or any other added token."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of several texts; kinds override this with a faster native batch call."""
        return [self.encode(t) for t in texts]

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special tokens are kept."""

    def token_to_id(self, token: str) -> int | None:
        """The id of `token` when it is a single entry of the vocabulary (a special token), else None."""
        return None

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry of `token_id` as written in the tokenizer file (e.g. "</s>")."""
        raise NotImplementedError(f"{self.kind} cannot name its tokens")

    # True when every encode() call starts a new word (SentencePiece's dummy prefix "▁"), so
    # encode(a) + encode(b) is encode(a + " " + b) at a word boundary rather than encode(a + b).
    prefixes_each_encode = False

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def eos(self) -> int:
        return self.eod

    @property
    def unique_identifiers(self) -> OrderedDict:
        """Identifies this tokenizer in megatron-core's dataset cache keys."""
        return OrderedDict(
            [("class", self.kind), ("tokenizer_path", self.path), ("vocab_size", self.vocab_size),
             ("eod", self.eod), ("pad", self.pad)]
        )

    @property
    def fingerprint(self) -> str:
        """sha256 of what decides the ids: the kind, the tokenizer file's bytes, eod and pad.
        Equal for copies of one tokenizer at different paths; models trained on different
        tokenizers compare unequal even when their vocab sizes match."""
        digest = hashlib.sha256(f"{self.kind}|{self.vocab_size}|{self.eod}|{self.pad}|".encode())
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def index_dtype_name(self) -> str:
        """The narrowest dtype of an indexed dataset holding this tokenizer's ids."""
        return "uint16" if self.vocab_size <= 65536 else "int32"

    def _check_specials(self) -> None:
        for name in ("eod", "pad"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise TokenizerError(f"{self.path}: {name} id {value} is outside the vocabulary of {self.vocab_size}")
        if self.eod == self.pad:
            raise TokenizerError(f"{self.path}: eod and pad are the same id {self.eod}; megatron-core needs them distinct")


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json` (byte-level BPE for Llama 3 and Kanana)."""

    def __init__(self, path: str | Path, eod_token: str | None = None, pad_token: str | None = None,
                 fast: bool = True):
        from tokenizers import Tokenizer as _HF

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        self.path = str(file)
        try:
            self._tok = _HF.from_file(str(file))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise TokenizerError(f"{file}: not a readable Hugging Face tokenizer.json ({e})") from None
        named_eod, named_pad = _names_from_tokenizer_config(file.parent / "tokenizer_config.json")
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.eod = self._find(eod_token or named_eod, EOD_CANDIDATES, "eod")
        self.pad = self._find(pad_token or named_pad, PAD_CANDIDATES, "pad")
        self._check_specials()
        # Built on first use, so a trainer that only reads eod/pad never pays the self-check.
        self._fast = None if fast else False

    def _fast_encoder(self):
        """tiktoken's exact encoder for this file (data/fast_bpe.py), or False when it does not apply."""
        if self._fast is None:
            from megatron_kanana.data.fast_bpe import build_fast_encoder

            self._fast = build_fast_encoder(self.path, self._tok) or False
        return self._fast

    @property
    def encoder_name(self) -> str:
        """Which library encodes: "tiktoken" on the fast path, else "tokenizers"."""
        return "tiktoken" if self._fast_encoder() else "tokenizers"

    def _find(self, name: str | None, candidates: Sequence[str], what: str) -> int:
        for token in ([name] if name else list(candidates)):
            token_id = self._tok.token_to_id(token)
            if token_id is not None:
                return token_id
        raise TokenizerError(
            f"{self.path}: no {what} token: " + (f"{name!r} is not in the vocabulary" if name else
                                                 f"none of {list(candidates)} is in the vocabulary")
        )

    def encode(self, text: str) -> list[int]:
        fast = self._fast_encoder()
        return fast.encode(text) if fast else self._tok.encode(text, add_special_tokens=False).ids

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        return self._tok.id_to_token(token_id)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        fast = self._fast_encoder()
        if fast:
            return fast.encode_batch(texts)
        # encode_batch_fast skips the character offsets, which the data tools never use.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)


def _names_from_tokenizer_config(path: Path) -> tuple[str | None, str | None]:
    if not path.is_file():
        return None, None
    config = json.loads(path.read_text(encoding="utf-8"))

    def name(key: str) -> str | None:
        value = config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    return name("eos_token"), name("pad_token")


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model; `kanana train-tokenizer` writes one with pad and eos pieces."""

    def __init__(self, path: str | Path):
        import sentencepiece as spm

        path = Path(path)
        file = path / "tokenizer.model" if path.is_dir() else path
        self.path = str(file)
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(file))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{file}: not a readable SentencePiece model ({e})") from None
        self.vocab_size = self._sp.get_piece_size()
        self.eod = self._sp.eos_id()
        self.pad = self._sp.pad_id()
        if self.eod < 0 or self.pad < 0:
            raise TokenizerError(f"{file}: the model has no {'eos' if self.eod < 0 else 'pad'} piece (train it with "
                                 "`kanana train-tokenizer`, which defines both)")
        self._check_specials()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    # `kanana train-tokenizer` keeps SentencePiece's default add_dummy_prefix
    prefixes_each_encode = True
    # what KananaLM records in lm-eval's model info (HFTokenizer: tiktoken or tokenizers)
    encoder_name = "sentencepiece"

    def id_to_token(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id)

    def token_to_id(self, token: str) -> int | None:
        token_id = self._sp.piece_to_id(token)
        return None if token_id == self._sp.unk_id() and token != self._sp.id_to_piece(token_id) else token_id

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # One thread: the data tools parallelise over processes already.
        return self._sp.encode(list(texts), num_threads=1)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))


def load_tokenizer(path: str | Path, fast: bool = True) -> Tokenizer:
    """Open a tokenizer.json, a SentencePiece .model, or a directory holding one of them.
    `fast=False` keeps a tokenizer.json on `tokenizers` even where tiktoken is exact (benchmarks)."""
    p = Path(path)
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return HFTokenizer(p, fast=fast)
        if (p / "tokenizer.model").is_file():
            return SentencePieceTokenizer(p)
        raise TokenizerError(f"{p}: directory holds neither tokenizer.json nor tokenizer.model")
    if not p.is_file():
        raise TokenizerError(f"{p}: no such tokenizer file or directory")
    if p.suffix == ".json":
        return HFTokenizer(p, fast=fast)
    if p.suffix == ".model":
        return SentencePieceTokenizer(p)
    raise TokenizerError(f"{p}: unknown tokenizer kind (expected tokenizer.json or a SentencePiece .model)")
