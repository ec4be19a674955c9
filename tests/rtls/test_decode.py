"""Tests for rtls.decode: golden messages per format, real firmware captures, native batch
records, status and door readers, counters, and fuzzing (decode_safely never raises)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways import formats as gwf
from rtls.advertisement import (
    Advertisement,
    Status,
    Status2,
    TagKind,
    encode_body,
    parse_mac,
    tag_address,
)
from rtls.batch import encode_batch, make_records
from rtls.decode import (
    MAX_PAYLOAD_BYTES,
    MESSAGE_REASONS,
    SUBSCRIPTIONS,
    DecodeCounters,
    Decoded,
    Decoder,
    decode,
    decode_many,
    decode_safely,
)
from rtls.directory import Directory
from rtls.errors import PayloadError
from rtls.observations import OBS_DTYPE

GOLDEN_DIR = Path(__file__).parent / "golden"
SIM = json.loads((Path(__file__).parents[1] / "gateways" / "golden" / "messages.json").read_text())
REAL = json.loads((GOLDEN_DIR / "real_messages.json").read_text())
INPUT = SIM["input"]
T0 = float(INPUT["t0"])
RX = 1_700_000_123.25  # the engine's receive time in these tests
BATCH_REASONS = (
    "truncated",
    "bad_magic",
    "bad_flags",
    "bad_header",
    "bad_gateway_id",
    "length_mismatch",
)
ALL_REASONS = frozenset(MESSAGE_REASONS) | set(BATCH_REASONS)

INFANT, BADGE = 74565, 0x0BADCAFE
DIRECTORY = Directory.build(
    gateways=[("gw-01", "native"), ("G2", "native")],
    tags=[("infant-1", INFANT), ("badge-1", BADGE), ("mother-1", 77)],
    readers=[("door-r1", "maternity-east")],
)
INFANT_MAC = "C0:DE:00:01:23:45"
FOREIGN_MAC = "AA:BB:CC:DD:EE:FF"


def _counters() -> DecodeCounters:
    return DecodeCounters.for_directory(DIRECTORY)


def _decode(topic: str, payload: bytes | str, counters: DecodeCounters | None = None) -> Decoded:
    data = payload.encode() if isinstance(payload, str) else payload
    return decode(topic, data, DIRECTORY, counters or _counters(), RX)


def _reason(topic: str, payload: bytes | str) -> str:
    with pytest.raises(PayloadError) as info:
        _decode(topic, payload)
    return info.value.reason


def _input_records() -> np.ndarray:
    rows = INPUT["records"]
    n = len(rows)
    return make_records(
        np.array([r["dt_us"] for r in rows]),
        np.array([list(parse_mac(r["address"])) for r in rows], dtype=np.uint8).reshape(n, 6),
        np.array([r["rssi"] for r in rows]),
        np.array([r["channel"] for r in rows]),
        np.array([list(bytes.fromhex(r["body"])) for r in rows], dtype=np.uint8).reshape(n, 20),
    )


def _tag_of(address: str) -> int:
    return {INFANT_MAC: 0, "C0:DE:0B:AD:CA:FE": 1}.get(address, -1)


def _body(serial: int, **kw: Any) -> np.ndarray:
    adv = Advertisement(kind=kw.pop("kind", TagKind.INFANT), serial=serial, **kw)
    return np.frombuffer(encode_body(adv), dtype=np.uint8)


def _batch(
    addresses: list[bytes],
    rssi: list[int],
    bodies: list[np.ndarray | None],
    *,
    gateway: str = "gw-01",
    seq: int = 1,
    t0: float = T0,
) -> bytes:
    n = len(addresses)
    body = np.zeros((n, 20), dtype=np.uint8)
    for i, b in enumerate(bodies):
        if b is not None:
            body[i] = b
    recs = make_records(
        np.arange(n) * 1000,
        np.array([list(a) for a in addresses], dtype=np.uint8).reshape(n, 6),
        np.array(rssi),
        37,
        body,
    )
    return encode_batch(gateway, seq, t0, recs)


# --- golden messages: the simulator's hand-checked output, decoded -------------------------


def test_golden_native_batch() -> None:
    exp = SIM["native"]["observations"][0]
    payload = bytes.fromhex("".join(exp["payload_segments"]))
    counters = _counters()
    out = _decode(exp["topic"], payload, counters)
    rows = [r for r in INPUT["records"] if _tag_of(r["address"]) >= 0]
    assert len(rows) == 3  # the foreign AA:BB:.. record is not an observation
    assert out.obs.dtype == OBS_DTYPE
    np.testing.assert_allclose(out.obs["t"], [T0 + r["dt_us"] * 1e-6 for r in rows], atol=1e-6)
    assert out.obs["gateway"].tolist() == [0, 0, 0]
    assert out.obs["tag"].tolist() == [_tag_of(r["address"]) for r in rows]
    assert out.obs["rssi"].tolist() == [r["rssi"] for r in rows]
    bodies = [bytes.fromhex(r["body"]) for r in rows]
    assert out.telemetry["tag"].tolist() == out.obs["tag"].tolist()
    assert out.telemetry["seq"].tolist() == [int.from_bytes(b[5:7], "little") for b in bodies]
    assert out.telemetry["status"].tolist() == [b[7] for b in bodies]
    assert out.telemetry["status2"].tolist() == [b[8] for b in bodies]
    assert out.telemetry["battery"].tolist() == [b[9] for b in bodies]
    assert out.telemetry["interval"].tolist() == [b[11] for b in bodies]
    assert out.telemetry["status"][2] & Status.TAMPER
    assert out.telemetry["status2"][2] & Status2.BURST_REPEAT
    assert len(out.unknown) == 0
    assert counters.foreign == 1
    assert counters.observations == 3
    assert counters.telemetry == 3
    assert counters.gateway_last_heard[0] == RX
    assert math.isnan(counters.gateway_last_heard[1])


def test_golden_espresense_devices_carry_presence_only() -> None:
    counters = _counters()
    outs = [_decode(m["topic"], m["payload"], counters) for m in SIM["espresense"]["observations"]]
    obs = Decoded.concat(outs).obs
    assert obs["tag"].tolist() == [1, 0]
    assert obs["rssi"].tolist() == [-75, -60]
    assert obs["t"].tolist() == [RX, RX]  # ESPresense carries no gateway time
    assert obs["gateway"].tolist() == [0, 0]  # room slug gw_01 is gateway gw-01
    assert all(len(o.telemetry) == 0 for o in outs)


def test_golden_omg_devices_carry_telemetry() -> None:
    counters = _counters()
    outs = [_decode(m["topic"], m["payload"], counters) for m in SIM["omg"]["observations"]]
    both = Decoded.concat(outs)
    rows = [r for r in INPUT["records"] if _tag_of(r["address"]) >= 0]
    assert both.obs["tag"].tolist() == [_tag_of(r["address"]) for r in rows]
    assert both.obs["rssi"].tolist() == [r["rssi"] for r in rows]
    assert both.telemetry["seq"].tolist() == [
        int.from_bytes(bytes.fromhex(r["body"])[5:7], "little") for r in rows
    ]
    assert counters.telemetry == 3
    assert not counters.records


def test_golden_door_reads() -> None:
    counters = _counters()
    outs = [_decode(m["topic"], m["payload"], counters) for m in SIM["door"]["reads"]]
    reads = Decoded.concat(outs).reads
    rows = [r for r in INPUT["records"] if _tag_of(r["address"]) >= 0]
    np.testing.assert_allclose(reads["t"], [T0 + r["dt_us"] * 1e-6 for r in rows], atol=1e-6)
    assert reads["reader"].tolist() == [0, 0, 0]
    assert reads["tag"].tolist() == [_tag_of(r["address"]) for r in rows]
    assert reads["rssi"].tolist() == [r["rssi"] for r in rows]
    assert counters.reads == 3
    assert counters.reader_last_heard[0] == RX


@pytest.mark.parametrize("fmt", ["native", "espresense", "omg", "door"])
def test_golden_status_messages(fmt: str) -> None:
    source = "reader" if fmt == "door" else "gateway"
    online = _decode(SIM[fmt]["online"]["topic"], SIM[fmt]["online"]["payload"]).status
    will = _decode(SIM[fmt]["last_will"]["topic"], SIM[fmt]["last_will"]["payload"]).status
    assert [(s.source, s.index, s.state) for s in online] == [(source, 0, "online")]
    assert [(s.source, s.index, s.state) for s in will] == [(source, 0, "offline")]
    assert will[0].t == RX  # the will carries no time
    if fmt == "native":
        assert online[0].t == T0
    if fmt == "door":
        return
    health = _decode(SIM[fmt]["health"]["topic"], SIM[fmt]["health"]["payload"]).status[0]
    h = INPUT["health"]
    assert health.state == "health"
    assert health.firmware == h["firmware"]
    assert health.wifi_rssi == h["wifi_rssi"]
    assert health.dropped == h["dropped"]
    assert health.uptime_s == pytest.approx(h["uptime_s"], abs=1.0)
    if fmt != "omg":
        assert (health.heard, health.published) == (h["heard"], h["published"])


# --- the simulator's encoders, on random input ---------------------------------------------

KNOWN_SERIALS = [INFANT, BADGE, 77]


@st.composite
def _records(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    """Random records: known tags, unknown C0:DE tags and foreign devices, valid RSSI."""
    n = draw(st.integers(0, 40))
    kinds = draw(
        st.lists(st.sampled_from(["known", "stranger", "foreign"]), min_size=n, max_size=n)
    )
    addresses, bodies, tags = [], [], []
    for kind in kinds:
        serial = draw(st.sampled_from(KNOWN_SERIALS)) if kind == "known" else 5_000_000
        if kind == "foreign":
            addresses.append(list(bytes.fromhex("aabbccddeeff")))
            bodies.append(np.zeros(20, np.uint8))
        else:
            addresses.append(list(tag_address(serial)))
            bodies.append(_body(serial, seq=draw(st.integers(0, 0xFFFF))))
        tags.append(KNOWN_SERIALS.index(serial) if kind == "known" else -1)
    rssi = draw(st.lists(st.integers(-127, 20), min_size=n, max_size=n))
    recs = make_records(
        np.sort(np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), int)),
        np.array(addresses, dtype=np.uint8).reshape(n, 6),
        np.array(rssi, dtype=int),
        37,
        np.array(bodies, dtype=np.uint8).reshape(n, 20),
    )
    return recs, tags


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records())
def test_native_batch_of_n_records_gives_n_observations_minus_unknown(
    data: tuple[np.ndarray, list[int]],
) -> None:
    recs, tags = data
    (msg,) = gwf.native_observations("G2", 7, T0, recs)
    counters = _counters()
    out = _decode(msg.topic, msg.payload, counters)
    known = [t for t in tags if t >= 0]
    assert out.obs["tag"].tolist() == known
    assert out.obs["rssi"].tolist() == recs["rssi"][np.array(tags) >= 0].tolist()
    assert set(out.obs["gateway"].tolist()) <= {1}
    assert out.telemetry["tag"].tolist() == known
    assert len(out.unknown) == tags.count(-1) - counters.foreign
    assert counters.records["unknown_tag"] == len(out.unknown)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records())
def test_every_format_locates_the_same_known_tags(data: tuple[np.ndarray, list[int]]) -> None:
    recs, tags = data
    known = {t for t in tags if t >= 0}
    for fmt, gw in (("native", "G2"), ("espresense", "G2"), ("omg", "G2")):
        counters = _counters()
        msgs = gwf.FORMATS[fmt].observations(gw, 1, T0, recs)
        out = Decoded.concat([_decode(m.topic, m.payload, counters) for m in msgs])
        assert set(out.obs["tag"].tolist()) == known, fmt
        assert counters.rejected_total == 0


# --- real firmware messages -----------------------------------------------------------------


def _real_directory(with_captures: bool) -> Directory:
    extra = {t["mac"]: t["id"] for t in REAL["tags"]} if with_captures else None
    return Directory.build(
        gateways=[tuple(g) for g in REAL["gateways"]],
        tags=[(t["id"], t["serial"]) for t in REAL["tags"]],
        extra_addresses=extra,
    )


@pytest.mark.parametrize("msg", REAL["messages"], ids=lambda m: m["name"])
def test_real_messages(msg: dict[str, Any]) -> None:
    directory = _real_directory(with_captures=True)
    counters = DecodeCounters.for_directory(directory)
    tag_ids, gw_ids = list(directory.tag_ids), list(directory.gateway_ids)
    expect = msg["expect"]
    out = decode_safely(msg["topic"], msg["payload"].encode(), directory, counters, RX)
    if "rejected" in expect:
        assert dict(counters.rejected) == {expect["rejected"]: 1}
        assert out.empty
        return
    assert not counters.rejected
    assert dict(counters.records) == expect.get("records", {})
    got = [
        {"gateway": gw_ids[g], "tag": tag_ids[t], "rssi": pytest.approx(r, abs=1e-4)}
        for g, t, r in zip(out.obs["gateway"], out.obs["tag"], out.obs["rssi"], strict=True)
    ]
    assert got == expect.get("obs", [])
    assert len(out.telemetry) == 0  # none of these devices is an rtls tag
    if "status" in expect:
        (status,) = out.status
        want = expect["status"]
        assert gw_ids[status.index] == want["gateway"]
        assert status.state == want["state"]
        assert status.uptime_s == want["uptime_s"]
        assert status.wifi_rssi == want["wifi_rssi"]
        assert status.firmware == want["firmware"]


def test_real_devices_are_foreign_without_a_mapping() -> None:
    directory = _real_directory(with_captures=False)
    counters = DecodeCounters.for_directory(directory)
    for msg in REAL["messages"]:
        out = decode_safely(msg["topic"], msg["payload"].encode(), directory, counters, RX)
        assert len(out.obs) == 0
        assert len(out.unknown) == 0  # not rtls tags: counted, not listed
    located = sum("obs" in m["expect"] for m in REAL["messages"])
    assert counters.foreign == located
    assert counters.observations == 0


# --- native batch records ------------------------------------------------------------------


def test_invalid_body_of_a_known_tag_keeps_the_observation() -> None:
    bad = _body(INFANT).copy()
    bad[0] = 0x21  # protocol version 2
    reserved = _body(BADGE).copy()
    reserved[8] = 0x80
    counters = _counters()
    payload = _batch([tag_address(INFANT), tag_address(BADGE)], [-60, -70], [bad, reserved])
    out = _decode("rtls/v1/gw/gw-01/obs", payload, counters)
    assert out.obs["tag"].tolist() == [0, 1]
    assert len(out.telemetry) == 0
    assert counters.records == {"body_bad_version": 1, "body_reserved_bits": 1}


def test_body_of_another_serial_is_not_trusted() -> None:
    counters = _counters()
    payload = _batch([tag_address(INFANT)], [-60], [_body(BADGE, status=Status.SOS)])
    out = _decode("rtls/v1/gw/gw-01/obs", payload, counters)
    assert out.obs["tag"].tolist() == [0]
    assert len(out.telemetry) == 0
    assert counters.records == {"body_serial_mismatch": 1}


def test_absurd_rssi_drops_the_observation_not_the_alarm() -> None:
    counters = _counters()
    sos = _body(INFANT, status=Status.SOS)
    payload = _batch([tag_address(INFANT)] * 4, [-128, 127, 21, -50], [sos] * 4)
    out = _decode("rtls/v1/gw/gw-01/obs", payload, counters)
    assert out.obs["rssi"].tolist() == [-50]
    assert len(out.telemetry) == 4
    assert (out.telemetry["status"] & Status.SOS).all()
    assert counters.records == {"bad_rssi": 3}


def test_unknown_tags_are_listed_not_located() -> None:
    counters = _counters()
    stranger = tag_address(123456)
    clone = bytes.fromhex("112233445566")  # a valid body of a known serial, foreign address
    payload = _batch(
        [stranger, stranger, clone, bytes.fromhex("aabbccddeeff")],
        [-60, -61, -62, -63],
        [None, _body(123456), _body(INFANT), None],
        t0=T0,
    )
    out = _decode("rtls/v1/gw/gw-01/obs", payload, counters)
    assert len(out.obs) == 0
    assert out.unknown["address"].tolist() == [
        int.from_bytes(a, "big") for a in (stranger, stranger, clone)
    ]
    assert out.unknown["serial"].tolist() == [0, 123456, INFANT]
    assert out.unknown["gateway"].tolist() == [0, 0, 0]
    assert counters.foreign == 1
    assert counters.records == {"unknown_tag": 3}
    listed = {u.mac: u for u in counters.unknown_tags()}
    entry = listed["C0:DE:00:01:E2:40"]
    assert (entry.count, entry.serial, entry.gateway) == (2, 123456, 0)
    assert entry.first_seen == pytest.approx(T0)
    assert entry.last_seen == pytest.approx(T0 + 0.001)
    assert listed["11:22:33:44:55:66"].serial == INFANT


def test_unknown_list_is_bounded() -> None:
    counters = DecodeCounters.for_directory(DIRECTORY, max_unknown=2)
    addresses = [tag_address(900 + i) for i in range(5)]
    _decode("rtls/v1/gw/gw-01/obs", _batch(addresses, [-60] * 5, [None] * 5), counters)
    assert len(counters.unknown) == 2
    assert counters.unknown_overflow == 3
    assert counters.records["unknown_tag"] == 5


def test_batch_errors_keep_their_reason() -> None:
    payload = _batch([tag_address(INFANT)], [-60], [None])
    assert _reason("rtls/v1/gw/gw-01/obs", payload[:-1]) == "truncated"
    assert _reason("rtls/v1/gw/gw-01/obs", b"XXXX" + payload[4:]) == "bad_magic"
    assert _reason("rtls/v1/gw/gw-01/obs", payload + b"\0") == "length_mismatch"
    unknown = _batch([tag_address(INFANT)], [-60], [None], gateway="gw-99")
    assert _reason("rtls/v1/gw/gw-99/obs", unknown) == "unknown_gateway"


def test_a_batch_naming_another_gateway_than_its_topic_is_rejected() -> None:
    # the broker's ACL proves the topic (docs/mqtt-security.md): gw-01 may not speak for G2
    payload = _batch([tag_address(INFANT)], [-60], [None], gateway="G2")
    assert _decode("rtls/v1/gw/G2/obs", payload).obs["gateway"].tolist() == [1]
    for decode_one in (True, False):
        counters = _counters()
        if decode_one:
            out = decode_safely("rtls/v1/gw/gw-01/obs", payload, DIRECTORY, counters, RX)
        else:
            out = decode_many([("rtls/v1/gw/gw-01/obs", payload, RX)], DIRECTORY, counters)
        assert len(out.obs) == 0 and counters.rejected == {"gateway_mismatch": 1}


def test_repeated_batch_is_dropped_and_gaps_are_counted() -> None:
    decoder = Decoder(DIRECTORY)
    first = _batch([tag_address(INFANT)], [-60], [None], seq=10)
    assert len(decoder.decode_safely("rtls/v1/gw/gw-01/obs", first, RX).obs) == 1
    assert len(decoder.decode_safely("rtls/v1/gw/gw-01/obs", first, RX).obs) == 0
    assert decoder.counters.rejected == {"duplicate": 1}
    rebooted = _batch([tag_address(INFANT)], [-60], [None], seq=10, t0=T0 + 60)
    assert len(decoder.decode_safely("rtls/v1/gw/gw-01/obs", rebooted, RX).obs) == 1
    later = _batch([tag_address(INFANT)], [-60], [None], seq=14, t0=T0 + 61)
    decoder.decode_safely("rtls/v1/gw/gw-01/obs", later, RX)
    assert decoder.counters.batches_lost.tolist() == [3, 0]
    assert decoder.counters.gateway_observations.tolist() == [3, 0]


# --- JSON formats: status, health, door readers, field checks -------------------------------


def _native_json(**fields: Any) -> str:
    return json.dumps({"v": 1, "state": "online", "gateway": "gw-01", "t": T0} | fields)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_native_json(v=2), "bad_version"),
        (json.dumps({"state": "online"}), "missing_field"),
        (_native_json(state="sleeping"), "bad_state"),
        (_native_json(state=1), "bad_type"),
        (_native_json(gateway="G2"), "gateway_mismatch"),
        (_native_json(t=-5), "bad_time"),
        ('{"v":1,"state":"online","t":NaN}', "bad_time"),
        ("[1, 2]", "bad_type"),
        ("{not json", "bad_json"),
        (b"\xff\xfe{}", "bad_json"),
        ("[" * 100_000, "bad_json"),
    ],
)
def test_native_status_rejections(payload: str | bytes, reason: str) -> None:
    assert _reason("rtls/v1/gw/gw-01/status", payload) == reason


def test_unknown_gateways_are_rejected_in_every_format() -> None:
    device = json.dumps({"id": INFANT_MAC, "mac": "c0de00012345", "rssi": -60})
    for topic in (
        "rtls/v1/gw/nope/status",
        "rtls/v1/gw/nope/health",
        "espresense/devices/md:ffff:22/nope",
        "espresense/rooms/nope/status",
        "espresense/rooms/nope/telemetry",
        "home/nope/BTtoMQTT/C0DE00012345",
        "home/nope/LWT",
        "home/nope/SYStoMQTT",
    ):
        assert _reason(topic, device) == "unknown_gateway", topic
    assert _reason("rtls/v1/door/nope/read", device) == "unknown_reader"


@pytest.mark.parametrize("rssi", ["NaN", "Infinity", "-Infinity", "-300", "25", "1e999"])
@pytest.mark.parametrize(
    ("topic", "template"),
    [
        ("espresense/devices/x/gw_01", '{"mac":"c0de00012345","rssi":%s}'),
        ("home/gw-01/BTtoMQTT/C0DE00012345", '{"id":"C0:DE:00:01:23:45","rssi":%s}'),
        (
            "rtls/v1/door/door-r1/read",
            '{"v":1,"reader":"door-r1","t":1.5,"mac":"C0:DE:00:01:23:45","rssi":%s}',
        ),
        ("rtls/v1/gw/gw-01/health", '{"v":1,"gateway":"gw-01","wifi_rssi":%s}'),
        ("home/gw-01/SYStoMQTT", '{"uptime":5,"rssi":%s}'),
    ],
)
def test_absurd_rssi_in_json_is_bad_rssi(topic: str, template: str, rssi: str) -> None:
    assert _reason(topic, template % rssi) == "bad_rssi"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("espresense/devices/x/gw_01", '{"rssi":-60}', "missing_field"),
        ("espresense/devices/x/gw_01", '{"mac":"c0de00012345"}', "missing_field"),
        ("espresense/devices/x/gw_01", '{"mac":12,"rssi":-60}', "bad_type"),
        ("espresense/devices/x/gw_01", '{"mac":"c0de","rssi":-60}', "bad_mac"),
        ("espresense/devices/x/gw_01", '{"mac":"c0de00012345","rssi":"-60"}', "bad_type"),
        ("espresense/devices/x/gw_01", '{"mac":"c0de00012345","rssi":true}', "bad_type"),
        ("espresense/rooms/gw_01/status", "maybe", "bad_state"),
        ("espresense/rooms/gw_01/telemetry", '{"uptime":-1}', "bad_value"),
        ("espresense/rooms/gw_01/telemetry", '{"adverts":1.5}', "bad_value"),
        ("home/gw-01/BTtoMQTT/X", '{"id":"C0:DE:00:01:23:45","rssi":[]}', "bad_type"),
        ("home/gw-01/LWT", "", "bad_state"),
        ("home/gw-01/SYStoMQTT", '{"msgblck":-3}', "bad_value"),
        ("home/gw-01/SYStoMQTT", '{"uptime":%s}' % ("9" * 400), "bad_value"),
        ("rtls/v1/gw/gw-01/health", '{"v":1,"heard":"many"}', "bad_type"),
        ("rtls/v1/gw/gw-01/health", '{"v":1,"firmware":"%s"}' % ("x" * 2000), "bad_value"),
        ("rtls/v1/door/door-r1/read", '{"v":1,"mac":"C0:DE:00:01:23:45"}', "missing_field"),
        ("rtls/v1/door/door-r1/read", '{"v":1,"t":1.0}', "missing_field"),
        ("rtls/v1/door/door-r1/read", '{"v":1,"t":1.0,"serial":-4}', "bad_value"),
        ("rtls/v1/door/door-r1/read", '{"v":1,"t":1.0,"serial":4294967296}', "bad_value"),
        (
            "rtls/v1/door/door-r1/read",
            '{"v":1,"reader":"r2","t":1.0,"serial":1}',
            "reader_mismatch",
        ),
        ("rtls/v1/door/door-r1/status", '{"v":1,"state":"online","reader":"x"}', "reader_mismatch"),
    ],
)
def test_json_field_rejections(topic: str, payload: str, reason: str) -> None:
    assert _reason(topic, payload) == reason


def test_omg_bodies_are_checked_but_observations_kept() -> None:
    good = (0xFFFF).to_bytes(2, "little").hex() + bytes(_body(INFANT, seq=9)).hex()
    cases = {
        good: None,
        good.upper(): None,
        "zz": "body_bad_hex",
        "ff": "body_length",
        good[:-2]: "body_length",
        "4c00" + good[4:]: "body_foreign_company",
        good[:4] + "15" + good[6:]: "body_bad_kind",  # version 1, kind 5
        (0xFFFF).to_bytes(2, "little").hex() + bytes(_body(BADGE)).hex(): "body_serial_mismatch",
    }
    for md, problem in cases.items():
        counters = _counters()
        msg = json.dumps({"id": INFANT_MAC, "manufacturerdata": md, "rssi": -61})
        out = _decode("home/gw-01/BTtoMQTT/C0DE00012345", msg, counters)
        assert out.obs["tag"].tolist() == [0], md
        assert len(out.telemetry) == (1 if problem is None else 0), md
        assert dict(counters.records) == ({} if problem is None else {problem: 1}), md
    counters = _counters()
    plain = _decode("home/gw-01/BTtoMQTT", json.dumps({"id": INFANT_MAC, "rssi": -61}), counters)
    assert len(plain.obs) == 1
    assert counters.records == {"body_missing": 1}


def test_omg_unknown_rtls_tag_is_listed_with_its_serial() -> None:
    md = "ffff" + bytes(_body(4242)).hex()
    msg = json.dumps({"id": "11:22:33:44:55:66", "manufacturerdata": md, "rssi": -70})
    counters = _counters()
    out = _decode("home/gw-01/BTtoMQTT/112233445566", msg, counters)
    assert out.unknown["serial"].tolist() == [4242]
    assert out.unknown["t"].tolist() == [RX]
    assert counters.unknown_tags()[0].mac == "11:22:33:44:55:66"


def test_espresense_md_fingerprint_marks_an_unknown_tag() -> None:
    counters = _counters()
    msg = json.dumps({"id": "md:ffff:22", "mac": "112233445566", "rssi": -70.5})
    out = _decode("espresense/devices/md:ffff:22/gw_01", msg, counters)
    assert out.unknown["rssi"].tolist() == [-70.5]
    phone = json.dumps({"id": "apple:1006:10-12", "mac": "112233445566", "rssi": -70})
    assert _decode("espresense/devices/apple:1006:10-12/gw_01", phone, counters).empty
    assert counters.foreign == 1


def test_espresense_known_macs_ids_and_tag_prefix() -> None:
    recs = make_records(
        np.array([0, 10]),
        np.array([list(tag_address(INFANT)), list(tag_address(999))], dtype=np.uint8),
        np.array([-60, -65]),
        37,
        np.stack([_body(INFANT), _body(999)]),
    )
    counters = _counters()
    msgs = gwf.espresense_observations("gw-01", 1, T0, recs, known_macs=True)
    assert [m.topic.split("/")[2] for m in msgs] == ["known:c0de00012345", "known:c0de000003e7"]
    out = Decoded.concat([_decode(m.topic, m.payload, counters) for m in msgs])
    assert out.obs["tag"].tolist() == [0]
    assert out.unknown["address"].tolist() == [int.from_bytes(tag_address(999), "big")]
    assert counters.foreign == 0


def test_door_read_details() -> None:
    counters = _counters()
    read = {"v": 1, "reader": "door-r1", "door": "elsewhere", "t": 12.5, "mac": INFANT_MAC}
    out = _decode("rtls/v1/door/door-r1/read", json.dumps(read | {"serial": 77}), counters)
    assert out.reads["tag"].tolist() == [0]
    assert math.isnan(out.reads["rssi"][0])
    assert counters.records == {"door_mismatch": 1, "serial_mismatch": 1}
    with pytest.raises(PayloadError, match="seen before"):
        _decode("rtls/v1/door/door-r1/read", json.dumps(read), counters)
    by_serial = {"v": 1, "t": 13.0, "serial": BADGE}
    assert _decode("rtls/v1/door/door-r1/read", json.dumps(by_serial)).reads["tag"].tolist() == [1]
    stranger = {"v": 1, "t": 14.0, "mac": "C0:DE:00:00:00:09", "serial": 9, "rssi": -40}
    counters = _counters()
    out = _decode("rtls/v1/door/door-r1/read", json.dumps(stranger), counters)
    assert len(out.reads) == 0
    assert out.unknown[["reader", "gateway", "serial"]].tolist() == [(0, -1, 9)]
    assert counters.unknown_tags()[0].reader == 0


def test_espresense_status_words_allow_whitespace() -> None:
    (status,) = _decode("espresense/rooms/gw_01/status", b"online\r\n").status
    assert status.state == "online"


# --- dispatcher, limits, subscriptions -------------------------------------------------------


def test_dispatcher_limits() -> None:
    assert _reason("nowhere/else", "{}") == "unknown_topic"
    assert _reason("rtls/v1/gw//obs", b"") == "unknown_topic"
    assert _reason("home/presence/gw-01", "{}") == "unknown_topic"
    huge = b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"
    assert _reason("rtls/v1/gw/gw-01/health", huge) == "too_large"
    with pytest.raises(PayloadError) as info:
        decode("home/gw-01/LWT", "online", DIRECTORY, _counters(), RX)  # type: ignore[arg-type]
    assert info.value.reason == "bad_type"
    with pytest.raises(PayloadError) as info:
        decode("home/gw-01/LWT", b"online", DIRECTORY, _counters(), math.nan)
    assert info.value.reason == "bad_receive_time"
    out = decode("home/gw-01/LWT", bytearray(b"online"), DIRECTORY, _counters(), RX)
    assert out.status[0].state == "online"


def _matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (+ only; no filter here uses #)."""
    f, t = topic_filter.split("/"), topic.split("/")
    return len(f) == len(t) and all(a in ("+", b) for a, b in zip(f, t, strict=True))


