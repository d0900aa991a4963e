"""Online DPO's pairs: N sampled responses per prompt, scored, best against worst.

    rows = sample_rows(prompt_ids, responses, seq_length, pad)          # scored by the reward model
    pairs, stats = pair_rows(responses, rows, rewards, stop_token)      # 2 rows per prompt
    batch = collate_pairs(pairs[i:i + k])                                # as offline DPO reads

For each prompt the response with the highest reward is "chosen", the one with
the lowest "rejected" (Kanana §6, following the online-DPO recipe of sampling
several responses and pairing the extremes). A prompt whose extremes tie — equal
rewards, or identical token sequences — carries no preference: its pair is kept
so every data-parallel rank runs the same number of micro-batches, but with
`pair_weight` 0 so it adds nothing to the loss or the logged statistics.
"""
from __future__ import annotations

import dataclasses

import torch


def response_sample(prompt: list[int], response: list[int], seq_length: int, pad: int) -> dict:
    """prompt + response as one unpacked SFT-style sample: the loss mask is 1 on the labels
    that are response tokens (the stop token included). A response longer than the sequence
    allows is cut (the caller sized generation so that this only trims the stop token)."""
    ids = (prompt + response)[:seq_length + 1]
    n = len(ids) - 1
    tokens = torch.full((seq_length,), pad, dtype=torch.long)
    labels = torch.full((seq_length,), pad, dtype=torch.long)
    loss_mask = torch.zeros(seq_length)
    tokens[:n] = torch.tensor(ids[:-1])
    labels[:n] = torch.tensor(ids[1:])
    loss_mask[len(prompt) - 1:n] = 1.0  # label t is token t+1: response tokens start at t = len(prompt)-1
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask,
            "position_ids": torch.arange(seq_length), "length": n}


@dataclasses.dataclass
class PairStats:
    prompts: int = 0
    ties: int = 0  # extremes equal: no preference, pair weight 0
    reward_sum: float = 0.0
    gap_sum: float = 0.0  # best − worst reward, over prompts with a preference
    response_tokens: int = 0
    responses: int = 0
    finished: int = 0  # responses that ended with the stop token

    def to_metrics(self) -> dict[str, float]:
        kept = self.prompts - self.ties
        return {"sample reward": self.reward_sum / max(self.responses, 1),
                "best worst gap": self.gap_sum / max(kept, 1),
                "tied prompts": float(self.ties),
                "response length": self.response_tokens / max(self.responses, 1),
                "finished fraction": self.finished / max(self.responses, 1)}


def sample_rows(prompts: list[list[int]], responses: list[list[list[int]]], seq_length: int,
                pad: int) -> list[list[dict]]:
    """rows[i][n]: prompt i + its n-th response as a sample; built once, scored, then paired."""
    return [[response_sample(prompt, r, seq_length, pad) for r in candidates]
            for prompt, candidates in zip(prompts, responses)]


def pair_rows(responses: list[list[list[int]]], rows: list[list[dict]], rewards: torch.Tensor,
              stop_token: int) -> tuple[list[tuple[dict, dict]], PairStats]:
    """(chosen, rejected) samples per prompt with `pair_weight`, and statistics.

    responses[i][n]: the n-th sampled response to prompt i, rows[i][n] its sample
    (`sample_rows`); rewards: [prompts, N]."""
    if rewards.shape != (len(responses), len(responses[0]) if responses else 0):
        raise ValueError(f"rewards {tuple(rewards.shape)} do not match {len(responses)} prompts × "
                         f"{len(responses[0]) if responses else 0} responses")
    stats = PairStats()
    pairs = []
    for candidates, samples, scores in zip(responses, rows, rewards.tolist()):
        best = max(range(len(scores)), key=lambda n: scores[n])
        worst = min(range(len(scores)), key=lambda n: scores[n])
        tie = scores[best] == scores[worst] or candidates[best] == candidates[worst]
        stats.prompts += 1
        stats.ties += tie
        stats.gap_sum += 0.0 if tie else scores[best] - scores[worst]
        stats.reward_sum += sum(scores)
        stats.responses += len(candidates)
        stats.response_tokens += sum(len(c) for c in candidates)
        stats.finished += sum(1 for c in candidates if c and c[-1] == stop_token)
        weight = torch.tensor(0.0 if tie else 1.0)
        pairs.append(tuple({**samples[k], "pair_weight": weight} for k in (best, worst)))
    return pairs, stats
