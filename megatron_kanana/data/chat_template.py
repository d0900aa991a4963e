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
    jinja = to_jinja(template, tokenizer)         # the same ids through HF's apply_chat_template

`to_jinja` writes a template as the Jinja `chat_template` of a Hugging Face tokenizer_config.json.
HF renders one string and tokenizes it whole, with special tokens splitting it into segments
tokenized on their own; the project tokenizes every piece on its own. The two agree when
(a) every Special is a special token of the HF tokenizer (so it splits the string), and
(b) the text pieces and contents that meet inside one segment tokenize the same joined as apart.
For SentencePiece (`prefixes_each_encode`) (b) needs a space where two texts meet: each encode
call starts a word ("▁"), which HF's converted tokenizer does only at a segment's start.
For byte-level BPE (b) holds unless a content starts with a newline right after the "\n\n" of
llama3's header (the two would merge into one pre-token): such a conversation differs.
"""
from __future__ import annotations

import dataclasses
import json
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


# ---------------------------------------------------------------- Hugging Face export

def to_jinja(template: ChatTemplate, tokenizer: Tokenizer) -> str:
    """A Jinja chat template whose `apply_chat_template(messages, add_generation_prompt=...)`
    (tokenized by the exported tokenizer) gives `template.render`'s ids; see the module docstring."""
    missing = template.missing_specials(tokenizer)
    if missing:
        raise TemplateError(f"chat template {template.name!r} needs special tokens {missing} that the tokenizer "
                            f"{tokenizer.path} lacks; use template 'plain' (or 'auto')")
    spaced = tokenizer.prefixes_each_encode
    names = json.dumps(dict(template.role_names), ensure_ascii=False)

    def text(expr: str) -> str:
        # ns.text: the last thing written was text, not a special token (SentencePiece needs a space)
        space = "{%- if ns.text %}{{- ' ' }}{%- endif %}" if spaced else ""
        return f"{space}{{{{- {expr} }}}}{{%- set ns.text = true %}}"

    def pieces(ps, role_expr: str) -> str:
        out = []
        for p in ps:
            if isinstance(p, Special):
                token = tokenizer.id_to_token(tokenizer.eod) if p.name == EOD else p.name
                out.append(f"{{{{- {_literal(token)} }}}}{{%- set ns.text = false %}}")
            else:
                parts = p.text.split("{role}")
                expr = f" ~ names.get({role_expr}, {role_expr}) ~ ".join(_literal(x) for x in parts)
                out.append(text(expr))
        return "".join(out)

    return "".join([
        f"{{%- set names = {names} %}}{{%- set ns = namespace(text=false) %}}",
        pieces(template.begin, "''"),
        "{%- for message in messages %}",
        pieces(template.header, "message['role']"),
        # an empty content encodes to nothing: no space either
        "{%- if message['content'] %}", text("message['content']"), "{%- endif %}",
        pieces(template.end_of_turn, "message['role']"),
        "{%- endfor %}",
        "{%- if add_generation_prompt %}", pieces(template.header, "'assistant'"), "{%- endif %}",
    ])


def _literal(text: str) -> str:
    """A Jinja string literal (Jinja reads Python's escapes, which JSON's are a subset of)."""
    return json.dumps(text, ensure_ascii=False)


def end_of_turn_ids(template: ChatTemplate, tokenizer: Tokenizer) -> list[int]:
    """Ids that end generation: the tokenizer's eod, then the template's end-of-turn specials."""
    ids = [tokenizer.eod]
    for p in template.end_of_turn:
        if isinstance(p, Special):
            token_id = tokenizer.eod if p.name == EOD else tokenizer.token_to_id(p.name)
            if token_id not in ids:
                ids.append(token_id)
    return ids
