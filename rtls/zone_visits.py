"""Sparse zone membership for the alarm rules (:mod:`rtls.conditions`): the zones each tag is
inside and its loiter clocks, folded from zone transitions one event at a time.

Memory and work scale with the (tag, zone) pairs tags are inside (a few per tag) plus the loiter
zones left lately, not with tags x zones (10,000 tags x 1,400 zones: 240 MB dense).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]

# a loiter zone's visit is forgotten loiter_gap_s + PRUNE_SLACK_S after it was left (relative to
# the newest transition): only a transition that much older than the newest one could tell
PRUNE_SLACK_S = 3600.0
_NO_VISIT = (math.nan, math.nan)  # (entered_t, left_t) of a visit nothing is known of


class ZoneVisits:
    """Zone membership of ``n`` tags in the zones flagged by the (Z,) masks; a state machine.

    State (read it, never write it): ``n_exit`` / ``n_restricted`` / ``n_loiter`` (N,) int32
    how many exit, restricted and loiter zones each tag is inside; :meth:`zones_of`,
    :meth:`loiter_clocks`, :meth:`exit_mates`. A loiter zone's clock (since when the tag is in
    it) keeps running when the tag comes back within ``loiter_gap_s`` of leaving it."""

    def __init__(
        self,
        n: int,
        is_exit: BoolArray,
        is_restricted: BoolArray,
        is_loiter: BoolArray,
        loiter_gap_s: float,
    ) -> None:
        self.n_zones = len(is_exit)
        self.loiter_gap_s = float(loiter_gap_s)
        self._exit = frozenset(np.flatnonzero(is_exit).tolist())
        self._restricted = frozenset(np.flatnonzero(is_restricted).tolist())
        self._loiter = frozenset(np.flatnonzero(is_loiter).tolist())
        # tag -> zone -> (entered_t, left_t) of each zone it is inside; the loiter clock
        # (entered_t) and the last leave (left_t) are kept for loiter zones only (else NaN)
        self._in: dict[int, dict[int, tuple[float, float]]] = {}
        self._gone: dict[tuple[int, int], tuple[float, float]] = {}  # loiter zones left lately
        self._exit_members: dict[int, set[int]] = {}  # exit zone -> the tags inside it
        self.n_exit = np.zeros(n, dtype=np.int32)
        self.n_restricted = np.zeros(n, dtype=np.int32)
        self.n_loiter = np.zeros(n, dtype=np.int32)
        self._newest_t = -math.inf  # newest transition folded in
        self._pruned_t = -math.inf

    def fold(self, tag: IntArray, zone: IntArray, t: FloatArray, came: BoolArray) -> None:
        """Apply transitions in the given order (sort them by time): tag ``tag[k]`` entered
        (``came[k]``) or left zone ``zone[k]`` at ``t[k]``."""
        rows = zip(tag.tolist(), zone.tolist(), t.tolist(), came.tolist(), strict=True)
        for tg, z, et, c in rows:  # a few per tick
            if c:
                self._enter(int(tg), int(z), float(et))
            else:
                self._leave(int(tg), int(z), float(et))
            self._newest_t = max(self._newest_t, float(et))
        if self._newest_t - self._pruned_t >= self.loiter_gap_s:
            horizon = self._newest_t - self.loiter_gap_s - PRUNE_SLACK_S
            self._gone = {k: v for k, v in self._gone.items() if not v[1] < horizon}
            self._pruned_t = self._newest_t

    def _enter(self, t: int, z: int, et: float) -> None:
        zs = self._in.setdefault(t, {})
        was = zs.get(z)
        if was is None:
            self._count(t, z, 1)
        if z not in self._loiter:
            zs[z] = _NO_VISIT
            return
        entered, left = was if was is not None else self._gone.pop((t, z), _NO_VISIT)
        if not et - left <= self.loiter_gap_s:
            # not back within loiter_gap_s (a moment of unknown position, a flap at the edge
            # keeps the loiter clock running): the clock starts now
            entered = et
        zs[z] = (entered, left)

    def _leave(self, t: int, z: int, et: float) -> None:
        zs = self._in.get(t)
        was = zs.pop(z, None) if zs is not None else None
        if was is not None:
            self._count(t, z, -1)
            if not zs:
                del self._in[t]
        if z in self._loiter:
            entered = was[0] if was is not None else self._gone.get((t, z), _NO_VISIT)[0]
            self._gone[(t, z)] = (entered, et)

    def _count(self, t: int, z: int, step: int) -> None:
        """Tag ``t`` is now inside zone ``z`` (``step`` 1) or no more (-1)."""
        if z in self._exit:
            self.n_exit[t] += step
            members = self._exit_members.setdefault(z, set())
            if step > 0:
                members.add(t)
            else:
                members.discard(t)
                if not members:
                    del self._exit_members[z]
        if z in self._restricted:
            self.n_restricted[t] += step
        if z in self._loiter:
            self.n_loiter[t] += step

    def zones_of(self, i: int) -> list[int]:
        """Indices of the zones tag ``i`` is inside, ascending."""
        return sorted(self._in.get(i, ()))

    def loiter_clocks(self) -> tuple[IntArray, IntArray, FloatArray]:
        """(tag, zone, entered_t) of every tag inside a loiter zone, one row per such pair;
        entered_t: since when its loiter clock runs (NaN: unknown)."""
        rows = [(t, z, v[0]) for t in np.flatnonzero(self.n_loiter).tolist()
                for z, v in self._in[t].items() if z in self._loiter]  # fmt: skip
        tag = np.array([r[0] for r in rows], dtype=np.intp)
        zone = np.array([r[1] for r in rows], dtype=np.intp)
        return tag, zone, np.array([r[2] for r in rows], dtype=np.float64)

    def exit_mates(self, i: int) -> set[int]:
        """The other tags inside an exit zone tag ``i`` is inside."""
        mates: set[int] = set()
        for z in self._in.get(i, ()):
            mates |= self._exit_members.get(z, set())
        mates.discard(i)
        return mates

    def dense(self) -> BoolArray:
        """(N, Z) bool membership, built on each call: for inspection and tests only (10,000
        tags x 1,400 zones: 14 MB)."""
        out = np.zeros((len(self.n_exit), self.n_zones), dtype=bool)
        for t, zs in self._in.items():
            out[t, list(zs)] = True
        return out
