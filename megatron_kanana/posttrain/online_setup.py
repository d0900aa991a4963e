"""Building online DPO's moving parts for a trainer: prompts, reward model, sampler copy.

    online = build_online_batches(cfg, rt, tokenizer)   # then each step: online.step_batches(...)

The reward model is checked to be one (checkpoint meta "model_kind": "reward") and
to share the policy's tokenizer (fingerprints) before it is built; it runs frozen
at the policy's TP/PP layout and scores on the main thread between steps. The
sampler is a second copy of the policy on duplicated process groups
(posttrain/async_sampler.py).
"""
from __future__ import annotations

from pathlib import Path

from megatron_kanana.checkpointing.layout import resolve
from megatron_kanana.log import get_logger
from megatron_kanana.mcore import reward_head
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import check_layout
from megatron_kanana.posttrain.async_sampler import AsyncSampler
from megatron_kanana.data.chat_template import get_template
from megatron_kanana.posttrain.online_batches import OnlineBatches
from megatron_kanana.posttrain.prompts import load_prompts, stop_token
from megatron_kanana.posttrain.reward import check_reward_checkpoint

log = get_logger(__name__)


def build_online_batches(cfg, rt, tokenizer) -> OnlineBatches:
    section = cfg.online_dpo
    template = get_template(section.template, tokenizer)
    prompts = load_prompts(section.prompts, tokenizer, template, section.seq_length,
                           min_response_tokens=section.max_new_tokens, strict=section.strict)
    for line in prompts.report.lines():
        log.info(f"online_dpo prompts: {line}")
    directory = resolve(Path(section.reward_model))
    meta = check_reward_checkpoint(directory, tokenizer.fingerprint)
    shape = ModelShape.from_dict(meta["model"], prefix="online_dpo.reward_model")
    if shape.vocab_size != cfg.model.vocab_size:
        raise ValueError(f"online_dpo.reward_model has vocab_size {shape.vocab_size}, the policy "
                         f"{cfg.model.vocab_size}")
    check_layout(cfg.parallel, shape, rt.world_size, rt.device)
    scorer_chunks = reward_head.build_reward_model(shape, cfg.parallel, rt.device, directory,
                                                   seq_length=cfg.data.seq_length, bf16=cfg.optim.bf16)

    def score(tokens, lengths, micro_batch_size):
        return reward_head.score(scorer_chunks, tokens, lengths, micro_batch_size)

    sampler = AsyncSampler(cfg.model, cfg.parallel, rt.device, seq_length=cfg.data.seq_length, bf16=cfg.optim.bf16)
    log.info(f"online DPO: {len(prompts)} prompts, {section.num_samples} samples each, reward model "
             f"{directory}, max_staleness {section.max_staleness}")
    return OnlineBatches(section, prompts.ids, sampler, score, global_batch_size=cfg.data.global_batch_size,
                         micro_batch_size=cfg.data.micro_batch_size, seed=cfg.run.seed,
                         dp_rank=rt.data_rank, dp_size=rt.layout.data, pad=tokenizer.pad,
                         stop_token=stop_token(template, tokenizer), total_steps=section.train_steps)
