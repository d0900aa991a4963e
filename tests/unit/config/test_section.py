import dataclasses
from dataclasses import field
from typing import Literal, Optional

import pytest

from megatron_kanana.config import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class Inner(Section):
    size: int = field(default=1, metadata={"help": "a size"})

    def validate(self):
        if self.size < 1:
            raise ConfigError(f"size must be >= 1, got {self.size}")


@dataclasses.dataclass(frozen=True)
class Outer(Section):
    name: str = field(metadata={"help": "a name"})
    rate: float = field(default=0.5, metadata={"help": "a float"})
    kind: Literal["a", "b"] = field(default="a", metadata={"help": "a choice"})
    maybe: Optional[int] = field(default=None, metadata={"help": "optional"})
    items: tuple[float, ...] = field(default=(0.8, 0.9), metadata={"help": "floats"})
    inner: Inner = field(default_factory=Inner, metadata={"help": "nested section"})


def test_round_trip_and_coercion():
    cfg = Outer.from_dict({"name": "x", "rate": 1, "items": [1, 2], "inner": {"size": 3}})
    assert cfg.rate == 1.0 and cfg.items == (1.0, 2.0) and cfg.inner.size == 3
    assert Outer.from_dict(cfg.to_dict()) == cfg
    assert set(Outer.help()) == {"name", "rate", "kind", "maybe", "items", "inner"}


@pytest.mark.parametrize("data,message", [
    ({"name": "x", "colour": 1}, r"unknown key\(s\) root.colour"),
    ({"name": "x", "rate": "fast"}, r"root.rate: expected float"),
    ({"name": "x", "kind": "c"}, r"root.kind: 'c' is not one of \['a', 'b'\]"),
    ({"name": "x", "inner": {"size": 0}}, r"root.inner.size must be >= 1, got 0"),
    ({"name": "x", "inner": {"sise": 2}}, r"unknown key\(s\) root.inner.sise"),
    ({"name": "x", "maybe": True}, r"root.maybe: expected an integer"),
    ({}, r"root: .*missing 1 required positional argument: 'name'"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict(data, prefix="root")
