"""Forward-only token log-probabilities for evaluation, at any TP/PP, and evaluation's DP view.

    chunks = load_frozen_lm(shape, parallel, device, checkpoint_dir)
    logp_BK, greedy_BK, last_BV = token_logprobs(chunks, inputs_BS, targets_BS, last_B, num_scored=K)  # every rank
    with live_model(training_chunks): ...   # score the model being trained, then train on untouched

`token_logprobs` runs megatron's forward-only schedule (the one training and
`reward_head.score` use), so pipeline stages pass activations as in training and
tensor-parallel logits are never gathered: log p(y) = logit[y] − logsumexp, both
reduced over TP (mcore/loss.py), at the K slots per row that are scored only
(the output layer never sees the others). "Greedy" means the target's logit is the
largest in the whole vocabulary (max all-reduced over TP), lm-eval's is_greedy.
`last_BV` is the whole log-softmax at one position per row (gathered over TP):
lm-eval scores several one-token continuations of one context (the four
letters of a multiple-choice question) from one forward, as its HF backend does.
The last stage broadcasts the result over the pipeline group.

Evaluation shards requests over data-parallel replicas only: every rank of one
model replica sees the same requests. `DataParallelView` is what lm-eval's
`rank`, `world_size`, `all_gather`, `gather_object` and `barrier` map to.
"""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

from megatron_kanana.mcore import runtime
from megatron_kanana.mcore.checkpoint import rng_state, set_rng_state
from megatron_kanana.mcore.distill import build_teacher
from megatron_kanana.mcore.fused_head import logits_output, unwrap
from megatron_kanana.mcore.loss import vocab_parallel_logsumexp, vocab_parallel_max, vocab_parallel_target_logit
from megatron_kanana.mcore.step import run_schedule, sync_params
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig


def load_frozen_lm(shape: ModelShape, parallel: ParallelConfig, device: str, checkpoint: str | Path,
                   seq_length: Optional[int] = None) -> list[torch.nn.Module]:
    """This rank's chunks of an LM checkpoint (saved at any layout), frozen, in eval mode, built
    for `seq_length` tokens (default: max_position_embeddings). The frozen loader is
    distillation's teacher loader: the same build + resharding load."""
    return build_teacher(shape, parallel, device, checkpoint, seq_length=seq_length)


@contextlib.contextmanager
def live_model(chunks: list[torch.nn.Module]) -> Iterator[None]:
    """Inside: the training model's chunks (DDP-wrapped), parameters gathered, in eval mode,
    returning logits even with the fused LM head, without autograd. On exit the modes and
    every RNG stream (Python, NumPy, torch, megatron's tracker) are as on entry: lm-eval
    reseeds them all, and training must continue as if no evaluation had run."""
    sync_params(chunks)  # an overlapped parameter gather leaves other shards' params one step stale
    modes = [chunk.training for chunk in chunks]
    try:
        for chunk in chunks:
            chunk.eval()
        with preserved_rng(), torch.no_grad(), logits_output(chunks):
            yield
    finally:
        for chunk, mode in zip(chunks, modes):
            chunk.train(mode)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """On exit, Python's, NumPy's, torch's and megatron's tracker RNG streams are as on entry."""
    states = random.getstate(), np.random.get_state(), rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        set_rng_state(states[2])


def _scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target), whether the target's logit is the vocabulary-wide maximum), logits split
    over TP. One max serves both: logsumexp's shift and the greedy test."""
    logits = logits.float()
    top = vocab_parallel_max(logits)
    target = vocab_parallel_target_logit(logits, targets)
    return target - vocab_parallel_logsumexp(logits, top), target >= top


