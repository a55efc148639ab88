"""Typed parameters from TOML tables: a dataclass's fields are the keys, their annotations the types."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from scenarios.errors import ScenarioError

_SIMPLE = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _accepts(type_text: str, value: Any) -> tuple[bool, Any]:
    for alternative in (t.strip() for t in type_text.split("|")):
        if alternative in _SIMPLE:
            if isinstance(value, bool) and alternative != "bool":
                continue
            if isinstance(value, _SIMPLE[alternative]):
                return True, float(value) if alternative == "float" else value
        elif alternative.startswith("tuple[float") and isinstance(value, list) and len(value) == 2:
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                low, high = float(value[0]), float(value[1])
                if low <= high:
                    return True, (low, high)
        elif alternative.startswith("dict") and isinstance(value, dict):
            return True, dict(value)
        elif (
            alternative == "list[str]" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return True, tuple(value)
    return False, None


def build(cls: type, table: Mapping[str, Any], source: str, key: str, reserved: Iterable[str] = ()) -> Any:
    """``cls(**table)`` with every key known and every value of its field's type (ScenarioError otherwise)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    skip = set(reserved)
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name in skip:
            continue
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ScenarioError(source, f"{key}.{name}", f"unknown parameter (known: {known})")
        type_text = str(fields[name].type)
        ok, converted = _accepts(type_text, value)
        if not ok:
            raise ScenarioError(source, f"{key}.{name}", f"expected {type_text}, got {value!r}")
        values[name] = converted
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in values
    ]
    if missing:
        raise ScenarioError(source, key, f"missing {', '.join(missing)}")
    return cls(**values)


def describe_params(cls: type, skip: Iterable[str] = ()) -> str:
    """``name: type = default`` for each parameter (for listings and docs)."""
    parts = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        default = "" if f.default is dataclasses.MISSING else f" = {f.default!r}"
        parts.append(f"{f.name}: {f.type}{default}")
    return ", ".join(parts)