def test_subscriptions_cover_every_simulated_topic_once() -> None:
    recs = _input_records()
    health = gwf.GatewayHealth(**INPUT["health"])
    msgs: list[gwf.Message] = []
    for fmt in gwf.FORMATS.values():
        msgs += fmt.observations("gw-01", 1, T0, recs)
        msgs += [fmt.online("gw-01", T0), fmt.last_will("gw-01"), fmt.health("gw-01", T0, health)]
    msgs += gwf.door_reads("door-r1", "maternity-east", T0, recs)
    msgs += [gwf.door_online("door-r1", T0), gwf.door_last_will("door-r1")]
    for msg in msgs:
        matching = [s for s in SUBSCRIPTIONS if _matches(s.topic_filter, msg.topic)]
        assert len(matching) == 1, msg.topic
        assert matching[0].qos == msg.qos, msg.topic
        assert not _decode(msg.topic, msg.payload).empty, msg.topic
    presence = gwf.omg_observations("gw-01", 1, T0, recs, presence=True)
    for msg in presence:
        wanted = any(_matches(s.topic_filter, msg.topic) for s in SUBSCRIPTIONS)
        assert wanted == ("/BTtoMQTT/" in msg.topic), msg.topic


def test_concat_keeps_order_and_counters_summary() -> None:
    decoder = Decoder(DIRECTORY)
    parts = [
        decoder.decode_safely(m["topic"], m["payload"].encode(), RX)
        for m in SIM["omg"]["observations"]
    ]
    parts.append(decoder.decode_safely("home/gw-01/LWT", b"offline", RX))
    parts.append(decoder.decode_safely("bad/topic", b"", RX))
    merged = Decoded.concat(parts)
    assert merged.obs["rssi"].tolist() == [-67, -75, -60]
    assert [s.state for s in merged.status] == ["offline"]
    assert Decoded.concat([]).empty
    summary = decoder.counters.summary()
    assert summary["messages"] == 5
    assert summary["rejected"] == {"unknown_topic": 1}
    assert summary["observations"] == 3
    assert decoder.counters.last_error.startswith("unknown_topic")


