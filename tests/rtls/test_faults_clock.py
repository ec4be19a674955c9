"""Fault: a gateway (or door reader) whose clock is minutes or hours off.

Pure parts first (rtls.decode_clock, then the engine and alarm desk fed native batches with a
wrong gateway clock), then the service: a real Mosquitto, the engine with its console
(ConsoleHarness), a technician's WebSocket client that sees the correction.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from pathlib import Path

import numpy as np
import pytest

from rtls.advertisement import Status
from rtls.alarm import AlarmType
from rtls.decode_clock import CONFIRM_S, TOLERANCE_S, SourceClocks
from rtls.desk import Desk
from rtls.engine import Engine, wall_maps
from rtls.service.broker import MosquittoBroker
from rtls.site import load_site
from tests.console_harness import PASSWORD, ConsoleHarness, WsClient
from tests.faults import alarm_of, frame, send

SITE = load_site()
GA = SITE.gateway_arrays
WALLS = wall_maps(SITE)
T0 = 1_767_225_600.0
HOUR = 3600.0


# -- rtls.decode_clock ------------------------------------------------------------------------


def test_a_right_clock_is_trusted_as_is() -> None:
    c = SourceClocks(2)
    for k in range(100):
        rx = T0 + k * 0.25
        assert c.correct(0, rx - 0.3, rx) == 0.0  # transit
        assert c.correct(1, rx + 0.5, rx) == 0.0  # a little ahead (within tolerance)
    assert not c.corrected.any() and not c.skewed().size


@pytest.mark.parametrize("ahead", [TOLERANCE_S + 1, 300.0, HOUR, 86_400.0])
def test_a_clock_ahead_is_corrected_at_once(ahead: float) -> None:
    c = SourceClocks(1)
    rng = np.random.default_rng(1)
    shifts = []
    for k in range(40):
        rx = T0 + k * 0.25
        transit = float(rng.uniform(0.02, 0.3))
        t = rx - transit + ahead  # the gateway stamps with its clock
        shift = c.correct(0, t, rx)
        shifts.append(shift)
        assert t + shift <= rx + 1e-9  # never in the future on the engine's clock
        assert abs(t + shift - (rx - transit)) < 0.3  # about when it was heard
    assert shifts[0] != 0.0  # the first message already
    assert c.skewed().tolist() == [0] and c.offset[0] == pytest.approx(-ahead, abs=0.3)
    assert c.corrected[0] == 40


@pytest.mark.parametrize("behind", [TOLERANCE_S + 1, 300.0, HOUR])
def test_a_clock_behind_is_corrected_once_confirmed(behind: float) -> None:
    c = SourceClocks(1)
    first_corrected = None
    for k in range(100):
        rx = T0 + k * 0.25
        t = rx - 0.1 - behind
        if c.correct(0, t, rx) != 0.0 and first_corrected is None:
            first_corrected = rx - T0
    assert first_corrected == pytest.approx(CONFIRM_S, abs=0.3)
    assert c.offset[0] == pytest.approx(behind + 0.1, abs=1e-6)


def test_a_backlog_after_an_outage_keeps_its_times() -> None:
    """A gateway that queued 60 s of batches while the broker was down flushes them on
    reconnection: late, not skewed; their times are the real (old) ones."""
    c = SourceClocks(1)
    for k in range(40):  # before the outage
        rx = T0 + k * 0.25
        assert c.correct(0, rx - 0.1, rx) == 0.0
    back = T0 + 70.0
    queued = [T0 + 10.0 + k * 0.25 for k in range(240)]  # made during the outage
    for i, t in enumerate(queued):
        assert c.correct(0, t, back + i * 0.002) == 0.0  # flushed within half a second
    assert c.correct(0, back + 0.4, back + 0.5) == 0.0  # live again
    assert not c.corrected.any()


def test_a_clock_put_right_is_trusted_again_and_drift_is_followed() -> None:
    c = SourceClocks(1)
    rx = T0
    for k in range(200):  # an hour behind and drifting 0.5 s/min further
        rx = T0 + k * 0.25
        c.correct(0, rx - HOUR - 0.1 - k * 0.25 * 0.5 / 60, rx)
    drift = 0.5 / 60 * (rx - T0)
    assert c.offset[0] == pytest.approx(HOUR + 0.1 + drift, abs=0.2)
    assert c.correct(0, rx + 0.15, rx + 0.25) == 0.0  # NTP set it right
    assert c.offset[0] == 0.0 and not c.skewed().size


def test_nonsense_times_change_nothing() -> None:
    c = SourceClocks(1)
    assert c.correct(0, -math.inf, T0) == 0.0
    assert c.correct(0, 1e308, -1e308) == 0.0
    assert not c.corrected.any()


# -- the engine and the alarm desk ----------------------------------------------------------


def _rssi(xy: tuple[float, float], gateways: np.ndarray) -> np.ndarray:
    z = SITE.floors[0].elevation + 1.0
    d = np.linalg.norm(GA.xyz[gateways] - np.array([xy[0], xy[1], z]), axis=1)
    rssi = GA.rssi_at_1m[gateways] - 10 * GA.path_loss_exponent[gateways] * np.log10(
        np.maximum(d, 1))  # fmt: skip
    assert WALLS is not None
    return np.round(rssi - WALLS.lookup(np.array([xy]))[0, gateways]).astype(int)


def _near(xy: tuple[float, float], k: int) -> np.ndarray:
    d = np.hypot(*(GA.xyz[:, :2] - np.array(xy)).T) + 1e3 * (GA.floor != 0)
    return np.argsort(d)[:k]


def _walk(skew: float, engine: Engine, desk: Desk) -> list[tuple[str, str | None, float]]:
    """B01 in room R101 for 20 s, then in the corridor for 25 s, heard by the six nearest
    gateways; the one nearest to the room has a clock ``skew`` s off, the others are right. W01,
    heard by that gateway only, presses SOS at 30.5 s. Returns per place: (place, zone id at
    the end, position error in m)."""
    places = [("room", (12.0, 4.0)), ("corridor", (30.0, 11.0))]
    wrong = int(_near(places[0][1], 1)[0])
    out = []
    seq: dict[str, int] = {}
    t = T0
    k_all = 0
    for phase, (name, xy) in enumerate(places):
        gws = _near(xy, 6)
        if wrong not in gws:
            gws = np.r_[gws, wrong]
        rssi = _rssi(xy, gws)
        for k in range(int((20 if phase == 0 else 25) / 0.5)):
            t += 0.5
            k_all += 1
            sos = phase == 1 and k >= 20
            messages = []
            for g, r in zip(gws, rssi, strict=True):
                gid = SITE.model.gateways[int(g)].id
                seq[gid] = seq.get(gid, 0) + 1
                tags = [("B01", Status.SKIN_CONTACT, k_all)]
                if g == wrong:
                    tags.append(("W01", Status.SOS if sos else Status.NONE, k_all))
                clock = t - 0.2 + (skew if g == wrong else 0.0)
                payload = frame(SITE, tags, gateway=gid, seq=seq[gid], t0=clock, rssi=int(r))
                messages.append((f"rtls/v1/gw/{gid}/obs", payload, t))
            engine.ingest_messages(messages)
            result = engine.tick(t)
            desk.step(t, result, engine.decoder.counters)
        est = result.estimate
        zone = int(result.zone[0])  # B01
        err = float(np.hypot(*(est.xy[0] - xy))) if est.known[0] else math.inf
        out.append((name, SITE.zones[zone].id if zone >= 0 else None, err))
    return out


@functools.cache
def _truth() -> list[tuple[str, str | None, float]]:
    return _walk(0.0, Engine(SITE), Desk(SITE))


@pytest.mark.parametrize("skew", [0.0, -HOUR, -300.0, 300.0, HOUR])
def test_locating_and_alarm_times_survive_a_wrong_gateway_clock(skew: float) -> None:
    engine, desk = Engine(SITE), Desk(SITE)
    truth = _truth()
    got = _walk(skew, engine, desk)
    for (name, zone, err), (_, zone0, err0) in zip(got, truth, strict=True):
        assert zone == zone0, f"{name}: zone {zone} with a clock {skew:+} s off, {zone0} without"
        # corrected times are receive times (the transit is unknown): a little different
        assert err < err0 + 1.0, f"{name}: {err:.2f} m off with a skewed clock ({err0:.2f} m)"
    sos = [a for a in desk.book.alarms.values() if a.type == AlarmType.SOS]
    assert len(sos) == 1
    pressed = T0 + 30.5  # the first SOS frame's tick
    assert pressed - 0.5 <= sos[0].raised_t <= pressed + 1.0  # not an hour off
    clocks = engine.decoder.counters.clocks
    if skew:
        skewed = {SITE.model.gateways[int(i)].id for i in clocks.skewed()}
        assert len(skewed) >= 1 and clocks.corrected.sum() > 0
        assert np.all(np.abs(clocks.offset[clocks.skewed()] + skew) < 1.0)
    else:
        assert not clocks.corrected.any()


# -- the service: the technician sees it --------------------------------------------------------


def test_technicians_see_the_wrong_clock_and_the_alarm_time_is_right(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    port = fresh_mosquitto.port

    async def run(h: ConsoleHarness) -> None:
        tom = await WsClient.login(h.ws_url, "tech.tom", PASSWORD)
        sam = await WsClient.login(h.ws_url, "security.sam", PASSWORD)
        # G01's clock is an hour behind; G02's is an hour ahead
        for k in range(int(CONFIRM_S / 0.5) + 4):
            now = time.time()
            send(port, "G01", frame(h.site, [("W03", Status.NONE, k + 1)], gateway="G01",
                                    seq=k + 1, t0=now - HOUR))  # fmt: skip
            send(port, "G02", frame(h.site, [("W04", Status.NONE, k + 1)], gateway="G02",
                                    seq=k + 1, t0=now + HOUR))  # fmt: skip
            await asyncio.sleep(0.5)
        pressed = time.time()
        for k in range(3):
            send(port, "G01", frame(h.site, [("W03", Status.SOS, 100 + k)], gateway="G01",
                                    seq=100 + k, t0=time.time() - HOUR))  # fmt: skip
            send(port, "G02", frame(h.site, [("W04", Status.SOS, 100 + k)], gateway="G02",
                                    seq=100 + k, t0=time.time() + HOUR))  # fmt: skip
        for worker in ("W03", "W04"):
            m = await sam.wait(alarm_of("sos", worker), timeout=10.0)
            raised = m["transition"]["alarm"]["raised_t"]
            assert pressed - 1.0 <= raised <= time.time(), (worker, raised - pressed)

        def shows(m: dict[str, object]) -> bool:
            if m.get("type") != "technical":
                return False
            rows = {r["id"]: r for r in m["gateways"]}  # type: ignore[attr-defined]
            return bool(rows["G01"]["clock_offset_s"] and rows["G02"]["clock_offset_s"])

        tech = await tom.wait(shows, timeout=10.0)
        rows = {r["id"]: r for r in tech["gateways"]}
        assert rows["G01"]["clock_offset_s"] == pytest.approx(HOUR, abs=2.0)
        assert rows["G02"]["clock_offset_s"] == pytest.approx(-HOUR, abs=2.0)
        assert all(r["clock_offset_s"] == 0 for g, r in rows.items() if g not in ("G01", "G02"))
        await tom.ws.close()
        await sam.ws.close()

    with ConsoleHarness(port, tmp_path) as h:
        asyncio.run(run(h))
