"""Typed configs that refuse unknown keys, with presets and dotted command-line overrides.

Every stage of vlsafe is configured by one frozen dataclass. Users reach them through
`build(ConfigClass, preset_dict, ["a.b=3", ...])`; a misspelt key fails at once with the
valid keys and the closest match, instead of being silently ignored deep inside a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, TypeVar

__all__ = ["ConfigError", "from_dict", "to_dict", "apply_overrides", "parse_override", "closest"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A user-supplied config value or key is wrong; the message is one line and says what fits."""


def closest(name: str, valid: typing.Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _scalar(value: Any, kind: type, where: str) -> Any:
    """bool / int / float / str from a value or its command-line string form."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    word = "an integer" if kind is int else "a number"
    allowed = (int, str) if kind is int else (int, float, str)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise ConfigError(f"{where}: expected {word}, got {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{where}: expected {word}, got {value!r}") from None


def _union(value: Any, args: tuple, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, where)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if errors else f"{where}: cannot use {value!r}")


def _sequence(value: Any, origin: type, args: tuple, where: str) -> Any:
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON list: items that hold commas
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not a JSON list ({err.msg}): {value!r}") from None
    elif isinstance(value, str):
        value = [v for v in value.split(",") if v != ""]
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not (origin is tuple and args
                                                                                   and args[-1] is not Ellipsis):
        value = [value]  # `--set seeds=0` is the one-element list, as `--set seeds=0,1` is a list of two
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    out = [_coerce(v, args[0] if args else Any, where) for v in value]
    return tuple(out) if origin is tuple else out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, where=where)
    if origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(annotation), where)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            hint = closest(str(value), map(str, choices))
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}{hint}")
        return value
    if origin in (tuple, list):
        return _sequence(value, origin, typing.get_args(annotation), where)
    if annotation in (bool, int, float, str):
        return _scalar(value, annotation, where)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a plain dict, checking keys and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(
                f"unknown config key {path!r}{closest(key, fields)}; valid keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{cls.__name__}: {err}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3); values are parsed as JSON where they can be, else kept as strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. traffic_density=0.2")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(cfg: T, overrides: typing.Iterable[str]) -> T:
    """A copy of `cfg` with dotted KEY=VALUE overrides applied and re-validated."""
    data = dataclasses.asdict(cfg)  # type: ignore[call-overload]
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a nested config")
            node = node[k]
        node[keys[-1]] = value
    return from_dict(type(cfg), data)
