"""CPU miniature of Kanana's prune → distill: does distilling a smaller student from
the teacher beat the same student shape trained from scratch on the same tokens?

    PYTHONPATH=.:kernels python benchmarks/distill_miniature.py [--workdir DIR] [--student-init CKPT]

1. Teacher: the `tiny` preset (4 layers) trained with `kanana train` at TP=2 on
   the embedded Korean/English demo corpus (tokenizer + datasets built by
   tests/distributed/training_setup.make_inputs).
2. Student initialisation: `--student-init` (e.g. the output of `kanana prune`),
   else the teacher's first two layers (`kanana upscale-depth --layers 0-1`:
   depth pruning by layer selection). The student's shape is that checkpoint's.
3. Distilled: the student trained on KL(teacher ‖ student) alone (Kanana's loss).
4. Pruned + LM: the same initialisation trained on the plain LM loss instead
   (what the KL adds over continued pre-training of the pruned model).
5. Scratch: the same shape from a fresh initialisation, plain LM loss.
Steps 3-5 use the same steps, batch, schedule and data, so the same tokens.
Prints the validation losses (mean over en/ko) and writes DIR/summary.json.
Takes about 1.5 minutes on 2 cores (finished runs in DIR are reused).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "kernels")]

from tests.distributed.launch import cpu_env  # noqa: E402
from tests.distributed.training_setup import make_inputs, write_config  # noqa: E402

TEACHER_STEPS = "{stage1: 120, stage2: 30}"
STUDENT_STEPS = "{stage1: 48, stage2: 12}"


def kanana(*args: str) -> None:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", *args]
    proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def final_validation(run: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["losses"] for r in records if r.get("kind") == "validation"][-1]
    return {**losses, "mean": sum(losses.values()) / len(losses)}


def train(root: Path, name: str, *overrides: str) -> dict[str, float]:
    run = root / name
    if not (run / "checkpoints" / "latest").exists():  # a finished run is reused
        config = write_config(root, run, parallel={"tensor_model_parallel_size": 2})
        kanana("train", str(config), "--nproc", "2", *overrides)
    return final_validation(run)


def student_model(init: Path) -> str:
    from megatron_kanana.checkpointing.layout import read_meta, resolve

    shape = read_meta(resolve(init))["model"]
    # yaml, not json: the override is parsed as YAML, which reads json's 1e-05 as a string
    return "model=" + yaml.safe_dump(shape, default_flow_style=True, width=1000).strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/kanana_distill_miniature"))
    p.add_argument("--student-init", type=Path, default=None,
                   help="student checkpoint to distil into (e.g. from `kanana prune`); default: teacher layers 0-1")
    args = p.parse_args()
    root = args.workdir.resolve()
    if not (root / "mixture.yaml").exists():
        make_inputs(root)
    start = time.time()
    teacher = train(root, "teacher", f"data.stage_steps={TEACHER_STEPS}")
    init = args.student_init
    if init is None:
        init = root / "student_init"
        if not (init / "latest").exists():
            kanana("upscale-depth", "--input", str(root / "teacher"), "--output", str(init), "--layers", "0-1")
    model = student_model(init)
    steps = f"data.stage_steps={STUDENT_STEPS}"
    from_init = (f"checkpoint.load={init}", "checkpoint.load_optimizer=false", "checkpoint.reset_progress=true")
    distilled = train(root, "distilled", model, steps, f"distill={{teacher: {root / 'teacher'}}}", *from_init)
    pruned_lm = train(root, "pruned_lm", model, steps, *from_init)
    scratch = train(root, "scratch", model, steps)
    summary = {"teacher": teacher, "distilled": distilled, "pruned_lm": pruned_lm, "scratch": scratch, "student": yaml.safe_load(model[6:]),
               "student_init": str(init), "teacher_steps": TEACHER_STEPS, "student_steps": STUDENT_STEPS,
               "seconds": round(time.time() - start, 1)}
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    for name in ("teacher", "distilled", "pruned_lm", "scratch"):
        losses = summary[name]
        print(f"{name:>9}: validation loss {losses['mean']:.4f}  (en {losses['en']:.4f}, ko {losses['ko']:.4f})")
    print(f"student {summary['student']['num_layers']} layers; {summary['seconds']} s; {root / 'summary.json'}")


if __name__ == "__main__":
    main()
