"""Logit distillation (a `distill` section beside `data.mixture`): pre-training's data and
plan, a frozen teacher beside the student, KL (+ optional LM loss) as the loss
(training/distill_step.py)."""
from __future__ import annotations

from megatron_kanana.log import get_logger
from megatron_kanana.training.objectives.companion import add_frozen_companion
from megatron_kanana.training.objectives.pretrain import PretrainObjective

log = get_logger(__name__)


class DistillObjective(PretrainObjective):
    section = "distill"

    @classmethod
    def check_config(cls, cfg) -> None:
        from megatron_kanana.training.distill_config import check_compatible

        check_compatible(cfg.model, cfg.distill.teacher_shape())  # one vocabulary for both

    @classmethod
    def companion_checkpoints(cls, cfg) -> list[tuple[str, str]]:
        return [("distill.teacher", cfg.distill.teacher)]

    def attach(self, rt, chunks: list, tokenizer) -> None:
        from megatron_kanana.training import distill_step

        super().attach(rt, chunks, tokenizer)
        distill, kernels = self.cfg.distill, self.model_kernels()  # the teacher's LM head matches the student's
        shape, directory = distill.teacher_shape(), distill.teacher_checkpoint()
        self.schedule_chunks = add_frozen_companion(self.cfg, rt, shape, directory, chunks, kernels=kernels)
        self.forward_step = distill_step.make_distill_forward_step(distill, self.cfg.optim.z_loss_coef, kernels)
        self.loss_key, self.extra_keys = distill_step.LOSS_KEY, distill_step.EXTRA_KEYS
        log.info(f"distilling from {directory} (teacher: {shape.num_layers} layers × {shape.hidden_size}, "
                 f"T={distill.temperature}, kl_weight={distill.kl_weight}, "
                 f"lm_loss_weight={distill.lm_loss_weight}, LM head {kernels.lm_head_loss})")
