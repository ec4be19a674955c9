"""Walkable grid, shortest paths and multi-floor routes on a small hand-built ward."""

from __future__ import annotations

import math

import numpy as np
import pytest
from firmware_sim.navigation import Building, Connector, NavGrid, NoPathError, segment_clearance
from scipy.sparse.csgraph import dijkstra

from rtls.errors import ConfigError, RtlsError
from rtls.geometry import points_in_polygon, segment_crossings, segment_distance

WIDTH, DEPTH = 30.0, 12.0
DOOR = 1.2
OUTLINE = np.array([[0, 0], [WIDTH, 0], [WIDTH, DEPTH], [0, DEPTH]], dtype=float)


def ward_walls(closed_room: bool = False) -> np.ndarray:
    """30 x 12 m: a 2 m corridor (y 5..7) between three rooms south and three north, each
    10 m wide with a 1.2 m door gap at its middle. ``closed_room`` walls the north-east door."""
    walls = [[0, 0, WIDTH, 0], [WIDTH, 0, WIDTH, DEPTH], [WIDTH, DEPTH, 0, DEPTH], [0, DEPTH, 0, 0]]
    for y in (5.0, 7.0):
        xs = [0.0]
        for mid in (5.0, 15.0, 25.0):
            xs += [mid - DOOR / 2, mid + DOOR / 2]
        xs.append(WIDTH)
        walls += [[a, y, b, y] for a, b in zip(xs[0::2], xs[1::2], strict=True)]
    for x in (10.0, 20.0):
        walls += [[x, 0, x, 5], [x, 7, x, DEPTH]]
    if closed_room:
        walls.append([25 - DOOR / 2, 7, 25 + DOOR / 2, 7])
    return np.array(walls, dtype=float)


@pytest.fixture(scope="module")
def ward() -> NavGrid:
    return NavGrid.build(OUTLINE, ward_walls(), name="ward")


def free_points(grid: NavGrid, rng: np.random.Generator, n: int) -> np.ndarray:
    """n random points farther than the clearance from every wall (where people stand)."""
    out: list[np.ndarray] = []
    while len(out) < n:
        p = rng.uniform([0, 0], [WIDTH, DEPTH], size=(4 * n, 2))
        ok = segment_distance(p, grid.barriers).min(axis=1) > grid.clearance
        out.extend(p[ok])
    return np.array(out[:n])


