"""Reward model: the policy's GPTModel with a scalar head in place of the LM output.

    install_reward_head(chunk)                 # at build time, on every chunk (a no-op off the last stage)
    rewards_BS = model(tokens, position_ids, None)[..., 0]     # last stage: one reward per position
    load_into_reward_model(chunks, None, lm_or_reward_checkpoint)     # the head may be missing: fresh init
    scorer = build_reward_model(shape, parallel, device, checkpoint)   # frozen, for online DPO
    scores = score(scorer, tokens, lengths)    # one float per row, on every rank, at any TP/PP

The last stage's output layer is re-classed (as mcore/fused_head.py does for the fused loss)
to return `reward_head(final-norm hidden)` instead of logits. `reward_head` is a
Linear(hidden, 1) child of the output layer: its state-dict key is
`output_layer.reward_head.weight`, and megatron's default sharded state dict stores it as a
tensor replicated over TP (it has no `tensor_model_parallel` attribute). Every TP rank holds
the full, identical hidden state (sequence parallelism is refused), so each computes the
same reward and the same head gradient; megatron's DDP reduces that gradient over DP only,
and its grad-norm counts the head once (on TP rank 0), as for the norms' replicated weights.
The gradient into the hidden states is already complete on every TP rank, so unlike the LM
head no TP all-reduce is needed.

The LM output weight: with tied embeddings at PP > 1 the last stage keeps its copy of the
embedding (megatron's embedding-grad all-reduce pairs the first and last stage; the head adds
zero to it, so the copies stay equal). An untied LM output weight is unused: it is frozen
(no gradient, no optimizer state) but kept, so LM checkpoints load strictly and the reward
checkpoint keeps the policy layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.layers import ColumnParallelLinear

from megatron_kanana.checkpointing.safe_load import read_dcp_metadata
from megatron_kanana.mcore import checkpoint as mcore_ckpt, runtime
from megatron_kanana.mcore.fused_head import unwrap
from megatron_kanana.mcore.model import build_model, transformer_config
from megatron_kanana.mcore.step import run_schedule
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig

HEAD_KEY = "output_layer.reward_head."  # state-dict prefix of the head's parameters


class RewardOutputLayer(ColumnParallelLinear):
    """GPTModel's output layer in a reward model: returns reward_head(hidden) [s, b, 1]."""

    def forward(self, input_: torch.Tensor, weight=None, runtime_gather_output=None):
        return self.reward_head(input_.to(self.reward_head.weight.dtype)), None


def install_reward_head(model: torch.nn.Module) -> None:
    """Give this chunk's output layer a scalar head (a no-op off the last pipeline stage)."""
    model = unwrap(model)
    if not model.post_process:
        return
    config = model.config
    if config.sequence_parallel:
        raise ValueError("a reward model reads one position per row, which sequence parallelism splits over TP "
                         "ranks: set parallel.sequence_parallel=false")
    if config.mtp_num_layers:
        raise ValueError("a reward model has no LM head for multi-token prediction: unset mtp_num_layers")
    layer = model.output_layer
    layer.__class__ = RewardOutputLayer
    # Zero init: identical on every TP rank without a broadcast, and every reward starts at 0,
    # so the first loss is exactly log 2. No bias: the Bradley-Terry loss depends on reward
    # differences only, so a bias would get exactly zero gradient.
    layer.reward_head = torch.nn.Linear(config.hidden_size, 1, bias=False, dtype=config.params_dtype,
                                        device=layer.weight.device if layer.weight is not None else None)
    torch.nn.init.zeros_(layer.reward_head.weight)
    if layer.weight is not None and not model.share_embeddings_and_output_weights:
        layer.weight.requires_grad_(False)  # the untied LM head: unused (see the module docstring)


def _checkpoint_has_head(directory: str | Path) -> bool:
    return any(HEAD_KEY in key for key in read_dcp_metadata(directory).state_dict_metadata)


