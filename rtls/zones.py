"""Zones: which tags are in which zones, with hysteresis and dwell; door choke-point reads.

Three parts (docs/zones.md):

- :class:`ZoneIndex` (:mod:`rtls.zone_index`, re-exported here) holds every zone of every floor
  as padded vertex arrays, so one call answers ``contains`` / ``signed_distance`` for N tags
  against Z zones (shapes (N, Z)).
- :class:`ZoneMembership` is a pure state machine over (tag, zone) pairs (a few slots per tag,
  not (N, Z) arrays): a tag enters a zone after
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
_PAIR_CHUNK = 1 << 20  # elements of the (rows, Z) distances of one block of a position update


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
    a site with :meth:`from_site`. State: ``known`` (N,) bool, ``unknown_since`` (N,) (NaN while
    known); which zones each tag is in: :meth:`inside_pairs` (or the dense ``inside`` (N, Z), for
    inspection and tests). Read these, never write them.

    Memory is (N, slots), not (N, Z): a tag holds a few (zone, inside, streak start) slots, the
    zones it is inside or has a streak towards entering (docs/zones.md, "Membership at scale";
    at 10,000 tags and 1,400 zones the dense arrays were 127 MB). A tag that needs more slots
    than it has widens every tag's (``slots`` grows; nothing is lost).
    """

    def __init__(
        self,
        index: ZoneIndex,
        n_tags: int,
        *,
        hysteresis: Hysteresis | None = None,
        enter_dwell_s: ArrayLike | None = None,
        leave_dwell_s: ArrayLike | None = None,
        slots: int = 8,
    ) -> None:
        self.index = index
        self.hysteresis = h = hysteresis or Hysteresis()
        z = len(index)
        self.enter_dwell = self._dwell(enter_dwell_s, h.dwell_s, z, "enter_dwell_s")
        self.leave_dwell = self._dwell(leave_dwell_s, h.dwell_s, z, "leave_dwell_s")
        self._half_depth = 0.5 * index.depth  # (Z,) cap on the entry margin
        self._enter_at = self.enter_dwell - _TIME_EPS  # (Z,) run length that enters
        self._leave_at = self.leave_dwell - _TIME_EPS
        shape = (n_tags, max(1, slots))
        self._zone = np.full(shape, -1, dtype=np.int32)  # zone of each slot (-1: free)
        self._in = np.zeros(shape, dtype=bool)  # the tag is inside the slot's zone
        self._since = np.full(shape, np.nan)  # start of the streak towards a change
        self._placed = np.zeros(n_tags, dtype=bool)  # has had a first position or door read
        self.known = np.zeros(n_tags, dtype=bool)
        self.unknown_since = np.full(n_tags, np.nan)
        self.last_now = -np.inf
        self._revision = np.full(n_tags, -1, dtype=np.int64)  # update_pairs' revision, per row

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
        return self._zone.shape[0]

    @property
    def slots(self) -> int:
        """Slots per tag (grows when a tag needs more)."""
        return self._zone.shape[1]

    @property
    def inside(self) -> BoolArray:
        """(N, Z) bool, dense: built on each call, for inspection and tests (large on a big
        site: the engine reads :meth:`inside_pairs`)."""
        out = np.zeros((self.n_tags, len(self.index)), dtype=bool)
        r, k = np.nonzero(self._in)
        out[r, self._zone[r, k]] = True
        return out

    def inside_pairs(self, rows: IntArray | None = None) -> tuple[IntArray, IntArray]:
        """The zones tags are inside: (P,) row and (P,) zone column, sorted by row; rows index
        ``rows`` (K,) when given (default: all tags, rows are tag indices)."""
        held = self._in if rows is None else self._in[rows]
        r, k = np.nonzero(held)
        zone = (self._zone if rows is None else self._zone[rows])[r, k]
        return r.astype(np.int64), zone.astype(np.int64)

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
        neg_in, m_out = self._margins(rows, uncertainty)
        parts: list[tuple[IntArray, IntArray, BoolArray, BoolArray, BoolArray]] = []
        step = max(1, _PAIR_CHUNK // max(1, len(self.index)))  # (rows, Z) distances at a time
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            d = self.index.signed_distance(pts[r], fl[r])  # (m, Z)
            nin = neg_in if np.ndim(neg_in) < 2 else neg_in[s : s + step]
            mout = m_out if np.ndim(m_out) < 2 else m_out[s : s + step]
            parts.append(_pairs(r, d <= nin, d >= mout, d < 0))
        return self._advance(now, ok, *_joined(parts), among=these)

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
        began: a dwell needs its criterion renewed by readings. ``among``: as in :meth:`update`.
        The room filter passes its pairs to :meth:`update_pairs` instead (no (N, Z) array)."""
        lo = np.asarray(leave, dtype=np.float64)
        hi = np.asarray(enter, dtype=np.float64)
        check_thresholds(enter=hi, leave=lo)
        prob = np.asarray(probability, dtype=np.float64)
        n = self.n_tags
        kn = np.asarray(known, dtype=bool)
        if prob.shape != (n, len(self.index)) or kn.shape != (n,):
            raise ZoneError(
                f"update_probability needs probability (N, Z), known and fresh (N,), N={n}"
            )
        ok = kn & np.isfinite(prob).all(axis=1)
        these = self._among(among)
        rows = np.flatnonzero(ok & these)
        p = prob[rows]
        pairs = _pairs(rows, p >= hi, p < lo, p >= hi)
        return self._advance(now, ok, *pairs, self._fresh(fresh), among=these)

    def update_pairs(
        self,
        now: float,
        known: ArrayLike,
        tag: ArrayLike,
        zone: ArrayLike,
        toward_in: ArrayLike,
        toward_out: ArrayLike,
        start: ArrayLike,
        *,
        fresh: ArrayLike | None = None,
        among: ArrayLike | None = None,
        revision: ArrayLike | None = None,
    ) -> Transitions:
        """Advance to ``now`` from what each known tag's evidence says of some zones, as
        (P,) pairs ``tag``, ``zone`` (distinct) with, per pair, whether it counts towards
        entering (``toward_in``) or leaving (``toward_out``) and, for a tag's first known
        update, whether it is inside (``start``). A (tag, zone) pair not given counts towards
        leaving, not entering, and is not a start: give the zones whose evidence says
        otherwise (a tag's few likely zones; :meth:`rtls.rooms.RoomFilter.update_membership`).
        ``known`` (N,): the other rows are unknown and frozen; ``fresh`` and ``among`` as in
        :meth:`update_probability`. ``revision`` (N,) int: the version of each row's evidence,
        kept for :meth:`busy`."""
        kn = np.asarray(known, dtype=bool)
        if kn.shape != (self.n_tags,):
            raise ZoneError(f"known must have shape ({self.n_tags},), got {kn.shape}")
        tg = np.asarray(tag, dtype=np.int64).reshape(-1)
        zn = np.asarray(zone, dtype=np.int64).reshape(-1)
        t_in, t_out, st = (np.asarray(a, dtype=bool).reshape(-1)
                           for a in (toward_in, toward_out, start))  # fmt: skip
        if any(f.shape != tg.shape for f in (zn, t_in, t_out, st)):
            raise ZoneError("update_pairs needs tag, zone and the three flags of one length")
        if len(tg) and (tg.min() < 0 or tg.max() >= self.n_tags):
            raise ZoneError(f"pair tag index out of range 0..{self.n_tags - 1}")
        if len(zn) and (zn.min() < 0 or zn.max() >= len(self.index)):
            raise ZoneError(f"pair zone index out of range 0..{len(self.index) - 1}")
        these = self._among(among)
        if revision is not None:
            rev = np.asarray(revision, dtype=np.int64)
            if rev.shape != (self.n_tags,):
                raise ZoneError(f"revision must have shape ({self.n_tags},), got {rev.shape}")
            self._revision[these] = rev[these]
        return self._advance(now, kn, tg, zn, t_in, t_out, st, self._fresh(fresh), among=these)

    def busy(self, known: ArrayLike, revision: ArrayLike) -> BoolArray:
        """(N,) the rows an :meth:`update_pairs` with these ``known`` (N,) and evidence
        ``revision`` (N,) could change: new evidence since the row's last update, a change of
        known, an unknown row not yet marked so, or a run under way. Leaving the others out
        (``among``) changes nothing and saves their work: on a large site most tags are idle
        at any one tick (docs/zones.md, "Membership at scale")."""
        kn = np.asarray(known, dtype=bool)
        rev = np.asarray(revision, dtype=np.int64)
        running = ~np.isnan(self._since).all(axis=1)
        unmarked = ~kn & np.isnan(self.unknown_since)
        return np.asarray((rev != self._revision) | (kn != self.known) | unmarked | running)

    def _fresh(self, fresh: ArrayLike | None) -> BoolArray | None:
        if fresh is None:
            return None
        out = np.asarray(fresh, dtype=bool)
        if out.shape != (self.n_tags,):
            raise ZoneError(f"fresh must have shape ({self.n_tags},), got {out.shape}")
        return out

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
        c_tag: IntArray,
        c_zone: IntArray,
        c_in: BoolArray,
        c_out: BoolArray,
        c_start: BoolArray,
        confirm: BoolArray | None = None,
        *,
        among: BoolArray,
    ) -> Transitions:
        """The state machine shared by the updates, over (tag, zone) pairs: the rows of ``ok``
        (N,) and ``among`` (N,) advance; the candidate pairs (``c_tag``, ``c_zone``) say
        whether this update counts towards entering / leaving and the membership of a tag's
        first known update (the flags); pairs held in the slots but not among the candidates
        count towards leaving. ``confirm`` (N,) (None: all): the rows that may start, end or
        complete a run now."""
        if not np.isfinite(now) or now < self.last_now:
            raise ZoneError(f"now={now} is not finite or earlier than the last update")
        self._mark_unknown(now, ~ok, among)
        self.last_now = float(now)
        live = ok & among
        rows = np.flatnonzero(live)
        mine = live[c_tag]
        c_tag, c_zone = c_tag[mine], c_zone[mine]
        c_in, c_out, c_start = c_in[mine], c_out[mine], c_start[mine]
        e_row, e_slot = np.nonzero(self._zone[rows] >= 0)
        e_tag = rows[e_row]
        n_zones = max(1, len(self.index))
        key = np.concatenate(
            [e_tag * n_zones + self._zone[e_tag, e_slot], c_tag * n_zones + c_zone]
        )
        keys, at = np.unique(key, return_inverse=True)
        tag, zone = keys // n_zones, keys % n_zones
        held, given = at[: len(e_tag)], at[len(e_tag) :]
        inside = np.zeros(len(keys), dtype=bool)
        since = np.full(len(keys), np.nan)
        inside[held] = self._in[e_tag, e_slot]
        since[held] = self._since[e_tag, e_slot]
        toward_in = np.zeros(len(keys), dtype=bool)
        toward_out = np.ones(len(keys), dtype=bool)
        start = np.zeros(len(keys), dtype=bool)
        toward_in[given], toward_out[given], start[given] = c_in, c_out, c_start

        fresh = ~self._placed[tag]  # a tag's first fix: taken as it is, below
        cond = np.where(inside, toward_out, toward_in)  # counts towards a change
        cond[fresh] = False
        ok_now = None if confirm is None else confirm[tag]
        if ok_now is not None:  # rows without current evidence keep their runs as they are
            cond = np.where(ok_now, cond, ~np.isnan(since))
        np.copyto(since, now, where=cond & np.isnan(since))
        np.copyto(since, np.nan, where=~cond)
        elapsed = now - since  # NaN where no run is under way
        fire = np.where(inside, elapsed >= self._leave_at[zone], elapsed >= self._enter_at[zone])
        if ok_now is not None:
            fire &= ok_now
        f = np.flatnonzero(fire)  # few
        was_in = inside[f]
        t_fire = since[f]
        inside[f] = ~was_in
        since[f] = np.nan
        inside[fresh] = start[fresh]
        first = np.flatnonzero(fresh & start)
        self._write(rows, tag, zone, inside, since)
        self._placed[rows] = True
        came = ~was_in
        entered = _transitions(
            np.concatenate([tag[f[came]], tag[first]]),
            np.concatenate([zone[f[came]], zone[first]]),
            np.concatenate([t_fire[came], np.full(len(first), float(now))]),
        )
        left = _transitions(tag[f[was_in]], zone[f[was_in]], t_fire[was_in])
        return Transitions(entered, left, ~self.known)

    def _write(
        self, rows: IntArray, tag: IntArray, zone: IntArray, inside: BoolArray, since: FloatArray
    ) -> None:
        """Replace the slots of ``rows`` by the pairs (sorted by tag) that are inside or have a
        run under way; widen every tag's slots if one needs more."""
        self._zone[rows] = -1
        self._in[rows] = False
        self._since[rows] = np.nan
        keep = inside | ~np.isnan(since)
        tag, zone, inside, since = tag[keep], zone[keep], inside[keep], since[keep]
        if not len(tag):
            return
        head = np.flatnonzero(np.r_[True, tag[1:] != tag[:-1]])
        rank = np.arange(len(tag)) - np.repeat(head, np.diff(np.r_[head, len(tag)]))
        need = int(rank.max()) + 1
        if need > self.slots:
            self._grow(need)
        self._zone[tag, rank] = zone
        self._in[tag, rank] = inside
        self._since[tag, rank] = since

    def _grow(self, need: int) -> None:
        """Widen every tag's slots to at least ``need`` (doubling)."""
        width = max(need, 2 * self.slots)
        extra = width - self.slots
        n = self.n_tags
        self._zone = np.hstack([self._zone, np.full((n, extra), -1, dtype=np.int32)])
        self._in = np.hstack([self._in, np.zeros((n, extra), dtype=bool)])
        self._since = np.hstack([self._since, np.full((n, extra), np.nan)])

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
        """Rows of ``among`` become unknown where ``unknown``, known elsewhere; an unknown tag's
        streaks end (they restart after the gap)."""
        unknown = unknown & among
        newly = unknown & np.isnan(self.unknown_since)  # NaN exactly while known
        self.unknown_since[newly] = now
        self.unknown_since[among & ~unknown] = np.nan
        self.known = np.where(among, ~unknown, self.known)
        gone = np.flatnonzero(unknown)
        if len(gone):
            self._since[gone] = np.nan
            self._zone[gone] = np.where(self._in[gone], self._zone[gone], -1)

    def enter_at_door(self, fix: DoorFix) -> Transitions:
        """Apply door reads: each read tag enters the exit zones of its door at once (no dwell,
        no margin), with the read's time; a pending leave of those zones is cancelled. Reads at
        other doors change nothing here. Works whether the tag's RSSI position is known or not."""
        read, zone = np.nonzero(fix.zones)
        tag = fix.tag[read].astype(np.int64)
        t = fix.t[read]
        if len(tag) and (tag.min() < 0 or tag.max() >= self.n_tags):
            raise ZoneError(f"door read tag index out of range 0..{self.n_tags - 1}")
        order = np.lexsort((t, zone, tag))  # earliest read of each (tag, zone) pair first
        tag, zone, t = tag[order], zone[order], t[order]
        first = np.ones(len(tag), dtype=bool)
        first[1:] = (tag[1:] != tag[:-1]) | (zone[1:] != zone[:-1])
        tag, zone, t = tag[first], zone[first], t[first]
        held = (self._zone[tag] == zone[:, None]) & self._in[tag]
        new = ~held.any(axis=1)
        rows = np.unique(tag)
        e_row, e_slot = np.nonzero(self._zone[rows] >= 0)
        e_tag = rows[e_row]
        n_zones = max(1, len(self.index))
        e_key = e_tag * n_zones + self._zone[e_tag, e_slot]
        d_key = tag * n_zones + zone
        other = ~np.isin(e_key, d_key)  # held pairs the reads do not touch
        keys = np.concatenate([e_key[other], d_key])
        inside = np.concatenate([self._in[e_tag, e_slot][other], np.ones(len(d_key), bool)])
        since = np.concatenate([self._since[e_tag, e_slot][other], np.full(len(d_key), np.nan)])
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        self._write(rows, keys // n_zones, keys % n_zones, inside[order], since[order])
        self._placed[tag] = True
        empty = np.empty(0, dtype=TRANSITION_DTYPE)
        return Transitions(_transitions(tag[new], zone[new], t[new]), empty, ~self.known)


def check_thresholds(*, enter: ArrayLike, leave: ArrayLike) -> None:
    """Raise ZoneError unless 0 <= leave <= enter <= 1 (element-wise)."""
    lo, hi = np.asarray(leave, dtype=np.float64), np.asarray(enter, dtype=np.float64)
    if not (np.all(lo >= 0.0) and np.all(lo <= hi) and np.all(hi <= 1.0)):
        raise ZoneError(f"need 0 <= leave <= enter <= 1, got leave={lo}, enter={hi}")


def _pairs(
    rows: IntArray, toward_in: BoolArray, toward_out: BoolArray, start: BoolArray
) -> tuple[IntArray, IntArray, BoolArray, BoolArray, BoolArray]:
    """Dense flags (M, Z) of ``rows`` (M,) as the pairs whose flags differ from a zone that is
    far away (not towards entering, towards leaving, not a start)."""
    toward_out = np.broadcast_to(toward_out, toward_in.shape)
    r, z = np.nonzero(toward_in | ~toward_out | start)
    return (
        rows[r].astype(np.int64),
        z.astype(np.int64),
        toward_in[r, z],
        toward_out[r, z],
        start[r, z],
    )


def _joined(
    parts: list[tuple[IntArray, IntArray, BoolArray, BoolArray, BoolArray]],
) -> tuple[IntArray, IntArray, BoolArray, BoolArray, BoolArray]:
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        no = np.zeros(0, dtype=bool)
        return none, none, no, no, no
    t, z, a, b, c = (np.concatenate(x) for x in zip(*parts, strict=True))
    return t, z, a, b, c


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
