"""The zone index: every zone of every floor as padded vertex arrays, so one call answers
``contains`` / ``signed_distance`` for N tags against Z zones (shapes (N, Z)). docs/zones.md.

Split from :mod:`rtls.zones` (which re-exports it); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls import geometry
from rtls.errors import RtlsError
from rtls.site import Site, ZoneKind

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

_CHUNK_ELEMENTS = 1 << 17  # bound on n * Zb per kernel pass: slabs stay in cache
_DEPTH_GRID = 48  # grid points per axis to estimate a zone's depth (inscribed radius)


class ZoneError(RtlsError, ValueError):
    """Bad arguments to a zone function (shapes, floor indices, time going backwards)."""


# -- the index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """Zones of one floor with at most ``Kb`` vertices, padded by repeating the last vertex."""

    floor: int
    columns: NDArray[np.intp]  # (Zb,) columns of these zones in the index
    ax: FloatArray  # (Zb, Kb) edge start x
    ay: FloatArray  # (Zb, Kb) edge start y
    bx: FloatArray  # (Zb, Kb) edge end x
    by: FloatArray  # (Zb, Kb) edge end y
    ex: FloatArray  # (Zb, Kb) bx - ax
    ey: FloatArray  # (Zb, Kb) by - ay
    ey_safe: FloatArray  # (Zb, Kb) ey, 1 where ey == 0 (as geometry.points_in_polygon)
    inv_len2: FloatArray  # (Zb, Kb) 1 / |edge|^2 (0 for padding edges of length 0)

    @classmethod
    def build(cls, floor: int, columns: list[int], polygons: list[FloatArray]) -> _Block:
        kb = max(len(p) for p in polygons)
        padded = np.stack(
            [np.vstack([p, np.repeat(p[-1:], kb - len(p), axis=0)]) for p in polygons]
        )
        ax, ay = padded[:, :, 0], padded[:, :, 1]
        bx, by = np.roll(ax, -1, axis=1), np.roll(ay, -1, axis=1)
        ex, ey = bx - ax, by - ay
        len2 = ex * ex + ey * ey
        inv_len2 = np.where(len2 > 0, 1.0 / np.where(len2 > 0, len2, 1.0), 0.0)
        return cls(
            floor,
            np.asarray(columns, dtype=np.intp),
            ax,
            ay,
            bx,
            by,
            ex,
            ey,
            np.where(ey == 0, 1.0, ey),
            inv_len2,
        )

    def query(self, px: FloatArray, py: FloatArray, signed: bool) -> FloatArray | BoolArray:
        """Points (n,) against the block's zones: inside (n, Zb) bool, or when ``signed`` the
        signed distance (n, Zb) to the boundary (negative inside).

        The inside test is the even-odd rule with the same arithmetic, in the same order, as
        ``geometry.points_in_polygon``, so both agree exactly. One pass per vertex index over
        (n, Zb) slabs: a handful of passes, each cache-sized."""
        x, y = px[:, None], py[:, None]
        shape = (len(px), len(self.columns))
        odd = np.zeros(shape, dtype=bool)
        best = np.full(shape, np.inf)  # squared distance to the nearest edge so far
        for k in range(self.ax.shape[1]):
            ax, ay, ex, ey = self.ax[:, k], self.ay[:, k], self.ex[:, k], self.ey[:, k]
            ry = y - ay  # (n, Zb)
            straddles = (ay > y) != (self.by[:, k] > y)
            odd ^= straddles & (x < ax + ry * ex / self.ey_safe[:, k])
            if not signed:
                continue
            rx = x - ax
            t = rx * ex
            t += ry * ey
            t *= self.inv_len2[:, k]
            np.maximum(t, 0.0, out=t)
            np.minimum(t, 1.0, out=t)
            rx -= t * ex
            ry -= t * ey
            rx *= rx
            ry *= ry
            rx += ry
            np.minimum(best, rx, out=best)
        if not signed:
            return odd
        dist: FloatArray = np.sqrt(best)
        np.negative(dist, out=dist, where=odd)
        return dist


def _polygon_depth(polygon: FloatArray) -> float:
    """Largest distance from the boundary reached inside ``polygon`` (K, 2), from a grid.

    A grid estimate can only fall short of the true inscribed radius (never above it)."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], _DEPTH_GRID), np.linspace(lo[1], hi[1], _DEPTH_GRID)
    )
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    inside = geometry.points_in_polygon(pts, polygon)
    dist = geometry.segment_distance(pts[inside], geometry.polygon_segments(polygon))
    return float(dist.min(axis=1).max()) if dist.size else 0.0