# --- decode_many: native batches grouped in one vectorised pass ------------------------------


def _mixed_messages() -> list[tuple[str, bytes, float]]:
    b1 = _batch([tag_address(INFANT), tag_address(999)], [-60, -61], [_body(INFANT), None])
    b2 = _batch([tag_address(BADGE)], [-128], [_body(BADGE)], gateway="G2", seq=5)
    b3 = _batch([tag_address(77)], [-70], [_body(INFANT)], seq=2)  # body of another serial
    omg = SIM["omg"]["observations"][0]
    return [
        ("rtls/v1/gw/gw-01/obs", b1, RX),
        (omg["topic"], omg["payload"].encode(), RX + 1),
        ("rtls/v1/gw/G2/obs", b2, RX + 2),
        ("rtls/v1/gw/gw-01/obs", b1, RX + 3),  # QoS 1 resend in the same group
        ("rtls/v1/gw/gw-01/obs", b1[:-3], RX + 4),
        ("rtls/v1/gw/gw-01/obs", b3, RX + 5),
        ("home/gw-01/LWT", b"online", RX + 6),
    ]


def _same_counters(a: DecodeCounters, b: DecodeCounters) -> None:
    assert (a.messages, a.observations, a.telemetry, a.foreign) == (
        b.messages,
        b.observations,
        b.telemetry,
        b.foreign,
    )
    assert a.rejected == b.rejected
    assert a.records == b.records
    np.testing.assert_array_equal(a.gateway_observations, b.gateway_observations)
    np.testing.assert_array_equal(a.gateway_last_heard, b.gateway_last_heard)
    assert a.unknown.keys() == b.unknown.keys()


