"""The pure engine pipeline: window -> locate -> track -> zones, and door reads."""

from __future__ import annotations

import numpy as np

from rtls.decode_result import READ_DTYPE
from rtls.engine import Engine, EngineParams, TickResult, wall_maps
from rtls.observations import OBS_DTYPE
from rtls.rooms import RoomParams
from rtls.site import load_site

SITE = load_site()
GA = SITE.gateway_arrays
WALLS = wall_maps(SITE)
T0 = 1_767_225_600.0


def _obs_at(
    tag: int, xy: tuple[float, float], floor: int, t: float, gateways: np.ndarray
) -> np.ndarray:
    """Noise-free RSSI (log distance and the site's walls) of a tag 1 m above ``floor``."""
    z = SITE.floors[floor].elevation + 1.0
    d = np.linalg.norm(GA.xyz[gateways] - np.array([xy[0], xy[1], z]), axis=1)
    rssi = GA.rssi_at_1m[gateways] - 10 * GA.path_loss_exponent[gateways] * np.log10(
        np.maximum(d, 1)
    )
    assert WALLS is not None
    rssi -= WALLS.lookup(np.array([xy]))[0, gateways]
    obs = np.zeros(len(gateways), dtype=OBS_DTYPE)
    obs["t"], obs["gateway"], obs["tag"], obs["rssi"] = t, gateways, tag, rssi
    return obs


def _near(xy: tuple[float, float], floor: int, k: int) -> np.ndarray:
    d = np.hypot(*(GA.xyz[:, :2] - np.array(xy)).T) + 1e3 * (GA.floor != floor)
    return np.argsort(d)[:k]


def test_exact_model_is_located_in_the_right_zone() -> None:
    eng = Engine(SITE)
    tag = 0  # B01, home R101
    xy = (12.0, 4.0)
    for k in range(12):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, _near(xy, 0, 6)))
        res = eng.tick(T0 + k * 0.5 + 0.25)
    assert res.estimate.known[tag]
    assert np.hypot(*(res.estimate.xy[tag] - xy)) < 0.3
    assert res.estimate.floor[tag] == 0
    assert SITE.zones[int(res.zone[tag])].id == "R101"
    entered = (
        {SITE.zones[int(z)].id for z in res.transitions.entered["zone"]}
        if len(res.transitions.entered)
        else set()
    )
    assert entered <= {"R101", "L1-WARD"}


def test_too_little_coverage_is_unknown_not_a_guess() -> None:
    eng = Engine(SITE)
    tag = 1
    xy = (30.0, 4.0)
    for k in range(8):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, _near(xy, 0, 2)))
        res = eng.tick(T0 + k * 0.5 + 0.25)
    assert not res.estimate.known[tag]
    assert res.zone[tag] == -1


def test_a_silent_gateway_does_not_stop_location() -> None:
    eng = Engine(SITE)
    tag = 2
    xy = (21.0, 5.0)
    gws = _near(xy, 0, 7)
    for k in range(8):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, gws))
        eng.tick(T0 + k * 0.5 + 0.25)
    # the nearest gateway falls silent; its link ages out of the window
    for k in range(8, 40):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, gws[1:]))
        res = eng.tick(T0 + k * 0.5 + 0.25)
    assert res.estimate.known[tag]
    assert np.hypot(*(res.estimate.xy[tag] - xy)) < 0.5


def test_door_read_places_the_tag_at_once_in_the_exit_zone() -> None:
    eng = Engine(SITE)
    tag = 3
    reader = [r.id for r in SITE.door_readers].index("DR-E1")
    reads = np.zeros(1, dtype=READ_DTYPE)
    reads["t"], reads["reader"], reads["tag"], reads["rssi"] = T0, reader, tag, -40
    eng.ingest_reads(reads)
    res = eng.tick(T0 + 0.1)
    assert res.estimate.known[tag]
    door = np.mean(SITE.door("D-E1").points, axis=0)
    assert np.hypot(*(res.estimate.xy[tag] - door)) < 0.01
    entered = [
        SITE.zones[int(z)].id
        for z, t in zip(
            res.transitions.entered["zone"], res.transitions.entered["tag"], strict=True
        )
        if t == tag
    ]
    assert "E1" in entered
    assert SITE.zones[int(res.zone[tag])].id == "E1"  # the room filter agrees with the read


def _walk_in_r101(eng: Engine, tag: int, ticks: int) -> TickResult:
    xy = (12.0, 4.0)
    for k in range(ticks):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, _near(xy, 0, 6)))
        res = eng.tick(T0 + k * 0.5 + 0.25)
    return res


def test_zones_come_from_the_room_filter_by_default_and_from_positions_without_it() -> None:
    with_rooms = Engine(SITE)
    assert with_rooms.rooms is not None
    res = _walk_in_r101(with_rooms, 0, 12)
    assert SITE.zones[int(res.zone[0])].id == "R101"
    r101 = with_rooms.zones.column("R101")
    assert with_rooms.rooms.zone_probability()[0, r101] > 0.9
    without = Engine(SITE, EngineParams(rooms=RoomParams(enabled=False)))
    assert without.rooms is None
    res = _walk_in_r101(without, 0, 12)
    assert SITE.zones[int(res.zone[0])].id == "R101"


