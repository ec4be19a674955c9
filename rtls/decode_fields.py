"""Typed access to JSON gateway messages: every defect is one PayloadError with a reason.

Unknown keys are ignored (firmwares add fields); a key we read must have the expected type.
"""

from __future__ import annotations

import json
import math
from typing import Final

from rtls.decode_result import RSSI_MAX, RSSI_MIN
from rtls.directory import address_key
from rtls.errors import PayloadError

MAX_STRING: Final = 1024  # longest string we read (manufacturerdata hex of an extended adv)
MAX_COUNT: Final = 1 << 53  # integers above this are not exact in a float64 anyway

Json = dict[str, object]


def parse_object(payload: bytes) -> Json:
    """Strict UTF-8 JSON whose top level is an object; ``bad_json`` / ``bad_type`` otherwise.

    ``NaN`` and ``Infinity`` literals (which ArduinoJson can write) parse, to be rejected by
    the field that holds them.
    """
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PayloadError(f"payload is not UTF-8 JSON: {exc}", reason="bad_json") from exc
    if not isinstance(obj, dict):
        raise PayloadError(
            f"payload is a JSON {type(obj).__name__}, expected an object", reason="bad_type"
        )
    return obj


def parse_word(payload: bytes, allowed: tuple[str, ...]) -> str:
    """A plain-text payload such as ``online``; surrounding whitespace is ignored."""
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("status payload is not ASCII", reason="bad_state") from exc
    if text not in allowed:
        shown = text[:40]
        raise PayloadError(f"status {shown!r} is not one of {allowed}", reason="bad_state")
    return text


def _missing(key: str) -> PayloadError:
    return PayloadError(f"field {key!r} is missing", reason="missing_field")


def get_str(obj: Json, key: str, *, required: bool = False) -> str | None:
    """A string field of at most MAX_STRING characters."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return None
    if not isinstance(value, str):
        raise PayloadError(
            f"field {key!r} is a {type(value).__name__}, expected a string", reason="bad_type"
        )
    if len(value) > MAX_STRING:
        raise PayloadError(f"field {key!r} is longer than {MAX_STRING}", reason="bad_value")
    return value


def get_number(obj: Json, key: str, *, required: bool = False) -> float | None:
    """A JSON number (int or float, not bool); may be NaN/inf, the caller checks the range."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(
            f"field {key!r} is a {type(value).__name__}, expected a number", reason="bad_type"
        )
    try:
        return float(value)
    except OverflowError as exc:  # an int beyond float range
        raise PayloadError(f"field {key!r} is out of range", reason="bad_value") from exc


def get_rssi(obj: Json, key: str = "rssi", *, required: bool = True) -> float | None:
    """An RSSI in dBm, finite and within -127..20 (``bad_rssi`` otherwise)."""
    value = get_number(obj, key, required=required)
    if value is None:
        return None
    if not RSSI_MIN <= value <= RSSI_MAX:  # also false for NaN
        raise PayloadError(
            f"{key} {value!r} is not a finite RSSI in {RSSI_MIN:g}..{RSSI_MAX:g} dBm",
            reason="bad_rssi",
        )
    return value


def get_time(obj: Json, key: str = "t", *, required: bool = False) -> float | None:
    """A Unix time in seconds, finite and non-negative (``bad_time`` otherwise)."""
    value = get_number(obj, key, required=required)
    if value is None:
        return None
    if not (math.isfinite(value) and value >= 0.0):
        raise PayloadError(f"{key} {value!r} is not a finite Unix time", reason="bad_time")
    return value


def get_count(obj: Json, key: str, *, required: bool = False) -> int | None:
    """A non-negative integer (a float with an integral value is accepted)."""
    value = get_number(obj, key, required=required)
    if value is None:
        return None
    if not (math.isfinite(value) and value == int(value) and 0 <= value <= MAX_COUNT):
        raise PayloadError(
            f"field {key!r} = {value!r} is not a non-negative integer", reason="bad_value"
        )
    return int(value)


def get_seconds(obj: Json, key: str) -> float | None:
    """An optional non-negative finite duration."""
    value = get_number(obj, key)
    if value is None:
        return None
    if not (math.isfinite(value) and value >= 0.0):
        raise PayloadError(f"field {key!r} = {value!r} is not a duration", reason="bad_value")
    return value


def get_address(obj: Json, key: str) -> int:
    """A required MAC address field (``C0:DE:00:01:23:45`` or ``c0de00012345``) as an int."""
    text = get_str(obj, key, required=True)
    assert text is not None
    return address_key(text)


def check_version(obj: Json, version: int = 1) -> None:
    """Our own JSON messages carry ``"v": 1``; another value is ``bad_version``."""
    v = obj.get("v")
    if v is None:
        raise _missing("v")
    if isinstance(v, bool) or v != version:
        raise PayloadError(f"schema version {v!r} is not {version}", reason="bad_version")


def check_same(obj: Json, key: str, expected: str, reason: str) -> None:
    """If ``key`` is present it must equal ``expected`` (the id in the topic)."""
    value = get_str(obj, key)
    if value is not None and value != expected:
        raise PayloadError(
            f"{key} {value!r} in the payload differs from {expected!r} in the topic",
            reason=reason,
        )
