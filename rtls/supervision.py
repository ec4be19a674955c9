"""Supervision ("positive safety"): debounced conditions, silence of gateways, door readers and
the broker link. Pure: every call takes ``now``; docs/rules.md describes each alarm.

:class:`Latch` is the no-flapping state machine every rule of :mod:`rtls.conditions` uses: a
condition rises when its raw criterion holds and falls only after the raw criterion has been
false for a hold time. :class:`Supervision` turns "when was this source last heard" into
``gateway_silent``, ``reader_silent`` and ``broker_link_lost`` conditions, with a grace period
after the first evaluation and after the broker link comes back (nothing is heard then, and a
flood of silence alarms would only repeat ``broker_link_lost``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls import geometry
from rtls.alarm import AlarmType, Condition, Location, Priority
from rtls.decode_result import SourceStatus
from rtls.site import Site, ZoneKind

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]

_EPS = 1e-9
BROKER = "broker"  # subject of the broker_link_lost condition
NEAR_EXIT_M = 5.0  # a gateway this close to an exit zone watches an exit: its silence is high


class Latch:
    """On/off state of S subjects without flapping.

    :meth:`step` raises a subject when its raw criterion holds (delays belong in the raw
    criterion) and clears it once the raw criterion has been false for ``hold`` seconds without
    a break. ``eligible`` False clears at once (a discharged baby, a tag out of service)."""

    def __init__(self, n: int) -> None:
        self.active = np.zeros(n, dtype=bool)
        self._clear_since = np.full(n, np.nan)

    def step(
        self, now: float, raw: ArrayLike, hold: ArrayLike, eligible: ArrayLike | None = None
    ) -> tuple[IntArray, IntArray]:
        """Advance to ``now`` with raw (S,) bool and hold (S,) or one number of seconds;
        returns the indices raised and cleared."""
        r = np.asarray(raw, dtype=bool)
        ok = np.ones_like(r) if eligible is None else np.asarray(eligible, dtype=bool)
        r = r & ok
        a, since = self.active, self._clear_since
        rise = r & ~a
        since[a & r] = np.nan
        falling = a & ~r
        np.copyto(since, now, where=falling & np.isnan(since))
        with np.errstate(invalid="ignore"):
            drop = falling & ((now - since >= np.asarray(hold, dtype=np.float64) - _EPS) | ~ok)
        a[rise] = True
        a[drop] = False
        since[drop] = np.nan
        return np.flatnonzero(rise), np.flatnonzero(drop)


class HeardLike(Protocol):
    """When each gateway and door reader last proved alive (engine receive time, NaN: never);
    :class:`rtls.decode_counters.DecodeCounters` is one."""

    @property
    def gateway_last_heard(self) -> NDArray[np.float64]: ...

    @property
    def reader_last_heard(self) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class Heard:
    """What the service knows of its sources for one evaluation: ``gateway_last_heard`` (G,)
    and ``reader_last_heard`` (R,) receive times (NaN: never; e.g. the decoder's counters), and
    ``status``: the status / health updates decoded since the last evaluation, in order (a
    reader's ``offline`` last will is what makes an idle reader silent)."""

    gateway_last_heard: NDArray[np.float64]
    reader_last_heard: NDArray[np.float64]
    status: Sequence[SourceStatus] = ()

    @classmethod
    def from_counters(cls, counters: HeardLike, status: Sequence[SourceStatus] = ()) -> Heard:
        return cls(counters.gateway_last_heard, counters.reader_last_heard, tuple(status))


def _f(value: float) -> float | None:
    """A JSON-safe float (None for NaN / infinities)."""
    return round(float(value), 3) if math.isfinite(value) else None


class Supervision:
    """Silence of gateways and door readers, and the broker link, for one site.

    A gateway is silent after ``gateway_silent_s`` without any message proving it alive (a
    batch, its online status, its health). A door reader sends nothing while no tag passes, so
    it is silent when its ``offline`` last will has stood for ``reader_silent_s``, or when it
    was never heard, or (once it has sent a health message) when it stayed quiet that long.
    Times count from the *epoch*: the first evaluation, and again when the broker link comes
    back; no silence rises before ``startup_grace_s`` after the epoch, or while the link is
    down."""

    def __init__(self, site: Site) -> None:
        self.site = site
        infra = site.rules.infrastructure
        self.params = infra
        g, r = len(site.gateways), len(site.door_readers)
        self.gateway = Latch(g)
        self.reader = Latch(r)
        self.broker = Latch(1)
        self.epoch = math.nan
        self.link_up = True
        self.link_down_since = math.nan
        self._reader_offline = np.full(r, np.nan)  # received time of a standing offline will
        self._reader_beats = np.zeros(r, dtype=bool)  # has sent health: silence counts too
        self._gw_last = np.full(g, np.nan)
        self._rd_last = np.full(r, np.nan)
        self.gateway_location, self.gateway_priority = _gateway_places(site)
        self.reader_location = _reader_places(site)

    # -- state -------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """The first evaluation: supervision counts from here."""
        if math.isnan(self.epoch):
            self.epoch = now

    def suspended(self, now: float) -> bool:
        """True during the grace period or while the broker link is down: no silence rises."""
        return (not self.link_up) or now - self.epoch < self.params.startup_grace_s - _EPS

    def link(self, now: float, up: bool) -> list[Condition]:
        """The service's MQTT link went up or down; returns conditions due at once."""
        self.start(now)
        if up and not self.link_up:
            self.epoch = now  # nothing was heard while down: count silence from here, with grace
            self.link_down_since = math.nan
        elif not up and self.link_up:
            self.link_down_since = now
        self.link_up = up
        return self._broker(now)

    def _broker(self, now: float) -> list[Condition]:
        p = self.params
        down = (not self.link_up) and now - self.link_down_since >= p.broker_lost_s - _EPS
        rise, drop = self.broker.step(now, [down], p.clear_hold_s)
        detail = {"down_since": _f(self.link_down_since)}
        return [Condition(AlarmType.BROKER_LINK_LOST, BROKER, True, now, None, detail)
                for _ in rise] + [Condition(AlarmType.BROKER_LINK_LOST, BROKER, False, now)
                                  for _ in drop]  # fmt: skip

    # -- one evaluation ----------------------------------------------------------------------
    def step(
        self, now: float, heard: HeardLike | None, status: Sequence[SourceStatus] = ()
    ) -> list[Condition]:
        """Gateway, reader and broker conditions at ``now`` from ``heard`` (None: nothing new)
        and status updates (a repeated update changes nothing)."""
        self.start(now)
        p = self.params
        if heard is not None:
            self._fold_times(heard)
            self._fold_status(getattr(heard, "status", ()))
        self._fold_status(status)
        frozen = self.suspended(now)
        out = self._broker(now)

        ref = np.fmax(self._gw_last, self.epoch)
        raw = now - ref >= p.gateway_silent_s - _EPS
        if frozen:
            raw = self.gateway.active.copy()
        hold = max(p.clear_hold_s, p.gateway_silent_s)
        rise, drop = self.gateway.step(now, raw, hold)
        for i in rise.tolist():
            out.append(Condition(
                AlarmType.GATEWAY_SILENT, self.site.gateways[i].id, True, now,
                self.gateway_location[i], {"last_heard_t": _f(self._gw_last[i])},
                self.gateway_priority[i],
            ))  # fmt: skip
        out += [Condition(AlarmType.GATEWAY_SILENT, self.site.gateways[i].id, False, now)
                for i in drop.tolist()]  # fmt: skip

        last = self._rd_last
        never = np.isnan(last) & (now - self.epoch >= p.reader_silent_s - _EPS)
        with np.errstate(invalid="ignore"):
            offline = now - self._reader_offline >= p.reader_silent_s - _EPS
            quiet = self._reader_beats & (now - np.fmax(last, self.epoch) >= p.reader_silent_s)
        raw = never | offline | quiet
        if frozen:
            raw = self.reader.active.copy()
        rise, drop = self.reader.step(now, raw, p.clear_hold_s)
        for i in rise.tolist():
            why = "offline" if offline[i] else ("never_heard" if never[i] else "quiet")
            out.append(Condition(
                AlarmType.READER_SILENT, self.site.door_readers[i].id, True, now,
                self.reader_location[i], {"last_heard_t": _f(last[i]), "why": why},
            ))  # fmt: skip
        out += [Condition(AlarmType.READER_SILENT, self.site.door_readers[i].id, False, now)
                for i in drop.tolist()]  # fmt: skip
        return out

    def _fold_times(self, heard: HeardLike) -> None:
        gw = np.asarray(heard.gateway_last_heard, dtype=np.float64)
        rd = np.asarray(heard.reader_last_heard, dtype=np.float64)
        if gw.shape == self._gw_last.shape:
            self._gw_last = np.fmax(self._gw_last, gw)
        if rd.shape == self._rd_last.shape:
            self._rd_last = np.fmax(self._rd_last, rd)
        self._reader_back()

    def _fold_status(self, status: Sequence[SourceStatus]) -> None:
        for s in status:  # a few per tick at most
            alive = s.state != "offline"
            if s.source == "gateway" and 0 <= s.index < len(self._gw_last) and alive:
                self._gw_last[s.index] = np.fmax(self._gw_last[s.index], s.received_t)
            elif s.source == "reader" and 0 <= s.index < len(self._rd_last):
                if alive:
                    self._rd_last[s.index] = np.fmax(self._rd_last[s.index], s.received_t)
                    self._reader_offline[s.index] = np.nan
                    self._reader_beats[s.index] |= s.state == "health"
                elif np.isnan(self._reader_offline[s.index]):
                    self._reader_offline[s.index] = s.received_t
        self._reader_back()

    def _reader_back(self) -> None:
        """A read or online status after the last will proves the reader back."""
        with np.errstate(invalid="ignore"):
            back = self._rd_last > self._reader_offline
        self._reader_offline[back] = np.nan

    def state(self) -> dict[str, Any]:
        """A JSON-able digest for the technicians' console."""
        return {
            "epoch": _f(self.epoch), "link_up": self.link_up,
            "gateways_silent": [self.site.gateways[i].id
                                for i in np.flatnonzero(self.gateway.active).tolist()],
            "readers_silent": [self.site.door_readers[i].id
                               for i in np.flatnonzero(self.reader.active).tolist()],
        }  # fmt: skip


def _smallest_zone(site: Site, floor: str, xy: tuple[float, float]) -> str | None:
    zones = site.zones_at(floor, xy)
    return zones[0].id if zones else None


def _gateway_places(site: Site) -> tuple[list[Location], list[Priority | None]]:
    """Each gateway's Location, and HIGH priority for gateways within NEAR_EXIT_M of an exit
    zone ("a silent exit gateway means a blind exit", DOMAIN.md); None: the catalogue's."""
    locs: list[Location] = []
    prio: list[Priority | None] = []
    for g in site.gateways:
        xy = (float(g.position[0]), float(g.position[1]))
        locs.append(Location(g.floor, _smallest_zone(site, g.floor, xy), xy[0], xy[1], 0.0))
        exits = site.zones_of(g.floor, [ZoneKind.EXIT])
        near = any(_distance_to_polygon(xy, z.polygon) <= NEAR_EXIT_M for z in exits)
        prio.append(Priority.HIGH if near else None)
    return locs, prio


def _reader_places(site: Site) -> list[Location]:
    out = []
    for r in site.door_readers:
        door = site.door(r.door)
        (x1, y1), (x2, y2) = door.points
        xy = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
        out.append(Location(door.floor, _smallest_zone(site, door.floor, xy), xy[0], xy[1], 0.0))
    return out


def _distance_to_polygon(p: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> float:
    """Distance from ``p`` to a polygon (0 inside)."""
    if geometry.points_in_polygon([p], polygon)[0]:
        return 0.0
    return float(geometry.segment_distance([p], geometry.polygon_segments(polygon)).min())
