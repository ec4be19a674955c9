"""What a decoder returns: observation, telemetry, read and unknown-tag arrays plus status updates.

All arrays are structured NumPy arrays (no Python object per row). Layouts, reasons and limits:
``docs/decoding.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import BODY_DTYPE, BODY_REASONS
from rtls.observations import OBS_DTYPE

MAX_PAYLOAD_BYTES: Final = 256 * 1024  # any message above this is rejected (too_large)
# HCI LE Advertising Report: RSSI -127..+20 dBm, 127 = not available (Core Vol 4 Part E 7.7.65.2)
RSSI_MIN: Final = -127.0
RSSI_MAX: Final = 20.0

#: One decoded advertisement body (native batch, OpenMQTTGateway ``manufacturerdata``). Fields
#: are the body's raw fields (docs/advertisement.md): battery 255 = unknown, interval in units
#: of 100 ms. ``gateway`` is the gateway that heard it.
TELEMETRY_DTYPE: Final = np.dtype(
    [
        ("t", "<f8"),
        ("gateway", "<i4"),
        ("tag", "<i4"),
        ("seq", "<u2"),
        ("status", "u1"),
        ("status2", "u1"),
        ("battery", "u1"),
        ("interval", "u1"),
    ]
)

#: One door choke-point read: reader clock ``t``, reader index, tag index, RSSI (NaN if the
#: reader does not measure it).
READ_DTYPE: Final = np.dtype([("t", "<f8"), ("reader", "<i4"), ("tag", "<i4"), ("rssi", "<f4")])

#: One sighting of an rtls-looking device that is not in the site: heard by ``gateway`` (or by
#: door ``reader``; the other is -1). ``address`` is the 48-bit address, ``serial`` the serial of
#: a valid body (0 when none), ``rssi`` NaN when unknown.
UNKNOWN_DTYPE: Final = np.dtype(
    [
        ("t", "<f8"),
        ("gateway", "<i4"),
        ("reader", "<i4"),
        ("address", "<u8"),
        ("serial", "<u4"),
        ("rssi", "<f4"),
    ]
)

#: Reasons a whole message is rejected (PayloadError.reason), besides the native batch's own
#: (rtls.batch.decode_batch: truncated, bad_magic, bad_version, bad_flags, bad_header,
#: bad_gateway_id, bad_time, too_large, length_mismatch).
MESSAGE_REASONS: Final = (
    "unknown_topic",
    "bad_type",
    "too_large",
    "bad_json",
    "missing_field",
    "bad_rssi",
    "bad_time",
    "bad_value",
    "bad_version",
    "bad_state",
    "bad_mac",
    "unknown_gateway",
    "unknown_reader",
    "gateway_mismatch",
    "reader_mismatch",
    "duplicate",
    "bad_receive_time",
    "internal_error",
)

#: Per-record reasons: the record's observation was dropped (unknown_tag, bad_rssi) or only its
#: body was ignored (``body_*``: the observation is kept), or a field was inconsistent but the
#: message kept (door_mismatch, serial_mismatch).
RECORD_REASONS: Final = (
    "unknown_tag",
    "bad_rssi",
    *(f"body_{r}" for r in BODY_REASONS[1:]),
    "body_serial_mismatch",
    "body_bad_hex",
    "body_length",
    "body_foreign_company",
    "body_missing",
    "door_mismatch",
    "serial_mismatch",
)

SourceKind = Literal["gateway", "reader"]
State = Literal["online", "offline", "health"]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A gateway or door reader said it is online, offline (its last will) or sent health.

    ``t`` is the source's own clock when the message carries one, else ``received_t``. Health
    fields are None when the format does not carry them. ``index`` indexes ``site.gateways``
    (source "gateway") or ``site.door_readers`` (source "reader").
    """

    source: SourceKind
    index: int
    state: State
    t: float
    received_t: float
    firmware: str | None = None
    uptime_s: float | None = None
    heard: int | None = None
    published: int | None = None
    dropped: int | None = None
    queue: int | None = None
    wifi_rssi: float | None = None


def _frozen(dtype: np.dtype[np.void]) -> NDArray[np.void]:
    arr = np.zeros(0, dtype=dtype)
    arr.flags.writeable = False
    return arr


EMPTY_OBS: Final = _frozen(OBS_DTYPE)
EMPTY_TELEMETRY: Final = _frozen(TELEMETRY_DTYPE)
EMPTY_READS: Final = _frozen(READ_DTYPE)
EMPTY_UNKNOWN: Final = _frozen(UNKNOWN_DTYPE)


