"""Trajectories and the motion table: continuity, speed, carrying, re-planning, batch = single."""

from __future__ import annotations

import math

import numpy as np
import pytest
from firmware_sim.motion import (
    BADGE_Z,
    CARRIED_Z,
    COT_Z,
    MotionError,
    MotionTable,
    Trajectory,
    walk_to,
    walking_speeds,
)
from firmware_sim.navigation import Building, Connector, NavGrid, NoPathError, Transfer

from rtls.geometry import segment_crossings
from tests.firmware_sim.test_navigation import OUTLINE, ward_walls

STAIRS_XY = (1.0, 6.0)
LIFT_XY = (29.0, 6.0)


@pytest.fixture(scope="module")
def ward() -> NavGrid:
    return NavGrid.build(OUTLINE, ward_walls(), name="ward")


@pytest.fixture(scope="module")
def building(ward: NavGrid) -> Building:
    return Building(
        {0: ward, 1: ward},
        [
            Connector("stairs", "stairs", {0: STAIRS_XY, 1: STAIRS_XY}),
            Connector("lift", "elevator", {0: LIFT_XY, 1: LIFT_XY}),
        ],
    )


def random_trajectory(rng: np.random.Generator, t0: float = 0.0) -> Trajectory:
    """Walks, dwells (some jittered), height changes and floor changes at random."""
    tr = Trajectory.still(rng.uniform(0, 30, 2), int(rng.integers(0, 3)), t0 + rng.uniform(0, 50))
    for _ in range(int(rng.integers(0, 6))):
        kind = rng.integers(0, 5)
        if kind == 0:
            tr = tr.walk(rng.uniform(0, 30, (int(rng.integers(1, 4)), 2)), rng.uniform(0.5, 2))
        elif kind == 1:
            tr = tr.dwell(rng.uniform(0, 40), rng=rng, jitter=0.02, every=7.0)
        elif kind == 2:
            tr = tr.to_height(rng.uniform(0.1, 1.5), seconds=float(rng.choice([0.0, 1.5])))
        elif kind == 3:
            tr = tr.dwell(rng.uniform(0, 20))
        else:
            tr = tr.ride(_stairs_from(tr, rng))
    return tr


def _stairs_from(tr: Trajectory, rng: np.random.Generator) -> Transfer:
    """A flight of stairs from where ``tr`` ends up one or two floors."""
    up = int(rng.integers(1, 3))
    here = tr.xyz[-1, :2]
    return Transfer(
        connector="stairs",
        kind="stairs",
        floors=(tr.end_floor, tr.end_floor + up),
        points=np.vstack([here, here + rng.uniform(-3, 3, 2)]),
        steps=(up,),
        wait_s=0.0,
        travel_s=18.0 * up,
    )


def states(tr: Trajectory, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = tr.sample(ts)
    return p.xyz, p.floor, p.moving


# -- single trajectories ----------------------------------------------------------------------


def test_walk_respects_speed_and_arrives_on_time(ward: NavGrid) -> None:
    speed = 1.1
    tr = walk_to(ward, [3.0, 2.0], [27.0, 10.0], t0=100.0, speed=speed)
    length = float(np.linalg.norm(np.diff(tr.xyz[:, :2], axis=0), axis=1).sum())
    assert tr.end_time - tr.start_time == pytest.approx(length / speed)
    ts = np.linspace(tr.start_time, tr.end_time, 4001)
    xyz, floor, moving = states(tr, ts)
    step = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1) / np.diff(ts)
    assert step.max() <= speed * (1 + 1e-9)
    assert np.median(step) == pytest.approx(speed, rel=1e-6)  # corners cut between samples
    assert moving[:-1].all()
    assert not moving[-1]
    assert (floor == 0).all()
    assert np.allclose(xyz[:, 2], BADGE_Z)
    np.testing.assert_allclose(tr.at(tr.end_time + 50).xyz[:2], [27.0, 10.0])


def test_walked_path_never_crosses_walls(ward: NavGrid) -> None:
    rng = np.random.default_rng(3)
    tr = Trajectory.still([3.0, 2.0], 0, 0.0)
    for goal in rng.uniform([0.5, 0.5], [29.5, 11.5], size=(8, 2)):
        try:
            tr = tr.walk_to(ward, goal, 1.3)
        except NoPathError:
            continue
    assert tr.times.shape[0] > 10
    assert segment_crossings(tr.xyz[:-1, :2], tr.xyz[1:, :2], ward_walls()).sum() == 0


