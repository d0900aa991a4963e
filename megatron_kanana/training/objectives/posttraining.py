"""What every post-training objective shares: one stage named after its section, a section
`seq_length` that must be data.seq_length, logits out of the LM head (their losses need
them), and — for the pair-trained modes — batches of (chosen, rejected) rows.

Batch sizes of pair-trained modes count rows, two per pair (posttrain/preference.py), so
a pair never straddles two micro-batches or two data-parallel ranks.
"""
from __future__ import annotations

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.objectives.base import Objective


class PostTrainingObjective(Objective):
    @classmethod
    def check_config(cls, cfg) -> None:
        section = getattr(cfg, cls.section)
        if section.seq_length != cfg.data.seq_length:
            raise ConfigError(f"{cls.section}.seq_length ({section.seq_length}) != data.seq_length "
                              f"({cfg.data.seq_length})")
        if cfg.distill is not None:
            raise ConfigError(f"distill is a pre-training mode; unset it for {cls.section}")

    dataset_kind = "sft"  # the preprocessed format of data_prefixes / valid_prefixes

    @classmethod
    def preflight(cls, cfg) -> None:
        """Datasets of another tokenizer are refused before any worker loads a checkpoint."""
        from megatron_kanana.data.tokenizer import load_tokenizer
        from megatron_kanana.posttrain.sft_dataset import check_tokenizer, read_meta

        section = getattr(cfg, cls.section)
        prefixes = [*(getattr(section, "data_prefixes", None) or []), *(section.valid_prefixes or [])]
        if not prefixes:
            return
        fingerprint = load_tokenizer(cfg.data.tokenizer).fingerprint
        for prefix in prefixes:
            check_tokenizer(cls.section, prefix, read_meta(prefix, cls.dataset_kind), fingerprint)

    @property
    def config_section(self):
        return getattr(self.cfg, self.section)

    def model_kernels(self):
        return self.cfg.kernels.replace(lm_head_loss="unfused")

    def train_rows(self, stage_index: int, plan) -> int:
        """Rows (sequences) the stage trains on: its steps × the global batch."""
        return plan.stages[stage_index].steps * self.cfg.data.global_batch_size


class PairBatches:
    """Mixin for objectives trained on preference pairs: rows 2j, 2j + 1 are pair j."""

    dataset_kind = "pref"

    @classmethod
    def check_config(cls, cfg) -> None:
        from megatron_kanana.posttrain.preference import check_pair_batch

        super().check_config(cfg)
        check_pair_batch(cls.section, cfg.data.global_batch_size, cfg.data.micro_batch_size)

    def step_batches(self, train, stage_step: int, step: int, chunks: list) -> tuple[list[dict], dict]:
        from megatron_kanana.posttrain.preference import step_pair_micro_batches

        return step_pair_micro_batches(train, stage_step, self.cfg.data, self.rt.data_rank, self.rt.layout.data), {}

    def validation_batches(self, dataset) -> list[dict]:
        from megatron_kanana.posttrain.preference import pair_micro_batches

        mbs, dp, rank = self.cfg.data.micro_batch_size, self.rt.layout.data, self.rt.data_rank
        per_rank = max(1, 2 * len(dataset) // dp) // mbs * mbs
        return pair_micro_batches(dataset, rank * per_rank // 2, per_rank, mbs) if per_rank else []
