"""The native gateway batch format, version 1 (MQTT topic ``rtls/v1/gw/<gateway-id>/obs``).

Binary, little-endian: a header (magic ``RTLB``, version, flags, header length, batch sequence,
t0, record count, gateway id) followed by ``count`` fixed 32-byte records. Decoding is one
``np.frombuffer`` over the records: no Python object per observation. Layout and versioning
rules: ``docs/gateway-formats.md``.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.advertisement import BODY_DTYPE, as_bodies
from rtls.errors import PayloadError

MAGIC: Final = b"RTLB"
VERSION: Final = 1
FIXED_HEADER_SIZE: Final = 23  # header bytes before the gateway id
RECORD_SIZE: Final = 32
MAX_RECORDS: Final = 2000  # 64,087 bytes at most per payload
MAX_GATEWAY_ID: Final = 64
MAX_PAYLOAD: Final = FIXED_HEADER_SIZE + MAX_GATEWAY_ID + MAX_RECORDS * RECORD_SIZE
CHANNELS: Final = (0, 37, 38, 39)  # 0 = unknown
QOS: Final = 1  # observation batches carry alarm telemetry (tamper, SOS)

#: One heard advertisement, 32 bytes packed little-endian. ``address`` holds the six address
#: bytes in display order (``C0:DE:00:01:23:45`` -> c0 de 00 01 23 45), i.e. reversed from
#: the over-the-air order. ``body`` is the rtls advertisement body, all zero for other devices.
RECORD_DTYPE: Final = np.dtype(
    [
        ("dt_us", "<u4"),  # microseconds after the batch's t0
        ("address", "u1", (6,)),
        ("rssi", "i1"),  # dBm
        ("channel", "u1"),  # 37, 38, 39; 0 = unknown
        ("body", BODY_DTYPE),
    ]
)
assert RECORD_DTYPE.itemsize == RECORD_SIZE

_HEADER: Final = struct.Struct("<4sBBHIdHB")
assert _HEADER.size == FIXED_HEADER_SIZE
_GATEWAY_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_GATEWAY_BYTES: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
)

TOPIC_ROOT: Final = "rtls/v1/gw"
OBS_FILTER: Final = f"{TOPIC_ROOT}/+/obs"
STATUS_FILTER: Final = f"{TOPIC_ROOT}/+/status"
HEALTH_FILTER: Final = f"{TOPIC_ROOT}/+/health"


def check_gateway_id(gateway: str) -> str:
    """Return ``gateway`` if it is 1-64 characters of [A-Za-z0-9_.-], else raise."""
    if not isinstance(gateway, str) or not _GATEWAY_RE.fullmatch(gateway):
        raise PayloadError(
            f"gateway id {gateway!r} must be 1-64 characters of [A-Za-z0-9_.-]",
            reason="bad_gateway_id",
        )
    return gateway


def obs_topic(gateway: str) -> str:
    """``rtls/v1/gw/<gateway>/obs``: where a gateway publishes its batches."""
    return f"{TOPIC_ROOT}/{check_gateway_id(gateway)}/obs"


def status_topic(gateway: str) -> str:
    """``rtls/v1/gw/<gateway>/status``: retained online/offline (the offline one is the will)."""
    return f"{TOPIC_ROOT}/{check_gateway_id(gateway)}/status"


def health_topic(gateway: str) -> str:
    """``rtls/v1/gw/<gateway>/health``: periodic health JSON."""
    return f"{TOPIC_ROOT}/{check_gateway_id(gateway)}/health"


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """A decoded batch; ``records`` is a read-only RECORD_DTYPE view (N,) of the payload."""

    gateway: str
    seq: int
    t0: float
    records: NDArray[np.void]

    def __len__(self) -> int:
        return len(self.records)

    def times(self) -> NDArray[np.float64]:
        """Absolute gateway-clock time of each record, Unix seconds, shape (N,)."""
        return self.t0 + self.records["dt_us"] * 1e-6


def decode_batch(payload: bytes | bytearray | memoryview) -> Batch:
    """Decode a native v1 batch; every defect raises PayloadError with a ``reason``.

    Reasons: truncated, bad_magic, bad_version, bad_flags, bad_header, bad_gateway_id,
    bad_time, too_large, length_mismatch. Record fields are not range-checked here (a bad
    channel must not cost the batch's alarm telemetry); bodies are validated with
    :func:`rtls.advertisement.decode_bodies`. Bytes between the gateway id and
    ``header_len`` are a later version's header extension and are skipped.
    """
    data = memoryview(payload).cast("B")
    size = len(data)
    if size >= 4 and bytes(data[:4]) != MAGIC:
        raise PayloadError(f"magic {bytes(data[:4])!r} is not {MAGIC!r}", reason="bad_magic")
    if size < FIXED_HEADER_SIZE:
        raise PayloadError(
            f"payload has {size} bytes, the fixed header alone has {FIXED_HEADER_SIZE}",
            reason="truncated",
        )
    _, version, flags, header_len, seq, t0, count, gw_len = _HEADER.unpack_from(data)
    if version != VERSION:
        raise PayloadError(f"batch version {version} is not {VERSION}", reason="bad_version")
    if flags:
        raise PayloadError(f"batch flags 0x{flags:02x} unknown in v1", reason="bad_flags")
    if not 1 <= gw_len <= MAX_GATEWAY_ID:
        raise PayloadError(f"gateway id length {gw_len} not in 1..64", reason="bad_gateway_id")
    if header_len < FIXED_HEADER_SIZE + gw_len:
        raise PayloadError(
            f"header length {header_len} shorter than {FIXED_HEADER_SIZE + gw_len}",
            reason="bad_header",
        )
    if size < FIXED_HEADER_SIZE + gw_len:
        raise PayloadError("payload ends inside the gateway id", reason="truncated")
    raw_id = bytes(data[FIXED_HEADER_SIZE : FIXED_HEADER_SIZE + gw_len])
    if not _GATEWAY_BYTES.issuperset(raw_id):
        raise PayloadError(
            f"gateway id {raw_id!r} has characters outside [A-Za-z0-9_.-]",
            reason="bad_gateway_id",
        )
    if not math.isfinite(t0) or t0 < 0.0:
        raise PayloadError(f"t0 {t0!r} is not a finite non-negative time", reason="bad_time")
    if count > MAX_RECORDS:
        raise PayloadError(f"{count} records exceed the {MAX_RECORDS} limit", reason="too_large")
    expected = header_len + count * RECORD_SIZE
    if size < expected:
        raise PayloadError(
            f"payload has {size} bytes, header and {count} records need {expected}",
            reason="truncated",
        )
    if size > expected:
        raise PayloadError(
            f"payload has {size} bytes, {size - expected} more than header and {count} records",
            reason="length_mismatch",
        )
    records = np.frombuffer(data, dtype=RECORD_DTYPE, count=count, offset=header_len)
    records.flags.writeable = False
    return Batch(gateway=raw_id.decode("ascii"), seq=seq, t0=t0, records=records)


def encode_batch(gateway: str, seq: int, t0: float, records: NDArray[np.void]) -> bytes:
    """Encode a v1 batch; ``records`` is a RECORD_DTYPE array (N,), N <= MAX_RECORDS.

    ``seq`` is the per-gateway batch counter (0..2**32-1, the caller wraps it); ``t0`` is the
    gateway clock at the start of the batch, Unix seconds.
    """
    gw = check_gateway_id(gateway).encode("ascii")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 0xFFFF_FFFF:
        raise PayloadError(f"batch seq {seq!r} not in 0..2**32-1", reason="out_of_range")
    if not math.isfinite(t0) or t0 < 0.0:
        raise PayloadError(f"t0 {t0!r} is not a finite non-negative time", reason="bad_time")
    recs = np.asarray(records)
    if recs.dtype != RECORD_DTYPE or recs.ndim != 1:
        raise PayloadError(
            f"records must be a 1-D RECORD_DTYPE array, got {recs.dtype} {recs.shape}",
            reason="bad_records",
        )
    if len(recs) > MAX_RECORDS:
        raise PayloadError(f"{len(recs)} records exceed {MAX_RECORDS}", reason="too_large")
    _check_channels(recs["channel"])
    header = _HEADER.pack(
        MAGIC, VERSION, 0, FIXED_HEADER_SIZE + len(gw), seq, float(t0), len(recs), len(gw)
    )
    return header + gw + recs.tobytes()


_CHANNEL_OK = np.zeros(256, dtype=bool)
_CHANNEL_OK[list(CHANNELS)] = True  # a lookup table: np.isin sorts on every batch


def _check_channels(channel: NDArray[np.integer]) -> None:
    bad = ~_CHANNEL_OK[np.clip(channel, 0, 255)] | (channel < 0) | (channel > 255)
    if bad.any():
        value = int(channel[int(np.argmax(bad))])
        raise PayloadError(f"channel {value} is not 0, 37, 38 or 39", reason="bad_channel")


def _int_column(name: str, values: ArrayLike, n: int, lo: int, hi: int) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise PayloadError(f"{name} must be integers, got {arr.dtype}", reason="bad_records")
    arr = np.broadcast_to(arr.astype(np.int64), (n,))
    if n and (arr.min() < lo or arr.max() > hi):
        raise PayloadError(f"{name} values must lie in {lo}..{hi}", reason="out_of_range")
    return arr


def make_records(
    dt_us: ArrayLike,
    address: ArrayLike,
    rssi: ArrayLike,
    channel: ArrayLike = 0,
    body: ArrayLike | None = None,
) -> NDArray[np.void]:
    """Build a RECORD_DTYPE array (N,) from columns.

    ``dt_us`` (N,) integers 0..2**32-1; ``address`` uint8 (N, 6) in display order (see
    :func:`rtls.advertisement.tag_address`); ``rssi`` (N,) or scalar dBm in -128..127;
    ``channel`` (N,) or scalar in {0, 37, 38, 39}; ``body`` uint8 (N, 20) or BODY_DTYPE (N,),
    None for all-zero bodies (non-rtls devices).
    """
    dt = np.asarray(dt_us)
    if dt.ndim != 1:
        raise PayloadError(f"dt_us must have shape (N,), got {dt.shape}", reason="bad_records")
    n = len(dt)
    addr = np.asarray(address)
    if addr.shape != (n, 6) or addr.dtype.kind not in "iu":
        raise PayloadError(
            f"address must be integers of shape ({n}, 6), got {addr.dtype} {addr.shape}",
            reason="bad_records",
        )
    if n and (addr.min() < 0 or addr.max() > 255):
        raise PayloadError("address bytes must lie in 0..255", reason="out_of_range")
    out = np.zeros(n, dtype=RECORD_DTYPE)
    out["dt_us"] = _int_column("dt_us", dt, n, 0, 0xFFFF_FFFF)
    out["address"] = addr
    out["rssi"] = _int_column("rssi", rssi, n, -128, 127)
    out["channel"] = _int_column("channel", channel, n, 0, 255)
    _check_channels(out["channel"])
    if body is not None:
        bodies = as_bodies(body)
        if bodies.shape != (n,):
            raise PayloadError(
                f"body must hold {n} bodies, got {bodies.shape}", reason="bad_records"
            )
        out["body"] = bodies
    return out
