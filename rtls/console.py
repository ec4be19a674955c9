"""What the console shows, as JSON-ready documents (docs/console-api.md). Pure: no I/O, no clock.

- :func:`site_document`: the site's geometry for the floor plans (sent once per snapshot).
- :class:`WardMap`: which ward an alarm, a baby or a gateway belongs to, for users' scopes. A
  ward is a ``secure_perimeter`` zone; everything on its floor belongs to it (the exit zones and
  lobby of a maternity floor are the maternity staff's concern). Objects on a floor without a
  ward, and alarms without a place, are site-wide (``None``): every scope sees them.
- :func:`alarm_document`, :func:`ward_board`, :func:`technical_document`: message bodies.
- :class:`PositionRows`: a tick's fixes as compact rows, one JSON string per tag.
- :class:`ReplayBuffer`: the recent alarm messages a reconnecting client is replayed from.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import BATTERY_UNKNOWN
from rtls.alarm import CATALOGUE, Alarm, Category
from rtls.engine import TickResult
from rtls.site import Site, ZoneKind
from rtls.ward import Ward


def _r(v: float) -> float:
    return round(float(v), 2)


def _pts(points: Iterable[Sequence[float]]) -> list[list[float]]:
    return [[_r(p[0]), _r(p[1])] for p in points]


def site_document(site: Site) -> dict[str, Any]:
    """Floors, walls, doors, zones, gateways, door readers, tags and wards (metres, y up)."""
    m = site.model
    doors = {d.id: d for d in m.doors}
    readers = []
    for r in m.door_readers:
        door = doors[r.door]
        if r.position is not None:
            x, y = r.position[0], r.position[1]
        else:
            (x0, y0), (x1, y1) = door.points
            x, y = (x0 + x1) / 2, (y0 + y1) / 2
        readers.append({"id": r.id, "door": r.door, "floor": door.floor, "x": _r(x), "y": _r(y)})
    return {
        "id": m.site.id,
        "name": m.site.name,
        "floors": [{"id": f.id, "name": f.name, "outline": _pts(f.outline)} for f in m.floors],
        "walls": [{"floor": w.floor, "points": _pts(w.points)} for w in m.walls],
        "doors": [{"id": d.id, "floor": d.floor, "kind": d.kind, "points": _pts(d.points),
                   "lockable": d.lockable} for d in m.doors],
        "zones": [{"id": z.id, "name": z.name or z.id, "floor": z.floor, "kind": str(z.kind),
                   "polygon": _pts(z.polygon)} for z in m.zones],
        "gateways": [{"id": g.id, "floor": g.floor, "x": _r(g.position[0]),
                      "y": _r(g.position[1])} for g in m.gateways],
        "readers": readers,
        "tags": [{"id": t.id, "kind": str(t.kind), "name": t.name, "home": t.home}
                 for t in m.tags],
        "wards": [{"id": z.id, "name": z.name or z.id, "floor": z.floor}
                  for z in m.zones if z.kind is ZoneKind.SECURE_PERIMETER],
    }


class WardMap:
    """Which ward (secure perimeter zone id) a thing belongs to; None: site-wide."""

    def __init__(self, site: Site) -> None:
        m = site.model
        self.wards: tuple[str, ...] = tuple(
            z.id for z in m.zones if z.kind is ZoneKind.SECURE_PERIMETER
        )
        self._floor_ward: dict[str, str] = {}
        for z in m.zones:
            if z.kind is ZoneKind.SECURE_PERIMETER:
                self._floor_ward.setdefault(z.floor, z.id)
        zone_floor = {z.id: z.floor for z in m.zones}
        doors = {d.id: d.floor for d in m.doors}
        self._subject_floor: dict[str, str] = {}
        for g in m.gateways:
            self._subject_floor[g.id] = g.floor
        for r in m.door_readers:
            self._subject_floor[r.id] = doors[r.door]
        for d in m.doors:
            self._subject_floor[d.id] = d.floor
        for t in m.tags:
            if t.home is not None and t.home in zone_floor:
                self._subject_floor[t.id] = zone_floor[t.home]
        self._zone_floor = zone_floor

    def of_floor(self, floor: str | None) -> str | None:
        return None if floor is None else self._floor_ward.get(floor)

    def of_subject(self, subject: str) -> str | None:
        """The ward of a tag (by its home room), gateway, door reader or door."""
        return self.of_floor(self._subject_floor.get(subject))

    def of_alarm(self, alarm: Alarm) -> str | None:
        """The ward of the alarm's place (its floor, else its zone's floor), else its subject's."""
        loc = alarm.location
        floor = loc.floor if loc.floor is not None else self._zone_floor.get(loc.zone or "")
        if floor is not None:
            return self.of_floor(floor)
        return self.of_subject(alarm.subject)


def is_technical(alarm: Alarm) -> bool:
    return CATALOGUE[alarm.type].category is Category.TECHNICAL


def alarm_document(alarm: Alarm, wards: WardMap) -> dict[str, Any]:
    """The alarm object of the API: :meth:`Alarm.as_dict` plus ``ward`` and ``category``."""
    d = alarm.as_dict()
    d["ward"] = wards.of_alarm(alarm)
    d["category"] = CATALOGUE[alarm.type].category.value
    return d


