"""What simulated gateways publish, per gateway format, as MQTT messages.

Every observation function takes the heard advertisements of one batch as a RECORD_DTYPE array
(:mod:`rtls.batch`) plus the batch start ``t0`` (gateway clock, Unix seconds), so all formats
start from the same data. Formats: ``native`` (the rtls batch), ``espresense`` (ESPresense
room nodes), ``omg`` (OpenMQTTGateway / Theengs) and the door choke-point readers. Topics,
payloads, sources and QoS/retain choices: ``docs/gateway-formats.md``.

Pure functions: no clock, no I/O. Per-message Python work is fine here (simulator side); the
engine's hot path decodes the native batch with ``np.frombuffer``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.advertisement import (
    BODY_SIZE,
    COMPANY_ID,
    MANUFACTURER_DATA_SIZE,
    TagKind,
    decode_bodies,
    format_mac,
)
from rtls.batch import (
    QOS,
    RECORD_DTYPE,
    check_gateway_id,
    encode_batch,
    health_topic,
    obs_topic,
    status_topic,
)
from rtls.errors import ConfigError, PayloadError

SCHEMA_VERSION: Final = 1  # "v" of our own JSON payloads
SIM_FIRMWARE: Final = "rtls-gw-sim/1"


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def __post_init__(self) -> None:
        if (
            not isinstance(self.topic, str)
            or not self.topic
            or any(c in self.topic for c in "+#\0")
            or len(self.topic.encode("utf-8")) > 65535
        ):
            raise PayloadError(f"invalid MQTT topic {self.topic!r}", reason="bad_topic")
        if self.qos not in (0, 1, 2):
            raise PayloadError(f"QoS {self.qos!r} is not 0, 1 or 2", reason="bad_qos")
        if not isinstance(self.payload, bytes):
            raise PayloadError("payload must be bytes", reason="bad_payload")


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """Counters a gateway reports periodically; ``wifi_rssi`` None means a wired gateway."""

    uptime_s: float
    heard: int  # advertisements heard since boot
    published: int  # observations published since boot
    dropped: int  # observations dropped (queue full, publish failed) since boot
    queue: int  # observations waiting to be published now
    firmware: str = SIM_FIRMWARE
    wifi_rssi: int | None = None
    ip: str = "0.0.0.0"


ObservationsFn = Callable[[str, int, float, NDArray[np.void]], list[Message]]
OnlineFn = Callable[[str, float], Message]
WillFn = Callable[[str], Message]
HealthFn = Callable[[str, float, GatewayHealth], Message]


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _check_records(records: NDArray[np.void]) -> NDArray[np.void]:
    recs = np.asarray(records)
    if recs.dtype != RECORD_DTYPE or recs.ndim != 1:
        raise PayloadError(
            f"records must be a 1-D RECORD_DTYPE array, got {recs.dtype} {recs.shape}",
            reason="bad_records",
        )
    return recs


def _check_time(t: float) -> float:
    if not math.isfinite(t):
        raise PayloadError(f"time {t!r} is not finite", reason="bad_time")
    return float(t)


def _has_body(recs: NDArray[np.void]) -> NDArray[np.bool_]:
    """(N,) True where the record carries an advertisement body (not all zero)."""
    raw = np.ascontiguousarray(recs["body"]).view(np.uint8).reshape(len(recs), BODY_SIZE)
    return np.asarray(raw.any(axis=1), dtype=np.bool_)


def _macs(recs: NDArray[np.void], *, sep: str, upper: bool) -> list[str]:
    return [format_mac(bytes(a), sep=sep, upper=upper) for a in recs["address"]]


def _times(t0: float, recs: NDArray[np.void]) -> NDArray[np.float64]:
    return np.round(t0 + recs["dt_us"] * 1e-6, 6)


def _manufacturer_hex(recs: NDArray[np.void], company_id: int) -> list[str]:
    prefix = company_id.to_bytes(2, "little").hex()
    return [
        prefix + bytes(b).hex()
        for b in np.ascontiguousarray(recs["body"]).view(np.uint8).reshape(len(recs), BODY_SIZE)
    ]


# --- native ---------------------------------------------------------------------------------


def native_observations(
    gateway: str, seq: int, t0: float, records: NDArray[np.void]
) -> list[Message]:
    """One ``rtls/v1/gw/<gateway>/obs`` batch (QoS 1, not retained); at most MAX_RECORDS."""
    payload = encode_batch(gateway, seq, t0, _check_records(records))
    return [Message(obs_topic(gateway), payload, QOS, False)]


def native_online(gateway: str, t: float, *, firmware: str = SIM_FIRMWARE) -> Message:
    """Retained ``status`` online message, published right after connecting (QoS 1)."""
    body = {"v": SCHEMA_VERSION, "state": "online", "gateway": check_gateway_id(gateway)}
    body |= {"t": _check_time(t), "firmware": firmware}
    return Message(status_topic(gateway), _json(body), 1, True)


def native_last_will(gateway: str) -> Message:
    """Retained ``status`` offline message: the MQTT last will, also sent on clean shutdown."""
    body = {"v": SCHEMA_VERSION, "state": "offline", "gateway": check_gateway_id(gateway)}
    return Message(status_topic(gateway), _json(body), 1, True)


def native_health(gateway: str, t: float, health: GatewayHealth) -> Message:
    """Periodic ``health`` JSON (QoS 0, not retained); ``wifi_rssi`` omitted when wired."""
    body: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "gateway": check_gateway_id(gateway),
        "t": _check_time(t),
        "uptime_s": round(float(health.uptime_s), 3),
        "heard": health.heard,
        "published": health.published,
        "dropped": health.dropped,
        "queue": health.queue,
        "firmware": health.firmware,
    }
    if health.wifi_rssi is not None:
        body["wifi_rssi"] = health.wifi_rssi
    return Message(health_topic(gateway), _json(body), 0, False)


# --- ESPresense -----------------------------------------------------------------------------

ESPRESENSE_ROOT: Final = "espresense"
# Firmware defaults (ESPresense/ESPresense include/defaults.h, lib/BleFingerprint/rssi.h):
# rssi@1m without beacon calibration = ref_rssi (-65) + DEFAULT_TX (-6) = -71; absorption 3.5
# in the v3 firmware whose payload shape we reproduce (newer firmware defaults to 2.7).
ESPRESENSE_RSSI_1M: Final = -71
ESPRESENSE_ABSORPTION: Final = 3.5
ESPRESENSE_ID_TYPE_MD: Final = 20  # ID_TYPE_MD: fingerprint from manufacturer data
ESPRESENSE_ID_TYPE_KNOWN_MAC: Final = 210  # ID_TYPE_KNOWN_MAC: address listed in known_macs
_SLUG_RE: Final = re.compile(r"[\s\W-]+", re.ASCII)


def espresense_room(name: str) -> str:
    """The node's room slug as the firmware builds it (slugify: non-word runs -> ``_``)."""
    slug = _SLUG_RE.sub("_", name).lower().strip("_")
    if not slug:
        raise PayloadError(f"room name {name!r} has no usable characters", reason="bad_room")
    return slug