def test_decode_many_matches_one_message_at_a_time() -> None:
    messages = _mixed_messages()
    grouped = Decoder(DIRECTORY)
    many = grouped.decode_many(messages)
    single = Decoder(DIRECTORY)
    ones = Decoded.concat([single.decode_safely(*m) for m in messages])
    for field in ("obs", "telemetry", "unknown"):
        assert sorted(getattr(many, field).tolist()) == sorted(getattr(ones, field).tolist())
    assert [s.state for s in many.status] == ["online"]
    _same_counters(grouped.counters, single.counters)
    assert grouped.counters.rejected == {"duplicate": 1, "truncated": 1}
    assert grouped.counters.gateway_last_heard[0] == RX + 6  # the LWT


def test_decode_many_falls_back_when_the_group_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import rtls.decode as module

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(module, "decode_native_batches", broken)
    decoder = Decoder(DIRECTORY)
    out = decoder.decode_many(_mixed_messages())
    assert sorted(out.obs["tag"].tolist()) == [0, 0, 2]
    assert decoder.counters.messages == len(_mixed_messages())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.tuples(st.sampled_from(range(7)), st.integers(0, 200)), max_size=12),
)
def test_decode_many_agrees_with_decode_safely(picks: list[tuple[int, int]]) -> None:
    pool = _mixed_messages()
    messages = []
    for i, cut in picks:
        topic, payload, rx = pool[i]
        messages.append((topic, payload[: len(payload) - cut % 4], rx))
    grouped = Decoder(DIRECTORY)
    many = grouped.decode_many(messages)
    single = Decoder(DIRECTORY)
    ones = Decoded.concat([single.decode_safely(*m) for m in messages])
    assert sorted(many.obs.tolist()) == sorted(ones.obs.tolist())
    assert sorted(many.telemetry.tolist()) == sorted(ones.telemetry.tolist())
    _same_counters(grouped.counters, single.counters)


