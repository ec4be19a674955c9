"""Tests for gateways.formats: golden messages per format, real firmware captures, options."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateways.formats import (
    FORMATS,
    GatewayHealth,
    Message,
    door_last_will,
    door_online,
    door_reads,
    espresense_distance,
    espresense_observations,
    espresense_room,
    espresense_telemetry,
    gateway_format,
    native_health,
    native_observations,
    omg_distance,
    omg_observations,
    omg_system,
)
from rtls.advertisement import parse_mac, tag_serial
from rtls.batch import MAX_RECORDS, RECORD_DTYPE, decode_batch, make_records
from rtls.errors import ConfigError, PayloadError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "messages.json").read_text())
INPUT = GOLDEN["input"]


def _records(rows: list[dict[str, Any]]) -> np.ndarray:
    n = len(rows)
    return make_records(
        np.array([r["dt_us"] for r in rows], dtype=np.int64),
        np.array([list(parse_mac(r["address"])) for r in rows], dtype=np.uint8).reshape(n, 6),
        np.array([r["rssi"] for r in rows], dtype=np.int64),
        np.array([r["channel"] for r in rows], dtype=np.int64),
        np.array([list(bytes.fromhex(r["body"])) for r in rows], dtype=np.uint8).reshape(n, 20),
    )


RECORDS = _records(INPUT["records"])
HEALTH = GatewayHealth(**INPUT["health"])
GW, SEQ, T0 = INPUT["gateway"], INPUT["seq"], INPUT["t0"]


def _expected_payload(exp: dict[str, Any]) -> bytes:
    if "payload_segments" in exp:
        return bytes.fromhex("".join(exp["payload_segments"]))
    return str(exp["payload"]).encode("utf-8")


def _assert_message(msg: Message, exp: dict[str, Any]) -> None:
    payload = _expected_payload(exp)
    assert msg.topic == exp["topic"]
    assert (msg.qos, msg.retain) == (exp["qos"], exp["retain"])
    assert msg.payload == payload
    if payload[:1] == b"{":
        assert json.loads(msg.payload) == json.loads(payload)


# --- golden messages -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["native", "espresense", "omg"])
def test_golden_observations(name: str) -> None:
    messages = FORMATS[name].observations(GW, SEQ, T0, RECORDS)
    expected = GOLDEN[name]["observations"]
    assert len(messages) == len(expected)
    for msg, exp in zip(messages, expected, strict=True):
        _assert_message(msg, exp)


@pytest.mark.parametrize("name", ["native", "espresense", "omg"])
def test_golden_status_will_and_health(name: str) -> None:
    fmt = gateway_format(name)
    assert fmt.name == name
    _assert_message(fmt.online(GW, T0), GOLDEN[name]["online"])
    _assert_message(fmt.last_will(GW), GOLDEN[name]["last_will"])
    _assert_message(fmt.health(GW, T0, HEALTH), GOLDEN[name]["health"])


def test_golden_door_reader_messages() -> None:
    reads = door_reads(INPUT["reader"], INPUT["door"], T0, RECORDS)
    assert len(reads) == len(GOLDEN["door"]["reads"])
    for msg, exp in zip(reads, GOLDEN["door"]["reads"], strict=True):
        _assert_message(msg, exp)
    _assert_message(door_online(INPUT["reader"], T0), GOLDEN["door"]["online"])
    _assert_message(door_last_will(INPUT["reader"]), GOLDEN["door"]["last_will"])


def test_native_batch_decodes_back_to_the_same_records() -> None:
    (msg,) = native_observations(GW, SEQ, T0, RECORDS)
    batch = decode_batch(msg.payload)
    assert (batch.gateway, batch.seq, batch.t0) == (GW, SEQ, T0)
    assert batch.records.tobytes() == RECORDS.tobytes()


# --- real firmware messages: our output has the same shape -----------------------------------

# ESPresense device messages as published by real nodes:
# - ESPresense/ESPresense issue #89 (2021-10): iPhone, no idType in that firmware.
# - enesbcs/rpieasy issue #249 (2022-02): Mi Band 3 from an ESPresense v2/v3 node.
ESPRESENSE_CAPTURES = [
    {
        "id": "apple:iphone12-3",
        "name": "iPhone",
        "disc": "341a3cf77222",
        "rssi@1m": -65,
        "rssi": -65,
        "mac": "512ac8f9178d",
        "raw": 1,
        "distance": 1.53,
        "speed": 0,
    },
    {
        "id": "mifit:f647c1324173",
        "name": "Mi Band 3",
        "idType": 55,
        "rssi@1m": -71,
        "rssi": -65,
        "raw": 0.67,
        "distance": 0.69,
        "speed": 0,
        "mac": "f647c1324123",
    },
]
# ESPresense fields our simulated node sends that the captures above lack (later firmware).
ESPRESENSE_LATER_FIELDS = {"interval"}

# OpenMQTTGateway / Theengs BTtoMQTT messages:
# - theengs/gateway README "decoder" example (an OMG esp32dev-ble-mqtt-undecoded payload).
# - theengs/decoder Python example: eufy T9146, with adv_type and name.
OMG_CAPTURES = [
    {
        "id": "54:94:5E:9F:64:C4",
        "mac_type": 1,
        "manufacturerdata": "4c0010060319247bbc68",
        "rssi": -74,
        "txpower": 12,
    },
    {
        "id": "CF:E5:0C:03:01:EC",
        "mac_type": 0,
        "adv_type": 0,
        "name": "eufy T9146",
        "manufacturerdata": "cfe50c0301eccfa2128c232624540100874a9146",
        "rssi": -61,
    },
    # A user's notes in a public repository after setting {"pubadvdata":true} on OMG.
    {
        "id": "28:CD:C1:09:05:98",
        "mac_type": 0,
        "adv_type": 0,
        "name": "04623904064B",
        "manufacturerdata": "feff04623904064b",
        "rssi": -55,
    },
]
# OpenMQTTGateway 2020 debug log (pastebin RLveFLbX): presence on, TX power AD heard.
OMG_PRESENCE_CAPTURE: dict[str, Any] = {
    "id": "45:F6:8A:76:86:C5",
    "rssi": -55,
    "txpower": 12,
    "distance": 0.495572,
}


def _same_kind(a: object, b: object) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, number) and isinstance(b, number)) or type(a) is type(b)


def test_espresense_output_has_the_shape_of_real_messages() -> None:
    ours = [json.loads(m.payload) for m in espresense_observations(GW, SEQ, T0, RECORDS)]
    known = set().union(*ESPRESENSE_CAPTURES) | ESPRESENSE_LATER_FIELDS
    for msg in ours:
        assert set(msg) <= known
        for capture in ESPRESENSE_CAPTURES:
            for key in set(msg) & set(capture):
                assert _same_kind(msg[key], capture[key]), key
            assert re.fullmatch(r"[0-9a-f]{12}", msg["mac"])
            assert re.fullmatch(r"[0-9a-f]{12}", str(capture["mac"]))
        assert re.fullmatch(r"md:[0-9a-f]{4}:\d+", msg["id"])


def test_espresense_distance_reproduces_real_captures() -> None:
    # mifit capture: rssi@1m -71, rssi -65 -> raw 0.67 with the v3 absorption 3.5;
    # ESPresense issue #182 (2022-01): rssi@1m -65, rssi -99 -> raw 9.36.
    got = espresense_distance([-65, -99], [-71, -65], 3.5)
    assert [round(x, 2) for x in got.tolist()] == [0.67, 9.36]


def test_omg_output_has_the_shape_of_real_messages() -> None:
    ours = [json.loads(m.payload) for m in omg_observations(GW, SEQ, T0, RECORDS)]
    known = set().union(*OMG_CAPTURES)
    for msg in ours:
        assert set(msg) <= known
        assert re.fullmatch(r"(?:[0-9A-F]{2}:){5}[0-9A-F]{2}", msg["id"])
        assert re.fullmatch(r"[0-9a-f]+", msg["manufacturerdata"])
        for capture in OMG_CAPTURES:
            for key in set(msg) & set(capture):
                assert _same_kind(msg[key], capture[key]), key
            common = [k for k in capture if k in msg]
            assert [k for k in msg if k in capture] == common  # same key order
        # company id first, little-endian, as the captures' 4c00 (Apple 0x004C)
        assert msg["manufacturerdata"][:4] == "ffff"


def test_omg_distance_reproduces_real_capture() -> None:
    # txpower 12 >= 0 is ignored: the firmware falls back to -59.
    cap = OMG_PRESENCE_CAPTURE
    got = omg_distance([cap["rssi"]], cap["txpower"])
    assert round(float(got[0]), 6) == cap["distance"]
    far = omg_distance([-80], -59)
    assert float(far[0]) == pytest.approx(0.89976 * (80 / 59) ** 7.7095 + 0.111)


# --- options and edge cases ------------------------------------------------------------------


def test_espresense_every_advert_and_known_macs() -> None:
    msgs = espresense_observations(GW, SEQ, T0, RECORDS, latest_only=False, known_macs=True)
    assert len(msgs) == 3  # the foreign device without a body is not reported
    first = json.loads(msgs[0].payload)
    assert msgs[0].topic == "espresense/devices/known:c0de00012345/gw_01"
    assert (first["id"], first["idType"]) == ("known:c0de00012345", 210)
    assert tag_serial(first["mac"]) == 74565


def test_espresense_room_slug_follows_firmware() -> None:
    assert espresense_room("Maternity East 2") == "maternity_east_2"
    assert espresense_room("--Nurse's station--") == "nurse_s_station"
    with pytest.raises(PayloadError):
        espresense_room("---")


def test_omg_presence_and_adv_data_switches() -> None:
    msgs = omg_observations(GW, SEQ, T0, RECORDS[:1], presence=True, pub_adv_data=False)
    assert [m.topic for m in msgs] == ["home/presence/gw-01", "home/gw-01/BTtoMQTT/C0DE00012345"]
    body = json.loads(msgs[1].payload)
    assert list(body) == ["id", "rssi", "distance"]
    assert msgs[0].payload == msgs[1].payload
    assert body["distance"] == pytest.approx(float(omg_distance([-67])[0]), abs=1e-6)


def test_wired_gateway_health_has_no_wifi_fields() -> None:
    wired = GatewayHealth(10.0, 0, 0, 0, 0)
    assert "wifi_rssi" not in json.loads(native_health(GW, T0, wired).payload)
    omg = json.loads(omg_system(GW, T0, wired).payload)
    assert omg["eth"] is True
    assert "rssi" not in omg
    esp = json.loads(espresense_telemetry(GW, T0, wired).payload)
    assert "rssi" not in esp
    assert "adverts" not in esp  # zero counters are omitted, as the firmware does


def test_door_reads_without_rssi_skip_invalid_bodies() -> None:
    reads = door_reads("r1", "d1", T0, RECORDS, include_rssi=False)
    assert len(reads) == 3
    assert all("rssi" not in json.loads(m.payload) for m in reads)


def test_native_refuses_oversized_batches() -> None:
    big = np.zeros(MAX_RECORDS + 1, dtype=RECORD_DTYPE)
    with pytest.raises(PayloadError) as info:
        native_observations(GW, 0, T0, big)
    assert info.value.reason == "too_large"


def test_records_must_have_the_record_dtype() -> None:
    with pytest.raises(PayloadError) as info:
        omg_observations(GW, 0, T0, np.zeros((2, 32), np.uint8))
    assert info.value.reason == "bad_records"


@pytest.mark.parametrize(
    ("topic", "qos", "reason"),
    [("a/+/b", 0, "bad_topic"), ("a/#", 0, "bad_topic"), ("", 0, "bad_topic"), ("a", 3, "bad_qos")],
)
def test_message_validation(topic: str, qos: int, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        Message(topic, b"", qos)
    assert info.value.reason == reason


def test_unknown_format_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="espresense, native, omg"):
        gateway_format("bluecats")
    assert set(FORMATS) == {"native", "espresense", "omg"}
