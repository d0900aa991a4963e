"""Online DPO (an `online_dpo` section): DPO against a fixed reference on pairs sampled from
the policy each step and ranked by a reward model (posttrain/online_batches.py); only the
held-out pairs are a dataset."""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.objectives.dpo import DPOObjective


class OnlineDPOObjective(DPOObjective):
    section = "online_dpo"

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if cfg.parallel.virtual_pipeline_model_parallel_size not in (None, 1):
            raise ConfigError("online_dpo generates with one model chunk per rank: "
                              "parallel.virtual_pipeline_model_parallel_size must be unset")

    @classmethod
    def companion_checkpoints(cls, cfg) -> list[tuple[str, str]]:
        return [*super().companion_checkpoints(cfg), ("online_dpo.reward_model", cfg.online_dpo.reward_model)]

    def stage_plan(self):
        return self.cfg.online_dpo.online_plan(self.cfg.schedule)

    def attach(self, rt, chunks: list, tokenizer) -> None:
        from megatron_kanana.posttrain.online_setup import build_online_batches

        super().attach(rt, chunks, tokenizer)
        self.online = build_online_batches(self.cfg, rt, tokenizer)

    def datasets(self, stage_index: int, plan) -> tuple:
        from megatron_kanana.posttrain.preference import open_pair_datasets

        prefixes = self.cfg.online_dpo.valid_prefixes
        valid = ({"online_dpo": open_pair_datasets("online_dpo", prefixes, self.cfg.online_dpo.seq_length,
                                                   self.tokenizer.fingerprint)} if prefixes else {})
        return None, valid

    def step_batches(self, train, stage_step: int, step: int, chunks: list) -> tuple[list[dict], dict]:
        return self.online.step_batches(step, chunks, self.cfg.online_dpo.train_steps)

    def close(self) -> None:
        if getattr(self, "online", None) is not None:
            self.online.close()
