"""Next-token choice from full-vocabulary logits: greedy, or temperature / top-k / top-p sampling,
either with an optional repetition penalty.

    settings = SamplingSettings(temperature=0.8, top_p=0.9, seed=7)
    generator = settings.generator()
    next_ids = choose_tokens(logits_BV, settings, generator)   # [B] int64
    next_ids = choose_tokens(logits_BV, settings, generator, seen_BV)  # with repetition_penalty

Pure torch (no process groups): `mcore.generate` calls it on one rank per
model replica and broadcasts the result. Greedy (temperature 0, the default)
is argmax with ties to the lowest id; top-p keeps the smallest prefix of the
descending-probability list whose mass reaches p, always at least the top
token, so top_p → 0 is greedy. With `vocab_limit` the ids past the tokenizer's
pieces (padding rows of the embedding) are masked before any choice.
`repetition_penalty` is the CTRL rule (Keskar et al. 2019) as Hugging Face's
RepetitionPenaltyLogitsProcessor and vLLM apply it: the logit of every id already in
the row (prompt or output; `seen_BV`) is divided by the penalty when positive and
multiplied by it when negative, before temperature and filtering. A small model's
greedy output otherwise falls into one token repeated.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0  # 0 = greedy (argmax); > 0 divides the logits before softmax
    top_p: float = 1.0  # nucleus mass kept, in (0, 1]
    top_k: int = 0  # keep the k most likely tokens; 0 = no limit
    seed: int = 0  # seeds the torch.Generator, so a run is reproducible
    # ids >= this are never chosen (0 = no limit): the model's vocabulary is padded past the
    # tokenizer's (or the tokenizer has fewer pieces), and an id it lacks cannot be decoded
    vocab_limit: int = 0
    repetition_penalty: float = 1.0  # > 1 discourages ids already in the row; 1 = off

    def __post_init__(self):
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = no limit), got {self.top_k}")
        if self.vocab_limit < 0:
            raise ValueError(f"vocab_limit must be >= 0 (0 = no limit), got {self.vocab_limit}")
        if not self.repetition_penalty > 0.0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalizes_repeats(self) -> bool:
        return self.repetition_penalty != 1.0

    def generator(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed)


def filter_logits(logits_BV: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits with everything outside the top-k and the top-p nucleus set to -inf."""
    out = logits_BV.float().clone()
    if top_k and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        # stable sort: among equal logits the lower id comes first, as argmax picks it
        sorted_logits, order = torch.sort(out, dim=-1, descending=True, stable=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p  # the first token has mass_before 0 and always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out[drop] = float("-inf")
    return out


def penalize_repeats(logits_BV: torch.Tensor, seen_BV: torch.Tensor, penalty: float) -> torch.Tensor:
    """Logits with each seen id's logit divided by `penalty` if positive, multiplied if not."""
    penalized = torch.where(logits_BV > 0, logits_BV / penalty, logits_BV * penalty)
    return torch.where(seen_BV, penalized, logits_BV)


def seen_ids(rows: list[list[int]], vocab: int) -> torch.Tensor:
    """[B, vocab] bool: which ids each row holds (what `penalize_repeats` looks at)."""
    seen = torch.zeros(len(rows), vocab, dtype=torch.bool)
    for i, row in enumerate(rows):
        seen[i, torch.tensor(row, dtype=torch.long)] = True
    return seen


def choose_tokens(logits_BV: torch.Tensor, settings: SamplingSettings,
                  generator: torch.Generator, seen_BV: torch.Tensor | None = None) -> torch.Tensor:
    """One next token per row ([B] int64, on the CPU). `seen_BV` ([B, V] bool, the ids already
    in each row) is required when the settings penalize repeats."""
    if logits_BV.dim() != 2:
        raise ValueError(f"choose_tokens expects [batch, vocab] logits, got shape {tuple(logits_BV.shape)}")
    logits_BV = logits_BV.detach().float().cpu()
    if settings.penalizes_repeats:
        if seen_BV is None or seen_BV.shape != logits_BV.shape:
            raise ValueError(f"repetition_penalty needs the seen ids as a {tuple(logits_BV.shape)} mask, got "
                             f"{None if seen_BV is None else tuple(seen_BV.shape)}")
        logits_BV = penalize_repeats(logits_BV, seen_BV.cpu(), settings.repetition_penalty)
    if 0 < settings.vocab_limit < logits_BV.shape[-1]:
        logits_BV = logits_BV.clone()
        logits_BV[:, settings.vocab_limit:] = float("-inf")
    if settings.greedy:
        return logits_BV.argmax(dim=-1)
    scaled = filter_logits(logits_BV / settings.temperature, settings.top_k, settings.top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