def test_messages_from_the_simulator_formats_are_ingested() -> None:
    from gateways.formats import FORMATS
    from rtls.advertisement import Advertisement, TagKind, encode_body, tag_address
    from rtls.batch import make_records

    eng = Engine(SITE)
    body = np.frombuffer(
        encode_body(Advertisement(TagKind.INFANT, SITE.tags[0].serial)), dtype=np.uint8
    )
    address = np.frombuffer(tag_address(SITE.tags[0].serial), np.uint8)[None, :]
    rec = make_records(
        dt_us=np.array([0]), address=address, rssi=np.array([-70]), channel=np.array([37]),
        body=body[None, :],
    )  # fmt: skip
    for gw in SITE.gateways[:3]:
        for msg in FORMATS[gw.format.value].observations(gw.id, 1, T0, rec):
            eng.ingest_message(msg.topic, msg.payload, T0)
    assert eng.observations == 3
    eng.ingest_message("rtls/v1/gw/G01/obs", b"garbage", T0)
    assert sum(eng.decoder.counters.rejected.values()) == 1


def test_tracks_are_kept_in_the_walkable_area() -> None:
    xy = (12.0, 0.05)  # in R101, 5 cm from the outer wall: nobody walks there
    gws = _near(xy, 0, 6)
    results = {}
    for on in (True, False):
        eng = Engine(SITE) if on else Engine(SITE, EngineParams(walkable=None))
        assert (eng.tracker.constraint is not None) == on
        for k in range(8):
            eng.ingest_observations(_obs_at(4, xy, 0, T0 + k * 0.5, gws))
            res = eng.tick(T0 + k * 0.5 + 0.25)
        assert res.estimate.known[4]
        results[on] = res.estimate.xy[4]
        if on:
            assert eng.walkable is not None
            assert eng.walkable.contains(res.estimate.xy[4:5], 0)[0]
    assert results[False][1] < 0.15  # the fix itself is where the model puts it
    assert 0.2 <= results[True][1] <= 0.5  # the track is just inside the walkable area
    assert abs(results[True][0] - xy[0]) < 0.2


def _tamper_batch(tag_id: str, status: int, t: float, seq: int = 1) -> bytes:
    from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
    from rtls.batch import encode_batch, make_records

    tag = next(t for t in SITE.tags if t.id == tag_id)
    adv = Advertisement(kind=TagKind.INFANT, serial=tag.serial, seq=seq, status=Status(status))
    body = np.frombuffer(encode_body(adv), np.uint8).reshape(1, 20)
    recs = make_records(np.array([0]), np.array([list(tag_address(tag.serial))], np.uint8),
                        np.array([-60]), 37, body)  # fmt: skip
    return encode_batch("G01", seq, t, recs)


def test_early_pass_hands_over_input_with_the_last_ticks_positions_and_changes_nothing() -> None:
    from rtls.decode import Decoder
    from rtls.decode_result import Decoded

    eng = Engine(SITE)
    tag, xy = 0, (12.0, 4.0)
    before = eng.early(T0, Decoded())  # before any tick: every tag unknown
    assert not before.estimate.known.any() and (before.zone == -1).all()
    for k in range(8):
        eng.ingest_observations(_obs_at(tag, xy, 0, T0 + k * 0.5, _near(xy, 0, 6)))
        res = eng.tick(T0 + k * 0.5 + 0.25)
    decoded = Decoder(eng.directory).decode_many(
        [("rtls/v1/gw/G01/obs", _tamper_batch("B01", 0x01, T0 + 4.1), T0 + 4.1)])
    early = eng.early(T0 + 4.2, decoded)
    assert early.t == T0 + 4.2
    assert early.telemetry["status"].tolist() == [0x01] and early.telemetry["tag"].tolist() == [0]
    assert early.estimate is res.estimate and early.zone is res.zone  # the last tick's
    assert len(early.located) == 0 and early.fix is None
    assert len(early.transitions.entered) == len(early.transitions.left) == 0
    assert eng.last_tick == res.t and eng.observations == 8 * 6  # nothing ingested
    assert not eng.window.changed.any()


def test_an_early_desk_step_leaves_the_documents_to_the_next_step() -> None:
    from rtls.decode import Decoder
    from rtls.desk import Desk

    eng, desk = Engine(SITE), Desk(SITE)
    desk.command("admit", {"baby": "B01"}, "test", T0)
    decoded = Decoder(eng.directory).decode_many(
        [("rtls/v1/gw/G01/obs", _tamper_batch("B01", 0x01, T0 + 1.0), T0 + 1.0)])
    early = desk.step(T0 + 1.1, eng.early(T0 + 1.1, decoded), None, documents=False)
    assert [(tr.alarm.type.value, tr.action) for tr in early.transitions] == [("tamper", "raise")]
    assert early.documents == {}
    later = desk.step(T0 + 1.3, eng.tick(T0 + 1.3), None)
    assert set(later.documents) == {"ward", "workers"}
    assert desk.step(T0 + 1.5, eng.tick(T0 + 1.5), None).documents == {}
