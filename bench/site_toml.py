"""A site mapping (rtls.site's ``Site.from_mapping`` input) written as a TOML site file, for the
benches that start ``rtls engine --site FILE`` on a generated site."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rtls.errors import RtlsError


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text of a site mapping: scalars, tables, arrays of tables, inline tables inside
    array entries (what site files use)."""
    lines: list[str] = []
    _toml_table(lines, (), data)
    return "\n".join(lines) + "\n"


def _toml_table(lines: list[str], path: tuple[str, ...], d: Mapping[str, Any]) -> None:
    def aot(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)

    plain = {k: v for k, v in d.items() if not isinstance(v, dict) and not aot(v)}
    if path and plain:
        lines.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items()]
    for k, v in d.items():
        if isinstance(v, dict):
            _toml_table(lines, (*path, k), v)
    for k, v in d.items():
        if aot(v):
            for entry in v:
                lines.append(f"\n[[{'.'.join(_toml_key(p) for p in (*path, k))}]]")
                lines += [f"{_toml_key(ek)} = {_toml_value(ev)}" for ek, ev in entry.items()]


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML basic-string escapes
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(e)}" for k, e in v.items()) + "}"
    raise RtlsError(f"cannot write {type(v).__name__} {v!r} as TOML")
