"""The post-training half of the demo (examples/demo/demo.py): SFT → reward model → offline DPO → online DPO.

    summary = run_posttraining(out, train)    # after the demo's pre-training wrote out/run

On the pre-trained demo model, with synthetic bilingual arithmetic data
(`kanana sft-synthetic`, `kanana pref-synthetic`) preprocessed with the demo's
tokenizer (the plain chat template: it has no Llama-3 specials). Each stage is a
`kanana train` run of a config from examples/demo/posttrain_*.yaml copied into
`out/` (so a user can rerun any stage), starting from the previous stage's
checkpoint. Then `kanana pref-eval` measures every policy's held-out preference
accuracy against the SFT model, and the final policy is exported to Hugging Face
format by the converter.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from megatron_kanana.cli import main as _cli

EXAMPLES = Path(__file__).resolve().parent
STAGES = ("sft", "reward", "dpo", "online_dpo")
RUN_DIRS = {"sft": "sft", "reward": "rm", "dpo": "dpo", "online_dpo": "online_dpo"}
SEQ = "128"
HEDGED_FRACTION = 0.3
PROBES = 48  # held-out arithmetic questions each policy answers (sampled) for the hedge rate


def kanana(argv: list[str]) -> None:
    code = _cli(argv)
    if code:
        raise SystemExit(f"kanana demo: `kanana {' '.join(argv)}` failed (exit {code})")


def prepare(out: Path) -> None:
    tok = str(out / "tokenizer")
    for name, num, seed in (("train", 600, 0), ("valid", 60, 1)):  # noisy SFT data: some answers hedge
        kanana(["sft-synthetic", "--num", str(num), "--seed", str(seed), "--output", str(out / f"sft_{name}.jsonl"),
                "--hedged-fraction", str(HEDGED_FRACTION)])
        kanana(["sft-preprocess", "--input", str(out / f"sft_{name}.jsonl"), "--tokenizer", tok, "--output-prefix",
                str(out / f"sft_{name}"), "--seq-length", SEQ, "--pack"])
    for name, num, seed in (("train", 400, 2), ("valid", 64, 3)):
        kanana(["pref-synthetic", "--num", str(num), "--seed", str(seed), "--output", str(out / f"pref_{name}.jsonl")])
        kanana(["pref-preprocess", "--input", str(out / f"pref_{name}.jsonl"), "--tokenizer", tok,
                "--output-prefix", str(out / f"pref_{name}"), "--seq-length", SEQ])
    for stage in STAGES:
        shutil.copy(EXAMPLES / f"posttrain_{stage}.yaml", out / f"posttrain_{stage}.yaml")


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def _pref_eval(out: Path, policy: str) -> dict:
    from megatron_kanana.posttrain.pref_eval import evaluate

    return evaluate(out / policy / "checkpoints", out / "sft" / "checkpoints", [str(out / "pref_valid")])


def hedge_rate(checkpoint: Path, questions: list[str]) -> float:
    """How often a policy's sampled answers (temperature 1) hedge: the habit of the noisy SFT
    data that the reward model and DPO are meant to remove."""
    from megatron_kanana.inference.generate import generate
    from megatron_kanana.mcore.sampling import SamplingSettings
    from megatron_kanana.posttrain.synthetic import is_hedged

    answers = generate(checkpoint, questions, max_new_tokens=24, sampling=SamplingSettings(temperature=1.0, seed=7),
                       chat=True)
    return sum(map(is_hedged, answers)) / len(answers)


def _questions() -> list[str]:
    from megatron_kanana.posttrain.synthetic import conversations

    return [c["messages"][-2]["content"] for c in conversations(PROBES, seed=99)]


def run_posttraining(out: Path, train: Callable[..., None], step: Callable[[str], float]) -> dict:
    """Runs the four stages with `train(config_path)`; returns the figures for summary.json."""
    step("5. post-training data: synthetic chats and preference pairs (demo tokenizer, plain template)")
    prepare(out)
    for number, stage in enumerate(STAGES, start=1):
        step(f"6.{number} post-training: {stage.replace('_', ' ')} (kanana train {out / f'posttrain_{stage}.yaml'})")
        train(out / f"posttrain_{stage}.yaml")
    step("7. held-out preference accuracy against the SFT model (kanana pref-eval), HF export")
    sft = _records(out / "sft", "train")
    figures = {"sft_loss": [sft[0]["loss"], sft[-1]["loss"]],
               "reward_model": _records(out / "rm", "validation")[-1]["losses"],
               "preference_vs_sft": {name: _pref_eval(out, name) for name in ("dpo", "online_dpo")}}
    questions = _questions()
    figures["hedged_answers"] = {name: hedge_rate(out / run / "checkpoints", questions)
                                 for name, run in (("sft", "sft"), ("dpo", "dpo"), ("online_dpo", "online_dpo"))}
    online = _records(out / "online_dpo", "train")
    figures["online_dpo"] = {k: [online[0][k], online[-1][k]] for k in ("sample_reward", "staleness", "loss")}
    # held-out pairs against its own fixed reference (the offline-DPO model): a tie at step 0
    figures["online_dpo"]["vs_reference"] = _records(out / "online_dpo", "validation")[-1]["losses"]
    kanana(["convert", "--from", "mcore", "--to", "hf", "--input", str(out / "online_dpo" / "checkpoints"),
            "--output", str(out / "hf_instruct")])
    figures["hf_export"] = str(out / "hf_instruct")
    return figures
