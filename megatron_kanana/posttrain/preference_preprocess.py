"""Render preference JSONL into a preference dataset: (chosen, rejected) token ids + SFT loss masks.

    kanana pref-preprocess --input pairs.jsonl --tokenizer tok/ --output-prefix out/pref --seq-length 2048

prompt + chosen and prompt + rejected are rendered by the SFT chat template (chat_template.py),
so the loss mask is 1 exactly on the response's tokens and its end-of-turn. A pair is kept or
dropped as a whole: when either side is longer than seq_length + 1 tokens it is dropped
(`--on-overlong drop`, the default) or both sides are cut (`truncate`); a cut pair with no
trained token left, or whose sides became equal, is dropped. Every dropped pair is counted
with file:line examples, or, with --strict, is an error. The format is in preference.py.
"""
from __future__ import annotations

import os
import sys


from megatron_kanana.data.jsonl_reader import expand_inputs
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.log import get_logger
from megatron_kanana.data.chat_template import get_template
from megatron_kanana.posttrain.conversations import ConversationError, SFTReport, read_jsonl_records
from megatron_kanana.posttrain.preference import PROBLEMS, parse_pair
from megatron_kanana.posttrain.sft_dataset import SFTWriter, paths

log = get_logger(__name__)
Rendered = tuple[list[int], list[int]]  # (ids, loss mask)


def fit_pair(chosen: Rendered, rejected: Rendered, where: str, seq_length: int, on_overlong: str,
             report: SFTReport, strict: bool) -> tuple[Rendered, Rendered] | None:
    """Both sides within seq_length + 1 tokens (one sample's positions), or None when dropped."""
    limit = seq_length + 1
    longest = max(len(chosen[0]), len(rejected[0]))
    if longest <= limit:
        return chosen, rejected
    if on_overlong == "drop":
        report.skip("too_long", where, f"{longest} tokens > seq_length + 1 = {limit}", strict)
        return None
    chosen, rejected = (chosen[0][:limit], chosen[1][:limit]), (rejected[0][:limit], rejected[1][:limit])
    if not any(chosen[1][1:]) or not any(rejected[1][1:]):
        report.skip("nothing_trained_after_truncation", where,
                    f"a response has no token within the first {limit} tokens", strict)
        return None
    if chosen[0] == rejected[0]:
        report.skip("identical_after_truncation", where, f"chosen and rejected agree on the first {limit} tokens",
                    strict)
        return None
    report.truncated += 1
    return chosen, rejected


def preprocess_pairs(inputs: list[str], tokenizer_path: str, prefix: str, seq_length: int, template: str = "auto",
                     on_overlong: str = "drop", strict: bool = False,
                     overwrite: bool = False) -> tuple[SFTReport, dict]:
    """Write the preference dataset at `prefix`; returns the report and the stored metadata."""
    if seq_length < 2:
        raise ValueError(f"--seq-length must be >= 2, got {seq_length}")
    if on_overlong not in ("drop", "truncate"):
        raise ValueError(f"--on-overlong must be drop or truncate, got {on_overlong!r}")
    files = expand_inputs(inputs)
    if os.path.exists(paths(prefix, "pref")["meta"]) and not overwrite:
        raise FileExistsError(f"{prefix}: a preference dataset is already there (pass --overwrite to replace it)")
    tokenizer = load_tokenizer(tokenizer_path)
    chat = get_template(template, tokenizer)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    report = SFTReport(problems=PROBLEMS, unit="pairs")
    with SFTWriter(prefix, tokenizer, kind="pref") as writer:
        for where, (prompt, chosen, rejected) in read_jsonl_records(files, report, strict, parse_pair):
            pair = fit_pair(chat.render(prompt + chosen, tokenizer), chat.render(prompt + rejected, tokenizer),
                            where, seq_length, on_overlong, report, strict)
            if pair is None:
                continue
            report.written += 1
            for side in pair:  # chosen first, then rejected: sample 2i and 2i + 1
                writer.add_sample([side])
        if report.written == 0:
            raise ConversationError(f"no pair of {files} survived: " + " | ".join(report.lines()))
        meta = {"seq_length": seq_length, "packed": False, "template": chat.name, "on_overlong": on_overlong,
                "inputs": files, "pairs": report.written, "tokens": writer.tokens, "report": report.to_dict()}
        writer.finish(meta)
        meta = {**writer.tokenizer_meta, **meta}
    for line in report.lines():
        log.info(line)
    return report, meta


def add_arguments(parser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files or globs (.gz/.zst too)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json, SentencePiece .model, or a directory")
    parser.add_argument("--output-prefix", required=True, help="writes PREFIX_tokens, PREFIX_mask, PREFIX_pref.json")
    parser.add_argument("--seq-length", type=int, required=True, help="positions per side of a pair")
    parser.add_argument("--template", default="auto", help="chat template: auto, llama3 or plain")
    parser.add_argument("--on-overlong", choices=("drop", "truncate"), default="drop",
                        help="a side longer than the sequence: drop the pair (default) or cut both sides")
    parser.add_argument("--strict", action="store_true", help="a bad or dropped pair is an error, not a skip")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at the prefix")


def run(args) -> int:
    try:
        report, meta = preprocess_pairs(args.input, args.tokenizer, args.output_prefix, args.seq_length,
                                        template=args.template, on_overlong=args.on_overlong, strict=args.strict,
                                        overwrite=args.overwrite)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"kanana pref-preprocess: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output_prefix}: {meta['pairs']} pairs, {meta['tokens']} tokens (template {meta['template']})")
    for line in report.lines():
        print(line)
    return 0