def check_points(xy: ArrayLike, floor: ArrayLike) -> tuple[FloatArray, IntArray]:
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ZoneError(f"xy must have shape (N, 2), got {pts.shape}")
    fl = np.asarray(floor)
    if fl.shape != (pts.shape[0],):
        raise ZoneError(f"floor must have shape ({pts.shape[0]},) like xy, got {fl.shape}")
    if fl.size and not np.issubdtype(fl.dtype, np.integer):
        raise ZoneError(f"floor must hold integer floor indices, got dtype {fl.dtype}")
    return pts, fl.astype(np.int64, copy=False)


class ZoneIndex:
    """All zones of a site (Z columns, site-file order) prepared for vectorised queries.

    Build with :meth:`from_site` (or :meth:`from_polygons`). ``floor`` arguments are indices
    into ``site.floors``; a negative floor means "no floor known" and matches no zone.
    """

    def __init__(
        self,
        ids: tuple[str, ...],
        kinds: tuple[ZoneKind, ...],
        floors: IntArray,
        polygons: list[FloatArray],
        n_floors: int,
    ) -> None:
        self.ids = ids
        self.kinds = kinds
        self.floor = floors  # (Z,) floor index of each zone
        self.n_floors = n_floors
        self.polygons = polygons
        self.is_exit = np.array([k is ZoneKind.EXIT for k in kinds], dtype=bool)  # (Z,)
        self.area = np.array([abs(geometry.polygon_area(p)) for p in polygons])  # (Z,) m²
        self.depth = np.array([_polygon_depth(p) for p in polygons])  # (Z,) m, see docs
        self._column = {zid: i for i, zid in enumerate(ids)}
        groups: dict[tuple[int, int], list[int]] = {}
        for z, poly in enumerate(polygons):
            bucket = max(4, 1 << (len(poly) - 1).bit_length())  # 4, 8, 16, ... vertices
            groups.setdefault((int(floors[z]), bucket), []).append(z)
        self._blocks = tuple(
            _Block.build(f, cols, [polygons[c] for c in cols])
            for (f, _), cols in sorted(groups.items())
        )

    @classmethod
    def from_site(cls, site: Site) -> ZoneIndex:
        """Index every zone of ``site``; column z is ``site.zones[z]``."""
        zones = site.zones
        return cls(
            tuple(z.id for z in zones),
            tuple(z.kind for z in zones),
            np.array([site.floor_index[z.floor] for z in zones], dtype=np.int64),
            [np.asarray(z.polygon, dtype=np.float64) for z in zones],
            len(site.floors),
        )

    @classmethod
    def from_polygons(
        cls,
        polygons: Sequence[ArrayLike],
        floors: ArrayLike,
        *,
        ids: Sequence[str] | None = None,
        kinds: Sequence[ZoneKind] | None = None,
        n_floors: int | None = None,
    ) -> ZoneIndex:
        """Index plain polygons (each (K, 2), K >= 3) on the given floors (Z,); ids default to
        ``Z0, Z1, ...`` and kinds to ``room``."""
        polys = [geometry.as_points(p) for p in polygons]
        for i, p in enumerate(polys):
            if len(p) < 3:
                raise ZoneError(f"polygon {i} has {len(p)} vertices, needs at least 3")
        fl = np.asarray(floors, dtype=np.int64).reshape(-1)
        if fl.shape != (len(polys),) or (fl < 0).any():
            raise ZoneError("floors must give one non-negative floor index per polygon")
        for name, seq in (("ids", ids), ("kinds", kinds)):
            if seq is not None and len(seq) != len(polys):
                raise ZoneError(f"{name} must have one entry per polygon ({len(polys)})")
        nf = n_floors if n_floors is not None else (int(fl.max()) + 1 if len(fl) else 0)
        if len(fl) and fl.max() >= nf:
            raise ZoneError(f"a polygon's floor index is not below n_floors={nf}")
        return cls(
            tuple(ids) if ids is not None else tuple(f"Z{i}" for i in range(len(polys))),
            tuple(kinds) if kinds is not None else (ZoneKind.ROOM,) * len(polys),
            fl,
            polys,
            nf,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, zone_id: str) -> int:
        """Column of a zone id; raises ZoneError naming the id when unknown."""
        try:
            return self._column[zone_id]
        except KeyError:
            raise ZoneError(f"zone {zone_id!r} is not defined") from None

    def _run(self, xy: ArrayLike, floor: ArrayLike, signed: bool) -> FloatArray | BoolArray:
        pts, fl = check_points(xy, floor)
        if fl.size and fl.max() >= self.n_floors:
            raise ZoneError(f"floor index {int(fl.max())} out of range (site has {self.n_floors})")
        n = len(pts)
        out: FloatArray | BoolArray
        out = np.full((n, len(self)), np.inf) if signed else np.zeros((n, len(self)), dtype=bool)
        for block in self._blocks:
            rows = np.flatnonzero(fl == block.floor)
            step = max(1, _CHUNK_ELEMENTS // len(block.columns))
            for start in range(0, len(rows), step):
                r = rows[start : start + step]
                out[r[:, None], block.columns[None, :]] = block.query(pts[r, 0], pts[r, 1], signed)
        return out

    def contains(self, xy: ArrayLike, floor: ArrayLike) -> BoolArray:
        """(N, Z): point xy[i] (N, 2) on floor[i] (N,) lies inside zone z (even-odd rule).

        Equal to ``geometry.points_in_polygon`` per zone; zones of other floors are False, and
        so are non-finite points. A point exactly on an edge may fall either side."""
        return np.asarray(self._run(xy, floor, signed=False), dtype=bool)

    def signed_distance(self, xy: ArrayLike, floor: ArrayLike) -> FloatArray:
        """(N, Z): metres from xy[i] to zone z's boundary, negative inside, positive outside.

        Zones of other floors (and negative floors) give +inf; non-finite points give NaN."""
        return np.asarray(self._run(xy, floor, signed=True), dtype=np.float64)

    def smallest(self, inside: ArrayLike) -> IntArray:
        """(N,) column of the smallest-area zone each row of ``inside`` (N, Z) holds, -1 if none.

        Gives the one zone to show or write for a tag (a room rather than its ward)."""
        mask = np.asarray(inside, dtype=bool)
        if mask.ndim != 2 or mask.shape[1] != len(self):
            raise ZoneError(f"inside must have shape (N, {len(self)}), got {mask.shape}")
        if not len(self):
            return np.full(mask.shape[0], -1, dtype=np.int64)
        best = np.argmin(np.where(mask, self.area[None, :], np.inf), axis=1)
        return np.where(mask.any(axis=1), best, -1).astype(np.int64)

    def smallest_of(self, rows: ArrayLike, zones: ArrayLike, n: int) -> IntArray:
        """(n,) as :meth:`smallest`, from (row, zone) pairs (P,) instead of an (n, Z) mask:
        the smallest-area zone paired with each row 0..n-1, -1 if none."""
        r = np.asarray(rows, dtype=np.intp).reshape(-1)
        z = np.asarray(zones, dtype=np.intp).reshape(-1)
        out = np.full(n, -1, dtype=np.int64)
        if len(r):
            order = np.lexsort((z, self.area[z], r))  # each row's smallest (then lowest) first
            r, z = r[order], z[order]
            head = np.r_[True, r[1:] != r[:-1]]
            out[r[head]] = z[head]
        return out
