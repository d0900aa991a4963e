"""Compute accounting: the paper's depth up-scaling arithmetic and each miniature arm's FLOP ledger.

Kanana TR §2.3.2: up-scaling 8B -> 9.8B and 26.8B -> 32.5B after 3T tokens, then 0.2T tokens
of continued training, saves 11.06% against training both deep models from scratch on 3T:

    saving = 1 - [T·(8 + 26.8) + D·(9.8 + 32.5)] / [T·(9.8 + 32.5)],   T = 3T, D = 0.2T
    share  = D / T = 6.67%                                              (DUS's own tokens)

Training cost per token is a parameter: the paper's 6·N (`six_n`), or the project's model FLOP
formula (`ModelShape.flops_per_token`, attention and LM head included) where shapes are known.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from megatron_kanana.models.presets import get_preset
from megatron_kanana.models.shape import ModelShape

# TR §2.3.2 / Table 4: (source, up-scaled) sizes in billions of parameters, token counts in trillions
PAPER_PAIRS: tuple[tuple[float, float], ...] = ((8.0, 9.8), (26.8, 32.5))
PAPER_PRETRAIN_TOKENS = 3.0
PAPER_DUS_TOKENS = 0.2
PAPER_SAVING = 0.1106
PAPER_SHARE = 0.0667
PAPER_SEQ_LENGTH = 8192  # pre-training sequence length (TR App. A.3)


def six_n(parameters: float) -> float:
    """The paper's training FLOPs per token: 6 × parameters."""
    return 6.0 * parameters


def dus_saving(pairs: Sequence[tuple[float, float]], pretrain_tokens: float, dus_tokens: float) -> float:
    """1 - cost(train sources, then up-scale and continue) / cost(train the deep models from scratch).

    `pairs`: (source cost per token, deep cost per token) per model line; the deep models from
    scratch train on `pretrain_tokens`, as the sources did."""
    staged = sum(src * pretrain_tokens + deep * dus_tokens for src, deep in pairs)
    scratch = sum(deep * pretrain_tokens for _, deep in pairs)
    return 1.0 - staged / scratch


def dus_share(pretrain_tokens: float, dus_tokens: float) -> float:
    return dus_tokens / pretrain_tokens


def paper_accounting(flops_of: Callable[[ModelShape], float] | None = None) -> dict:
    """The paper's two figures from its sizes and tokens (6·N), and the Essence line (8B -> 9.8B)
    through the project's FLOP formula on the inferred presets (TR does not publish 26.8B's shape)."""
    flops_of = flops_of or (lambda shape: shape.flops_per_token(PAPER_SEQ_LENGTH))
    pairs_6n = [(six_n(a), six_n(b)) for a, b in PAPER_PAIRS]
    src, deep = get_preset("kanana-8b"), get_preset("kanana-essence-9.8b")
    essence_formula = [(flops_of(src), flops_of(deep))]
    essence_6n = [(six_n(src.parameters), six_n(deep.parameters))]
    return {
        "saving_6n_paper_sizes": dus_saving(pairs_6n, PAPER_PRETRAIN_TOKENS, PAPER_DUS_TOKENS),
        "share": dus_share(PAPER_PRETRAIN_TOKENS, PAPER_DUS_TOKENS),
        "essence_saving_6n_presets": dus_saving(essence_6n, PAPER_PRETRAIN_TOKENS, PAPER_DUS_TOKENS),
        "essence_saving_flop_formula": dus_saving(essence_formula, PAPER_PRETRAIN_TOKENS, PAPER_DUS_TOKENS),
        "essence_flops_per_token": {"kanana-8b": flops_of(src), "kanana-essence-9.8b": flops_of(deep)},
        "essence_parameters": {"kanana-8b": src.parameters, "kanana-essence-9.8b": deep.parameters},
    }


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One sub-run's share of an arm's training compute."""

    run: str
    tokens: int
    flops_per_token: float  # training (forward + backward) of the trained model
    teacher_flops_per_token: float = 0.0  # a frozen teacher's forward (a third of its training FLOPs)

    @property
    def flops(self) -> float:
        return self.tokens * (self.flops_per_token + self.teacher_flops_per_token)


def ledger_entry(run: str, tokens: int, shape: ModelShape, seq_length: int,
                 teacher: ModelShape | None = None) -> LedgerEntry:
    teacher_fpt = teacher.flops_per_token(seq_length) / 3 if teacher is not None else 0.0
    return LedgerEntry(run, tokens, float(shape.flops_per_token(seq_length)), teacher_fpt)


def total_flops(entries: Sequence[LedgerEntry]) -> float:
    return sum(e.flops for e in entries)
