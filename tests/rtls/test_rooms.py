"""The room filter: rooms and openings cut from zones and walls, the Markov chain between rooms,
censored evidence, exponential forgetting, door reads, and never naming the neighbouring room.

A small synthetic site: rooms A (x 0-10) and B (x 10-20) south of a wall at y = 6 with a door
each, a corridor north of it whose east end is an exit zone, all inside a ward; the layout
(walls, doors, gateways) is symmetric about x = 10 except for the exit zone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from rtls.engine import wall_maps
from rtls.errors import ConfigError
from rtls.locate import Anchors, LocatorParams
from rtls.observations import OBS_DTYPE
from rtls.room_map import RoomMap
from rtls.rooms import RoomFilter, RoomParams
from rtls.site import Site
from rtls.window import RssiWindow
from rtls.zones import Hysteresis, ZoneError, ZoneIndex, ZoneMembership

FloatArray = NDArray[np.float64]
GATEWAYS = [(3, 3), (9, 3), (11, 3), (17, 3), (3, 8), (10, 8), (17, 8)]
SIGMA = 4.0


def _mapping(*, ward: bool = True, corridor: bool = True) -> dict[str, Any]:
    zones = [
        {"id": "A", "floor": "F1", "kind": "room", "polygon": [[0, 0], [10, 0], [10, 6], [0, 6]]},
        {"id": "B", "floor": "F1", "kind": "room",
         "polygon": [[10, 0], [20, 0], [20, 6], [10, 6]]},
        {"id": "EXIT", "floor": "F1", "kind": "exit",
         "polygon": [[17, 6], [20, 6], [20, 10], [17, 10]]},
    ]  # fmt: skip
    if ward:
        zones.insert(0, {"id": "WARD", "floor": "F1", "kind": "secure_perimeter",
                         "polygon": [[0, 0], [20, 0], [20, 10], [0, 10]]})  # fmt: skip
    if corridor:
        zones.append({"id": "CORR", "floor": "F1", "kind": "corridor",
                      "polygon": [[0, 6], [20, 6], [20, 10], [0, 10]]})  # fmt: skip
    return {
        "format": 1,
        "site": {"id": "mini", "name": "Mini ward"},
        "radio": {"rssi_at_1m": -59.0, "path_loss_exponent": 2.5, "shadowing_db": SIGMA,
                  "wall_loss_db": 6.0, "sensitivity_dbm": -95.0},
        "floors": [{"id": "F1", "name": "First", "elevation": 0.0, "height": 3.0,
                    "outline": [[0, 0], [20, 0], [20, 10], [0, 10]]}],
        "walls": [
            {"id": "w-ab", "floor": "F1", "points": [[10, 0], [10, 6]]},
            {"id": "w-c1", "floor": "F1", "points": [[0, 6], [4.8, 6]]},
            {"id": "w-c2", "floor": "F1", "points": [[6, 6], [14, 6]]},
            {"id": "w-c3", "floor": "F1", "points": [[15.2, 6], [20, 6]]},
        ],
        "doors": [
            {"id": "D-A", "floor": "F1", "kind": "room", "points": [[4.8, 6], [6, 6]]},
            {"id": "D-B", "floor": "F1", "kind": "room", "points": [[14, 6], [15.2, 6]]},
            {"id": "D-X", "floor": "F1", "kind": "exit", "points": [[20, 7.4], [20, 8.6]]},
        ],
        "door_readers": [{"id": "DR-X", "door": "D-X", "range_m": 1.5}],
        "zones": zones,
        "gateways": [{"id": f"G{i}", "floor": "F1", "position": [x, y, 2.8], "format": "native"}
                     for i, (x, y) in enumerate(GATEWAYS)],
        "tags": [{"id": f"T{i}", "kind": "staff", "serial": 100 + i} for i in range(4)],
    }  # fmt: skip


SITE = Site.from_mapping(_mapping())
INDEX = ZoneIndex.from_site(SITE)
ANCHORS = Anchors.from_site(SITE)
WALLS = wall_maps(SITE)
ZONE = {z: INDEX.column(z) for z in ("WARD", "A", "B", "CORR", "EXIT")}


def _filter(params: RoomParams | None = None) -> RoomFilter:
    """The filter as the engine builds it (cells of ``params.block_m``)."""
    locator = LocatorParams(sigma_db=SIGMA)
    return RoomFilter.for_site(SITE, INDEX, ANCHORS, params, walls=WALLS, locator=locator)


def _model_rssi(xy: tuple[float, float]) -> FloatArray:
    """Noise-free RSSI (G,) of a tag 1 m above the floor at ``xy``, with the walls."""
    d = np.linalg.norm(ANCHORS.xyz - np.array([xy[0], xy[1], 1.0]), axis=1)
    assert WALLS is not None
    return np.asarray(
        ANCHORS.p0 - 10 * ANCHORS.n * np.log10(np.maximum(d, 1.0)) - WALLS.lookup([xy])[0]
    )


def _read(f: RoomFilter, now: float, tag: int, rssi: FloatArray, silent: Any = None) -> None:
    g = len(rssi)
    quiet = np.zeros((1, g), bool) if silent is None else np.asarray(silent, bool)[None, :]
    var = np.full((1, g), SIGMA**2)
    f.update(now, [tag], rssi[None, :], var, quiet, [0])


def _in_room(f: RoomFilter, p: FloatArray, name: str) -> float:
    """Probability (from cell probabilities ``p`` (S,)) of being in room ``name``."""
    return float(p[f.rooms.cell_room == f.rooms.room_ids.index(name)].sum())


# -- rooms and openings ----------------------------------------------------------------------------


def test_rooms_are_the_zones_cut_by_walls_with_their_openings() -> None:
    rooms = RoomMap.from_site(SITE, INDEX)
    assert sorted(rooms.room_ids) == ["A", "B", "CORR", "EXIT"]  # the ward has no room left
    assert len(rooms) == 4  # whole rooms: one cell each
    area = {rooms.room_ids[r]: rooms.area[rooms.cell_room == r].sum() for r in range(4)}
    assert area == {"A": 60.0, "B": 60.0, "CORR": 68.0, "EXIT": 12.0}
    cell = {name: int(np.flatnonzero(rooms.cell_room == rooms.room_ids.index(name))[0])
            for name in rooms.room_ids}  # fmt: skip
    o = rooms.opening
    assert o[cell["A"], cell["CORR"]] == pytest.approx(1.0)  # door 4.8-6 on a 0.5 m raster
    assert o[cell["B"], cell["CORR"]] == pytest.approx(1.0)
    assert o[cell["CORR"], cell["EXIT"]] == pytest.approx(4.0)  # a zone line, no wall
    assert o[cell["A"], cell["B"]] == 0.0 and o[cell["A"], cell["EXIT"]] == 0.0
    assert abs(o - o.T).max() == 0.0
    for name in ("A", "B", "CORR", "EXIT"):  # each room's zones hold it, smallest first
        c = cell[name]
        assert INDEX.ids[rooms.zone[c]] == name
        assert rooms.zones[c, ZONE["WARD"]]
    # sample points lie in their cell's zone and stand for its whole area
    inside = INDEX.contains(rooms.points, np.zeros(len(rooms.points), int))
    assert inside[np.arange(len(rooms.points)), rooms.zone[rooms.point_cell]].all()
    sums = np.bincount(rooms.point_cell, rooms.point_area, len(rooms))
    assert np.allclose(sums, rooms.area)


def test_squares_in_no_zone_form_elsewhere_rooms() -> None:
    site = Site.from_mapping(_mapping(ward=False, corridor=False))
    index = ZoneIndex.from_site(site)
    rooms = RoomMap.from_site(site, index)
    assert sorted(rooms.room_ids) == ["A", "B", "EXIT", "F1:elsewhere"]
    elsewhere = rooms.cell_room == rooms.room_ids.index("F1:elsewhere")
    assert (rooms.zone[elsewhere] == -1).all()
    assert rooms.area[elsewhere].sum() == pytest.approx(68.0)


def test_large_rooms_are_cut_into_blocks_that_tile_them() -> None:
    rooms = RoomMap.from_site(SITE, INDEX, block_m=3.0)
    a = rooms.room_ids.index("A")
    cells = np.flatnonzero(rooms.cell_room == a)
    assert len(cells) >= 6  # 10 m x 6 m in blocks of at most 3 m
    assert rooms.area[cells].sum() == pytest.approx(60.0)
    for c in cells:  # every block spans at most 3 m (plus a square) in x and y
        pts = rooms.points[rooms.point_cell == c]
        assert np.ptp(pts, axis=0).max() <= 3.0 + 0.5
    inner = rooms.opening[cells][:, cells].toarray()
    assert (inner.sum(axis=1) > 0).all()  # blocks of a room open onto each other


def test_a_tiny_site_without_walls_is_one_open_space() -> None:
    data = _mapping()
    data["walls"] = []
    site = Site.from_mapping(data)
    rooms = RoomMap.from_site(site, ZoneIndex.from_site(site))
    a, b = (int(np.flatnonzero(rooms.cell_room == rooms.room_ids.index(n))[0]) for n in "AB")
    assert rooms.opening[a, b] == pytest.approx(6.0)  # the whole shared edge


# -- the chain -------------------------------------------------------------------------------------


def test_the_chain_moves_through_openings_only_and_tends_to_the_area_law() -> None:
    f = _filter(RoomParams(jump_rate_per_s=0.0))
    f.place(0.0, [0], [(2.0, 2.0)], [0], [0.5])
    p0 = f.predicted(0.0, [0])[0]
    assert _in_room(f, p0, "A") == pytest.approx(1.0)
    p = f.predicted(20.0, [0])[0]
    a, b, corr = (_in_room(f, p, n) for n in ("A", "B", "CORR"))
    assert corr > 0.01  # A opens onto the corridor
    assert b < corr / 10  # B only through the corridor: a second-order effect
    assert p.sum() == pytest.approx(1.0)
    far = f.predicted(1e6, [0])[0]
    assert np.allclose(far, f.rooms.area / f.rooms.area.sum(), atol=1e-6)
    assert a > _in_room(f, far, "A")


def test_the_jump_rate_reaches_rooms_without_an_opening() -> None:
    f = _filter(RoomParams(jump_rate_per_s=0.01, walk_speed_m_s=0.0))
    f.place(0.0, [0], [(2.0, 2.0)], [0], [0.5])
    p = f.predicted(10.0, [0])[0]
    assert _in_room(f, p, "B") > 0.01


# -- evidence --------------------------------------------------------------------------------------


def test_exact_readings_concentrate_on_the_right_room() -> None:
    f = _filter()
    for k in range(5):
        _read(f, 2.0 * k, 0, _model_rssi((3.0, 2.0)))
        _read(f, 2.0 * k, 1, _model_rssi((16.0, 8.0)))
    zp = f.zone_probability()
    assert zp[0, ZONE["A"]] > 0.99 and zp[0, ZONE["WARD"]] == pytest.approx(1.0)
    # 1 m from the exit zone, across no wall: the corridor, never the exit zone at 0.9
    assert zp[1, ZONE["CORR"]] > 0.5 and zp[1, ZONE["EXIT"]] < 0.5
    assert f.known(8.0)[:2].all() and not f.known(8.0)[2:].any()
    assert not f.known(8.0 + f.params.stale_s + 1)[0]


def test_updating_many_tags_at_once_equals_updating_them_one_by_one() -> None:
    rng = np.random.default_rng(3)
    truth = [(3.0, 2.0), (12.0, 4.0), (8.0, 8.0), (18.5, 9.0)]
    rssi = np.array([_model_rssi(xy) for xy in truth]) + rng.normal(0, 4, (4, len(GATEWAYS)))
    rssi[rssi < -95] = np.nan
    silent = np.isnan(rssi)
    var = np.full(rssi.shape, SIGMA**2)
    together, apart = _filter(), _filter()
    for t in (1.0, 3.0):
        together.update(t, np.arange(4), rssi, var, silent, np.zeros(4, int))
        for i in range(4):
            apart.update(t, [i], rssi[i : i + 1], var[i : i + 1], silent[i : i + 1], [0])
    # the likelihood is float32 (rtls.rooms._floor_model): the BLAS blocks sum in another
    # order for 1 tag than for 4, which moves probabilities by ~1e-4 of themselves
    assert np.allclose(together.prob, apart.prob, rtol=1e-3, atol=1e-7)
    assert np.allclose(together.zone_probability(), apart.zone_probability(), rtol=1e-3,
                       atol=1e-7)  # fmt: skip


def _mirror_reading() -> FloatArray:
    """A reading that is the same seen from A and from B (the layout is mirror-symmetric)."""
    return 0.5 * (_model_rssi((8.0, 3.0)) + _model_rssi((12.0, 3.0)))


MIDDLE = np.isin(np.arange(len(GATEWAYS)), [1, 2, 5])  # G1, G2 mirror each other; G5 on the axis


def test_ambiguous_evidence_names_the_ward_never_the_neighbouring_room() -> None:
    f = _filter(RoomParams(point_stride=1, walk_speed_m_s=0.0, jump_rate_per_s=0.0))
    membership = ZoneMembership(INDEX, len(SITE.tags))
    now = 0.0
    for k in range(8):
        now = 2.0 * k
        _read(f, now, 0, _mirror_reading())
        f.update_membership(now, membership)
        named = INDEX.smallest(f.named(membership.inside))
        assert named[0] in (-1, ZONE["WARD"])
    zp = f.zone_probability()[0]
    assert zp[ZONE["A"]] == pytest.approx(zp[ZONE["B"]], abs=1e-6)
    assert INDEX.smallest(f.named(membership.inside))[0] == ZONE["WARD"]


def test_silent_gateways_count_as_readings_below_the_sensitivity() -> None:
    rssi = np.where(MIDDLE, _mirror_reading(), np.nan)  # the same seen from A or B
    east_silent = np.zeros(len(GATEWAYS), bool)
    east_silent[[3, 6]] = True
    plain, censored = _filter(RoomParams(point_stride=1)), _filter(RoomParams(point_stride=1))
    _read(plain, 0.0, 0, rssi)
    _read(censored, 0.0, 0, rssi, east_silent)
    a = ZONE["A"]
    assert censored.zone_probability()[0, a] > plain.zone_probability()[0, a] + 0.2


def test_too_few_heard_gateways_give_no_evidence() -> None:
    f = _filter()
    rssi = np.full(len(GATEWAYS), np.nan)
    rssi[:2] = _model_rssi((3.0, 2.0))[:2]
    _read(f, 0.0, 0, rssi)
    assert not f.known(0.0)[0] and f.prob[0].sum() == 0.0


def test_forgetting_bounds_the_evidence_of_a_static_tag() -> None:
    """With no transitions, log p_n = γ log p_(n-1) + ll: the log-odds of two rooms converge
    to their log-likelihood ratio over (1 - γ) instead of growing without bound."""
    p = RoomParams(walk_speed_m_s=0.0, jump_rate_per_s=0.0, point_stride=1, block_m=0.0)
    f = _filter(p)
    gamma = p.fading_db**2 / (SIGMA**2 + p.fading_db**2)
    reading = _mirror_reading() + 1.0 * (np.arange(len(GATEWAYS)) == 1)  # A a little likelier
    one = _filter(p)
    _read(one, 0.0, 0, reading)
    a, b = ZONE["A"], ZONE["B"]
    llr = np.log(one.zone_probability()[0, a] / one.zone_probability()[0, b])
    odds = []
    for k in range(60):
        _read(f, 2.0 * k, 0, reading)
        odds.append(np.log(f.zone_probability()[0, a] / f.zone_probability()[0, b]))
    assert llr > 0  # prior: A and B have the same area
    assert odds[-1] == pytest.approx(llr / (1 - gamma), rel=1e-6)
    assert odds[-1] == pytest.approx(odds[-2], rel=1e-9)


# -- packets ---------------------------------------------------------------------------------------


def _packet(tag: int, t: float, rssi: FloatArray) -> NDArray[np.void]:
    gw = np.flatnonzero(np.isfinite(rssi))
    obs = np.zeros(len(gw), dtype=OBS_DTYPE)
    obs["t"], obs["gateway"], obs["tag"], obs["rssi"] = t, gw, tag, rssi[gw]
    return obs


def test_packet_silence_counts_only_from_gateways_that_have_reported_past_it() -> None:
    rssi = np.where(MIDDLE, _mirror_reading(), np.nan)
    outcomes = []
    for caught_up in (False, True):
        f = _filter(RoomParams(point_stride=1))
        window = RssiWindow(len(SITE.tags), len(GATEWAYS))
        obs = _packet(0, 10.0, rssi)
        if caught_up:  # the east gateways report another tag after the packet
            east = np.isin(np.arange(len(GATEWAYS)), [3, 6])
            other = _packet(1, 10.1, np.where(east, -80.0, np.nan))
            obs = np.concatenate([obs, other])
        window.add(obs)
        f.add(obs)
        f.evidence(10.2, [0], [0], window)
        outcomes.append(f.zone_probability()[0, ZONE["A"]])
    assert outcomes[0] == pytest.approx(0.5, abs=0.05)  # silence not yet meaningful
    assert outcomes[1] > 0.9  # the east gateways would have heard a tag in B


def test_packets_and_a_window_both_find_the_room() -> None:
    for mode in ("packets", "window"):
        f = _filter(RoomParams(evidence=mode))  # type: ignore[arg-type]
        window = RssiWindow(len(SITE.tags), len(GATEWAYS))
        for k in range(4):
            obs = _packet(2, 2.0 * k, _model_rssi((15.0, 2.0)))
            window.add(obs)
            f.add(obs)
            f.evidence(2.0 * k + 0.2, [2], [0], window)
        assert f.zone_probability()[2, ZONE["B"]] > 0.99, mode


# -- door reads and floors -------------------------------------------------------------------------


def test_a_read_at_an_exit_door_puts_the_tag_in_the_exit_zone() -> None:
    f = _filter()
    door = np.array([[20.0, 8.0]])
    exit_zones = np.zeros((1, len(INDEX)), bool)
    exit_zones[0, ZONE["EXIT"]] = True
    f.place(5.0, [3], door, [0], [1.5], exit_zones)
    assert f.zone_probability()[3, ZONE["EXIT"]] == pytest.approx(1.0)
    assert f.known(5.0)[3]
    f.place(6.0, [3], [(5.4, 6.0)], [0], [1.0])  # a room door: both sides, by area
    zp = f.zone_probability()[3]
    assert 0.2 < zp[ZONE["A"]] < 0.8 and zp[ZONE["A"]] + zp[ZONE["CORR"]] == pytest.approx(1.0)


def test_a_floor_without_zones_is_known_and_in_no_zone() -> None:
    data = _mapping()
    data["floors"].append({"id": "F2", "name": "Second", "elevation": 4.0, "height": 3.0,
                           "outline": [[0, 0], [20, 0], [20, 10], [0, 10]]})  # fmt: skip
    data["gateways"] += [{"id": f"H{i}", "floor": "F2", "position": [x, y, 2.8]}
                         for i, (x, y) in enumerate(GATEWAYS)]  # fmt: skip
    site = Site.from_mapping(data)
    index = ZoneIndex.from_site(site)
    anchors = Anchors.from_site(site)
    f = RoomFilter(RoomMap.from_site(site, index), anchors, 2)
    g = anchors.n_gateways
    rssi = np.full((1, g), -70.0)
    f.update(1.0, [1], rssi, np.full((1, g), 16.0), np.zeros((1, g), bool), [1])
    assert f.known(1.0)[1] and f.floor[1] == 1
    assert f.zone_probability()[1].sum() == 0.0


def test_bad_parameters_and_shapes_are_refused() -> None:
    for bad in ({"temper": 0.0}, {"leave_probability": 0.95}, {"enter_probability": 0.4},
                {"point_stride": 0}, {"packet_loss": 1.0}, {"evidence": "radar"}):  # fmt: skip
        with pytest.raises(ConfigError):
            RoomParams(**bad)
    f = _filter()
    with pytest.raises(ValueError, match="update needs"):
        f.update(0.0, [0], np.zeros((1, 3)), np.ones((1, 3)), np.zeros((1, 3), bool), [0])
    with pytest.raises(ValueError, match="same length"):
        f.place(0.0, [0, 1], [(1.0, 1.0)], [0], [1.0])


def test_exit_zones_are_entered_and_named_when_more_likely_than_not() -> None:
    """A missed exit is the worst error: exit zones use ``exit_enter_probability`` (0.5) where
    rooms need 0.9."""
    f = _filter()
    membership = ZoneMembership(INDEX, len(SITE.tags), hysteresis=Hysteresis(dwell_s=0.0))
    f.place(0.0, [0], [(17.8, 8.0)], [0], [2.0])  # mostly in the exit zone, partly corridor
    f.place(0.0, [1], [(10.0, 3.0)], [0], [2.5])  # half in A, half in B
    zp = f.zone_probability()
    assert 0.5 < zp[0, ZONE["EXIT"]] < 0.9
    assert zp[1, ZONE["A"]] == pytest.approx(zp[1, ZONE["B"]], abs=0.1)
    f.update_membership(0.0, membership)
    named = INDEX.smallest(f.named(membership.inside))
    assert membership.inside[0, ZONE["EXIT"]] and named[0] == ZONE["EXIT"]
    assert not membership.inside[1, [ZONE["A"], ZONE["B"]]].any() and named[1] == ZONE["WARD"]


def test_a_dwell_completes_on_readings_not_on_one_held_past_the_next_advertisement() -> None:
    """A tag read once in the exit zone and then not again (too few links heard) keeps that
    probability, but the zone's dwell does not complete on it once the reading is older than
    the tag's advertising interval plus ``reading_slack_s``; renewed readings complete it."""
    f = _filter()
    assert f.reading_s == pytest.approx(np.full(len(SITE.tags), 2.0 + 0.5))  # staff: 2 s
    dwell = np.where(INDEX.is_exit, 5.0, 0.0)
    membership = ZoneMembership(INDEX, len(SITE.tags), enter_dwell_s=dwell, leave_dwell_s=0.0)
    at_exit = _model_rssi((18.5, 8.0))
    _read(f, 0.0, 0, _model_rssi((5.0, 8.0)))  # first placed in the corridor
    _read(f, 0.0, 1, _model_rssi((5.0, 8.0)))
    f.update_membership(0.0, membership)
    assert not membership.inside[[0, 1], ZONE["EXIT"]].any()
    for k in range(1, 41):  # 10 s in 0.25 s ticks; tag 0 read once, tag 1 every 2 s
        now = 2.0 + 0.25 * k
        if k == 1:
            _read(f, now, 0, at_exit)
        if k % 8 == 1:
            _read(f, now, 1, at_exit)
        f.update_membership(now, membership)
    assert f.zone_probability()[0, ZONE["EXIT"]] >= 0.5  # its one reading still says so
    assert f.known(12.0)[0]
    assert not membership.inside[0, ZONE["EXIT"]]  # but nothing renewed it
    assert membership.inside[1, ZONE["EXIT"]]
    with pytest.raises(ZoneError, match="interval_s"):
        RoomFilter(f.rooms, ANCHORS, 4, interval_s=[2.0, 2.0])