def test_positions_are_continuous_at_knots_except_explicit_steps(building: Building) -> None:
    tr = (
        Trajectory.still([3.0, 2.0], 0, 0.0)
        .dwell(5.0)
        .walk_to(building, [25.0, 10.0], 1.2, goal_floor=1, kinds=("stairs",))
        .to_height(0.2, seconds=1.0)
        .dwell(30.0, rng=np.random.default_rng(1), jitter=0.05, every=5.0)
    )
    eps = 1e-7
    before = tr.sample(tr.times - eps).xyz
    after = tr.sample(tr.times + eps).xyz
    assert np.abs(after - before).max() < 1e-5
    # A floor change happens only on stairs, halfway.
    ts = np.linspace(tr.start_time, tr.end_time, 20001)
    fl = tr.sample(ts).floor
    assert set(np.unique(fl).tolist()) == {0, 1}
    assert (np.diff(fl) >= 0).all()


def test_instant_height_change_is_a_step() -> None:
    tr = Trajectory.still([1.0, 1.0], 0, 0.0, z=COT_Z).dwell(10.0).to_height(CARRIED_Z)
    assert tr.at(10.0 - 1e-9).xyz[2] == pytest.approx(COT_Z)
    assert tr.at(10.0).xyz[2] == pytest.approx(CARRIED_Z)


def test_stairs_and_elevator_rides(building: Building) -> None:
    start = Trajectory.still([3.0, 2.0], 0, 0.0)
    stairs = start.walk_to(building, [3.0, 10.0], 1.2, goal_floor=1, kinds=("stairs",))
    lift = start.walk_to(building, [3.0, 10.0], 1.2, goal_floor=1, kinds=("elevator",))
    walk_s = building.route(0, [3.0, 2.0], 1, [3.0, 10.0], kinds=("stairs",)).length / 1.2
    assert stairs.end_time == pytest.approx(walk_s + building.stairs_s_per_floor)
    assert stairs.end_floor == lift.end_floor == 1
    # While waiting for and riding the elevator the wearer stands still at the lift.
    ride = lift.sample(np.linspace(0, lift.end_time, 5001))
    at_lift = np.linalg.norm(ride.xyz[:, :2] - np.array(LIFT_XY), axis=1) < 1e-9
    assert at_lift.any()
    assert not ride.moving[at_lift].any()


def test_resting_jitter_is_small_seeded_and_still() -> None:
    def make(seed: int) -> Trajectory:
        return Trajectory.resting(
            [4.0, 3.0], 0, 0.0, 3600.0, np.random.default_rng(seed), jitter=0.02
        )

    a, b, c = make(5), make(5), make(6)
    ts = np.linspace(0, 3600, 7201)
    pa = a.sample(ts)
    np.testing.assert_array_equal(pa.xyz, b.sample(ts).xyz)
    assert not np.array_equal(pa.xyz, c.sample(ts).xyz)
    off = np.abs(pa.xyz[:, :2] - np.array([4.0, 3.0]))
    assert off.max() <= 3 * 0.02 + 1e-12
    assert off.max() > 0
    assert not pa.moving.any()
    assert np.allclose(pa.xyz[:, 2], COT_Z)
    np.testing.assert_allclose(a.at(3600.0).xyz[:2], [4.0, 3.0])


def test_walking_speeds_are_seeded_and_bounded() -> None:
    a = walking_speeds(np.random.default_rng(1), 2000)
    b = walking_speeds(np.random.default_rng(1), 2000)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.6
    assert a.max() <= 1.8
    assert a.mean() == pytest.approx(1.2, abs=0.02)


def test_splice_waits_for_a_later_start() -> None:
    a = Trajectory.still([0.0, 0.0], 0, 0.0).walk([[10.0, 0.0]], 1.0)
    b = Trajectory.still([5.0, 0.0], 0, 8.0).walk([[5.0, 4.0]], 1.0)
    s = a.splice(5.0, b)
    np.testing.assert_allclose(s.at(3.0).xyz[:2], [3.0, 0.0])
    np.testing.assert_allclose(s.at(7.0).xyz[:2], [5.0, 0.0])
    assert not s.at(7.0).moving
    np.testing.assert_allclose(s.at(10.0).xyz[:2], [5.0, 2.0])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Trajectory.still([0, 0], 0, 0.0).walk([[1, 1]], 0.0), "speed"),
        (lambda: Trajectory.still([0, 0], 0, 0.0).dwell(-1.0), "dwell"),
        (lambda: Trajectory.still([0, 0], 0, 0.0).dwell(5.0, jitter=0.1), "rng"),
        (lambda: Trajectory.still([0, 0, 0], 0, 0.0), "position"),
        (
            lambda: Trajectory(
                np.array([1.0, 0.0]), np.zeros((2, 3)), np.zeros(2, np.int64), np.zeros(2, bool)
            ),
            "non-decreasing",
        ),
    ],
)
def test_bad_trajectories_raise(build: object, match: str) -> None:
    with pytest.raises(MotionError, match=match):
        build()  # type: ignore[operator]


