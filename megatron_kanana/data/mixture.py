"""Stage mixtures: which datasets each pre-training stage draws from, and in what shares.

One YAML file describes every stage (examples/mixtures/kanana_3t.yaml, examples/demo/mixture.yaml):

    max_epochs: 4                 # `kanana mixture show` warns above this many repeats
    data_root: /data/tokenized    # relative dataset paths resolve against it (else the cwd)
    stages:
      - name: stage1
        tokens: 2.7T              # the stage's token budget (int, or 2.7T / 300B / 20M / 5k)
        sources:
          - {path: en_web/*, category: english_web, weight: 67.8}
          - {path: ko_web,   category: korean_web,  tokens: 259.2B}

A stage may also change the sequence length and the RoPE for itself and the stages after it
(a context-extension stage; training/stages.py applies them):

      - name: long128k
        tokens: 10B
        seq_length: 131072                   # documents packed to 128K samples
        max_position_embeddings: 131072      # model position fields, as in the model section
        rope_scaling: {rope_type: yarn, factor: 4.4, original_max_position_embeddings: 32768}
        sources: [...]                       # (rotary_base too; a field left out or null: unchanged)

A source is a dataset prefix or a glob over prefixes, with a `weight` (relative) or a
`tokens` budget (absolute, within the stage), and a category. Token budgets take their
share of the stage first; weights divide the rest. `stage_blends()` gives the trainer,
per stage, the (prefix, normalised weight) pairs that megatron-core's blended dataset
takes; a glob's share is split over its datasets in proportion to their tokens.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import field
from pathlib import Path

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.models.rope import POSITION_FIELDS, RopeScaling

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_token_count(value: int | float | str, key: str) -> int:
    """2.7T -> 2_700_000_000_000; plain integers pass through."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a token count, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(value))
        if not m:
            raise ConfigError(f"{key}: {value!r} is not a token count (use e.g. 300000, 20M, 300B, 2.7T)")
        number = float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
    if number <= 0:
        raise ConfigError(f"{key}: a token count must be positive, got {value!r}")
    return int(round(number))


@dataclasses.dataclass(frozen=True)
class SourceSpec(Section):
    path: str = field(metadata={"help": "dataset prefix (PREFIX.bin/.idx) or a glob over prefixes"})
    category: str = field(metadata={"help": "what kind of data this is (english_web, korean_web, code, ...)"})
    weight: float | None = field(default=None, metadata={"help": "relative weight within the stage"})
    tokens: int | float | str | None = field(default=None, metadata={"help": "absolute token budget within the stage"})

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("path: must not be empty")
        if (self.weight is None) == (self.tokens is None):
            raise ConfigError(f"weight/tokens: give exactly one of them (source {self.path})")
        if self.weight is not None and self.weight < 0:
            raise ConfigError(f"weight: must be >= 0, got {self.weight}")
        if self.tokens is not None:
            parse_token_count(self.tokens, "tokens")

    @property
    def token_budget(self) -> int | None:
        return None if self.tokens is None else parse_token_count(self.tokens, "tokens")