def espresense_distance(
    rssi: ArrayLike, rssi_1m: ArrayLike, absorption: float
) -> NDArray[np.float64]:
    """ESPresense's unfiltered distance ``raw`` in metres, elementwise over arrays.

    ``10 ** ((rssi@1m - rssi) / (10 * absorption))`` (BleFingerprint::seen, log-distance model
    with the path-loss exponent called absorption).
    """
    r = np.asarray(rssi, dtype=np.float64)
    ref = np.asarray(rssi_1m, dtype=np.float64)
    return np.asarray(10.0 ** ((ref - r) / (10.0 * absorption)), dtype=np.float64)


def _last_per_address(recs: NDArray[np.void]) -> NDArray[np.intp]:
    """Indices (ascending) of the last record of each address."""
    a = recs["address"].astype(np.uint64)
    keys = np.zeros(len(recs), dtype=np.uint64)
    for i in range(6):
        keys = (keys << np.uint64(8)) | a[:, i]
    _, first_rev = np.unique(keys[::-1], return_index=True)
    return np.sort(len(recs) - 1 - first_rev)


def espresense_observations(
    room: str,
    seq: int,
    t0: float,
    records: NDArray[np.void],
    *,
    rssi_1m: int = ESPRESENSE_RSSI_1M,
    absorption: float = ESPRESENSE_ABSORPTION,
    known_macs: bool = False,
    latest_only: bool = True,
    company_id: int = COMPANY_ID,
) -> list[Message]:
    """``espresense/devices/<id>/<room>`` messages (QoS 0) for records carrying a body.

    The node forwards no manufacturer data, so tag telemetry (tamper, SOS, ...) is lost; only
    presence and RSSI arrive. ``id`` is ``md:<company>:22`` for every tag (a fingerprint of the
    manufacturer data, identical for all tags) unless the node lists the tag addresses in
    ``known_macs`` (``known:<mac>``); tell tags apart by ``mac``. With ``latest_only`` one
    message per address (its last record), as a node reports per device, not per advert.
    ``distance`` is ``raw`` (the firmware's One-Euro filter is not simulated), ``speed`` 0,
    ``interval`` the tag's advertised interval in ms. ``seq`` is unused.
    """
    del seq
    slug = espresense_room(room)
    _check_time(t0)
    recs = _check_records(records)
    recs = recs[_has_body(recs)]
    if latest_only and len(recs):
        recs = recs[_last_per_address(recs)]
    raw = espresense_distance(recs["rssi"], rssi_1m, absorption)
    md_id = f"md:{company_id:04x}:{MANUFACTURER_DATA_SIZE}"
    out = []
    for mac, rssi, dist, interval in zip(
        _macs(recs, sep="", upper=False),
        recs["rssi"].tolist(),
        raw.tolist(),
        recs["body"]["interval"].tolist(),
        strict=True,
    ):
        dev_id, id_type = (
            (f"known:{mac}", ESPRESENSE_ID_TYPE_KNOWN_MAC)
            if known_macs
            else (md_id, ESPRESENSE_ID_TYPE_MD)
        )
        # ArduinoJson insertion order and serialized(String(x, 2)) numbers, as fill() does.
        pairs = (
            ("id", json.dumps(dev_id)),
            ("idType", str(id_type)),
            ("rssi@1m", str(int(rssi_1m))),
            ("rssi", str(rssi)),
            ("raw", f"{dist:.2f}"),
            ("distance", f"{dist:.2f}"),
            ("speed", "0.00"),
            ("mac", json.dumps(mac)),
            ("interval", str(interval * 100)),
        )
        text = "{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}"
        out.append(Message(f"{ESPRESENSE_ROOT}/devices/{dev_id}/{slug}", text.encode(), 0, False))
    return out


