"""Reading chat conversations from JSONL, with every bad line named or counted.

One conversation per line: {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}.
A line is bad when it is not JSON, has no "messages" list of {role, content} objects, names an
unknown role, has an empty content, or has no assistant turn (nothing to learn from). Bad lines
are counted per problem with their first few file:line locations in an `SFTReport`; with
`strict` the first one raises `ConversationError`. Blank lines are not conversations and are ignored.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Iterator

from megatron_kanana.data.jsonl_reader import open_text_lines
from megatron_kanana.data.chat_template import ROLES, Message

PROBLEMS = ("malformed_json", "not_a_conversation", "unknown_role", "empty_content", "no_assistant_turn",
            "too_long", "nothing_trained_after_truncation")
EXAMPLES_KEPT = 5


class ConversationError(ValueError):
    """A bad conversation in strict mode; the message starts with file:line."""


class _Bad(Exception):
    def __init__(self, problem: str, detail: str):
        super().__init__(detail)
        self.problem, self.detail = problem, detail


@dataclasses.dataclass
class SFTReport:
    """What happened to each input conversation."""

    read: int = 0
    written: int = 0
    truncated: int = 0
    # what is counted (the preference data reuses this report with its own problems and unit)
    problems: tuple[str, ...] = PROBLEMS
    unit: str = "conversations"
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {p: self.counts.get(p, 0) for p in self.problems}
        self.examples = {p: self.examples.get(p, []) for p in self.problems}

    def skip(self, problem: str, where: str, detail: str, strict: bool) -> None:
        if strict:
            raise ConversationError(f"{where}: {detail}")
        self.counts[problem] += 1
        if len(self.examples[problem]) < EXAMPLES_KEPT:
            self.examples[problem].append(f"{where}: {detail}")

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        out = [f"{self.read} {self.unit} read, {self.written} written, {self.truncated} truncated, "
               f"{self.skipped} skipped"]
        for problem in self.problems:
            if self.counts[problem]:
                out.append(f"  {problem}: {self.counts[problem]} (e.g. {'; '.join(self.examples[problem])})")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_conversation(line: str) -> list[Message]:
    """The messages of one JSONL line; raises _Bad(problem, detail) naming what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise _Bad("malformed_json", f"malformed JSON ({e.msg} at column {e.colno})") from None
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise _Bad("not_a_conversation", 'expected an object with a non-empty "messages" list')
    out = parse_messages(messages, "messages", "not_a_conversation")
    if not any(m.role == "assistant" for m in out):
        raise _Bad("no_assistant_turn", "no assistant turn: nothing to train on")
    return out


def parse_messages(messages: list, name: str, malformed: str) -> list[Message]:
    """Validated Messages of a JSON list of {role, content}; `name` says where in the record
    they are, `malformed` is the problem a non-message entry counts as."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise _Bad(malformed, f"{name}[{i}] is not an object with string role and content")
        if m["role"] not in ROLES:
            raise _Bad("unknown_role", f"{name}[{i}] has unknown role {m['role']!r} (expected one of {list(ROLES)})")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise _Bad("empty_content", f"{name}[{i}] ({m['role']}) has empty or non-string content")
        out.append(Message(m["role"], m["content"]))
    return out


def read_jsonl_records(files: Iterable[str], report: SFTReport, strict: bool, parse) -> Iterator[tuple[str, object]]:
    """("file:line", parse(line)) of each good line; a line whose parse raises _Bad goes to
    `report` (or raises when strict). Blank lines are skipped."""
    for path in files:
        for number, line in enumerate(open_text_lines(path), start=1):
            if not line.strip():
                continue
            report.read += 1
            where = f"{path}:{number}"
            try:
                yield where, parse(line)
            except _Bad as bad:
                report.skip(bad.problem, where, bad.detail, strict)


def read_conversations(files: Iterable[str], report: SFTReport, strict: bool) -> Iterator[tuple[str, list[Message]]]:
    """("file:line", messages) of each good conversation; bad ones go to `report` (or raise when strict)."""
    return read_jsonl_records(files, report, strict, parse_conversation)
