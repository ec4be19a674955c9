"""The engine service against a real Mosquitto: simulated ward in, positions out."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np

from gateways.runner import MqttSink, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.engine import Engine
from rtls.service.broker import MosquittoBroker
from rtls.service.engine import HEALTH_TOPIC, POSITIONS_TOPIC, EngineService
from rtls.site import load_site
from tests.broker import MessageCollector

SITE = load_site()


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
