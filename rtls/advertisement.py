"""The rtls tag's BLE advertisement, version 1: body codec, AD structures, tag address.

The advertisement is legacy BLE advertising data (at most 31 bytes): a Flags AD structure and a
Manufacturer Specific Data AD structure holding the company id and a 20-byte body. Every byte
and bit is documented, with a worked example, in ``docs/advertisement.md``.

Two decode paths share one validation: :func:`decode_body` (one body, returns an
:class:`Advertisement`, raises :class:`~rtls.errors.PayloadError`) and :func:`decode_bodies`
(N bodies as a structured array, returns a validity mask; no Python object per body).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import PayloadError

PROTOCOL_VERSION: Final = 1
BODY_SIZE: Final = 20
SIGNED_SIZE: Final = 12  # bytes 0-11 are covered by the authentication field
AUTH_SIZE: Final = 8
COMPANY_ID: Final = 0xFFFF  # Bluetooth SIG id reserved for internal/test use; see docs
MANUFACTURER_DATA_SIZE: Final = 2 + BODY_SIZE
LEGACY_ADV_MAX: Final = 31
AD_TYPE_FLAGS: Final = 0x01
AD_TYPE_MANUFACTURER: Final = 0xFF
AD_FLAGS: Final = 0x06  # LE General Discoverable | BR/EDR Not Supported (CSS part A 1.3)
BATTERY_UNKNOWN: Final = 255
INTERVAL_UNIT_MS: Final = 100
MAC_PREFIX: Final = b"\xc0\xde"  # static random address: two top bits set (Core 6.B.1.3.2.1)


class TagKind(enum.IntEnum):
    """Tag kind, the low nibble of body byte 0."""

    INFANT = 1
    MOTHER = 2
    STAFF_BADGE = 3
    REFERENCE = 4


class Status(enum.IntFlag):
    """Body byte 7: sensor states and alarms raised on the tag."""

    NONE = 0
    TAMPER = 0x01  # strap circuit open
    SKIN_CONTACT = 0x02  # skin contact present
    SOS = 0x04  # SOS button
    PULL_CORD = 0x08  # pull-cord pulled
    PRE_ALARM = 0x10  # pre-alarm active (man-down family), wearer may cancel
    MAN_DOWN = 0x20  # man-down (loss of verticality) alarm
    NO_MOVEMENT = 0x40  # no-movement alarm
    FALL = 0x80  # fall detected


class Status2(enum.IntFlag):
    """Body byte 8: service flags; bits 5-7 are reserved and must be 0 in v1."""

    NONE = 0
    LOW_BATTERY = 0x01
    PRE_ALARM_CANCELLED = 0x02  # the wearer cancelled the pre-alarm
    CONSOLE_CONFIRMED = 0x04  # console confirmed reception; the badge may stop its local alarm
    BURST_REPEAT = 0x08  # this frame repeats a state change (same sequence number)
    MISMATCH = 0x10  # infant bracelet: a mother tag not paired with it is within ~0.5 m now


STATUS2_RESERVED: Final = 0xE0

#: The 20-byte body as a packed little-endian structured dtype (itemsize 20).
BODY_DTYPE: Final = np.dtype(
    [
        ("version_kind", "u1"),
        ("serial", "<u4"),
        ("seq", "<u2"),
        ("status", "u1"),
        ("status2", "u1"),
        ("battery", "u1"),
        ("measured_power", "i1"),
        ("interval", "u1"),
        ("auth", "u1", (AUTH_SIZE,)),
    ]
)
assert BODY_DTYPE.itemsize == BODY_SIZE

#: Reason tags indexed by the codes returned by :func:`validate_bodies` (0 = valid).
BODY_REASONS: Final = (
    "ok",
    "bad_version",
    "bad_kind",
    "reserved_bits",
    "bad_battery",
    "bad_interval",
)

_BODY_STRUCT: Final = struct.Struct("<BIHBBBbB")
_MAC_RE: Final = re.compile(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{12}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One decoded (or to-be-encoded) advertisement body; validated on construction.

    ``battery`` is a percentage or None (unknown, sent as 255). ``measured_power`` is the RSSI
    at 1 m in dBm, as iBeacon sends it. ``interval_ms`` is the advertising (heartbeat) interval,
    a multiple of 100 ms from 100 to 25,500. ``auth`` is the 8-byte truncated MAC over bytes 0-11
    (all zero: not authenticated, the v1 default).
    """

    kind: TagKind
    serial: int
    seq: int = 0
    status: Status = Status.NONE
    status2: Status2 = Status2.NONE
    battery: int | None = None
    measured_power: int = -59
    interval_ms: int = 1000
    auth: bytes = bytes(AUTH_SIZE)

    def __post_init__(self) -> None:
        try:
            kind = TagKind(self.kind)
        except ValueError:
            raise PayloadError(f"unknown tag kind {self.kind!r}", reason="bad_kind") from None
        object.__setattr__(self, "kind", kind)
        _check_range("serial", self.serial, 0, 0xFFFF_FFFF)
        _check_range("seq", self.seq, 0, 0xFFFF)
        _check_range("status", self.status, 0, 0xFF)
        object.__setattr__(self, "status", Status(int(self.status)))
        _check_range("status2", self.status2, 0, 0xFF)
        if int(self.status2) & STATUS2_RESERVED:
            raise PayloadError(
                f"status2 0x{int(self.status2):02x} sets reserved bits 5-7", reason="reserved_bits"
            )
        object.__setattr__(self, "status2", Status2(int(self.status2)))
        if self.battery is not None:
            _check_range("battery", self.battery, 0, 100, reason="bad_battery")
        _check_range("measured_power", self.measured_power, -128, 127)
        if (
            not isinstance(self.interval_ms, int)
            or self.interval_ms % INTERVAL_UNIT_MS
            or not 1 <= self.interval_ms // INTERVAL_UNIT_MS <= 255
        ):
            raise PayloadError(
                f"interval_ms {self.interval_ms!r} is not a multiple of 100 in 100..25500",
                reason="bad_interval",
            )
        if not isinstance(self.auth, bytes | bytearray) or len(self.auth) != AUTH_SIZE:
            raise PayloadError("auth must be exactly 8 bytes", reason="bad_auth")
        object.__setattr__(self, "auth", bytes(self.auth))

    @property
    def interval_s(self) -> float:
        """Advertising (heartbeat) interval in seconds."""
        return self.interval_ms / 1000.0

    @property
    def authenticated(self) -> bool:
        """True when the auth field is not all zero (v1 does not verify it)."""
        return any(self.auth)


