"""A small synthetic ward for the rules and actuator tests, and a driver that feeds
:class:`rtls.conditions.Rules` ticks built from given positions through a real
:class:`rtls.zones.ZoneMembership` (the engine's zone stage without the radio).

Floor F1 (40 x 10 m)::

    x 0-8 R1 | 8-16 R2 | 16-21 UTIL (restricted) |            y 0-6, rooms south
    corridor y 6-10, x 0-30; APPROACH x 18-24 (loiter_s 30); EXIT zone x 24-30
    exit door D-EX at x = 30 (lockable, reader RD-EX), LOBBY x 30-40 (public, elevator EL)

Floor F2 is an empty copy joined by elevator connector EL and stairs ST.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtls.alarm import AlarmType, Condition
from rtls.conditions import Rules
from rtls.decode_result import READ_DTYPE, TELEMETRY_DTYPE
from rtls.engine import TickResult
from rtls.site import Site
from rtls.supervision import Heard
from rtls.track import TrackEstimate
from rtls.zone_index import ZoneIndex
from rtls.zones import ZoneMembership

T0 = 1_767_225_600.0
SKIN, TAMPER = 0x02, 0x01
LOW_BATTERY, MISMATCH = 0x01, 0x10


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def site_data(**rules: Any) -> dict[str, Any]:
    """The synthetic site as a mapping; ``rules`` replaces tables of ``[rules]``."""

    def floor(fid: str, elev: float) -> dict[str, Any]:
        return {"id": fid, "name": fid, "elevation": elev, "outline": rect(0, 0, 40, 10)}

    zones = [
        {"id": "WARD", "floor": "F1", "kind": "secure_perimeter", "polygon": rect(0, 0, 30, 10)},
        {"id": "R1", "floor": "F1", "kind": "room", "polygon": rect(0, 0, 8, 6)},
        {"id": "R2", "floor": "F1", "kind": "room", "polygon": rect(8, 0, 16, 6)},
        {"id": "UTIL", "floor": "F1", "kind": "restricted", "polygon": rect(16, 0, 21, 6)},
        {"id": "CORR", "floor": "F1", "kind": "corridor", "polygon": rect(0, 6, 30, 10)},
        {"id": "APPROACH", "floor": "F1", "kind": "corridor", "polygon": rect(18, 6, 24, 10),
         "rules": {"loiter_s": 30.0}},
        {"id": "EXIT", "floor": "F1", "kind": "exit", "polygon": rect(24, 6, 30, 10)},
        {"id": "LOBBY", "floor": "F1", "kind": "public", "polygon": rect(30, 0, 40, 10)},
        {"id": "EL-F1", "floor": "F1", "kind": "elevator", "polygon": rect(36, 0, 40, 3)},
        {"id": "EL-F2", "floor": "F2", "kind": "elevator", "polygon": rect(36, 0, 40, 3)},
    ]  # fmt: skip
    gateways = [
        {"id": f"G{i}", "floor": "F1", "position": [x, 5.0, 2.8]}
        for i, x in enumerate((4.0, 12.0, 20.0, 28.0, 35.0), start=1)
    ] + [{"id": "G6", "floor": "F2", "position": [20.0, 5.0, 2.8]}]
    tags = [
        {"id": "B1", "kind": "infant", "serial": 101},
        {"id": "B2", "kind": "infant", "serial": 102},
        {"id": "B3", "kind": "infant", "serial": 103},
        {"id": "M1", "kind": "mother", "serial": 201},
        {"id": "S1", "kind": "staff", "serial": 301},
        {"id": "S2", "kind": "staff", "serial": 302},
        {"id": "REF1", "kind": "reference", "serial": 401, "home": "R1",
         "position": [2.0, 2.0, 1.0]},
        {"id": "M2", "kind": "mother", "serial": 202},
    ]  # fmt: skip
    return {
        "site": {"id": "mini", "name": "Mini ward"},
        "rules": rules,
        "floors": [floor("F1", 0.0), floor("F2", 4.0)],
        "doors": [
            {
                "id": "D-EX",
                "floor": "F1",
                "kind": "exit",
                "points": [[30, 7.4], [30, 8.6]],
                "lockable": True,
            },
            {
                "id": "D-R1",
                "floor": "F1",
                "kind": "room",
                "points": [[3, 6], [4.2, 6]],
                "lockable": True,
            },
            {
                "id": "D-EX2",
                "floor": "F2",
                "kind": "exit",
                "points": [[30, 7.4], [30, 8.6]],
                "lockable": True,
            },
            {"id": "D-EX3", "floor": "F2", "kind": "exit", "points": [[30, 1.4], [30, 2.6]]},
        ],
        "door_readers": [{"id": "RD-EX", "door": "D-EX"}],
        "gateways": gateways,
        "zones": zones,
        "connectors": [
            {"id": "EL", "kind": "elevator", "points": {"F1": [38, 1.5], "F2": [38, 1.5]}},
            {"id": "ST", "kind": "stairs", "points": {"F1": [38, 8], "F2": [38, 8]}},
        ],
        "tags": tags,
    }


def make_site(**rules: Any) -> Site:
    return Site.from_mapping(site_data(**rules))


@dataclass
class FakeWard:
    """The calls of rtls.ward.Ward the rules make."""

    bonded_tags: set[str] = field(default_factory=lambda: {"B1", "B2"})
    signed_out: dict[str, str] = field(default_factory=dict)  # baby -> escort tag
    mothers: dict[str, str] = field(default_factory=lambda: {"B1": "M1"})  # baby -> mother tag
    code_pink_active: bool = False
    asked: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    def bonded(self, tag_id: str) -> bool:
        return tag_id in self.bonded_tags

    def mother_of(self, baby_tag: str) -> str | None:
        return self.mothers.get(baby_tag)

    def exit_authorised(self, baby_tag: str, now: float, escort_near: set[str]) -> bool:
        self.asked.append((baby_tag, frozenset(escort_near)))
        escort = self.signed_out.get(baby_tag)
        return escort is not None and escort in escort_near


Place = tuple[float, float, int]  # x, y, floor index


class Driver:
    """Feeds a Rules positions, telemetry and reads, tick by tick, and keeps every condition.

    Tags in ``places`` are located and heard (each tick counts as a heartbeat unless
    ``silent`` names them); gateways are heard every tick unless listed in ``down``."""

    def __init__(self, site: Site, ward: FakeWard | None = None, t0: float = T0) -> None:
        self.site = site
        self.ward = ward or FakeWard()
        self.rules = Rules(site)
        self.index = ZoneIndex.from_site(site)
        self.membership = ZoneMembership.from_site(site, self.index)
        self.n = len(site.tags)
        self.t = t0
        self.places: dict[str, Place] = {}
        self.silent: set[str] = set()
        self.down: set[str] = set()
        self.status: dict[str, int] = {t.id: SKIN for t in site.tags}
        self.battery: dict[str, int] = {t.id: 90 for t in site.tags}
        self.status2: dict[str, int] = {}  # tag -> status2 flags sent (besides LOW_BATTERY)
        self.gw_last = np.full(len(site.gateways), np.nan)
        self.rd_last = np.full(len(site.door_readers), t0)
        self.log: list[Condition] = []
        self._tag = {t.id: i for i, t in enumerate(site.tags)}
        self._gw = {g.id: i for i, g in enumerate(site.gateways)}

    def tag(self, tag_id: str) -> int:
        return self._tag[tag_id]

    def step(
        self,
        dt: float = 0.5,
        reads: Iterable[tuple[str, str]] = (),
        places: Mapping[str, Place | None] | None = None,
        **kw: Any,
    ) -> list[Condition]:
        """Advance ``dt`` seconds; ``places`` updates positions (None: position unknown);
        ``reads``: (reader id, tag id) read at this instant."""
        self.t += dt
        now = self.t
        for k, v in (places or {}).items():
            if v is None:
                self.places.pop(k, None)
            else:
                self.places[k] = v
        xy = np.full((self.n, 2), np.nan)
        floor = np.full(self.n, -1, dtype=np.int64)
        known = np.zeros(self.n, dtype=bool)
        for k, (x, y, f) in self.places.items():
            i = self._tag[k]
            xy[i], floor[i], known[i] = (x, y), f, True
        tr = self.membership.update(now, xy, floor, known)
        zone = np.where(self.membership.known, self.index.smallest(self.membership.inside), -1)
        cov = np.tile(np.eye(2) * 0.5, (self.n, 1, 1))
        est = TrackEstimate(now, xy, np.zeros((self.n, 2)), floor, cov, known,
                            np.where(known, now, -np.inf))  # fmt: skip
        heard_tags = [t.id for t in self.site.tags if t.id not in self.silent]
        tele = np.zeros(len(heard_tags), dtype=TELEMETRY_DTYPE)
        tele["t"] = now - 0.1
        tele["tag"] = [self._tag[k] for k in heard_tags]
        tele["status"] = [self.status[k] for k in heard_tags]
        tele["status2"] = [(LOW_BATTERY if self.battery[k] < 0 else 0) | self.status2.get(k, 0)
                           for k in heard_tags]  # fmt: skip
        tele["battery"] = [max(self.battery[k], 0) for k in heard_tags]
        located = np.array([self._tag[k] for k in self.places if k not in self.silent], np.intp)
        rd = np.zeros(0, dtype=READ_DTYPE)
        reads = list(reads)
        if reads:
            rd = np.zeros(len(reads), dtype=READ_DTYPE)
            readers = [r.id for r in self.site.door_readers]
            rd["t"] = now
            rd["reader"] = [readers.index(r) for r, _ in reads]
            rd["tag"] = [self._tag[k] for _, k in reads]
            self.rd_last[rd["reader"]] = now
        for g, i in self._gw.items():
            if g not in self.down:
                self.gw_last[i] = now
        tick = TickResult(now, est, zone.astype(np.int64), tr, located, None)
        heard = Heard(self.gw_last.copy(), self.rd_last.copy(), kw.pop("status", ()))
        out = self.rules.evaluate(now, tick, tele, rd, self.ward, heard, **kw)
        self.log += out
        return out

    def run(self, seconds: float, dt: float = 0.5, **kw: Any) -> list[Condition]:
        out: list[Condition] = []
        for _ in range(round(seconds / dt)):
            out += self.step(dt, **kw)
        return out

    def raised(self, type_: AlarmType, subject: str | None = None) -> list[Condition]:
        return [c for c in self.log if c.type is type_ and c.active
                and (subject is None or c.subject == subject)]  # fmt: skip

    def cleared(self, type_: AlarmType, subject: str | None = None) -> list[Condition]:
        return [c for c in self.log if c.type is type_ and not c.active
                and (subject is None or c.subject == subject)]  # fmt: skip

    def types_raised(self) -> set[str]:
        return {c.type.value for c in self.log if c.active}