# --- fuzzing: decode_safely never raises, every rejection is counted under its reason -------

TOPICS = [
    "rtls/v1/gw/gw-01/obs",
    "rtls/v1/gw/gw-01/status",
    "rtls/v1/gw/gw-01/health",
    "rtls/v1/gw/nope/obs",
    "rtls/v1/door/door-r1/read",
    "rtls/v1/door/door-r1/status",
    "espresense/devices/md:ffff:22/gw_01",
    "espresense/rooms/gw_01",
    "espresense/rooms/gw_01/status",
    "espresense/rooms/gw_01/telemetry",
    "home/gw-01/BTtoMQTT/C0DE00012345",
    "home/gw-01/BTtoMQTT",
    "home/gw-01/LWT",
    "home/gw-01/SYStoMQTT",
]
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([INFANT_MAC, "c0de00012345", "online", "offline", "md:ffff:22", "gw-01"]),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = [
    "v",
    "t",
    "state",
    "gateway",
    "reader",
    "door",
    "mac",
    "id",
    "rssi",
    "serial",
    "manufacturerdata",
    "uptime",
    "uptime_s",
    "heard",
    "msgblck",
    "wifi_rssi",
    "version",
]
_json_payload = st.dictionaries(st.sampled_from(_FIELDS), _json_value, max_size=8).map(
    lambda d: json.dumps(d, allow_nan=True).encode()
)


