"""What is trained: the Kanana model shape and its named presets."""
from megatron_kanana.models.presets import PRESETS, get_preset
from megatron_kanana.models.shape import ModelShape

__all__ = ["ModelShape", "PRESETS", "get_preset"]
