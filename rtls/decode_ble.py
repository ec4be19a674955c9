"""Decoders for third-party BLE gateways: ESPresense room nodes and OpenMQTTGateway / Theengs.

One JSON message per device heard, without a gateway timestamp: rows take the engine's
``received_t``. ESPresense carries no manufacturer data (presence and RSSI only); OMG carries
the body in ``manufacturerdata`` when the gateway publishes advertisement data. Message shapes:
docs/gateway-formats.md; what is accepted and counted: docs/decoding.md.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from rtls.advertisement import (
    BODY_DTYPE,
    BODY_REASONS,
    MAC_PREFIX,
    MANUFACTURER_DATA_SIZE,
    validate_bodies,
)
from rtls.decode_counters import DecodeCounters
from rtls.decode_fields import (
    get_address,
    get_count,
    get_rssi,
    get_seconds,
    get_str,
    parse_object,
    parse_word,
)
from rtls.decode_result import (
    EMPTY,
    TELEMETRY_DTYPE,
    UNKNOWN_DTYPE,
    Decoded,
    SourceStatus,
)
from rtls.directory import Directory
from rtls.errors import PayloadError
from rtls.observations import OBS_DTYPE

_PREFIX = int.from_bytes(MAC_PREFIX, "big") << 32
_PREFIX_MASK = 0xFFFF << 32


def _has_tag_prefix(address: int) -> bool:
    return address & _PREFIX_MASK == _PREFIX


def _device(
    g: int,
    address: int,
    rssi: float,
    ours: bool,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
    body: np.void | None = None,
    body_problem: str | None = None,
) -> Decoded:
    """One heard device -> an observation (and telemetry), an unknown row, or a foreign count."""
    tag = directory.tag_for_address(address)
    if tag < 0:
        counters.heard_gateway(g, received_t)
        if not (ours or _has_tag_prefix(address) or body is not None):
            counters.foreign += 1
            return EMPTY
        row = np.zeros(1, dtype=UNKNOWN_DTYPE)
        serial = 0 if body is None else int(body["serial"])
        row[0] = (received_t, g, -1, address, serial, rssi)
        counters.add_unknown(row)
        return Decoded(unknown=row)
    obs = np.zeros(1, dtype=OBS_DTYPE)
    obs[0] = (received_t, g, tag, rssi)
    counters.heard_gateway(g, received_t, 1)
    if body is not None and int(body["serial"]) != int(directory.tag_serials[tag]):
        body, body_problem = None, "body_serial_mismatch"
    if body_problem is not None:
        counters.note(body_problem)
    if body is None:
        return Decoded(obs=obs, obs_body=np.zeros(1, dtype=BODY_DTYPE))
    telemetry = np.zeros(1, dtype=TELEMETRY_DTYPE)
    telemetry[0] = (
        received_t,
        g,
        tag,
        body["seq"],
        body["status"],
        body["status2"],
        body["battery"],
        body["interval"],
    )
    counters.telemetry += 1
    bodies = np.array([body], dtype=BODY_DTYPE)  # what tag authentication checks
    return Decoded(obs=obs, telemetry=telemetry, obs_body=bodies, telemetry_body=bodies)


# --- ESPresense -----------------------------------------------------------------------------


def decode_espresense_device(
    device_id: str | None,
    room: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``espresense/devices/<id>/<room>`` (or legacy ``espresense/rooms/<room>``) device JSON.

    Reads ``mac`` (required: tags are told apart by address), ``rssi`` (required; v4 firmware
    sends a float) and ``id``; other keys are ignored. A device whose id is the manufacturer
    data fingerprint of our company (``md:ffff:22``) or whose address has the tag prefix is
    an rtls tag: listed as unknown if not in the site. Raises PayloadError:
    ``unknown_gateway`` (room slug of no gateway), ``bad_mac`` and the field reasons.
    """
    g = directory.espresense_gateway(room)
    if g < 0:
        raise PayloadError(f"ESPresense room {room!r} is no gateway's", "unknown_gateway")
    obj = parse_object(payload)
    address = get_address(obj, "mac")
    rssi = get_rssi(obj)
    assert rssi is not None
    fingerprint = get_str(obj, "id") or device_id
    ours = fingerprint == f"md:{directory.company_id:04x}:{MANUFACTURER_DATA_SIZE}"
    return _device(g, address, rssi, ours, directory, counters, received_t)


def _word_status(g: int, payload: bytes, counters: DecodeCounters, received_t: float) -> Decoded:
    """A plain ``online`` / ``offline`` status word of gateway ``g`` (ESPresense, OMG)."""
    state = _word_state(payload)
    if state == "online":
        counters.heard_gateway(g, received_t)
    counters.statuses += 1
    return Decoded(status=(SourceStatus("gateway", g, state, received_t, received_t),))