@contextlib.contextmanager
def _logits_at(chunks: list[torch.nn.Module], slots_BK: torch.Tensor) -> Iterator[bool]:
    """Inside: the last stage's output layer sees only the hidden states of slots_BK[b] of each row,
    as one sequence of B*K slots of a batch of one, so the model returns [1, B*K, V] logits
    (its [s, b] -> [b, s] transpose is then free, not a copy of every logit). Yields False where
    it cannot (sequence-parallel hidden states are split over TP; multi-token prediction calls
    the layer more than once): the caller then picks the slots from the whole [B, S, V]."""
    last = [m for m in (unwrap(chunk) for chunk in chunks) if m.post_process]
    if any(m.config.sequence_parallel or m.config.mtp_num_layers for m in last):
        yield False
        return

    def pick(module, args, kwargs):
        hidden_BSH = args[0].transpose(0, 1)
        index_BKH = slots_BK.to(hidden_BSH.device)[..., None].expand(-1, -1, hidden_BSH.shape[-1])
        picked = hidden_BSH.gather(1, index_BKH).reshape(-1, 1, hidden_BSH.shape[-1])  # [B*K, 1, H]
        return (picked, *args[1:]), kwargs

    handles = [m.output_layer.register_forward_pre_hook(pick, with_kwargs=True) for m in last]
    try:
        yield True
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def token_logprobs(chunks: list[torch.nn.Module], inputs_BS: torch.Tensor, targets_BS: torch.Tensor,
                   last_B: torch.Tensor, num_scored: Optional[int] = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On CPU, on every rank, for the K = num_scored slots ending at last_B[b] of each row (default:
    K = S): log p(target | inputs up to the slot) fp32 [B, K] and whether the target is the argmax,
    bool [B, K] (column K-1 is slot last_B[b]); and the whole log-softmax at slot last_B[b], fp32 [B, V].

    Only those slots go through the output layer: lm-eval reads a continuation's few
    positions (one for a multiple-choice letter), and the other positions' logits are most of
    a forward's work at a large vocabulary. A row shorter than K repeats slot 0 in its first
    columns. Rows are right-padded (pads only follow real tokens, so causal attention keeps
    them out of every real position); the caller reads only real positions. Every rank of the
    model-parallel group must call this with the same tensors."""
    if inputs_BS.shape != targets_BS.shape or inputs_BS.dim() != 2 or last_B.shape != inputs_BS.shape[:1]:
        raise ValueError(f"token_logprobs: inputs {tuple(inputs_BS.shape)}, targets {tuple(targets_BS.shape)} "
                         f"must be the same [B, S] and last {tuple(last_B.shape)} [B]")
    rows, seq_length = inputs_BS.shape
    scored = seq_length if num_scored is None else num_scored
    if not 1 <= scored <= seq_length:
        raise ValueError(f"token_logprobs: num_scored {num_scored} must be in [1, {seq_length}]")
    device = runtime.comm_device()
    slots_BK = (last_B[:, None] - (scored - 1) + torch.arange(scored)[None, :]).clamp(min=0).to(device)
    batch = {"tokens": inputs_BS.to(device), "targets": targets_BS.to(device).gather(1, slots_BK),
             "position_ids": torch.arange(seq_length, device=device).expand(rows, -1)}
    picked_in_model = True

    def forward_step(batch_iter, model):
        mb = next(batch_iter)
        logits = model(mb["tokens"], mb["position_ids"], None)

        def collect(output):
            if picked_in_model:  # [1, B*K, V/tp]
                output = output.view(rows, scored, -1)
            else:  # [B, S, V/tp] -> the scored slots
                output = output.gather(1, slots_BK[..., None].expand(-1, -1, output.shape[-1]))
            logp, greedy = _scores(output, mb["targets"])
            last = gather_from_tensor_model_parallel_region(output[:, -1].float())  # [B, V]
            return torch.zeros((), device=device), {"logp": logp, "greedy": greedy,
                                                    "last": torch.log_softmax(last, dim=-1)}

        return logits, collect

    was_training = [chunk.training for chunk in chunks]
    for chunk in chunks:
        chunk.eval()
    try:
        with _logits_at(chunks, slots_BK) as picked_in_model:
            dicts = run_schedule(chunks, forward_step, [batch], rows, seq_length, forward_only=True)
    finally:
        for chunk, mode in zip(chunks, was_training):
            chunk.train(mode)
    vocab = _vocab_size(chunks)
    # one tensor, one broadcast: log-probs, greedy flags as 0/1, then the last-position rows
    out = torch.zeros(rows, 2 * scored + vocab, dtype=torch.float32, device=device)
    if dicts:  # the last pipeline stage
        d = dicts[0]
        out.copy_(torch.cat([d["logp"], d["greedy"].float(), d["last"]], dim=1))
    dist.broadcast(out, src=parallel_state.get_pipeline_model_parallel_last_rank(),
                   group=parallel_state.get_pipeline_model_parallel_group())
    out = out.cpu()
    return out[:, :scored], out[:, scored:2 * scored] > 0.5, out[:, 2 * scored:]


def _vocab_size(chunks: list[torch.nn.Module]) -> int:
    model = chunks[0]
    while hasattr(model, "module"):  # DDP / Float16Module wrappers
        model = model.module
    return model.vocab_size


class DataParallelView:
    """This rank's place among data-parallel replicas, and the collectives lm-eval asks for."""

    def __init__(self, group: Optional[dist.ProcessGroup] = None):
        self.group = group or parallel_state.get_data_parallel_group()
        self.rank = dist.get_rank(group=self.group)
        self.world_size = dist.get_world_size(group=self.group)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenation over replicas of a tensor (lm-eval pads requests with it)."""
        local = tensor.reshape(-1).to(runtime.comm_device())
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local, group=self.group)
        return torch.cat(parts).cpu()

    def gather_object(self, obj, dst: int = 0):
        parts = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, parts, dst=dist.get_global_rank(self.group, dst), group=self.group)
        return parts

    def barrier(self) -> None:
        dist.barrier(group=self.group)


def is_global_rank_zero() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0
