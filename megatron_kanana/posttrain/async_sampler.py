"""Online DPO's sampler: a copy of the policy that generates the next step's responses
in a background thread while the trainer updates the policy on this step's.

    sampler = AsyncSampler(shape, parallel, device, seq_length=..., bf16=...)
    sampler.start(policy_chunks, version=k, prompts=..., request=...)   # copies θ_k, returns at once
    ... train step k on the previous samples ...
    samples = sampler.wait()       # responses generated with θ_k; samples.version == k

This is the asynchronous-RLHF arrangement (Noukhovitch et al., 2024) inside one job:
the samples step k+1 trains on came from the weights before step k's update, so
training is one step off-policy, and generation — the slow, memory-bound part —
overlaps the optimizer step instead of adding to it. The copy is built on its own
process groups (mcore.runtime.duplicate_model_groups), so the thread's TP/PP
collectives never interleave with the training collectives on the main thread's
groups. Its weights are refreshed from the policy before each start (a local copy
of this rank's shards: same layout, no communication).

Every rank of a model replica calls start/wait with the same prompts (ranks of one
data-parallel replica generate the same responses).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Optional

import torch

from megatron_kanana.mcore import generate as mcore_generate, model as mcore_model, runtime
from megatron_kanana.mcore.sampling import SamplingSettings


@dataclasses.dataclass(frozen=True)
class SampleRequest:
    num_samples: int  # responses per prompt
    max_new_tokens: int
    sampling: SamplingSettings
    stop_token: int


@dataclasses.dataclass
class Samples:
    prompts: list[list[int]]
    responses: list[list[list[int]]]  # [prompt][sample] -> new tokens (stop token included when reached)
    version: int  # optimizer steps the generating weights had taken
    seconds: float  # wall time of the generation itself


class AsyncSampler:
    def __init__(self, shape, parallel, device: str, seq_length: int, bf16: Optional[bool] = None):
        self.groups = runtime.duplicate_model_groups()  # collective: every rank builds its sampler together
        config = mcore_model.transformer_config(shape, parallel, device, bf16=bf16)
        self.chunks = mcore_model.build_model(shape, config, max_sequence_length=seq_length, groups=self.groups)
        if len(self.chunks) != 1:
            raise ValueError("online DPO generates with one model chunk per rank: "
                             "virtual_pipeline_model_parallel_size must be 1")
        for chunk in self.chunks:
            chunk.eval()
            for p in chunk.parameters():
                p.requires_grad_(False)
        self._thread: Optional[threading.Thread] = None
        self._result: Optional[Samples] = None
        self._error: Optional[BaseException] = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def start(self, policy_chunks: list[torch.nn.Module], version: int, prompts: list[list[int]],
              request: SampleRequest) -> None:
        """Copy the policy's weights, then generate for `prompts` in the background."""
        if self.busy:
            raise RuntimeError("AsyncSampler.start: the previous generation was not collected (call wait)")
        self._copy_weights(policy_chunks)
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(list(prompts), version, request),
                                        name="online-dpo-sampler", daemon=True)
        self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> Samples:
        if self._thread is None:
            raise RuntimeError("AsyncSampler.wait: nothing was started")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the sampler thread did not finish within {timeout} s")
        self._thread = None
        if self._error is not None:
            raise RuntimeError("online DPO: generation failed in the sampler thread") from self._error
        return self._result

    def _run(self, prompts: list[list[int]], version: int, request: SampleRequest) -> None:
        try:
            start = time.perf_counter()
            # each prompt N times in one batch: rows differ through the sampler's random draws
            rows = [p for p in prompts for _ in range(request.num_samples)]
            out = mcore_generate.generate(self.chunks, rows, request.max_new_tokens, sampling=request.sampling,
                                          stop_token=request.stop_token, groups=self.groups)
            n = request.num_samples
            responses = [out.tokens[i * n:(i + 1) * n] for i in range(len(prompts))]
            self._result = Samples(prompts, responses, version, time.perf_counter() - start)
        except BaseException as e:  # re-raised on the main thread by wait()
            self._error = e

    @torch.no_grad()
    def _copy_weights(self, policy_chunks: list[torch.nn.Module]) -> None:
        for policy, copy in zip(policy_chunks, self.chunks, strict=True):
            source = dict(_unwrap(policy).named_parameters())
            target = dict(_unwrap(copy).named_parameters())
            if source.keys() != target.keys():
                raise RuntimeError(f"sampler and policy parameters differ: {sorted(source.keys() ^ target.keys())}")
            for name, param in target.items():
                param.copy_(source[name])


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    while hasattr(module, "module"):
        module = module.module
    return module
