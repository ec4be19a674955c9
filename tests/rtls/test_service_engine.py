"""The engine service against a real Mosquitto: simulated ward in, positions out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.publish as publish
import pytest

from gateways.runner import MqttSink, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
from rtls.batch import encode_batch, make_records, obs_topic
from rtls.engine import Engine
from rtls.observations import OBS_DTYPE
from rtls.service.broker import MosquittoBroker
from rtls.service.engine import HEALTH_TOPIC, POSITIONS_TOPIC, STATUS_TOPIC, EngineService
from rtls.site import Site, load_site
from tests.broker import MessageCollector, wait_until

SITE = load_site()


def _frame(tag_id: str, status: Status, seq: int = 1) -> bytes:
    """One native batch from gateway G01 carrying one advertisement of ``tag_id``."""
    tag = next(t for t in SITE.tags if t.id == tag_id)
    adv = Advertisement(kind=TagKind.INFANT, serial=tag.serial, seq=seq, status=status)
    body = np.frombuffer(encode_body(adv), np.uint8).reshape(1, 20)
    recs = make_records(np.array([0]), np.array([list(tag_address(tag.serial))], np.uint8),
                        np.array([-60]), 37, body)  # fmt: skip
    return encode_batch("G01", seq, time.time(), recs)


@contextlib.contextmanager
def _desk_service(
    broker: MosquittoBroker, db: Path, site: Site, engine: Engine, client_id: str, counter: str,
    tick_nice: int = 0,
) -> Iterator[tuple[EngineService, list[tuple[str, str, int, int]]]]:
    """The engine service with an alarm desk (B01 admitted) in a thread of its own, connected;
    each alarm transition is noted as (type, subject, ticks so far, ``stats.<counter>``)."""
    from rtls.desk import Desk, DeskOutput
    from rtls.service.alarms import AlarmShell
    from rtls.service.store import AlarmStore

    seen: list[tuple[str, str, int, int]] = []
    box: list[EngineService] = []

    async def main() -> None:
        async with await AlarmStore.open(db) as store:
            shell = AlarmShell(Desk(site), store, clock=time.time)
            await shell.command(None, "admit", {"baby": "B01"}, "test")
            service = EngineService(engine, broker.host, broker.port, client_id=client_id,
                                    alarms=shell, tick_nice=tick_nice)  # fmt: skip

            def observe(out: DeskOutput) -> None:
                for tr in out.transitions:
                    seen.append((tr.alarm.type.value, tr.alarm.subject, service.stats.ticks,
                                 getattr(service.stats, counter)))  # fmt: skip

            shell.observers.append(observe)
            box.append(service)
            await service.run()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: bool(box) and box[0].connected.is_set(), timeout=10)
        yield box[0], seen
    finally:
        if box:
            loop.call_soon_threadsafe(box[0].stop)
        thread.join(timeout=15)


def test_simulated_ward_in_positions_out(fresh_mosquitto: MosquittoBroker) -> None:
    engine = Engine(SITE)
    service = EngineService(engine, fresh_mosquitto.host, fresh_mosquitto.port, client_id="eng-t")
    results = []
    service.on_tick = results.append
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(service.run(),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not service.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.connected.is_set()
        data = {"scenario": {"name": "t", "duration_s": 25, "seed": 4, "ambient": False}}
        world = World(scenario_from_mapping(data, site=SITE), epoch=time.time())
        with MessageCollector(fresh_mosquitto.port, [POSITIONS_TOPIC, HEALTH_TOPIC]) as sub:
            run(world, MqttSink(fresh_mosquitto.host, fresh_mosquitto.port, client_prefix="s"),
                speed=2.0)  # fmt: skip
            time.sleep(1.0)
            published = sub.matching(lambda m: m.topic == POSITIONS_TOPIC)
            health = sub.matching(lambda m: m.topic == HEALTH_TOPIC)
    finally:
        loop.call_soon_threadsafe(service.stop)
        thread.join(timeout=15)
    assert published, "the engine published no positions"
    assert service.stats.received > 500
    assert sum(engine.decoder.counters.rejected.values()) == 0
    # compare the last estimate with the (static) true positions
    truth = world.motion.positions(world.t)
    est = results[-1].estimate
    n = len(SITE.tags)
    known = est.known[:n]
    assert known.mean() > 0.8
    err = np.hypot(*(est.xy[:n] - truth.xyz[:n, :2]).T)[known]
    assert np.median(err) < 4.0  # a sanity bound; accuracy is measured in bench/
    assert (est.floor[:n][known] == truth.floor[:n][known]).all()
    assert health, "the engine published no health"
    report = json.loads(health[-1].payload)
    assert report["decoder"]["observations"] > 0
    assert report["unknown_tags"] == []
    last = json.loads(published[-1].payload)
    assert {"tag", "x", "y", "floor", "zone", "uncertainty", "known"} <= set(last["positions"][0])


def test_a_strap_tamper_reaches_the_desk_before_any_tick(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The urgent pass: a batch with the TAMPER bit is decoded and given to the alarm desk as it
    arrives; with a 5 s tick, the alarm is committed before the first tick has run."""
    from rtls.engine import EngineParams

    engine = Engine(SITE, EngineParams(tick_s=5.0))
    with _desk_service(fresh_mosquitto, tmp_path / "alarms.db", SITE, engine, "eng-urgent",
                       "early_passes") as (service, seen):  # fmt: skip
        assert service.stats.ticks == 0
        publish.single(obs_topic("G01"), _frame("B01", Status.TAMPER), qos=1,
                       hostname=fresh_mosquitto.host, port=fresh_mosquitto.port)  # fmt: skip
        assert wait_until(lambda: any(s[:2] == ("tamper", "B01") for s in seen), timeout=4)
        # the tag repeats its TAMPER bit in its next advertisement: urgent, but no news, so
        # no second desk step (the tick sees it)
        passes = service.stats.early_passes
        publish.single(obs_topic("G01"), _frame("B01", Status.TAMPER, seq=2), qos=1,
                       hostname=fresh_mosquitto.host, port=fresh_mosquitto.port)  # fmt: skip
        assert wait_until(lambda: service.stats.early_passes > passes, timeout=4)
    tamper = next(s for s in seen if s[:2] == ("tamper", "B01"))
    assert tamper[2] == 0, "the tamper alarm waited for a tick"
    assert tamper[3] >= 1
    assert service.stats.urgent == 2
    assert service.stats.early_repeats == 1
    assert service.stats.early_passes - service.stats.early_repeats >= 1


