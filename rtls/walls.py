"""Wall attenuation on a floor plan: the multi-wall part of the indoor propagation model.

The loss of a link is the summed loss of the walls its 2-D projection crosses (the multi-wall
model of COST 231, after Motley and Keenan). Per gateway a raster over its floor holds that sum
for every cell, built once in O(W ny + nx ny); lookups are then one gather for all tags and
gateways. Used by the radio simulator (``gateways.radio``) and by the locator, which knows the
site's walls from the site file. Coordinates are metres; ``W`` walls, ``G`` gateways.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import ConfigError, RtlsError
from rtls.geometry import segment_crossing_matrix
from rtls.site import Site

Interpolation = Literal["nearest", "bilinear"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_PAIR_BLOCK = 2_000_000  # exact wall casts: at most this many (point, wall) pairs at once


@dataclass(frozen=True)
class FloorWalls:
    """The walls of one floor: ``segments`` (W, 4) rows ``x1, y1, x2, y2``; ``loss_db`` (W,).

    ``bounds`` ``(xmin, ymin, xmax, ymax)`` is the area the wall-loss rasters cover; by default
    the walls' and gateways' bounding box plus ``margin_m``. Outside it the edge value is used.
    """

    segments: FloatArray
    loss_db: FloatArray
    bounds: tuple[float, float, float, float] | None = None
    margin_m: float = 2.0

    def __post_init__(self) -> None:
        seg = np.asarray(self.segments, dtype=np.float64)
        if seg.size == 0:
            seg = seg.reshape(0, 4)
        loss = np.asarray(self.loss_db, dtype=np.float64).reshape(-1)
        if seg.ndim != 2 or seg.shape[1] != 4:
            raise ConfigError(f"wall segments must have shape (W, 4), got {seg.shape}")
        if loss.shape != (seg.shape[0],):
            raise ConfigError(f"wall loss_db must have shape ({seg.shape[0]},), got {loss.shape}")
        if not (np.isfinite(seg).all() and np.isfinite(loss).all()) or (loss < 0).any():
            raise ConfigError("wall segments and losses must be finite, losses >= 0 dB")
        if self.bounds is not None:
            b = tuple(float(v) for v in self.bounds)
            if len(b) != 4 or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
                raise ConfigError(f"floor bounds {self.bounds!r} must be (xmin, ymin, xmax, ymax)")
            object.__setattr__(self, "bounds", b)
        if not (np.isfinite(self.margin_m) and self.margin_m >= 0):
            raise ConfigError(f"floor margin_m = {self.margin_m!r} must be >= 0")
        object.__setattr__(self, "segments", seg)
        object.__setattr__(self, "loss_db", loss)


def points3(name: str, value: ArrayLike, exc: type[RtlsError]) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise exc(f"{name} must have shape (N, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise exc(f"{name} contains NaN or infinite values")
    return arr


def int_vector(name: str, value: ArrayLike, n: int, exc: type[RtlsError]) -> IntArray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise exc(f"{name} must have shape ({n},) or be a scalar, got {arr.shape}")
    if arr.dtype.kind not in "iu":
        as_float = arr.astype(np.float64)
        if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()):
            raise exc(f"{name} must hold integers")
    return arr.astype(np.intp)


def wall_loss_raster(
    source_xy: ArrayLike,
    segments: ArrayLike,
    loss_db: ArrayLike,
    origin: ArrayLike,
    shape: tuple[int, int],
    resolution_m: float,
) -> FloatArray:
    """Summed loss (ny, nx) of the walls crossed by the segment source -> each cell centre.

    source_xy (2,); segments (W, 4) ``x1, y1, x2, y2``; loss_db (W,); origin (2,) lower-left
    corner; shape (nx, ny); cell (j, i) has centre ``origin + ((i, j) + 0.5) * resolution_m``.
    Same strict crossing rule as ``rtls.geometry.segment_crossing_matrix``, in O(W ny + nx ny):
    a wall's shadow (beyond its line, inside the wedge the wall subtends at the source) is convex,
    so on each cell row it is one x-interval, accumulated as a difference array.
    """
    src = np.asarray(source_xy, dtype=np.float64).reshape(2)
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 4)
    loss = np.asarray(loss_db, dtype=np.float64).reshape(-1)
    x0, y0 = (float(v) for v in np.asarray(origin, dtype=np.float64).reshape(2))
    nx, ny = shape
    ys = y0 + (np.arange(ny) + 0.5) * resolution_m  # (ny,)
    ux, uy = seg[:, 0:1] - src[0], seg[:, 1:2] - src[1]  # wall ends relative to the source
    vx, vy = seg[:, 2:3] - src[0], seg[:, 3:4] - src[1]
    wedge = ux * vy - uy * vx  # (W, 1): 0 when the source is on the wall's line
    side = np.sign(wedge)
    # Half-planes alpha + beta * x > 0 at each row y (cell coordinates relative to the source):
    # inside the wedge (two) and beyond the wall's line (one).
    ry = ys[None, :] - src[1]  # (1, ny)
    a1, b1 = side * (-uy * -src[0] + ux * ry), side * -uy  # side * cross(u, c)
    a2, b2 = side * (vy * -src[0] - vx * ry), side * vy  # side * cross(c, v)
    # beyond the line uv: side * cross(v - u, c - u) < 0, c - u = (x - src_x - ux, ry - uy)
    ex, ey = vx - ux, vy - uy
    a3 = side * -(ex * (ry - uy) - ey * (-src[0] - ux))
    b3 = side * ey
    lo = np.full((seg.shape[0], ny), -np.inf)
    hi = np.full((seg.shape[0], ny), np.inf)
    empty = np.broadcast_to(wedge == 0, lo.shape).copy()
    for alpha, beta in ((a1, b1), (a2, b2), (a3, b3)):
        alpha, beta = np.broadcast_arrays(alpha, beta)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -alpha / beta
        lo = np.where(beta > 0, np.maximum(lo, t), lo)
        hi = np.where(beta < 0, np.minimum(hi, t), hi)
        empty |= (beta == 0) & (alpha <= 0)
    # First cell centre strictly above lo, first at or above hi (exclusive end).
    start = np.floor(np.clip((lo - x0) / resolution_m - 0.5, -1.0, nx)).astype(np.intp) + 1
    stop = np.ceil(np.clip((hi - x0) / resolution_m - 0.5, 0.0, nx)).astype(np.intp)
    keep = ~empty & (start < stop)
    rows = np.broadcast_to(np.arange(ny), lo.shape)[keep]
    w = np.broadcast_to(loss[:, None], lo.shape)[keep]
    size = ny * (nx + 1)
    diff = np.bincount(rows * (nx + 1) + start[keep], w, size) - np.bincount(
        rows * (nx + 1) + stop[keep], w, size
    )
    return np.asarray(np.cumsum(diff.reshape(ny, nx + 1), axis=1)[:, :nx])


@dataclass(frozen=True)
class FloorGrid:
    """The raster grid of one floor: cell (j, i) has centre ``origin + ((i, j) + 0.5) * res``.

    ``table`` (ny * nx, G_f) holds, row-major over cells, the loss for each of the floor's
    gateways ``gateways`` (G_f,); one row per cell keeps a tag's lookups contiguous in memory.
    """

    origin: FloatArray  # (2,)
    nx: int
    ny: int
    gateways: IntArray  # (G_f,)
    table: NDArray[np.float32]  # (ny * nx, G_f), float32 to halve lookup memory traffic


class WallLossMaps:
    """Per-gateway wall-loss rasters over the gateway's floor, built once.

    Each cell holds the summed loss of the walls crossed by the 2-D segment from the gateway to
    the cell centre; all gateways of a floor share that floor's grid. :meth:`lookup` reads the
    cell containing the tag ("nearest", default: exact more than ~0.36 m from walls and shadow
    edges at 0.5 m cells) or interpolates between cell centres ("bilinear": smooth, exact beyond
    ~0.71 m), for links on any floor (cross-floor links use the tag's (x, y) on the gateway's floor
    plan). :meth:`exact` casts the true segments, for tests and reference.
    """

    def __init__(
        self,
        gateway_xyz: ArrayLike,
        gateway_floor: ArrayLike,
        walls: Mapping[int, FloorWalls],
        resolution_m: float = 0.5,
        interpolation: Interpolation = "nearest",
    ) -> None:
        gxyz = points3("gateway_xyz", gateway_xyz, ConfigError)
        g = gxyz.shape[0]
        self.gateway_xy: FloatArray = gxyz[:, :2].copy()
        self.gateway_floor: IntArray = int_vector("gateway_floor", gateway_floor, g, ConfigError)
        if not (np.isfinite(resolution_m) and resolution_m > 0):
            raise ConfigError(f"raster resolution {resolution_m!r} must be > 0")
        if interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"interpolation {interpolation!r} must be 'nearest' or 'bilinear'")
        self.bilinear = interpolation == "bilinear"
        for key, item in walls.items():
            if not isinstance(item, FloorWalls):
                raise ConfigError(f"walls[{key!r}] must be a FloorWalls, got {type(item).__name__}")
        self.walls: dict[int, FloorWalls] = {int(k): v for k, v in walls.items()}
        self.resolution_m = res = float(resolution_m)
        self.grids: dict[int, FloorGrid] = {}  # floors with gateways and walls only
        for floor in np.unique(self.gateway_floor).tolist():
            fw = self.walls.get(floor)
            if fw is None or fw.segments.shape[0] == 0:
                continue
            gws = np.flatnonzero(self.gateway_floor == floor)
            xmin, ymin, xmax, ymax = self._bounds(fw, gws)
            nx = max(1, int(np.ceil((xmax - xmin) / res)))
            ny = max(1, int(np.ceil((ymax - ymin) / res)))
            origin = np.array([xmin, ymin])
            table = np.empty((ny * nx, gws.shape[0]), np.float32)
            for col, gi in enumerate(gws):
                grid = wall_loss_raster(
                    self.gateway_xy[gi], fw.segments, fw.loss_db, origin, (nx, ny), res
                )
                table[:, col] = grid.reshape(-1)
            self.grids[floor] = FloorGrid(origin, nx, ny, gws, table)

    def _bounds(self, fw: FloorWalls, gws: IntArray) -> tuple[float, float, float, float]:
        if fw.bounds is not None:
            return fw.bounds
        pts = np.vstack([fw.segments[:, :2], fw.segments[:, 2:], self.gateway_xy[gws]])
        lo = pts.min(axis=0) - fw.margin_m
        hi = pts.max(axis=0) + fw.margin_m
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def empty(self) -> bool:
        """True when no gateway's floor has walls (every lookup is zero)."""
        return not self.grids

    def raster(self, gateway: int) -> FloatArray:
        """One gateway's raster as (ny, nx) dB, row 0 at the lowest y (for plots and checks)."""
        grid = self.grids.get(int(self.gateway_floor[gateway]))
        if grid is None:
            return np.zeros((1, 1))
        col = int(np.flatnonzero(grid.gateways == gateway)[0])
        return grid.table[:, col].reshape(grid.ny, grid.nx).astype(np.float64)

    def lookup(
        self,
        tag_xy: ArrayLike,
        dtype: type[np.floating[Any]] = np.float64,
        gateways: ArrayLike | None = None,
    ) -> NDArray[np.floating[Any]]:
        """Wall loss (A, G) at tag positions (A, 2): the containing cell's value, or bilinear
        between cell centres; positions off the grid take the nearest edge value; a position
        that is not finite (no estimate) gets no wall loss (0 dB), never an index error.
        ``gateways`` (G_b,) distinct indices: only those columns, (A, G_b), and only their
        floors' rasters are read (a building's, on a site of many)."""
        tag_xy = np.asarray(tag_xy, dtype=np.float64).reshape(-1, 2)
        n_gw = self.gateway_xy.shape[0]
        column = np.arange(n_gw)  # output column of each gateway (-1: not asked for)
        if gateways is not None:
            gws = np.asarray(gateways, dtype=np.intp).reshape(-1)
            column = np.full(n_gw, -1, dtype=np.intp)
            column[gws] = np.arange(len(gws))
        out = np.zeros((tag_xy.shape[0], int(column.max(initial=-1)) + 1), dtype)
        finite = np.isfinite(tag_xy).all(axis=1)
        if not finite.all():
            out[finite] = self.lookup(tag_xy[finite], dtype, gateways)
            return out
        res = self.resolution_m
        for grid in self.grids.values():  # one pass per floor, vectorised over tags and gateways
            cols = column[grid.gateways]
            wanted = cols >= 0
            if not wanted.any():
                continue
            u = (tag_xy[:, 0] - grid.origin[0]) / res
            v = (tag_xy[:, 1] - grid.origin[1]) / res
            if not self.bilinear:  # the cell that contains the point (the nearest centre)
                i = np.clip(u, 0, grid.nx - 1).astype(np.intp)
                j = np.clip(v, 0, grid.ny - 1).astype(np.intp)
                out[:, cols[wanted]] = grid.table[j * grid.nx + i][:, wanted]
                continue
            u = np.clip(u - 0.5, 0.0, grid.nx - 1)  # continuous index between cell centres
            v = np.clip(v - 0.5, 0.0, grid.ny - 1)
            i0 = np.minimum(u.astype(np.intp), max(grid.nx - 2, 0))
            j0 = np.minimum(v.astype(np.intp), max(grid.ny - 2, 0))
            fu = (u - i0).astype(np.float32)[:, None]
            fv = (v - j0).astype(np.float32)[:, None]
            c00 = j0 * grid.nx + i0
            di = 1 if grid.nx > 1 else 0
            dj = grid.nx if grid.ny > 1 else 0
            t = grid.table
            bottom = t[c00]
            bottom += fu * (t[c00 + di] - bottom)
            top = t[c00 + dj]
            top += fu * (t[c00 + dj + di] - top)
            bottom += fv * (top - bottom)
            out[:, cols[wanted]] = bottom[:, wanted]
        return out

    def exact(self, tag_xy: ArrayLike) -> FloatArray:
        """Exact wall loss (A, G) of the segment gateway -> tag (x, y) on the gateway's floor."""
        txy = np.asarray(tag_xy, dtype=np.float64).reshape(-1, 2)
        out = np.zeros((txy.shape[0], self.gateway_xy.shape[0]))
        for gi in range(self.gateway_xy.shape[0]):
            fw = self.walls.get(int(self.gateway_floor[gi]))
            if fw is None or fw.segments.shape[0] == 0:
                continue
            step = max(1, _PAIR_BLOCK // fw.segments.shape[0])  # bound the (N, W) temporaries
            for s in range(0, txy.shape[0], step):
                block = txy[s : s + step]
                starts = np.broadcast_to(self.gateway_xy[gi], block.shape)
                crossed = segment_crossing_matrix(starts, block, fw.segments)
                out[s : s + step, gi] = crossed @ fw.loss_db
        return out


def site_walls(site: Site) -> dict[int, FloorWalls]:
    """The walls of every floor of ``site`` (floor index -> FloorWalls over its outline)."""
    walls = {}
    for fi, fl in enumerate(site.floors):
        segs, loss = site.walls_of(fl.id)
        outline = np.asarray(fl.outline, dtype=np.float64)
        lo, hi = outline.min(axis=0), outline.max(axis=0)
        walls[fi] = FloorWalls(segs, loss, bounds=(lo[0], lo[1], hi[0], hi[1]))
    return walls