def espresense_online(room: str, t: float) -> Message:
    """Retained ``espresense/rooms/<room>/status`` = ``online`` (QoS 0)."""
    _check_time(t)
    return Message(f"{ESPRESENSE_ROOT}/rooms/{espresense_room(room)}/status", b"online", 0, True)


def espresense_last_will(room: str) -> Message:
    """The node's last will: retained ``status`` = ``offline`` (QoS 0)."""
    return Message(f"{ESPRESENSE_ROOT}/rooms/{espresense_room(room)}/status", b"offline", 0, True)


def espresense_telemetry(room: str, t: float, health: GatewayHealth) -> Message:
    """``espresense/rooms/<room>/telemetry`` (QoS 0, not retained, every 15 s on a node).

    Fields as sendTelemetry() names them; counters are omitted when zero as the firmware does.
    The heap/stack diagnostics the firmware adds are not simulated.
    """
    _check_time(t)
    body: dict[str, object] = {"ip": health.ip, "uptime": int(health.uptime_s), "firm": "esp32"}
    if health.wifi_rssi is not None:
        body["rssi"] = health.wifi_rssi
    body["ver"] = health.firmware
    for key, value in (
        ("adverts", health.heard),
        ("reported", health.published),
        ("failed", health.dropped),
    ):
        if value > 0:
            body[key] = value
    return Message(
        f"{ESPRESENSE_ROOT}/rooms/{espresense_room(room)}/telemetry", _json(body), 0, False
    )


# --- OpenMQTTGateway / Theengs --------------------------------------------------------------