def ward_board(
    ward: Ward, site: Site, wards: WardMap, battery: NDArray[np.uint8] | None
) -> dict[str, Any]:
    """The ward board: bonded babies with pairing, sign-out and battery; the Code Pink.

    ``battery`` (N,) per site tag, percent or ``BATTERY_UNKNOWN`` (the rules' last reading)."""
    index = {t.id: i for i, t in enumerate(site.tags)}
    names = {t.id: t.name for t in site.tags}
    window = ward.rules.pairing_window_s
    babies = []
    for b in ward.babies:
        pct: int | None = None
        if battery is not None and b.tag in index:
            raw = int(battery[index[b.tag]])
            pct = None if raw == BATTERY_UNKNOWN else raw
        so = b.sign_out
        babies.append({
            "tag": b.tag, "name": b.name or names.get(b.tag), "ward": wards.of_subject(b.tag),
            "admitted_t": b.admitted_t, "mother": b.mother,
            "mother_name": names.get(b.mother) if b.mother else None,
            "paired_t": b.paired_t,
            "pairing_due_t": None if b.mother else b.admitted_t + window,
            "sign_out": None if so is None else {
                "escort": so.escort, "by": so.by, "until_t": so.due_t, "reason": so.reason},
            "battery_pct": pct,
        })  # fmt: skip
    return {"babies": babies, "code_pink": ward.to_dict()["code_pink"]}


def filter_board(board: Mapping[str, Any], visible: Iterable[str | None]) -> dict[str, Any]:
    """The board restricted to babies of the wards in ``visible`` (None: site-wide)."""
    keep = set(visible)
    return {**board, "babies": [b for b in board["babies"] if b["ward"] in keep]}


def technical_document(
    site: Site,
    now: float,
    gateway_last_heard: NDArray[np.float64],
    reader_last_heard: NDArray[np.float64],
    decoder_summary: Mapping[str, Any],
    unknown_tags: Sequence[Mapping[str, Any]],
    ingest_rate: float,
    tick_ms_p99: float,
) -> dict[str, Any]:
    """The technicians' view: gateways and readers online (heard within their silence limit),
    last heard, unknown tags, decode errors by reason, ingest rate and tick time."""
    infra = site.rules.infrastructure
    doors = {d.id: d.floor for d in site.model.doors}

    def row(id_: str, floor: str, last: float, limit: float) -> dict[str, Any]:
        heard = math.isfinite(last)
        return {"id": id_, "floor": floor, "online": heard and now - last <= limit,
                "last_heard_t": last if heard else None}  # fmt: skip

    gws = [row(g.id, g.floor, float(gateway_last_heard[i]), infra.gateway_silent_s)
           for i, g in enumerate(site.model.gateways)]  # fmt: skip
    rds = [row(r.id, doors[r.door], float(reader_last_heard[i]), infra.reader_silent_s)
           for i, r in enumerate(site.model.door_readers)]  # fmt: skip
    errors: dict[str, int] = {}
    for key in ("rejected", "records"):
        for reason, n in dict(decoder_summary.get(key) or {}).items():
            errors[reason] = errors.get(reason, 0) + int(n)
    return {
        "gateways": gws,
        "readers": rds,
        "unknown_tags": list(unknown_tags),
        "decode_errors": errors,
        "ingest_rate": round(ingest_rate, 1),
        "tick_ms_p99": round(tick_ms_p99, 3),
    }


POSITION_DECIMALS: Final = 1
"""Metres are sent to 0.1 m: finer than the plan can draw and far finer than the uncertainty, and a
tag that has not moved by that much is not re-sent."""


class PositionRows:
    """A tick's fixes for the console as compact rows (docs/console-api.md, ``positions``):
    ``[tag, x, y, floor, zone, uncertainty]``, x / y / floor / uncertainty ``null`` when the
    position is unknown, zone ``null`` outside every zone. Ids are JSON-escaped once; each row is
    formatted straight to a string (no dict, no ``json.dumps`` per row)."""

    def __init__(self, site: Site) -> None:
        self.tags = [json.dumps(t.id) for t in site.tags]
        self.floors = [json.dumps(f.id) for f in site.floors]
        self.zones = [json.dumps(z.id) for z in site.zones]

    def encode(self, result: TickResult, located: NDArray[np.intp]) -> list[tuple[int, str]]:
        """(tag index, row JSON) of the tags ``located`` (K,) indices into ``site.tags``."""
        est = result.estimate
        known = est.known[located].tolist()
        xy = np.round(est.xy[located], POSITION_DECIMALS).tolist()
        u = est.uncertainty[located]
        unc = np.where(np.isfinite(u), np.round(u, POSITION_DECIMALS), -1.0).tolist()
        floor = est.floor[located].tolist()
        zone = result.zone[located].tolist()
        tags, floors, zones = self.tags, self.floors, self.zones
        columns = zip(located.tolist(), known, xy, unc, floor, zone, strict=True)
        return [
            (i, f"[{tags[i]},{p[0]!r},{p[1]!r},{floors[f]},{zones[z] if z >= 0 else 'null'},"
                f"{v if v >= 0 else 'null'}]")
            if k
            else (i, f"[{tags[i]},null,null,null,{zones[z] if z >= 0 else 'null'},null]")
            for i, k, p, v, f, z in columns
        ]  # fmt: skip


@dataclass(frozen=True)
class Replayed:
    seq: int
    ward: str | None
    message: bytes


class ReplayBuffer:
    """The last ``size`` alarm messages, by sequence number, for clients that resume."""

    def __init__(self, size: int = 10_000) -> None:
        self._items: deque[Replayed] = deque(maxlen=size)
        self.last_seq = 0

    def add(self, seq: int, ward: str | None, message: bytes) -> None:
        self._items.append(Replayed(seq, ward, message))
        self.last_seq = seq

    def since(self, seq: int) -> list[Replayed] | None:
        """Messages after ``seq`` in order; None if some of them were already dropped (or
        ``seq`` is from another server run): the client needs a snapshot instead."""
        if seq > self.last_seq or seq < 0:
            return None
        if seq == self.last_seq:
            return []
        if not self._items or self._items[0].seq > seq + 1:
            return None
        return [r for r in self._items if r.seq > seq]
