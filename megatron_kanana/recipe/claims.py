"""Each claim's paper figure, the checks its miniature must pass, and the verdict: pure functions.

A check is one comparison of two measured numbers (`lhs op rhs`), stored with both numbers so
a reader (or a test) can recompute it; a claim is reproduced when every check holds, not
reproduced when none does, partly reproduced otherwise. Losses are held-out LM losses (nats
per token, lower is better); the paper's figures are benchmark averages (higher is better).
"""
from __future__ import annotations

import operator

from megatron_kanana.recipe import accounting
from megatron_kanana.recipe.arms import ABLATIONS, QUALITY_SPLIT

OPS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">": operator.gt}
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly reproduced", "not reproduced"

PAPER_ABLATIONS = {"kanana": 36.41, "no_layer_aggregation": 13.81, "no_gqa_alignment": 20.13,
                   "gate_up_mean": 36.04, "batch_mean": 35.65, "sequence_l2": 34.25}


def check(what: str, lhs: float, op: str, rhs: float) -> dict:
    return {"check": what, "lhs": lhs, "op": op, "rhs": rhs, "holds": bool(OPS[op](lhs, rhs))}


def verdict(checks: list[dict]) -> str:
    if not checks:
        raise ValueError("a claim needs at least one check")
    holding = sum(c["holds"] for c in checks)
    return REPRODUCED if holding == len(checks) else NOT_REPRODUCED if holding == 0 else PARTLY


def claim(title: str, paper: dict, measured: dict, checks: list[dict]) -> dict:
    return {"title": title, "paper": paper, "measured": measured, "checks": checks, "verdict": verdict(checks)}


def mean_loss(losses: dict[str, float]) -> float:
    return sum(losses.values()) / len(losses)


def staged(quality: dict[str, float], continued: dict[str, float]) -> dict:
    checks = [check(f"held-out {cat}: stage 2 on the quality split < the stage-1 mixture continued",
                    quality[cat], "<", continued[cat]) for cat in QUALITY_SPLIT]
    return claim("Staged pre-training (TR Table 3)",
                 {"8B KMMLU gain of stage 2": 2.79, "8B six-benchmark average gain of stage 2": 10.63},
                 {"stage2_quality": quality, "stage2_continue": continued}, checks)


def dus(final: dict[str, float], flops: dict[str, float]) -> dict:
    checks = [check("up-scaled + continued < the source model continued on the same tokens",
                    final["dus_continued"], "<", final["shallow_continued"]),
              check("up-scaled + continued < the deep model from scratch at equal training FLOPs",
                    final["dus_continued"], "<", final["deep_scratch"])]
    return claim("Depth up-scaling (TR Table 4, SOLAR's layer map)",
                 {"8B -> 9.8B average": [57.44, 60.10], "26.8B -> 32.5B average": [67.01, 69.15],
                  "compute saved vs the deep models from scratch": 0.1106},
                 {"heldout_mean_loss": final, "training_flops": flops}, checks)


def prune(distilled: float, scratch: float) -> dict:
    return claim("Pruning + distillation vs the same shape from scratch (TR Table 5)",
                 {"2.1B pruned + distilled (0.3T tokens) average": 50.06, "2.1B from scratch (3T tokens) average": 43.13},
                 {"heldout_mean_loss": {"distill_kanana": distilled, "student_scratch": scratch}},
                 [check("pruned + distilled < the same shape from scratch on the same tokens", distilled, "<", scratch)])


def ablations(kanana: float, ablated: dict[str, float]) -> dict:
    checks = [check(f"Kanana's rules < {name}", kanana, "<", ablated[name]) for name in ABLATIONS]
    return claim("Pruning ablations (TR Table 15, 1.3B at 25B tokens)", {"average score": PAPER_ABLATIONS},
                 {"heldout_mean_loss": {"kanana": kanana, **ablated}}, checks)


def tying(tied: float, untied: float) -> dict:
    return claim("Tying embeddings by averaging at a prune step (TR Table 17)",
                 {"2.1B tied average": 44.88, "2.1B untied average": 44.45},
                 {"heldout_mean_loss": {"distill_tied": tied, "distill_kanana (untied)": untied}},
                 [check("tied by averaging <= kept untied", tied, "<=", untied)])


def accounting_claim(paper: dict, ledger: dict[str, float], miniature_saving: float | None) -> dict:
    checks = [check("DUS saving from the paper's sizes and tokens (6·N·D), % to 2 places",
                    round(100 * paper["saving_6n_paper_sizes"], 2), "==", round(100 * accounting.PAPER_SAVING, 2)),
              check("DUS share of the tokens, % to 2 places",
                    round(100 * paper["share"], 2), "==", round(100 * accounting.PAPER_SHARE, 2))]
    measured = {**paper, "miniature_flop_ledger": ledger, "miniature_dus_saving": miniature_saving}
    return claim("Compute accounting (TR §2.3.2)",
                 {"DUS saving": accounting.PAPER_SAVING, "DUS share": accounting.PAPER_SHARE}, measured, checks)
