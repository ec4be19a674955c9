"""The engine's decoders: an MQTT message (topic, payload) -> observations, telemetry, status.

Pure apart from the :class:`DecodeCounters` passed in. :func:`decode` picks the decoder by
topic and raises one :class:`~rtls.errors.PayloadError` (with a ``reason``) for any bad input;
:func:`decode_safely` never raises: it counts the reason and returns an empty result, so ingest
never stops. :data:`SUBSCRIPTIONS` lists the MQTT topic filters the engine subscribes to.
Formats: docs/gateway-formats.md; accepted input, reasons and counters: docs/decoding.md.

Messages without a gateway clock (ESPresense, OpenMQTTGateway, status words) are stamped with
``received_t``, the engine's receive time, which the caller passes (the core reads no clock).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final, NamedTuple

from rtls.decode_ble import (
    decode_espresense_device,
    decode_espresense_status,
    decode_espresense_telemetry,
    decode_omg_device,
    decode_omg_lwt,
    decode_omg_system,
)
from rtls.decode_counters import DecodeCounters, UnknownTag
from rtls.decode_native import (
    decode_door_read,
    decode_door_status,
    decode_native_batch,
    decode_native_batches,
    decode_native_health,
    decode_native_status,
)
from rtls.decode_result import (
    EMPTY,
    MAX_PAYLOAD_BYTES,
    MESSAGE_REASONS,
    READ_DTYPE,
    RECORD_REASONS,
    TELEMETRY_DTYPE,
    UNKNOWN_DTYPE,
    Decoded,
    SourceStatus,
)
from rtls.directory import Directory
from rtls.errors import PayloadError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MESSAGE_REASONS",
    "READ_DTYPE",
    "RECORD_REASONS",
    "SUBSCRIPTIONS",
    "TELEMETRY_DTYPE",
    "UNKNOWN_DTYPE",
    "DecodeCounters",
    "Decoded",
    "Decoder",
    "Directory",
    "SourceStatus",
    "Subscription",
    "UnknownTag",
    "decode",
    "decode_many",
    "decode_safely",
]

Payload = bytes | bytearray | memoryview
Handler = Callable[[bytes, Directory, DecodeCounters, float], Decoded]


class Subscription(NamedTuple):
    """An MQTT topic filter and the QoS to subscribe with (the publisher's QoS)."""

    topic_filter: str
    qos: int


#: What the engine subscribes to. Not included: ``home/presence/<gw>`` (OMG's duplicate of
#: each device message) and the legacy ``espresense/rooms/<room>`` device topic (a node with
#: "rooms" publishing on sends every device there as well as under ``devices``): decode()
#: still accepts the legacy topic for old nodes whose ``devices`` publishing is off.
SUBSCRIPTIONS: Final = (
    Subscription("rtls/v1/gw/+/obs", 1),
    Subscription("rtls/v1/gw/+/status", 1),
    Subscription("rtls/v1/gw/+/health", 0),
    Subscription("rtls/v1/door/+/read", 1),
    Subscription("rtls/v1/door/+/status", 1),
    Subscription("espresense/devices/+/+", 0),
    Subscription("espresense/rooms/+/status", 0),
    Subscription("espresense/rooms/+/telemetry", 0),
    Subscription("home/+/BTtoMQTT/+", 0),
    Subscription("home/+/BTtoMQTT", 0),
    Subscription("home/+/LWT", 0),
    Subscription("home/+/SYStoMQTT", 0),
)


def _native_obs(
    gateway: str, data: bytes, d: Directory, c: DecodeCounters, t: float
) -> Decoded:
    return decode_native_batch(data, d, c, t, None if gateway == "+" else gateway)


def _route(topic: str) -> Handler:
    """The decoder for ``topic`` (with its topic levels bound); ``unknown_topic`` otherwise."""
    levels = topic.split("/")
    n = len(levels)
    if n == 5 and levels[0] == "rtls" and levels[1] == "v1" and levels[3]:
        kind, ident, leaf = levels[2], levels[3], levels[4]
        if kind == "gw":
            if leaf == "obs":
                return partial(_native_obs, ident)
            if leaf == "status":
                return partial(decode_native_status, ident)
            if leaf == "health":
                return partial(decode_native_health, ident)
        elif kind == "door":
            if leaf == "read":
                return partial(decode_door_read, ident)
            if leaf == "status":
                return partial(decode_door_status, ident)
    elif levels[0] == "espresense" and n in (3, 4) and all(levels[1:]):
        if n == 4 and levels[1] == "devices":
            return partial(decode_espresense_device, levels[2], levels[3])
        if n == 4 and levels[1] == "rooms" and levels[3] == "status":
            return partial(decode_espresense_status, levels[2])
        if n == 4 and levels[1] == "rooms" and levels[3] == "telemetry":
            return partial(decode_espresense_telemetry, levels[2])
        if n == 3 and levels[1] == "rooms":
            return partial(decode_espresense_device, None, levels[2])
    elif levels[0] == "home" and n in (3, 4) and all(levels[1:]):
        name, leaf = levels[1], levels[2]
        if leaf == "BTtoMQTT":
            return partial(decode_omg_device, name)
        if n == 3 and leaf == "LWT":
            return partial(decode_omg_lwt, name)
        if n == 3 and leaf == "SYStoMQTT":
            return partial(decode_omg_system, name)
    shown = topic[:120]
    raise PayloadError(f"no decoder for topic {shown!r}", reason="unknown_topic")


def decode(
    topic: str,
    payload: Payload,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """Decode one MQTT message; raises PayloadError (reasons: docs/decoding.md).

    ``received_t`` is the engine's receive time (Unix s), used where the message carries no
    time of its own. Counters are updated for what was decoded; a rejection is counted by
    :func:`decode_safely`, not here.
    """
    counters.messages += 1
    if isinstance(received_t, bool) or not isinstance(received_t, int | float):
        raise PayloadError(f"received_t {received_t!r} is not a number", "bad_receive_time")
    if not math.isfinite(received_t):
        raise PayloadError(f"received_t {received_t!r} is not finite", "bad_receive_time")
    if not isinstance(topic, str):
        raise PayloadError(f"topic {topic!r} is not a string", reason="unknown_topic")
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, bytearray | memoryview):
        data = bytes(payload)
    else:
        raise PayloadError(f"payload is a {type(payload).__name__}, not bytes", "bad_type")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}", reason="too_large"
        )
    return _route(topic)(data, directory, counters, float(received_t))


