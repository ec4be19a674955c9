"""Zones: which tags are in which zones, with hysteresis and dwell; door choke-point reads.

Three parts (docs/zones.md):

- :class:`ZoneIndex` (:mod:`rtls.zone_index`, re-exported here) holds every zone of every floor
  as padded vertex arrays, so one call answers ``contains`` / ``signed_distance`` for N tags
  against Z zones (shapes (N, Z)).
- :class:`ZoneMembership` is a pure state machine over (N, Z) arrays: a tag enters a zone after
  being inside by ``margin_in`` for the zone's entry dwell, and leaves after being outside by
  ``margin_out`` for its leave dwell (or, from zone probabilities such as the room filter's,
  :mod:`rtls.rooms`, after the probability stays above / below a threshold for the dwell).
  Unknown positions freeze membership.
- :func:`place_at_door` turns choke-point reads into positions at once (independent of RSSI);
  :meth:`ZoneMembership.enter_at_door` puts a tag read at an exit door into that door's exit
  zone with no dwell.

Everything takes ``now`` / ``t`` as arguments; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import ConfigError
from rtls.site import Site, ZoneKind
from rtls.zone_index import ZoneError, ZoneIndex, check_points

__all__ = [
    "TRANSITION_DTYPE",
    "DoorFix",
    "DoorIndex",
    "Hysteresis",
    "Transitions",
    "ZoneError",
    "ZoneIndex",
    "ZoneMembership",
    "place_at_door",
    "zone_dwells",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

TRANSITION_DTYPE = np.dtype([("tag", "<i4"), ("zone", "<i4"), ("t", "<f8")])
"""One membership change: ``tag`` index into ``site.tags``, ``zone`` column of the ZoneIndex,
``t`` when the qualifying streak began (the best estimate of the crossing), Unix s."""

_TIME_EPS = 1e-9


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
        *,
        among: ArrayLike | None = None,
    ) -> Transitions:
        """Advance to ``now`` with every tag's position: xy (N, 2), floor (N,), known (N,) bool,
        optional uncertainty (N,) radius in metres (only used when ``uncertainty_gain`` > 0;
        non-finite counts as the largest widening). Rows with known=False, a non-finite xy or a
        negative floor are unknown: their membership is frozen and their streaks reset.

        A tag's first known position sets its membership at once (inside = strictly inside).
        ``now`` must not go backwards. ``among`` (N,) bool, default all: only these rows are
        advanced, the others are left exactly as they are (a tick's first part)."""
        if not np.isfinite(now) or now < self.last_now:
            raise ZoneError(f"now={now} is not finite or earlier than the last update")
        pts, fl = check_points(xy, floor)
        n = self.n_tags
        kn = np.asarray(known, dtype=bool)
        if pts.shape[0] != n or kn.shape != (n,):
            raise ZoneError(f"update needs xy (N, 2), floor and known (N,) for N={n} tags")
        ok = kn & np.isfinite(pts).all(axis=1) & (fl >= 0)
        if ok.any() and fl[ok].max() >= self.index.n_floors:
            raise ZoneError(f"floor index {int(fl[ok].max())} out of range")
        these = self._among(among)
        rows = np.flatnonzero(ok & these)
        d = self.index.signed_distance(pts[rows], fl[rows])  # (M, Z)
        neg_in, m_out = self._margins(rows, uncertainty)
        return self._advance(now, ok, d <= neg_in, d >= m_out, d < 0, among=these)

    def update_probability(
        self,
        now: float,
        probability: ArrayLike,
        known: ArrayLike,
        *,
        enter: ArrayLike,
        leave: ArrayLike,
        fresh: ArrayLike | None = None,
        among: ArrayLike | None = None,
    ) -> Transitions:
        """Advance to ``now`` with every tag's probability (N, Z) of being in each zone (e.g.
        :meth:`rtls.rooms.RoomFilter.zone_probability`) instead of a position: a tag enters a
        zone when the probability stays >= ``enter`` for the zone's entry dwell, and leaves when
        it stays < ``leave`` for the leave dwell (0 <= leave <= enter <= 1, each one number or
        one per zone (Z,): the band between them changes nothing). Rows with known=False or a
        non-finite probability are unknown and frozen, as in :meth:`update`; a tag's first known
        row sets membership at once (inside: probability >= ``enter``).

        ``fresh`` (N,) bool, default all: the rows whose probability is current evidence
        at ``now`` (:meth:`rtls.rooms.RoomFilter.update_membership`: the tag's newest reading
        is no older than its advertising interval plus a slack). A known row that is not
        fresh holds an old reading, and time without evidence is not evidence: such a row
        neither starts, ends nor completes a run. A run thus completes only at a fresh row,
        once it has lasted the dwell, with the criterion met at every fresh row since it
        began: a dwell needs its criterion renewed by readings. ``among``: as in :meth:`update`."""
        lo = np.asarray(leave, dtype=np.float64)
        hi = np.asarray(enter, dtype=np.float64)
        if not (np.all(lo >= 0.0) and np.all(lo <= hi) and np.all(hi <= 1.0)):
            raise ZoneError(f"need 0 <= leave <= enter <= 1, got leave={lo}, enter={hi}")
        prob = np.asarray(probability, dtype=np.float64)
        n = self.n_tags
        kn = np.asarray(known, dtype=bool)
        new = np.ones(n, dtype=bool) if fresh is None else np.asarray(fresh, dtype=bool)
        if prob.shape != (n, len(self.index)) or kn.shape != (n,) or new.shape != (n,):
            raise ZoneError(
                f"update_probability needs probability (N, Z), known and fresh (N,), N={n}"
            )
        ok = kn & np.isfinite(prob).all(axis=1)
        these = self._among(among)
        sel = ok & these
        p = prob[sel]
        return self._advance(now, ok, p >= hi, p < lo, p >= hi,
                             None if fresh is None else new[sel], among=these)  # fmt: skip

    def _among(self, among: ArrayLike | None) -> BoolArray:
        if among is None:
            return np.ones(self.n_tags, dtype=bool)
        out = np.asarray(among, dtype=bool)
        if out.shape != (self.n_tags,):
            raise ZoneError(f"among must have shape ({self.n_tags},), got {out.shape}")
        return out

    def _advance(
        self,
        now: float,
        ok: BoolArray,
        toward_in: BoolArray,
        toward_out: BoolArray,
        start: BoolArray,
        confirm: BoolArray | None = None,
        *,
        among: BoolArray,
    ) -> Transitions:
        """The state machine shared by both updates: ``ok`` (N,) the known rows, ``among`` (N,)
        the rows to advance; for the M rows of both, ``toward_in`` / ``toward_out`` (M, Z)
        whether this update counts towards entering / leaving each zone, ``start`` (M, Z) the
        membership of a tag's first known update; ``confirm`` (M,) (None: all) the rows that
        may start, end or complete a run now."""
        if not np.isfinite(now) or now < self.last_now:
            raise ZoneError(f"now={now} is not finite or earlier than the last update")
        n = self.n_tags
        self._mark_unknown(now, ~ok, among)
        self.last_now = float(now)
        rows = np.flatnonzero(ok & among)
        everyone = len(rows) == n  # then work in place on the state arrays (views)
        inside = self.inside if everyone else self.inside[rows]
        since = self._since if everyone else self._since[rows]
        fresh = np.flatnonzero(~self._placed[rows])  # first fix: taken as it is, below

        cond = np.where(inside, toward_out, toward_in)  # counts towards a change
        cond[fresh] = False
        if confirm is not None:  # rows without current evidence keep their runs as they are
            cond = np.where(confirm[:, None], cond, ~np.isnan(since))
        np.copyto(since, now, where=cond & np.isnan(since))
        np.copyto(since, np.nan, where=~cond)
        elapsed = now - since  # NaN where no run is under way
        fire = np.where(inside, elapsed >= self._leave_at, elapsed >= self._enter_at)
        if confirm is not None:
            fire &= confirm[:, None]
        r, z = np.nonzero(fire)  # few: work on the pairs only
        was_in = inside[r, z]
        t_fire = since[r, z]
        inside[r, z] = ~was_in
        since[r, z] = np.nan

        first = start[fresh]
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

    def _mark_unknown(self, now: float, unknown: BoolArray, among: BoolArray) -> None:
        """Rows of ``among`` become unknown where ``unknown``, known elsewhere."""
        unknown = unknown & among
        newly = unknown & np.isnan(self.unknown_since)  # NaN exactly while known
        self.unknown_since[newly] = now
        self.unknown_since[among & ~unknown] = np.nan
        self.known = np.where(among, ~unknown, self.known)
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