def path_length(p: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def test_paths_never_cross_walls_stay_inside_and_keep_clearance(ward: NavGrid) -> None:
    rng = np.random.default_rng(7)
    starts, goals = free_points(ward, rng, 80), free_points(ward, rng, 80)
    walls = ward_walls()
    bound = ward.clearance - ward.resolution * math.sqrt(2) / 2
    for s, g in zip(starts, goals, strict=True):
        p = ward.path(s, g)
        np.testing.assert_array_equal(p[0], s)
        np.testing.assert_array_equal(p[-1], g)
        a, b = p[:-1], p[1:]
        assert segment_crossings(a, b, walls).sum() == 0
        assert segment_clearance(a, b, ward.barriers).min() >= bound - 1e-9
        frac = np.linspace(0, 1, 25)[None, :, None]
        along = (a[:, None, :] + frac * (b - a)[:, None, :]).reshape(-1, 2)
        assert points_in_polygon(along, OUTLINE).all()


def _ring_nodes(grid: NavGrid, walls: np.ndarray) -> np.ndarray:
    """Points on a 16-gon circumscribing a clearance circle around every free wall end (jamb):
    the corners a clearance-keeping shortest path wraps around."""
    ends = np.unique(np.vstack([walls[:, :2], walls[:, 2:]]), axis=0)
    jambs = ends[(segment_distance(ends, walls) < 1e-9).sum(axis=1) == 1]
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    radius = grid.clearance / np.cos(np.pi / 16) * 1.001
    ring = (jambs[:, None, :] + radius * np.stack([np.cos(ang), np.sin(ang)], 1)).reshape(-1, 2)
    keep = segment_distance(ring, grid.barriers).min(axis=1) >= grid.clearance
    return np.asarray(ring[keep], dtype=np.float64)


def test_path_length_within_ten_percent_of_visibility_graph(ward: NavGrid) -> None:
    ring = _ring_nodes(ward, ward_walls())
    n = ring.shape[0]
    i, j = np.triu_indices(n, 1)
    vis = segment_clearance(ring[i], ring[j], ward.barriers) >= ward.clearance - 1e-9
    base = np.zeros((n + 2, n + 2))
    base[i[vis] + 2, j[vis] + 2] = np.linalg.norm(ring[i[vis]] - ring[j[vis]], axis=1)
    rng = np.random.default_rng(11)
    for s, g in zip(free_points(ward, rng, 25), free_points(ward, rng, 25), strict=True):
        m = base.copy()
        for k, p in enumerate((s, g)):
            ok = segment_clearance(np.broadcast_to(p, ring.shape), ring, ward.barriers)
            sel = ok >= ward.clearance - 1e-9
            m[k, 2:][sel] = np.linalg.norm(ring[sel] - p, axis=1)
        if segment_clearance(s, g, ward.barriers)[0] >= ward.clearance:
            m[0, 1] = np.linalg.norm(g - s)
        best = dijkstra(m, directed=False, indices=0)[1]
        assert math.isfinite(best)
        assert path_length(ward.path(s, g)) <= 1.10 * best


def test_known_shortest_path_around_a_wall_end() -> None:
    # 10 x 10 room, a wall from the west side to x = 7 at y = 5: walk around its end.
    outline = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    grid = NavGrid.build(outline, [[0, 5, 7, 5]], resolution=0.1, clearance=0.3)
    s, g, jamb, c = np.array([2.0, 2.0]), np.array([2.0, 8.0]), np.array([7.0, 5.0]), 0.3
    d = float(np.linalg.norm(s - jamb))
    phi = 2 * math.atan2(3.0, 5.0)  # angle at the jamb between the directions to s and g
    exact = 2 * math.sqrt(d * d - c * c) + c * (2 * math.pi - phi - 2 * math.acos(c / d))
    length = path_length(grid.path(s, g))
    assert exact * 0.99 <= length <= exact * 1.10


def test_direct_line_of_sight_gives_a_straight_path(ward: NavGrid) -> None:
    p = ward.path([12.0, 6.0], [28.0, 6.0])
    assert p.shape == (2, 2)


def test_start_in_the_clearance_band_snaps_without_crossing(ward: NavGrid) -> None:
    start = np.array([12.0, 4.9])  # 0.1 m south of the corridor wall, in a room
    p = ward.path(start, [12.0, 6.0])
    np.testing.assert_array_equal(p[0], start)
    assert segment_crossings(p[:-1], p[1:], ward_walls()).sum() == 0
    # It leaves through the room's door, not through the wall it is standing next to.
    assert path_length(p) > 5.0


def test_unreachable_room_raises() -> None:
    grid = NavGrid.build(OUTLINE, ward_walls(closed_room=True), name="closed")
    with pytest.raises(NoPathError, match="cannot be reached"):
        grid.path([15.0, 6.0], [25.0, 10.0])
    assert issubclass(NoPathError, RtlsError)


@pytest.mark.parametrize("point", [[-1.0, 6.0], [31.0, 3.0], [15.0, 12.5]])
def test_point_outside_the_outline_raises_naming_it(ward: NavGrid, point: list[float]) -> None:
    with pytest.raises(NoPathError, match="outside the outline"):
        ward.path(point, [15.0, 6.0])
    with pytest.raises(NoPathError, match="goal"):
        ward.path([15.0, 6.0], point)


def test_point_far_from_walkable_space_raises() -> None:
    block = np.array([[12, 1], [18, 1], [18, 4], [12, 4]], dtype=float)
    grid = NavGrid.build(OUTLINE, ward_walls(), obstacles=[block])
    with pytest.raises(NoPathError, match="not within 1 m"):
        grid.path([15.0, 2.5], [15.0, 6.0])


def test_paths_go_around_obstacles() -> None:
    bed = np.array([[13, 8.5], [17, 8.5], [17, 9.5], [13, 9.5]], dtype=float)
    grid = NavGrid.build(OUTLINE, ward_walls(), obstacles=[bed])
    p = grid.path([15.0, 8.0], [15.0, 10.5])
    assert segment_crossings(p[:-1], p[1:], np.vstack([ward_walls(), _ring(bed)])).sum() == 0
    assert path_length(p) > 2 * 2.0  # around a 4 m long bed, not through it


def _ring(poly: np.ndarray) -> np.ndarray:
    return np.hstack([poly, np.roll(poly, -1, axis=0)])


def test_door_narrower_than_twice_the_clearance_is_closed() -> None:
    grid = NavGrid.build(OUTLINE, ward_walls(), clearance=0.65)
    with pytest.raises(NoPathError, match="cannot be reached"):
        grid.path([15.0, 6.0], [15.0, 2.0])


def test_is_walkable_respects_clearance(ward: NavGrid) -> None:
    assert ward.is_walkable([[15.0, 6.0]])[0]
    assert not ward.is_walkable([[12.0, 6.9], [10.05, 2.0], [-1.0, 1.0]]).any()


@pytest.mark.parametrize(
    ("resolution", "clearance", "match"),
    [(0.5, 0.3, "clearance"), (0.0, 0.3, "resolution"), (0.2, math.nan, "clearance")],
)
def test_bad_grid_parameters_raise(resolution: float, clearance: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NavGrid.build(OUTLINE, ward_walls(), resolution=resolution, clearance=clearance)


def test_bad_outline_or_walls_raise() -> None:
    with pytest.raises(ConfigError, match="outline"):
        NavGrid.build([[0, 0], [1, 1]], ward_walls())
    with pytest.raises(ConfigError, match="walls"):
        NavGrid.build(OUTLINE, [[0, 0, 1]])


# -- several floors ---------------------------------------------------------------------------

STAIRS_XY = (1.0, 6.0)  # west end of the corridor
LIFT_XY = (29.0, 6.0)  # east end


@pytest.fixture(scope="module")
def building(ward: NavGrid) -> Building:
    floors = {f: ward for f in (0, 1, 2)}
    return Building(
        floors,
        [
            Connector("stairs-w", "stairs", {0: STAIRS_XY, 1: STAIRS_XY, 2: STAIRS_XY}),
            Connector("lift-e", "elevator", {0: LIFT_XY, 1: LIFT_XY, 2: LIFT_XY}),
        ],
    )


def test_route_between_floors_uses_the_nearest_connector(building: Building) -> None:
    route = building.route(0, [3.0, 2.0], 1, [3.0, 10.0])
    assert [leg.floor for leg in route.legs] == [0, 1]
    (tr,) = route.transfers
    assert tr.connector == "stairs-w"
    assert tr.floors == (0, 1)
    assert tr.duration == pytest.approx(building.stairs_s_per_floor)
    np.testing.assert_allclose(route.legs[0].waypoints[-1], STAIRS_XY)
    np.testing.assert_allclose(route.legs[1].waypoints[0], STAIRS_XY)
    np.testing.assert_allclose(route.legs[1].waypoints[-1], [3.0, 10.0])


def test_route_prefers_elevator_when_stairs_are_far(building: Building) -> None:
    route = building.route(0, [28.0, 3.0], 1, [28.0, 10.0])
    assert route.transfers[0].kind == "elevator"


def test_elevator_ride_over_two_floors_waits_once(building: Building) -> None:
    route = building.route(0, [3.0, 2.0], 2, [3.0, 10.0], kinds=("elevator",))
    (tr,) = route.transfers
    assert tr.connector == "lift-e"
    assert tr.floors == (0, 1, 2)
    assert tr.wait_s == pytest.approx(building.elevator_wait_s)
    assert tr.travel_s == pytest.approx(2 * building.elevator_s_per_floor)


def test_same_floor_route_has_one_leg(building: Building) -> None:
    route = building.route(1, [3.0, 2.0], 1, [27.0, 10.0])
    assert len(route.legs) == 1
    assert route.transfers == ()
    assert route.length == pytest.approx(path_length(route.legs[0].waypoints))


def test_route_without_a_usable_connector_raises(ward: NavGrid) -> None:
    b = Building({0: ward, 1: ward}, [Connector("lift", "elevator", {0: LIFT_XY, 1: LIFT_XY})])
    with pytest.raises(NoPathError, match="no route"):
        b.route(0, [3.0, 2.0], 1, [3.0, 10.0], kinds=("stairs",))
    with pytest.raises(NoPathError, match="floor 5"):
        b.route(0, [3.0, 2.0], 5, [3.0, 10.0])


def test_bad_connectors_raise(ward: NavGrid) -> None:
    with pytest.raises(ConfigError, match="unknown floor 3"):
        Building({0: ward}, [Connector("s", "stairs", {0: STAIRS_XY, 3: STAIRS_XY})])
    with pytest.raises(ConfigError, match="kind"):
        Connector("s", "ladder", {0: STAIRS_XY, 1: STAIRS_XY})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'s' on floor 0"):
        Building({0: ward, 1: ward}, [Connector("s", "stairs", {0: (40.0, 6.0), 1: STAIRS_XY})])
