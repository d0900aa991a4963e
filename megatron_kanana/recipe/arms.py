"""The recipe's sub-runs: which `kanana` commands reproduce each claim, with what configs.

Every sub-run is an ordinary command (`kanana train`, `upscale-depth`, `prune-score`,
`prune`, `eval`) with its own output under the recipe's folder; claims share sub-runs (the stage-1
model is the base of the staged, DUS and pruning claims). The miniature model is untied,
like Kanana 8B, so a prune step can tie by averaging (TR Table 17).

Seeds: the stage-1 model (and every model trained from scratch there) uses the recipe's seed S;
every run that continues from it uses S + 1, so a continued run draws fresh samples rather
than replaying stage 1's (megatron's sample order depends on blend and seed only), and the arms
of a comparison all validate on the same held-out samples.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from megatron_kanana.evaluation.tasks import LOCAL_TASKS
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import width

CLAIMS = ("staged", "dus", "prune", "ablations", "tying", "accounting")

# The miniature: 4 layers, 8 query heads in 2 KV groups (so GQA alignment matters), untied
BASE_SHAPE = ModelShape(hidden_size=128, num_layers=4, num_attention_heads=8, num_query_groups=2, kv_channels=16,
                        ffn_hidden_size=384, vocab_size=2048, tie_embeddings=False, max_position_embeddings=256)
VOCAB_SIZE = 2048
# About half the parameters, as each Kanana prune step (8B -> 4.5B -> 2.1B ...)
PRUNE_TARGETS = {"hidden": 96, "ffn": 192, "heads": 4}
# SOLAR's map for n layers: drop the last n/4 of one copy and the first n/4 of the other (32 -> 48: 0-23,8-31)
DUS_LAYERS = "0-2,1-3"
DUS_NUM_LAYERS = 6
SEQ_LENGTH = 128
GLOBAL_BATCH = 8
TOKENS_PER_STEP = SEQ_LENGTH * GLOBAL_BATCH

# Stage 1 leans on English and the reference pages; stage 2 (the high-quality split) on the
# guides and Korean, as Kanana's stage 2 shifts to Korean web, academic and code (TR Fig. 2).
# Every stage lists all four sources, so each category's held-out set exists in every run.
STAGE1_WEIGHTS = {"en_reference": 0.45, "en_guide": 0.15, "ko_reference": 0.25, "ko_guide": 0.15}
QUALITY_WEIGHTS = {"en_reference": 0.1, "en_guide": 0.35, "ko_reference": 0.1, "ko_guide": 0.45}
QUALITY_SPLIT = ("en_guide", "ko_guide")

# ablation name -> (prune-score flags, prune flags); "kanana" is the paper's rules
PRUNE_VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kanana": ((), ()),
    "no_layer_aggregation": (("--layer-aggregation", "per-layer"), ()),
    "no_gqa_alignment": ((), ("--no-gqa-alignment",)),
    "gate_up_mean": (("--ffn-state", "gate-up-mean"), ()),
    "batch_mean": (("--batch-aggregation", "mean"), ()),
    "sequence_l2": (("--sequence-aggregation", "l2"), ()),
    "tied": ((), ("--tie-embeddings",)),
}
ABLATIONS = ("no_layer_aggregation", "no_gqa_alignment", "gate_up_mean", "batch_mean", "sequence_l2")
# The miniature benchmarks (local_tasks/kanana_help_*: cloze and next sentence per language, on
# pages no sub-run trains on; tools/build_corpus_tasks.py), scored for the staged claim's models
BENCHMARKS = "kanana_help"
BENCHMARKED = ("stage1", "stage2_quality", "stage2_continue")


@dataclasses.dataclass(frozen=True)
class Scale:
    """Steps of each kind of sub-run (one step = GLOBAL_BATCH × SEQ_LENGTH tokens)."""

    stage1_steps: int
    stage2_steps: int
    continue_steps: int      # DUS: continued training of the up-scaled and of the source model
    distill_steps: int       # each pruned student, and the same shape from scratch
    calibration_batches: int
    eval_interval: int
    save_interval: int
    eval_samples: int


FULL = Scale(stage1_steps=600, stage2_steps=200, continue_steps=200, distill_steps=200, calibration_batches=16,
             eval_interval=50, save_interval=100, eval_samples=32)
QUICK = Scale(stage1_steps=120, stage2_steps=40, continue_steps=40, distill_steps=40, calibration_batches=4,
              eval_interval=20, save_interval=40, eval_samples=16)


def student_shape(tied: bool = False) -> ModelShape:
    targets = width.Targets(**PRUNE_TARGETS, tie_embeddings=tied)
    return width.target_shape(BASE_SHAPE, targets)


def deep_shape() -> ModelShape:
    return BASE_SHAPE.replace(num_layers=DUS_NUM_LAYERS)


def equal_flops_steps(scale: Scale) -> int:
    """Steps of the deep model from scratch that cost what stage 1 + DUS + continued training cost."""
    shallow, deep = BASE_SHAPE.flops_per_token(SEQ_LENGTH), deep_shape().flops_per_token(SEQ_LENGTH)
    flops = TOKENS_PER_STEP * (scale.stage1_steps * shallow + scale.continue_steps * deep)
    return round(flops / (TOKENS_PER_STEP * deep))


@dataclasses.dataclass(frozen=True)
class SubRun:
    """One `kanana` command: `argv` after `kanana`, writing `output`; `config` (a training config)
    is written to configs/NAME.yaml first and its path is argv's {config}."""

    name: str
    kind: str  # train | upscale-depth | prune-score | prune | eval
    argv: tuple[str, ...]
    output: Path
    config: Optional[dict] = None
    needs: tuple[str, ...] = ()
    shape: Optional[ModelShape] = None          # the trained model (train runs)
    teacher: Optional[ModelShape] = None        # a distillation teacher


