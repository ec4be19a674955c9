"""Zones: which tags are in which zones, with hysteresis and dwell; door choke-point reads.

Three parts (docs/zones.md):

- :class:`ZoneIndex` holds every zone of every floor as padded vertex arrays, so one call answers
  ``contains`` / ``signed_distance`` for N tags against Z zones (shapes (N, Z)).
- :class:`ZoneMembership` is a pure state machine over (N, Z) arrays: a tag enters a zone after
  being inside by ``margin_in`` for the zone's entry dwell, and leaves after being outside by
  ``margin_out`` for its leave dwell. Unknown positions freeze membership.
- :func:`place_at_door` turns choke-point reads into positions at once (independent of RSSI);
  :meth:`ZoneMembership.enter_at_door` puts a tag read at an exit door into that door's exit
  zone with no dwell.

Everything takes ``now`` / ``t`` as arguments; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls import geometry
from rtls.errors import ConfigError, RtlsError
from rtls.site import Site, ZoneKind

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

TRANSITION_DTYPE = np.dtype([("tag", "<i4"), ("zone", "<i4"), ("t", "<f8")])
"""One membership change: ``tag`` index into ``site.tags``, ``zone`` column of the ZoneIndex,
``t`` when the qualifying streak began (the best estimate of the crossing), Unix s."""

_CHUNK_ELEMENTS = 1 << 17  # bound on n * Zb per kernel pass: slabs stay in cache
_TIME_EPS = 1e-9
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


def _check_points(xy: ArrayLike, floor: ArrayLike) -> tuple[FloatArray, IntArray]:
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
        pts, fl = _check_points(xy, floor)
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


# -- membership with hysteresis and dwell ------------------------------------------------------


@dataclass(frozen=True)
class Hysteresis:
    """Membership parameters (metres, seconds); see docs/zones.md.

    ``margin_in`` / ``margin_out``: how far inside / outside the boundary a position must be to
    count towards entering / leaving. ``dwell_s``: how long that must hold, for zones without
    their own ``dwell_s``. ``uncertainty_gain`` k and ``max_widening_m`` w: with a position
    uncertainty r, both margins grow by ``min(k * r, w)``. The entry margin never exceeds half
    the zone's depth (``ZoneIndex.depth``), so a tag well inside a small zone always enters."""

    margin_in: float = 0.5
    margin_out: float = 0.5
    dwell_s: float = 1.0
    uncertainty_gain: float = 0.0
    max_widening_m: float = 2.0

    def __post_init__(self) -> None:
        for name in ("margin_in", "margin_out", "dwell_s", "uncertainty_gain", "max_widening_m"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ConfigError(f"zone hysteresis {name} must be finite and >= 0, got {value}")


def zone_dwells(site: Site, default_dwell_s: float) -> tuple[FloatArray, FloatArray]:
    """Per-zone (entry, leave) dwell in seconds, each (Z,), from the site's zone rules.

    Every zone: ``rules.dwell_s`` if set, else ``default_dwell_s``, for both. Exit zones enter
    after ``rules.exit_dwell_s`` if set, else the site's ``[rules.infant] exit_dwell_s``."""
    enter, leave = [], []
    for z in site.zones:
        dwell = float(z.rules.get("dwell_s", default_dwell_s))
        leave.append(dwell)
        if z.kind is ZoneKind.EXIT:
            enter.append(float(z.rules.get("exit_dwell_s", site.rules.infant.exit_dwell_s)))
        else:
            enter.append(dwell)
        for key in ("dwell_s", "exit_dwell_s"):
            value = z.rules.get(key)
            if value is not None and not 0.0 <= value <= 3600.0:
                raise ConfigError(f"zone {z.id!r}: rules.{key} = {value} is not in 0..3600 s")
    return np.array(enter, dtype=np.float64), np.array(leave, dtype=np.float64)


def _transitions(tag: IntArray, zone: IntArray, t: FloatArray) -> NDArray[np.void]:
    out = np.empty(len(tag), dtype=TRANSITION_DTYPE)
    out["tag"], out["zone"], out["t"] = tag, zone, t
    return out[np.lexsort((out["zone"], out["tag"], out["t"]))]


@dataclass(frozen=True)
class Transitions:
    """What one update changed. ``entered`` and ``left`` are TRANSITION_DTYPE arrays sorted by
    (t, tag, zone); ``unknown`` (N,) marks tags whose membership is frozen (position unknown)."""

    entered: NDArray[np.void]
    left: NDArray[np.void]
    unknown: BoolArray


class ZoneMembership:
    """Zone membership of ``n_tags`` tags in the zones of ``index``; a pure state machine.

    ``enter_dwell_s`` / ``leave_dwell_s``: (Z,) seconds, or one number for all zones. Build from
    a site with :meth:`from_site`. State: ``inside`` (N, Z) bool, ``known`` (N,) bool,
    ``unknown_since`` (N,) (NaN while known). Read these, never write them.
    """

    def __init__(
        self,
        index: ZoneIndex,
        n_tags: int,
        *,
        hysteresis: Hysteresis | None = None,
        enter_dwell_s: ArrayLike | None = None,
        leave_dwell_s: ArrayLike | None = None,
    ) -> None:
        self.index = index
        self.hysteresis = h = hysteresis or Hysteresis()
        z = len(index)
        self.enter_dwell = self._dwell(enter_dwell_s, h.dwell_s, z, "enter_dwell_s")
        self.leave_dwell = self._dwell(leave_dwell_s, h.dwell_s, z, "leave_dwell_s")
        self._half_depth = 0.5 * index.depth  # (Z,) cap on the entry margin
        self._enter_at = self.enter_dwell - _TIME_EPS  # (Z,) run length that enters
        self._leave_at = self.leave_dwell - _TIME_EPS
        self.inside = np.zeros((n_tags, z), dtype=bool)
        self._since = np.full((n_tags, z), np.nan)  # start of the streak towards a change
        self._placed = np.zeros(n_tags, dtype=bool)  # has had a first position or door read
        self.known = np.zeros(n_tags, dtype=bool)
        self.unknown_since = np.full(n_tags, np.nan)
        self.last_now = -np.inf

    @staticmethod
    def _dwell(value: ArrayLike | None, default: float, z: int, name: str) -> FloatArray:
        try:
            arr = np.broadcast_to(np.asarray(default if value is None else value, float), (z,))
        except ValueError:
            raise ConfigError(f"{name} must be one number or one per zone ({z})") from None
        arr = arr.copy()
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ConfigError(f"{name} must be finite and >= 0 for every zone")
        return arr

    @classmethod
    def from_site(
        cls, site: Site, index: ZoneIndex | None = None, hysteresis: Hysteresis | None = None
    ) -> ZoneMembership:
        """Membership for every tag of ``site`` with the site's per-zone dwell overrides."""
        h = hysteresis or Hysteresis()
        enter, leave = zone_dwells(site, h.dwell_s)
        return cls(
            index if index is not None else ZoneIndex.from_site(site),
            len(site.tags),
            hysteresis=h,
            enter_dwell_s=enter,
            leave_dwell_s=leave,
        )

    @property
    def n_tags(self) -> int:
        return self.inside.shape[0]

    def update(
        self,
        now: float,
        xy: ArrayLike,
        floor: ArrayLike,
        known: ArrayLike,
        uncertainty: ArrayLike | None = None,
    ) -> Transitions:
        """Advance to ``now`` with every tag's position: xy (N, 2), floor (N,), known (N,) bool,
        optional uncertainty (N,) radius in metres (only used when ``uncertainty_gain`` > 0;
        non-finite counts as the largest widening). Rows with known=False, a non-finite xy or a
        negative floor are unknown: their membership is frozen and their streaks reset.

        A tag's first known position sets its membership at once (inside = strictly inside).
        ``now`` must not go backwards."""
        if not np.isfinite(now) or now < self.last_now:
            raise ZoneError(f"now={now} is not finite or earlier than the last update")
        pts, fl = _check_points(xy, floor)
        n = self.n_tags
        kn = np.asarray(known, dtype=bool)
        if pts.shape[0] != n or kn.shape != (n,):
            raise ZoneError(f"update needs xy (N, 2), floor and known (N,) for N={n} tags")
        ok = kn & np.isfinite(pts).all(axis=1) & (fl >= 0)
        if ok.any() and fl[ok].max() >= self.index.n_floors:
            raise ZoneError(f"floor index {int(fl[ok].max())} out of range")
        self._mark_unknown(now, ~ok)
        self.last_now = float(now)
        rows = np.flatnonzero(ok)
        everyone = len(rows) == n  # then work in place on the state arrays (views)
        d = self.index.signed_distance(pts[rows], fl[rows])  # (M, Z)
        inside = self.inside if everyone else self.inside[rows]
        since = self._since if everyone else self._since[rows]
        fresh = np.flatnonzero(~self._placed[rows])  # first fix: taken as it is, below

        neg_in, m_out = self._margins(rows, uncertainty)
        cond = np.where(inside, d >= m_out, d <= neg_in)  # counts towards a change
        cond[fresh] = False
        np.copyto(since, now, where=cond & np.isnan(since))
        np.copyto(since, np.nan, where=~cond)
        elapsed = now - since  # NaN where no run is under way
        fire = np.where(inside, elapsed >= self._leave_at, elapsed >= self._enter_at)
        r, z = np.nonzero(fire)  # few: work on the pairs only
        was_in = inside[r, z]
        t_fire = since[r, z]
        inside[r, z] = ~was_in
        since[r, z] = np.nan

        first = d[fresh] < 0
        inside[fresh] = first
        fr, fz = np.nonzero(first)
        if not everyone:
            self.inside[rows] = inside
            self._since[rows] = since
        self._placed[rows] = True
        came = ~was_in
        entered = _transitions(
            np.concatenate([rows[r[came]], rows[fresh[fr]]]),
            np.concatenate([z[came], fz]),
            np.concatenate([t_fire[came], np.full(len(fr), float(now))]),
        )
        left = _transitions(rows[r[was_in]], z[was_in], t_fire[was_in])
        return Transitions(entered, left, ~self.known)

    def _margins(
        self, rows: IntArray, uncertainty: ArrayLike | None
    ) -> tuple[FloatArray, FloatArray]:
        """Effective margins of the rows being updated: minus the entry margin, (Z,) or (M, Z),
        and the leave margin, () or (M, 1)."""
        h = self.hysteresis
        if uncertainty is None or h.uncertainty_gain == 0:
            return -np.minimum(h.margin_in, self._half_depth), np.asarray(h.margin_out)
        r = np.asarray(uncertainty, dtype=np.float64)
        if r.shape != (self.n_tags,):
            raise ZoneError(f"uncertainty must have shape ({self.n_tags},), got {r.shape}")
        r = r[rows]
        capped = np.minimum(h.uncertainty_gain * np.abs(r), h.max_widening_m)
        widen = np.where(np.isfinite(r), capped, h.max_widening_m)
        neg_in = -np.minimum(h.margin_in + widen[:, None], self._half_depth[None, :])
        return neg_in, (h.margin_out + widen)[:, None]

    def _mark_unknown(self, now: float, unknown: BoolArray) -> None:
        newly = unknown & np.isnan(self.unknown_since)  # NaN exactly while known
        self.unknown_since[newly] = now
        self.unknown_since[~unknown] = np.nan
        self.known = ~unknown
        self._since[unknown] = np.nan  # a streak needs positions: it restarts after the gap

    def enter_at_door(self, fix: DoorFix) -> Transitions:
        """Apply door reads: each read tag enters the exit zones of its door at once (no dwell,
        no margin), with the read's time; a pending leave of those zones is cancelled. Reads at
        other doors change nothing here. Works whether the tag's RSSI position is known or not."""
        read, zone = np.nonzero(fix.zones)
        tag = fix.tag[read]
        t = fix.t[read]
        if len(tag) and (tag.min() < 0 or tag.max() >= self.n_tags):
            raise ZoneError(f"door read tag index out of range 0..{self.n_tags - 1}")
        order = np.lexsort((t, zone, tag))  # earliest read of each (tag, zone) pair first
        tag, zone, t = tag[order], zone[order], t[order]
        first = np.ones(len(tag), dtype=bool)
        first[1:] = (tag[1:] != tag[:-1]) | (zone[1:] != zone[:-1])
        tag, zone, t = tag[first], zone[first], t[first]
        new = ~self.inside[tag, zone]
        self.inside[tag, zone] = True
        self._since[tag, zone] = np.nan
        self._placed[tag] = True
        empty = np.empty(0, dtype=TRANSITION_DTYPE)
        return Transitions(_transitions(tag[new], zone[new], t[new]), empty, ~self.known)


# -- door choke-point readers -----------------------------------------------------------------


@dataclass(frozen=True)
class DoorIndex:
    """The site's door readers (R, site-file order) as arrays.

    ``xy`` (R, 2) door midpoints, ``floor`` (R,), ``uncertainty`` (R,) metres: the reader's
    range plus its horizontal offset from the door midpoint (a bound on where the tag was),
    ``is_exit`` (R,) the door is an exit, ``zones`` (R, Z) the exit zones a read puts the tag in:
    exit zones on the door's floor that hold the door midpoint or pass within ``tolerance_m``
    of it (only for exit doors)."""

    reader_ids: tuple[str, ...]
    door_ids: tuple[str, ...]
    xy: FloatArray
    floor: IntArray
    uncertainty: FloatArray
    is_exit: BoolArray
    zones: BoolArray

    @classmethod
    def from_site(cls, site: Site, index: ZoneIndex, *, tolerance_m: float = 0.5) -> DoorIndex:
        readers = site.door_readers
        doors = [site.door(r.door) for r in readers]
        mid = np.array([np.mean(d.points, axis=0) for d in doors], dtype=np.float64).reshape(-1, 2)
        floor = np.array([site.floor_index[d.floor] for d in doors], dtype=np.int64)
        pos = np.array([site.reader_position(r)[:2] for r in readers], dtype=np.float64)
        offset = np.hypot(*(pos.reshape(-1, 2) - mid).T)
        rng = np.array([r.range_m for r in readers], dtype=np.float64)
        is_exit = np.array([d.kind == "exit" for d in doors], dtype=bool)
        near = index.signed_distance(mid, floor) <= tolerance_m
        zones = near & index.is_exit[None, :] & is_exit[:, None]
        return cls(
            tuple(r.id for r in readers),
            tuple(d.id for d in doors),
            mid,
            floor,
            rng + offset,
            is_exit,
            zones,
        )

    def reader(self, reader_id: str) -> int:
        """Index of a reader id; raises ZoneError naming the id when unknown."""
        try:
            return self.reader_ids.index(reader_id)
        except ValueError:
            raise ZoneError(f"door reader {reader_id!r} is not defined") from None


@dataclass(frozen=True)
class DoorFix:
    """Positions from door reads, one row per read (M): ``tag`` (M,), ``t`` (M,), ``xy`` (M, 2)
    the door midpoint, ``floor`` (M,), ``uncertainty`` (M,) metres, ``zones`` (M, Z) exit
    zones to enter at once (see :meth:`ZoneMembership.enter_at_door`)."""

    tag: IntArray
    t: FloatArray
    xy: FloatArray
    floor: IntArray
    uncertainty: FloatArray
    zones: BoolArray


def place_at_door(doors: DoorIndex, reader: ArrayLike, tag: ArrayLike, t: ArrayLike) -> DoorFix:
    """Place tags read by choke-point readers: reader (M,) indices into ``doors``, tag (M,)
    indices into ``site.tags``, t (M,) read times. Independent of RSSI: the position is the
    door's midpoint, at once."""
    rd = np.asarray(reader)
    tg = np.asarray(tag)
    tt = np.asarray(t, dtype=np.float64)
    if rd.ndim != 1 or tg.shape != rd.shape or tt.shape != rd.shape:
        raise ZoneError("reader, tag and t must be 1-D arrays of the same length")
    if rd.size and not (
        np.issubdtype(rd.dtype, np.integer) and np.issubdtype(tg.dtype, np.integer)
    ):
        raise ZoneError("reader and tag must be integer indices")
    if rd.size and (rd.min() < 0 or rd.max() >= len(doors.reader_ids)):
        raise ZoneError(f"reader index out of range 0..{len(doors.reader_ids) - 1}")
    if tg.size and tg.min() < 0:
        raise ZoneError("tag indices must be >= 0")
    if not np.isfinite(tt).all():
        raise ZoneError("door read times must be finite")
    rd = rd.astype(np.intp)
    return DoorFix(
        tg.astype(np.int64),
        tt,
        doors.xy[rd],
        doors.floor[rd],
        doors.uncertainty[rd],
        doors.zones[rd],
    )
