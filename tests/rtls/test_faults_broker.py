"""Fault: the MQTT broker dies (SIGKILL, no persistence) and comes back on the same port.

Real parts throughout: Mosquitto, the gateway simulator as a child process (``gateways.cli
run`` with a scenario file: every gateway its own MQTT connection, the tags' firmware
models), the engine with its alarm store and console (ConsoleHarness), a WebSocket console
client and MQTT subscribers. A strap is cut just before the broker is killed and a lone worker
presses SOS while it is down; the broker comes back 8 s later. Both alarms reach the console and
MQTT, the retained alarm state is published again (the new broker knew nothing), the gateways
and the engine reconnect, and the console's confirmation reaches the badge.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateways.formats import native_observations
from rtls import topics
from rtls.batch import RECORD_DTYPE
from rtls.service.broker import MosquittoBroker
from tests.broker import MessageCollector, wait_until
from tests.console_harness import PASSWORD, ConsoleHarness, WsClient
from tests.faults import TimedCollector, alarm_of

TAMPER_AT_S = 10.0  # scenario time of the strap cut (B03)
KILL_AT_S = 10.2  # the broker is killed in the middle of the tamper burst
SOS_AT_S = 13.0  # W01 presses SOS while the broker is down
RESTART_AT_S = 18.2
SCENARIO = f"""
[scenario]
name = "broker restart"
site = "example"
seed = 4
duration_s = 75

[[events]]
at_s = {TAMPER_AT_S}
action = "tamper"
tag = "B03"

[[events]]
at_s = {SOS_AT_S}
action = "sos"
who = "W01"
"""


def test_native_observations_carrying_status_bits_are_qos_1() -> None:
    """What the simulated gateways publish: observation batches at QoS 1 (queued by the
    gateway's link while the broker is away, tests/gateways/test_mqtt.py), never retained."""
    recs = np.zeros(1, dtype=RECORD_DTYPE)
    (msg,) = native_observations("G01", 1, 1.0e9, recs)
    assert msg.qos == 1 and not msg.retain


def _sim_t0(col: TimedCollector) -> float:
    """Wall time of the simulator's t = 0: its first batch leaves one batch interval in."""
    col.wait_for(lambda m: m.topic.endswith("/obs"), timeout=60.0)
    return next(t for t, m in col.timed() if m.topic.endswith("/obs")) - 0.25


def test_broker_restart_loses_no_alarm(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    broker = fresh_mosquitto
    port = broker.port
    scenario = tmp_path / "restart.toml"
    scenario.write_text(SCENARIO)
    watch = TimedCollector(port, [topics.ALARM_EVENTS, topics.DOWNLINK_FILTER,
                                    "rtls/v1/gw/+/status", "rtls/v1/gw/+/obs"])  # fmt: skip

    async def run(h: ConsoleHarness) -> dict[str, Any]:
        assert h.server is not None
        service, shell = h.server.service, h.server.shell
        sam = await WsClient.login(h.ws_url, "security.sam", PASSWORD)
        sim = subprocess.Popen(
            [sys.executable, "-m", "gateways.cli", "run", "--scenario", str(scenario),
             "--broker", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            t0 = await asyncio.to_thread(_sim_t0, watch)
            await asyncio.sleep(max(0.0, t0 + KILL_AT_S - time.time()))
            broker.kill()  # a crash: sessions and retained messages are gone
            killed = time.time()
            await asyncio.sleep(max(0.0, t0 + RESTART_AT_S - time.time()))
            assert not service.connected.is_set()
            broker.start()  # the same port
            restarted = time.time()
            sos = await sam.wait(alarm_of("sos", "W01"), timeout=30.0)
            tamper = await sam.wait(alarm_of("tamper", "B03"), timeout=30.0)
            raised = time.time()
            assert service.connected.is_set() and service.stats.connects >= 2
            # every simulated gateway announced itself online again on the new broker
            assert await asyncio.to_thread(wait_until, lambda: any(
                m.topic == "rtls/v1/gw/G01/status" and t > restarted
                for t, m in watch.timed()), 15.0)  # fmt: skip
            # a subscriber that arrives now gets both alarms' state: published again
            with MessageCollector(port, [topics.ALARM_STATE_FILTER]) as late:
                for alarm in (sos, tamper):
                    aid = alarm["transition"]["alarm"]["id"]
                    m = late.wait_for_topic(topics.alarm_state(aid), timeout=10.0)
                    assert m.retain and json.loads(m.payload)["id"] == aid
            # acknowledged on the console: the confirmation reaches the badge, which shows it
            ack = await sam.request(op="command", command="acknowledge",
                                    args={"alarm": sos["transition"]["alarm"]["id"]})  # fmt: skip
            assert ack["ok"] and ack.get("saved", True), ack

            def confirmed() -> bool:
                return not any(d.tag == "W01" for d in shell.desk.workers.pending_confirmations())

            assert await asyncio.to_thread(wait_until, confirmed, 20.0), "badge never confirmed"
        finally:
            sim.terminate()
            _, err = sim.communicate(timeout=20)
        await sam.ws.close()
        return {"killed": killed, "restarted": restarted, "raised": raised, "sim_err": err,
                "sos": sos, "tamper": tamper}  # fmt: skip

    with watch, ConsoleHarness(port, tmp_path) as h:
        r = asyncio.run(run(h))
        events = [json.loads(m.payload) for m in watch.messages if m.topic == topics.ALARM_EVENTS]
        confirms = [m for m in watch.messages if m.topic == topics.downlink("W01")
                    and json.loads(m.payload)["command"] == "confirm"]  # fmt: skip
    raises = {(e["alarm"]["type"], e["alarm"]["subject"]) for e in events if e["action"] == "raise"}
    assert {("sos", "W01"), ("tamper", "B03")} <= raises  # on MQTT too
    assert confirms, "no confirmation downlink"
    # the SOS was pressed while the broker was down, and raised soon after it came back
    assert r["raised"] - r["restarted"] < 15.0, r
    print(
        f"broker restart: down {r['restarted'] - r['killed']:.1f} s, both alarms raised "
        f"{r['raised'] - r['restarted']:.1f} s after it came back"
    )