class Layout:
    """Paths inside the recipe's output folder."""

    def __init__(self, root: Path):
        self.root = root
        self.tokenizer = root / "tokenizer"
        self.data = root / "data"
        self.mixtures = root / "mixtures"
        self.configs = root / "configs"
        self.logs = root / "logs"
        self.plots = root / "plots"
        self.benchmarks = root / "benchmarks"

    def run(self, name: str) -> Path:
        return self.root / "runs" / name

    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / name

    def scores(self, name: str) -> Path:
        return self.root / "scores" / f"{name}.safetensors"

    def benchmark(self, name: str) -> Path:
        return self.benchmarks / f"{name}.json"

    def mixture(self, name: str) -> Path:
        return self.mixtures / f"{name}.yaml"


def mixtures(layout: Layout, scale: Scale) -> dict[str, dict]:
    """The mixture files: stage 1 then either stage 2, DUS's continuation, distillation's data
    (each run's steps come from data.stage_steps; the token counts here document them)."""
    def stage(name: str, steps: int, weights: dict[str, float]) -> dict:
        return {"name": name, "tokens": steps * TOKENS_PER_STEP,
                "sources": [{"path": p, "category": p, "weight": w} for p, w in weights.items()]}
    root = str(layout.data)
    s1, s2, longest = scale.stage1_steps, scale.stage2_steps, max(scale.continue_steps, equal_flops_steps(scale))
    return {
        "staged_quality": {"data_root": root, "stages": [stage("stage1", s1, STAGE1_WEIGHTS),
                                                         stage("stage2", s2, QUALITY_WEIGHTS)]},
        "staged_continue": {"data_root": root, "stages": [stage("stage1", s1, STAGE1_WEIGHTS),
                                                          stage("stage2", s2, STAGE1_WEIGHTS)]},
        "continue": {"data_root": root, "stages": [stage("continue", longest, STAGE1_WEIGHTS)]},
        "distill": {"data_root": root, "stages": [stage("distill", scale.distill_steps, QUALITY_WEIGHTS)]},
    }


