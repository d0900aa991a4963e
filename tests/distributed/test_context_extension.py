"""Context extension end to end on CPU: a base run trains at 64 tokens with plain RoPE; a
second run starts from it (checkpoint.load: weights and Adam's moments) at twice the length
with YaRN (original window 64), its datasets rebuilt at 128 tokens and its schedule restarted.
Killed mid-stage and resumed, it gives the same losses bit for bit; its checkpoint converts
to HF, and transformers' logits at 128 positions equal ours (fp32)."""
import json

import pytest
import torch

from tests.distributed.launch import python
from tests.distributed.test_training import losses, train
from tests.distributed.training_setup import make_inputs, write_config
from tests.tools.conftest import HERE as TOOLS

pytestmark = pytest.mark.distributed
YARN = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64, "beta_fast": 64, "beta_slow": 2}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("longctx")
    make_inputs(inputs)
    run = inputs / "base"
    train(write_config(inputs, run, model={"max_position_embeddings": 64}, data={"stages": ["stage1"]}),
          "data.stage_steps={stage1: 2}", nproc=1)
    return inputs, run


def _extension(inputs, run, base_run):
    return write_config(inputs, run, model={"max_position_embeddings": 128, "rope_scaling": YARN},
                        data={"stages": ["stage2"], "stage_schedule": "restart", "seq_length": 128},
                        checkpoint={"load": str(base_run / "checkpoints"), "load_optimizer": True})


def test_extension_resumes_bit_exactly_and_converts_with_matching_logits(base, tmp_path):
    inputs, base_run = base
    straight = tmp_path / "straight"
    proc = train(_extension(inputs, straight, base_run), "data.stage_steps={stage2: 3}", nproc=1)
    assert "context extension from" in proc.stdout + proc.stderr  # the base's weights, under the new RoPE
    resumed = tmp_path / "resumed"
    config = _extension(inputs, resumed, base_run)
    train(config, "data.stage_steps={stage2: 3}", "run.exit_after_steps=2", nproc=1)
    train(config, "data.stage_steps={stage2: 3}", nproc=1)  # its own checkpoint now, not the base
    expected = losses(straight)
    assert [s for s, _ in expected] == [1, 2, 3] and losses(resumed) == expected

    meta = json.loads((straight / "checkpoints" / "iter_0000003" / "kanana.json").read_text())
    assert meta["model"]["rope_scaling"]["rope_type"] == "yarn" and meta["model"]["max_position_embeddings"] == 128
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
