"""The pure engine pipeline: window -> locate -> track -> zones, and door reads."""

from __future__ import annotations

import numpy as np

from rtls.decode_result import READ_DTYPE
from rtls.engine import Engine, wall_maps
from rtls.observations import OBS_DTYPE
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
