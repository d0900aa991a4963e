"""The engine boundary: the only package that imports megatron.core.

Everything megatron-specific — TransformerConfig, layer specs, GPTModel,
process groups, DDP and the distributed optimizer, pipeline schedules,
dist_checkpointing, indexed datasets — is reached through these modules, so
the rest of megatron_kanana speaks in its own config sections.
"""
