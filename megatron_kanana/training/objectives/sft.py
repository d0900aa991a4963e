"""Supervised fine-tuning (an `sft` section): chat samples, the LM loss on assistant tokens,
block-diagonal attention for packed samples (posttrain/sft_step.py)."""
from __future__ import annotations

from megatron_kanana.training.objectives.posttraining import PostTrainingObjective


class SFTObjective(PostTrainingObjective):
    section = "sft"

    def stage_plan(self):
        from megatron_kanana.posttrain.sft import sft_plan

        return sft_plan(self.cfg.sft, self.cfg.schedule, self.cfg.data.global_batch_size)

    def _forward_step(self):
        from megatron_kanana.posttrain.sft_step import make_sft_forward_step

        return make_sft_forward_step(self.cfg.optim.z_loss_coef)

    def datasets(self, stage_index: int, plan) -> tuple:
        from megatron_kanana.posttrain.sft import build_sft_datasets

        return build_sft_datasets(self.cfg.sft, self.cfg.run.seed, self.train_rows(stage_index, plan),
                                  self.tokenizer.fingerprint)
