"""What `kanana eval` checks about a checkpoint before loading it: an LM, and its own tokenizer.

A reward model's trunk would load into an LM without complaint (its kind is
recorded, not inferred), and a tokenizer other than the one the model trained
with gives scores that mean nothing while looking plausible: both are refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from megatron_kanana.checkpointing import layout
from megatron_kanana.data.tokenizer import Tokenizer, load_tokenizer
from megatron_kanana.evaluation.tasks import EvalError


def checked_checkpoint(checkpoint: str | Path, tokenizer_path: Optional[str] = None
                       ) -> tuple[Path, dict, Tokenizer]:
    """(checkpoint directory, its kanana.json, the tokenizer to evaluate with)."""
    directory = layout.resolve(Path(checkpoint))
    meta = layout.read_meta(directory)
    layout.check_model_kind(meta, directory, ("lm",), "kanana eval")
    if not tokenizer_path and not meta.get("tokenizer"):
        raise EvalError(f"{directory} records no tokenizer: pass --tokenizer")
    path = tokenizer_path or layout.recorded_tokenizer(meta, directory)  # never resolved against the cwd
    tokenizer = load_tokenizer(path)
    recorded = meta.get("tokenizer_fingerprint")
    if recorded and tokenizer.fingerprint != recorded:
        raise EvalError(f"tokenizer {path} does not match {directory}, which was trained with tokenizer "
                        f"{meta.get('tokenizer')} (fingerprint {recorded[:12]}, this one {tokenizer.fingerprint[:12]})")
    vocab = (meta.get("model") or {}).get("vocab_size")
    if vocab is not None and tokenizer.vocab_size > vocab:
        raise EvalError(f"tokenizer {path} has {tokenizer.vocab_size} tokens but the model of {directory} only {vocab}")
    return directory, meta, tokenizer
