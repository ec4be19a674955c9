"""Zones: vectorised point-in-polygon and signed distance, membership with hysteresis and
dwell, unknown positions freezing membership, per-zone dwell overrides, door reads."""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from rtls import geometry
from rtls.errors import ConfigError, RtlsError
from rtls.site import EXAMPLE_SITE, Site, ZoneKind, load_site
from rtls.zones import (
    TRANSITION_DTYPE,
    DoorIndex,
    Hysteresis,
    Transitions,
    ZoneError,
    ZoneIndex,
    ZoneMembership,
    place_at_door,
    zone_dwells,
)

SITE = load_site()
INDEX = ZoneIndex.from_site(SITE)
N_TAGS = len(SITE.tags)
TICK = 0.25
T0 = 1_700_000_000.0


def _site_with(change: Any) -> Site:
    """The example site after ``change(data)`` edits its parsed TOML in place."""
    data = tomllib.loads(EXAMPLE_SITE.read_text(encoding="utf-8"))
    change(data)
    return Site.from_mapping(data)


def _zone_entry(data: dict[str, Any], zone_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(z for z in data["zones"] if z["id"] == zone_id)
    return entry


def _random_polygon(rng: np.random.Generator, k: int) -> NDArray[np.float64]:
    """A star-shaped (often concave) simple polygon with k vertices."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = rng.uniform(0.5, 5.0, k)
    centre = rng.uniform(-5, 5, 2)
    return centre + np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])


class Trace:
    """Feeds positions to a membership and keeps every transition with its update time."""

    def __init__(self, membership: ZoneMembership) -> None:
        self.m = membership
        self.entered: list[tuple[int, int, float, float]] = []  # tag, zone, t, detected at
        self.left: list[tuple[int, int, float, float]] = []

    def step(
        self,
        now: float,
        placed: dict[int, tuple[float, float, int]],
        uncertainty: NDArray[np.float64] | None = None,
    ) -> Transitions:
        """One update; tags not in ``placed`` are unknown."""
        xy = np.full((self.m.n_tags, 2), np.nan)
        floor = np.full(self.m.n_tags, -1)
        known = np.zeros(self.m.n_tags, dtype=bool)
        for tag, (x, y, f) in placed.items():
            xy[tag], floor[tag], known[tag] = (x, y), f, True
        tr = self.m.update(now, xy, floor, known, uncertainty)
        self.entered += [(int(r["tag"]), int(r["zone"]), float(r["t"]), now) for r in tr.entered]
        self.left += [(int(r["tag"]), int(r["zone"]), float(r["t"]), now) for r in tr.left]
        return tr

    def zones_entered(self, tag: int) -> list[str]:
        return [INDEX.ids[z] for g, z, _, _ in self.entered if g == tag]


# -- the index ----------------------------------------------------------------------------------


def test_contains_equals_points_in_polygon_per_zone_on_the_example_site() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform([-3, -3], [75, 25], size=(4000, 2))
    floor = rng.integers(-1, len(SITE.floors), size=4000)
    got = INDEX.contains(xy, floor)
    assert got.shape == (4000, len(SITE.zones))
    for z, zone in enumerate(SITE.zones):
        on_floor = floor == SITE.floor_index[zone.floor]
        expected = geometry.points_in_polygon(xy, zone.polygon) & on_floor
        assert np.array_equal(got[:, z], expected), zone.id
    assert got.any(axis=0).all()  # every zone was hit by some point


def test_contains_equals_points_in_polygon_for_mixed_vertex_counts() -> None:
    rng = np.random.default_rng(4)
    polygons = [_random_polygon(rng, k) for k in (3, 4, 5, 7, 8, 9, 13, 17, 30)]
    floors = rng.integers(0, 2, size=len(polygons))
    index = ZoneIndex.from_polygons(polygons, floors, n_floors=2)
    xy = rng.uniform(-10, 10, size=(3000, 2))
    floor = rng.integers(0, 2, size=3000)
    got = index.contains(xy, floor)
    signed = index.signed_distance(xy, floor)
    for z, poly in enumerate(polygons):
        expected = geometry.points_in_polygon(xy, poly) & (floor == floors[z])
        assert np.array_equal(got[:, z], expected), z
        here = floor == floors[z]
        dist = geometry.segment_distance(xy[here], geometry.polygon_segments(poly)).min(axis=1)
        np.testing.assert_allclose(np.abs(signed[here, z]), dist, rtol=1e-9, atol=1e-12)
        assert np.array_equal(signed[here, z] < 0, expected[here])
        assert np.isposinf(signed[~here, z]).all()


def test_signed_distance_on_simple_shapes() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    ell = [(0, 0), (4, 0), (4, 1), (1, 1), (1, 4), (0, 4)]  # concave: notch at (1..4, 1..4)
    triangle = [(0, 0), (4, 0), (0, 3)]
    index = ZoneIndex.from_polygons([square, ell, triangle], [0, 1, 1])
    pts = [(5, 5), (12, 5), (12, 13), (3, 5), (10, 5), (5, 2), (0.5, 0.5), (1, 0.5), (2, 2)]
    floor = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    d = index.signed_distance(pts, floor)
    np.testing.assert_allclose(d[:5, 0], [-5.0, 2.0, np.hypot(2, 3), -3.0, 0.0], atol=1e-12)
    assert d[5, 1] == pytest.approx(np.sqrt(2.0))  # nearest is the vertex (4, 1)
    assert d[6, 1] == pytest.approx(-0.5)
    assert d[8, 1] == pytest.approx(1.0)  # in the notch, 1 m from both inner edges
    assert d[7, 2] == pytest.approx(-0.5)  # 0.5 above the base, 1 from the other two edges
    assert np.isposinf(d[:5, 1:]).all() and np.isposinf(d[5:, 0]).all()  # other floor
    assert np.isposinf(index.signed_distance([(5, 5)], [-1])).all()  # floor not known


def test_index_rejects_bad_arguments() -> None:
    with pytest.raises(ZoneError, match="shape"):
        INDEX.contains(np.zeros((3, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ZoneError, match="floor"):
        INDEX.contains(np.zeros((3, 2)), np.zeros(2, dtype=int))
    with pytest.raises(ZoneError, match="integer"):
        INDEX.signed_distance(np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ZoneError, match="out of range"):
        INDEX.contains(np.zeros((1, 2)), [len(SITE.floors)])
    with pytest.raises(ZoneError, match="'NOPE'"):
        INDEX.column("NOPE")
    assert issubclass(ZoneError, RtlsError)


def test_smallest_zone_is_the_room_not_the_ward() -> None:
    pts = np.array([(12.0, 4.0), (9.5, 11.0), (69.0, 11.0), (12.0, 4.0), (80.0, 80.0)])
    floor = np.array([0, 0, 0, 1, 0])
    picked = INDEX.smallest(INDEX.contains(pts, floor))
    names = [INDEX.ids[z] if z >= 0 else None for z in picked]
    assert names == ["R101", "E1", "L1-ST2", "P201", None]


def test_zone_depth_is_half_the_width_of_a_room() -> None:
    # R101 is 4.5 m x 9 m: the deepest point is 2.25 m from its walls (grid estimate, low side)
    depth = INDEX.depth[INDEX.column("R101")]
    assert 2.1 <= depth <= 2.25


# -- membership ---------------------------------------------------------------------------------

# Points on boundaries of the example site, each with the direction across that boundary:
# R101 / corridor, corridor / TREAT, R106 / R107, lobby / STATION, the east edge of exit zone E1,
# and P209 / P210 on L2.
EDGES = [
    ((12.3, 9.0), (0.0, 1.0), 0),
    ((29.0, 13.0), (0.0, 1.0), 0),
    ((37.0, 4.5), (1.0, 0.0), 0),
    ((8.0, 18.0), (1.0, 0.0), 0),
    ((11.0, 11.0), (1.0, 0.0), 0),
    ((50.5, 4.0), (1.0, 0.0), 1),
]


def _jitter_trace(hysteresis: Hysteresis, amplitude: float, ticks: int, seed: int) -> Trace:
    trace = Trace(ZoneMembership.from_site(SITE, INDEX, hysteresis))
    rng = np.random.default_rng(seed)
    for i in range(ticks):
        offsets = rng.uniform(-amplitude, amplitude, size=len(EDGES))
        placed = {
            tag: (p[0] + o * n[0], p[1] + o * n[1], f)
            for tag, ((p, n, f), o) in enumerate(zip(EDGES, offsets, strict=True))
        }
        trace.step(T0 + i * TICK, placed)
    return trace


def test_jitter_across_a_boundary_does_not_flap_with_the_default_hysteresis() -> None:
    trace = _jitter_trace(Hysteresis(), amplitude=0.5, ticks=1200, seed=5)
    after_first = [e for e in trace.entered + trace.left if e[3] > T0]
    assert after_first == []
    assert {g for g, _, _, _ in trace.entered} == set(range(len(EDGES)))  # first fix placed all
    # the same trace with no hysteresis at all does flap: the test above can fail
    bare = _jitter_trace(Hysteresis(margin_in=0, margin_out=0, dwell_s=0), 0.5, 200, seed=5)
    assert len([e for e in bare.left if e[3] > T0]) > 100


def _walk_north(trace: Trace, speed: float, noise: float, seed: int) -> list[float]:
    """Walk tag 0 north at x=13 from y=4.5 (R101) to y=12 (corridor); returns tick times."""
    rng = np.random.default_rng(seed)
    times = []
    for i in range(int(7.5 / speed / TICK) + 12):
        t = T0 + i * TICK
        y = min(4.5 + speed * i * TICK, 12.0) + rng.uniform(-noise, noise)
        trace.step(t, {0: (13.0, y, 0)})
        times.append(t)
    return times


def test_a_real_crossing_is_detected_within_dwell_plus_one_tick() -> None:
    h = Hysteresis()
    speed, noise = 1.2, 0.5
    trace = Trace(ZoneMembership.from_site(SITE, INDEX, h))
    _walk_north(trace, speed, noise, seed=6)
    corridor, room = INDEX.column("L1-CORR"), INDEX.column("R101")
    (enter,) = [e for e in trace.entered if e[1] == corridor]
    (leave,) = [e for e in trace.left if e[1] == room]
    # once the true position is margin + noise past the edge every reading counts
    sure = T0 + (9.0 + h.margin_in + noise - 4.5) / speed
    crossed = T0 + (9.0 - 4.5) / speed
    for _, _, started, detected in (enter, leave):
        assert detected <= sure + h.dwell_s + TICK + 1e-9
        assert started >= crossed - 1e-9  # never before the tag was really across
        assert detected - started >= h.dwell_s - 1e-9
    assert trace.zones_entered(0) == ["L1-WARD", "R101", "L1-CORR"]


def test_a_step_across_a_boundary_is_detected_after_exactly_the_dwell() -> None:
    h = Hysteresis(dwell_s=2.0)
    trace = Trace(ZoneMembership.from_site(SITE, INDEX, h))
    for i in range(40):
        y = 4.5 if i < 10 else 11.0
        trace.step(T0 + i * TICK, {0: (13.0, y, 0)})
    step_t = T0 + 10 * TICK
    corridor = INDEX.column("L1-CORR")
    (enter,) = [e for e in trace.entered if e[1] == corridor]
    assert enter[2] == pytest.approx(step_t)
    assert enter[3] == pytest.approx(step_t + h.dwell_s)


def test_unknown_positions_freeze_membership() -> None:
    m = ZoneMembership.from_site(SITE, INDEX)
    trace = Trace(m)
    room = INDEX.column("R101")
    trace.step(T0, {0: (12.0, 4.0, 0)})
    inside_before = m.inside[0].copy()
    assert m.inside[0, room]
    # 0.75 s outside (less than the dwell), then coverage is lost for a minute
    for i in range(1, 4):
        trace.step(T0 + i * TICK, {0: (30.0, 11.0, 0)})
    lost_at = T0 + 4 * TICK
    for i in range(4, 244):
        tr = trace.step(T0 + i * TICK, {})
        assert tr.unknown[0] and tr.unknown.all()
    assert np.array_equal(m.inside[0], inside_before)
    assert m.unknown_since[0] == lost_at
    assert trace.left == [] and not m.known[0]
    # rows marked unknown are frozen whatever garbage position they carry
    xy = np.full((N_TAGS, 2), 50.0)
    tr = m.update(T0 + 61.5, xy, np.zeros(N_TAGS, dtype=int), np.zeros(N_TAGS, dtype=bool))
    assert len(tr.left) == 0 and np.array_equal(m.inside[0], inside_before)
    # back in coverage, in the corridor: the dwell starts again from the first known tick
    back = T0 + 62.0
    for i in range(8):
        trace.step(back + i * TICK, {0: (30.0, 11.0, 0)})
    left_room = [e for e in trace.left if e[1] == room]
    assert len(left_room) == 1
    assert left_room[0][2] == back and left_room[0][3] == back + 1.0
    assert m.known[0] and np.isnan(m.unknown_since[0])


def test_a_first_fix_enters_each_zone_holding_it_once_at_once() -> None:
    trace = Trace(ZoneMembership.from_site(SITE, INDEX))
    trace.step(T0, {0: (9.5, 11.0, 0)})  # inside exit zone E1 (entry dwell 0), corridor, ward
    assert sorted(trace.zones_entered(0)) == ["E1", "L1-CORR", "L1-WARD"]
    for i in range(1, 12):
        trace.step(T0 + i * TICK, {0: (9.5, 11.0, 0)})
    assert len(trace.entered) == 3 and trace.left == []


def test_an_interrupted_run_restarts_the_dwell() -> None:
    trace = Trace(ZoneMembership.from_site(SITE, INDEX, Hysteresis(dwell_s=1.0)))
    trace.step(T0, {0: (12.0, 4.0, 0)})  # R101
    path = [(30.0, 11.0)] * 3 + [(12.0, 4.0)] + [(30.0, 11.0)] * 3 + [(12.0, 4.0)]
    for i, (x, y) in enumerate(path * 3, start=1):  # never 1 s outside in one go
        trace.step(T0 + i * TICK, {0: (x, y, 0)})
    assert trace.left == []
    for i in range(25, 30):
        trace.step(T0 + i * TICK, {0: (30.0, 11.0, 0)})
    assert INDEX.column("R101") in [z for _, z, _, _ in trace.left]


def test_a_tag_never_located_is_unknown_and_in_no_zone() -> None:
    m = ZoneMembership.from_site(SITE, INDEX)
    tr = Trace(m).step(T0, {1: (12.0, 4.0, 0)})
    assert tr.unknown[0] and not tr.unknown[1]
    assert not m.inside[0].any() and m.inside[1].any()


def test_per_zone_dwell_overrides_from_the_site() -> None:
    def change(data: dict[str, Any]) -> None:
        data["rules"]["infant"]["exit_dwell_s"] = 2.0
        _zone_entry(data, "R102")["rules"] = {"dwell_s": 5.0}
        _zone_entry(data, "E2")["rules"] = {"loiter_s": 60.0}  # no exit_dwell_s: site default

    site = _site_with(change)
    index = ZoneIndex.from_site(site)
    enter, leave = zone_dwells(site, 1.0)
    col = index.column
    assert (enter[col("R102")], leave[col("R102")]) == (5.0, 5.0)
    e1 = float(site.zone("E1").rules["exit_dwell_s"])
    assert (enter[col("E1")], leave[col("E1")]) == (e1, 1.0)  # the zone's exit_dwell_s
    assert (enter[col("E2")], leave[col("E2")]) == (2.0, 1.0)  # [rules.infant] exit_dwell_s
    assert (enter[col("R101")], leave[col("R101")]) == (1.0, 1.0)

    trace = Trace(ZoneMembership.from_site(site, index))
    trace.step(T0, {0: (12.0, 11.0, 0), 1: (30.0, 11.0, 0), 2: (60.0, 11.0, 0)})
    for i in range(1, 80):  # tag 0 into R102, tag 1 into exit E1, tag 2 into exit E2
        trace.step(T0 + i * TICK, {0: (16.5, 4.0, 0), 1: (9.5, 11.0, 0), 2: (64.5, 11.0, 0)})
    detected = {(g, index.ids[z]): at - T0 for g, z, _, at in trace.entered if at > T0}
    assert detected == {(0, "R102"): TICK + 5.0, (1, "E1"): TICK + e1, (2, "E2"): TICK + 2.0}


def test_bad_dwell_in_the_site_names_the_zone() -> None:
    site = _site_with(lambda data: _zone_entry(data, "R103").update(rules={"dwell_s": -1.0}))
    with pytest.raises(ConfigError, match=r"'R103'.*dwell_s"):
        ZoneMembership.from_site(site)


def test_uncertainty_widens_the_hysteresis() -> None:
    # lobby-side edge of the nurses' station / nursery wall: both zones are 8-10 m wide
    edge, amplitude = (16.0, 17.5), 1.2

    def run(gain: float) -> Trace:
        h = Hysteresis(dwell_s=TICK, uncertainty_gain=gain)
        trace = Trace(ZoneMembership.from_site(SITE, INDEX, h))
        rng = np.random.default_rng(8)
        r = np.full(N_TAGS, amplitude)
        for i in range(400):
            x = edge[0] + rng.uniform(-amplitude, amplitude)
            trace.step(T0 + i * TICK, {0: (x, edge[1], 0)}, uncertainty=r)
        return trace

    assert [e for e in run(1.0).left if e[3] > T0] == []
    assert len([e for e in run(0.0).left if e[3] > T0]) > 10


def test_a_very_uncertain_tag_deep_in_a_small_zone_still_enters() -> None:
    h = Hysteresis(uncertainty_gain=1.0, max_widening_m=10.0)
    trace = Trace(ZoneMembership.from_site(SITE, INDEX, h))
    r = np.full(N_TAGS, 10.0)
    trace.step(T0, {0: (6.0, 11.0, 0)}, uncertainty=r)  # lobby
    trace.step(T0 + TICK, {0: (9.5, 11.0, 0)}, uncertainty=r)  # centre of exit zone E1
    dwell = float(SITE.zone("E1").rules["exit_dwell_s"])
    trace.step(T0 + TICK + dwell + TICK, {0: (9.5, 11.0, 0)}, uncertainty=r)  # past its dwell
    assert "E1" in trace.zones_entered(0)
    # a fixed entry margin wider than a zone is capped the same way
    wide = Trace(ZoneMembership.from_site(SITE, INDEX, Hysteresis(margin_in=3.0)))
    wide.step(T0, {0: (6.0, 11.0, 0)})
    wide.step(T0 + TICK, {0: (9.5, 11.0, 0)})
    wide.step(T0 + TICK + dwell + TICK, {0: (9.5, 11.0, 0)})
    assert "E1" in wide.zones_entered(0)


def test_membership_rejects_bad_updates() -> None:
    m = ZoneMembership.from_site(SITE, INDEX)
    xy, floor, known = np.zeros((N_TAGS, 2)), np.zeros(N_TAGS, dtype=int), np.ones(N_TAGS, bool)
    m.update(T0, xy, floor, known)
    with pytest.raises(ZoneError, match="earlier"):
        m.update(T0 - 1.0, xy, floor, known)
    with pytest.raises(ZoneError, match="N=60"):
        m.update(T0 + 1.0, xy[:5], floor[:5], known[:5])
    with pytest.raises(ConfigError, match="margin_in"):
        Hysteresis(margin_in=-0.1)
    with pytest.raises(ConfigError, match="dwell_s"):
        Hysteresis(dwell_s=float("nan"))


def test_updating_every_tag_in_place_equals_updating_a_subset() -> None:
    rng = np.random.default_rng(9)
    steps = np.cumsum(rng.normal(0.0, 0.6, size=(160, N_TAGS, 2)), axis=0)
    xy = np.clip(np.array([20.0, 11.0]) + steps, [0.5, 0.5], [71.5, 21.5])
    floor = np.zeros(N_TAGS, dtype=int)
    everyone, most = ZoneMembership.from_site(SITE, INDEX), ZoneMembership.from_site(SITE, INDEX)
    all_known, some_known = np.ones(N_TAGS, dtype=bool), np.arange(N_TAGS) != 7
    changes = 0
    for i, pts in enumerate(xy):
        a = everyone.update(T0 + i * TICK, pts, floor, all_known)
        b = most.update(T0 + i * TICK, pts, floor, some_known)
        for got, ref in ((a.entered, b.entered), (a.left, b.left)):
            assert np.array_equal(got[got["tag"] != 7], ref)
        changes += len(a.left)
    assert changes > 20  # the walks did cross boundaries
    assert np.array_equal(everyone.inside[some_known], most.inside[some_known])
    assert not most.inside[7].any() and most.unknown_since[7] == T0


def test_advancing_some_rows_then_all_equals_advancing_all_at_once() -> None:
    """``among``: a tick's first part advances its tags only, leaving every other row exactly
    as it was (runs, unknown state); the second part at the same time then gives what one
    update would have, for positions and for probabilities."""
    rng = np.random.default_rng(11)
    steps = np.cumsum(rng.normal(0.0, 0.6, size=(120, N_TAGS, 2)), axis=0)
    xy = np.clip(np.array([20.0, 11.0]) + steps, [0.5, 0.5], [71.5, 21.5])
    floor = np.zeros(N_TAGS, dtype=int)
    some = np.arange(N_TAGS) % 3 == 0
    hyst = Hysteresis(dwell_s=0.5)
    one, two = (ZoneMembership.from_site(SITE, INDEX, hyst) for _ in range(2))
    crossed = 0
    for i, pts in enumerate(xy):
        now = T0 + i * TICK
        known = rng.random(N_TAGS) > 0.1
        ref = one.update(now, pts, floor, known)
        before = (two.inside.copy(), two._since.copy(), two.known.copy(),
                  two.unknown_since.copy())  # fmt: skip
        first = two.update(now, pts, floor, known, among=some)
        for was, now_ in zip(before, (two.inside, two._since, two.known, two.unknown_since),
                             strict=True):  # fmt: skip
            assert np.array_equal(was[~some], now_[~some], equal_nan=True)
        assert set(first.entered["tag"]) | set(first.left["tag"]) <= set(np.flatnonzero(some))
        second = two.update(now, pts, floor, known)
        for a, b, c in ((ref.entered, first.entered, second.entered),
                        (ref.left, first.left, second.left)):  # fmt: skip
            both = np.sort(np.concatenate([b, c]), order=["tag", "zone"])
            assert np.array_equal(np.sort(a, order=["tag", "zone"]), both)
            crossed += len(b)
        assert np.array_equal(one.inside, two.inside)
    assert crossed > 10  # the first parts did change membership
    m = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=0.0))
    prob = np.zeros((N_TAGS, len(INDEX)))
    prob[:, INDEX.column("R101")] = 0.99
    tr = m.update_probability(T0, prob, np.ones(N_TAGS, bool), enter=0.9, leave=0.6, among=some)
    assert sorted(set(tr.entered["tag"])) == np.flatnonzero(some).tolist()
    assert not m.inside[~some].any()
    with pytest.raises(ZoneError, match="among"):
        m.update(T0 + 1, xy[0], floor, np.ones(N_TAGS, bool), among=some[:3])


def test_transitions_are_sorted_by_time() -> None:
    m = ZoneMembership.from_site(SITE, INDEX)
    tr = Trace(m).step(T0, {5: (12.0, 4.0, 0), 2: (30.0, 11.0, 0)})
    assert tr.entered.dtype == TRANSITION_DTYPE and tr.left.dtype == TRANSITION_DTYPE
    keys = list(zip(tr.entered["t"], tr.entered["tag"], tr.entered["zone"], strict=True))
    assert keys == sorted(keys) and {int(g) for g in tr.entered["tag"]} == {2, 5}


# -- door readers -------------------------------------------------------------------------------


def test_door_index_of_the_example_site() -> None:
    doors = DoorIndex.from_site(SITE, INDEX)
    r = doors.reader("DR-E1")
    assert doors.door_ids[r] == "D-E1"
    np.testing.assert_allclose(doors.xy[r], (8.0, 11.0))
    assert doors.floor[r] == SITE.floor_index["L1"]
    assert doors.uncertainty[r] == pytest.approx(1.5)  # reader range, reader at the door
    assert [INDEX.ids[z] for z in np.flatnonzero(doors.zones[r])] == ["E1"]  # not E3 (L2)
    e4 = doors.reader("DR-E4")
    assert [INDEX.ids[z] for z in np.flatnonzero(doors.zones[e4])] == ["E4"]
    assert doors.is_exit.all()
    with pytest.raises(ZoneError, match="'DR-X'"):
        doors.reader("DR-X")


def test_a_door_read_places_the_tag_and_enters_the_exit_zone_at_once() -> None:
    doors = DoorIndex.from_site(SITE, INDEX)
    m = ZoneMembership.from_site(SITE, INDEX)
    trace = Trace(m)
    trace.step(T0, {3: (30.0, 11.0, 0)})  # tag 3 in the corridor; tag 0 never located
    e1, e2 = doors.reader("DR-E1"), doors.reader("DR-E2")
    fix = place_at_door(doors, [e1, e1, e2, e1], [0, 0, 7, 3], [T0 + 0.4, T0 + 0.3, T0, T0])
    np.testing.assert_allclose(fix.xy, [(8, 11), (8, 11), (66, 11), (8, 11)])
    assert fix.floor.tolist() == [0, 0, 0, 0]
    assert (fix.uncertainty < 2.0).all()
    tr = m.enter_at_door(fix)
    got = [(int(g), INDEX.ids[z], float(t)) for g, z, t in tr.entered.tolist()]
    assert got == [(3, "E1", T0), (7, "E2", T0), (0, "E1", T0 + 0.3)]  # earliest read of tag 0
    assert m.inside[0, INDEX.column("E1")] and tr.unknown[0]
    # a second read while inside changes nothing
    again = m.enter_at_door(place_at_door(doors, [e1], [0], [T0 + 1.0]))
    assert len(again.entered) == 0
    # the RSSI position says the corridor (outside E1): E1 is left only after the leave dwell
    for i in range(1, 9):
        trace.step(T0 + 1.0 + i * TICK, {3: (30.0, 11.0, 0)})
    (left,) = [e for e in trace.left if e[0] == 3]
    assert INDEX.ids[left[1]] == "E1" and left[3] - left[2] == pytest.approx(1.0)


def test_a_read_at_a_room_door_places_the_tag_but_enters_no_zone() -> None:
    def change(data: dict[str, Any]) -> None:
        data["door_readers"].append(
            {"id": "DR-R101", "door": "D-R101", "position": [11.2, 10.0, 2.2], "range_m": 1.0}
        )

    site = _site_with(change)
    index = ZoneIndex.from_site(site)
    doors = DoorIndex.from_site(site, index)
    r = doors.reader("DR-R101")
    assert not doors.is_exit[r] and not doors.zones[r].any()
    fix = place_at_door(doors, [r], [4], [T0])
    np.testing.assert_allclose(fix.xy, [(11.2, 9.0)])
    assert fix.uncertainty[0] == pytest.approx(2.0)  # range 1 m + reader 1 m from the door
    m = ZoneMembership.from_site(site, index)
    assert len(m.enter_at_door(fix).entered) == 0 and not m.inside.any()


def test_door_reads_reject_bad_arguments() -> None:
    doors = DoorIndex.from_site(SITE, INDEX)
    with pytest.raises(ZoneError, match="out of range"):
        place_at_door(doors, [len(doors.reader_ids)], [0], [T0])
    with pytest.raises(ZoneError, match="same length"):
        place_at_door(doors, [0, 1], [0], [T0])
    with pytest.raises(ZoneError, match="finite"):
        place_at_door(doors, [0], [0], [float("nan")])
    m = ZoneMembership.from_site(SITE, INDEX)
    with pytest.raises(ZoneError, match="tag index"):
        m.enter_at_door(place_at_door(doors, [0], [N_TAGS], [T0]))


def test_zone_kinds_are_kept() -> None:
    assert INDEX.kinds[INDEX.column("E1")] is ZoneKind.EXIT
    assert INDEX.is_exit.sum() == 4


# -- membership from zone probabilities (the room filter) -----------------------------------------


def _probability_run(
    m: ZoneMembership,
    steps: list[tuple[float, dict[int, float]]],
    zone: int,
    known: bool = True,
    fresh: set[float] | None = None,
) -> list[tuple[str, float, float]]:
    """Feed P(tag 0 in ``zone``) = value at each (t, {0: value}); returns (kind, t, at) events.
    ``fresh``: the times at which the value is new evidence (None: every step, the default)."""
    events = []
    for now, values in steps:
        prob = np.zeros((N_TAGS, len(INDEX)))
        for tag, value in values.items():
            prob[tag, zone] = value
        kn = np.zeros(N_TAGS, dtype=bool)
        kn[list(values)] = known
        new = None if fresh is None else np.full(N_TAGS, now in fresh)
        tr = m.update_probability(now, prob, kn, enter=0.9, leave=0.6, fresh=new)
        events += [("in", float(r["t"]), now) for r in tr.entered if r["zone"] == zone]
        events += [("out", float(r["t"]), now) for r in tr.left if r["zone"] == zone]
    return events


def test_probability_membership_enters_and_leaves_after_the_dwell_with_a_dead_band() -> None:
    room = INDEX.column("R101")
    m = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=1.0))
    # first known update: the tag is in no zone (0.5 < enter)
    values = [0.5, 0.95, 0.95, 0.8, 0.95, 0.95, 0.95, 0.95, 0.95]
    steps = [(T0 + i * TICK, {0: v}) for i, v in enumerate(values)]
    events = _probability_run(m, steps, room)
    # the run towards entering starts at 0.95 (t1), is broken by 0.8 (< enter) at t3, restarts
    # at t4 and enters once it has lasted the dwell (at t8)
    assert events == [("in", T0 + 4 * TICK, T0 + 8 * TICK)]
    # between leave (0.6) and enter (0.9) nothing changes, however long
    band = [(T0 + (9 + i) * TICK, {0: 0.7}) for i in range(20)]
    assert _probability_run(m, band, room) == [] and m.inside[0, room]
    out = [(T0 + (29 + i) * TICK, {0: 0.3}) for i in range(5)]
    assert _probability_run(m, out, room) == [("out", T0 + 29 * TICK, T0 + 33 * TICK)]


def test_probability_dwell_completes_on_renewed_readings_not_on_a_held_one() -> None:
    """A reading held after the next one was due is no evidence: one reading at 0.95 held
    10 s does not complete a 5 s dwell; readings renewing it do. The same for leaving."""
    room = INDEX.column("R101")
    m = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=5.0))
    times = [T0 + 0.25 * i for i in range(200)]
    prob = {t: 0.0 for t in times}
    fresh = {T0}  # the first reading places the tag outside
    fresh.add(T0 + 10.0)  # one high reading, then none for 10 s (held by the filter)
    for t in times[40:80]:
        prob[t] = 0.95
    fresh.add(T0 + 20.0)  # the next reading is low: never entered
    steps = [(t, {0: prob[t]}) for t in times[:81]]
    assert _probability_run(m, steps, room, fresh=fresh) == []
    # readings every 2 s from 22 s, all high: entered at the first one >= 5 s after the first
    for t in times[81:]:
        prob[t] = 0.95
    fresh |= {T0 + 22.0 + 2.0 * k for k in range(10)}
    steps = [(t, {0: prob[t]}) for t in times[81:]]
    assert _probability_run(m, steps, room, fresh=fresh) == [("in", T0 + 22.0, T0 + 28.0)]
    # leaving likewise: a low reading held does not complete the leave dwell, readings do
    out = [(T0 + 50.0 + 0.25 * i, {0: 0.1}) for i in range(40)]
    assert _probability_run(m, out, room, fresh={T0 + 50.0}) == [] and m.inside[0, room]
    out = [(T0 + 60.0 + 0.25 * i, {0: 0.1}) for i in range(40)]  # the next reading agrees:
    assert _probability_run(m, out, room, fresh={T0 + 60.0}) == [("out", T0 + 50.0, T0 + 60.0)]
    # without ``fresh`` every step counts, as before: the held reading would have entered
    m2 = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=5.0))
    steps = [(t, {0: prob[t] if t < T0 + 20.0 else 0.0}) for t in times[:81]]
    assert _probability_run(m2, steps, room) == [("in", T0 + 10.0, T0 + 15.0)]
    with pytest.raises(ZoneError, match="fresh"):
        m.update_probability(T0 + 100, np.zeros((N_TAGS, len(INDEX))), np.ones(N_TAGS, bool),
                             enter=0.9, leave=0.6, fresh=np.ones(2, bool))  # fmt: skip


def test_probability_membership_freezes_unknown_tags_and_checks_its_arguments() -> None:
    room = INDEX.column("R101")
    m = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=0.0))
    assert _probability_run(m, [(T0, {0: 0.99})], room) == [("in", T0, T0)]
    frozen = _probability_run(m, [(T0 + i, {0: 0.0}) for i in range(1, 5)], room, known=False)
    assert frozen == [] and m.inside[0, room] and not m.known[0]
    prob = np.zeros((N_TAGS, len(INDEX)))
    known = np.ones(N_TAGS, dtype=bool)
    with pytest.raises(ZoneError, match="leave <= enter"):
        m.update_probability(T0 + 10, prob, known, enter=0.5, leave=0.7)
    with pytest.raises(ZoneError, match="probability"):
        m.update_probability(T0 + 10, prob[:, :3], known, enter=0.9, leave=0.6)
    with pytest.raises(ZoneError, match="earlier"):
        m.update_probability(T0, prob, known, enter=0.9, leave=0.6)


# -- membership at scale: slots, pairs --------------------------------------------------------


def test_pairs_give_the_same_membership_as_dense_probabilities() -> None:
    """update_pairs with the pairs that are not far gives what update_probability gives with
    the dense (N, Z) probabilities, step by step (random walks of probability through the
    thresholds, some tags unknown or not fresh)."""
    rng = np.random.default_rng(5)
    z = len(INDEX)
    dense, pairs = (ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=0.5))
                    for _ in range(2))  # fmt: skip
    prob = np.zeros((N_TAGS, z))
    changes = 0
    for i in range(60):
        now = T0 + i * TICK
        hot = rng.integers(0, z, size=(N_TAGS, 3))  # each tag wanders among a few zones
        prob = np.clip(prob * 0.8, 0.0, 1.0)
        prob[np.arange(N_TAGS)[:, None], hot] = rng.uniform(0.0, 1.0, size=(N_TAGS, 3))
        known = rng.random(N_TAGS) > 0.1
        fresh = rng.random(N_TAGS) > 0.2
        a = dense.update_probability(now, prob, known, enter=0.9, leave=0.6, fresh=fresh)
        r, c = np.nonzero(prob >= 0.6)  # the rest is below both thresholds: far
        b = pairs.update_pairs(now, known, r, c, prob[r, c] >= 0.9, prob[r, c] < 0.6,
                               prob[r, c] >= 0.9, fresh=fresh)  # fmt: skip
        assert np.array_equal(a.entered, b.entered) and np.array_equal(a.left, b.left)
        assert np.array_equal(dense.inside, pairs.inside)
        changes += len(a.entered) + len(a.left)
    assert changes > 10  # the walks did cross the thresholds
    tag, zone = pairs.inside_pairs()
    assert np.array_equal(np.c_[tag, zone], np.argwhere(pairs.inside))


def test_membership_memory_is_slots_per_tag_and_grows_when_a_tag_needs_more() -> None:
    """A tag in more nested zones than it has slots widens the slots and loses nothing; no
    state array is (N, Z)."""
    m = ZoneMembership(INDEX, N_TAGS, hysteresis=Hysteresis(dwell_s=0.0), slots=1)
    zones = np.arange(4)
    tr = m.update_pairs(T0, np.ones(N_TAGS, bool), np.zeros(4, int), zones,
                        np.ones(4, bool), np.zeros(4, bool), np.ones(4, bool))  # fmt: skip
    assert sorted(tr.entered["zone"].tolist()) == zones.tolist() and m.slots >= 4
    assert np.flatnonzero(m.inside[0]).tolist() == zones.tolist()
    tr = m.update_pairs(T0 + 1, np.ones(N_TAGS, bool), np.zeros(2, int), zones[:2],
                        np.ones(2, bool), np.zeros(2, bool), np.ones(2, bool))  # fmt: skip
    assert sorted(tr.left["zone"].tolist()) == [2, 3]  # not given: far, left (dwell 0)
    assert np.flatnonzero(m.inside[0]).tolist() == [0, 1]
    for arr in vars(m).values():
        if isinstance(arr, np.ndarray) and arr.ndim == 2:
            assert arr.shape == (N_TAGS, m.slots)
    with pytest.raises(ZoneError, match="zone index"):
        m.update_pairs(T0 + 2, np.ones(N_TAGS, bool), [0], [len(INDEX)], [True], [False], [True])


def test_smallest_of_pairs_equals_smallest_of_the_mask() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((40, len(INDEX))) < 0.05
    r, z = np.nonzero(mask)
    assert np.array_equal(INDEX.smallest_of(r, z, 40), INDEX.smallest(mask))
    assert (INDEX.smallest_of([], [], 3) == -1).all()