def _train_config(layout: Layout, name: str, scale: Scale, seed: int, *, shape: ModelShape, mixture: str,
                  stage_steps: dict[str, int], stages: Optional[list[str]] = None, lr: float = 3.0e-3,
                  decay: str = "deepseek", checkpoint: Optional[dict] = None, distill: Optional[dict] = None) -> dict:
    config = {
        "run": {"output_dir": str(layout.run(name)), "seed": seed},
        "model": shape.to_dict(),
        "data": {"mixture": str(layout.mixture(mixture)), "tokenizer": str(layout.tokenizer),
                 "seq_length": SEQ_LENGTH, "micro_batch_size": GLOBAL_BATCH, "global_batch_size": GLOBAL_BATCH,
                 "split": [95, 5, 0], "eval_samples": scale.eval_samples, "eval_interval": scale.eval_interval,
                 "stage_steps": stage_steps, "stages": stages, "stage_schedule": "continue"},
        # Kanana's optimiser: independent weight decay 1e-4, z-loss 5e-6; deepseek = its multi-step LR
        # (peak, then × 0.316 at 80% and 90% of the steps); distillation: cosine (TR §2.3.3)
        "schedule": {"lr_decay_style": decay, "lr": lr, "min_lr": lr / 10 if decay == "cosine" else 0.0,
                     "warmup_steps": 20 if decay == "deepseek" else 10},
        "optim": {"independent_weight_decay": 1.0e-4, "z_loss_coef": 5.0e-6, "clip_grad": 1.0},
        "checkpoint": {"save_interval": scale.save_interval, "keep_last": 1, **(checkpoint or {})},
        "logging": {"log_interval": 10, "tensorboard": False},
    }
    if distill:
        config["distill"] = distill
    return config


def _train(layout: Layout, name: str, config: dict, shape: ModelShape, needs: tuple[str, ...] = (),
           teacher: Optional[ModelShape] = None) -> SubRun:
    return SubRun(name, "train", ("train", "{config}"), layout.run(name), config, needs, shape, teacher)


def _pretraining(layout: Layout, scale: Scale, seed: int) -> list[SubRun]:
    s1, s2 = scale.stage1_steps, scale.stage2_steps
    base = _train_config(layout, "stage1", scale, seed, shape=BASE_SHAPE, mixture="staged_quality",
                         stage_steps={"stage1": s1, "stage2": s2}, stages=["stage1"])
    # stage 2 continues stage 1's schedule and optimizer (same stage-1 definition in both mixtures)
    arms = [_train(layout, "stage1", base, BASE_SHAPE)]
    for arm, mixture in (("stage2_quality", "staged_quality"), ("stage2_continue", "staged_continue")):
        config = _train_config(layout, arm, scale, seed + 1, shape=BASE_SHAPE, mixture=mixture,
                               stage_steps={"stage1": s1, "stage2": s2}, stages=["stage2"],
                               checkpoint={"load": str(layout.run("stage1"))})
        arms.append(_train(layout, arm, config, BASE_SHAPE, needs=("stage1",)))
    return arms


def _benchmarks(layout: Layout) -> list[SubRun]:
    """`kanana eval` of each staged model on the miniature benchmarks (log-likelihood, TP=1)."""
    return [SubRun(f"bench_{arm}", "eval", ("eval", str(layout.run(arm)), "--tasks", BENCHMARKS, "--include-path",
                                           str(LOCAL_TASKS), "--output", str(layout.benchmark(arm))),
                   layout.benchmark(arm), needs=(arm,)) for arm in BENCHMARKED]


def _depth_upscaling(layout: Layout, scale: Scale, seed: int) -> list[SubRun]:
    upscaled = layout.checkpoint("dus_upscaled")
    runs = [SubRun("dus_upscaled", "upscale-depth", ("upscale-depth", "--input", str(layout.run("stage1")),
                                                     "--output", str(upscaled), "--layers", DUS_LAYERS),
                   upscaled, needs=("stage1",))]
    model_only = {"load_optimizer": False, "reset_progress": True}
    for arm, shape, load in (("dus_continued", deep_shape(), upscaled),
                             ("shallow_continued", BASE_SHAPE, layout.run("stage1"))):
        config = _train_config(layout, arm, scale, seed + 1, shape=shape, mixture="continue",
                               stage_steps={"continue": scale.continue_steps},
                               checkpoint={"load": str(load), **model_only})
        runs.append(_train(layout, arm, config, shape, needs=("dus_upscaled" if load == upscaled else "stage1",)))
    config = _train_config(layout, "deep_scratch", scale, seed + 1, shape=deep_shape(), mixture="continue",
                           stage_steps={"continue": equal_flops_steps(scale)})
    runs.append(_train(layout, "deep_scratch", config, deep_shape()))
    return runs


