"""Pre-training on a stage mixture (`data.mixture`): the masked LM loss + z-loss.

The forward step follows how the model was built: with the fused LM head
(`kernels.lm_head_loss: fused`) the last stage returns hidden states and the loss
is computed in vocabulary chunks (training/fused_lm_step.py); unfused, from logits
(training/lm_step.py).
"""
from __future__ import annotations

from pathlib import Path

from megatron_kanana.training.objectives.base import Objective


class PretrainObjective(Objective):
    section = None  # selected by data.mixture with no post-training section

    @classmethod
    def preflight(cls, cfg) -> None:
        from megatron_kanana.training.preflight import check_pretraining_inputs

        check_pretraining_inputs(cfg)  # every dataset made with data.tokenizer, ids within the vocabulary

    def stage_plan(self):
        from megatron_kanana.training.stages import plan_stages

        cfg = self.cfg
        return plan_stages(cfg.data, cfg.schedule, cfg.model, cfg.parallel.context_parallel_size)

    def _forward_step(self):
        from megatron_kanana.training.fused_lm_step import select_forward_step

        return select_forward_step(self.model_kernels(), self.cfg.optim.z_loss_coef)

    def datasets(self, stage_index: int, plan) -> tuple:
        """megatron-core's blended GPT datasets of the stage, and one validation set per category,
        at the stage's length (documents packed into samples of that many tokens)."""
        from megatron_kanana.mcore.datasets import build_gpt_datasets

        stage, data, seed = plan.stages[stage_index], self.cfg.data, self.cfg.run.seed
        seq_length = stage.seq_length or data.seq_length
        cache = Path(self.cfg.run.output_dir) / "data_cache"
        tokenizer = self.tokenizer  # megatron's GPT datasets read eod/pad from it
        train, _ = build_gpt_datasets(stage.blend, seq_length=seq_length, seed=seed, tokenizer=tokenizer,
                                      num_train_samples=stage.steps * data.global_batch_size,
                                      num_valid_samples=0, split=data.split, cache_dir=cache)
        valid = {}
        if data.eval_samples and data.split[1] > 0:
            for category, blend in sorted(stage.categories.items()):
                _, valid[category] = build_gpt_datasets(
                    blend, seq_length=seq_length, seed=seed, tokenizer=tokenizer, num_train_samples=1,
                    num_valid_samples=data.eval_samples, split=data.split, cache_dir=cache)
        return train, valid
