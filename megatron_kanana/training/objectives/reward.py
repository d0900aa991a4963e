"""A Bradley–Terry reward model (a `reward` section): the policy's architecture with a
scalar head (mcore/reward_head.py), trained on preference pairs (posttrain/reward_step.py).
It starts from an LM checkpoint (head missing, zero-initialised) and writes
`model_kind: reward`, which no LM consumer accepts."""
from __future__ import annotations

from megatron_kanana.training.objectives.posttraining import PairBatches, PostTrainingObjective


class RewardObjective(PairBatches, PostTrainingObjective):
    section = "reward"
    model_kind = "reward"
    loadable_kinds = ("lm", "reward")

    def stage_plan(self):
        from megatron_kanana.posttrain.reward import reward_plan

        return reward_plan(self.cfg.reward, self.cfg.schedule, self.cfg.data.global_batch_size)

    def prepare_model(self, chunks: list) -> None:
        from megatron_kanana.mcore import reward_head

        for chunk in chunks:  # before DDP and the optimizer, which must see the head's parameter
            reward_head.install_reward_head(chunk)

    def load_state(self):
        from megatron_kanana.mcore import reward_head

        return reward_head.load_into_reward_model

    def attach(self, rt, chunks: list, tokenizer) -> None:
        from megatron_kanana.posttrain import reward_step

        super().attach(rt, chunks, tokenizer)
        self.loss_key, self.extra_keys = reward_step.LOSS_KEY, reward_step.EXTRA_KEYS
        self.valid_keys = {"reward loss": reward_step.LOSS_KEY, "pairwise accuracy": "accuracy"}

    def _forward_step(self):
        from megatron_kanana.posttrain import reward_step

        return reward_step.make_reward_forward_step()

    def datasets(self, stage_index: int, plan) -> tuple:
        from megatron_kanana.posttrain.reward import build_reward_datasets

        return build_reward_datasets(self.cfg.reward, self.cfg.run.seed, self.train_rows(stage_index, plan) // 2,
                                     self.tokenizer.fingerprint)
