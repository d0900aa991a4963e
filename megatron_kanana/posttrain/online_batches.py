"""Each online-DPO step's micro-batches: prompts → sampled responses → rewards → (best, worst) pairs.

    source = OnlineBatches(cfg.online_dpo, prompts, sampler, score, data=cfg.data, seed=..., dp=(rank, size), ...)
    micro_batches, metrics = source.step_batches(step, policy_chunks, end_step)

With `max_staleness: 1` the sampler is always one step ahead: step k collects the
responses started during step k−1 (weights θ_{k−1}), starts step k+1's with θ_k,
and the main thread scores, pairs and trains while the sampler generates. The
first step of a run (or of a resumed run) has nothing in flight and samples
synchronously (staleness 0). Prompts and sampling seeds are pure functions of
(seed, step, data-parallel rank), like the data position of pre-training, so a
resumed run asks for the same prompts.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from megatron_kanana.posttrain.async_sampler import AsyncSampler, SampleRequest, Samples
from megatron_kanana.posttrain.preference import pair_micro_batches
from megatron_kanana.posttrain.online_dpo import OnlineDPOConfig
from megatron_kanana.posttrain.online_pairs import pair_rows, sample_rows
from megatron_kanana.posttrain.sft import EpochShuffled
from megatron_kanana.mcore.sampling import SamplingSettings

Scorer = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (tokens [R, s], lengths [R], mbs) -> [R]


class OnlineBatches:
    def __init__(self, cfg: OnlineDPOConfig, prompts: list[list[int]], sampler: AsyncSampler, score: Scorer, *,
                 global_batch_size: int, micro_batch_size: int, seed: int, dp_rank: int, dp_size: int,
                 pad: int, stop_token: int, total_steps: int):
        self.cfg, self.sampler, self.score = cfg, sampler, score
        self.pairs_per_step = global_batch_size // 2  # batch sizes count rows: two per pair
        self.per_rank = self.pairs_per_step // dp_size
        self.micro_batch_size, self.seed, self.dp_rank = micro_batch_size, seed, dp_rank
        self.pad, self.stop_token = pad, stop_token
        self.prompts = EpochShuffled(prompts, total_steps * self.pairs_per_step, seed)
        self._pending: int | None = None  # the step whose responses the sampler is generating

    def prompts_for(self, step: int) -> list[list[int]]:
        first = step * self.pairs_per_step + self.dp_rank * self.per_rank
        return [self.prompts[i] for i in range(first, first + self.per_rank)]

    def request(self, step: int) -> SampleRequest:
        # one seed per (run seed, step, DP replica): replicas sample differently, a resume repeats itself
        seed = (self.seed * 1_000_003 + step) * 1_009 + self.dp_rank
        sampling = SamplingSettings(temperature=self.cfg.temperature, top_p=self.cfg.top_p, top_k=self.cfg.top_k,
                                    seed=seed % (2 ** 63))
        return SampleRequest(self.cfg.num_samples, self.cfg.max_new_tokens, sampling, self.stop_token)

    def step_batches(self, step: int, policy_chunks: list, end_step: int) -> tuple[list[dict], dict[str, float]]:
        """Micro-batches for optimizer step `step` (0-based; the policy has taken `step` updates)."""
        waited = time.perf_counter()
        if self._pending != step:  # nothing in flight for this step: first step of this process, or synchronous
            if self.sampler.busy:
                self.sampler.wait(timeout=3600)  # responses for another step: not ours to train on
            self.sampler.start(policy_chunks, step, self.prompts_for(step), self.request(step))
        samples = self.sampler.wait(timeout=3600)
        waited = time.perf_counter() - waited
        self._pending = None
        if self.cfg.max_staleness and step + 1 < end_step:
            self.sampler.start(policy_chunks, step, self.prompts_for(step + 1), self.request(step + 1))
            self._pending = step + 1
        pairs, stats = self._pairs(samples)
        metrics = {"staleness": float(step - samples.version), "generation seconds": samples.seconds,
                   "waited for samples seconds": waited, **stats.to_metrics()}
        batches = pair_micro_batches(pairs, 0, 2 * len(pairs), self.micro_batch_size)
        return batches, metrics

    def _pairs(self, samples: Samples):
        rows = sample_rows(samples.prompts, samples.responses, self.cfg.seq_length, self.pad)
        flat = [row for per_prompt in rows for row in per_prompt]
        tokens = torch.stack([r["tokens"] for r in flat])
        lengths = torch.tensor([r["length"] for r in flat])
        rewards = self.score(tokens, lengths, _divisor_at_most(len(flat), self.micro_batch_size))
        rewards = rewards.view(len(samples.prompts), self.cfg.num_samples)
        return pair_rows(samples.responses, rows, rewards, self.stop_token)

    def close(self) -> None:
        # A run that stops early (step limit, signal) leaves the next step's generation in flight;
        # it is joined, not cancelled: generation has no stopping point between tokens here.
        if self.sampler.busy:
            self.sampler.wait(timeout=3600)
        self._pending = None


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)