def _check_counted(topic: str, payload: bytes) -> None:
    try:
        expected: str | None = None
        decode(topic, payload, DIRECTORY, _counters(), RX)
    except PayloadError as exc:
        expected = exc.reason
    counters = _counters()
    out = decode_safely(topic, payload, DIRECTORY, counters, RX)
    assert counters.messages == 1
    if expected is None:
        assert not counters.rejected
    else:
        assert dict(counters.rejected) == {expected: 1}
        assert expected in ALL_REASONS
        assert out.empty
    assert np.isfinite(out.obs["rssi"]).all()
    assert np.isfinite(out.obs["t"]).all()


@settings(max_examples=250, deadline=None)
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=40), payload=st.binary(max_size=300))
def test_fuzz_random_bytes(topic: str, payload: bytes) -> None:
    _check_counted(topic, payload)


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=_json_payload)
def test_fuzz_wrong_json_types(topic: str, payload: bytes) -> None:
    _check_counted(topic, payload)


_VALID_BATCH = _batch(
    [tag_address(INFANT), tag_address(BADGE), bytes.fromhex("aabbccddeeff")],
    [-60, -70, -80],
    [_body(INFANT), _body(BADGE), None],
)


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(0, len(_VALID_BATCH)),
    flips=st.lists(
        st.tuples(st.integers(0, len(_VALID_BATCH) - 1), st.integers(0, 255)), max_size=4
    ),
)
def test_fuzz_truncated_and_corrupted_batches(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(_VALID_BATCH)
    for pos, value in flips:
        data[pos] = value
    _check_counted("rtls/v1/gw/gw-01/obs", bytes(data[:cut]))


# --- urgent messages and late batches (the engine service's early pass) ----------------------


@pytest.mark.parametrize(
    ("status", "urgent"),
    [(Status.NONE, False), (Status.SKIN_CONTACT, False), (Status.TAMPER, True),
     (Status.SOS | Status.SKIN_CONTACT, True), (Status.PULL_CORD, True), (Status.FALL, True),
     (Status.MAN_DOWN, True), (Status.NO_MOVEMENT, True), (Status.PRE_ALARM, True)],
)  # fmt: skip
def test_a_batch_is_urgent_when_one_record_has_an_alarm_bit(status: Status, urgent: bool) -> None:
    from rtls.decode_native import is_urgent

    quiet = [_body(INFANT, status=Status.SKIN_CONTACT)] * 3
    payload = _batch([tag_address(INFANT)] * 4, [-60] * 4, [*quiet, _body(INFANT, status=status)])
    assert is_urgent("rtls/v1/gw/gw-01/obs", payload) is urgent
    assert not is_urgent("rtls/v1/gw/gw-01/health", payload)
    assert not is_urgent("espresense/devices/x/room", payload)


def test_door_reads_are_urgent_and_malformed_batches_are_not() -> None:
    from rtls.decode_native import is_urgent

    assert is_urgent("rtls/v1/door/DR-1/read", b"{}")
    assert not is_urgent("rtls/v1/door/DR-1/status", b"{}")
    payload = _batch([tag_address(INFANT)], [-60], [_body(INFANT, status=Status.TAMPER)])
    assert not is_urgent("rtls/v1/gw/gw-01/obs", payload[:-1])  # truncated
    assert not is_urgent("rtls/v1/gw/gw-01/obs", payload + b"\x01")  # length mismatch
    assert not is_urgent("rtls/v1/gw/gw-01/obs", b"")


def test_a_late_batch_fills_the_gap_it_left() -> None:
    decoder = Decoder(DIRECTORY)
    for seq in (10, 13):  # 11 and 12 missing
        decoder.decode_safely("rtls/v1/gw/gw-01/obs", _batch([tag_address(INFANT)], [-60], [None],
                                                             seq=seq, t0=T0 + seq), RX)  # fmt: skip
    assert decoder.counters.batches_lost.tolist() == [2, 0]
    late = _batch([tag_address(INFANT)], [-60], [None], seq=12, t0=T0 + 12)
    assert len(decoder.decode_safely("rtls/v1/gw/gw-01/obs", late, RX).obs) == 1
    assert decoder.counters.batches_lost.tolist() == [1, 0]
    again = _batch([tag_address(INFANT)], [-60], [None], seq=12, t0=T0 + 12.5)  # not a gap now
    decoder.decode_safely("rtls/v1/gw/gw-01/obs", again, RX)
    assert decoder.counters.batches_lost.tolist() == [1, 0]
