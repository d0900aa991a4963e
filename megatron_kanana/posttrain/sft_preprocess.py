"""Render chat JSONL into an SFT dataset (tokens + loss mask), optionally packed.

    kanana sft-preprocess --input chat.jsonl --tokenizer tok/ --output-prefix out/chat --seq-length 2048 --pack

Each good conversation is rendered by the chat template (chat_template.py) into ids and a
loss mask; one longer than seq_length + 1 tokens is dropped (--drop-long, the default) or
cut (--truncate), and counted either way. Bad lines are counted with file:line examples,
or are errors with --strict. The dataset format is described in sft_dataset.py.
"""
from __future__ import annotations

import os
import sys


from megatron_kanana.data.jsonl_reader import expand_inputs
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.log import get_logger
from megatron_kanana.data.chat_template import get_template
from megatron_kanana.posttrain.conversations import ConversationError, SFTReport, read_conversations
from megatron_kanana.posttrain.packing import FirstFitPacker
from megatron_kanana.posttrain.sft import SFTConfig
from megatron_kanana.posttrain.sft_dataset import SFTWriter, paths

log = get_logger(__name__)


def fit_length(ids: list[int], mask: list[int], where: str, cfg: SFTConfig,
               report: SFTReport) -> tuple[list[int], list[int]] | None:
    """The conversation within seq_length + 1 tokens (one sample's positions), or None when dropped."""
    limit = cfg.seq_length + 1
    if len(ids) <= limit:
        return ids, mask
    if cfg.on_overlong == "drop":
        # a configured policy, not bad input: counted, never an error even when strict
        report.skip("too_long", where, f"{len(ids)} tokens > seq_length + 1 = {limit}", strict=False)
        return None
    ids, mask = ids[:limit], mask[:limit]
    if not any(mask[1:]):
        report.skip("nothing_trained_after_truncation", where,
                    f"no assistant token within the first {limit} tokens", strict=False)
        return None
    report.truncated += 1
    return ids, mask


def preprocess_sft(inputs: list[str], tokenizer_path: str, prefix: str, cfg: SFTConfig,
                   overwrite: bool = False, max_open_bins: int = 256) -> tuple[SFTReport, dict]:
    """Write the SFT dataset at `prefix`; returns the report and the stored metadata."""
    files = expand_inputs(inputs)
    if os.path.exists(paths(prefix)["meta"]) and not overwrite:
        raise FileExistsError(f"{prefix}: an SFT dataset is already there (pass --overwrite to replace it)")
    tokenizer = load_tokenizer(tokenizer_path)
    template = get_template(cfg.template, tokenizer)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    report = SFTReport()
    packer = FirstFitPacker(cfg.seq_length, max_open_bins) if cfg.pack else None
    with SFTWriter(prefix, tokenizer) as writer:
        for where, messages in read_conversations(files, report, cfg.strict):
            item = fit_length(*template.render(messages, tokenizer), where, cfg, report)
            if item is None:
                continue
            report.written += 1
            for sample in (packer.add(item, len(item[0]) - 1) if packer else [[item]]):
                writer.add_sample(sample)
        for sample in (packer.finish() if packer else []):
            writer.add_sample(sample)
        if writer.samples == 0:
            raise ConversationError(f"no conversation of {files} survived: " + " | ".join(report.lines()))
        meta = {"seq_length": cfg.seq_length, "packed": cfg.pack, "template": template.name,
                "on_overlong": cfg.on_overlong, "inputs": files, "samples": writer.samples,
                "conversations": report.written, "tokens": writer.tokens, "report": report.to_dict()}
        writer.finish(meta)
        meta = {**writer.tokenizer_meta, **meta}
    for line in report.lines():
        log.info(line)
    return report, meta


def add_arguments(parser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files or globs (.gz/.zst too)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json, SentencePiece .model, or a directory")
    parser.add_argument("--output-prefix", required=True, help="writes PREFIX_tokens, PREFIX_mask, PREFIX_sft.json")
    parser.add_argument("--seq-length", type=int, required=True, help="positions per training sample")
    parser.add_argument("--pack", action="store_true", help="pack several conversations per sample (first fit)")
    overlong = parser.add_mutually_exclusive_group()
    overlong.add_argument("--truncate", dest="on_overlong", action="store_const", const="truncate",
                          help="cut conversations longer than the sequence")
    overlong.add_argument("--drop-long", dest="on_overlong", action="store_const", const="drop",
                          help="drop conversations longer than the sequence (default)")
    parser.set_defaults(on_overlong="drop")
    parser.add_argument("--template", default="auto", help="chat template: auto, llama3 or plain")
    parser.add_argument("--strict", action="store_true", help="a bad conversation is an error, not a skip")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at the prefix")
    parser.add_argument("--max-open-bins", type=int, default=256, help="packing window (bins kept open)")


def run(args) -> int:
    try:
        cfg = SFTConfig(data_prefixes=[args.output_prefix], seq_length=args.seq_length, pack=args.pack,
                        template=args.template, on_overlong=args.on_overlong, strict=args.strict)
        report, meta = preprocess_sft(args.input, args.tokenizer, args.output_prefix, cfg,
                                      overwrite=args.overwrite, max_open_bins=args.max_open_bins)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"kanana sft-preprocess: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output_prefix}: {meta['samples']} samples, {meta['conversations']} conversations, "
          f"{meta['tokens']} tokens (template {meta['template']}, packed={meta['packed']})")
    for line in report.lines():
        print(line)
    return 0
