"""How each post-training section changes the trainer: plan, model, step, data, extra models.

    plan = stage_plan(cfg)                      # None: pre-training (data.mixture)
    prepare_model(cfg, chunks)                  # before DDP: the reward head
    configure(trainer)                          # forward step, loss keys, frozen reference, sampler
    train, valid = datasets(cfg, plan, index, fingerprint)

The trainer's loop, LR schedule, checkpointing and resume are the same for every
mode; only these choices differ. A post-training stage is one stage ("sft",
"reward", "dpo", "online_dpo") whose step count comes from its section.
"""
from __future__ import annotations

from typing import Optional

from megatron_kanana.log import get_logger
from megatron_kanana.mcore import checkpoint as mcore_ckpt, distill as mcore_distill, reward_head
from megatron_kanana.posttrain import dpo, reward
from megatron_kanana.posttrain.sft import build_sft_datasets, sft_plan

log = get_logger(__name__)


def mode(cfg) -> str:
    from megatron_kanana.config.root import POST_TRAINING

    return next((name for name in POST_TRAINING if getattr(cfg, name) is not None), "pretrain")


def stage_plan(cfg):
    gbs = cfg.data.global_batch_size
    return {"sft": lambda: sft_plan(cfg.sft, cfg.schedule, gbs),
            "reward": lambda: reward.reward_plan(cfg.reward, cfg.schedule, gbs),
            "dpo": lambda: dpo.dpo_plan(cfg.dpo, cfg.schedule, gbs),
            "online_dpo": lambda: cfg.online_dpo.online_plan(cfg.schedule),
            "pretrain": lambda: None}[mode(cfg)]()


def prepare_model(cfg, chunks: list) -> None:
    """Before DDP and the optimizer, which must see the reward head's parameter."""
    if cfg.reward is not None:
        for chunk in chunks:
            reward_head.install_reward_head(chunk)


def load_state(cfg):
    """How a checkpoint is loaded into the trained model (the reward model starts from an LM)."""
    return reward_head.load_into_reward_model if cfg.reward is not None else mcore_ckpt.load_training_state


def model_kind(cfg) -> str:
    return reward.MODEL_KIND if cfg.reward is not None else "lm"


def loadable_kinds(cfg) -> tuple[str, ...]:
    """What a run may start from: a reward model starts from an LM (or resumes itself)."""
    return ("lm", reward.MODEL_KIND) if cfg.reward is not None else ("lm",)


def configure(trainer) -> None:
    """Set the trainer's forward step and loss keys for its mode, and add the models it needs."""
    cfg = trainer.cfg
    if cfg.reward is not None:
        from megatron_kanana.posttrain import reward_step

        trainer.forward_step = reward_step.make_reward_forward_step()
        trainer.loss_key, trainer.extra_keys = reward_step.LOSS_KEY, reward_step.EXTRA_KEYS
        trainer.valid_keys = {"reward loss": reward_step.LOSS_KEY, "pairwise accuracy": "accuracy"}
    section = cfg.dpo or cfg.online_dpo
    if section is not None:
        _add_reference(trainer, section)
    if cfg.online_dpo is not None:
        from megatron_kanana.posttrain.online_setup import build_online_batches

        trainer.online = build_online_batches(trainer)


def _add_reference(trainer, section) -> None:
    """DPO: a frozen reference beside the policy, stage by stage (mcore/distill.py's pairing)."""
    from megatron_kanana.checkpointing.layout import check_model_kind, read_meta
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel.config import check_layout
    from megatron_kanana.posttrain.dpo_loss import LOSS_KEY, STAT_KEYS
    from megatron_kanana.posttrain.dpo_step import make_dpo_forward_step
    from megatron_kanana.training.distill_config import check_compatible

    cfg, rt = trainer.cfg, trainer.rt
    name = "dpo" if cfg.dpo is not None else "online_dpo"
    directory = dpo.reference_directory(name, section.reference, cfg.checkpoint.load)
    meta = read_meta(directory)
    check_model_kind(meta, directory, ("lm",), f"{name}.reference")
    dpo.check_reference_tokenizer(meta, directory, cfg.data.tokenizer)
    shape = ModelShape.from_dict(meta["model"], prefix=f"{name}.reference") if "model" in meta else cfg.model
    check_compatible(cfg.model, shape)
    check_layout(cfg.parallel, shape, rt.world_size, rt.device)
    reference = mcore_distill.build_teacher(shape, cfg.parallel, rt.device, directory,
                                            seq_length=cfg.data.seq_length, bf16=cfg.optim.bf16)
    trainer.schedule_chunks = mcore_distill.pair_stages(trainer.chunks, reference)
    trainer.forward_step = make_dpo_forward_step(section.beta, section.label_smoothing, section.sft_loss_weight)
    trainer.loss_key, trainer.extra_keys = LOSS_KEY, STAT_KEYS
    trainer.valid_keys = {"dpo loss": "dpo loss", "preference accuracy": "preference accuracy",
                          "reward margin": "reward margin"}
    log.info(f"{name} against the frozen reference {directory} (beta={section.beta}, "
             f"label_smoothing={section.label_smoothing}, sft_loss_weight={section.sft_loss_weight})")


def datasets(cfg, plan, index: int, fingerprint: str) -> Optional[tuple]:
    """(train, {category: valid}) of a post-training stage; None in pre-training."""
    name, seed = mode(cfg), cfg.run.seed
    rows = plan.stages[index].steps * cfg.data.global_batch_size if name != "pretrain" else 0
    if name == "sft":
        return build_sft_datasets(cfg.sft, seed, rows, fingerprint)
    if name == "reward":
        return reward.build_reward_datasets(cfg.reward, seed, rows // 2, fingerprint)
    if name == "dpo":
        return dpo.build_dpo_datasets(cfg.dpo, seed, rows // 2, fingerprint)
    if name == "online_dpo":  # training pairs are sampled each step; only the held-out pairs are data
        from megatron_kanana.posttrain.preference import open_pair_datasets

        prefixes = cfg.online_dpo.valid_prefixes
        valid = ({"online_dpo": open_pair_datasets("online_dpo", prefixes, cfg.online_dpo.seq_length, fingerprint)}
                 if prefixes else {})
        return None, valid
    return None
