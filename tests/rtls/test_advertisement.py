"""Tests for rtls.advertisement: golden vectors, validation, vectorised decode, fuzzing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtls.advertisement import (
    BODY_DTYPE,
    BODY_REASONS,
    BODY_SIZE,
    COMPANY_ID,
    Advertisement,
    Status,
    Status2,
    TagKind,
    address_serials,
    adv_data,
    decode_bodies,
    decode_body,
    encode_body,
    format_mac,
    manufacturer_data,
    parse_adv_data,
    parse_mac,
    parse_manufacturer_data,
    signed_portion,
    tag_address,
    tag_mac,
    tag_serial,
)
from rtls.errors import PayloadError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "advertisements.json").read_text())
VECTORS = GOLDEN["vectors"]
INVALID = GOLDEN["invalid_bodies"]


def _adv(fields: dict[str, Any]) -> Advertisement:
    return Advertisement(
        kind=TagKind(fields["kind"]),
        serial=fields["serial"],
        seq=fields["seq"],
        status=Status(fields["status"]),
        status2=Status2(fields["status2"]),
        battery=fields["battery"],
        measured_power=fields["measured_power"],
        interval_ms=fields["interval_ms"],
        auth=bytes.fromhex(fields["auth"]),
    )


# --- golden vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_encode_matches_hand_worked_hex(vec: dict[str, Any]) -> None:
    adv = _adv(vec["fields"])
    assert encode_body(adv).hex() == vec["body"]
    assert "".join(vec["body_fields"]) == vec["body"]
    assert manufacturer_data(adv).hex() == vec["manufacturer_data"]
    assert adv_data(adv).hex() == vec["adv_data"]
    assert tag_mac(adv.serial) == vec["mac"]


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_decode_gives_the_fields(vec: dict[str, Any]) -> None:
    expected = _adv(vec["fields"])
    assert decode_body(bytes.fromhex(vec["body"])) == expected
    assert parse_manufacturer_data(bytes.fromhex(vec["manufacturer_data"])) == expected
    assert parse_adv_data(bytes.fromhex(vec["adv_data"])) == expected
    assert tag_serial(vec["mac"]) == expected.serial


@pytest.mark.parametrize("vec", INVALID, ids=[f"{v['reason']}-{i}" for i, v in enumerate(INVALID)])
def test_golden_invalid_bodies_raise_with_reason(vec: dict[str, str]) -> None:
    with pytest.raises(PayloadError) as info:
        decode_body(bytes.fromhex(vec["body"]))
    assert info.value.reason == vec["reason"]


def test_golden_vectors_decode_together_vectorised() -> None:
    raw = bytes.fromhex("".join(v["body"] for v in VECTORS))
    bodies, valid = decode_bodies(raw)
    assert valid.all()
    assert bodies["serial"].tolist() == [v["fields"]["serial"] for v in VECTORS]
    assert (bodies["version_kind"] & 0x0F).tolist() == [v["fields"]["kind"] for v in VECTORS]
    assert bodies["measured_power"].tolist() == [v["fields"]["measured_power"] for v in VECTORS]


def test_invalid_bodies_flagged_with_same_reason_vectorised() -> None:
    full = [v for v in INVALID if len(v["body"]) == 2 * BODY_SIZE]
    arr = np.frombuffer(bytes.fromhex("".join(v["body"] for v in full)), np.uint8).reshape(-1, 20)
    _, valid = decode_bodies(arr)
    assert not valid.any()
    with pytest.raises(PayloadError) as info:
        decode_bodies(arr, strict=True)
    assert info.value.reason == full[0]["reason"]
    assert "body 0" in str(info.value)


# --- validation of Advertisement --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": 9}, "bad_kind"),
        ({"serial": -1}, "out_of_range"),
        ({"serial": 2**32}, "out_of_range"),
        ({"seq": 65536}, "out_of_range"),
        ({"status2": 0x20}, "reserved_bits"),
        ({"status2": 0x80}, "reserved_bits"),
        ({"battery": 101}, "bad_battery"),
        ({"measured_power": 128}, "out_of_range"),
        ({"interval_ms": 150}, "bad_interval"),
        ({"interval_ms": 0}, "bad_interval"),
        ({"interval_ms": 25600}, "bad_interval"),
        ({"auth": b"\x00" * 7}, "bad_auth"),
    ],
)
def test_advertisement_rejects_bad_values(changes: dict[str, Any], reason: str) -> None:
    fields: dict[str, Any] = {"kind": TagKind.INFANT, "serial": 1} | changes
    with pytest.raises(PayloadError) as info:
        Advertisement(**fields)
    assert info.value.reason == reason


def test_advertisement_coerces_plain_ints_to_enums() -> None:
    adv = Advertisement(kind=3, serial=5, status=Status(4), status2=Status2(8))  # type: ignore[arg-type]
    assert adv.kind is TagKind.STAFF_BADGE
    assert Status.SOS in adv.status
    assert Status2.BURST_REPEAT in adv.status2
    assert adv.interval_s == pytest.approx(1.0)
    assert not adv.authenticated


def test_status2_bit_4_is_mismatch_and_bits_5_to_7_stay_reserved() -> None:
    adv = Advertisement(kind=TagKind.INFANT, serial=1, status2=Status2.MISMATCH)
    body = bytearray(encode_body(adv))
    assert body[8] == 0x10
    assert Status2.MISMATCH in decode_body(bytes(body)).status2
    rows = []
    for bit in range(8):  # one status2 bit at a time
        body[8] = 1 << bit
        rows.append(bytes(body))
    _, valid = decode_bodies(b"".join(rows))
    assert valid.tolist() == [True] * 5 + [False] * 3
    for row in rows[5:]:
        with pytest.raises(PayloadError, match="bits 5-7") as info:
            decode_body(row)
        assert info.value.reason == "reserved_bits"


def test_signed_portion_is_first_twelve_bytes() -> None:
    body = bytes.fromhex(VECTORS[3]["body"])
    assert signed_portion(body) == body[:12]
    with pytest.raises(PayloadError):
        signed_portion(body[:19])


# --- AD structures ---------------------------------------------------------------------------


def test_parse_adv_data_finds_ours_among_other_structures() -> None:
    ours = bytes.fromhex(VECTORS[2]["manufacturer_data"])
    other_md = bytes([3, 0xFF, 0x4C, 0x00])  # Apple company id, empty data
    name = bytes([2, 0x09]) + b"t"  # Complete Local Name
    data = name + other_md + bytes([1 + len(ours), 0xFF]) + ours
    assert len(data) == 31
    assert parse_adv_data(data).serial == VECTORS[2]["fields"]["serial"]


def test_parse_adv_data_stops_at_zero_padding() -> None:
    padded = bytes.fromhex(VECTORS[0]["adv_data"]) + bytes(4)
    assert parse_adv_data(padded).seq == 7
    hidden = bytes(3) + bytes.fromhex(VECTORS[0]["adv_data"])
    with pytest.raises(PayloadError) as info:
        parse_adv_data(hidden)
    assert info.value.reason == "not_rtls"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex("020106"), "not_rtls"),
        (bytes.fromhex("02010617ffffff1145"), "truncated"),
        (bytes(32), "too_long"),
        (bytes.fromhex("02010617ff4c00") + bytes(20), "not_rtls"),
    ],
)
def test_parse_adv_data_errors(data: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_adv_data(data)
    assert info.value.reason == reason


def test_manufacturer_data_with_another_company_id() -> None:
    adv = _adv(VECTORS[0]["fields"])
    md = manufacturer_data(adv, company_id=0x1234)
    assert md[:2] == bytes([0x34, 0x12])
    assert parse_manufacturer_data(md, company_id=0x1234) == adv
    with pytest.raises(PayloadError) as info:
        parse_manufacturer_data(md)
    assert info.value.reason == "foreign_company"
    assert parse_adv_data(adv_data(adv, 0x1234), 0x1234) == adv


# --- addresses -------------------------------------------------------------------------------


def test_tag_mac_is_static_random_and_round_trips_in_both_text_forms() -> None:
    address = tag_address(0x0BADCAFE)
    assert address[0] & 0xC0 == 0xC0  # static random: two top bits set
    assert tag_serial("c0de0badcafe") == 0x0BADCAFE
    assert format_mac(address, sep="", upper=False) == "c0de0badcafe"
    assert parse_mac("C0:DE:0B:AD:CA:FE") == address


@pytest.mark.parametrize("mac", ["AA:BB:CC:DD:EE:FF", "C0:DE:00:01:23", "C0-DE-00-01-23-45", "zz"])
def test_tag_serial_rejects_foreign_or_malformed_addresses(mac: str) -> None:
    with pytest.raises(PayloadError) as info:
        tag_serial(mac)
    assert info.value.reason == "bad_mac"


def test_address_serials_vectorised() -> None:
    serials = [0, 74565, 0xFFFFFFFF]
    addrs = np.array([list(tag_address(s)) for s in serials] + [[0xAA] * 6], dtype=np.uint8)
    got, is_tag = address_serials(addrs)
    assert got[:3].tolist() == serials
    assert is_tag.tolist() == [True, True, True, False]


# --- property tests --------------------------------------------------------------------------

advertisements = st.builds(
    Advertisement,
    kind=st.sampled_from(TagKind),
    serial=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**16 - 1),
    status=st.integers(0, 255).map(Status),
    status2=st.integers(0, 31).map(Status2),
    battery=st.none() | st.integers(0, 100),
    measured_power=st.integers(-128, 127),
    interval_ms=st.integers(1, 255).map(lambda u: u * 100),
    auth=st.binary(min_size=8, max_size=8),
)


@given(advertisements)
def test_round_trip_for_all_valid_values(adv: Advertisement) -> None:
    body = encode_body(adv)
    assert len(body) == BODY_SIZE
    assert decode_body(body) == adv
    assert parse_adv_data(adv_data(adv)) == adv
    assert len(adv_data(adv)) <= 31
    bodies, valid = decode_bodies(body)
    assert bool(valid[0])
    assert int(bodies["serial"][0]) == adv.serial
    assert tag_serial(tag_mac(adv.serial)) == adv.serial


@given(st.binary(max_size=40))
def test_decode_of_random_bytes_raises_only_payload_error(data: bytes) -> None:
    try:
        adv: Advertisement | None = decode_body(data)
    except PayloadError as exc:
        adv, reason = None, exc.reason
    if adv is None:
        assert reason in {*BODY_REASONS, "truncated", "too_long"}
    else:
        assert encode_body(adv) == data


@given(st.binary(min_size=20, max_size=20))
def test_scalar_and_vectorised_validation_agree(data: bytes) -> None:
    _, valid = decode_bodies(data)
    reason = None
    try:
        decode_body(data)
    except PayloadError as exc:
        reason = exc.reason
    if reason is None:
        assert valid[0]
    else:
        assert not valid[0]
        with pytest.raises(PayloadError) as info:
            decode_bodies(data, strict=True)
        assert info.value.reason == reason


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_parse_adv_data_of_random_bytes_raises_only_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        adv = parse_adv_data(data)
        assert manufacturer_data(adv) in data


@given(st.binary(max_size=24))
def test_parse_manufacturer_data_of_random_bytes_raises_only_payload_error(data: bytes) -> None:
    try:
        adv = parse_manufacturer_data(data)
    except PayloadError:
        pass
    else:
        assert manufacturer_data(adv) == data


def test_body_dtype_is_packed_twenty_bytes() -> None:
    assert BODY_DTYPE.itemsize == BODY_SIZE
    assert BODY_DTYPE.fields is not None
    assert BODY_DTYPE.fields["auth"][1] == 12
    assert COMPANY_ID == 0xFFFF
