"""The simulator against a real Mosquitto: formats on the wire, last wills, broker restarts."""

from __future__ import annotations

import json
import threading
import time

from gateways.cli import shipped_scenarios
from gateways.runner import MqttSink, RunStats, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.batch import decode_batch
from rtls.service.broker import MosquittoBroker
from rtls.site import load_site
from tests.broker import MessageCollector, Received, wait_until

SITE = load_site()


def _scenario(duration: float, *events: dict[str, object]) -> World:
    data = {"scenario": {"name": "t", "duration_s": duration, "seed": 5}, "events": list(events)}
    return World(scenario_from_mapping(data, site=SITE), epoch=time.time())


def test_live_run_publishes_every_format_and_last_wills(fresh_mosquitto: MosquittoBroker) -> None:
    world = _scenario(
        6.0,
        {"at_s": 2.0, "action": "gateway_reboot", "gateway": "G05", "duration_s": 2.0},
        {"at_s": 1.0, "action": "reader_power", "reader": "DR-E2", "value": False},
    )
    with MessageCollector(fresh_mosquitto.port, ["#"]) as sub:
        sink = MqttSink(fresh_mosquitto.host, fresh_mosquitto.port, client_prefix="t1")
        stats = run(world, sink, speed=3.0, tick_s=0.05)
        assert wait_until(lambda: len(sub.messages) >= sum(stats.messages.values()), 10)
        msgs: list[Received] = sub.messages
    topics = [m.topic for m in msgs]
    for gw in SITE.gateways:
        online = {
            "native": f"rtls/v1/gw/{gw.id}/status",
            "espresense": f"espresense/rooms/{gw.id.lower()}/status",
            "omg": f"home/{gw.id}/LWT",
        }[gw.format.value]
        assert online in topics, online
    natives = [m for m in msgs if m.topic.endswith("/obs")]
    assert natives
    assert all(m.qos == 1 for m in natives)
    assert sum(len(decode_batch(m.payload).records) for m in natives) > 100
    assert any(m.topic.startswith("espresense/devices/") for m in msgs)
    assert any("/BTtoMQTT/" in m.topic for m in msgs)
    # power cuts: the broker publishes the last will, then the device comes back online
    g05 = [json.loads(m.payload)["state"] for m in msgs if m.topic == "rtls/v1/gw/G05/status"]
    # (the last "offline" of every device is the simulator's clean shutdown at the end)
    assert g05[:3] == ["online", "offline", "online"]
    reader = [json.loads(m.payload)["state"] for m in msgs if m.topic.endswith("DR-E2/status")]
    assert reader[:2] == ["online", "offline"]
    assert stats.messages["native"] > 0


def test_simulator_survives_a_broker_restart(fresh_mosquitto: MosquittoBroker) -> None:
    world = _scenario(12.0)
    sink = MqttSink(fresh_mosquitto.host, fresh_mosquitto.port, client_prefix="t2")
    result: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: result.append(run(world, sink, speed=1.5, tick_s=0.05)), daemon=True
    )
    runner.start()
    time.sleep(1.5)
    fresh_mosquitto.kill()
    time.sleep(1.0)
    fresh_mosquitto.start()  # same port
    with MessageCollector(fresh_mosquitto.port, ["rtls/v1/gw/+/obs"]) as sub:
        assert sub.wait_for(lambda m: m.topic.endswith("/obs"), timeout=15.0)
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert result, "the run must finish, not crash"
    stats = sink.pool.stats()
    assert stats.reconnects >= 1
    assert stats.dropped_disconnected > 0  # QoS 0 messages during the outage are counted


def test_scenarios_listed() -> None:
    assert {"abduction", "worker_fall", "gateway_failure", "ward_incidents"} <= set(
        shipped_scenarios()
    )