def decode_espresense_status(
    room: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``espresense/rooms/<room>/status``: ``online`` or ``offline`` (the last will)."""
    return _word_status(_espresense_gateway(directory, room), payload, counters, received_t)


def decode_espresense_telemetry(
    room: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``espresense/rooms/<room>/telemetry``: node health (uptime, Wi-Fi RSSI, counters)."""
    g = _espresense_gateway(directory, room)
    obj = parse_object(payload)
    status = SourceStatus(
        "gateway",
        g,
        "health",
        received_t,
        received_t,
        firmware=get_str(obj, "ver"),
        uptime_s=get_seconds(obj, "uptime"),
        heard=get_count(obj, "adverts"),
        published=get_count(obj, "reported"),
        dropped=get_count(obj, "failed"),
        wifi_rssi=get_rssi(obj, required=False),
    )
    counters.heard_gateway(g, received_t)
    counters.statuses += 1
    return Decoded(status=(status,))


def _espresense_gateway(directory: Directory, room: str) -> int:
    g = directory.espresense_gateway(room)
    if g < 0:
        raise PayloadError(f"ESPresense room {room!r} is no gateway's", "unknown_gateway")
    return g


def _word_state(payload: bytes) -> Literal["online", "offline"]:
    return "online" if parse_word(payload, ("online", "offline")) == "online" else "offline"


# --- OpenMQTTGateway / Theengs --------------------------------------------------------------


def decode_omg_device(
    name: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``home/<gateway>/BTtoMQTT[/<MAC>]`` device JSON.

    Reads ``id`` (the MAC, required), ``rssi`` (required) and ``manufacturerdata`` (optional
    hex: our company id, little-endian, then the 20-byte body). A known tag always gives an
    observation; its body gives telemetry when valid and its serial is the tag's, otherwise
    the body is counted (``body_*``; ``body_missing`` when the gateway does not publish
    advertisement data). Raises PayloadError: ``unknown_gateway``, ``bad_mac``, field reasons.
    """
    g = _omg_gateway(directory, name)
    obj = parse_object(payload)
    address = get_address(obj, "id")
    rssi = get_rssi(obj)
    assert rssi is not None
    md = get_str(obj, "manufacturerdata")
    company = directory.company_id.to_bytes(2, "little").hex()
    ours = md is not None and md[:4].lower() == company
    body, problem = (None, "body_missing") if md is None else _manufacturer_body(md, directory)
    return _device(g, address, rssi, ours, directory, counters, received_t, body, problem)


def _manufacturer_body(md: str, directory: Directory) -> tuple[np.void | None, str | None]:
    """(body, None) for a valid rtls body, else (None, the ``body_*`` reason)."""
    try:
        raw = bytes.fromhex(md)
    except ValueError:
        return None, "body_bad_hex"
    if len(raw) < 2:
        return None, "body_length"
    if int.from_bytes(raw[:2], "little") != directory.company_id:
        return None, "body_foreign_company"
    if len(raw) != MANUFACTURER_DATA_SIZE:
        return None, "body_length"
    bodies = np.frombuffer(raw, dtype=BODY_DTYPE, count=1, offset=2)
    code = int(validate_bodies(bodies)[0])
    if code:
        return None, f"body_{BODY_REASONS[code]}"
    body: np.void = bodies[0]
    return body, None


def decode_omg_lwt(
    name: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``home/<gateway>/LWT``: ``online`` or ``offline`` (the last will)."""
    return _word_status(_omg_gateway(directory, name), payload, counters, received_t)


def decode_omg_system(
    name: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``home/<gateway>/SYStoMQTT``: uptime, version, ``msgblck`` (dropped), Wi-Fi ``rssi``."""
    g = _omg_gateway(directory, name)
    obj = parse_object(payload)
    wifi = get_rssi(obj, required=False)  # wired gateways omit it
    status = SourceStatus(
        "gateway",
        g,
        "health",
        received_t,
        received_t,
        firmware=get_str(obj, "version"),
        uptime_s=get_seconds(obj, "uptime"),
        dropped=get_count(obj, "msgblck"),
        wifi_rssi=wifi,
    )
    counters.heard_gateway(g, received_t)
    counters.statuses += 1
    return Decoded(status=(status,))


def _omg_gateway(directory: Directory, name: str) -> int:
    g = directory.omg_gateway(name)
    if g < 0:
        raise PayloadError(f"OpenMQTTGateway {name!r} is not in the site", "unknown_gateway")
    return g