def _pruning(layout: Layout, scale: Scale, seed: int, variants: tuple[str, ...]) -> list[SubRun]:
    teacher = layout.run("stage2_quality")
    runs: list[SubRun] = []
    scored: set[tuple[str, ...]] = set()
    for variant in variants:
        score_flags, prune_flags = PRUNE_VARIANTS[variant]
        score_name = "score_" + ("kanana" if not score_flags else variant)
        if score_flags not in scored:  # calibration on the teacher's stage-2 (high-quality) data
            scored.add(score_flags)
            config = _train_config(layout, score_name, scale, seed + 1, shape=BASE_SHAPE, mixture="staged_quality",
                                   stage_steps={"stage1": scale.stage1_steps, "stage2": scale.stage2_steps},
                                   stages=["stage2"], checkpoint={"load": str(teacher)})
            argv = ("prune-score", "{config}", "--batches", str(scale.calibration_batches),
                    "--output", str(layout.scores(score_name)), *score_flags)
            runs.append(SubRun(score_name, "prune-score", argv, layout.scores(score_name), config,
                               ("stage2_quality",), BASE_SHAPE))
        pruned = layout.checkpoint(f"pruned_{variant}")
        targets = [f"--{k}={v}" for k, v in PRUNE_TARGETS.items()]
        runs.append(SubRun(f"pruned_{variant}", "prune", ("prune", "--input", str(teacher), "--scores",
                                                         str(layout.scores(score_name)), "--output", str(pruned),
                                                         *targets, *prune_flags), pruned,
                           needs=(score_name,)))
        shape = student_shape(tied=variant == "tied")
        name = f"distill_{variant}"
        # KL on the final logits alone (Kanana), from the pruned weights
        config = _train_config(layout, name, scale, seed + 1, shape=shape, mixture="distill", lr=1.0e-3,
                               decay="cosine", stage_steps={"distill": scale.distill_steps},
                               checkpoint={"load": str(pruned), "load_optimizer": False, "reset_progress": True},
                               distill={"teacher": str(teacher)})
        runs.append(_train(layout, name, config, shape, needs=(f"pruned_{variant}",), teacher=BASE_SHAPE))
    return runs


def _student_scratch(layout: Layout, scale: Scale, seed: int) -> SubRun:
    """The kanana student's shape from a fresh initialisation, LM loss, pre-training's schedule."""
    config = _train_config(layout, "student_scratch", scale, seed + 1, shape=student_shape(), mixture="distill",
                           stage_steps={"distill": scale.distill_steps})
    return _train(layout, "student_scratch", config, student_shape())


def plan(layout: Layout, scale: Scale, seed: int, claims: tuple[str, ...]) -> list[SubRun]:
    """The sub-runs the chosen claims need, in an order that runs every input before its user."""
    variants = ["kanana"] if {"prune", "ablations", "tying"} & set(claims) else []
    variants += list(ABLATIONS) if "ablations" in claims else []
    variants += ["tied"] if "tying" in claims else []
    runs: list[SubRun] = []
    if {"staged", "dus", "prune", "ablations", "tying"} & set(claims):
        runs += _pretraining(layout, scale, seed)
    if "staged" in claims:
        runs += _benchmarks(layout)
    if "dus" in claims:
        runs += _depth_upscaling(layout, scale, seed)
    runs += _pruning(layout, scale, seed, tuple(variants))
    if "prune" in claims:
        runs.append(_student_scratch(layout, scale, seed))
    unused = set() if "staged" in claims else {"stage2_continue"} | (set() if variants else {"stage2_quality"})
    return [r for r in runs if r.name not in unused]