def _drop_head(state: dict) -> dict:
    """A (nested) sharded state dict without the head's entries."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _drop_head(value)
        elif HEAD_KEY not in key:
            out[key] = value
    return out


def load_into_reward_model(chunks: list[torch.nn.Module], optimizer, directory: str | Path) -> bool:
    """Load a reward checkpoint, or an LM checkpoint whose missing head keeps its fresh init
    (the signature of mcore.checkpoint.load_training_state, so the trainer's checkpointer takes either).

    Returns whether the head came from the checkpoint. Loading is strict on everything else:
    load_state_dict(strict=False) is used only when the head is absent, and then every missing
    key must be a head key and nothing may be unexpected."""
    if _checkpoint_has_head(directory):
        mcore_ckpt.load_training_state(chunks, optimizer, directory)
        return True
    if optimizer is not None:
        raise ValueError(f"{directory} holds no reward head, so it is not a reward-model training state; "
                         "load it without its optimizer (checkpoint.load_optimizer: false)")
    request = _drop_head(mcore_ckpt.model_sharded_state_dict(chunks))
    state = mcore_ckpt.load(request, directory)
    modules = [getattr(c, "module", c) for c in chunks]
    for i, m in enumerate(modules):
        result = m.load_state_dict(state["model"] if len(modules) == 1 else state[f"model{i}"], strict=False)
        wrong = [k for k in result.missing_keys if HEAD_KEY not in k] + list(result.unexpected_keys)
        if wrong:
            raise RuntimeError(f"{directory}: loading into the reward model, keys other than the head do not "
                               f"match: {wrong[:8]}")
    return False


def build_reward_model(shape: ModelShape, parallel: ParallelConfig, device: str, checkpoint: str | Path,
                       seq_length: Optional[int] = None, bf16: Optional[bool] = None) -> list[torch.nn.Module]:
    """This rank's chunks of a trained reward model, loaded, frozen, in eval mode."""
    config = transformer_config(shape, parallel, device, bf16=bf16)
    chunks = build_model(shape, config, max_sequence_length=seq_length)
    for chunk in chunks:
        install_reward_head(chunk)
    if not load_into_reward_model(chunks, None, checkpoint):
        raise ValueError(f"{checkpoint} has no reward head: it is not a reward-model checkpoint")
    for chunk in chunks:
        chunk.eval()
        for p in chunk.parameters():
            p.requires_grad_(False)
    return chunks


def last_token_rewards(output_BS1: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[rows] rewards at each row's last real token (position lengths - 1), in fp32."""
    index = (lengths.to(output_BS1.device).long() - 1).clamp(min=0)
    return output_BS1[..., 0].float().gather(1, index[:, None])[:, 0]


def score(chunks: list[torch.nn.Module], tokens: torch.Tensor, lengths: torch.Tensor,
          micro_batch_size: Optional[int] = None) -> torch.Tensor:
    """Rewards [rows] (fp32, on CPU, the same on every rank) of `tokens` [rows, s] whose rows hold
    `lengths` real tokens, right-padded. Runs megatron's forward-only schedule, so it works at any
    TP/PP; every rank of the model-parallel group must call it with the same rows."""
    rows, seq_length = tokens.shape
    if lengths.shape != (rows,) or int(lengths.min()) < 1 or int(lengths.max()) > seq_length:
        raise ValueError(f"score: lengths must be [{rows}] within 1..{seq_length}, got {lengths.tolist()}")
    mbs = micro_batch_size or rows
    if rows % mbs:
        raise ValueError(f"score: {rows} rows do not split into micro-batches of {mbs}")
    device = runtime.comm_device()
    positions = torch.arange(seq_length).expand(rows, -1)
    batches = [{"tokens": tokens[i:i + mbs], "position_ids": positions[i:i + mbs], "lengths": lengths[i:i + mbs]}
               for i in range(0, rows, mbs)]

    def forward_step(batch_iter, model):
        batch = next(batch_iter)
        out = model(batch["tokens"].to(device), batch["position_ids"].to(device), None)
        return out, lambda output: (torch.zeros((), device=device),
                                    {"rewards": last_token_rewards(output, batch["lengths"])})

    with torch.no_grad():
        dicts = run_schedule(chunks, forward_step, batches, mbs, seq_length, forward_only=True)
    rewards = torch.zeros(rows, dtype=torch.float32, device=device)
    if dicts:  # the last pipeline stage
        rewards.copy_(torch.cat([d["rewards"] for d in dicts]))
    last = parallel_state.get_pipeline_model_parallel_last_rank()
    dist.broadcast(rewards, src=last, group=parallel_state.get_pipeline_model_parallel_group())
    return rewards.cpu()
