"""The two collectives the vocab-parallel losses need, with megatron's gradient convention.

Under tensor parallelism every rank holds the same (replicated) loss, so:
- a value all-reduced across the group feeds one replicated loss: its backward
  passes the gradient through unchanged (megatron's reduce_from_tensor_model_parallel_region);
- a replicated input used by every rank's shard collects its gradient from all
  ranks: forward identity, backward all-reduce (copy_to_tensor_model_parallel_region).
The group is an explicit argument; None means no tensor parallelism.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def group_rank_and_size(group) -> tuple[int, int]:
    if group is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def all_reduce_(tensor: torch.Tensor, group, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce without autograd; a no-op without a group."""
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


class _ReduceFromGroup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        return all_reduce_(x.clone(), group)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _CopyToGroup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return all_reduce_(grad.clone(), ctx.group), None


def reduce_from_group(x: torch.Tensor, group) -> torch.Tensor:
    return x if group is None else _ReduceFromGroup.apply(x, group)


def copy_to_group(x: torch.Tensor, group) -> torch.Tensor:
    return x if group is None else _CopyToGroup.apply(x, group)
