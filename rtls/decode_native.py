"""Decoders for the project's own formats: native gateway batches, status, health, door readers.

The batch decoder is the engine's hot path: one ``np.frombuffer`` view of the payload, then a
fixed number of vectorised steps whatever the record count. Formats: docs/gateway-formats.md;
what is accepted and counted: docs/decoding.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import BODY_REASONS, MAC_PREFIX, Status, validate_bodies
from rtls.batch import RECORD_DTYPE, RECORD_SIZE, Batch, decode_batch
from rtls.decode_counters import DecodeCounters
from rtls.decode_fields import (
    check_same,
    check_version,
    get_address,
    get_count,
    get_rssi,
    get_seconds,
    get_str,
    get_time,
    parse_object,
)
from rtls.decode_result import (
    EMPTY,
    EMPTY_UNKNOWN,
    READ_DTYPE,
    RSSI_MAX,
    RSSI_MIN,
    TELEMETRY_DTYPE,
    UNKNOWN_DTYPE,
    Decoded,
    SourceStatus,
)
from rtls.directory import Directory
from rtls.errors import PayloadError
from rtls.observations import OBS_DTYPE

_BODY_NOTES = tuple(f"body_{r}" for r in BODY_REASONS)

#: Status bits (body byte 7) of an alarm raised on the tag: a native batch with one of them set
#: is urgent (:func:`is_urgent`). Skin contact is a state, not an alarm.
URGENT_STATUS: Final = int(
    Status.TAMPER | Status.SOS | Status.PULL_CORD | Status.PRE_ALARM | Status.MAN_DOWN
    | Status.NO_MOVEMENT | Status.FALL
)
_STATUS_IN_RECORD: Final = 12 + 7  # dt_us, address, rssi, channel, then the body's byte 7
_URGENT_BYTE: Final = bytes(1 if value & URGENT_STATUS else 0 for value in range(256))


def is_urgent(topic: str, payload: bytes | bytearray | memoryview) -> bool:
    """True when a message carries input the rules must see at once: a door read
    (``rtls/v1/door/<reader>/read``), or a native batch with a record whose status has an
    alarm bit (:data:`URGENT_STATUS`). A cheap look at the raw bytes: the records' status bytes
    by one strided slice and a byte table (a few µs per batch), no decoding and no validation
    (a malformed urgent message is rejected by the decoder as usual). The engine service runs
    an early pass for urgent messages (docs/engine.md)."""
    if topic.startswith("rtls/v1/door/"):
        return topic.endswith("/read")
    if not (topic.startswith("rtls/v1/gw/") and topic.endswith("/obs")):
        return False
    size = len(payload)
    if size < 23:
        return False
    header = int.from_bytes(payload[6:8], "little")
    count = int.from_bytes(payload[20:22], "little")
    if count == 0 or header + count * RECORD_SIZE != size:
        return False
    status = bytes(payload[header + _STATUS_IN_RECORD :: RECORD_SIZE])  # C-level, no loop
    return b"\x01" in status.translate(_URGENT_BYTE)


def decode_native_batch(
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
    topic_gateway: str | None = None,
) -> Decoded:
    """``rtls/v1/gw/<id>/obs``: one native v1 batch; raises its PayloadError.

    See :func:`decode_native_batches`, which this calls with one payload.
    """
    topics = None if topic_gateway is None else [topic_gateway]
    out, errors = decode_native_batches([payload], directory, counters, [received_t], topics)
    if errors:
        raise errors[0][1]
    return out


def decode_native_batches(
    payloads: Sequence[bytes | bytearray | memoryview],
    directory: Directory,
    counters: DecodeCounters,
    received_t: Sequence[float],
    topic_gateways: Sequence[str | None] | None = None,
) -> tuple[Decoded, list[tuple[int, PayloadError]]]:
    """Several native v1 batches decoded in one vectorised pass (any gateways, any order).

    ``received_t`` holds each payload's receive time (it only feeds ``gateway_last_heard``).
    ``topic_gateways``: the ``<id>`` level of each payload's topic (None: not checked); a batch
    naming another gateway is rejected (``gateway_mismatch``): the broker's ACL lets a gateway
    publish on its own topic only (docs/mqtt-security.md), so the topic is what is proven.

    Returns the result and the rejected payloads as ``(position, error)``; rejections are not
    counted here (``decode_safely``/``Decoder.decode_many`` count them). The cost is a few
    Python steps per payload plus a fixed number of array operations for all their records.

    The gateway is the one named in the payload, which must match the topic's. A record becomes an
    observation when its address is a known tag's and its RSSI lies in -127..20 dBm; its body
    becomes a telemetry row when it is a valid v1 body whose serial is that tag's. Invalid
    bodies are ignored and counted (``body_*``), the observation kept; a bad RSSI drops the
    observation, not the telemetry. Records of unknown rtls-looking devices (C0:DE address or
    a valid body) are listed as unknown; other devices are counted as foreign. Errors: the
    batch reasons (rtls.batch.decode_batch), ``unknown_gateway``, ``duplicate`` (a QoS 1
    resend of a recent batch).
    """
    errors: list[tuple[int, PayloadError]] = []
    batches: list[Batch] = []
    gateways: list[int] = []
    heard: list[float] = []
    chunks: list[bytes | bytearray | memoryview] = []
    keys: set[tuple[int, int, float]] = set()
    for i, payload in enumerate(payloads):
        try:
            batch = decode_batch(payload)
            named = None if topic_gateways is None else topic_gateways[i]
            if named is not None and batch.gateway != named:
                raise PayloadError(
                    f"batch of gateway {batch.gateway!r} published on gateway {named!r}'s topic",
                    "gateway_mismatch",
                )
            g = directory.gateway(batch.gateway)
            if g < 0:
                raise PayloadError(
                    f"gateway {batch.gateway!r} is not in the site", "unknown_gateway"
                )
            key = (g, batch.seq, batch.t0)
            if key in keys or counters.is_duplicate_batch(*key):
                raise PayloadError(
                    f"batch {batch.seq} of {batch.gateway!r} seen before", "duplicate"
                )
        except PayloadError as exc:
            errors.append((i, exc))
            continue
        keys.add(key)
        batches.append(batch)
        gateways.append(g)
        heard.append(received_t[i])
        chunks.append(memoryview(payload)[len(payload) - RECORD_SIZE * len(batch) :])
    if not batches:
        return EMPTY, errors
    timed = _on_engine_clock(batches, gateways, heard, counters)
    out = _decode_records(timed, gateways, chunks, directory, counters)
    per_gateway = np.bincount(out.obs["gateway"], minlength=len(directory.gateway_ids))
    for batch, g, rx in zip(batches, gateways, heard, strict=True):
        counters.accept_batch(g, batch.seq, batch.t0)
        counters.heard_gateway(g, rx, int(per_gateway[g]))
        per_gateway[g] = 0
    counters.telemetry += len(out.telemetry)
    return out, errors


def _on_engine_clock(
    batches: list[Batch], gateways: list[int], heard: list[float], counters: DecodeCounters
) -> list[Batch]:
    """The batches with ``t0`` moved onto the engine's clock where the gateway's clock is wrong
    (rtls.decode_clock, judged by each batch's last record: records are appended as heard);
    the others as they are. About 2 µs per batch."""
    clocks = counters.clocks
    out = []
    for batch, g, rx in zip(batches, gateways, heard, strict=True):
        dt = batch.records["dt_us"]
        newest = batch.t0 + (int(dt[-1]) * 1e-6 if len(dt) else 0.0)
        shift = clocks.correct(g, newest, rx)
        out.append(replace(batch, t0=batch.t0 + shift) if shift else batch)
    return out


def _decode_records(
    batches: list[Batch],
    gateways: list[int],
    chunks: list[bytes | bytearray | memoryview],
    directory: Directory,
    counters: DecodeCounters,
) -> Decoded:
    """The vectorised part: all records of the accepted batches at once (N records).

    ``chunks`` are the batches' record bytes; joined as bytes, which is much cheaper than
    concatenating structured arrays.
    """
    if len(batches) == 1:
        recs = batches[0].records
        gateway: NDArray[np.int32] | int = gateways[0]
        t = batches[0].t0 + recs["dt_us"] * 1e-6
    else:
        recs = np.frombuffer(b"".join(chunks), dtype=RECORD_DTYPE)
        counts = [len(b) for b in batches]
        gateway = np.repeat(np.array(gateways, dtype=np.int32), counts)
        t = np.repeat(np.array([b.t0 for b in batches]), counts) + recs["dt_us"] * 1e-6
    bodies = recs["body"]
    rssi = recs["rssi"]
    tags = directory.tags_for_address_keys(_address_keys(recs))
    known = tags >= 0
    code = validate_bodies(bodies)
    valid = code == 0
    serial_ok = directory.serials_for_tags(tags) == bodies["serial"]
    rssi_ok = (rssi >= RSSI_MIN) & (rssi <= RSSI_MAX)
    tel_mask = known & valid & serial_ok
    if (tel_mask & rssi_ok).all():  # the usual case: every record is a good known-tag record
        obs = _obs_rows(t, gateway, tags, rssi, None)
        return Decoded(obs=obs, telemetry=_telemetry_rows(t, gateway, tags, bodies, None),
                       obs_body=bodies, telemetry_body=bodies)  # fmt: skip
    obs_mask = known & rssi_ok
    ours = valid | (
        (recs["address"][:, 0] == MAC_PREFIX[0]) & (recs["address"][:, 1] == MAC_PREFIX[1])
    )
    stranger = ~known & ours
    counters.foreign += int(np.count_nonzero(~known & ~ours))
    bad_body = known & ~valid
    if bad_body.any():
        for c, n in enumerate(np.bincount(code[bad_body], minlength=len(BODY_REASONS))):
            counters.note(_BODY_NOTES[c], int(n))
    counters.note("body_serial_mismatch", int(np.count_nonzero(known & valid & ~serial_ok)))
    counters.note("bad_rssi", int(np.count_nonzero(known & ~rssi_ok)))
    unknown = EMPTY_UNKNOWN
    if stranger.any():
        unknown = _unknown_rows(t, gateway, recs, stranger, valid)
        counters.add_unknown(unknown)
    obs_body = bodies[obs_mask]  # the body each observation came with; zeros: none usable
    obs_body[~tel_mask[obs_mask]] = np.zeros((), dtype=obs_body.dtype)
    return Decoded(
        obs=_obs_rows(t, gateway, tags, rssi, obs_mask),
        telemetry=_telemetry_rows(t, gateway, tags, bodies, tel_mask),
        unknown=unknown,
        obs_body=obs_body,
        telemetry_body=bodies[tel_mask],
    )


def _address_keys(recs: NDArray[np.void]) -> NDArray[np.uint64]:
    """48-bit address keys of contiguous records (N,): a strided big-endian view, no copy.

    Bytes 4..11 of a record are the six address bytes (display order), then rssi and channel;
    read as a big-endian u64 and shifted right by 16 they are the address key.
    """
    if len(recs) == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = np.ascontiguousarray(recs).view(np.uint8)
    be = np.ndarray((len(recs),), dtype=">u8", buffer=raw, offset=4, strides=(RECORD_SIZE,))
    keys: NDArray[np.uint64] = np.right_shift(be, np.uint64(16), dtype=np.uint64)
    return keys


def _select(value: NDArray[Any] | int, mask: NDArray[np.bool_] | None) -> NDArray[Any] | int:
    if mask is None or isinstance(value, int):
        return value
    return value[mask]


def _obs_rows(
    t: NDArray[np.float64],
    gateway: NDArray[np.int32] | int,
    tags: NDArray[np.int32],
    rssi: NDArray[np.int8],
    mask: NDArray[np.bool_] | None,
) -> NDArray[np.void]:
    if mask is not None:
        t, tags, rssi = t[mask], tags[mask], rssi[mask]
    out = np.empty(len(t), dtype=OBS_DTYPE)
    out["t"] = t
    out["gateway"] = _select(gateway, mask)
    out["tag"] = tags
    out["rssi"] = rssi
    return out


def _telemetry_rows(
    t: NDArray[np.float64],
    gateway: NDArray[np.int32] | int,
    tags: NDArray[np.int32],
    bodies: NDArray[np.void],
    mask: NDArray[np.bool_] | None,
) -> NDArray[np.void]:
    if mask is not None:
        t, tags, bodies = t[mask], tags[mask], bodies[mask]
    out = np.empty(len(t), dtype=TELEMETRY_DTYPE)
    out["t"] = t
    out["gateway"] = _select(gateway, mask)
    out["tag"] = tags
    for name in ("seq", "status", "status2", "battery", "interval"):
        out[name] = bodies[name]
    return out


def _unknown_rows(
    t: NDArray[np.float64],
    gateway: NDArray[np.int32] | int,
    recs: NDArray[np.void],
    mask: NDArray[np.bool_],
    valid: NDArray[np.bool_],
) -> NDArray[np.void]:
    sel = recs[mask]
    out = np.empty(len(sel), dtype=UNKNOWN_DTYPE)
    out["t"] = t[mask]
    out["gateway"] = _select(gateway, mask)
    out["reader"] = -1
    out["address"] = _address_keys(sel)
    out["serial"] = np.where(valid[mask], sel["body"]["serial"], 0)
    out["rssi"] = sel["rssi"]
    return out


# --- native status and health -------------------------------------------------------------


def decode_native_status(
    gateway_id: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``rtls/v1/gw/<id>/status``: ``{"v":1,"state":"online"|"offline","gateway":..,"t":..}``."""
    g = _gateway(directory, gateway_id)
    obj = parse_object(payload)
    check_version(obj)
    check_same(obj, "gateway", gateway_id, "gateway_mismatch")
    state = _state(obj)
    t = get_time(obj)
    firmware = get_str(obj, "firmware")
    status = SourceStatus("gateway", g, state, received_t if t is None else t, received_t, firmware)
    if state == "online":
        counters.heard_gateway(g, received_t)
    counters.statuses += 1
    return Decoded(status=(status,))


def decode_native_health(
    gateway_id: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``rtls/v1/gw/<id>/health``: periodic counters (docs/gateway-formats.md)."""
    g = _gateway(directory, gateway_id)
    obj = parse_object(payload)
    check_version(obj)
    check_same(obj, "gateway", gateway_id, "gateway_mismatch")
    t = get_time(obj)
    wifi = get_rssi(obj, "wifi_rssi", required=False)
    status = SourceStatus(
        "gateway",
        g,
        "health",
        received_t if t is None else t,
        received_t,
        firmware=get_str(obj, "firmware"),
        uptime_s=get_seconds(obj, "uptime_s"),
        heard=get_count(obj, "heard"),
        published=get_count(obj, "published"),
        dropped=get_count(obj, "dropped"),
        queue=get_count(obj, "queue"),
        wifi_rssi=wifi,
    )
    counters.heard_gateway(g, received_t)
    counters.statuses += 1
    return Decoded(status=(status,))


def _gateway(directory: Directory, gateway_id: str) -> int:
    g = directory.gateway(gateway_id)
    if g < 0:
        raise PayloadError(f"gateway {gateway_id!r} is not in the site", "unknown_gateway")
    return g


def _state(obj: dict[str, object]) -> Literal["online", "offline"]:
    state = get_str(obj, "state", required=True)
    if state == "online":
        return "online"
    if state == "offline":
        return "offline"
    raise PayloadError(f"state {state!r} is not online or offline", reason="bad_state")


# --- door choke-point readers -------------------------------------------------------------


def decode_door_read(
    reader_id: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``rtls/v1/door/<reader>/read``: one read; the tag is named by ``mac`` (else ``serial``).

    ``t`` (reader clock) is required; ``rssi`` optional. A ``door`` differing from the site's
    door of that reader is counted (door_mismatch) and the site's door is used; a ``serial``
    that is not the tag's is counted (serial_mismatch). Raises PayloadError: ``unknown_reader``,
    ``reader_mismatch``, ``duplicate`` (the same read again), and the field reasons.
    """
    r = directory.reader(reader_id)
    if r < 0:
        raise PayloadError(f"door reader {reader_id!r} is not in the site", "unknown_reader")
    obj = parse_object(payload)
    check_version(obj)
    check_same(obj, "reader", reader_id, "reader_mismatch")
    door = get_str(obj, "door")
    t = get_time(obj, required=True)
    assert t is not None
    serial = get_count(obj, "serial")
    if serial is not None and serial > 0xFFFF_FFFF:
        raise PayloadError(f"serial {serial} is not a u32", reason="bad_value")
    rssi = get_rssi(obj, required=False)
    if "mac" in obj or serial is None:
        address = get_address(obj, "mac")
        tag = directory.tag_for_address(address)
    else:
        address = 0
        tag = directory.tag_for_serial(serial)
    if tag >= 0 and counters.is_duplicate_read(r, tag, t):
        raise PayloadError(f"read of tag {tag} at t={t} seen before", reason="duplicate")
    t_read = t + counters.reader_clocks.correct(r, t, received_t)  # a wrong reader clock
    if door is not None and door != directory.reader_doors[r]:
        counters.note("door_mismatch")
    counters.heard_reader(r, received_t)
    rssi_value = math.nan if rssi is None else rssi
    if tag < 0:
        row = np.zeros(1, dtype=UNKNOWN_DTYPE)
        row[0] = (t_read, -1, r, address, serial or 0, rssi_value)
        counters.add_unknown(row)
        return Decoded(unknown=row)
    if serial is not None and serial != int(directory.tag_serials[tag]):
        counters.note("serial_mismatch")
    counters.accept_read(r, tag, t)
    counters.reads += 1
    reads = np.zeros(1, dtype=READ_DTYPE)
    reads[0] = (t_read, r, tag, rssi_value)
    return Decoded(reads=reads)


def decode_door_status(
    reader_id: str,
    payload: bytes,
    directory: Directory,
    counters: DecodeCounters,
    received_t: float,
) -> Decoded:
    """``rtls/v1/door/<reader>/status``: retained online / offline (the last will)."""
    r = directory.reader(reader_id)
    if r < 0:
        raise PayloadError(f"door reader {reader_id!r} is not in the site", "unknown_reader")
    obj = parse_object(payload)
    check_version(obj)
    check_same(obj, "reader", reader_id, "reader_mismatch")
    state = _state(obj)
    t = get_time(obj)
    firmware = get_str(obj, "firmware")
    if state == "online":
        counters.heard_reader(r, received_t)
    counters.statuses += 1
    status = SourceStatus("reader", r, state, received_t if t is None else t, received_t, firmware)
    return Decoded(status=(status,))
