"""Training objectives: one interface (base.py), one module per mode, one registry."""
from megatron_kanana.training.objectives.base import Objective
from megatron_kanana.training.objectives.registry import build_objective, check_config, objective_class

__all__ = ["Objective", "build_objective", "check_config", "objective_class"]
