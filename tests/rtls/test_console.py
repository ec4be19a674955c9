"""What the console shows: site document, wards of alarms and babies, replay buffer (pure)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rtls.advertisement import BATTERY_UNKNOWN
from rtls.alarm import Alarm, AlarmBook, AlarmType, Condition, Location
from rtls.console import (
    PositionRows,
    ReplayBuffer,
    WardMap,
    alarm_document,
    filter_board,
    site_document,
    technical_document,
    ward_board,
)
from rtls.site import load_site
from rtls.ward import Ward

SITE = load_site()


def _raise(type_: AlarmType, subject: str, location: Location | None = None) -> Alarm:
    book = AlarmBook()
    book.apply([Condition(type_, subject, True, 10.0, location)], 10.0)
    return next(iter(book.alarms.values()))


def test_site_document_has_every_part_of_the_plan() -> None:
    doc = site_document(SITE)
    m = SITE.model
    assert len(doc["floors"]) == len(m.floors) and len(doc["walls"]) == len(m.walls)
    assert len(doc["gateways"]) == len(m.gateways) and len(doc["zones"]) == len(m.zones)
    assert {w["id"] for w in doc["wards"]} == {"L1-WARD", "L2-WARD"}
    reader = doc["readers"][0]
    assert reader["floor"] in {"L1", "L2"} and math.isfinite(reader["x"])


def test_wards_of_alarms_by_place_then_subject() -> None:
    wards = WardMap(SITE)
    placed = _raise(AlarmType.SOS, "W01", Location(floor="L2", zone=None, x=3.0, y=4.0))
    assert wards.of_alarm(placed) == "L2-WARD"
    baby = _raise(AlarmType.TAG_SILENT, "B03")  # no place: the baby's home room's ward
    assert wards.of_alarm(baby) == "L1-WARD"
    gw = _raise(AlarmType.GATEWAY_SILENT, SITE.model.gateways[0].id)
    assert wards.of_alarm(gw) == wards.of_floor(SITE.model.gateways[0].floor)
    nowhere = _raise(AlarmType.BROKER_LINK_LOST, "engine")
    assert wards.of_alarm(nowhere) is None  # site-wide
    doc = alarm_document(baby, wards)
    assert doc["ward"] == "L1-WARD" and doc["category"] == "infant"


def test_ward_board_pairing_sign_out_battery_and_filter() -> None:
    ward = Ward(SITE)
    ward.admit("B03", "nurse.anna", 100.0, name="Baby Martin")
    ward.admit("B05", "nurse.anna", 100.0)
    ward.pair("B03", "M03", "nurse.anna", 110.0)
    battery = np.full(len(SITE.tags), BATTERY_UNKNOWN, np.uint8)
    battery[[t.id for t in SITE.tags].index("B03")] = 42
    board = ward_board(ward, SITE, WardMap(SITE), battery)
    rows = {b["tag"]: b for b in board["babies"]}
    assert rows["B03"]["mother"] == "M03" and rows["B03"]["pairing_due_t"] is None
    assert rows["B03"]["battery_pct"] == 42 and rows["B05"]["battery_pct"] is None
    assert rows["B05"]["pairing_due_t"] == pytest.approx(100.0 + ward.rules.pairing_window_s)
    assert rows["B03"]["ward"] == "L1-WARD"
    assert filter_board(board, [None, "L2-WARD"])["babies"] == []
    assert len(filter_board(board, [None, "L1-WARD"])["babies"]) == 2


def test_technical_document_online_by_silence_limit() -> None:
    g = len(SITE.model.gateways)
    heard = np.full(g, np.nan)
    heard[0] = 95.0  # 5 s ago: online
    heard[1] = 0.0  # 100 s ago: offline
    readers = np.full(len(SITE.model.door_readers), np.nan)
    doc = technical_document(SITE, 100.0, heard, readers,
                             {"rejected": {"bad_crc": 2}, "records": {"bad_crc": 1, "rssi": 4}},
                             [], 1234.5, 3.2)  # fmt: skip
    assert doc["gateways"][0]["online"] and not doc["gateways"][1]["online"]
    assert doc["gateways"][2]["last_heard_t"] is None and not doc["gateways"][2]["online"]
    assert doc["decode_errors"] == {"bad_crc": 3, "rssi": 4}


def test_replay_buffer_replays_or_asks_for_a_snapshot() -> None:
    buf = ReplayBuffer(size=3)
    buf.last_seq = 1000
    for seq in range(1001, 1006):
        buf.add(seq, None, f"m{seq}".encode())
    assert [r.message for r in buf.since(1003) or []] == [b"m1004", b"m1005"]
    assert buf.since(1005) == []
    assert buf.since(1001) is None  # 1002 was dropped already
    assert buf.since(2000) is None  # from another run of the server


def test_position_rows_are_compact_json_rounded_to_a_decimetre() -> None:
    n = len(SITE.tags)
    xy = np.zeros((n, 2))
    xy[0] = (12.3449, 5.06)
    est = SimpleNamespace(known=np.arange(n) != 1, xy=xy, uncertainty=np.full(n, 1.26),
                          floor=np.zeros(n, np.int64))  # fmt: skip
    est.uncertainty[2] = np.inf
    zone = np.full(n, -1, np.int64)
    zone[0] = 3
    result: Any = SimpleNamespace(estimate=est, zone=zone)
    rows = PositionRows(SITE).encode(result, np.array([0, 1, 2], np.intp))
    assert [i for i, _ in rows] == [0, 1, 2]
    first, unknown, no_unc = (json.loads(r) for _, r in rows)
    assert first == [SITE.tags[0].id, 12.3, 5.1, SITE.floors[0].id, SITE.zones[3].id, 1.3]
    assert unknown == [SITE.tags[1].id, None, None, None, None, None]
    assert no_unc[5] is None and no_unc[4] is None
