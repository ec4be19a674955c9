"""Downlinks from the engine to simulated tags: parsing, the listener over a real broker, and
the badge's and the bracelet's reaction in the world."""

from __future__ import annotations

import json

import paho.mqtt.publish as publish
import pytest
from firmware_sim.tags import InfantBracelet

from gateways.cli import shipped_scenarios
from gateways.downlink import DownlinkListener, DownlinkMessage, parse_downlink
from gateways.scenario import load_scenario
from gateways.world import World
from rtls.advertisement import Status, Status2
from rtls.batch import decode_batch
from rtls.desk import Desk
from rtls.errors import PayloadError
from rtls.service.broker import MosquittoBroker
from rtls.site import load_site
from rtls.topics import downlink
from tests.broker import unique_client_id, wait_until


def test_parse_downlink() -> None:
    assert parse_downlink(downlink("W01"), b'{"command":"confirm"}') == DownlinkMessage(
        "W01", "confirm")  # fmt: skip
    assert parse_downlink("rtls/v1/downlink/S02", b'{"command":"reset","x":1}') == DownlinkMessage(
        "S02", "reset")  # fmt: skip
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


def test_parse_pair_downlink_validates_the_mother_serial() -> None:
    msg = parse_downlink(downlink("B06"), b'{"command":"pair","mother":1006,"t":1.5}')
    assert msg == DownlinkMessage("B06", "pair", 1006)
    assert parse_downlink(downlink("B06"), b'{"command":"pair","mother":0}').mother == 0
    top = b'{"command":"pair","mother":4294967295}'
    assert parse_downlink(downlink("B06"), top).mother == 0xFFFF_FFFF
    for body in (b'{"command":"pair"}', b'{"command":"pair","mother":null}',
                 b'{"command":"pair","mother":-1}', b'{"command":"pair","mother":4294967296}',
                 b'{"command":"pair","mother":"M05"}', b'{"command":"pair","mother":1.5}',
                 b'{"command":"pair","mother":true}'):  # fmt: skip
        with pytest.raises(PayloadError) as err:
            parse_downlink(downlink("B06"), body)
        assert err.value.reason == "bad_mother", body


def test_engine_pair_downlink_parses_back() -> None:
    desk = Desk(load_site())
    desk.command("admit", {"baby": "B06"}, "nurse", 1.0)
    out = desk.command("pair", {"baby": "B06", "mother": "M06"}, "nurse", 2.0)
    (dl,) = out.downlinks
    msg = parse_downlink(downlink(dl.tag), json.dumps(dl.as_dict()).encode())
    assert msg == DownlinkMessage("B06", "pair", desk.site.tag("M06").serial)


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
        pairs: list[DownlinkMessage] = []

        def poll_pair() -> bool:
            publish.single(downlink("B02"), json.dumps({"command": "pair", "mother": 7}), qos=1,
                           hostname="127.0.0.1", port=mosquitto.port)  # fmt: skip
            pairs.extend(listener.take_messages())
            return DownlinkMessage("B02", "pair", 7) in pairs

        assert wait_until(poll_pair, timeout=10.0, interval=0.2)
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
    assert not world.downlink(badge.id, "pair", 8.0, mother=5)  # a badge has no pairing


def test_pair_downlink_reaches_the_bracelet_only() -> None:
    sc = load_scenario(shipped_scenarios()["worker_fall"])
    world = World(sc)
    bracelet = world._fw_by_id["B01"]
    assert isinstance(bracelet, InfantBracelet) and bracelet.paired_mother == 0
    m01 = sc.site.tag("M01").serial
    assert world.downlink("B01", "pair", 1.0, mother=m01)
    assert bracelet.paired_mother == m01
    assert world.downlink("B01", "pair", 2.0, mother=0)  # unpaired (discharge)
    assert bracelet.paired_mother == 0
    assert not world.downlink("B01", "pair", 3.0)  # no serial: refused, nothing changes
    assert not world.downlink("B01", "pair", 3.0, mother=-1)
    assert not world.downlink("M01", "pair", 3.0, mother=m01)  # a mother tag pairs nothing
    assert bracelet.paired_mother == 0