def decode_safely(
    topic: str,
    payload: Payload,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """:func:`decode` that never raises: a bad message is counted by reason and dropped.

    An unexpected exception (a bug) is counted as ``internal_error``; ``counters.last_error``
    keeps the last message for the log.
    """
    try:
        return decode(topic, payload, directory, counters, received_t)
    except PayloadError as exc:
        counters.reject(exc.reason, str(exc))
    except Exception as exc:  # the ingest loop must survive a decoder bug
        counters.reject("internal_error", f"{type(exc).__name__}: {exc}")
    return EMPTY


def decode_many(
    messages: Iterable[tuple[str, Payload, float]],
    directory: Directory,
    counters: DecodeCounters,
) -> Decoded:
    """Decode ``(topic, payload, received_t)`` messages; bad messages are counted, not raised.

    Native batches are decoded together in one vectorised pass (see
    :func:`~rtls.decode_native.decode_native_batches`), which removes the fixed cost per
    message: use this for the messages gathered between two ticks. The result holds the
    native batches' rows first, then the other messages' in arrival order.
    """
    natives: list[bytes | bytearray | memoryview] = []
    native_rx: list[float] = []
    native_gw: list[str | None] = []
    parts: list[Decoded] = []
    for topic, payload, received_t in messages:
        if _is_native_obs(topic, payload, received_t):
            counters.messages += 1
            natives.append(payload)
            native_rx.append(float(received_t))
            level = topic[11:-4]  # rtls/v1/gw/<id>/obs
            native_gw.append(None if level == "+" else level)
        else:
            parts.append(decode_safely(topic, payload, directory, counters, received_t))
    if natives:
        try:
            out, errors = decode_native_batches(natives, directory, counters, native_rx,
                                                native_gw)  # fmt: skip
        except Exception:  # a decoder bug: fall back to one message at a time
            counters.messages -= len(natives)
            for payload, rx, named in zip(natives, native_rx, native_gw, strict=True):
                topic = _NATIVE_TOPIC if named is None else f"rtls/v1/gw/{named}/obs"
                parts.append(decode_safely(topic, payload, directory, counters, rx))
        else:
            for _, exc in errors:
                counters.reject(exc.reason, str(exc))
            parts.insert(0, out)
    return Decoded.concat(parts)


_NATIVE_TOPIC: Final = "rtls/v1/gw/+/obs"  # any gw level: the gateway comes from the payload


def _is_native_obs(topic: object, payload: object, received_t: object) -> bool:
    return (
        isinstance(topic, str)
        and topic.startswith("rtls/v1/gw/")
        and topic.endswith("/obs")
        and topic.count("/") == 4
        and len(topic) > len("rtls/v1/gw//obs")
        and isinstance(payload, bytes | bytearray | memoryview)
        and len(payload) <= MAX_PAYLOAD_BYTES
        and isinstance(received_t, int | float)
        and not isinstance(received_t, bool)
        and math.isfinite(received_t)
    )


class Decoder:
    """A directory and its counters bound together: what the ingest loop holds."""

    def __init__(self, directory: Directory, counters: DecodeCounters | None = None) -> None:
        self.directory = directory
        self.counters = (
            counters if counters is not None else DecodeCounters.for_directory(directory)
        )

    def decode(self, topic: str, payload: Payload, received_t: float) -> Decoded:
        """See :func:`decode`; raises PayloadError."""
        return decode(topic, payload, self.directory, self.counters, received_t)

    def decode_safely(self, topic: str, payload: Payload, received_t: float) -> Decoded:
        """See :func:`decode_safely`; never raises."""
        return decode_safely(topic, payload, self.directory, self.counters, received_t)

    def decode_many(self, messages: Iterable[tuple[str, Payload, float]]) -> Decoded:
        """See :func:`decode_many`; never raises."""
        return decode_many(messages, self.directory, self.counters)
