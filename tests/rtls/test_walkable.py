"""The walkable area: rasterising a floor (outline minus the clearance around walls) and
projecting points onto it, on small synthetic floors."""

from __future__ import annotations

import numpy as np
import pytest

from rtls.errors import ConfigError
from rtls.site import Site
from rtls.walkable import (
    WalkableArea,
    WalkableError,
    WalkableParams,
    rasterise,
)

# a 10 m x 6 m floor split by a wall at x = 5 from y = 0 to y = 4 (a 2 m door at its top)
OUTLINE = [(0.0, 0.0), (10.0, 0.0), (10.0, 6.0), (0.0, 6.0)]
WALL = np.array([[5.0, 0.0, 5.0, 4.0]])
PARAMS = WalkableParams(resolution_m=0.1, clearance_m=0.3)


def _area(outline: list[tuple[float, float]] = OUTLINE, walls: np.ndarray = WALL) -> WalkableArea:
    return WalkableArea([rasterise(outline, walls, PARAMS)])


def _distance_to_barriers(xy: np.ndarray) -> np.ndarray:
    """Exact distance of points (K, 2) to the wall and the outline of the test floor."""
    x, y = xy[:, 0], xy[:, 1]
    to_wall = np.hypot(x - 5.0, np.maximum(y - 4.0, 0.0))
    to_outline = np.minimum.reduce([x, 10.0 - x, y, 6.0 - y])
    return np.asarray(np.minimum(to_wall, to_outline))


def test_cells_near_walls_and_outside_the_outline_are_not_walkable() -> None:
    r = rasterise(OUTLINE, WALL, PARAMS)
    assert r is not None
    ny, nx = r.walkable.shape
    assert (ny, nx) == (60, 100)
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * 0.1, (np.arange(ny) + 0.5) * 0.1)
    centres = np.column_stack([gx.ravel(), gy.ravel()])
    want = _distance_to_barriers(centres) > 0.3
    np.testing.assert_array_equal(r.walkable.ravel(), want)
    # the door above the wall stays open: a walkable cell at x = 5 between y 4.3 and 5.7
    assert r.walkable[50, 49] and r.walkable[50, 50]
    assert not r.walkable[20, 49] and not r.walkable[20, 50]


def test_walkable_points_are_not_moved() -> None:
    area = _area()
    rng = np.random.default_rng(0)
    pts = rng.uniform([0.0, 0.0], [10.0, 6.0], size=(2000, 2))
    inside = area.contains(pts, np.zeros(len(pts), dtype=np.intp))
    assert 0.5 < inside.mean() < 1.0
    out = area.project(pts[inside], 0)
    np.testing.assert_array_equal(out, pts[inside])


def test_projection_lands_in_the_area_at_the_nearest_walkable_point() -> None:
    area = _area()
    rng = np.random.default_rng(1)
    pts = rng.uniform([-3.0, -3.0], [13.0, 9.0], size=(3000, 2))
    floor = np.zeros(len(pts), dtype=np.intp)
    out = area.project(pts, floor)
    r = area.floors[0]
    assert r is not None
    # every projection is in a walkable cell (or on its edge: nudge it towards the cell centre)
    cells = r.nearest[r.cells(pts)]
    ny, nx = r.shape
    centre = (np.column_stack([cells % nx, cells // nx]) + 0.5) * 0.1
    assert area.contains(out + 1e-9 * (centre - out), floor).all()
    # distance moved: the exact distance to the walkable set within one cell's diagonal
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * 0.1, (np.arange(ny) + 0.5) * 0.1)
    walk = np.column_stack([gx.ravel(), gy.ravel()])[r.walkable.ravel()]
    exact = np.min(np.hypot(*(pts[:, None, :] - walk[None, :, :]).transpose(2, 0, 1)), axis=1)
    moved = np.hypot(*(out - pts).T)
    assert (moved <= exact + 1e-9).all()
    assert (moved >= exact - 0.1 * np.sqrt(0.5) - 1e-9).all()


def test_a_point_on_the_wall_goes_to_one_side_and_an_outside_point_comes_in() -> None:
    area = _area()
    out = area.project(np.array([[5.02, 2.0], [12.0, 3.0], [3.0, -1.0]]), 0)
    assert 5.3 <= out[0, 0] <= 5.4 and out[0, 1] == pytest.approx(2.0)  # nearer the east side
    np.testing.assert_allclose(out[1], [9.7, 3.0], atol=0.1)
    np.testing.assert_allclose(out[2], [3.0, 0.3], atol=0.1)


def test_non_convex_outline() -> None:
    # an L: the square (4, 4)-(8, 8) is missing
    area = _area([(0.0, 0.0), (8.0, 0.0), (8.0, 4.0), (4.0, 4.0), (4.0, 8.0), (0.0, 8.0)],
                 np.zeros((0, 4)))  # fmt: skip
    out = area.project(np.array([[6.0, 7.5], [7.5, 5.0]]), 0)
    np.testing.assert_allclose(out[0], [3.7, 7.5], atol=0.1)  # nearest: the L's upper arm
    np.testing.assert_allclose(out[1], [7.5, 3.7], atol=0.1)  # and its right arm


def test_points_without_a_raster_are_left_alone() -> None:
    area = WalkableArea([rasterise(OUTLINE, WALL, PARAMS), None])
    pts = np.array([[20.0, 20.0], [np.nan, 1.0], [20.0, 20.0], [20.0, 20.0]])
    out = area.project(pts, np.array([-1, 0, 1, 5]))
    np.testing.assert_array_equal(out, pts)
    assert not area.contains(pts, np.array([-1, 0, 1, 5])).any()


def test_a_clearance_closing_the_floor_gives_no_raster() -> None:
    assert rasterise([(0, 0), (1, 0), (1, 1), (0, 1)], np.zeros((0, 4)),
                     WalkableParams(0.1, 0.6)) is None  # fmt: skip


def test_from_site_uses_each_floors_outline_and_walls() -> None:
    site = Site.from_mapping({
        "site": {"id": "mini", "name": "Mini"},
        "floors": [
            {"id": "F1", "name": "one", "elevation": 0.0, "outline": [list(p) for p in OUTLINE]},
            {"id": "F2", "name": "two", "elevation": 4.0, "outline": [list(p) for p in OUTLINE]},
        ],
        "walls": [{"id": "W1", "floor": "F1", "points": [[5.0, 0.0], [5.0, 4.0]]}],
    })  # fmt: skip
    area = WalkableArea.from_site(site, PARAMS)
    pts = np.array([[5.0, 2.0], [5.0, 2.0]])
    assert area.contains(pts, np.array([0, 1])).tolist() == [False, True]  # the wall is on F1


def test_bad_input_raises() -> None:
    area = _area()
    with pytest.raises(WalkableError):
        area.project(np.zeros((3, 3)), 0)
    with pytest.raises(WalkableError):
        area.project(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(WalkableError):
        area.project(np.zeros((3, 2)), np.zeros(2, dtype=np.intp))
    with pytest.raises(ConfigError):
        WalkableParams(resolution_m=0.0)
    with pytest.raises(ConfigError):
        WalkableParams(clearance_m=-1.0)
    with pytest.raises(ConfigError):
        rasterise([(0, 0), (1, 1)], WALL)
