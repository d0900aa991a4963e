"""`kanana train` with an `sft` section: synthetic chats → `kanana sft-preprocess --pack`
→ fine-tuning a pre-trained tiny model at TP=2; the loss (assistant tokens only) falls."""
import json

import pytest

from tests.distributed.launch import kanana
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed



def test_sft_from_a_pretrained_checkpoint(preference_root, tmp_path):
    base = preference_root / "base"  # the session's tiny pre-trained checkpoint (conftest.py)
    tok = str(preference_root / "tokenizer.json")
    for name, num, seed in (("train", 200, 0), ("valid", 20, 1)):
        kanana("sft-synthetic", "--num", str(num), "--seed", str(seed), "--output", str(tmp_path / f"{name}.jsonl"))
        kanana("sft-preprocess", "--input", str(tmp_path / f"{name}.jsonl"), "--tokenizer", tok,
               "--output-prefix", str(tmp_path / f"sft_{name}"), "--seq-length", "64", "--pack")
    run = tmp_path / "sft"
    config = write_config(preference_root, run, parallel={"tensor_model_parallel_size": 2},
                          checkpoint={"load": str(base), "load_optimizer": False},
                          sft={"data_prefixes": [str(tmp_path / "sft_train")],
                               "valid_prefixes": [str(tmp_path / "sft_valid")],
                               "seq_length": 64, "pack": True, "train_steps": 12})
    kanana("train", str(config), "--nproc", "2", "data.mixture=null")
    check_curve("sft_tp2", run)
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]) - 0.5, losses
    assert [r for r in records if r.get("kind") == "validation"][-1]["losses"]["sft"] < losses[0]
