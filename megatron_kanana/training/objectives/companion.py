"""Frozen companion models: a distillation teacher or a DPO reference beside the trained model.

    chunks = add_frozen_companion(cfg, rt, shape, directory, policy_chunks, kernels=...)

Both run in the same job at the trained model's TP/PP layout, one pipeline stage
beside the other (mcore/distill.py: TeacherStudentStage), never updated and never in
a checkpoint. The layout is checked against the companion's own shape first (its
head count must divide by TP, its layers by PP), so a misfit is a config error, not a
failed reshard.
"""
from __future__ import annotations

from pathlib import Path

from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import check_layout


def add_frozen_companion(cfg, rt, shape: ModelShape, directory: Path, chunks: list, kernels=None) -> list:
    """The schedule's chunks: each of `chunks` paired with the companion's chunk of its stage.
    `kernels`: as the companion's LM head must be built (None: unfused, logits out)."""
    from megatron_kanana.mcore import distill as mcore_distill

    check_layout(cfg.parallel, shape, rt.world_size, rt.device)
    companion = mcore_distill.build_teacher(shape, cfg.parallel, rt.device, directory,
                                            seq_length=cfg.data.seq_length, bf16=cfg.optim.bf16, kernels=kernels)
    return mcore_distill.pair_stages(chunks, companion)
