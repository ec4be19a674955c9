"""The attacker (gateways.attacker) and its scenario actions: replay and clone."""

from __future__ import annotations

import numpy as np
import pytest
from firmware_sim.tags import Frame

from gateways.attacker import Attacker
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.advertisement import decode_body, tag_address
from rtls.batch import decode_batch
from rtls.errors import ScenarioError
from rtls.tagauth import auth_code

KEY = bytes(range(16))


def _scenario(events: list[dict[str, object]], duration_s: float = 40.0) -> dict[str, object]:
    return {
        "scenario": {"name": "attack", "site": "example", "seed": 3, "duration_s": duration_s,
                     "ambient": False},
        "actors": [{"id": "mallory", "start": {"zone": "L1-LOBBY"}}],
        "events": events,
    }  # fmt: skip


def _frames(serial: int, n: int) -> list[Frame]:
    out = []
    for k in range(n):
        body = bytearray(20)
        body[0], body[1:5], body[5:7] = 0x11, serial.to_bytes(4, "little"), k.to_bytes(2, "little")
        out.append(Frame(float(k), serial, bytes(body), -59.0))
    return out


def test_attacks_need_an_actor_and_a_tag() -> None:
    with pytest.raises(ScenarioError, match="must be an actor"):
        scenario_from_mapping(_scenario([{"at_s": 1, "action": "replay", "who": "B01",
                                          "tag": "B02"}]))  # fmt: skip
    with pytest.raises(ScenarioError, match="needs 'tag'"):
        scenario_from_mapping(_scenario([{"at_s": 1, "action": "clone", "who": "mallory"}]))
    sc = scenario_from_mapping(_scenario([{"at_s": 1, "action": "clone", "who": "mallory",
                                           "tag": "B02", "value": False}]))  # fmt: skip
    assert sc.events[0].action == "clone"


def test_replay_sends_the_captured_frames_oldest_first() -> None:
    spy = Attacker({4}, np.random.default_rng(0))
    frames = _frames(0x1234, 6)
    for f in frames:
        spy.capture(4, f)
        spy.capture(5, f)  # not a victim: ignored
    assert 5 not in spy.captured
    spy.replay(4.5, device=99, victim=4, duration_s=10.0, interval_s=1.0)  # frames 0-4
    sent = spy.due(20.0, {4: -59.0})
    assert [a.body for a in sent] == [f.body for f in frames[:5]]
    assert [a.t for a in sent] == [4.5, 5.5, 6.5, 7.5, 8.5]
    assert {a.device for a in sent} == {99} and {a.victim for a in sent} == {4}
    assert spy.due(30.0, {}) == []


def test_clone_is_ahead_and_signed_with_another_key_or_not_at_all() -> None:
    spy = Attacker({4}, np.random.default_rng(0))
    genuine = _frames(0x1234, 3)
    for f in genuine:
        spy.capture(4, f)
    spy.clone(10.0, 99, 4, duration_s=2.5, interval_s=1.0)
    spy.clone(10.0, 98, 4, duration_s=0.5, interval_s=1.0, signed=False)
    sent = spy.due(20.0, {4: -59.0})
    signed = [a for a in sent if a.device == 99]
    unsigned = [a for a in sent if a.device == 98]
    assert [int.from_bytes(a.body[5:7], "little") for a in signed] == [3, 4, 5]
    for a in signed:
        assert a.body[:5] == genuine[-1].body[:5]  # the victim's kind and serial
        assert a.body[12:] != bytes(8)
        assert a.body[12:] != auth_code(KEY, a.body, int.from_bytes(a.body[5:7], "little"))
    assert len(unsigned) == 1 and unsigned[0].body[12:] == bytes(8)


def _victim_records(world: World, victim: str, until: float) -> list[tuple[float, int, bytes]]:
    """(time, gateway count, body) of native records carrying the victim's address."""
    address = np.frombuffer(tag_address(world.site.tags[world.tag_ids.index(victim)].serial),
                            dtype=np.uint8)  # fmt: skip
    out = []
    t = 0.0
    while t < until:
        t = round(t + 0.25, 6)
        for routed in world.step(t).messages:
            if not routed.msg.topic.endswith("/obs"):
                continue
            batch = decode_batch(routed.msg.payload)
            recs = batch.records
            mine = (recs["address"] == address).all(axis=1)
            for rec in recs[mine]:
                out.append((t, 1, rec["body"].tobytes()))
    return out


def test_world_signs_keyed_tags_and_replays_them_from_the_actor() -> None:
    sc = scenario_from_mapping(_scenario([
        {"at_s": 20, "action": "replay", "who": "mallory", "tag": "B03", "duration_s": 10},
    ]))  # fmt: skip
    world = World(sc, keys={"B03": KEY})
    assert world.attacker is not None and world.attacker.victims == {world.tag_ids.index("B03")}
    records = _victim_records(world, "B03", 32.0)
    before = [decode_body(b) for t, _, b in records if t < 20]
    assert before, "B03 was heard"
    for t, _, body in records:
        if t < 20:  # provisioned at the start: the counter is the sequence number
            assert body[12:] == auth_code(KEY, body, int.from_bytes(body[5:7], "little"))
    seq_at_20 = max(a.seq for a in before)
    replayed = [b for t, _, b in records if t >= 21 and decode_body(b).seq <= seq_at_20 - 2]
    assert replayed, "the replayed frames were heard"
    assert set(replayed) <= {b for t, _, b in records if t < 20}  # copies, byte for byte
    assert world.attacker.sent >= 4
