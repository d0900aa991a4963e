"""A frozen teacher running beside the student, stage by stage, under megatron's schedules.

    teacher = build_teacher(shape, parallel, device, checkpoint_dir, seq_length=...)
    stages = pair_stages(student_chunks, teacher)    # hand these to the schedule
    logits_s, logits_t = stages[0](tokens, position_ids, None)   # last stage

Megatron's pipeline schedules send one activation tensor [s, b, hidden] between
stages, its shape taken from `config.hidden_size` of the model they are given.
Each `TeacherStudentStage` holds the student chunk and the teacher chunk of the
same pipeline stage (the teacher's layers are split over the same PP/VPP stages,
with the same TP), and carries both residual streams in one tensor
[s, b, h_student + h_teacher]: it splits what it receives, runs both chunks, and
concatenates. Its own `config` is a copy of the student's with that combined
width, so the schedules size the p2p buffers for both. Only the student part
carries gradient; the teacher part is detached, so the gradient sent back for it
is zero and the teacher is never updated. The teacher is not a parameter of the
student's DDP wrapper, so it is never in the optimizer nor in a checkpoint.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import torch
from megatron.core.distributed import finalize_model_grads

from megatron_kanana.mcore.checkpoint import load_model
from megatron_kanana.mcore.model import build_model, transformer_config
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig


def build_teacher(shape: ModelShape, parallel: ParallelConfig, device: str, checkpoint: str | Path,
                  seq_length: Optional[int] = None, bf16: Optional[bool] = None,
                  kernels=None) -> list[torch.nn.Module]:
    """This rank's teacher chunks (same layout as the student's), loaded, frozen, in eval mode.
    `kernels` as for build_model: with the fused LM head the last stage returns hidden states."""
    config = transformer_config(shape, parallel, device, bf16=bf16)
    chunks = build_model(shape, config, max_sequence_length=seq_length, kernels=kernels)
    load_model(chunks, checkpoint)
    for chunk in chunks:
        chunk.eval()
        for p in chunk.parameters():
            p.requires_grad_(False)
    return chunks


class TeacherStudentStage(torch.nn.Module):
    """One pipeline stage of the student and the teacher, as one module for the schedules."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, config):
        super().__init__()
        self.student = student
        # a plain attribute, not a submodule: .train()/.parameters() of this stage never reach it
        self.__dict__["teacher"] = teacher
        # megatron looks up model_type etc. through `.module`: answer with the student's
        self.__dict__["module"] = student
        self.config = config
        self.student_width = get_config(student).hidden_size
        self.post_process = teacher.post_process
        self._input: Optional[torch.Tensor] = None

    def set_input_tensor(self, input_tensor) -> None:
        tensor = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor
        if tensor is None:
            self.student.module.set_input_tensor(None)
            self.teacher.set_input_tensor(None)
            return
        h = self.student_width
        self.student.module.set_input_tensor(tensor[..., :h].contiguous())
        self.teacher.set_input_tensor(tensor[..., h:].detach().contiguous())

    def forward(self, input_ids, position_ids, attention_mask):
        """Last stage: (student logits, teacher logits), both [b, s, V/tp] (with the fused LM
        head: both final hidden states [b, s, h_student] and [b, s, h_teacher]).
        Other stages: [s, b, h_student + h_teacher] for the next stage."""
        student_out = self.student(input_ids, position_ids, attention_mask)
        with torch.no_grad():
            teacher_out = self.teacher(input_ids, position_ids, attention_mask)
        if self.post_process:
            return student_out, teacher_out
        return torch.cat([student_out, teacher_out.to(student_out.dtype)], dim=-1)

    def zero_grad_buffer(self) -> None:
        self.student.zero_grad_buffer()


def get_config(module: torch.nn.Module):
    while not hasattr(module, "config") and hasattr(module, "module"):
        module = module.module
    return module.config


def pair_stages(students: list[torch.nn.Module], teachers: list[torch.nn.Module]) -> list[TeacherStudentStage]:
    """Pair each student chunk (DDP-wrapped, after the optimizer was built: its
    config carries the schedule hooks) with the teacher chunk of the same stage."""
    if len(students) != len(teachers):
        raise ValueError(f"{len(students)} student chunks but {len(teachers)} teacher chunks")
    student_config = get_config(students[0])
    config = copy.copy(student_config)  # same hooks, dtype and p2p settings; only the width differs
    config.hidden_size = student_config.hidden_size + get_config(teachers[0]).hidden_size

    def finalize(stages, *args, **kwargs):
        # gradients live in the student's DDP buffers; megatron's finalize wants those modules
        return finalize_model_grads([s.student for s in stages], *args, **kwargs)

    config.finalize_model_grads_func = finalize
    return [TeacherStudentStage(s, t, config) for s, t in zip(students, teachers)]
