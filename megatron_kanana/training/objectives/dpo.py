"""Offline DPO (a `dpo` section): the policy against a frozen reference on preference pairs
(posttrain/dpo_step.py). The reference — `dpo.reference`, else `checkpoint.load` — is
checked to be an LM trained with the policy's tokenizer and the policy's vocabulary, then
runs beside the policy at its layout (companion.py)."""
from __future__ import annotations

from megatron_kanana.log import get_logger
from megatron_kanana.training.objectives.companion import add_frozen_companion
from megatron_kanana.training.objectives.posttraining import PairBatches, PostTrainingObjective

log = get_logger(__name__)


class DPOObjective(PairBatches, PostTrainingObjective):
    section = "dpo"

    @classmethod
    def companion_checkpoints(cls, cfg) -> list[tuple[str, str]]:
        reference = getattr(cfg, cls.section).reference  # None: checkpoint.load, checked as the start
        return [(f"{cls.section}.reference", reference)] if reference else []

    def stage_plan(self):
        from megatron_kanana.posttrain.dpo import dpo_plan

        return dpo_plan(self.cfg.dpo, self.cfg.schedule, self.cfg.data.global_batch_size)

    def attach(self, rt, chunks: list, tokenizer) -> None:
        from megatron_kanana.posttrain.dpo_loss import LOSS_KEY, STAT_KEYS

        super().attach(rt, chunks, tokenizer)
        directory, shape = self._reference()
        self.schedule_chunks = add_frozen_companion(self.cfg, rt, shape, directory, chunks)
        self.loss_key, self.extra_keys = LOSS_KEY, STAT_KEYS
        self.valid_keys = {"dpo loss": "dpo loss", "preference accuracy": "preference accuracy",
                           "reward margin": "reward margin"}
        section = self.config_section
        log.info(f"{self.section} against the frozen reference {directory} (beta={section.beta}, "
                 f"label_smoothing={section.label_smoothing}, sft_loss_weight={section.sft_loss_weight})")

    def _reference(self):
        """(directory, shape) of the frozen reference, after checking it may serve as one."""
        from megatron_kanana.checkpointing.layout import check_model_kind, read_meta
        from megatron_kanana.models.shape import ModelShape
        from megatron_kanana.posttrain import dpo
        from megatron_kanana.training.distill_config import check_compatible

        cfg, name, section = self.cfg, self.section, self.config_section
        directory = dpo.reference_directory(name, section.reference, cfg.checkpoint.load)
        meta = read_meta(directory)
        check_model_kind(meta, directory, ("lm",), f"{name}.reference")
        dpo.check_reference_tokenizer(meta, directory, cfg.data.tokenizer)
        shape = ModelShape.from_dict(meta["model"], prefix=f"{name}.reference") if "model" in meta else cfg.model
        check_compatible(cfg.model, shape)
        return directory, shape

    def _forward_step(self):
        from megatron_kanana.posttrain.dpo_step import make_dpo_forward_step

        section = self.config_section
        return make_dpo_forward_step(section.beta, section.label_smoothing, section.sft_loss_weight)

    def datasets(self, stage_index: int, plan) -> tuple:
        from megatron_kanana.posttrain.dpo import build_dpo_datasets

        return build_dpo_datasets(self.cfg.dpo, self.cfg.run.seed, self.train_rows(stage_index, plan) // 2,
                                  self.tokenizer.fingerprint)
