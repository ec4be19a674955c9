"""The ``tag_spoofing`` rule: rejected advertisements that show an attack -> one condition per tag.

:class:`SpoofingRule` folds the engine's ``TickResult.spoofing`` rows (rtls.tagauth: a replayed
advertisement, or one with a wrong or missing code from a tag whose key is in use) into one
condition per tag, raised at the first such row and cleared once none came for
``[security] spoofing_clear_s``. The alarm latches (docs/alarms.md): a person resolves it. The
detail says what was seen (``replay`` or ``clone``), how often, and which gateways heard it; the
location is the gateway that heard it loudest (the attacker is near it), with its zone. Pure:
every call takes ``now``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from rtls.alarm import AlarmType, Condition, Location
from rtls.geometry import points_in_polygon
from rtls.site import Site
from rtls.tagauth import REASONS, REPLAY

MAX_GATEWAYS = 8  # gateways named in the detail


class SpoofingRule:
    """Spoofing conditions of the site's tags (site order)."""

    def __init__(self, site: Site) -> None:
        self.tag_ids = tuple(t.id for t in site.tags)
        self.gateway_ids = tuple(g.id for g in site.gateways)
        self.clear_s = site.security.spoofing_clear_s
        floors = {f.id for f in site.floors}
        self._where: list[Location] = []
        for g in site.gateways:
            zones = [z for z in site.zones if z.floor == g.floor and z.floor in floors
                     and points_in_polygon(np.array([g.position[:2]]), z.polygon)[0]]  # fmt: skip
            zone = min(zones, key=lambda z: _area(z.polygon)).id if zones else None
            self._where.append(Location(g.floor, zone, float(g.position[0]),
                                        float(g.position[1]), None))  # fmt: skip
        n = len(self.tag_ids)
        self.active = np.zeros(n, dtype=bool)
        self.last_t = np.full(n, np.nan)  # newest attack row per tag
        self._seen: dict[int, dict[str, Any]] = {}  # per active tag: counts and gateways
        self._started = False

    def update(self, now: float, rows: NDArray[np.void]) -> list[Condition]:
        """Fold one tick's attack rows in and return the raised / cleared conditions. The
        first call also clears every tag's condition: after a restart nothing is known to be
        going on, and a restored alarm resolved later must not hold its condition for ever."""
        out: list[Condition] = []
        if not self._started:
            self._started = True
            out += [Condition(AlarmType.TAG_SPOOFING, t, False, now) for t in self.tag_ids]
        if len(rows):
            ok = (rows["tag"] >= 0) & (rows["tag"] < len(self.tag_ids))
            rows = rows[ok]
            for tag in np.unique(rows["tag"]).tolist():
                mine = rows[rows["tag"] == tag]
                out += self._fold(now, int(tag), mine)
        stale = self.active & ~(now - self.last_t < self.clear_s)
        for i in np.flatnonzero(stale).tolist():
            self.active[i] = False
            self._seen.pop(i, None)
            out.append(Condition(AlarmType.TAG_SPOOFING, self.tag_ids[i], False, now))
        return out

    def _fold(self, now: float, tag: int, rows: NDArray[np.void]) -> list[Condition]:
        seen = self._seen.setdefault(tag, {"replay": 0, "clone": 0, "gateways": {},
                                           "first_t": now})  # fmt: skip
        replay = rows["reason"] == REPLAY
        seen["replay"] += int(np.count_nonzero(replay))
        seen["clone"] += int(np.count_nonzero(~replay))
        gateways: dict[int, float] = seen["gateways"]
        for g, r in zip(rows["gateway"].tolist(), rows["rssi"].tolist(), strict=True):
            gateways[g] = max(gateways.get(g, -1e9), r)
        self.last_t[tag] = now
        was = bool(self.active[tag])
        self.active[tag] = True
        loudest = max(gateways, key=lambda g: gateways[g])
        where = self._where[loudest] if 0 <= loudest < len(self._where) else Location()
        if was:  # restated: the book moves the alarm to the latest place, no new transition
            return [Condition(AlarmType.TAG_SPOOFING, self.tag_ids[tag], True, now, where)]
        kinds = sorted({"replay" if c == REPLAY else "clone" for c in rows["reason"].tolist()})
        order = sorted(gateways, key=lambda g: -gateways[g])[:MAX_GATEWAYS]
        detail = {
            "tag": self.tag_ids[tag],
            "attack": " and ".join(kinds),
            "reasons": sorted({REASONS[int(c)] for c in rows["reason"].tolist()}),
            "observations": len(rows),
            "gateways": [self.gateway_ids[g] for g in order if 0 <= g < len(self.gateway_ids)],
            "rssi_dbm": round(gateways[loudest], 1),
        }
        return [Condition(AlarmType.TAG_SPOOFING, self.tag_ids[tag], True, now, where, detail)]


def _area(polygon: list[tuple[float, float]]) -> float:
    p = np.asarray(polygon, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)
