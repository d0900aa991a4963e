"""Prompts for online DPO: read from JSONL, rendered up to the assistant's header.

One prompt per line, in the preference format's "prompt" field (so a preference
JSONL is also a prompt file; its "chosen"/"rejected" are ignored):

    {"prompt": "1 더하기 2는?"}
    {"prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}]}

Each prompt is rendered with the chat template and its generation prompt (the
assistant header), so the policy continues with an answer that ends in the
template's end-of-turn token — the stop token of generation. A prompt that leaves
fewer than `min_response_tokens` positions of the sequence is skipped and counted
(or an error with `strict`), like every malformed line.

Prompt sets are tokenised in memory when the run starts (every rank reads the same
files and gets the same ids): fine for the hundreds of thousands of prompts of an
online-DPO run; an indexed prompt format would be the next step past that.
"""
from __future__ import annotations

import dataclasses
import json

from megatron_kanana.data.jsonl_reader import expand_inputs
from megatron_kanana.data.tokenizer import Tokenizer
from megatron_kanana.data.chat_template import EOD, ChatTemplate, Message, Special
from megatron_kanana.posttrain.conversations import ConversationError, SFTReport, _Bad, read_jsonl_records
from megatron_kanana.posttrain.preference import parse_prompt

PROBLEMS = ("malformed_json", "not_a_prompt", "unknown_role", "empty_content", "bad_prompt", "too_long")


def parse_prompt_line(line: str) -> list[Message]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise _Bad("malformed_json", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict) or "prompt" not in record:
        raise _Bad("not_a_prompt", 'expected an object with a "prompt" field')
    return parse_prompt(record["prompt"], malformed="not_a_prompt")


def stop_token(template: ChatTemplate, tokenizer: Tokenizer) -> int:
    """The token that ends an assistant turn: generation stops there."""
    last = template.end_of_turn[-1]
    if not isinstance(last, Special):
        raise ConversationError(f"chat template {template.name!r} does not end a turn with a special token; "
                                f"generation would have no stop token")
    return tokenizer.eod if last.name == EOD else tokenizer.token_to_id(last.name)


@dataclasses.dataclass
class PromptSet:
    ids: list[list[int]]  # rendered prompts, each ending with the assistant header
    report: SFTReport

    def __len__(self) -> int:
        return len(self.ids)


def load_prompts(inputs: list[str], tokenizer: Tokenizer, template: ChatTemplate, seq_length: int,
                 min_response_tokens: int, strict: bool = False) -> PromptSet:
    """Every usable prompt of `inputs`, in file order; the rest counted in the report."""
    report = SFTReport(problems=PROBLEMS, unit="prompts")
    limit = seq_length + 1 - min_response_tokens  # prompt + response must fit one sample's tokens
    out = []
    for where, messages in read_jsonl_records(expand_inputs(inputs), report, strict, parse_prompt_line):
        ids, _ = template.render(messages, tokenizer, add_generation_prompt=True)
        if len(ids) > limit:
            report.skip("too_long", where, f"{len(ids)} prompt tokens leave fewer than {min_response_tokens} "
                                           f"of seq_length + 1 = {seq_length + 1} for the response", strict)
            continue
        report.written += 1
        out.append(ids)
    if not out:
        raise ConversationError(f"no usable prompt in {inputs}: " + " | ".join(report.lines()))
    return PromptSet(out, report)
