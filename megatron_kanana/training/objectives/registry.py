"""Which objective a config trains: the one place that maps a config to a mode.

A post-training section (sft, reward, dpo, online_dpo) replaces `data.mixture`; with
none, the run pre-trains on the mixture, distilling when a `distill` section is set.
A new mode adds its module and one line to POST_TRAINING (or a rule here).
"""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.objectives.base import Objective
from megatron_kanana.training.objectives.distill import DistillObjective
from megatron_kanana.training.objectives.dpo import DPOObjective
from megatron_kanana.training.objectives.online_dpo import OnlineDPOObjective
from megatron_kanana.training.objectives.pretrain import PretrainObjective
from megatron_kanana.training.objectives.reward import RewardObjective
from megatron_kanana.training.objectives.sft import SFTObjective

POST_TRAINING: dict[str, type[Objective]] = {  # section -> objective; each replaces data.mixture
    "sft": SFTObjective,
    "reward": RewardObjective,
    "dpo": DPOObjective,
    "online_dpo": OnlineDPOObjective,
}


def objective_class(cfg) -> type[Objective]:
    """The objective of a config, after checking it selects exactly one."""
    sections = [name for name in POST_TRAINING if getattr(cfg, name) is not None]
    chosen = (["data.mixture"] if cfg.data.mixture is not None else []) + sections
    if len(chosen) != 1:
        raise ConfigError(f"set exactly one of {['data.mixture', *POST_TRAINING]} (pre-training or one "
                          f"post-training stage); set: {chosen or 'none'}")
    if sections:
        return POST_TRAINING[sections[0]]
    return DistillObjective if cfg.distill is not None else PretrainObjective


def check_config(cfg) -> None:
    """The mode rules of a config: one mode, and that mode's own cross-section rules."""
    objective_class(cfg).check_config(cfg)


def build_objective(cfg) -> Objective:
    return objective_class(cfg)(cfg)