@dataclasses.dataclass(frozen=True)
class StageSpec(Section):
    name: str = field(metadata={"help": "stage name (stage1, stage2, ...)"})
    sources: list[SourceSpec] = field(metadata={"help": "the datasets this stage draws from"})
    tokens: int | float | str | None = field(default=None, metadata={
        "help": "the stage's token budget; may be left out when every source gives a token budget"})
    seq_length: int | None = field(default=None, metadata={
        "help": "tokens per sample from this stage on (None: the previous stage's, at first data.seq_length)"})
    rotary_base: int | None = field(default=None, metadata={"help": "RoPE theta from this stage on"})
    max_position_embeddings: int | None = field(default=None, metadata={
        "help": "the model's window from this stage on"})
    rope_scaling: RopeScaling | None = field(default=None, metadata={
        "help": "RoPE scaling from this stage on (models/rope.py; None: unchanged)"})

    def validate(self) -> None:
        for name in ("seq_length", "rotary_base", "max_position_embeddings"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)} (stage {self.name})")
        original = self.rope_scaling and self.rope_scaling.original_max_position_embeddings
        if original and self.max_position_embeddings and original > self.max_position_embeddings:
            raise ConfigError(f"rope_scaling.original_max_position_embeddings ({original}) exceeds "
                              f"max_position_embeddings ({self.max_position_embeddings}): the original window "
                              f"must not be larger than the extended one (stage {self.name})")
        if not self.sources:
            raise ConfigError(f"sources: needs at least one source (stage {self.name})")
        budgets = [s.token_budget for s in self.sources if s.token_budget is not None]
        weights = [s.weight for s in self.sources if s.weight is not None]
        if self.tokens is None and weights:
            raise ConfigError(f"tokens: required when a source gives a weight (stage {self.name})")
        total = self.token_budget
        if sum(budgets) > total:
            raise ConfigError(f"sources: token budgets sum to {sum(budgets)}, more than the stage's "
                              f"tokens {total} (stage {self.name})")
        if not weights and sum(budgets) != total:
            raise ConfigError(f"sources: token budgets sum to {sum(budgets)}, not the stage's tokens {total} "
                              f"(stage {self.name})")
        if weights and sum(weights) <= 0:
            raise ConfigError(f"sources: weights sum to 0 (stage {self.name})")
        if weights and sum(budgets) == total:
            raise ConfigError(f"sources: token budgets use the whole stage; weighted sources would get nothing "
                              f"(stage {self.name})")

    @property
    def token_budget(self) -> int:
        if self.tokens is None:
            return sum(s.token_budget or 0 for s in self.sources)
        return parse_token_count(self.tokens, "tokens")

    def position_changes(self) -> dict:
        """The model position fields this stage sets, as model-section values."""
        return {name: (value.to_dict() if isinstance(value, RopeScaling) else value)
                for name in sorted(POSITION_FIELDS) if (value := getattr(self, name)) is not None}

    def shares(self) -> list[float]:
        """Each source's share of the stage's tokens, summing to 1."""
        total = self.token_budget
        fixed = sum(s.token_budget or 0 for s in self.sources) / total
        weight_sum = sum(s.weight or 0.0 for s in self.sources)
        return [s.token_budget / total if s.token_budget is not None else (1 - fixed) * s.weight / weight_sum
                for s in self.sources]

    def category_shares(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for source, share in zip(self.sources, self.shares()):
            out[source.category] = out.get(source.category, 0.0) + share
        return out


@dataclasses.dataclass(frozen=True)
class Mixture(Section):
    stages: list[StageSpec] = field(metadata={"help": "the pre-training stages, in order"})
    max_epochs: float = field(default=4.0, metadata={"help": "warn when a source would repeat more often"})
    data_root: str | None = field(default=None, metadata={"help": "base directory of relative dataset paths"})

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("stages: needs at least one stage")
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"stages: duplicate stage name(s) {dupes}")
        if self.max_epochs <= 0:
            raise ConfigError(f"max_epochs: must be positive, got {self.max_epochs}")

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def resolve(self, path: str, data_root: str | None = None) -> str:
        root = data_root or self.data_root
        return path if os.path.isabs(path) or root is None else os.path.join(root, path)


def load_mixture(path: str | Path) -> Mixture:
    """Parse a mixture YAML file; errors name the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such mixture file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'stages' list at the top")
    try:
        return Mixture.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def source_datasets(mixture: Mixture, source: SourceSpec, data_root: str | None = None) -> list[str]:
    """The dataset prefixes a source names (a glob may name several; none if nothing exists yet)."""
    from megatron_kanana.data.indexed_datasets import expand_prefixes, is_complete

    return [p for p in expand_prefixes(mixture.resolve(source.path, data_root)) if is_complete(p)]


def stage_blends(mixture: Mixture, data_root: str | None = None) -> dict[str, list[tuple[str, float]]]:
    """Per stage, (dataset prefix, weight) pairs with weights summing to 1, for a blended dataset.

    Every dataset must exist and hold tokens (DatasetError / EmptyDatasetError otherwise).
    """
    from megatron_kanana.data.indexed_datasets import DatasetError, check_nonempty

    blends: dict[str, list[tuple[str, float]]] = {}
    for stage in mixture.stages:
        pairs: list[tuple[str, float]] = []
        for source, share in zip(stage.sources, stage.shares()):
            if share == 0:
                continue
            prefixes = source_datasets(mixture, source, data_root)
            if not prefixes:
                where = mixture.resolve(source.path, data_root)
                halves = [where + s for s in (".bin", ".idx") if os.path.isfile(where + s)]
                found = f" (only {halves[0]} exists: an incomplete dataset)" if halves else ""
                raise DatasetError(f"stage {stage.name}: source {source.path}: no dataset found at "
                                   f"{where}(.bin/.idx){found}")
            tokens = [check_nonempty(p).num_tokens for p in prefixes]
            pairs += [(p, share * t / sum(tokens)) for p, t in zip(prefixes, tokens)]
        blends[stage.name] = pairs
    return blends
