"""Context extension end to end on CPU, in ONE run: a two-stage mixture whose stage 1 trains
at 64 tokens with plain RoPE (window 64) and whose stage 2 sets `seq_length: 128`,
`max_position_embeddings: 128` and YaRN (original window 64). At the hand-off the run keeps
its weights and Adam's moments, rebuilds its datasets at 128 tokens and switches the rotary
embedding in place.

- Resumed mid-stage-2 it gives the same losses bit for bit. The resumed run starts from a copy
  of the straight run's step-3 checkpoint, which is what a run stopped there leaves behind
  (test_training.py covers the stopping itself), so it needs one launch, not two.
- The separate-run path gives the same stage-2 losses bit for bit: a run of stage 2 alone
  (`data.stages: [stage2]`, continued schedule) from the stage-1 checkpoint
  (`checkpoint.load`, optimizer included) builds the model with YaRN from the start, so it
  also checks that the in-place switch equals a model built under the new RoPE.
- Each checkpoint's kanana.json describes the RoPE its last step trained under, and the last
  one converts to HF with transformers' logits at 128 positions equal to ours (fp32).
"""
import json
import shutil

import pytest
import torch
import yaml

from megatron_kanana.checkpointing import layout
from tests.distributed.launch import python
from tests.distributed.test_training import losses, train
from tests.distributed.training_setup import make_inputs, write_config
from tests.tools.conftest import HERE as TOOLS

pytestmark = pytest.mark.distributed
YARN = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64, "beta_fast": 64, "beta_slow": 2}
STEPS = "data.stage_steps={stage1: 2, stage2: 3}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("longctx")
    mixture = yaml.safe_load(make_inputs(root).read_text())
    mixture["stages"][1].update(seq_length=128, max_position_embeddings=128, rope_scaling=YARN)
    (root / "long.yaml").write_text(yaml.safe_dump(mixture))
    return root


def _config(inputs, run, **sections):
    data = {"mixture": str(inputs / "long.yaml"), **sections.pop("data", {})}
    return write_config(inputs, run, model={"max_position_embeddings": 64}, data=data, **sections)


@pytest.fixture(scope="module")
def straight(inputs):
    run = inputs / "straight"
    train(_config(inputs, run, checkpoint={"keep_last": 0, "save_interval": 1}), STEPS, nproc=1)
    return run


def test_stage_hand_off_switches_length_and_rope_and_resumes_bit_exactly(inputs, straight):
    expected = losses(straight)
    assert [s for s, _ in expected] == [1, 2, 3, 4, 5]
    models = {step: layout.read_meta(straight / "checkpoints" / layout.step_name(step))["model"] for step in (2, 3)}
    assert models[2]["max_position_embeddings"] == 64 and models[2]["rope_scaling"] is None  # stage 1's
    assert models[3]["max_position_embeddings"] == 128 and models[3]["rope_scaling"]["rope_type"] == "yarn"
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    tokens = [r["consumed_tokens"] for r in records if r.get("kind") == "train"]
    assert tokens == [256, 512, 1024, 1536, 2048]  # 4 × 64 per stage-1 step, 4 × 128 per stage-2 step

    resumed = inputs / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / layout.step_name(3), resumed / "checkpoints" / layout.step_name(3))
    layout.write_latest(resumed / "checkpoints", layout.step_name(3))
    proc = train(_config(inputs, resumed), STEPS, nproc=1)
    assert "resumed at step 3" in proc.stdout + proc.stderr
    assert losses(resumed) == expected[3:]


def test_a_separate_stage_2_run_from_the_stage_1_checkpoint_trains_the_same_losses(inputs, straight):
    separate = inputs / "separate"
    proc = train(_config(inputs, separate, data={"stages": ["stage2"]},
                         checkpoint={"load": str(straight / "checkpoints" / layout.step_name(2)),
                                     "load_optimizer": True}), STEPS, nproc=1)
    assert "context extension from" in proc.stdout + proc.stderr  # the stage-1 weights, under YaRN
    assert losses(separate) == losses(straight)[2:]


def test_a_stage_2_checkpoint_converts_with_matching_logits_at_the_new_length(straight, tmp_path):
    meta = layout.read_meta(layout.resolve(straight / "checkpoints"))
    assert meta["train_state"]["step"] == 5
    task = {"hf": None, "mc": str(straight / "checkpoints"), "back": str(tmp_path / "hf"),
            "logits": str(tmp_path / "ours.pt"), "seq": 128}
    (tmp_path / "tasks.json").write_text(json.dumps([task]))
    python([str(TOOLS / "rope_worker.py"), str(tmp_path / "tasks.json")], timeout=240)
    from tests.tools.tokens import rope_tokens as tokens
    from transformers import LlamaForCausalLM

    config_json = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config_json["rope_scaling"] == {**YARN, "beta_fast": 64.0, "beta_slow": 2.0}
    assert config_json["max_position_embeddings"] == 128
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        reference = hf(tokens(meta["model"]["vocab_size"], 128)).logits
    ours = torch.load(tmp_path / "ours.pt")
    assert ((ours - reference).abs().max() / reference.abs().max()).item() < 1e-5
