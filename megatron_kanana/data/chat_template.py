"""Chat templates as data: how a conversation becomes token ids and a per-token loss mask.

A template is three short lists of pieces: `begin` (once per conversation), `header`
(before each turn; "{role}" in a Text piece is replaced by the template's name for the
role) and `end_of_turn` (after each turn's content). A `Special` piece is one vocabulary
entry looked up by name ("{eod}" means the tokenizer's end-of-document token); a `Text`
piece is encoded on its own. Every piece and every message content is tokenized
separately, never the joined string, so the loss mask is exact: 1 on an assistant
turn's content and its end-of-turn tokens, 0 everywhere else.

    template = get_template("auto", tokenizer)   # llama3 when the tokenizer has its specials, else plain
    ids, mask = template.render(messages, tokenizer)
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence, Union

from megatron_kanana.data.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
EOD = "{eod}"


class TemplateError(ValueError):
    """A template is unknown, or the tokenizer lacks one of its special tokens."""


@dataclasses.dataclass(frozen=True)
class Special:
    name: str  # a single vocabulary entry, e.g. "<|eot_id|>"; EOD = the tokenizer's eod


@dataclasses.dataclass(frozen=True)
class Text:
    text: str  # encoded on its own; "{role}" is replaced by the role's display name


Piece = Union[Special, Text]


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    name: str
    begin: tuple[Piece, ...]
    header: tuple[Piece, ...]
    end_of_turn: tuple[Piece, ...]
    role_names: Mapping[str, str] = dataclasses.field(default_factory=lambda: {r: r for r in ROLES})

    def specials(self) -> list[str]:
        pieces = self.begin + self.header + self.end_of_turn
        return [p.name for p in pieces if isinstance(p, Special) and p.name != EOD]

    def missing_specials(self, tokenizer: Tokenizer) -> list[str]:
        return [name for name in self.specials() if tokenizer.token_to_id(name) is None]

    def render(self, messages: Sequence[Message], tokenizer: Tokenizer,
               add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """(token ids, loss mask) of a conversation; with `add_generation_prompt`, the
        assistant header is appended so a model continues with the assistant's answer."""
        missing = self.missing_specials(tokenizer)
        if missing:
            raise TemplateError(f"chat template {self.name!r} needs special tokens {missing} that the tokenizer "
                                f"{tokenizer.path} lacks; use template 'plain' (or 'auto')")
        ids: list[int] = []
        mask: list[int] = []

        def add(pieces: Sequence[Piece], role: str, trained: int) -> None:
            for piece in pieces:
                piece_ids = self._piece_ids(piece, role, tokenizer)
                ids.extend(piece_ids)
                mask.extend([trained] * len(piece_ids))

        add(self.begin, "", 0)
        for message in messages:
            trained = int(message.role == "assistant")
            add(self.header, message.role, 0)
            content = tokenizer.encode(message.content)
            ids.extend(content)
            mask.extend([trained] * len(content))
            # the end-of-turn token is what teaches the model to stop: trained on for the assistant
            add(self.end_of_turn, message.role, trained)
        if add_generation_prompt:
            add(self.header, "assistant", 0)
        return ids, mask

    def _piece_ids(self, piece: Piece, role: str, tokenizer: Tokenizer) -> list[int]:
        if isinstance(piece, Special):
            return [tokenizer.eod if piece.name == EOD else tokenizer.token_to_id(piece.name)]
        return tokenizer.encode(piece.text.replace("{role}", self.role_names.get(role, role)))


TEMPLATES: dict[str, ChatTemplate] = {
    # Llama 3 / Kanana instruct format
    "llama3": ChatTemplate(
        name="llama3",
        begin=(Special("<|begin_of_text|>"),),
        header=(Special("<|start_header_id|>"), Text("{role}"), Special("<|end_header_id|>"), Text("\n\n")),
        end_of_turn=(Special("<|eot_id|>"),),
    ),
    # For tokenizers without chat specials (the demo's SentencePiece one): text role markers,
    # and the tokenizer's eod ends each turn so generation still has a stop token.
    "plain": ChatTemplate(
        name="plain",
        begin=(),
        header=(Text("### {role}:\n"),),
        end_of_turn=(Special(EOD),),
        role_names={"system": "System", "user": "User", "assistant": "Assistant"},
    ),
}


def get_template(name: str, tokenizer: Tokenizer | None = None) -> ChatTemplate:
    """A template by name; "auto" is llama3 when `tokenizer` has its special tokens, else plain."""
    if name == "auto":
        if tokenizer is None:
            raise TemplateError("template 'auto' needs the tokenizer to choose")
        return TEMPLATES["llama3"] if not TEMPLATES["llama3"].missing_specials(tokenizer) else TEMPLATES["plain"]
    if name not in TEMPLATES:
        raise TemplateError(f"unknown chat template {name!r}; known: {['auto', *TEMPLATES]}")
    template = TEMPLATES[name]
    if tokenizer is not None and template.missing_specials(tokenizer):
        raise TemplateError(f"chat template {name!r} needs special tokens {template.missing_specials(tokenizer)} "
                            f"that the tokenizer {tokenizer.path} lacks; use template 'plain' (or 'auto')")
    return template
