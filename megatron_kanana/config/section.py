"""Base class for config sections: typed dataclasses built from plain dicts.

A section is a frozen dataclass whose fields carry their doc in
`field(metadata={"help": ...})`. `from_dict` refuses unknown keys and values of
the wrong type with a `ConfigError` naming the dotted key, then calls the
section's own `validate()`, so a bad config fails before any work starts.

A field marked `metadata={"path": True}` holds a path (or a list of paths): given a
`base_dir` (the config file's directory), `from_dict` makes relative ones absolute, so
a config works from any directory. `$VAR` values are left for the consumer.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, TypeVar

S = TypeVar("S", bound="Section")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type, or impossible."""


def _coerce(value: Any, type_: Any, key: str, base_dir: Optional[Path] = None) -> Any:
    origin = typing.get_origin(type_)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(type_)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, base_dir)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(type_):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(type_))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_type, *_) = typing.get_args(type_) or (Any,)
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or type_ is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if isinstance(type_, type) and issubclass(type_, Section):
        if isinstance(value, type_):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a section (mapping), got {type(value).__name__}")
        return type_.from_dict(value, prefix=key, base_dir=base_dir)
    if type_ is Any:
        return value
    if type_ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type_ is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if type_ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(type_, type) and not isinstance(value, type_):
        raise ConfigError(f"{key}: expected {type_.__name__}, got {type(value).__name__} {value!r}")
    return value


def _resolve_paths(value: Any, base_dir: Path) -> Any:
    """A relative path (or each in a list) made absolute against base_dir; anything else as is."""
    if isinstance(value, list):
        return [_resolve_paths(v, base_dir) for v in value]
    if isinstance(value, str) and value and not value.startswith("$") and not Path(value).is_absolute():
        return str((base_dir / value).resolve())
    return value


@dataclasses.dataclass(frozen=True)
class Section:
    """A config section. Subclasses are frozen dataclasses and may override `validate`."""

    def validate(self) -> None:
        """Raise ConfigError naming the key when a value is impossible."""

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any] | None, prefix: str = "",
                  base_dir: Optional[Path] = None) -> S:
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        names = set(fields)
        unknown = sorted(set(data) - names)
        if unknown:
            where = f"{prefix}." if prefix else ""
            raise ConfigError(
                f"unknown key(s) {', '.join(where + k for k in unknown)}; "
                f"valid keys of {prefix or cls.__name__}: {', '.join(sorted(names))}"
            )
        kwargs = {}
        for name, value in data.items():
            key = f"{prefix}.{name}" if prefix else name
            if base_dir is not None and fields[name].metadata.get("path"):
                value = _resolve_paths(value, base_dir)
            kwargs[name] = _coerce(value, hints[name], key, base_dir)
        try:
            return cls(**kwargs)
        except TypeError as e:  # a required field is missing
            raise ConfigError(f"{prefix or cls.__name__}: {e}") from None
        except ConfigError as e:  # from validate(): name the key with its section
            raise ConfigError(f"{prefix}.{e}" if prefix else str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