@dataclass(frozen=True, slots=True, eq=False)
class Decoded:
    """The result of decoding one message (or several, see :meth:`concat`).

    ``obs`` OBS_DTYPE (N,), ``telemetry`` TELEMETRY_DTYPE (K,), ``reads`` READ_DTYPE (R,),
    ``unknown`` UNKNOWN_DTYPE (U,), ``status`` SourceStatus updates. Empty parts share
    read-only empty arrays: copy before writing.
    """

    obs: NDArray[np.void] = field(default_factory=lambda: EMPTY_OBS)
    telemetry: NDArray[np.void] = field(default_factory=lambda: EMPTY_TELEMETRY)
    reads: NDArray[np.void] = field(default_factory=lambda: EMPTY_READS)
    status: tuple[SourceStatus, ...] = ()
    unknown: NDArray[np.void] = field(default_factory=lambda: EMPTY_UNKNOWN)
    # the advertisement body (BODY_DTYPE) each obs / telemetry row came with, for tag
    # authentication (rtls.tagauth); all zero: none (ESPresense). None: not given (all zero)
    obs_body: NDArray[np.void] | None = None
    telemetry_body: NDArray[np.void] | None = None

    @property
    def empty(self) -> bool:
        """True when nothing at all was decoded."""
        return not (
            len(self.obs) or len(self.telemetry) or len(self.reads) or self.status
        ) and not len(self.unknown)

    @staticmethod
    def concat(parts: Sequence[Decoded]) -> Decoded:
        """All parts in order, as one result (for a tick's worth of messages)."""
        if not parts:
            return EMPTY
        if len(parts) == 1:
            return parts[0]
        return Decoded(
            obs=_cat([p.obs for p in parts], EMPTY_OBS),
            telemetry=_cat([p.telemetry for p in parts], EMPTY_TELEMETRY),
            reads=_cat([p.reads for p in parts], EMPTY_READS),
            status=tuple(s for p in parts for s in p.status),
            unknown=_cat([p.unknown for p in parts], EMPTY_UNKNOWN),
            obs_body=_cat_bodies([(p.obs_body, len(p.obs)) for p in parts]),
            telemetry_body=_cat_bodies([(p.telemetry_body, len(p.telemetry)) for p in parts]),
        )


def _cat_bodies(parts: list[tuple[NDArray[np.void] | None, int]]) -> NDArray[np.void] | None:
    """The parts' body arrays joined, zeros for a part without one (None if none has one)."""
    if all(b is None for b, n in parts if n):
        return None
    return np.concatenate([b if b is not None and len(b) == n else np.zeros(n, BODY_DTYPE)
                           for b, n in parts])  # fmt: skip


def _cat(arrays: list[NDArray[np.void]], empty: NDArray[np.void]) -> NDArray[np.void]:
    nonempty = [a for a in arrays if len(a)]
    if not nonempty:
        return empty
    if len(nonempty) == 1:
        return nonempty[0]
    return np.concatenate(nonempty)


EMPTY: Final = Decoded()


def unique_frames(telemetry: NDArray[np.void]) -> NDArray[np.void]:
    """TELEMETRY_DTYPE (K,) -> (U,), U <= K: one row per advertisement, with the time of its
    earliest copy (and the gateway of one of them: nothing downstream reads it).
    Every advertisement is heard by several gateways (and a burst repeats it): copies have the
    same tag, sequence number, status, status2 and battery, and differ only in gateway and
    receive time. The rules and the lone-worker state need each frame once (they drop repeats
    themselves; this only saves them the work). Rows come back sorted by (tag, seq)."""
    if len(telemetry) < 2:
        return telemetry
    tag = telemetry["tag"].astype(np.int64)
    if tag.min() < 0 or tag.max() >= 1 << 23:  # the key below holds 23 bits of tag index
        return telemetry
    # 23 + 16 + 8 + 8 + 8 = 63 bits: a frame's identity as one int64
    key = (tag << 40) | (telemetry["seq"].astype(np.int64) << 24)
    key |= telemetry["status"].astype(np.int64) << 16
    key |= telemetry["status2"].astype(np.int64) << 8
    key |= telemetry["battery"].astype(np.int64)
    order = np.argsort(key, kind="stable")  # one sort: by frame
    k = key[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    out = telemetry[order[starts]]
    out["t"] = np.minimum.reduceat(telemetry["t"][order], starts)  # the earliest copy's time
    return out
