"""Run lm-evaluation-harness on a model in this process: the in-process API and the two backends.

    results = evaluate(model_chunks, tokenizer, ["kmmlu", "gsm8k"], EvalOptions(limit=100))
    results = evaluate_checkpoint("runs/base/checkpoints", ParallelConfig(tensor_model_parallel_size=2), ...)
    results = evaluate_hf("exports/base_hf", ...)      # lm-eval's own HF backend, for comparison

`evaluate` is what a training loop calls at its own layout: every rank calls it with
its chunks (DDP-wrapped or not) and the same arguments; global rank 0 gets lm-eval's
results dict, every other rank None. It leaves the chunks in the train/eval mode
they came in.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from megatron_kanana.data.tokenizer import Tokenizer
from megatron_kanana.evaluation.tasks import EvalError


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What lm-eval's simple_evaluate needs besides the model and the task names."""

    num_fewshot: Optional[int] = None  # None: each task's own default
    limit: Optional[float] = None  # documents per task (>= 1), or a fraction in (0, 1)
    batch_size: int = 8
    include_path: tuple[str, ...] = ()
    apply_chat_template: bool = False
    log_samples: bool = False
    confirm_run_unsafe_code: bool = False
    bootstrap_iters: int = 100000  # lm-eval's default, for the stderr of non-mean metrics
    seed: int = 1234  # lm-eval's fewshot/numpy/torch seeds

    def validate(self, label=lambda name: "--" + name.replace("_", "-")) -> None:
        """`label` names a field in the error: a CLI flag here, a config key for the
        `evaluation` section (evaluation/config.py), which checks the same values."""
        if self.limit is not None and not (self.limit >= 1 or 0 < self.limit < 1):
            raise EvalError(f"{label('limit')} must be >= 1 documents or a fraction in (0, 1), got {self.limit:g}")
        if self.batch_size < 1:
            raise EvalError(f"{label('batch_size')} must be >= 1, got {self.batch_size}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise EvalError(f"{label('num_fewshot')} must be >= 0, got {self.num_fewshot}")


def run_lm_eval(lm, tasks: list[str], options: EvalOptions, task_manager=None) -> Optional[dict]:
    """lm-eval's simple_evaluate on a ready LM; rank 0 of lm-eval's world gets the results."""
    import lm_eval

    from megatron_kanana.evaluation.tasks import task_manager as make_task_manager

    options.validate()
    limit = int(options.limit) if options.limit is not None and options.limit >= 1 else options.limit
    return lm_eval.simple_evaluate(
        model=lm, tasks=list(tasks), num_fewshot=options.num_fewshot, limit=limit,
        batch_size=options.batch_size, log_samples=options.log_samples,
        apply_chat_template=options.apply_chat_template, bootstrap_iters=options.bootstrap_iters,
        task_manager=task_manager or make_task_manager(list(options.include_path), list(tasks)),
        confirm_run_unsafe_code=options.confirm_run_unsafe_code, random_seed=options.seed,
        numpy_random_seed=options.seed, torch_random_seed=options.seed, fewshot_random_seed=options.seed)


def evaluate(model_chunks: list, tokenizer: Tokenizer, tasks: list[str], options: EvalOptions = EvalOptions(),
             max_length: Optional[int] = None, task_manager=None) -> Optional[dict]:
    """lm-eval results for the model in `model_chunks` (this rank's, at the current layout)."""
    from megatron_kanana.evaluation.lm import KananaLM
    from megatron_kanana.mcore.scoring import is_global_rank_zero

    lm = KananaLM(model_chunks, tokenizer, max_length or _max_length(model_chunks), options.batch_size)
    results = run_lm_eval(lm, tasks, options, task_manager)
    return results if is_global_rank_zero() else None


def _max_length(chunks: list) -> int:
    model = chunks[0]
    while hasattr(model, "module"):
        model = model.module
    return model.max_sequence_length


def evaluate_checkpoint(checkpoint: str | Path, parallel, tasks: list[str], options: EvalOptions,
                        tokenizer_path: Optional[str] = None, task_manager=None,
                        max_length: Optional[int] = None) -> Optional[dict]:
    """Load an LM checkpoint (saved at any layout) at `parallel`'s layout on this process's ranks
    and evaluate it; rank 0 gets the results. `max_length` (default: the model's
    max_position_embeddings) may exceed the trained window: the model is built for it."""
    from megatron_kanana.evaluation.checkpoint_checks import checked_checkpoint
    from megatron_kanana.mcore import runtime, scoring
    from megatron_kanana.models.shape import ModelShape

    directory, meta, tokenizer = checked_checkpoint(checkpoint, tokenizer_path)
    shape = ModelShape.from_dict(meta["model"], prefix="checkpoint model")
    rt = runtime.initialize(parallel, shape, seed=options.seed)
    try:
        length = max_length or shape.max_position_embeddings
        chunks = scoring.load_frozen_lm(shape, parallel, rt.device, directory, seq_length=length)
        results = evaluate(chunks, tokenizer, tasks, options, length, task_manager)
    finally:
        runtime.shutdown()
    if results is not None:
        results["config"]["model"] = f"kanana:{directory}"
        results["config"]["parallel"] = {"tensor_model_parallel_size": rt.layout.tensor,
                                         "pipeline_model_parallel_size": rt.layout.pipeline,
                                         "data_parallel_size": rt.layout.data}
    return results


def evaluate_hf(hf_dir: str | Path, tasks: list[str], options: EvalOptions, task_manager=None,
                max_length: Optional[int] = None) -> dict:
    """lm-eval's HF backend on an HF export, in fp32 on the CPU, at the same batch size (and
    `max_length`; default: HFLM's, the config's max_position_embeddings)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    hf_dir = Path(hf_dir)
    if not (hf_dir / "config.json").exists():
        raise EvalError(f"--hf {hf_dir}: no config.json, not a Hugging Face model directory "
                        "(make one with `kanana convert --from mcore --to hf`)")
    lm = HFLM(pretrained=str(hf_dir), tokenizer=hf_tokenizer(hf_dir), device="cpu", dtype=torch.float32,
              batch_size=options.batch_size, max_length=max_length)
    results = run_lm_eval(lm, tasks, options, task_manager)
    results["config"]["model"] = f"hf:{hf_dir}"
    return results


def hf_tokenizer(hf_dir: Path):
    """The export's tokenizer for transformers. `kanana convert` copies a bare tokenizer.json,
    which names no end-of-text token; take ours (the one the checkpoint trained with)."""
    if (hf_dir / "tokenizer_config.json").exists():
        return None
    from transformers import PreTrainedTokenizerFast

    from megatron_kanana.data.tokenizer import load_tokenizer

    file = hf_dir / "tokenizer.json"
    if not file.exists():
        raise EvalError(f"--hf {hf_dir}: no tokenizer.json or tokenizer_config.json")
    ours = load_tokenizer(file)
    return PreTrainedTokenizerFast(tokenizer_file=str(file), eos_token=ours.decode([ours.eod]),
                                   pad_token=ours.decode([ours.pad]))
