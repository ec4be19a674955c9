"""The walkable area of each floor, rasterised, and the projection of positions onto it.

A tag is worn by a person (or lies in a cot): it is inside its floor's outline and not inside a
wall. Each floor is rasterised once into cells of ``resolution_m``: a cell is walkable when its
centre is inside the outline and farther than ``clearance_m`` from every wall segment and
outline edge (walls are zero-thickness segments in the site file, so the clearance stands for
the wall's half thickness plus a body's half width). A Euclidean distance transform of the
non-walkable cells (``scipy.ndimage.distance_transform_edt`` with ``return_indices``) gives,
for every cell, its nearest walkable cell; projecting K points is then one gather per floor:
a point in a walkable cell stays where it is, any other moves to the nearest point of the
nearest walkable cell. Pure and vectorised; no per-point Python loop. Used by the engine to
constrain the tracker's estimates (``rtls.track``, Simon 2010). Shapes: ``K`` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import distance_transform_edt

from rtls.errors import ConfigError, RtlsError
from rtls.geometry import points_in_polygon, polygon_segments, segment_distance
from rtls.site import Site

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

_TILE = 32  # cells per side of the tiles the raster is classified in
_MAX_CELLS = 20_000_000


class WalkableError(RtlsError):
    """Bad input to a projection (shapes, floor indices)."""


@dataclass(frozen=True)
class WalkableParams:
    """How the walkable area is rasterised; defaults in docs/locator.md."""

    resolution_m: float = 0.25  # raster cell side
    clearance_m: float = 0.2  # kept from walls and the outline: half a wall plus half a body

    def __post_init__(self) -> None:
        if not (np.isfinite(self.resolution_m) and self.resolution_m > 0):
            raise ConfigError(f"WalkableParams.resolution_m = {self.resolution_m!r} must be > 0")
        if not (np.isfinite(self.clearance_m) and self.clearance_m >= 0):
            raise ConfigError(f"WalkableParams.clearance_m = {self.clearance_m!r} must be >= 0")


@dataclass(frozen=True)
class FloorRaster:
    """One floor's raster: cell (j, i) has centre ``origin + ((i, j) + 0.5) * resolution``.

    walkable (ny, nx); nearest (ny * nx,) flat index of each cell's nearest walkable cell
    (itself when walkable).
    """

    origin: FloatArray
    resolution: float
    walkable: BoolArray
    nearest: NDArray[np.int32]

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.walkable.shape
        return int(ny), int(nx)

    def cells(self, xy: FloatArray) -> IntArray:
        """Flat index (K,) of the cell holding each point (K, 2), clipped onto the raster."""
        ny, nx = self.shape
        ij = np.floor((xy - self.origin) / self.resolution)
        i = np.clip(ij[:, 0], 0, nx - 1).astype(np.intp)
        j = np.clip(ij[:, 1], 0, ny - 1).astype(np.intp)
        return np.asarray(j * nx + i)


def rasterise(
    outline: ArrayLike, walls: ArrayLike, params: WalkableParams | None = None
) -> FloorRaster | None:
    """The walkable raster of one floor: ``outline`` (V, 2) polygon, ``walls`` (W, 4) segments
    ``x1, y1, x2, y2``. None when no cell is walkable (the clearance closes the whole floor)."""
    p = params or WalkableParams()
    poly = np.asarray(outline, dtype=np.float64).reshape(-1, 2)
    if poly.shape[0] < 3 or not np.isfinite(poly).all():
        raise ConfigError("a walkable area needs an outline of >= 3 finite vertices")
    segs = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(segs).all():
        raise ConfigError("wall segments must be finite")
    res = float(p.resolution_m)
    origin = poly.min(axis=0)
    nx, ny = (np.ceil((poly.max(axis=0) - origin) / res).astype(np.intp)).tolist()
    nx, ny = max(int(nx), 1), max(int(ny), 1)
    if nx * ny > _MAX_CELLS:
        raise ConfigError(f"walkable raster of {nx}x{ny} cells is too large: coarser resolution")
    barriers = np.vstack([segs, polygon_segments(poly)])
    lo_b = np.minimum(barriers[:, 0:2], barriers[:, 2:4]) - p.clearance_m
    hi_b = np.maximum(barriers[:, 0:2], barriers[:, 2:4]) + p.clearance_m
    walkable = np.zeros((ny, nx), dtype=bool)
    for y0 in range(0, ny, _TILE):  # tiles bound the (cell, segment) pairs to nearby walls
        for x0 in range(0, nx, _TILE):
            y1, x1 = min(y0 + _TILE, ny), min(x0 + _TILE, nx)
            gx, gy = np.meshgrid(origin[0] + (np.arange(x0, x1) + 0.5) * res,
                                 origin[1] + (np.arange(y0, y1) + 0.5) * res)  # fmt: skip
            centres = np.column_stack([gx.ravel(), gy.ravel()])
            ok = points_in_polygon(centres, poly)
            near = ((hi_b >= centres.min(axis=0)) & (lo_b <= centres.max(axis=0))).all(axis=1)
            idx = np.flatnonzero(ok)
            if p.clearance_m > 0 and near.any() and idx.size:
                d = segment_distance(centres[idx], barriers[near]).min(axis=1)
                ok[idx] = d > p.clearance_m
            walkable[y0:y1, x0:x1] = ok.reshape(y1 - y0, x1 - x0)
    if not walkable.any():
        return None
    _, (jn, in_) = distance_transform_edt(~walkable, return_indices=True)
    nearest = (jn * nx + in_).astype(np.int32).reshape(-1)
    return FloorRaster(origin, res, walkable, nearest)


class WalkableArea:
    """The walkable rasters of a site's floors (None for a floor without walkable cells)."""

    def __init__(self, floors: Sequence[FloorRaster | None]) -> None:
        self.floors: tuple[FloorRaster | None, ...] = tuple(floors)

    @classmethod
    def from_site(cls, site: Site, params: WalkableParams | None = None) -> WalkableArea:
        """Each floor's outline minus the clearance around its walls (``Site.walls_of``)."""
        rasters = []
        for fl in site.floors:
            segs, _ = site.walls_of(fl.id)
            rasters.append(rasterise(fl.outline, segs, params))
        return cls(rasters)

    def contains(self, xy: ArrayLike, floor: ArrayLike) -> BoolArray:
        """Which points (K, 2) on ``floor`` (K,) are walkable; False off any raster floor."""
        pts, fl = _points(xy, floor)
        out = np.zeros(pts.shape[0], dtype=bool)
        for f, sel in self._by_floor(pts, fl):
            r = self.floors[f]
            if r is None:
                continue
            inside = _on_raster(r, pts[sel])
            out[sel] = inside & r.walkable.reshape(-1)[r.cells(pts[sel])]
        return out

    def _by_floor(self, pts: FloatArray, fl: IntArray) -> list[tuple[int, IntArray]]:
        """(floor, rows) of the finite points on each floor with a raster that holds any: one
        pass per such floor, not per floor of the site (a group has many)."""
        ok = np.isfinite(pts).all(axis=1) & (fl >= 0) & (fl < len(self.floors))
        rows = np.flatnonzero(ok)
        rows = rows[np.argsort(fl[rows], kind="stable")]
        heads = np.flatnonzero(np.r_[True, np.diff(fl[rows]) != 0]) if len(rows) else rows
        return [(int(fl[part[0]]), part) for part in np.split(rows, heads[1:])] if len(rows) else []

    def project(self, xy: ArrayLike, floor: ArrayLike) -> FloatArray:
        """The nearest walkable point (K, 2) of each point (K, 2) on ``floor`` (K,).

        Walkable points are returned unchanged, as are points with a non-finite coordinate or
        a floor without raster (index -1, out of range, or nothing walkable). Any other point
        goes to the nearest point of the nearest walkable cell of its own cell: within half a
        cell of the exact Euclidean projection.
        """
        pts, fl = _points(xy, floor)
        out = pts.copy()
        for f, sel in self._by_floor(pts, fl):
            r = self.floors[f]
            if r is None:
                continue
            p = pts[sel]
            cell = r.cells(p)
            stay = r.walkable.reshape(-1)[cell] & _on_raster(r, p)
            target = r.nearest[cell].astype(np.intp)
            nx = r.shape[1]
            lo = r.origin + np.column_stack([target % nx, target // nx]) * r.resolution
            out[sel] = np.where(stay[:, None], p, np.clip(p, lo, lo + r.resolution))
        return out


def _on_raster(r: FloorRaster, p: FloatArray) -> BoolArray:
    ny, nx = r.shape
    rel = (p - r.origin) / r.resolution
    return np.asarray((rel >= 0).all(axis=1) & (rel[:, 0] < nx) & (rel[:, 1] < ny))


def _points(xy: ArrayLike, floor: ArrayLike) -> tuple[FloatArray, IntArray]:
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise WalkableError(f"points must have shape (K, 2), got {pts.shape}")
    fl = np.asarray(floor)
    if fl.dtype.kind not in "iu" or fl.ndim > 1 or (fl.ndim == 1 and fl.shape != pts.shape[:1]):
        raise WalkableError(f"floor must be integers of shape ({pts.shape[0]},) or a scalar")
    return pts, np.broadcast_to(fl, pts.shape[:1]).astype(np.intp)
