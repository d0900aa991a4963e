"""The demo's benchmark table (examples/demo/demo.py, step 8): its models through lm-evaluation-harness.

    table = benchmark_table(out)    # after pre-training and post-training wrote out/run, out/sft, ...

Each checkpoint is scored in this process at TP=1 (resharded on load) by
`evaluate_checkpoint`, the in-process form of `kanana eval`, on local tasks of our own
writing (megatron_kanana/evaluation/local_tasks): `kanana_arith_mini`, held-out questions
in the post-training data's format asked through the chat template (greedy, exact match
of the answer's last number), and `kanana_kmmlu_mini`, KMMLU-format multiple choice
(0-shot; expect chance, 0.25). The pre-trained model has never seen a chat turn: its row
is the "before" of the table. What the table shows at this size: post-training teaches
the answer's form ("10 곱하기 16는?" -> "120입니다.") but not the arithmetic, so exact
match stays near 0 — the preference and hedge figures (posttrain_stages.py) are where
SFT and DPO show.
"""
from __future__ import annotations

from pathlib import Path

MODELS = {"pre-trained": "run", "SFT": "sft", "DPO": "dpo", "online DPO": "online_dpo"}
TASKS = {"kanana_arith_mini": ("exact_match,last-number", True), "kanana_kmmlu_mini": ("acc,none", False)}


def _score(checkpoint: Path, task: str, chat: bool) -> dict:
    from megatron_kanana.evaluation.evaluate import EvalOptions, evaluate_checkpoint
    from megatron_kanana.evaluation.tasks import LOCAL_TASKS
    from megatron_kanana.parallel.config import ParallelConfig

    options = EvalOptions(batch_size=8, include_path=(str(LOCAL_TASKS),), apply_chat_template=chat,
                          bootstrap_iters=1000)
    results = evaluate_checkpoint(checkpoint, ParallelConfig(), [task], options)
    metric = TASKS[task][0]
    row = results["results"][task]
    return {"value": row[metric], "stderr": row[metric.replace(",", "_stderr,")], "n": results["n-samples"][task]["effective"]}


def benchmark_table(out: Path) -> dict:
    """{model: {task: {value, stderr, n}}} for the demo's four language models."""
    return {name: {task: _score(out / run / "checkpoints", task, chat) for task, (_, chat) in TASKS.items()}
            for name, run in MODELS.items()}


def print_table(table: dict) -> None:
    print(f"  {'model':<12}" + "".join(f"{task:>26}" for task in TASKS))
    for name, row in table.items():
        cells = "".join(f"{row[t]['value']:>17.3f} ± {row[t]['stderr']:.3f} " for t in TASKS)
        print(f"  {name:<12}{cells}")