def test_positions_json_is_the_documented_document() -> None:
    from rtls.service.engine import PositionsEncoder

    engine = Engine(SITE)
    xy = np.array([12.0, 4.0])
    ga = SITE.gateway_arrays
    near = np.argsort(np.hypot(*(ga.xyz[:, :2] - xy).T) + 1e3 * (ga.floor != 0))[:6]
    for k in range(7):
        d = np.linalg.norm(ga.xyz[near] - np.r_[xy, 1.0], axis=1)
        obs = np.zeros(len(near), dtype=OBS_DTYPE)
        obs["t"], obs["gateway"], obs["tag"] = 1e9 + k * 0.5, near, 0
        obs["rssi"] = ga.rssi_at_1m[near] - 25 * np.log10(np.maximum(d, 1))
        engine.ingest_observations(obs)
        if k < 6:
            result = engine.tick(1e9 + k * 0.5 + 0.25)
    engine.ingest_observations(np.array([(1e9 + 3.1, int(near[0]), 1, -90.0)], dtype=OBS_DTYPE))
    result = engine.tick(1e9 + 3.25)  # tag 1 heard by one gateway: located, unknown
    doc = json.loads(PositionsEncoder(engine).encode(result))
    rows = {r["tag"]: r for r in doc["positions"]}
    assert doc["t"] == round(result.t, 3) and set(rows) == {"B01", "B02"}
    est = result.estimate
    b01 = rows["B01"]
    assert b01 == {"tag": "B01", "known": True, "x": round(float(est.xy[0, 0]), 2),
                   "y": round(float(est.xy[0, 1]), 2), "floor": "L1",
                   "zone": SITE.zones[int(result.zone[0])].id if result.zone[0] >= 0 else None,
                   "uncertainty": round(float(est.uncertainty[0]), 2)}  # fmt: skip
    assert rows["B02"]["known"] is False and rows["B02"]["x"] is None
    hidden = json.loads(PositionsEncoder(engine).encode(result, np.arange(len(SITE.tags)) != 0))
    assert [r["tag"] for r in hidden["positions"]] == ["B02"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_engine_stops_cleanly_on_sigterm_and_sigint(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, sig: signal.Signals
) -> None:
    """systemd's SIGTERM and Ctrl-C's SIGINT: the offline status, a closed store, exit 0.
    Once started, its start-up heap is out of the garbage collector's reach (freeze_heap)."""
    import urllib.request

    from rtls.service.broker import free_port

    console = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "rtls.service.cli", "engine", "--broker",
           f"127.0.0.1:{fresh_mosquitto.port}", "--db", str(tmp_path / "a.db"),
           "--console", console]  # fmt: skip
    with MessageCollector(fresh_mosquitto.port, [STATUS_TOPIC]) as sub:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: any(m.payload == b'{"state":"online"}'
                                          for m in sub.messages), 30.0)  # fmt: skip
            with urllib.request.urlopen(f"http://{console}/metrics", timeout=10) as r:
                frozen = [line for line in r.read().decode().splitlines()
                          if line.startswith("rtls_gc_frozen_objects ")]  # fmt: skip
            assert frozen and float(frozen[0].split()[1]) > 10_000, frozen
            time.sleep(0.5)  # a few ticks: the signal lands in a running loop
            sub.clear()
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, out.decode(errors="replace")
        assert b"Traceback" not in out, out.decode(errors="replace")
        assert wait_until(lambda: any(m.payload == b'{"state":"offline"}'
                                      for m in sub.messages), 5.0)  # fmt: skip