def test_huber_log_likelihood_equals_the_direct_sum_over_links() -> None:
    """The robust likelihood (matrix product plus the excess over Huber's loss on the heard
    links) equals -½ Σ ρ((y - m)/√v) + the censored terms + log share computed point by point."""
    f = _filter()
    fm = f._floors[0]
    rng = np.random.default_rng(5)
    g = len(fm.gateways)
    y = _model_rssi((6.0, 2.0))[None, :] + rng.normal(0.0, 8.0, (3, g))
    y[rng.random((3, g)) < 0.3] = np.nan
    var = rng.uniform(10.0, 40.0, (3, g))
    silent = ~np.isfinite(y) & (rng.random((3, g)) < 0.5)
    weight = np.array([1.0, 0.5, 0.8])
    k = 1.5
    ll = RoomFilter._log_likelihood(fm, y, var, silent, weight, k)
    m, log_silent, log_share = fm.terms[:, :g], fm.terms[:, 2 * g : 3 * g], fm.terms[:, -1]
    u = np.abs(y[None, :, :] - m[:, None, :]) / np.sqrt(var)[None]  # (C, K, G)
    rho = np.where(u <= k, u * u, 2 * k * u - k * k)
    ref = -0.5 * np.nansum(rho, axis=2) + (silent[None] * log_silent[:, None, :]).sum(axis=2)
    ref = ref * weight[None, :] + log_share[:, None]
    const = -0.5 * np.nansum(y * y / var, axis=1) * weight  # left out by the product
    # float32 products (rtls.rooms._floor_model): log-likelihoods of ~-100 to within 1e-3
    np.testing.assert_allclose(ll + const[None, :], ref, rtol=1e-5, atol=1e-3)