OMG_ROOT: Final = "home"
OMG_DEFAULT_TXPOWER: Final = -59  # hass_presence(): calibration when no TX Power AD is heard
OMG_MAC_TYPE_RANDOM: Final = 1  # NimBLE BLE_ADDR_RANDOM (our static random tag addresses)
OMG_ADV_TYPE_NONCONN: Final = 3  # ADV_NONCONN_IND: tags are not connectable


def omg_distance(rssi: ArrayLike, txpower: int = OMG_DEFAULT_TXPOWER) -> NDArray[np.float64]:
    """OpenMQTTGateway's presence distance in metres, elementwise (ZgatewayBT hass_presence).

    ``ratio = rssi / txpower``; ``ratio ** 10`` below 1, else ``0.89976 * ratio ** 7.7095 +
    0.111`` (the AltBeacon curve fit). A non-negative ``txpower`` falls back to -59.
    """
    tx = float(txpower) if txpower < 0 else float(OMG_DEFAULT_TXPOWER)
    ratio = np.maximum(np.asarray(rssi, dtype=np.float64) / tx, 0.0)  # rssi > 0 dBm: 0 m
    return np.where(ratio < 1.0, ratio**10, 0.89976 * ratio**7.7095 + 0.111)


def omg_observations(
    gateway: str,
    seq: int,
    t0: float,
    records: NDArray[np.void],
    *,
    pub_adv_data: bool = True,
    presence: bool = False,
    root: str = OMG_ROOT,
    company_id: int = COMPANY_ID,
) -> list[Message]:
    """``<root>/<gateway>/BTtoMQTT/<MAC>`` messages (QoS 0), one per record with a body.

    JSON keys in firmware order: ``id`` (upper-case MAC with colons), ``mac_type``,
    ``adv_type``, ``manufacturerdata`` (lower-case hex incl. the company id), ``rssi``. The
    firmware default ``pubadvdata`` false strips ``mac_type``/``adv_type``/
    ``manufacturerdata``: an installation must enable it or tag telemetry is lost
    (``pub_adv_data=False`` simulates that). ``presence`` (HA room presence on) adds
    ``distance`` and first publishes the same JSON to ``<root>/presence/<gateway>``. Tags send
    neither a name nor a TX Power AD, so ``name``/``txpower`` never appear. ``seq`` is unused.
    """
    del seq
    check_gateway_id(gateway)
    _check_time(t0)
    recs = _check_records(records)
    recs = recs[_has_body(recs)]
    macs = _macs(recs, sep=":", upper=True)
    mdata = _manufacturer_hex(recs, company_id)
    dist = omg_distance(recs["rssi"]).tolist()
    out = []
    for mac, md, rssi, d in zip(macs, mdata, recs["rssi"].tolist(), dist, strict=True):
        body: dict[str, object] = {"id": mac}
        if pub_adv_data:
            body |= {"mac_type": OMG_MAC_TYPE_RANDOM, "adv_type": OMG_ADV_TYPE_NONCONN}
            body["manufacturerdata"] = md
        body["rssi"] = rssi
        if presence:
            body["distance"] = round(d, 6)
            out.append(Message(f"{root}/presence/{gateway}", _json(body), 0, False))
        topic = f"{root}/{gateway}/BTtoMQTT/{mac.replace(':', '')}"
        out.append(Message(topic, _json(body), 0, False))
    return out


def omg_online(gateway: str, t: float) -> Message:
    """Retained ``<root>/<gateway>/LWT`` = ``online`` (QoS 0), sent after connecting."""
    _check_time(t)
    return Message(f"{OMG_ROOT}/{check_gateway_id(gateway)}/LWT", b"online", 0, True)


def omg_last_will(gateway: str) -> Message:
    """The gateway's last will: retained ``<root>/<gateway>/LWT`` = ``offline`` (QoS 0)."""
    return Message(f"{OMG_ROOT}/{check_gateway_id(gateway)}/LWT", b"offline", 0, True)


