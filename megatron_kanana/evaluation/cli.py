"""`kanana eval`: lm-evaluation-harness benchmarks on a training checkpoint, at any TP/PP.

    kanana eval runs/base/checkpoints --tasks kmmlu,haerae,mmlu,gsm8k --output results.json
    kanana eval CKPT --tasks humaneval,mbpp --confirm-run-unsafe-code --output code.json
    kanana eval CKPT --tasks kanana_kmmlu_mini,kanana_gsm8k_mini \\
        --include-path megatron_kanana/evaluation/local_tasks --nproc 2 tensor_model_parallel_size=2 --output r.json
    kanana eval CKPT --hf HF_DIR --tasks ... --output r.json    # also lm-eval's HF backend: r.hf.json
    kanana eval CKPT --tasks kanana_passkey --include-path ... --max-length 512 --output r.json  # past the window

Every check (task names, code-task consent, cached datasets offline, checkpoint kind,
tokenizer) runs in this process before any model loads or any rank starts; with
--nproc the evaluation itself runs under torchrun, all ranks taking part and rank 0
writing --output (lm-eval's results JSON) and printing lm-eval's table. --hf runs
lm-eval's own HF backend here afterwards, on the same tasks and batch size.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CHILD_ENV = "KANANA_EVAL_CHILD"  # set for torchrun's ranks: the parent already checked the request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="run checkpoint root (follows `latest`) or an iter_* directory")
    parser.add_argument("overrides", nargs="*", help="parallel layout, e.g. tensor_model_parallel_size=2")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task, group or tag names")
    parser.add_argument("--hf", default=None, help="an HF export: also run lm-eval's HF backend on it (side by side)")
    parser.add_argument("--num-fewshot", type=int, default=None, help="default: each task's own")
    parser.add_argument("--limit", type=float, default=None, help="documents per task (or a fraction < 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--include-path", action="append", default=[], help="a folder of extra task YAMLs")
    parser.add_argument("--apply-chat-template", action="store_true", help="render prompts with the chat template")
    parser.add_argument("--confirm-run-unsafe-code", action="store_true",
                        help="allow code tasks (humaneval, mbpp) to execute model-written code")
    parser.add_argument("--tokenizer", default=None, help="override the tokenizer recorded in the checkpoint")
    parser.add_argument("--max-length", type=int, default=None,
                        help="context of the scored sequences (lm-eval truncates from the left); default: the "
                             "model's max_position_embeddings. Above it, scores past the trained window "
                             "(a long-context check before an extension)")
    parser.add_argument("--nproc", type=int, default=None, help="launch this many local processes with torchrun")
    parser.add_argument("--bootstrap-iters", type=int, default=100000, help="lm-eval's stderr bootstrap")
    parser.add_argument("--output", type=Path, required=True, help="results JSON to write")
    parser.add_argument("--log-samples", type=Path, default=None, help="folder for per-sample JSONL")


def run(args: argparse.Namespace) -> int:
    from megatron_kanana.checkpointing.layout import CheckpointError
    from megatron_kanana.config.section import ConfigError
    from megatron_kanana.data.tokenizer import TokenizerError
    from megatron_kanana.evaluation.tasks import EvalError

    try:
        return _run(args)
    except (EvalError, CheckpointError, ConfigError, TokenizerError) as e:
        print(f"kanana eval: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from megatron_kanana.evaluation import report, tasks as task_checks

    options, tasks, parallel = _request(args)
    offline = task_checks.choose_hub_mode()  # before lm-eval (and so `datasets`) is imported
    manager = task_checks.task_manager(list(options.include_path), tasks)
    child = os.environ.get(CHILD_ENV) == "1"
    if not child:
        task_checks.check_tasks(manager, tasks, options.confirm_run_unsafe_code, offline)
        _check_output(args)
    if args.checkpoint is not None:
        from megatron_kanana.evaluation.checkpoint_checks import checked_checkpoint

        checked_checkpoint(args.checkpoint, args.tokenizer)
        nproc = args.nproc or parallel.model_parallel_size
        if not child and "RANK" not in os.environ and nproc > 1:
            code = subprocess.call(_launch_command(args, nproc), env={**os.environ, CHILD_ENV: "1"})
            if code != 0:
                return code
        else:
            from megatron_kanana.evaluation.evaluate import evaluate_checkpoint

            results = evaluate_checkpoint(args.checkpoint, parallel, tasks, options, args.tokenizer, manager,
                                          max_length=args.max_length)
            if results is not None:
                report.write(results, args.output, args.log_samples)
            if child:
                return 0
    if args.hf is not None:
        from megatron_kanana.evaluation.evaluate import evaluate_hf

        hf_output = args.output if args.checkpoint is None else report.hf_path(args.output)
        hf_log = args.log_samples / "hf" if args.log_samples and args.checkpoint else args.log_samples
        hf_results = evaluate_hf(args.hf, tasks, options, manager, max_length=args.max_length)
        report.write(hf_results, hf_output, hf_log)
        if args.checkpoint is not None:
            report.print_side_by_side(args.output, hf_output)
    return 0


def _request(args: argparse.Namespace):
    import yaml

    from megatron_kanana.evaluation.evaluate import EvalOptions
    from megatron_kanana.evaluation.tasks import EvalError
    from megatron_kanana.parallel.config import ParallelConfig

    if args.checkpoint is None and args.hf is None:
        raise EvalError("name a CHECKPOINT, or --hf HF_DIR, or both")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise EvalError("--tasks names no task")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise EvalError(f"{item!r}: a parallel override is key=value (e.g. tensor_model_parallel_size=2)")
        overrides[key.removeprefix("parallel.")] = yaml.safe_load(value)
    parallel = ParallelConfig.from_dict(overrides, prefix="parallel")
    if args.nproc is not None and args.nproc < 1:
        raise EvalError(f"--nproc must be >= 1, got {args.nproc}")
    if args.max_length is not None and args.max_length < 2:
        raise EvalError(f"--max-length must be >= 2 tokens, got {args.max_length}")
    options = EvalOptions(num_fewshot=args.num_fewshot, limit=args.limit, batch_size=args.batch_size,
                          include_path=tuple(args.include_path), apply_chat_template=args.apply_chat_template,
                          log_samples=args.log_samples is not None,
                          confirm_run_unsafe_code=args.confirm_run_unsafe_code, bootstrap_iters=args.bootstrap_iters)
    options.validate()
    return options, tasks, parallel


def _check_output(args: argparse.Namespace) -> None:
    from megatron_kanana.evaluation.tasks import EvalError

    if not args.output.parent.is_dir():
        raise EvalError(f"--output {args.output}: directory {args.output.parent} does not exist")


def _launch_command(args: argparse.Namespace, nproc: int) -> list[str]:
    """This request under torchrun: the same arguments, less --nproc."""
    flags = [args.checkpoint, *args.overrides, "--tasks", args.tasks, "--batch-size", str(args.batch_size),
             "--bootstrap-iters", str(args.bootstrap_iters), "--output", str(args.output)]
    for name in ("num_fewshot", "limit", "tokenizer", "max_length", "log_samples"):
        if getattr(args, name) is not None:
            flags += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    for path in args.include_path:
        flags += ["--include-path", path]
    flags += [f for f, on in (("--apply-chat-template", args.apply_chat_template),
                              ("--confirm-run-unsafe-code", args.confirm_run_unsafe_code)) if on]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--max-restarts=0",
            "-m", "megatron_kanana.cli", "eval", *flags]
