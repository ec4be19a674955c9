"""Walkable paths: an occupancy grid per floor, shortest paths, and routes across floors.

A floor is an outline polygon (K, 2) in metres and walls as (W, 4) segments ``x1, y1, x2, y2``;
doors are gaps between wall segments. :class:`NavGrid` marks the grid cells a person can stand
in (inside the outline, farther than ``clearance`` from every wall, outline edge and obstacle),
finds the shortest 8-connected grid path with SciPy's Dijkstra, then string-pulls it into a few
straight segments that keep the clearance. :class:`Building` joins floors by stairs and
elevators and returns a :class:`Route`: walking legs with vertical transfers between them.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from rtls.errors import ConfigError, RtlsError
from rtls.geometry import (
    as_points,
    points_in_polygon,
    polygon_segments,
    segment_crossing_matrix,
    segment_distance,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ConnectorKind = Literal["stairs", "elevator"]

_SQRT2 = math.sqrt(2.0)
_TILE = 64  # cells per side of the tiles the grid is classified in (bounds memory)
_MAX_CELLS = 20_000_000
_CUTS = 12  # corner-cutting trials per corner


class NoPathError(RtlsError):
    """No walkable path: a point is off the floor or too far from walkable space, or unreachable."""


def segment_clearance(a: ArrayLike, b: ArrayLike, barriers: ArrayLike) -> FloatArray:
    """Distance from each segment a[i]→b[i] (a, b: (M, 2)) to the nearest barrier (B, 4).

    Returns (M,): 0 where a segment crosses or touches a barrier, ``inf`` when B == 0.
    Exact for segments: the minimum over the four end-point-to-segment distances.
    """
    p = as_points(a)
    q = as_points(b)
    bar = np.asarray(barriers, dtype=np.float64).reshape(-1, 4)
    if bar.shape[0] == 0:
        return np.full(p.shape[0], np.inf)
    if p.shape[0] == 0:
        return np.zeros(0)
    d = np.minimum(segment_distance(p, bar), segment_distance(q, bar))  # (M, B)
    seg = np.hstack([p, q])
    nb = bar.shape[0]
    ends = segment_distance(np.vstack([bar[:, 0:2], bar[:, 2:4]]), seg)  # (2B, M)
    d = np.minimum(d, np.minimum(ends[:nb], ends[nb:]).T)
    d = np.where(segment_crossing_matrix(p, q, bar), 0.0, d)
    return np.asarray(d.min(axis=1), dtype=np.float64)


def _segments(arr: ArrayLike | None, what: str) -> FloatArray:
    if arr is None:
        return np.zeros((0, 4))
    w = np.asarray(arr, dtype=np.float64)
    if w.size == 0:
        return np.zeros((0, 4))
    if w.ndim != 2 or w.shape[1] != 4:
        raise ConfigError(f"{what}: expected segments of shape (W, 4), got {w.shape}")
    if not np.isfinite(w).all():
        raise ConfigError(f"{what}: segments must be finite numbers")
    return w


def _bbox_overlap(segs: FloatArray, lo: FloatArray, hi: FloatArray) -> BoolArray:
    """Which segments (B, 4) have a bounding box meeting the box [lo, hi] (each (2,))."""
    smin = np.minimum(segs[:, 0:2], segs[:, 2:4])
    smax = np.maximum(segs[:, 0:2], segs[:, 2:4])
    return np.asarray(((smax >= lo) & (smin <= hi)).all(axis=1))


class NavGrid:
    """Walkable occupancy grid of one floor with shortest paths. Build with :meth:`build`.

    Guarantees of :meth:`path`: no segment crosses a wall, outline edge or obstacle edge; every
    segment between walkable points keeps at least ``clearance - resolution * sqrt(2) / 2`` from
    them (string-pulled segments keep the full ``clearance``). The first and last segment join a
    start/goal that lies off the walkable cells to its nearest walkable cell without crossing a
    wall or the outline; they may pass closer than ``clearance``.
    """

    def __init__(
        self,
        *,
        outline: FloatArray,
        walls: FloatArray,
        barriers: FloatArray,
        origin: FloatArray,
        resolution: float,
        clearance: float,
        walkable: BoolArray,
        snap_tolerance: float,
        cache_size: int,
        name: str,
    ) -> None:
        self.outline = outline
        self.walls = walls
        self.barriers = barriers
        self.origin = origin
        self.resolution = resolution
        self.clearance = clearance
        self.walkable = walkable
        self.snap_tolerance = snap_tolerance
        self.name = name
        self._cache_size = cache_size
        self._cache: OrderedDict[int, tuple[FloatArray, NDArray[np.int32]]] = OrderedDict()
        # Solid walls and outline only: a start/goal may snap over low obstacles (a cot, a bed).
        self._snap_barriers = np.vstack([walls, polygon_segments(outline)])
        ny, nx = walkable.shape
        self._node_of = np.full(ny * nx, -1, dtype=np.int64)
        cells = np.flatnonzero(walkable.ravel())
        self._node_of[cells] = np.arange(cells.size)
        iy, ix = np.divmod(cells, nx)
        self._centers = np.column_stack(
            [origin[0] + (ix + 0.5) * resolution, origin[1] + (iy + 0.5) * resolution]
        )
        self._graph = self._build_graph()

    @classmethod
    def build(
        cls,
        outline: ArrayLike,
        walls: ArrayLike,
        resolution: float = 0.2,
        clearance: float = 0.3,
        obstacles: Sequence[ArrayLike] | None = None,
        *,
        snap_tolerance: float = 1.0,
        cache_size: int = 32,
        name: str = "",
    ) -> NavGrid:
        """Classify the floor into walkable cells of ``resolution`` metres.

        ``outline`` (K, 2) polygon; ``walls`` (W, 4); ``obstacles`` polygons (K_i, 2) people walk
        around (beds, counters). A cell is walkable when its centre is inside the outline, outside
        every obstacle and farther than ``clearance`` from every wall, outline edge and obstacle
        edge. ``clearance`` must exceed ``resolution * sqrt(2) / 2`` so that neighbouring walkable
        cells never straddle a wall. A door narrower than ``2 * clearance`` is closed.
        ``snap_tolerance``: how far a start/goal may lie from the nearest walkable cell.
        ``cache_size``: shortest-path trees kept (one per goal cell). ``name`` appears in errors.
        """
        label = f"floor {name!r}" if name else "floor"
        try:
            poly = as_points(outline)
        except ValueError as exc:
            raise ConfigError(f"{label}: outline: {exc}") from exc
        if poly.shape[0] < 3 or not np.isfinite(poly).all():
            raise ConfigError(f"{label}: outline needs at least 3 finite vertices")
        wall_segs = _segments(walls, f"{label}: walls")
        if not (math.isfinite(resolution) and resolution > 0):
            raise ConfigError(f"{label}: resolution must be > 0 m, got {resolution}")
        if not (math.isfinite(clearance) and clearance > resolution * _SQRT2 / 2):
            raise ConfigError(
                f"{label}: clearance {clearance} m must exceed resolution * sqrt(2) / 2 "
                f"= {resolution * _SQRT2 / 2:.3f} m"
            )
        if not snap_tolerance >= 0:
            raise ConfigError(f"{label}: snap_tolerance must be >= 0, got {snap_tolerance}")
        obstacle_polys: list[FloatArray] = []
        for i, obs in enumerate(obstacles or ()):
            try:
                o = as_points(obs)
            except ValueError as exc:
                raise ConfigError(f"{label}: obstacle {i}: {exc}") from exc
            if o.shape[0] < 3 or not np.isfinite(o).all():
                raise ConfigError(f"{label}: obstacle {i} needs at least 3 finite vertices")
            obstacle_polys.append(o)
        barriers = np.vstack(
            [wall_segs, polygon_segments(poly)] + [polygon_segments(o) for o in obstacle_polys]
        )
        origin = poly.min(axis=0)
        nx, ny = (np.ceil((poly.max(axis=0) - origin) / resolution).astype(np.int64) + 1).tolist()
        if nx * ny > _MAX_CELLS:
            raise ConfigError(
                f"{label}: grid of {nx}x{ny} cells is too large; use a coarser resolution"
            )
        walkable = np.zeros((ny, nx), dtype=bool)
        for y0 in range(0, ny, _TILE):
            for x0 in range(0, nx, _TILE):
                y1, x1 = min(y0 + _TILE, ny), min(x0 + _TILE, nx)
                walkable[y0:y1, x0:x1] = _classify_tile(
                    origin, resolution, clearance, (x0, x1, y0, y1), poly, obstacle_polys, barriers
                )
        return cls(
            outline=poly,
            walls=wall_segs,
            barriers=barriers,
            origin=origin,
            resolution=float(resolution),
            clearance=float(clearance),
            walkable=walkable,
            snap_tolerance=float(snap_tolerance),
            cache_size=max(1, int(cache_size)),
            name=name,
        )

    # -- public queries ---------------------------------------------------------------------

    @property
    def cell_centers(self) -> FloatArray:
        """Centres (C, 2) of the walkable cells."""
        return self._centers

    def is_walkable(self, points: ArrayLike) -> BoolArray:
        """Which points (N, 2) fall in a walkable cell. Returns (N,)."""
        pts = as_points(points)
        node = self._nodes_at(pts)
        return np.asarray(node >= 0)

    def path(self, start: ArrayLike, goal: ArrayLike) -> FloatArray:
        """Waypoints (P, 2), P >= 2, from ``start`` (2,) to ``goal`` (2,) along walkable space.

        The first and last waypoints are ``start`` and ``goal`` themselves. Raises
        :class:`NoPathError` when either is outside the outline, farther than ``snap_tolerance``
        from a walkable cell it can see, or when the goal cannot be reached.
        """
        s = self._point(start, "start")
        g = self._point(goal, "goal")
        s_node = self._snap(s, "start")
        g_node = self._snap(g, "goal")
        ends = np.vstack([s, g])
        if np.array_equal(s, g) or self._clear(ends[:1], ends[1:])[0]:
            return ends
        dist, pred = self._tree(g_node)
        if not math.isfinite(dist[s_node]):
            raise NoPathError(
                f"goal ({g[0]:.2f}, {g[1]:.2f}) cannot be reached from start "
                f"({s[0]:.2f}, {s[1]:.2f}) on {self._label}"
            )
        chain = [s_node]
        node = s_node
        while node != g_node:
            node = int(pred[node])
            chain.append(node)
        pts = np.vstack([s, self._centers[np.asarray(chain)], g])
        keep = np.ones(pts.shape[0], dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        return self._cut_corners(self._smooth(pts[keep]))

    def travel_distance(self, start: ArrayLike, goal: ArrayLike) -> float:
        """Grid walking distance (m) from ``start`` to ``goal``: an upper estimate of the path
        length (within about 8 %, the 8-connected grid's excess), ``inf`` when unreachable.

        Cheap once the goal's tree is cached; :class:`Building` uses it to pick connectors.
        """
        s = self._point(start, "start")
        g = self._point(goal, "goal")
        s_node = self._snap(s, "start")
        g_node = self._snap(g, "goal")
        grid = float(self._tree(g_node)[0][s_node])
        return (
            grid
            + float(np.linalg.norm(s - self._centers[s_node]))
            + float(np.linalg.norm(g - self._centers[g_node]))
        )

    # -- internals --------------------------------------------------------------------------

    @property
    def _label(self) -> str:
        return f"floor {self.name!r}" if self.name else "the floor"

    def _point(self, p: ArrayLike, what: str) -> FloatArray:
        arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if arr.shape != (2,) or not np.isfinite(arr).all():
            raise NoPathError(f"{what} must be a finite point (x, y), got {p!r}")
        return arr

    def _nodes_at(self, pts: FloatArray) -> IntArray:
        ny, nx = self.walkable.shape
        ij = np.floor((pts - self.origin) / self.resolution).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] >= 0) & (ij[:, 1] < ny)
        flat = np.where(ok, ij[:, 1] * nx + ij[:, 0], 0)
        return np.where(ok, self._node_of[flat], -1)

    def _snap(self, p: FloatArray, what: str) -> int:
        """Nearest walkable cell (node id) that ``p`` sees without crossing a wall."""
        where = f"{what} ({p[0]:.2f}, {p[1]:.2f})"
        if not points_in_polygon(p, self.outline)[0]:
            raise NoPathError(f"{where} is outside the outline of {self._label}")
        ny, nx = self.walkable.shape
        h = self.resolution
        reach = math.ceil(self.snap_tolerance / h) + 1
        ci, cj = np.floor((p - self.origin) / h).astype(np.int64).tolist()
        x0, x1 = max(ci - reach, 0), min(ci + reach + 1, nx)
        y0, y1 = max(cj - reach, 0), min(cj + reach + 1, ny)
        win = self._node_of.reshape(ny, nx)[y0:y1, x0:x1].ravel()
        nodes = win[win >= 0]
        if nodes.size:
            d = np.linalg.norm(self._centers[nodes] - p, axis=1)
            near = d <= self.snap_tolerance + 1e-9
            nodes, d = nodes[near], d[near]
        if nodes.size:
            n = nodes.size
            seen = ~segment_crossing_matrix(
                np.broadcast_to(p, (n, 2)), self._centers[nodes], self._snap_barriers
            ).any(axis=1)
            if seen.any():
                return int(nodes[seen][np.argmin(d[seen])])
        raise NoPathError(
            f"{where} is not within {self.snap_tolerance:g} m of a walkable cell of {self._label}"
        )

    def _build_graph(self) -> object:
        """Sparse (C, C) adjacency: 8-neighbours, diagonals only when both sides are free."""
        free = self.walkable
        ny, nx = free.shape
        node = self._node_of.reshape(ny, nx)
        h = self.resolution
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        wts: list[FloatArray] = []

        def link(a: IntArray, b: IntArray, mask: BoolArray, w: float) -> None:
            src, dst = a[mask], b[mask]
            rows.extend([src, dst])
            cols.extend([dst, src])
            wts.extend([np.full(src.size, w), np.full(src.size, w)])

        link(node[:, :-1], node[:, 1:], free[:, :-1] & free[:, 1:], h)
        link(node[:-1, :], node[1:, :], free[:-1, :] & free[1:, :], h)
        # No corner cutting: a diagonal step needs both orthogonal neighbours walkable.
        up = free[:-1, :-1] & free[1:, 1:] & free[:-1, 1:] & free[1:, :-1]
        link(node[:-1, :-1], node[1:, 1:], up, h * _SQRT2)
        link(node[:-1, 1:], node[1:, :-1], up, h * _SQRT2)
        n = self._centers.shape[0]
        if rows:
            r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(wts)
        else:
            r = c = np.zeros(0, dtype=np.int64)
            w = np.zeros(0)
        return coo_matrix((w, (r, c)), shape=(n, n)).tocsr()

    def _tree(self, goal_node: int) -> tuple[FloatArray, NDArray[np.int32]]:
        """Distances (C,) to ``goal_node`` and predecessors towards it; LRU-cached per goal."""
        hit = self._cache.get(goal_node)
        if hit is not None:
            self._cache.move_to_end(goal_node)
            return hit
        dist, pred = dijkstra(
            self._graph, directed=True, indices=goal_node, return_predecessors=True
        )
        entry = (np.asarray(dist, dtype=np.float64), np.asarray(pred, dtype=np.int32))
        self._cache[goal_node] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    def _clear(self, a: FloatArray, b: FloatArray, barriers: FloatArray | None = None) -> BoolArray:
        bar = self.barriers if barriers is None else barriers
        return np.asarray(segment_clearance(a, b, bar) >= self.clearance - 1e-9)

    def _smooth(self, pts: FloatArray) -> FloatArray:
        """String-pulling: from each kept waypoint jump to the farthest later waypoint whose
        straight segment keeps the full clearance; otherwise take the next grid step."""
        n = pts.shape[0]
        if n <= 2:
            return pts
        lo = pts.min(axis=0) - self.clearance
        hi = pts.max(axis=0) + self.clearance
        local = self.barriers[_bbox_overlap(self.barriers, lo, hi)]
        out = [0]
        i = 0
        while i < n - 1:
            j = i + 1
            cand = np.arange(i + 2, n)
            if cand.size:
                ok = self._clear(np.broadcast_to(pts[i], (cand.size, 2)), pts[cand], local)
                if ok.any():
                    j = int(cand[ok][-1])
            out.append(j)
            i = j
        return np.asarray(pts[np.asarray(out)], dtype=np.float64)

    def _cut_corners(self, pts: FloatArray) -> FloatArray:
        """Round each corner: replace it by two points on its two segments, as far from the
        corner as the joining segment stays clear (tried at _CUTS fractions of the shorter
        segment). Grid vertices sit on cell centres, so this brings the path close to the
        obstacle-hugging shortest path instead of bending twice in every doorway."""
        n = pts.shape[0]
        if n <= 2:
            return pts
        lo = pts.min(axis=0) - self.clearance
        hi = pts.max(axis=0) + self.clearance
        local = self.barriers[_bbox_overlap(self.barriers, lo, hi)]
        frac = np.linspace(1.0, 0.0, _CUTS + 1)[:-1, None]  # (_CUTS, 1), largest first
        out = [pts[0]]
        for i in range(1, n - 1):
            prev, v, nxt = out[-1], pts[i], pts[i + 1]
            back, ahead = prev - v, nxt - v
            reach = min(float(np.linalg.norm(back)), float(np.linalg.norm(ahead)))
            if reach <= 0:
                out.append(v)
                continue
            ua = back / np.linalg.norm(back)
            ub = ahead / np.linalg.norm(ahead)
            a = v + frac * reach * ua
            b = v + frac * reach * ub
            ok = self._clear(a, b, local)
            if ok.any():
                k = int(np.argmax(ok))
                out.extend([a[k], b[k]])
            else:
                out.append(v)
        out.append(pts[-1])
        res = np.vstack(out)
        keep = np.ones(res.shape[0], dtype=bool)
        keep[1:] = np.linalg.norm(np.diff(res, axis=0), axis=1) > 1e-9
        return np.asarray(res[keep], dtype=np.float64)


def _classify_tile(
    origin: FloatArray,
    h: float,
    clearance: float,
    span: tuple[int, int, int, int],
    outline: FloatArray,
    obstacles: list[FloatArray],
    barriers: FloatArray,
) -> BoolArray:
    """Walkable mask (y1-y0, x1-x0) of one tile of cells; see :meth:`NavGrid.build`."""
    x0, x1, y0, y1 = span
    xs = origin[0] + (np.arange(x0, x1) + 0.5) * h
    ys = origin[1] + (np.arange(y0, y1) + 0.5) * h
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    ok = points_in_polygon(pts, outline)
    for obs in obstacles:
        ok &= ~points_in_polygon(pts, obs)
    if ok.any():
        lo = np.array([xs[0], ys[0]]) - clearance
        hi = np.array([xs[-1], ys[-1]]) + clearance
        local = barriers[_bbox_overlap(barriers, lo, hi)]
        if local.shape[0]:
            idx = np.flatnonzero(ok)
            ok[idx] = segment_distance(pts[idx], local).min(axis=1) > clearance
    return ok.reshape(gy.shape)


# -- several floors ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Connector:
    """Stairs or an elevator: ``points`` maps each floor it serves to its (x, y) there."""

    name: str
    kind: ConnectorKind
    points: Mapping[int, tuple[float, float]]

    def __post_init__(self) -> None:
        if self.kind not in ("stairs", "elevator"):
            raise ConfigError(
                f"connector {self.name!r}: kind must be 'stairs' or 'elevator', got {self.kind!r}"
            )
        if len(self.points) < 2:
            raise ConfigError(f"connector {self.name!r} must serve at least two floors")


@dataclass(frozen=True, eq=False)
class Leg:
    """Walking on one floor along ``waypoints`` (P, 2), P >= 1."""

    floor: int
    waypoints: FloatArray

    @property
    def length(self) -> float:
        """Walked length in metres."""
        return float(np.linalg.norm(np.diff(self.waypoints, axis=0), axis=1).sum())


@dataclass(frozen=True, eq=False)
class Transfer:
    """A ride between floors: ``floors`` (F,) in travel order, including every floor the
    connector serves on the way, with the connector's ``points`` (F, 2) on each; ``wait_s``
    before moving (elevator), then ``travel_s`` spread over the floors passed."""

    connector: str
    kind: ConnectorKind
    floors: tuple[int, ...]
    points: FloatArray
    steps: tuple[int, ...]  # floors passed between consecutive entries of ``floors`` (F-1,)
    wait_s: float
    travel_s: float

    @property
    def duration(self) -> float:
        """Total seconds from arriving at the connector to leaving it on the last floor."""
        return self.wait_s + self.travel_s


@dataclass(frozen=True, eq=False)
class Route:
    """``legs[0]``, ``transfers[0]``, ``legs[1]``, …: len(transfers) == len(legs) - 1."""

    legs: tuple[Leg, ...]
    transfers: tuple[Transfer, ...]

    @property
    def length(self) -> float:
        """Walked metres (transfers excluded)."""
        return sum(leg.length for leg in self.legs)


class Building:
    """Floors (NavGrid per floor id) joined by connectors; plans routes across floors.

    Transfer times: stairs ``stairs_s_per_floor`` per floor passed; elevators wait
    ``elevator_wait_s`` then ``elevator_s_per_floor`` per floor. Floors are counted in the
    order of their ids (floor ids are ordered integers, e.g. -1, 0, 1, 2).
    """

    def __init__(
        self,
        floors: Mapping[int, NavGrid],
        connectors: Sequence[Connector] = (),
        *,
        stairs_s_per_floor: float = 18.0,
        elevator_wait_s: float = 30.0,
        elevator_s_per_floor: float = 4.0,
    ) -> None:
        if not floors:
            raise ConfigError("a building needs at least one floor")
        self.floors = dict(floors)
        self.connectors = tuple(connectors)
        self.stairs_s_per_floor = float(stairs_s_per_floor)
        self.elevator_wait_s = float(elevator_wait_s)
        self.elevator_s_per_floor = float(elevator_s_per_floor)
        self._rank = {f: i for i, f in enumerate(sorted(self.floors))}
        names = [c.name for c in self.connectors]
        if len(set(names)) != len(names):
            raise ConfigError(f"connector names must be unique, got {names}")
        # Nodes 2.. are (connector, floor) pairs; 0 and 1 are reserved for start and goal.
        self._nodes: list[tuple[int, int, FloatArray]] = []
        self._walk: FloatArray | None = None
        for ci, con in enumerate(self.connectors):
            for fl, xy in sorted(con.points.items()):
                if fl not in self.floors:
                    raise ConfigError(f"connector {con.name!r} serves unknown floor {fl}")
                p = np.asarray(xy, dtype=np.float64).reshape(-1)
                try:
                    self.floors[fl].travel_distance(p, p)
                except NoPathError as exc:
                    raise ConfigError(f"connector {con.name!r} on floor {fl}: {exc}") from exc
                self._nodes.append((ci, fl, p))

    def transfer_times(
        self, kind: ConnectorKind, from_floor: int, to_floor: int
    ) -> tuple[float, float]:
        """(wait_s, travel_s) of a ride of ``kind`` between two floors."""
        n = abs(self._rank[to_floor] - self._rank[from_floor])
        if kind == "stairs":
            return 0.0, n * self.stairs_s_per_floor
        return self.elevator_wait_s, n * self.elevator_s_per_floor

    def route(
        self,
        start_floor: int,
        start_xy: ArrayLike,
        goal_floor: int,
        goal_xy: ArrayLike,
        *,
        speed: float = 1.2,
        kinds: Sequence[ConnectorKind] = ("stairs", "elevator"),
    ) -> Route:
        """Fastest route at walking ``speed`` (m/s) using connectors of the allowed ``kinds``.

        Connectors are chosen on grid walking distance plus transfer time; each leg is then
        planned with :meth:`NavGrid.path`. Raises :class:`NoPathError` when no route exists.
        """
        for fl, what in ((start_floor, "start"), (goal_floor, "goal")):
            if fl not in self.floors:
                raise NoPathError(f"{what} floor {fl} is not in the building")
        if not speed > 0:
            raise NoPathError(f"walking speed must be > 0, got {speed}")
        start = np.asarray(start_xy, dtype=np.float64).reshape(-1)
        goal = np.asarray(goal_xy, dtype=np.float64).reshape(-1)
        nodes = [(-1, start_floor, start), (-2, goal_floor, goal), *self._nodes]
        n = len(nodes)
        metres = np.full((n, n), np.inf)
        metres[2:, 2:] = self._connector_distances()
        for k in range(n):
            _, fl, p = nodes[k]
            if k != 0 and fl == start_floor:
                metres[0, k] = self.floors[fl].travel_distance(start, p)
            if k != 1 and fl == goal_floor:
                metres[k, 1] = self.floors[fl].travel_distance(p, goal)
        cost = metres / speed
        # Transfer edges between the floors a connector serves.
        for i in range(2, n):
            for j in range(2, n):
                ci, fi, _ = nodes[i]
                cj, fj, _ = nodes[j]
                if ci == cj and fi != fj and self.connectors[ci].kind in kinds:
                    cost[i, j] = sum(self.transfer_times(self.connectors[ci].kind, fi, fj))
        finite = np.isfinite(cost)
        graph = coo_matrix((np.maximum(cost[finite], 1e-9), np.nonzero(finite)), shape=(n, n))
        dist, pred = dijkstra(graph.tocsr(), directed=True, indices=0, return_predecessors=True)
        if not math.isfinite(dist[1]):
            raise NoPathError(
                f"no route from floor {start_floor} ({start[0]:.2f}, {start[1]:.2f}) to floor "
                f"{goal_floor} ({goal[0]:.2f}, {goal[1]:.2f}) with connectors of kind {list(kinds)}"
            )
        seq = [1]
        while seq[-1] != 0:
            seq.append(int(pred[seq[-1]]))
        seq.reverse()
        return self._assemble([nodes[k] for k in seq])

    def _connector_distances(self) -> FloatArray:
        """Grid walking metres between connector points on the same floor (computed once)."""
        if self._walk is None:
            m = len(self._nodes)
            walk = np.full((m, m), np.inf)
            for i, (ci, fi, pi) in enumerate(self._nodes):
                for j, (cj, fj, pj) in enumerate(self._nodes):
                    if fi == fj and ci != cj:
                        walk[i, j] = self.floors[fi].travel_distance(pi, pj)
            self._walk = walk
        return self._walk

    def _assemble(self, stops: list[tuple[int, int, FloatArray]]) -> Route:
        """Turn the node sequence into legs and transfers, merging repeated walks/rides."""
        # Group consecutive stops into runs: a walk stays on one floor, a ride on one connector.
        legs: list[Leg] = []
        transfers: list[Transfer] = []
        walk = [stops[0]]
        k = 1
        while k < len(stops):
            c, fl, _ = stops[k]
            prev_c, prev_f, _ = walk[-1]
            if c >= 0 and c == prev_c and fl != prev_f:
                ride = [walk[-1]]
                while k < len(stops) and stops[k][0] == c:
                    ride.append(stops[k])
                    k += 1
                legs.append(self._leg(walk[0], walk[-1]))
                transfers.append(self._transfer(c, ride[0][1], ride[-1][1]))
                walk = [ride[-1]]
            else:
                walk.append(stops[k])
                k += 1
        legs.append(self._leg(walk[0], walk[-1]))
        return Route(legs=tuple(legs), transfers=tuple(transfers))

    def _leg(self, a: tuple[int, int, FloatArray], b: tuple[int, int, FloatArray]) -> Leg:
        return Leg(floor=a[1], waypoints=self.floors[a[1]].path(a[2], b[2]))

    def _transfer(self, ci: int, from_floor: int, to_floor: int) -> Transfer:
        con = self.connectors[ci]
        lo, hi = sorted((from_floor, to_floor))
        served = [f for f in sorted(con.points) if lo <= f <= hi]
        if from_floor > to_floor:
            served.reverse()
        wait, travel = self.transfer_times(con.kind, from_floor, to_floor)
        steps = tuple(abs(self._rank[b] - self._rank[a]) for a, b in itertools.pairwise(served))
        return Transfer(
            connector=con.name,
            kind=con.kind,
            floors=tuple(served),
            points=np.array([con.points[f] for f in served], dtype=np.float64),
            steps=steps,
            wait_s=wait,
            travel_s=travel,
        )
