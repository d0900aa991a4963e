"""A reward model's checkpoint loads into an LM's modules without a key error (its trunk
matches), so every LM consumer checks the recorded kind instead."""
import json

import pytest

from megatron_kanana.checkpointing import layout
from megatron_kanana.checkpointing.layout import CheckpointError, check_model_kind


def test_model_kind_is_checked_not_inferred(tmp_path):
    check_model_kind({}, tmp_path, ("lm",), "x")  # written before kinds were recorded: an LM
    check_model_kind({"model_kind": "reward"}, tmp_path, ("lm", "reward"), "x")
    with pytest.raises(CheckpointError, match=r"holds a reward model; kanana generate needs lm"):
        check_model_kind({"model_kind": "reward"}, tmp_path, ("lm",), "kanana generate")


def test_generate_and_convert_refuse_a_reward_model(tmp_path):
    from megatron_kanana.inference.generate import generate
    from megatron_kanana.surgery.convert import open_input

    ckpt = tmp_path / "iter_0000003"
    ckpt.mkdir()
    (ckpt / layout.META).write_text(json.dumps({"model_kind": "reward", "model": {}, "tokenizer": "t"}))
    with pytest.raises(CheckpointError, match="holds a reward model"):
        generate(ckpt, ["hi"])
    with pytest.raises(CheckpointError, match="holds a reward model"):
        open_input(ckpt, "mcore")
