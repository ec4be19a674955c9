"""Ground truth of a simulation run: true positions over time and true events (JSON lines).

Tests and benchmarks compare what the engine reports with this. Each line is one object:
``{"type": "position", "t", "id", "floor", "x", "y", "z", "moving", "zones"}`` or
``{"type": "event", "t", "event", ...}`` (docs/scenarios.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import numpy as np
from firmware_sim.motion import MotionTable

from gateways.scenario import Event
from rtls import geometry
from rtls.errors import RtlsError
from rtls.site import Site


class Truth:
    """Collects ground truth in memory and, if ``path`` is given, writes it as JSON lines."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = True) -> None:
        self.records: list[dict[str, Any]] = []
        self.keep = keep
        self._fh: IO[str] | None = None
        if path is not None:
            try:
                self._fh = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise RtlsError(f"{path}: cannot write ground truth: {exc.strerror}") from exc
        self._zones: dict[int, tuple[list[str], list[np.ndarray]]] = {}

    def _emit(self, rec: dict[str, Any]) -> None:
        if self.keep:
            self.records.append(rec)
        if self._fh is not None:
            self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def positions(self, t: float, motion: MotionTable, site: Site) -> None:
        """One position record per tag and actor at time ``t``, with the zones it is in."""
        p = motion.positions(t)
        zones = [[] for _ in range(len(motion))]  # type: list[list[str]]
        for fi, floor in enumerate(site.floors):
            if fi not in self._zones:
                zs = site.zones_of(floor.id)
                self._zones[fi] = ([z.id for z in zs], [np.asarray(z.polygon) for z in zs])
            ids, polys = self._zones[fi]
            rows = np.flatnonzero(p.floor == fi)
            if rows.size == 0 or not ids:
                continue
            member = geometry.points_in_polygons(p.xyz[rows, :2], polys)
            for k, r in enumerate(rows.tolist()):
                zones[r] = [ids[j] for j in np.flatnonzero(member[k]).tolist()]
        for r, name in enumerate(motion.names):
            x, y, z = (round(float(v), 3) for v in p.xyz[r])
            self._emit(
                {
                    "type": "position",
                    "t": round(t, 3),
                    "id": name,
                    "floor": site.floors[int(p.floor[r])].id,
                    "x": x,
                    "y": y,
                    "z": z,
                    "moving": bool(p.moving[r]),
                    "zones": zones[r],
                }
            )

    def event(self, t: float, event: str, **fields: Any) -> None:
        self._emit({"type": "event", "t": round(t, 3), "event": event, **fields})

    def scenario_event(self, t: float, ev: Event) -> None:
        fields = ev.model_dump(exclude_none=True, exclude={"at_s", "action"}, mode="json")
        self.event(t, ev.action, **fields)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
