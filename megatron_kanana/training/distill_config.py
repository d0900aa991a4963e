"""The distill section: logit distillation from a frozen teacher, as a mode of `kanana train`.

    distill:
      teacher: runs/kanana_8b_stage2           # checkpoint dir, iter_* dir or run dir
      temperature: 1.0
      kl_weight: 1.0                           # Kanana: KL on the final logits is the only loss
      lm_loss_weight: 0.0

Kanana (TR §2.3.3) distils every pruned model from the 8B with KL divergence on
the final logits alone (no LM loss, no hidden-state loss), a cosine schedule,
LR 1.2e-4 and 100 warm-up steps (those three are `schedule` values; see
examples/distill/). The temperature is not published; 1.0 is the neutral choice.

The teacher runs in the same job, with the student's TP/PP layout, frozen. Its
shape comes from its checkpoint's kanana.json unless `teacher_model` gives one
(`{preset: NAME, <field>: override}`, or bare overrides on top of the
checkpoint's shape). It must share the student's vocabulary.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Optional

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.models.presets import get_preset
from megatron_kanana.models.shape import ModelShape


@dataclasses.dataclass(frozen=True)
class DistillConfig(Section):
    teacher: str = field(metadata={
        "path": True, "help": "Teacher checkpoint: a checkpoint dir, an iter_* dir or a run dir."})
    teacher_model: Optional[dict] = field(default=None, metadata={
        "help": "Teacher shape {preset: NAME, <field>: override}; default: the shape in its kanana.json."})
    temperature: float = field(default=1.0, metadata={
        "help": "Softmax temperature T of both models' logits; the KL is scaled by T² (Hinton et al.)."})
    kl_weight: float = field(default=1.0, metadata={"help": "Weight of KL(teacher ‖ student) (Kanana: 1.0)."})
    lm_loss_weight: float = field(default=0.0, metadata={
        "help": "Weight of the student's own LM loss (+ z-loss) (Kanana: 0.0, KL alone)."})

    def validate(self) -> None:
        if not self.teacher:
            raise ConfigError("teacher: a teacher checkpoint path is required")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.kl_weight < 0 or self.lm_loss_weight < 0:
            raise ConfigError("kl_weight and lm_loss_weight must be >= 0")
        if self.kl_weight == 0 and self.lm_loss_weight == 0:
            raise ConfigError("kl_weight and lm_loss_weight are both 0: nothing to train on")

    def teacher_checkpoint(self):
        """The teacher's checkpoint directory (follows `latest`)."""
        from megatron_kanana.checkpointing.layout import CheckpointError, resolve

        try:
            return resolve(self.teacher)
        except CheckpointError as e:
            raise ConfigError(f"distill.teacher: {e}") from None

    def teacher_shape(self) -> ModelShape:
        """The teacher's model shape: `teacher_model`, else its checkpoint's kanana.json."""
        overrides: dict[str, Any] = dict(self.teacher_model or {})
        if "preset" in overrides:
            base = get_preset(overrides.pop("preset")).to_dict()
        else:
            base = _checkpoint_shape(self.teacher_checkpoint())
        base.update(overrides)
        return ModelShape.from_dict(base, prefix="distill.teacher_model")


def _checkpoint_shape(directory) -> dict:
    from megatron_kanana.checkpointing.layout import read_meta

    model = read_meta(directory).get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"distill.teacher: {directory}/kanana.json has no model shape; "
                          f"give distill.teacher_model")
    return dict(model)


def check_compatible(student: ModelShape, teacher: ModelShape) -> None:
    """Student and teacher must share the tokenizer: the KL compares the two
    distributions over the same vocabulary, entry by entry."""
    if student.vocab_size != teacher.vocab_size:
        raise ConfigError(f"distill: the teacher's vocab_size ({teacher.vocab_size}) differs from the student's "
                          f"model.vocab_size ({student.vocab_size}); distillation needs one shared tokenizer")
