"""The simulated gateway: batch schedule, sequence numbers, times on the wire, power, health."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from gateways.formats import FORMATS, Message
from gateways.gateway import SimGateway
from rtls.advertisement import Advertisement, TagKind, encode_body, tag_address
from rtls.batch import MAX_RECORDS, RECORD_DTYPE, Batch, decode_batch
from rtls.errors import ConfigError

EPOCH = 1_700_000_000.25
GW = "gw-01"


def _gateway(fmt: str = "native", **kw: float) -> SimGateway:
    return SimGateway(GW, FORMATS[fmt], EPOCH, **kw)  # type: ignore[arg-type]


def _records(serials: np.ndarray) -> np.ndarray:
    """One RECORD_DTYPE record per serial: a heartbeat body, channel 37, rssi -70 - serial % 20."""
    rec = np.zeros(len(serials), dtype=RECORD_DTYPE)
    for i, s in enumerate(serials.tolist()):
        body = encode_body(Advertisement(kind=TagKind.INFANT, serial=s, seq=s & 0xFFFF))
        rec["address"][i] = np.frombuffer(tag_address(s), dtype=np.uint8)
        rec["body"][i] = np.frombuffer(body, dtype=rec["body"].dtype)[0]
    rec["rssi"] = -70 - (serials % 20)
    rec["channel"] = 37
    return rec


def _hear(gw: SimGateway, t: np.ndarray, first_serial: int = 1) -> np.ndarray:
    serials = np.arange(first_serial, first_serial + len(t))
    gw.hear(np.asarray(t, dtype=np.float64), _records(serials))
    return serials


def _batches(msgs: list[Message]) -> list[Batch]:
    return [decode_batch(m.payload) for m in msgs if m.topic.endswith("/obs")]


def _health(msgs: list[Message]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs if m.topic.endswith("/health")]


def _play(gw: SimGateway, end: float, tick: float, hear_every: bool = True) -> list[Message]:
    """Step on the tick grid up to ``end``; with ``hear_every`` one record per tick."""
    out: list[Message] = []
    for k in range(1, round(end / tick) + 1):
        t = round(k * tick, 9)
        if hear_every:
            _hear(gw, np.array([t - tick / 2]), first_serial=k)
        out += gw.step(t)
    return out


# ------------------------------------------------------------------------------ batches


def test_batches_at_the_interval_with_consecutive_sequence_numbers() -> None:
    gw = _gateway(batch_interval_s=0.25)
    published: list[tuple[float, Batch]] = []
    for k in range(1, 81):  # 4 s on a 50 ms tick
        t = round(k * 0.05, 9)
        _hear(gw, np.array([t - 0.01]), first_serial=k)
        published += [(t, b) for b in _batches(gw.step(t))]
    assert [t for t, _ in published] == pytest.approx([0.25 * j for j in range(1, 17)])
    assert [b.seq for _, b in published] == list(range(16))
    assert all(b.gateway == GW for _, b in published)
    # every record goes out in the first batch after it was heard, none twice
    for (t, b), prev in zip(published, [0.0] + [t for t, _ in published[:-1]], strict=True):
        times = b.times() - EPOCH
        assert (times > prev - 0.05).all()
        assert (times <= t).all()
    serials = np.concatenate([b.records["body"]["serial"] for _, b in published])
    assert sorted(serials.tolist()) == list(range(1, 81))
    assert gw.stats.batches == 16
    assert gw.stats.published_records == gw.stats.heard == 80


def test_batch_schedule_keeps_its_phase_when_the_tick_does_not_divide_it() -> None:
    gw = _gateway(batch_interval_s=0.25)
    msgs = _play(gw, 10.0, 0.1)
    assert len(_batches(msgs)) == 40  # every 0.25 s on average, not every 0.3 s
    # each batch at the first tick at or after its scheduled time
    gw2 = _gateway(batch_interval_s=0.25)
    times = []
    for k in range(1, 21):
        t = round(k * 0.1, 9)
        _hear(gw2, np.array([t - 0.05]))
        if _batches(gw2.step(t)):
            times.append(t)
    assert times == pytest.approx([0.3, 0.5, 0.8, 1.0, 1.3, 1.5, 1.8, 2.0])


def test_nothing_heard_no_batch_but_the_schedule_goes_on() -> None:
    gw = _gateway(batch_interval_s=0.25)
    assert _batches(_play(gw, 2.0, 0.05, hear_every=False)) == []
    assert gw.seq == 0
    _hear(gw, np.array([2.01]))
    assert _batches(gw.step(2.05)) == []
    assert [b.seq for b in _batches(gw.step(2.25))] == [0]


def test_batch_sequence_wraps_at_32_bits() -> None:
    gw = _gateway(batch_interval_s=0.25)
    gw.seq = 0xFFFF_FFFF
    seqs = [b.seq for b in _batches(_play(gw, 0.75, 0.25))]
    assert seqs == [0xFFFF_FFFF, 0, 1]


def test_record_times_round_trip_through_t0_and_dt_us() -> None:
    gw = _gateway(batch_interval_s=0.25)
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0.0, 0.25, 50))
    serials = _hear(gw, t)
    (batch,) = _batches(gw.step(0.25))
    assert batch.times() == pytest.approx(EPOCH + t, abs=1.5e-6)
    # t0 is the gateway's millisecond tick at or before the first record
    rel_t0 = batch.t0 - EPOCH
    assert rel_t0 <= t[0] < rel_t0 + 0.001
    assert round(rel_t0 * 1000) == pytest.approx(rel_t0 * 1000, abs=1e-3)
    assert batch.records["dt_us"].max() < 251_000
    assert batch.records["body"]["serial"].tolist() == serials.tolist()
    assert (batch.records["channel"] == 37).all()


def test_records_are_sorted_by_time_across_hear_calls() -> None:
    gw = _gateway(batch_interval_s=0.25)
    late = _hear(gw, np.array([0.20, 0.05, 0.15]), first_serial=100)
    early = _hear(gw, np.array([0.01, 0.10]), first_serial=200)
    (batch,) = _batches(gw.step(0.25))
    dt = batch.records["dt_us"]
    assert (np.diff(dt.astype(np.int64)) >= 0).all()
    by_time = {0.01: early[0], 0.05: late[1], 0.10: early[1], 0.15: late[2], 0.20: late[0]}
    assert batch.records["body"]["serial"].tolist() == [by_time[k] for k in sorted(by_time)]


def test_a_large_buffer_is_split_into_batches_of_max_records() -> None:
    gw = _gateway(batch_interval_s=0.25)
    n = 2 * MAX_RECORDS + 5
    t = np.random.default_rng(2).uniform(0.0, 0.25, n)
    _hear(gw, t)
    batches = _batches(gw.step(0.25))
    assert [len(b) for b in batches] == [MAX_RECORDS, MAX_RECORDS, 5]
    assert [b.seq for b in batches] == [0, 1, 2]
    times = np.concatenate([b.times() for b in batches])
    assert (np.diff(times) >= -1e-6).all()
    assert times == pytest.approx(EPOCH + np.sort(t), abs=1.5e-6)
    assert (gw.stats.batches, gw.stats.published_records) == (3, n)


# -------------------------------------------------------------------------------- power


def test_power_off_drops_the_buffer_and_publishes_nothing() -> None:
    gw = _gateway(batch_interval_s=0.25, health_interval_s=1.0)
    gw.step(0.0)
    _hear(gw, np.linspace(0.01, 0.1, 10), first_serial=1)
    gw.power(0.1, False)
    assert not gw.up
    assert gw.stats.lost_power_records == 10
    assert gw.queued == 0
    _hear(gw, np.array([0.2, 0.3]), first_serial=50)  # heard while off: nothing
    assert gw.stats.heard == 10
    assert [m for k in range(1, 41) for m in gw.step(round(0.1 + k * 0.25, 9))] == []
    gw.power(10.0, False)  # already off: no change
    assert gw.stats.lost_power_records == 10
    gw.power(10.2, True)
    assert gw.stats.boots == 2
    _hear(gw, np.array([10.3]), first_serial=70)
    msgs = gw.step(10.2) + gw.step(10.3) + gw.step(10.45)
    batches = _batches(msgs)
    assert [round(b.times()[0] - EPOCH, 6) for b in batches] == [10.3]
    assert batches[0].records["body"]["serial"].tolist() == [70]  # the lost ones never appear


def test_boot_publishes_health_at_once_and_the_first_batch_an_interval_later() -> None:
    gw = _gateway(batch_interval_s=0.5, health_interval_s=5.0)
    gw.power(0.0, False)
    gw.power(3.3, True)
    _hear(gw, np.array([3.35]))
    first = gw.step(3.3)
    assert [json.loads(m.payload)["uptime_s"] for m in first] == [0.0]
    assert _batches(gw.step(3.75)) == []
    assert len(_batches(gw.step(3.8))) == 1
    assert _health(gw.step(8.29)) == []
    assert len(_health(gw.step(8.3))) == 1


# ------------------------------------------------------------------------------- health


def test_native_health_counts_since_boot_every_interval() -> None:
    gw = _gateway(batch_interval_s=0.4, health_interval_s=1.0)
    msgs = gw.step(0.0)
    assert [(m.topic, m.qos, m.retain) for m in msgs] == [(f"rtls/v1/gw/{GW}/health", 0, False)]
    _hear(gw, np.linspace(0.1, 0.3, 5))
    gw.step(0.4)  # a batch of 5
    assert _batches(gw.step(0.8)) == []  # nothing new heard
    _hear(gw, np.array([0.85, 0.9, 0.95]), first_serial=10)  # these wait for 1.2
    (h,) = _health(gw.step(1.0))
    assert (h["gateway"], h["t"], h["uptime_s"]) == (GW, EPOCH + 1.0, 1.0)
    assert (h["heard"], h["published"], h["dropped"], h["queue"]) == (8, 5, 0, 3)
    # power cut with 3 queued: lost; after the reboot the counters restart
    gw.power(1.1, False)
    gw.power(2.0, True)
    (h,) = _health(gw.step(2.0))
    assert (h["uptime_s"], h["heard"], h["published"], h["dropped"], h["queue"]) == (0, 0, 0, 0, 0)
    _hear(gw, np.array([2.1, 2.2]), first_serial=20)
    gw.step(2.4)
    (h,) = _health(gw.step(3.0))
    assert (h["uptime_s"], h["heard"], h["published"], h["queue"]) == (1.0, 2, 2, 0)
    s = gw.stats  # lifetime counters for the simulator
    assert (s.heard, s.published_records, s.lost_power_records, s.boots) == (10, 7, 3, 2)


def test_health_interval_is_kept() -> None:
    gw = _gateway(health_interval_s=10.0)
    msgs = _play(gw, 60.0, 0.05, hear_every=False)
    times = [float(h["t"]) - EPOCH for h in _health(msgs)]
    # at boot (served by the first step), then every 10 s
    assert times == pytest.approx([0.05, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])


def _counting_gateway(fmt: str) -> SimGateway:
    gw = _gateway(fmt, batch_interval_s=0.5, health_interval_s=2.0)
    gw.step(0.0)
    _hear(gw, np.linspace(0.1, 0.4, 4))
    gw.step(0.5)  # publishes 4
    _hear(gw, np.array([0.6, 0.7]), first_serial=10)  # 2 queued
    return gw


def test_espresense_telemetry_counters() -> None:
    gw = _counting_gateway("espresense")
    (msg,) = gw.step(2.0)[-1:]
    assert msg.topic == "espresense/rooms/gw_01/telemetry"
    body = json.loads(msg.payload)
    assert (body["uptime"], body["adverts"], body["reported"]) == (2, 6, 6)
    assert "failed" not in body  # zero counters are left out, as the firmware does


def test_omg_system_counters() -> None:
    gw = _counting_gateway("omg")
    before = gw.step(1.0)
    assert len(before) == 2  # the two queued records, one message each
    assert all("/BTtoMQTT/" in m.topic for m in before)
    (msg,) = gw.step(2.0)
    assert msg.topic == f"home/{GW}/SYStoMQTT"
    body = json.loads(msg.payload)
    assert (body["uptime"], body["msgblck"], body["eth"]) == (2, 0, True)


def test_non_native_formats_publish_each_record() -> None:
    gw = _gateway("omg", batch_interval_s=0.25)
    serials = _hear(gw, np.linspace(0.01, 0.2, 7))
    msgs = gw.step(0.25)
    macs = [json.loads(m.payload)["id"] for m in msgs if "/BTtoMQTT/" in m.topic]
    assert len(macs) == 7
    assert macs == [":".join(f"{b:02X}" for b in tag_address(int(s))) for s in serials]
    assert gw.seq == 1


def test_intervals_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="intervals"):
        _gateway(batch_interval_s=0.0)
    with pytest.raises(ConfigError, match="intervals"):
        _gateway(health_interval_s=-1.0)
