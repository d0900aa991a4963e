"""The evaluation section: lm-evaluation-harness benchmarks inside a training job.

    evaluation:
      tasks: [kmmlu, haerae, gsm8k]
      interval: 1000           # steps; 0: only at stage ends (with at_stage_end)
      at_stage_end: true
      limit: 500               # documents per task (or a fraction < 1); null: all
      num_fewshot: null        # null: each task's own
      include_path: [my_tasks] # folders of extra task YAMLs (relative to the config file)

No section (the default): no evaluation, and the run is what it was without one.
With one, every rank evaluates the live model at the training layout
(evaluation/in_training.py) and rank 0 logs `eval/TASK/METRIC` to every metric sink.
Task names are checked before any process trains (training/preflight.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(Section):
    tasks: list[str] = field(default_factory=list, metadata={
        "help": "lm-eval task, group or tag names (lm-eval's own, plus those under include_path)."})
    interval: int = field(default=0, metadata={"help": "Evaluate every this many steps (0: not periodically)."})
    at_stage_end: bool = field(default=True, metadata={
        "help": "Also evaluate when a stage's last step is done (the model a stage hands on)."})
    limit: Optional[float] = field(default=None, metadata={
        "help": "Documents per task (>= 1) or a fraction of each task in (0, 1); null: every document."})
    num_fewshot: Optional[int] = field(default=None, metadata={"help": "Few-shot examples; null: each task's own."})
    include_path: list[str] = field(default_factory=list, metadata={
        "path": True, "help": "Folders of extra task YAMLs (e.g. megatron_kanana/evaluation/local_tasks)."})
    batch_size: int = field(default=8, metadata={
        "help": "Requests per forward pass (with max_length, it bounds the [batch, length, vocab / tp] logits)."})
    max_length: Optional[int] = field(default=None, metadata={
        "help": "Context of the scored sequences (lm-eval truncates from the left); null: the model's "
                "max_position_embeddings, as `kanana eval` uses, so the numbers agree with it."})
    confirm_run_unsafe_code: bool = field(default=False, metadata={
        "help": "Allow code tasks (humaneval, mbpp), which execute model-written code on the training nodes."})
    bootstrap_iters: int = field(default=100000, metadata={
        "help": "lm-eval's bootstrap for the stderr of non-mean metrics (its default, as `kanana eval`)."})

    def validate(self) -> None:
        if not self.tasks or any(not isinstance(t, str) or not t.strip() for t in self.tasks):
            raise ConfigError(f"tasks: name at least one lm-eval task, got {self.tasks!r}")
        if self.interval < 0:
            raise ConfigError(f"interval: must be >= 0 steps, got {self.interval}")
        if self.interval == 0 and not self.at_stage_end:
            raise ConfigError("interval: 0 with at_stage_end false never evaluates; set an interval "
                              "or remove the evaluation section")
        from megatron_kanana.evaluation.tasks import EvalError

        try:  # the values `kanana eval` takes as flags, checked by the same code
            self.options().validate(label=lambda name: f"{name}:")
        except EvalError as e:
            raise ConfigError(str(e)) from None
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"max_length: must be >= 2 tokens, got {self.max_length}")
        if self.bootstrap_iters < 0:
            raise ConfigError(f"bootstrap_iters: must be >= 0, got {self.bootstrap_iters}")

    def due(self, step: int, stage_done: bool) -> bool:
        """Whether the model after `step` (1-based, finished) is evaluated."""
        return (self.at_stage_end and stage_done) or bool(self.interval and step % self.interval == 0)

    def options(self):
        """What `evaluate` takes: the options `kanana eval` builds from the same values (and its
        fixed lm-eval seed, so few-shot examples are the same at every evaluation of the run)."""
        from megatron_kanana.evaluation.evaluate import EvalOptions

        return EvalOptions(num_fewshot=self.num_fewshot, limit=self.limit, batch_size=self.batch_size,
                           include_path=tuple(self.include_path), bootstrap_iters=self.bootstrap_iters,
                           confirm_run_unsafe_code=self.confirm_run_unsafe_code)


def check_scorable(cfg) -> None:
    """The trained model is a language model lm-eval can score (a reward model has no LM head),
    at a layout whose forward takes sequences of any length, within the context it was built for."""
    from megatron_kanana.training.objectives import objective_class

    kind = objective_class(cfg).model_kind
    if kind != "lm":
        raise ConfigError(f"evaluation: this run trains a {kind} model (model_kind {kind!r}), which has no "
                          "language-model head for lm-eval to score; remove the evaluation section")
    parallel = cfg.parallel
    fixed_shape = [name for name, on in (
        ("parallel.sequence_parallel", parallel.sequence_parallel),  # a sequence split over TP ranks
        ("parallel.context_parallel_size > 1", parallel.context_parallel_size > 1),  # ... over CP ranks
        ("parallel.virtual_pipeline_model_parallel_size > 1",  # micro-batches a multiple of PP; no generation
         (parallel.virtual_pipeline_model_parallel_size or 1) > 1),
        ("parallel.fp8", parallel.fp8 is not None)) if on]  # GEMM dims multiples of 16
    if fixed_shape:
        raise ConfigError(f"evaluation: lm-eval's requests have any length, which {fixed_shape[0]} cannot "
                          "run; benchmark the run's checkpoints with `kanana eval` at a layout without it")
    limit = cfg.model.max_position_embeddings
    if cfg.evaluation.max_length is not None and cfg.evaluation.max_length > limit:
        raise ConfigError(f"evaluation.max_length ({cfg.evaluation.max_length}) exceeds "
                          f"model.max_position_embeddings ({limit})")