def test_a_burst_of_alarms_is_announced_in_order_without_pending_call_warnings(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every baby's strap cut in one batch: one desk output of many alarms, whose QoS 1
    announcements are awaited together (AlarmShell._announce). All reach the broker, in the
    order of their alarm ids, and aiomqtt does not take the burst for a stuck broker."""
    from rtls import topics
    from rtls.desk import Desk
    from rtls.engine import EngineParams
    from rtls.service.alarms import AlarmShell
    from rtls.service.store import AlarmStore

    babies = [t for t in SITE.tags if t.kind.value == "infant"]
    assert len(babies) >= 12
    bodies = np.stack([np.frombuffer(encode_body(Advertisement(
        kind=TagKind.INFANT, serial=t.serial, seq=3, status=Status.TAMPER)), np.uint8)
        for t in babies])  # fmt: skip
    recs = make_records(np.zeros(len(babies), int),
                        np.array([list(tag_address(t.serial)) for t in babies], np.uint8),
                        np.full(len(babies), -60), 37, bodies)  # fmt: skip
    events = MessageCollector(fresh_mosquitto.port, [topics.ALARM_EVENTS])
    events.start()
    box: list[EngineService] = []

    async def main() -> None:
        async with await AlarmStore.open(tmp_path / "alarms.db") as store:
            shell = AlarmShell(Desk(SITE), store, clock=time.time)
            for name, args in shell.desk.admission_orders():
                await shell.command(None, name, args, "test")
            service = EngineService(Engine(SITE, EngineParams(tick_s=5.0)), fresh_mosquitto.host,
                                    fresh_mosquitto.port, client_id="eng-burst",
                                    alarms=shell)  # fmt: skip
            box.append(service)
            await service.run()

    caplog.set_level("WARNING")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: bool(box) and box[0].connected.is_set(), timeout=10)
        publish.single(obs_topic("G01"), encode_batch("G01", 1, time.time(), recs), qos=1,
                       hostname=fresh_mosquitto.host, port=fresh_mosquitto.port)  # fmt: skip

        def raised() -> list[int]:
            out = [json.loads(m.payload) for m in events.matching(lambda m: True)]
            return [e["alarm_id"] for e in out
                    if e["action"] == "raise" and e["alarm"]["type"] == "tamper"]  # fmt: skip

        assert wait_until(lambda: len(raised()) == len(babies), timeout=10), raised()
    finally:
        if box:
            loop.call_soon_threadsafe(box[0].stop)
        thread.join(timeout=15)
    ids = raised()
    events.close()
    assert ids == sorted(ids) and len(set(ids)) == len(babies)
    assert not [r for r in caplog.records if "pending publish calls" in r.getMessage()]


def _heard_at(tag_id: str, xy: tuple[float, float], seq: int) -> list[tuple[str, bytes]]:
    """One advertisement of ``tag_id`` (bracelet worn) at ``xy`` on L1, heard by the six
    nearest gateways with the site's model RSSI: one native batch per gateway."""
    from rtls.engine import wall_maps

    ga, walls = SITE.gateway_arrays, wall_maps(SITE)
    assert walls is not None
    tag = SITE.tag(tag_id)
    near = np.argsort(np.hypot(*(ga.xyz[:, :2] - np.array(xy)).T) + 1e3 * (ga.floor != 0))[:6]
    d = np.linalg.norm(ga.xyz[near] - np.array([*xy, SITE.floors[0].elevation + 1.0]), axis=1)
    rssi = (ga.rssi_at_1m[near] - 10 * ga.path_loss_exponent[near] * np.log10(np.maximum(d, 1))
            - walls.lookup(np.array([xy]))[0, near])  # fmt: skip
    adv = Advertisement(kind=TagKind.INFANT, serial=tag.serial, seq=seq,
                        status=Status.SKIN_CONTACT)  # fmt: skip
    body = np.frombuffer(encode_body(adv), np.uint8).reshape(1, 20)
    out = []
    for g, r in zip(near.tolist(), np.round(rssi).astype(int).tolist(), strict=True):
        gid = SITE.gateways[g].id
        recs = make_records(np.array([0]), np.array([list(tag_address(tag.serial))], np.uint8),
                            np.array([r]), 37, body)  # fmt: skip
        out.append((obs_topic(gid), encode_batch(gid, seq, time.time(), recs)))
    return out


def test_a_babys_zone_breach_is_raised_between_ticks(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Two-part ticks: with a 5 s tick and the watched tags located every 0.25 s, a baby
    heard in exit zone E1 (its dwell 0) raises the exit alarm before the first tick, from a
    pass of the watched tags; the badges and the tick are not waited for."""
    import tomllib

    from rtls.engine import EngineParams
    from rtls.site import EXAMPLE_SITE

    data = tomllib.loads(EXAMPLE_SITE.read_text(encoding="utf-8"))
    next(z for z in data["zones"] if z["id"] == "E1")["rules"]["exit_dwell_s"] = 0.0
    site = Site.from_mapping(data)
    engine = Engine(site, EngineParams(tick_s=5.0, watch_s=0.25))
    with _desk_service(fresh_mosquitto, tmp_path / "alarms.db", site, engine, "eng-breach",
                       "first_steps", tick_nice=5) as (service, seen):  # fmt: skip
        # the tick thread yields the core to the loop (rtls engine: TICK_NICE)
        assert wait_until(lambda: any(t.name.startswith("rtls-tick") for t in
                                      threading.enumerate()), timeout=2)  # fmt: skip
        tick = next(t for t in threading.enumerate() if t.name.startswith("rtls-tick"))
        assert tick.native_id is not None
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert os.getpriority(os.PRIO_PROCESS, tick.native_id) == min(19, base + 5)
        # the watched tags' passes have a thread of their own, at normal priority
        assert wait_until(lambda: any(t.name.startswith("rtls-watch") for t in
                                      threading.enumerate()), timeout=2)  # fmt: skip
        watch = next(t for t in threading.enumerate() if t.name.startswith("rtls-watch"))
        assert watch.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, watch.native_id) == base
        # the engine's socket and the broker's send without Nagle's delay (a QoS 1
        # acknowledgement must not wait ~40 ms for a delayed TCP ACK)
        client = service.client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert "set_tcp_nodelay true" in fresh_mosquitto.config_path.read_text().splitlines()
        for seq in range(1, 5):  # 2 s of advertisements from inside E1
            for topic, payload in _heard_at("B01", (9.5, 11.0), seq):
                publish.single(topic, payload, qos=1, hostname=fresh_mosquitto.host,
                               port=fresh_mosquitto.port)  # fmt: skip
            if wait_until(lambda: any(s[:2] == ("exit", "B01") for s in seen), timeout=0.5):
                break
        assert wait_until(lambda: any(s[:2] == ("exit", "B01") for s in seen), timeout=2)
    exit_ = next(s for s in seen if s[:2] == ("exit", "B01"))
    assert exit_[2] == 0, "the breach waited for a tick"
    assert exit_[3] >= 1 and service.stats.watch_passes >= 1
