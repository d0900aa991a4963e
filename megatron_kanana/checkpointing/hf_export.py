"""What a Hugging Face export carries besides its weights, so transformers and vLLM users get
the model the project trained: the chat template, the stop tokens and a model card.

    config = complete_export(partial_dir, config, meta)   # before config.json is written

Into an export whose tokenizer files are already copied it writes
- tokenizer_config.json: the project's chat template as Jinja (data/chat_template.py's
  `to_jinja`; `apply_chat_template` gives the ids `template.render` gives), eos = the
  tokenizer's end of document, pad, no automatic BOS/EOS (the template writes its own);
- special_tokens_map.json, the same tokens for older readers;
- generation_config.json: eos = end of document and end of turn, so `generate()` stops
  at the end of the assistant's turn;
and returns config.json's fields with bos/eos/pad ids set. The model card (README.md) is
written with or without a tokenizer (checkpointing/model_card.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from megatron_kanana.checkpointing import model_card
from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.data.chat_template import TemplateError, end_of_turn_ids, get_template, to_jinja
from megatron_kanana.data.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from megatron_kanana.log import get_logger

log = get_logger(__name__)

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
GENERATION_CONFIG = "generation_config.json"
README = "README.md"
BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>")
# Sections of a training config that name the chat template their data was rendered with.
_TEMPLATE_SECTIONS = ("sft", "dpo", "online_dpo", "reward")


def complete_export(directory: Path, config: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write the tokenizer's chat files and the model card into `directory`; returns `config`
    with its token ids. A model without a tokenizer gets only the card."""
    directory, config = Path(directory), dict(config)
    tokenizer = _open_tokenizer(directory)
    if tokenizer is None:
        log.warning("%s: no tokenizer.json or tokenizer.model; the export has no chat template", directory)
    else:
        name = template_name(meta)
        try:
            template = get_template(name, tokenizer)
            jinja = to_jinja(template, tokenizer)
        except TemplateError as e:
            raise CheckpointError(f"{directory}: {e}") from None
        ids = token_ids(tokenizer, template)
        config.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
        existing = directory / TOKENIZER_CONFIG
        base = json.loads(existing.read_text(encoding="utf-8")) if existing.exists() else {}
        files = {
            TOKENIZER_CONFIG: tokenizer_config(tokenizer, jinja, ids, config.get("max_position_embeddings"), base),
            SPECIAL_TOKENS_MAP: special_tokens_map(tokenizer, ids),
            GENERATION_CONFIG: generation_config(ids),
        }
        for filename, content in files.items():
            (directory / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
        log.info("%s: chat template %r, stop ids %s", directory, template.name, ids["eos"])
    (directory / README).write_text(model_card.render(meta, config), encoding="utf-8")
    return config


def _open_tokenizer(directory: Path) -> Optional[Tokenizer]:
    """The copied tokenizer under the names transformers looks for: a training run's tokenizer
    may be one file of any name (e.g. spm_32k.model), copied as it was."""
    for standard, suffix in (("tokenizer.json", ".json"), ("tokenizer.model", ".model")):
        if (directory / standard).exists():
            break
        candidates = [p for p in directory.glob(f"*{suffix}")
                      if p.name not in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, GENERATION_CONFIG, "config.json")
                      and not p.name.startswith("model")]
        if len(candidates) == 1:
            candidates[0].rename(directory / standard)
            break
    else:
        return None
    try:
        return load_tokenizer(directory)
    except TokenizerError as e:
        raise CheckpointError(f"{directory}: the checkpoint's tokenizer does not load: {e}") from None


def template_name(meta: Mapping[str, Any]) -> str:
    """The template the model was post-trained with, else "auto" (what `kanana generate --chat` uses)."""
    config = meta.get("config") or {}
    for section in _TEMPLATE_SECTIONS:
        name = (config.get(section) or {}).get("template")
        if name and name != "auto":
            return name
    return "auto"


def token_ids(tokenizer: Tokenizer, template) -> dict[str, Any]:
    """bos (the template's first special, else a conventional BOS token, else None), eos (end of
    document, then end of turn) and pad."""
    begin = [p.name for p in template.begin if hasattr(p, "name")]
    bos = next((tokenizer.token_to_id(t) for t in (*begin, *BOS_CANDIDATES) if tokenizer.token_to_id(t) is not None),
               None)
    return {"bos": bos, "eos": end_of_turn_ids(template, tokenizer), "pad": tokenizer.pad}


def tokenizer_config(tokenizer: Tokenizer, jinja: str, ids: Mapping[str, Any], max_length: Optional[int],
                     base: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(base)  # keep what the source tokenizer_config.json said beyond these keys
    config.update(
        chat_template=jinja, eos_token=tokenizer.id_to_token(tokenizer.eod),
        pad_token=tokenizer.id_to_token(tokenizer.pad),
        bos_token=None if ids["bos"] is None else tokenizer.id_to_token(ids["bos"]),
        # the template writes BOS itself; a tokenizer adding one would double it
        add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False,
    )
    if max_length:
        config["model_max_length"] = max_length
    if tokenizer.prefixes_each_encode:
        # transformers (checked with 5.24) converts tokenizer.model with a "▁" at the start of
        # every segment between special tokens, which the Jinja template relies on; its
        # LlamaTokenizer puts one only at the very start
        config["tokenizer_class"] = "TokenizersBackend"
        if tokenizer.token_to_id("<unk>") is not None:
            config["unk_token"] = "<unk>"
    else:
        config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    return config


def special_tokens_map(tokenizer: Tokenizer, ids: Mapping[str, Any]) -> dict[str, str]:
    out = {"eos_token": tokenizer.id_to_token(tokenizer.eod), "pad_token": tokenizer.id_to_token(tokenizer.pad)}
    if ids["bos"] is not None:
        out["bos_token"] = tokenizer.id_to_token(ids["bos"])
    return out


def generation_config(ids: Mapping[str, Any]) -> dict[str, Any]:
    # greedy by default: what `kanana generate` does without sampling flags
    return {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
            "do_sample": False, "_from_model_config": False}
