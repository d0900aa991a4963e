"""RoPE scaling (long context), under Hugging Face's names and with its semantics.

    model:
      rotary_base: 500000
      max_position_embeddings: 131072
      rope_scaling: {rope_type: yarn, factor: 4.4, original_max_position_embeddings: 32768,
                     beta_fast: 64, beta_slow: 2}      # Kanana-1.5's published 128K setting

`rope_scaling: null` (the default) is plain RoPE. The variants are those of
transformers' `modeling_rope_utils` (`_compute_{linear_scaling,llama3,yarn}_parameters`):
- linear: every frequency divided by `factor` (position interpolation);
- llama3: Llama-3.1's wavelength-banded division by `factor` between
  `original_max_position_embeddings / low_freq_factor` and `/ high_freq_factor`;
- yarn: NTK-by-parts ramp between `beta_fast` and `beta_slow` rotations of the
  original window, and cos/sin multiplied by an attention factor (explicit
  `attention_factor`, else from `factor`, `mscale`, `mscale_all_dim` exactly as HF infers it).
A base (theta) change alone is `rotary_base`. The HF dict (`to_hf` / `from_hf`)
holds the set keys only, as HF writes them; `type` is read as an alias of `rope_type`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, Literal, Mapping, Optional

from megatron_kanana.config.section import ConfigError, Section

ROPE_TYPES = ("linear", "llama3", "yarn")
# the keys each variant reads (besides rope_type); anything else set is a mistake, not ignored
_KEYS = {
    "linear": {"factor"},
    "llama3": {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"},
    "yarn": {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor",
             "mscale", "mscale_all_dim", "truncate"},
}
_REQUIRED = {"linear": {"factor"}, "llama3": _KEYS["llama3"],
             "yarn": {"factor", "original_max_position_embeddings"}}


@dataclasses.dataclass(frozen=True)
class RopeScaling(Section):
    rope_type: Literal["linear", "llama3", "yarn"] = field(metadata={
        "help": "HF's rope_type: linear, llama3 (Llama-3.1) or yarn."})
    factor: Optional[float] = field(default=None, metadata={"help": "Context extension factor."})
    original_max_position_embeddings: Optional[int] = field(default=None, metadata={
        "help": "The window the model was trained at before the extension (llama3, yarn)."})
    low_freq_factor: Optional[float] = field(default=None, metadata={"help": "llama3: low-frequency band edge."})
    high_freq_factor: Optional[float] = field(default=None, metadata={"help": "llama3: high-frequency band edge."})
    beta_fast: Optional[float] = field(default=None, metadata={"help": "yarn: extrapolation edge (HF default 32)."})
    beta_slow: Optional[float] = field(default=None, metadata={"help": "yarn: interpolation edge (HF default 1)."})
    attention_factor: Optional[float] = field(default=None, metadata={
        "help": "yarn: cos/sin multiplier; None = inferred from factor (and mscale, mscale_all_dim) as HF does."})
    mscale: Optional[float] = field(default=None, metadata={"help": "yarn: numerator mscale (DeepSeek style)."})
    mscale_all_dim: Optional[float] = field(default=None, metadata={"help": "yarn: denominator mscale."})
    truncate: Optional[bool] = field(default=None, metadata={
        "help": "yarn: round the correction range to whole dims (HF default true)."})

    def validate(self) -> None:
        set_keys = {k for k, v in self.hf_items().items() if k != "rope_type"}
        stray = sorted(set_keys - _KEYS[self.rope_type])
        if stray:
            raise ConfigError(f"{stray[0]}: not a parameter of rope_type {self.rope_type!r} "
                              f"(it reads {', '.join(sorted(_KEYS[self.rope_type]))})")
        missing = sorted(_REQUIRED[self.rope_type] - set_keys)
        if missing:
            raise ConfigError(f"{missing[0]}: rope_type {self.rope_type!r} needs it")
        if self.rope_type == "yarn" and self.factor <= 1:
            raise ConfigError(f"factor: YaRN extends the context, so it must be > 1; got {self.factor}")
        if self.factor < 1:
            raise ConfigError(f"factor: must be >= 1 (it divides frequencies to lengthen the context); "
                              f"got {self.factor}")
        if self.original_max_position_embeddings is not None and self.original_max_position_embeddings < 1:
            raise ConfigError(f"original_max_position_embeddings: must be positive, got "
                              f"{self.original_max_position_embeddings}")
        if self.attention_factor is not None and self.attention_factor <= 0:
            raise ConfigError(f"attention_factor: must be positive (it multiplies cos and sin), got "
                              f"{self.attention_factor}")
        if self.rope_type == "llama3" and not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ConfigError(f"high_freq_factor: needs 0 < low_freq_factor < high_freq_factor, got "
                              f"{self.low_freq_factor} and {self.high_freq_factor}")
        if self.rope_type == "yarn" and not 0 < self.yarn_beta_slow < self.yarn_beta_fast:
            raise ConfigError(f"beta_fast: needs 0 < beta_slow < beta_fast, got {self.yarn_beta_slow} "
                              f"and {self.yarn_beta_fast}")

    # -- HF's defaults and inferences, in one place --
    @property
    def yarn_beta_fast(self) -> float:
        return self.beta_fast or 32.0  # HF: `get("beta_fast") or 32`

    @property
    def yarn_beta_slow(self) -> float:
        return self.beta_slow or 1.0

    @property
    def yarn_truncate(self) -> bool:
        return True if self.truncate is None else self.truncate

    @property
    def yarn_attention_factor(self) -> float:
        """HF's `_compute_yarn_parameters` attention factor (the multiplier of cos and sin)."""
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:
            return float(yarn_mscale(self.factor, self.mscale) / yarn_mscale(self.factor, self.mscale_all_dim))
        return yarn_mscale(self.factor)

    # -- the HF dict --
    def hf_items(self) -> dict[str, Any]:
        """The set keys only, in field order (HF's `rope_scaling` as a config.json holds it)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """HF's (and megatron-core's) `get_mscale`: 0.1 * mscale * ln(scale) + 1, 1 below scale 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def from_hf(config: Mapping[str, Any]) -> tuple[Optional[RopeScaling], Optional[float]]:
    """An HF config.json -> (RopeScaling or None for plain RoPE, rope_theta or None if absent).

    transformers >= 5 writes `rope_parameters` (theta inside), 4.x `rope_scaling` + `rope_theta`;
    either, with `type` as the old spelling of `rope_type`."""
    params: dict[str, Any] = {}
    for spelling in ("rope_parameters", "rope_scaling"):  # 4.x's rope_scaling wins where both are set
        part = dict(config.get(spelling) or {})
        if "type" in part:
            part.setdefault("rope_type", part.pop("type"))
            part.pop("type", None)
        params.update(part)
    theta = params.pop("rope_theta", config.get("rope_theta"))
    if params.pop("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError("partial_rotary_factor: only full-dimension RoPE converts (Llama applies it to every dim)")
    rope_type = params.get("rope_type", "default")
    if rope_type == "default" and set(params) <= {"rope_type"}:
        return None, theta
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"rope_scaling.rope_type: {rope_type!r} does not convert; known: "
                          f"default, {', '.join(ROPE_TYPES)}")
    return RopeScaling.from_dict(params, prefix="rope_scaling"), theta