def test_single_floor_grid_refuses_other_floors(ward: NavGrid) -> None:
    with pytest.raises(MotionError, match="single-floor"):
        walk_to(ward, [3.0, 2.0], [3.0, 10.0], t0=0.0, goal_floor=1)


# -- the motion table -------------------------------------------------------------------------


def _expect(trs: list[Trajectory], t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    got = [tr.at(t) for tr in trs]
    return (
        np.array([g.xyz for g in got]),
        np.array([g.floor for g in got]),
        np.array([g.moving for g in got]),
    )


def _assert_same(table: MotionTable, trs: list[Trajectory], t: float) -> None:
    p = table.positions(t)
    xyz, floor, moving = _expect(trs, t)
    np.testing.assert_allclose(p.xyz, xyz, atol=1e-12)
    np.testing.assert_array_equal(p.floor, floor)
    np.testing.assert_array_equal(p.moving, moving)


def test_table_matches_single_trajectories() -> None:
    rng = np.random.default_rng(42)
    trs = [random_trajectory(rng) for _ in range(300)]
    table = MotionTable()
    for i, tr in enumerate(trs):
        table.add(f"tag{i}", tr)
    assert len(table) == 300
    knot_times = np.concatenate([tr.times for tr in trs])
    # Increasing times (the cursor), exact knot times included, then random seeks backwards.
    forward = np.sort(np.concatenate([rng.uniform(-10, 400, 40), rng.choice(knot_times, 20)]))
    for t in forward:
        _assert_same(table, trs, float(t))
    for t in rng.uniform(-10, 400, 20):
        _assert_same(table, trs, float(t))


def test_table_replans_match_spliced_trajectories_and_compact() -> None:
    rng = np.random.default_rng(8)
    trs = [random_trajectory(rng) for _ in range(60)]
    table = MotionTable()
    for i, tr in enumerate(trs):
        table.add(f"tag{i}", tr)
    t = 0.0
    for _ in range(400):  # enough re-plans to fill and compact the knot pool several times
        t += float(rng.uniform(0, 2))
        r = int(rng.integers(0, 60))
        here = trs[r].at(t)
        new = Trajectory.still(here.xyz[:2], here.floor, t, z=float(here.xyz[2])).walk(
            rng.uniform(0, 30, (2, 2)), 1.2
        )
        table.replan(r, t, new)
        trs[r] = trs[r].splice(t, new)
        if rng.random() < 0.2:
            _assert_same(table, trs, t + float(rng.uniform(0, 5)))
    for s in rng.uniform(0, t + 60, 10):
        _assert_same(table, trs, float(s))


def test_replan_from_current_position_is_continuous(ward: NavGrid) -> None:
    table = MotionTable()
    nurse = table.add("nurse", walk_to(ward, [3.0, 2.0], [27.0, 10.0], t0=0.0, speed=1.2))
    before = table.positions(10.0).xyz[nurse].copy()
    table.send("nurse", 10.0, ward, [15.0, 2.0], speed=1.2)
    assert (
        np.abs(table.state(nurse, 10.0 - 1e-6).xyz - table.state(nurse, 10.0 + 1e-6).xyz).max()
        < 1e-5
    )
    np.testing.assert_allclose(table.positions(10.0).xyz[nurse], before, atol=1e-9)
    # The past is kept; the future goes to the new goal.
    np.testing.assert_allclose(
        table.state(nurse, 5.0).xyz,
        walk_to(ward, [3.0, 2.0], [27.0, 10.0], t0=0.0, speed=1.2).at(5.0).xyz,
    )
    np.testing.assert_allclose(table.positions(500.0).xyz[nurse, :2], [15.0, 2.0])


def test_replan_from_elsewhere_is_refused() -> None:
    table = MotionTable()
    table.add("a", Trajectory.still([1.0, 1.0], 0, 0.0))
    with pytest.raises(MotionError, match="plan from its position"):
        table.replan("a", 5.0, Trajectory.still([9.0, 9.0], 0, 5.0))
    with pytest.raises(MotionError, match="unknown tag"):
        table.replan("b", 5.0, Trajectory.still([9.0, 9.0], 0, 5.0))
    table.replan("a", 5.0, Trajectory.still([9.0, 9.0], 0, 5.0), allow_jump=True)
    np.testing.assert_allclose(table.state("a", 6.0).xyz[:2], [9.0, 9.0])


def test_carried_baby_follows_the_carrier_until_put_down(ward: NavGrid) -> None:
    rng = np.random.default_rng(2)
    table = MotionTable()
    cot = np.array([12.0, 2.0])
    baby = table.add("baby", Trajectory.resting(cot, 0, 0.0, 1000.0, rng, jitter=0.02))
    # An untagged adult walks to the cot, takes the baby at t=60 and walks to the corridor.
    walk = walk_to(ward, [18.0, 9.0], cot + np.array([0.3, 0.0]), t0=0.0, speed=1.3).dwell(60.0)
    walk = walk.splice(
        60.0, walk_to(ward, cot + np.array([0.3, 0.0]), [2.0, 6.0], t0=60.0, speed=1.3)
    )
    man = table.add("stranger", walk, transmits=False)
    np.testing.assert_array_equal(table.transmits, [True, False])
    table.carry("baby", "stranger", 60.0, offset=(0.1, 0.05))
    table.put_down("baby", 70.0, z=0.9)
    ts = np.linspace(0.0, 200.0, 401)
    for t in ts:
        p = table.positions(float(t))
        s = table.state(baby, float(t))
        np.testing.assert_allclose(p.xyz[baby], s.xyz)
        if 60.0 <= t < 70.0:
            np.testing.assert_allclose(p.xyz[baby, :2], p.xyz[man, :2] + [0.1, 0.05])
            assert p.xyz[baby, 2] == pytest.approx(CARRIED_Z)
            assert p.floor[baby] == p.floor[man]
            assert p.moving[baby] == p.moving[man]
        elif t < 60.0:
            assert np.linalg.norm(p.xyz[baby, :2] - cot) <= 0.1
        else:
            held = walk.at(70.0).xyz[:2] + np.array([0.1, 0.05])
            np.testing.assert_allclose(p.xyz[baby, :2], held)
            assert p.xyz[baby, 2] == pytest.approx(0.9)
            assert not p.moving[baby]
    assert np.linalg.norm(walk.at(70.0).xyz[:2] - cot) > 5.0  # the baby really left the cot


def test_carry_rules() -> None:
    table = MotionTable()
    for name in ("baby", "mother", "nurse"):
        table.add(name, Trajectory.still([5.0, 5.0], 0, 0.0))
    table.carry("baby", "mother", 10.0)
    with pytest.raises(MotionError, match="already carried"):
        table.carry("baby", "nurse", 20.0)
    with pytest.raises(MotionError, match="itself carried"):
        table.carry("nurse", "baby", 20.0)
    with pytest.raises(MotionError, match="carrying another"):
        table.carry("mother", "nurse", 20.0)
    with pytest.raises(MotionError, match="being carried"):
        table.replan("baby", 20.0, Trajectory.still([5.15, 5.0], 0, 20.0))
    with pytest.raises(MotionError, match="not being carried"):
        table.put_down("nurse", 20.0)
    table.put_down("baby", 30.0)
    table.carry("baby", "nurse", 40.0)  # handed over later: allowed
    assert table.state("baby", 45.0).xyz[2] == pytest.approx(CARRIED_Z)


def test_ten_thousand_tags_evaluate_in_one_call() -> None:
    rng = np.random.default_rng(0)
    table = MotionTable()
    base = [random_trajectory(rng) for _ in range(50)]
    for i in range(10_000):
        table.add(f"t{i}", base[i % 50])
    p = table.positions(123.0)
    assert p.xyz.shape == (10_000, 3)
    assert p.floor.shape == p.moving.shape == (10_000,)
    xyz, _, _ = _expect(base, 123.0)
    np.testing.assert_allclose(p.xyz[:50], xyz)
    np.testing.assert_allclose(p.xyz[9950:], xyz)
    assert math.isfinite(float(p.xyz.sum()))
