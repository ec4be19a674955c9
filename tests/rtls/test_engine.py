"""The pure engine pipeline: window -> locate -> track -> zones, and door reads."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_a_tick_in_two_parts_equals_one_tick_and_its_first_part_has_the_babies() -> None:
    """The service's two-part tick (tick_first, then tick at the same time) locates, tracks and
    zones every tag exactly as one tick does; the first part holds only the watched tags
    (infants and mothers) and already has the baby's entry into the exit zone."""
    one, two = Engine(SITE), Engine(SITE)
    baby, mother, staff = (SITE.tags.index(SITE.tag(i)) for i in ("B01", "M01", "S01"))
    assert two.watched[[baby, mother]].all() and not two.watched[staff]
    e1 = one.zones.column("E1")
    first_entered: set[tuple[int, int]] = set()
    for k in range(40):
        t = T0 + k * 0.5
        a = min(k / 20, 1.0)  # the baby walks from R101 into the exit zone, then stays
        walks = {baby: (12.0 - 2.5 * a, 4.0 + 7.0 * a), mother: (12.0, 4.5),
                 staff: (30.0 + 0.5 * k, 11.0)}  # fmt: skip
        for tag, xy in walks.items():
            obs = _obs_at(tag, xy, 0, t, _near(xy, 0, 6))
            one.ingest_observations(obs)
            two.ingest_observations(obs)
        ref = one.tick(t + 0.25)
        first = two.tick_first(t + 0.25)
        assert two.watched[first.located].all() and len(first.telemetry) == 0
        first_entered |= {(int(r["tag"]), int(r["zone"])) for r in first.transitions.entered}
        got = two.tick(t + 0.25)
        assert np.array_equal(ref.located, got.located) and got.fix is not None
        assert ref.fix is not None and np.array_equal(ref.fix.xy, got.fix.xy, equal_nan=True)
        assert np.array_equal(ref.estimate.xy, got.estimate.xy, equal_nan=True)
        assert np.array_equal(ref.zone, got.zone)
        for kind in ("entered", "left"):
            whole = getattr(ref.transitions, kind)
            parts = np.concatenate([getattr(first.transitions, kind),
                                    getattr(got.transitions, kind)])  # fmt: skip
            assert np.array_equal(np.sort(whole, order=["tag", "zone"]),
                                  np.sort(parts, order=["tag", "zone"]))  # fmt: skip
    assert (baby, e1) in first_entered
    assert SITE.zones[int(got.zone[baby])].id == "E1"


def test_the_other_tags_spread_over_passes_are_all_located_and_returned_by_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """advance_others locates a share of the badges heard between ticks (at least
    PART_MIN_TAGS, in turn); the tick returns them with its own, each once; in turn, every
    tag heard is located within a few passes."""
    from rtls import engine as engine_module
    from rtls.errors import ConfigError

    eng = Engine(SITE)
    others = np.flatnonzero(~eng.watched)
    assert len(others) > 8
    heard: set[int] = set()
    # the example site has a few dozen tags, not thousands
    monkeypatch.setattr(engine_module, "PART_MIN_TAGS", 1)
    for k in range(6):
        t = T0 + k * 0.25
        for tag in others.tolist():
            xy = (20.0 + (tag % 5) * 8.0, 11.0)
            eng.ingest_observations(_obs_at(tag, xy, 0, t, _near(xy, 0, 6)))
        eng.tick_first(t)
        n = eng.advance_others(t, 0.5)
        assert n == int(np.ceil(len(others) / 2))  # half of what was heard
        eng.ingest_observations(_obs_at(int(others[0]), (20.0, 11.0), 0, t + 0.1,
                                        _near((20.0, 11.0), 0, 6)))  # fmt: skip
        eng.tick_first(t + 0.125)
        res = eng.tick(t + 0.125, 0.5)
        heard |= set(res.located.tolist())
        assert res.fix is not None and len(res.fix) == len(res.located)
        assert np.array_equal(res.located, np.unique(res.located))
    assert heard == set(others.tolist())
    assert res.estimate.known[others].all()
    with pytest.raises(ConfigError, match="share"):
        eng.advance_others(T0 + 10, 0.0)
    with pytest.raises(ConfigError, match="watch_s"):
        EngineParams(tick_s=0.25, watch_s=0.5)
    assert EngineParams(tick_s=0.2).watch_period_s == pytest.approx(0.1)


def test_a_badge_waits_for_its_collection_window_and_is_located_once() -> None:
    """With ``collect_s``, an advertisement heard by gateways whose reports arrive over two
    ticks is located once, with every link, when the window since its first report is over; a
    watched tag (an infant) is located at every tick all the same; without it the badge is
    located at each tick that brought a report."""
    badge = next(i for i, t in enumerate(SITE.tags) if t.kind.value == "staff")
    infant = next(i for i, t in enumerate(SITE.tags) if t.kind.value == "infant")
    xy = (21.0, 5.0)
    gws = _near(xy, 0, 6)
    runs = {}
    for collect in (0.0, 0.5):
        eng = Engine(SITE, EngineParams(collect_s=collect))
        located: list[list[int]] = []
        for k, t in enumerate(T0 + 0.25 * np.arange(6)):
            if k < 2:  # the advertisement's reports: half in each of two ticks
                half = gws[:3] if k == 0 else gws[3:]
                eng.ingest_observations(_obs_at(badge, xy, 0, t - 0.1, half), t - 0.1)
            eng.ingest_observations(_obs_at(infant, (12.0, 4.0), 0, t - 0.1, gws), t - 0.1)
            res = eng.tick(t)
            located.append(res.located.tolist())
        runs[collect] = located
    assert [badge in ticks for ticks in runs[0.0]] == [True, True, False, False, False, False]
    # first report at T0 - 0.1: collected until T0 + 0.4, located by the tick at T0 + 0.5
    assert [badge in ticks for ticks in runs[0.5]] == [False, False, True, False, False, False]
    assert all(infant in ticks for ticks in runs[0.5])
    with pytest.raises(Exception, match="collect_s"):
        EngineParams(collect_s=-1.0)