def to_hf(scaling: Optional[RopeScaling], rope_theta: float) -> dict[str, Any]:
    """The config.json fields for this RoPE: `rope_theta`, `rope_scaling` (4.x; absent for plain RoPE)
    and `rope_parameters` (5.x)."""
    if scaling is None:
        return {"rope_theta": rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta}}
    items = scaling.hf_items()
    return {"rope_theta": rope_theta, "rope_scaling": dict(items),
            "rope_parameters": {**items, "rope_theta": rope_theta}}


# -- context extension: a fresh run from a shorter-context checkpoint, or a mixture stage --
POSITION_FIELDS = frozenset({"rotary_base", "max_position_embeddings", "rope_scaling"})


def is_context_extension(saved: Mapping[str, Any], model: Mapping[str, Any]) -> bool:
    """True when the two model dicts (kanana.json's, the config's) differ in position fields only:
    no tensor changes shape, so the weights load and only the rotary tables differ."""
    diff = {k for k in set(saved) | set(model) if saved.get(k) != model.get(k)}
    return bool(diff) and diff <= POSITION_FIELDS


def check_context_extension(saved: Mapping[str, Any], model: Mapping[str, Any], where: str,
                            key: str = "model") -> None:
    """The scaled window must start where the checkpoint's (or the previous stage's) ended, and never
    shrink it. `key`: where the new fields were set (the model section, or a mixture stage)."""
    scaling = model.get("rope_scaling") or {}
    original, trained = scaling.get("original_max_position_embeddings"), saved.get("max_position_embeddings")
    if original is not None and trained is not None and original != trained:
        raise ConfigError(f"{key}.rope_scaling.original_max_position_embeddings ({original}) is not the window "
                          f"of {where}, which says max_position_embeddings {trained}")
    if trained is not None and model.get("max_position_embeddings", trained) < trained:
        raise ConfigError(f"{key}.max_position_embeddings ({model['max_position_embeddings']}) is shorter than "
                          f"the window of {where} ({trained}): a context change only extends")
