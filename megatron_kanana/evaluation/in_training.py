"""lm-eval benchmarks of the model being trained, at its training layout, inside the job.

    evaluator = InTrainingEvaluation(cfg.evaluation, chunks, tokenizer, max_length=4096)  # every rank
    if evaluator.due(step, stage_done):
        metrics = evaluator.run()          # every rank takes part; rank 0 gets {task: {metric: value}}

Every rank scores the live (DDP-wrapped) chunks through evaluation/lm.py's `KananaLM`
over its own TP/PP/DP groups, as `kanana eval` does on a checkpoint, so an in-training
number equals `kanana eval`'s on the checkpoint saved at that step. mcore/scoring.py's
`live_model` gathers parameters, switches to eval mode and logits, and restores the
modes and every RNG stream afterwards: the training losses of a run are the same with
evaluation on or off. Tasks were checked before launch (training/preflight.py), names
again here; the task index is built once, not at every evaluation.
"""
from __future__ import annotations

import math
from typing import Optional

from megatron_kanana.evaluation.config import EvaluationConfig


class InTrainingEvaluation:
    def __init__(self, cfg: EvaluationConfig, chunks: list, tokenizer, max_length: int):
        from megatron_kanana.evaluation import tasks

        self.cfg, self.chunks, self.tokenizer, self.max_length = cfg, chunks, tokenizer, max_length
        tasks.choose_hub_mode()  # before lm-eval imports `datasets`, which reads the offline switch
        self.manager = task_manager(cfg)
        # names again (cheap with the index built): a trainer built in-process skipped preflight
        check_tasks(cfg, self.manager, offline=False)
        self.options = cfg.options()

    def due(self, step: int, stage_done: bool) -> bool:
        return self.cfg.due(step, stage_done)

    def run(self) -> Optional[dict[str, dict[str, float]]]:
        """Evaluate now; global rank 0 gets the numeric metrics per task, every other rank None."""
        from megatron_kanana.evaluation.evaluate import evaluate
        from megatron_kanana.mcore import scoring

        with scoring.live_model(self.chunks):
            results = evaluate(self.chunks, self.tokenizer, list(self.cfg.tasks), self.options,
                               max_length=self.max_length, task_manager=self.manager)
        return None if results is None else task_metrics(results)


def task_manager(cfg: EvaluationConfig):
    """lm-eval's task index over its own tasks and the section's include_path."""
    from megatron_kanana.evaluation import tasks

    return tasks.task_manager(list(cfg.include_path), list(cfg.tasks), key="evaluation.include_path")


def check_tasks(cfg: EvaluationConfig, manager, offline: bool) -> None:
    """`kanana eval`'s task checks, with errors naming the section's keys."""
    from megatron_kanana.evaluation import tasks

    tasks.check_tasks(manager, list(cfg.tasks), cfg.confirm_run_unsafe_code, offline, key="evaluation.tasks",
                      consent="set evaluation.confirm_run_unsafe_code: true")


def task_metrics(results: dict) -> dict[str, dict[str, float]]:
    """lm-eval's results per task as {task: {metric: value}}: numbers only (an undefined stderr
    is "N/A"), lm-eval's "acc,none" named "acc" and "exact_match,strict-match" named
    "exact_match/strict-match", so a scalar reads eval/TASK/METRIC."""
    out: dict[str, dict[str, float]] = {}
    for task, values in results["results"].items():
        metrics = {}
        for key, value in values.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # "alias", "samples" and other non-metric entries
            name, _, filter_name = key.partition(",")
            if math.isfinite(value):
                metrics[name if filter_name == "none" else f"{name}/{filter_name}"] = float(value)
        if metrics:
            out[task] = metrics
    return out
