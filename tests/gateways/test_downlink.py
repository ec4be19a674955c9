"""Downlinks from the engine to simulated badges: parsing, the listener over a real broker, and
the badge's reaction in the world."""

from __future__ import annotations

import json

import paho.mqtt.publish as publish
import pytest

from gateways.cli import shipped_scenarios
from gateways.downlink import DownlinkListener, parse_downlink
from gateways.scenario import load_scenario
from gateways.world import World
from rtls.advertisement import Status, Status2
from rtls.batch import decode_batch
from rtls.errors import PayloadError
from rtls.service.broker import MosquittoBroker
from rtls.topics import downlink
from tests.broker import unique_client_id, wait_until


def test_parse_downlink() -> None:
    assert parse_downlink(downlink("W01"), b'{"command":"confirm"}') == ("W01", "confirm")
    assert parse_downlink("rtls/v1/downlink/S02", b'{"command":"reset","x":1}') == ("S02", "reset")
    for topic, payload, reason in [
        ("rtls/v1/other/W01", b'{"command":"confirm"}', "bad_topic"),
        ("rtls/v1/downlink/W01/x", b'{"command":"confirm"}', "bad_topic"),
        (downlink("W01"), b"\xff{", "bad_json"),
        (downlink("W01"), b'{"command":"unlock"}', "bad_command"),
        (downlink("W01"), b"[1]", "bad_command"),
    ]:
        with pytest.raises(PayloadError) as err:
            parse_downlink(topic, payload)
        assert err.value.reason == reason


def test_listener_collects_downlinks(mosquitto: MosquittoBroker) -> None:
    listener = DownlinkListener(unique_client_id("dl"), "127.0.0.1", mosquitto.port)
    listener.start()
    try:
        got: list[tuple[str, str]] = []

        def poll() -> bool:
            publish.single(downlink("W03"), json.dumps({"command": "confirm"}), qos=1,
                           hostname="127.0.0.1", port=mosquitto.port)  # fmt: skip
            publish.single(downlink("W03"), b"junk", hostname="127.0.0.1", port=mosquitto.port)
            got.extend(listener.take())
            return ("W03", "confirm") in got

        assert wait_until(poll, timeout=10.0, interval=0.2)
        assert wait_until(lambda: listener.rejected >= 1, timeout=5.0)
    finally:
        listener.stop()


def _badge_flags(world: World, tag_serial: int, t_from: float, t_to: float) -> list[int]:
    """status2 of the badge's advertisements heard by native gateways in [t_from, t_to)."""
    flags: list[int] = []
    t = t_from
    while t < t_to:
        t = round(t + 0.05, 9)
        for routed in world.step(t).messages:
            if not routed.msg.topic.endswith("/obs"):
                continue
            body = decode_batch(routed.msg.payload).records["body"]
            flags += body["status2"][body["serial"] == tag_serial].astype(int).tolist()
    return flags


def test_badge_confirms_and_resets_on_downlink() -> None:
    sc = load_scenario(shipped_scenarios()["worker_fall"])
    world = World(sc)
    badge = next(t for t in sc.site.tags if t.kind.value == "staff")
    world.step(1.0)
    world._badge(badge.id).press_sos(1.0)
    assert world.downlink(badge.id, "confirm", 1.0)
    flags = _badge_flags(world, badge.serial, 1.0, 8.0)
    assert flags and any(f & Status2.CONSOLE_CONFIRMED for f in flags)
    assert world.downlink(badge.id, "reset", 8.0)
    assert not world._badge(badge.id).status & Status.SOS
    assert not world.downlink("B01", "confirm", 8.0)  # an infant bracelet has no local alarm
    assert not world.downlink("NOPE", "confirm", 8.0)
    assert not world.downlink(badge.id, "unlock", 8.0)
