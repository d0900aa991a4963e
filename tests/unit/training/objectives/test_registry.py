"""The registry is the one place a config is mapped to a mode; the trainer never asks."""
import ast
from pathlib import Path

import pytest

from megatron_kanana.config.root import TrainConfig
from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.objectives import Objective, objective_class
from megatron_kanana.training.objectives.distill import DistillObjective
from megatron_kanana.training.objectives.dpo import DPOObjective
from megatron_kanana.training.objectives.online_dpo import OnlineDPOObjective
from megatron_kanana.training.objectives.pretrain import PretrainObjective
from megatron_kanana.training.objectives.registry import POST_TRAINING
from megatron_kanana.training.objectives.reward import RewardObjective
from megatron_kanana.training.objectives.sft import SFTObjective

BASE = {"run": {"output_dir": "/tmp/run"}, "model": {"preset": "tiny"},
        "data": {"tokenizer": "/tmp/t.json", "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4}}
PAIRS = {"data_prefixes": ["/tmp/p"], "seq_length": 64}


def config(**sections) -> TrainConfig:
    data = {**BASE, **sections}
    data["data"] = {**BASE["data"], **sections.get("data", {})}
    return TrainConfig.from_dict(data)


@pytest.mark.parametrize("sections,expected", [
    ({"data": {"mixture": "/tmp/m.yaml"}}, PretrainObjective),
    ({"data": {"mixture": "/tmp/m.yaml"}, "distill": {"teacher": "/tmp/teacher"}}, DistillObjective),
    ({"sft": {"data_prefixes": ["/tmp/s"], "seq_length": 64}}, SFTObjective),
    ({"reward": PAIRS}, RewardObjective),
    ({"dpo": PAIRS}, DPOObjective),
    ({"online_dpo": {"prompts": ["/tmp/p.jsonl"], "reward_model": "/tmp/rm", "seq_length": 64,
                     "max_new_tokens": 8, "train_steps": 2}}, OnlineDPOObjective),
])
def test_each_config_maps_to_its_objective(sections, expected):
    assert objective_class(config(**sections)) is expected


def test_exactly_one_mode():
    with pytest.raises(ConfigError, match=r"set exactly one of \['data.mixture', 'sft', 'reward', 'dpo', "
                                          r"'online_dpo'\].*set: none"):
        objective_class(config())
    with pytest.raises(ConfigError, match=r"set: \['data.mixture', 'dpo'\]"):
        objective_class(config(data={"mixture": "/tmp/m.yaml"}, dpo=PAIRS))


def test_mode_rules_live_with_their_objectives():
    with pytest.raises(ConfigError, match=r"dpo.seq_length \(32\) != data.seq_length \(64\)"):
        config(dpo={**PAIRS, "seq_length": 32}).check()
    with pytest.raises(ConfigError, match="distill is a pre-training mode; unset it for sft"):
        config(sft={"data_prefixes": ["/tmp/s"], "seq_length": 64}, distill={"teacher": "/tmp/t"}).check()
    with pytest.raises(ConfigError, match="reward: data.micro_batch_size .3. and data.global_batch_size"):
        config(reward=PAIRS, data={"micro_batch_size": 3, "global_batch_size": 6}).check()


def test_every_objective_implements_the_interface():
    for cls in (PretrainObjective, DistillObjective, *POST_TRAINING.values()):
        assert issubclass(cls, Objective)
        for method in ("stage_plan", "datasets", "_forward_step"):
            assert getattr(cls, method) is not getattr(Objective, method), (cls, method)


def test_the_trainer_never_asks_what_it_trains():
    """No name of a mode or of a mode's section appears in the trainer's code (docstrings aside)."""
    import megatron_kanana.training.trainer as trainer

    tree = ast.parse(Path(trainer.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and len(n.value) < 40}
    modes = {"mode", "sft", "reward", "dpo", "online_dpo", "distill", "online", "teacher", "reference",
             "pretrain", *POST_TRAINING}
    assert not names & modes, names & modes