def _check_range(name: str, value: object, lo: int, hi: int, reason: str = "out_of_range") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PayloadError(f"{name} {value!r} is not an integer in {lo}..{hi}", reason=reason)


def encode_body(adv: Advertisement) -> bytes:
    """The 20-byte body of ``adv`` (layout: docs/advertisement.md)."""
    head = _BODY_STRUCT.pack(
        (PROTOCOL_VERSION << 4) | int(adv.kind),
        adv.serial,
        adv.seq,
        int(adv.status),
        int(adv.status2),
        BATTERY_UNKNOWN if adv.battery is None else adv.battery,
        adv.measured_power,
        adv.interval_ms // INTERVAL_UNIT_MS,
    )
    return head + adv.auth


def signed_portion(body: bytes) -> bytes:
    """Bytes 0-11 of a 20-byte body: what the authentication field covers."""
    _check_length(body, BODY_SIZE, "body")
    return bytes(body[:SIGNED_SIZE])


def _check_length(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise PayloadError(f"{what} has {len(data)} bytes, expected {size}", reason="truncated")
    if len(data) > size:
        raise PayloadError(f"{what} has {len(data)} bytes, expected {size}", reason="too_long")


def validate_bodies(bodies: NDArray[np.void]) -> NDArray[np.uint8]:
    """Reason code per body, shape (N,) uint8: 0 valid, else an index into BODY_REASONS.

    ``bodies`` is a BODY_DTYPE array (N,). When a body breaks several rules the first in
    BODY_REASONS order is reported.
    """
    vk = bodies["version_kind"]
    kind = vk & 0x0F
    battery = bodies["battery"]
    checks = (
        (vk >> 4) != PROTOCOL_VERSION,
        (kind < TagKind.INFANT) | (kind > TagKind.REFERENCE),
        (bodies["status2"] & STATUS2_RESERVED) != 0,
        (battery > 100) & (battery != BATTERY_UNKNOWN),
        bodies["interval"] == 0,
    )
    code = np.zeros(bodies.shape, dtype=np.uint8)
    for index in range(len(checks), 0, -1):  # last assignment wins: the first failing rule
        code[checks[index - 1]] = index
    return code


def as_bodies(raw: ArrayLike | bytes | bytearray | memoryview) -> NDArray[np.void]:
    """View ``raw`` as a BODY_DTYPE array (N,) without copying when possible.

    Accepts bytes-like data (length a multiple of 20), a uint8 array (N, 20) or (20,), or a
    BODY_DTYPE array (for example ``records["body"]`` of a native batch).
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        data = memoryview(raw).cast("B")
        if len(data) % BODY_SIZE:
            raise PayloadError(
                f"{len(data)} bytes is not a whole number of {BODY_SIZE}-byte bodies",
                reason="length_mismatch",
            )
        return np.frombuffer(data, dtype=BODY_DTYPE)
    arr = np.asarray(raw)
    if arr.dtype == BODY_DTYPE:
        return arr.reshape(-1)
    if arr.dtype != np.uint8 or arr.shape[-1:] != (BODY_SIZE,) or arr.ndim > 2:
        raise PayloadError(
            f"expected uint8 bodies of shape (N, 20), got {arr.dtype} {arr.shape}",
            reason="length_mismatch",
        )
    return np.ascontiguousarray(arr).reshape(-1, BODY_SIZE).view(BODY_DTYPE).reshape(-1)


def decode_bodies(
    raw: ArrayLike | bytes | bytearray | memoryview, *, strict: bool = False
) -> tuple[NDArray[np.void], NDArray[np.bool_]]:
    """Decode N bodies at once: (bodies BODY_DTYPE (N,), valid bool (N,)).

    Invalid rows stay in the array and are flagged False in ``valid``; with ``strict`` the
    first invalid row raises PayloadError instead. Fields are raw: kind is
    ``version_kind & 0x0F``, battery 255 means unknown, interval is in units of 100 ms.
    """
    bodies = as_bodies(raw)
    code = validate_bodies(bodies)
    valid = code == 0
    if strict and not valid.all():
        row = int(np.argmin(valid))
        raise PayloadError(
            f"body {row}: {_describe(bodies[row], int(code[row]))}",
            reason=BODY_REASONS[int(code[row])],
        )
    return bodies, valid


def _describe(body: np.void, code: int) -> str:
    vk = int(body["version_kind"])
    if code == 1:
        return f"protocol version {vk >> 4} is not {PROTOCOL_VERSION}"
    if code == 2:
        return f"tag kind {vk & 0x0F} is not one of 1-4"
    if code == 3:
        return f"status2 0x{int(body['status2']):02x} sets reserved bits 5-7"
    if code == 4:
        return f"battery {int(body['battery'])} is neither 0-100 nor 255 (unknown)"
    return "advertising interval 0 (must be 1-255 units of 100 ms)"


def decode_body(body: bytes | bytearray | memoryview) -> Advertisement:
    """Decode one 20-byte body; raises PayloadError (truncated, too_long, bad_version, ...)."""
    data = bytes(body)
    _check_length(data, BODY_SIZE, "body")
    decode_bodies(data, strict=True)
    vk, serial, seq, status, status2, battery, power, interval = _BODY_STRUCT.unpack_from(data)
    return Advertisement(
        kind=TagKind(vk & 0x0F),
        serial=serial,
        seq=seq,
        status=Status(status),
        status2=Status2(status2),
        battery=None if battery == BATTERY_UNKNOWN else battery,
        measured_power=power,
        interval_ms=interval * INTERVAL_UNIT_MS,
        auth=data[SIGNED_SIZE:],
    )


def manufacturer_data(adv: Advertisement, company_id: int = COMPANY_ID) -> bytes:
    """Company id (little-endian) + body, 22 bytes: OpenMQTTGateway's ``manufacturerdata``."""
    _check_range("company_id", company_id, 0, 0xFFFF)
    return company_id.to_bytes(2, "little") + encode_body(adv)


def parse_manufacturer_data(
    data: bytes | bytearray | memoryview, company_id: int = COMPANY_ID
) -> Advertisement:
    """Inverse of :func:`manufacturer_data`; a different company id raises ``foreign_company``."""
    raw = bytes(data)
    if len(raw) < 2:
        raise PayloadError(f"manufacturer data has {len(raw)} bytes", reason="truncated")
    found = int.from_bytes(raw[:2], "little")
    if found != company_id:
        raise PayloadError(
            f"company id 0x{found:04x} is not 0x{company_id:04x}", reason="foreign_company"
        )
    _check_length(raw, MANUFACTURER_DATA_SIZE, "manufacturer data")
    return decode_body(raw[2:])


def adv_data(adv: Advertisement, company_id: int = COMPANY_ID) -> bytes:
    """The full legacy advertising data: Flags AD + Manufacturer Specific Data AD (27 bytes)."""
    md = manufacturer_data(adv, company_id)
    flags = bytes([2, AD_TYPE_FLAGS, AD_FLAGS])
    return flags + bytes([1 + len(md), AD_TYPE_MANUFACTURER]) + md


def parse_adv_data(
    data: bytes | bytearray | memoryview, company_id: int = COMPANY_ID
) -> Advertisement:
    """Walk the AD structures of legacy advertising data and decode the first rtls one.

    A zero length byte ends the data (padding). Raises PayloadError: ``too_long`` (over 31
    bytes), ``truncated`` (an AD structure runs past the end), ``not_rtls`` (no Manufacturer
    Specific Data with ``company_id``), or the body's own reasons.
    """
    raw = bytes(data)
    if len(raw) > LEGACY_ADV_MAX:
        raise PayloadError(
            f"advertising data has {len(raw)} bytes, legacy maximum is 31", reason="too_long"
        )
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        if length == 0:
            break
        end = pos + 1 + length
        if end > len(raw):
            raise PayloadError(
                f"AD structure at byte {pos} needs {length} bytes, {len(raw) - pos - 1} remain",
                reason="truncated",
            )
        ad_type, payload = raw[pos + 1], raw[pos + 2 : end]
        if ad_type == AD_TYPE_MANUFACTURER and payload[:2] == company_id.to_bytes(2, "little"):
            return parse_manufacturer_data(payload, company_id)
        pos = end
    raise PayloadError(
        f"no manufacturer data with company id 0x{company_id:04x}", reason="not_rtls"
    )


def tag_address(serial: int) -> bytes:
    """The tag's 6-byte static random address in display order: C0 DE + serial big-endian."""
    _check_range("serial", serial, 0, 0xFFFF_FFFF)
    return MAC_PREFIX + serial.to_bytes(4, "big")


def tag_mac(serial: int) -> str:
    """The tag's address as text, e.g. serial 0x00012345 -> ``C0:DE:00:01:23:45``."""
    return format_mac(tag_address(serial))


def tag_serial(mac: str) -> int:
    """Inverse of :func:`tag_mac`; accepts ``C0:DE:..`` or ``c0de..`` (12 hex digits)."""
    address = parse_mac(mac)
    if address[:2] != MAC_PREFIX:
        raise PayloadError(f"{mac!r} is not an rtls tag address (C0:DE:...)", reason="bad_mac")
    return int.from_bytes(address[2:], "big")


def format_mac(address: bytes, *, sep: str = ":", upper: bool = True) -> str:
    """Six address bytes (display order) as text: ``C0:DE:00:01:23:45`` by default."""
    if len(address) != 6:
        raise PayloadError(f"an address has 6 bytes, got {len(address)}", reason="bad_mac")
    text = sep.join(f"{b:02x}" for b in address)
    return text.upper() if upper else text


def parse_mac(mac: str) -> bytes:
    """Text address (colon-separated or 12 hex digits, any case) -> 6 bytes, display order."""
    if not isinstance(mac, str) or not _MAC_RE.fullmatch(mac):
        raise PayloadError(f"{mac!r} is not a MAC address", reason="bad_mac")
    return bytes.fromhex(mac.replace(":", ""))


def address_serials(addresses: ArrayLike) -> tuple[NDArray[np.uint32], NDArray[np.bool_]]:
    """Vectorised :func:`tag_serial`: addresses uint8 (N, 6) -> (serial uint32 (N,), is_tag (N,)).

    ``serial`` is meaningful only where ``is_tag`` (the C0:DE prefix) holds.
    """
    a = np.asarray(addresses, dtype=np.uint8).reshape(-1, 6)
    is_tag = (a[:, 0] == MAC_PREFIX[0]) & (a[:, 1] == MAC_PREFIX[1])
    serial = np.ascontiguousarray(a[:, 2:6]).view(">u4").reshape(-1).astype(np.uint32)
    return serial, is_tag