def test_one_wild_link_costs_a_robust_room_posterior_less() -> None:
    """A tag in room A, one link 18 dB (4.5 σ) above the model (a wall the model misses): the
    log-odds of room A after one reading fall less under Huber's loss than under the squares
    (Huber's bound on a link's influence; by about a quarter at 4.5 σ with k = 2)."""
    drop = {}
    for k in (None, 2.0):
        log_odds = []
        for wild in (0.0, 18.0):
            rssi = _model_rssi((7.0, 2.0))
            rssi[3] += wild  # G3 at (17, 3), in room B
            f = _filter(RoomParams(robust_k=k))
            _read(f, 0.0, 0, rssi)
            p = float(f.zone_probability()[0, ZONE["A"]])
            log_odds.append(np.log(p / (1.0 - p)))
        drop[k] = log_odds[0] - log_odds[1]
    assert drop[None] > 5.0  # the squares: the wild link is strong evidence against room A
    assert drop[2.0] < 0.85 * drop[None]


# -- memory at scale -------------------------------------------------------------------------------


def test_membership_from_pairs_equals_the_dense_probabilities() -> None:
    """update_membership hands the membership only the zones of each tag's floor that are not
    far (pairs), and only the rows that could change (``busy``); the same readings through the
    dense (N, Z) probabilities, every row every time, give the same transitions and names,
    tick by tick, while tags are read now and then, dwell, and go stale."""
    rng = np.random.default_rng(8)
    n = 12
    f = RoomFilter(_filter().rooms, ANCHORS, n, walls=WALLS, sigma_db=SIGMA,
                   exit_zones=INDEX.is_exit, interval_s=2.0)  # fmt: skip
    dwell = Hysteresis(dwell_s=0.5)
    by_pairs, dense = (ZoneMembership(INDEX, n, hysteresis=dwell) for _ in range(2))
    spots = [(5.0, 8.0), (15.0, 2.0), (4.0, 2.0), (18.5, 8.0), (10.0, 3.0)]
    changes = idle = 0
    for k in range(72):  # 18 s: the first half's tags go stale (stale_s 10 s), unknown
        now = 0.25 * k
        for tag in (rng.choice(n // 2, size=2, replace=False) + (k >= 24) * (n // 2)).tolist():
            xy = spots[rng.integers(len(spots))]
            _read(f, now, tag, _model_rssi(xy) + rng.normal(0.0, 2.0, len(GATEWAYS)))
        idle += int((~by_pairs.busy(f.known(now), f._revision)).sum())
        a = f.update_membership(now, by_pairs)
        fresh = now - f.t_evidence <= f.reading_s + 1e-9
        b = dense.update_probability(now, f.zone_probability(), f.known(now), enter=f._enter,
                                     leave=f._leave, fresh=fresh)  # fmt: skip
        assert np.array_equal(a.entered, b.entered) and np.array_equal(a.left, b.left)
        assert np.array_equal(by_pairs.known, dense.known)
        r, z = by_pairs.inside_pairs()
        named = INDEX.smallest_of(r[f.named_pairs(r, z)], z[f.named_pairs(r, z)], n)
        assert np.array_equal(named, INDEX.smallest(f.named(dense.inside)))
        changes += len(a.entered) + len(a.left)
    assert changes > 10 and idle > 72 * n // 3  # transitions, and most rows left alone
    assert not by_pairs.known[: n // 2].any() and by_pairs.known[n // 2 :].all()
    rows = np.arange(n).repeat(len(INDEX))
    cols = np.tile(np.arange(len(INDEX)), n)
    assert np.allclose(f.zone_probability_of(rows, cols), f.zone_probability().reshape(-1))


def test_no_state_grows_with_tags_times_zones_or_gateways() -> None:
    """On a group of buildings the filter's per-tag state is over the tag's own floor: no
    array is (N, Z) (zone probabilities) or (N, G) (the links' newest packets: the window's)."""
    from bench.e2e_site import GroupSpec, group_site

    site = group_site(GroupSpec(buildings=3, bulk=300))
    index = ZoneIndex.from_site(site)
    f = RoomFilter.for_site(site, index, Anchors.from_site(site))
    n, z, g = len(site.tags), len(index), len(site.gateways)
    shapes = [a.shape for a in vars(f).values() if isinstance(a, np.ndarray) and a.ndim == 2]
    assert (n, f._local.shape[1]) in shapes  # per tag: cells of one floor (the widest)
    assert not [s for s in shapes if s[0] == n and s[1] in (z, g)], shapes
    assert f.zone_probability_of([0], [0]).shape == (1,)
    assert f.zone_probability().shape == (n, z)  # dense on request only
