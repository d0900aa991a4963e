"""One step of Kanana's pruning lineage in miniature, through the real commands:
train a teacher → `kanana prune-score` → `kanana prune` (hidden, FFN, query heads per
KV group) → `kanana train` with a `distill` section on the pruned checkpoint.
The distilled student's KL falls and it ends closer to the teacher than the pruned
checkpoint started (figures at scale: benchmarks/distill_miniature.py)."""
import json

import pytest

from tests.distributed.launch import kanana
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed
STUDENT = "model={preset: tiny, hidden_size: 48, ffn_hidden_size: 96, num_attention_heads: 2}"



def validation(run) -> list[float]:
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [sum(r["losses"].values()) / len(r["losses"]) for r in records if r.get("kind") == "validation"]


def test_prune_then_distill(tiny_teacher, tmp_path):
    root, teacher = tiny_teacher  # the session's tiny teacher (conftest.py), trained at TP=2
    teacher_cfg = write_config(root, teacher, parallel={"tensor_model_parallel_size": 2})
    scores = tmp_path / "scores.safetensors"
    kanana("prune-score", str(teacher_cfg), "--nproc", "2", "--batches", "2", "--output", str(scores),
           f"checkpoint.load={teacher}/checkpoints")
    pruned = tmp_path / "pruned"
    kanana("prune", "--input", str(teacher / "checkpoints"), "--scores", str(scores), "--output", str(pruned),
           "--hidden", "48", "--ffn", "96", "--heads", "2")
    meta = json.loads((pruned / "iter_0000000" / "kanana.json").read_text())
    assert (meta["model"]["hidden_size"], meta["model"]["num_attention_heads"]) == (48, 2)

    student = tmp_path / "student"
    config = write_config(root, student, parallel={"tensor_model_parallel_size": 2},
                          checkpoint={"load": str(pruned)}, data={"eval_interval": 1})
    kanana("train", str(config), "--nproc", "2", STUDENT, f"distill={{teacher: {teacher}}}",
           "data.stage_steps={stage1: 8, stage2: 2}")
    steps = [json.loads(l) for l in (student / "metrics.jsonl").read_text().splitlines()
             if '"kind": "train"' in l]
    kl = [r["kl_loss"] for r in steps if r.get("kl_loss") is not None]
    assert len(kl) == 10 and sum(kl[-3:]) < sum(kl[:3]), kl
    losses = validation(student)
    assert losses[-1] < losses[0], losses  # the student moves toward the teacher's predictions
    assert losses[-1] < validation(teacher)[-1] + 1.0
