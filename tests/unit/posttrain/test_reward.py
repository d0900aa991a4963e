"""Reward model pieces that need no process group: the Bradley–Terry loss, accuracy and margin on
fixed rewards against a hand computation; the reward read at each row's last real token; the
reward section and the one-mode check; a reward checkpoint's tokenizer must be the policy's."""
from __future__ import annotations

import json
import math

import pytest
import torch

from megatron_kanana.training.objectives import objective_class
from megatron_kanana.checkpointing.layout import META
from megatron_kanana.config.root import TrainConfig
from megatron_kanana.config.section import ConfigError
from megatron_kanana.mcore.reward_head import last_token_rewards
from megatron_kanana.posttrain.reward import RewardConfig, check_reward_checkpoint
from megatron_kanana.posttrain.reward_step import _loss, bradley_terry


def test_bradley_terry_on_fixed_rewards_by_hand():
    # pairs (chosen, rejected): (2, 0), (0, 1), (1, 1), (-1, -3)  -> differences 2, -1, 0, 2
    rewards = torch.tensor([2.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, -3.0])
    loss, accuracy, margin = bradley_terry(rewards)
    expected = sum(math.log1p(math.exp(-d)) for d in (2, -1, 0, 2)) / 4  # -log sigmoid(d) = log(1 + e^-d)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert accuracy.item() == 0.5  # a tie is not ranked right
    assert margin.item() == pytest.approx(0.75)
    # stable far out: a difference of 200 costs e^-200, not inf or nan
    assert bradley_terry(torch.tensor([100.0, -100.0, -100.0, 100.0]))[0].item() == pytest.approx(100.0, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[2b\]"):
        bradley_terry(torch.zeros(3))


def test_gradient_pushes_chosen_up_and_rejected_down():
    rewards = torch.tensor([0.0, 0.0], requires_grad=True)
    bradley_terry(rewards)[0].backward()
    assert rewards.grad.tolist() == [-0.5, 0.5]  # d/dr_c of -log sigmoid(r_c - r_r) at 0 = -1/2


def test_reward_is_read_at_the_last_real_token():
    output = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)  # row r, position p -> 5r + p
    assert last_token_rewards(output, torch.tensor([3, 5])).tolist() == [2.0, 9.0]
    loss, logged = _loss(torch.tensor([3, 5]), output)  # pair (2, 9): wrong way round by 7
    assert logged["accuracy"].item() == 0.0 and logged["margin"].item() == -7.0
    assert loss.item() == pytest.approx(7.0 + math.log1p(math.exp(-7.0)), rel=1e-6)


def base_config(**sections) -> dict:
    config = {"run": {"output_dir": "/tmp/x"}, "model": "tiny",
              "data": {"tokenizer": "t.json", "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 8}}
    config.update(sections)
    return config


def test_reward_section_and_exactly_one_mode():
    cfg = TrainConfig.from_dict(base_config(reward={"data_prefixes": ["p"], "seq_length": 64}))
    cfg.check()
    assert objective_class(cfg)(cfg).model_kernels().lm_head_loss == "unfused"
    with pytest.raises(ConfigError, match=r"exactly one of .*set: \['sft', 'reward'\]"):
        TrainConfig.from_dict(base_config(reward={"data_prefixes": ["p"], "seq_length": 64},
                                          sft={"data_prefixes": ["p"], "seq_length": 64})).check()
    with pytest.raises(ConfigError, match="count rows, two per preference pair"):
        TrainConfig.from_dict(base_config(reward={"data_prefixes": ["p"], "seq_length": 64},
                                          data={"tokenizer": "t.json", "seq_length": 64, "micro_batch_size": 1})).check()
    with pytest.raises(ConfigError, match="reward.seq_length"):
        TrainConfig.from_dict(base_config(reward={"data_prefixes": ["p"], "seq_length": 32})).check()
    for bad, key in (({"data_prefixes": []}, "data_prefixes"), ({"data_prefixes": ["p"], "epochs": 0}, "epochs"),
                     ({"data_prefixes": ["p"], "train_steps": 0}, "train_steps")):
        with pytest.raises(ConfigError, match=key):
            RewardConfig.from_dict(bad)


def test_a_reward_checkpoint_must_share_the_policy_tokenizer(tmp_path):
    ckpt = tmp_path / "iter_0000010"
    ckpt.mkdir()
    (ckpt / META).write_text(json.dumps({"model_kind": "reward", "tokenizer": "/a/tok.json",
                                         "tokenizer_fingerprint": "ab" * 32}))
    assert check_reward_checkpoint(ckpt, "ab" * 32)["model_kind"] == "reward"
    with pytest.raises(ConfigError, match="differs from the policy's"):
        check_reward_checkpoint(ckpt, "cd" * 32)
    (ckpt / META).write_text(json.dumps({"model_kind": "lm", "tokenizer_fingerprint": "ab" * 32}))
    with pytest.raises(ConfigError, match="not a reward-model checkpoint"):
        check_reward_checkpoint(ckpt, "ab" * 32)
