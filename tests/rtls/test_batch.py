"""Tests for rtls.batch: golden vectors both ways, zero-copy decode, limits, fuzzing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtls.advertisement import (
    Advertisement,
    Status,
    TagKind,
    decode_bodies,
    encode_body,
    parse_mac,
    tag_address,
)
from rtls.batch import (
    FIXED_HEADER_SIZE,
    MAX_PAYLOAD,
    MAX_RECORDS,
    OBS_FILTER,
    RECORD_DTYPE,
    RECORD_SIZE,
    Batch,
    check_gateway_id,
    decode_batch,
    encode_batch,
    health_topic,
    make_records,
    obs_topic,
    status_topic,
)
from rtls.errors import PayloadError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "batches.json").read_text())
VALID = GOLDEN["valid"]
INVALID = GOLDEN["invalid"]


def _records(rows: list[dict[str, Any]]) -> np.ndarray:
    n = len(rows)
    return make_records(
        np.array([r["dt_us"] for r in rows], dtype=np.int64),
        np.array([list(parse_mac(r["address"])) for r in rows], dtype=np.uint8).reshape(n, 6),
        np.array([r["rssi"] for r in rows], dtype=np.int64),
        np.array([r["channel"] for r in rows], dtype=np.int64),
        np.array([list(bytes.fromhex(r["body"])) for r in rows], dtype=np.uint8).reshape(n, 20),
    )


@pytest.mark.parametrize("vec", [v for v in VALID if v["encode"]], ids=lambda v: v["name"])
def test_golden_encode_matches_hand_worked_hex(vec: dict[str, Any]) -> None:
    payload = encode_batch(vec["gateway"], vec["seq"], vec["t0"], _records(vec["records"]))
    assert payload.hex() == "".join(vec["segments"])


@pytest.mark.parametrize("vec", VALID, ids=lambda v: v["name"])
def test_golden_decode_gives_the_fields(vec: dict[str, Any]) -> None:
    batch = decode_batch(bytes.fromhex("".join(vec["segments"])))
    assert (batch.gateway, batch.seq, batch.t0) == (vec["gateway"], vec["seq"], vec["t0"])
    expected = _records(vec["records"])
    assert len(batch) == len(expected)
    assert batch.records.tobytes() == expected.tobytes()
    for rec, row in zip(batch.records, vec["records"], strict=True):
        assert bytes(rec["address"]) == parse_mac(row["address"])
        assert int(rec["rssi"]) == row["rssi"]


@pytest.mark.parametrize("vec", INVALID, ids=[f"{v['reason']}-{i}" for i, v in enumerate(INVALID)])
def test_golden_invalid_payloads_raise_with_reason(vec: dict[str, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        decode_batch(bytes.fromhex("".join(vec["segments"])))
    assert info.value.reason == vec["reason"]


def test_decode_is_a_read_only_zero_copy_view() -> None:
    vec = VALID[0]
    payload = bytearray.fromhex("".join(vec["segments"]))
    batch = decode_batch(payload)
    assert not batch.records.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        batch.records["rssi"][0] = 0
    payload[FIXED_HEADER_SIZE + 5 + 10] = 0xC0  # rssi byte of record 0, -64 dBm
    assert int(batch.records["rssi"][0]) == -64  # the view shares the payload's memory


def test_records_feed_the_vectorised_body_decoder() -> None:
    batch = decode_batch(bytes.fromhex("".join(VALID[0]["segments"])))
    bodies, valid = decode_bodies(batch.records["body"])
    assert valid.tolist() == [True, False]
    assert int(bodies["serial"][0]) == 74565
    times = batch.times()
    assert times[1] - times[0] == pytest.approx(0.2485)
    assert times[0] == pytest.approx(1700000000.5015)


def test_max_records_fits_and_one_more_is_refused() -> None:
    n = MAX_RECORDS
    addr = np.tile(np.frombuffer(tag_address(1), dtype=np.uint8), (n, 1))
    recs = make_records(np.arange(n), addr, -70, 38)
    payload = encode_batch("g" * 64, 0, 1.0, recs)
    assert len(payload) == MAX_PAYLOAD
    assert len(decode_batch(payload)) == n
    with pytest.raises(PayloadError) as info:
        encode_batch("g", 0, 1.0, make_records(np.arange(n + 1), np.tile(addr[:1], (n + 1, 1)), 0))
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    ("gateway", "seq", "t0", "reason"),
    [
        ("", 0, 0.0, "bad_gateway_id"),
        ("g" * 65, 0, 0.0, "bad_gateway_id"),
        ("gw/1", 0, 0.0, "bad_gateway_id"),
        ("gé", 0, 0.0, "bad_gateway_id"),
        ("gw", -1, 0.0, "out_of_range"),
        ("gw", 2**32, 0.0, "out_of_range"),
        ("gw", 0, math.inf, "bad_time"),
        ("gw", 0, -0.5, "bad_time"),
    ],
)
def test_encode_rejects_bad_header_fields(gateway: str, seq: int, t0: float, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        encode_batch(gateway, seq, t0, np.zeros(0, dtype=RECORD_DTYPE))
    assert info.value.reason == reason


def test_encode_rejects_bad_channel_and_wrong_dtype() -> None:
    recs = np.zeros(2, dtype=RECORD_DTYPE)
    recs["channel"][1] = 12
    with pytest.raises(PayloadError) as info:
        encode_batch("gw", 0, 0.0, recs)
    assert info.value.reason == "bad_channel"
    assert "12" in str(info.value)
    with pytest.raises(PayloadError) as info:
        encode_batch("gw", 0, 0.0, np.zeros((2, 32), dtype=np.uint8))
    assert info.value.reason == "bad_records"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"dt_us": [2**32]}, "out_of_range"),
        ({"dt_us": [-1]}, "out_of_range"),
        ({"dt_us": [0.5]}, "bad_records"),
        ({"rssi": [128]}, "out_of_range"),
        ({"channel": [40]}, "bad_channel"),
        ({"address": [[0, 0, 0, 0, 0, 256]]}, "out_of_range"),
        ({"address": [[0, 0, 0]]}, "bad_records"),
        ({"body": np.zeros((2, 20), np.uint8)}, "bad_records"),
    ],
)
def test_make_records_validates_columns(kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"dt_us": [0], "address": [[0xC0, 0xDE, 0, 0, 0, 1]], "rssi": [-60]}
    with pytest.raises(PayloadError) as info:
        make_records(**(args | kwargs))
    assert info.value.reason == reason


def test_make_records_accepts_scalar_columns_and_structured_bodies() -> None:
    adv = Advertisement(TagKind.STAFF_BADGE, 9, status=Status.SOS, battery=50)
    body = np.frombuffer(encode_body(adv) * 3, dtype=np.uint8).reshape(3, 20)
    recs = make_records([0, 1, 2], np.zeros((3, 6), np.uint8), -55, 39, body)
    again = make_records([0, 1, 2], np.zeros((3, 6), np.uint8), -55, 39, recs["body"])
    assert recs.tobytes() == again.tobytes()
    assert recs["channel"].tolist() == [39, 39, 39]
    assert recs["body"]["status"].tolist() == [int(Status.SOS)] * 3


def test_topics() -> None:
    assert obs_topic("gw-01") == "rtls/v1/gw/gw-01/obs"
    assert status_topic("gw-01") == "rtls/v1/gw/gw-01/status"
    assert health_topic("gw-01") == "rtls/v1/gw/gw-01/health"
    assert OBS_FILTER == "rtls/v1/gw/+/obs"
    assert check_gateway_id("a.b_c-9") == "a.b_c-9"


# --- property tests --------------------------------------------------------------------------

gateway_ids = st.text("abcXYZ019_.-", min_size=1, max_size=64)
record_rows = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.binary(min_size=6, max_size=6),
        st.integers(-128, 127),
        st.sampled_from([0, 37, 38, 39]),
        st.binary(min_size=20, max_size=20),
    ),
    max_size=20,
)


def _from_rows(rows: list[tuple[int, bytes, int, int, bytes]]) -> np.ndarray:
    n = len(rows)
    return make_records(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(n, 6),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.frombuffer(b"".join(r[4] for r in rows), np.uint8).reshape(n, 20),
    )


@given(
    gateway_ids,
    st.integers(0, 2**32 - 1),
    st.floats(0, 4e9, allow_nan=False),
    record_rows,
)
def test_round_trip(gateway: str, seq: int, t0: float, rows: list[Any]) -> None:
    recs = _from_rows(rows)
    payload = encode_batch(gateway, seq, t0, recs)
    assert len(payload) == FIXED_HEADER_SIZE + len(gateway) + RECORD_SIZE * len(rows)
    batch = decode_batch(payload)
    assert isinstance(batch, Batch)
    assert (batch.gateway, batch.seq, batch.t0) == (gateway, seq, t0)
    assert batch.records.tobytes() == recs.tobytes()


def _decode_or_payload_error(data: bytes) -> None:
    try:
        batch: Batch | None = decode_batch(data)
    except PayloadError as exc:
        batch, reason = None, exc.reason
    if batch is None:
        assert reason
    else:
        assert len(batch.records) * RECORD_SIZE <= len(data)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_payload_error(data: bytes) -> None:
    _decode_or_payload_error(data)


@given(st.binary(max_size=200))
def test_random_bytes_after_magic_raise_only_payload_error(data: bytes) -> None:
    _decode_or_payload_error(b"RTLB\x01\x00" + data)


VALID_PAYLOAD = bytes.fromhex("".join(VALID[0]["segments"]))


@given(st.integers(0, len(VALID_PAYLOAD) - 1))
def test_truncations_of_a_valid_payload_are_refused(cut: int) -> None:
    with pytest.raises(PayloadError) as info:
        decode_batch(VALID_PAYLOAD[:cut])
    assert info.value.reason in {"truncated", "bad_magic"}


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID_PAYLOAD) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_mutations_of_a_valid_payload_raise_only_payload_error(
    edits: list[tuple[int, int]],
) -> None:
    data = bytearray(VALID_PAYLOAD)
    for pos, value in edits:
        data[pos] = value
    _decode_or_payload_error(bytes(data))