def omg_system(gateway: str, t: float, health: GatewayHealth) -> Message:
    """``<root>/<gateway>/SYStoMQTT`` system health (QoS 0), a subset of stateMeasures().

    ``msgblck`` (blocked messages) carries the dropped count; wired gateways send ``eth``
    true and no Wi-Fi ``rssi``.
    """
    _check_time(t)
    body: dict[str, object] = {
        "uptime": int(health.uptime_s),
        "version": health.firmware,
        "env": "esp32dev-ble",
        "msgblck": health.dropped,
        "eth": health.wifi_rssi is None,
    }
    if health.wifi_rssi is not None:
        body["rssi"] = health.wifi_rssi
    body |= {"ip": health.ip, "modules": ["BT"]}
    return Message(f"{OMG_ROOT}/{check_gateway_id(gateway)}/SYStoMQTT", _json(body), 0, False)


# --- door choke-point readers ---------------------------------------------------------------

DOOR_ROOT: Final = "rtls/v1/door"


def door_read_topic(reader: str) -> str:
    """``rtls/v1/door/<reader>/read``."""
    return f"{DOOR_ROOT}/{check_gateway_id(reader)}/read"


def door_status_topic(reader: str) -> str:
    """``rtls/v1/door/<reader>/status`` (retained online/offline)."""
    return f"{DOOR_ROOT}/{check_gateway_id(reader)}/status"


def door_reads(
    reader: str, door: str, t0: float, records: NDArray[np.void], *, include_rssi: bool = True
) -> list[Message]:
    """One ``read`` message (QoS 1, not retained) per record with a valid tag body.

    JSON: ``v``, ``reader``, ``door``, ``t`` (reader clock, Unix s, microsecond precision),
    ``mac``, ``serial``, ``kind`` (tag kind name, lower case), ``rssi`` (omitted by readers
    that do not measure it). Records whose body is not a valid v1 body are not reads.
    """
    topic = door_read_topic(reader)
    check_gateway_id(door)
    recs = _check_records(records)
    _, valid = decode_bodies(recs["body"])
    recs = recs[valid]
    times = _times(_check_time(t0), recs).tolist()
    kinds = (recs["body"]["version_kind"] & 0x0F).tolist()
    out = []
    for t, mac, serial, kind, rssi in zip(
        times,
        _macs(recs, sep=":", upper=True),
        recs["body"]["serial"].tolist(),
        kinds,
        recs["rssi"].tolist(),
        strict=True,
    ):
        body: dict[str, object] = {"v": SCHEMA_VERSION, "reader": reader, "door": door, "t": t}
        body |= {"mac": mac, "serial": serial, "kind": TagKind(kind).name.lower()}
        if include_rssi:
            body["rssi"] = rssi
        out.append(Message(topic, _json(body), 1, False))
    return out


def door_online(reader: str, t: float, *, firmware: str = SIM_FIRMWARE) -> Message:
    """Retained reader ``status`` online message (QoS 1)."""
    body = {"v": SCHEMA_VERSION, "state": "online", "reader": check_gateway_id(reader)}
    body |= {"t": _check_time(t), "firmware": firmware}
    return Message(door_status_topic(reader), _json(body), 1, True)


def door_last_will(reader: str) -> Message:
    """Retained reader ``status`` offline message: the last will (QoS 1)."""
    body = {"v": SCHEMA_VERSION, "state": "offline", "reader": check_gateway_id(reader)}
    return Message(door_status_topic(reader), _json(body), 1, True)


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayFormat:
    """The message builders of one gateway format, with that format's default options."""

    name: str
    observations: ObservationsFn
    online: OnlineFn
    last_will: WillFn
    health: HealthFn


FORMATS: Final[Mapping[str, GatewayFormat]] = MappingProxyType(
    {
        "native": GatewayFormat(
            "native", native_observations, native_online, native_last_will, native_health
        ),
        "espresense": GatewayFormat(
            "espresense",
            espresense_observations,
            espresense_online,
            espresense_last_will,
            espresense_telemetry,
        ),
        "omg": GatewayFormat("omg", omg_observations, omg_online, omg_last_will, omg_system),
    }
)


def gateway_format(name: str) -> GatewayFormat:
    """The format called ``name`` in a site file; ConfigError lists the known names."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ConfigError(f"unknown gateway format {name!r} (known: {known})") from None
