"""The end-to-end bench's site: a hospital group made of copies of the example building.

Building 0 is the example site as shipped (its ids, its 60 tags: the ward the engine admits with
``--admit-all``); buildings 1.. are copies with every id prefixed ``Bnn-``. Each building has
two floors, 40 gateways, 4 door readers and 56 zones, so 25 buildings make a group of 1,000
gateways. Bulk tags are staff badges spread over all buildings; the bench's probe tags (infants
for strap tamper, door exits and zone breaches, staff badges for SOS) live in building 0.

The group site is written to a TOML file for ``rtls engine --site``; the load generator
(:mod:`bench.e2e_load`) rebuilds the same site from the same arguments.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.simdata import example_data
from bench.site_toml import to_toml
from rtls.site import Site

GATEWAYS_PER_BUILDING = 40
BULK_SERIAL0 = 5_000_000
PROBE_SERIAL0 = 9_000_000


@dataclass(frozen=True)
class GroupSpec:
    """What the group site holds: ``buildings`` copies, ``bulk`` staff badges spread over all
    buildings, and ``probes`` probe tags of each kind in building 0 (infants ``P-I…`` and
    staff ``P-S…``). ``exit_dwell_s`` replaces the exit zones' dwell (0: the bench measures
    zone-breach latency without it)."""

    buildings: int = 1
    bulk: int = 1000
    probes: int = 0
    exit_dwell_s: float = 0.0


def _prefix(b: int, ident: str) -> str:
    return ident if b == 0 else f"B{b:02d}-{ident}"


def _building(d: dict[str, Any], b: int) -> dict[str, list[dict[str, Any]]]:
    """Every list of the example's layout with ids (and references) prefixed for building b."""

    def p(ident: str) -> str:
        return _prefix(b, ident)

    out: dict[str, list[dict[str, Any]]] = {}
    out["floors"] = [{**f, "id": p(f["id"]), "name": f"{f['name']} ({b})"} for f in d["floors"]]
    out["walls"] = [{**w, "id": p(w["id"]), "floor": p(w["floor"])} for w in d["walls"]]
    out["doors"] = [{**x, "id": p(x["id"]), "floor": p(x["floor"])} for x in d["doors"]]
    out["door_readers"] = [{**r, "id": p(r["id"]), "door": p(r["door"])}
                           for r in d["door_readers"]]  # fmt: skip
    out["gateways"] = [{**g, "id": p(g["id"]), "floor": p(g["floor"])} for g in d["gateways"]]
    out["zones"] = [{**z, "id": p(z["id"]), "floor": p(z["floor"])} for z in d["zones"]]
    out["connectors"] = [{**c, "id": p(c["id"]),
                          "points": {p(k): v for k, v in c["points"].items()}}
                         for c in d["connectors"]]  # fmt: skip
    return out


def group_mapping(spec: GroupSpec) -> dict[str, Any]:
    """The group site as a mapping (``Site.from_mapping``)."""
    d = copy.deepcopy(example_data())
    for z in d["zones"]:
        if z["kind"] == "exit":
            z["rules"] = {**z.get("rules", {}), "exit_dwell_s": spec.exit_dwell_s}
    parts = [_building(d, b) for b in range(spec.buildings)]
    for key in ("floors", "walls", "doors", "door_readers", "gateways", "zones", "connectors"):
        d[key] = [item for part in parts for item in part[key]]
    corridors = [z["id"] for z in d["zones"] if z["kind"] == "corridor"]
    tags = list(d["tags"])
    for i in range(spec.bulk):
        tags.append({"id": f"S{i:06d}", "kind": "staff", "serial": BULK_SERIAL0 + i,
                     "home": corridors[i % len(corridors)]})  # fmt: skip
    rooms = [z["id"] for z in d["zones"] if z["kind"] == "room" and z["floor"] == "L1"]
    for i in range(spec.probes):
        tags.append({"id": f"P-I{i:04d}", "kind": "infant", "serial": PROBE_SERIAL0 + 2 * i,
                     "home": rooms[i % len(rooms)]})  # fmt: skip
        tags.append({"id": f"P-S{i:04d}", "kind": "staff", "serial": PROBE_SERIAL0 + 2 * i + 1,
                     "home": corridors[0]})  # fmt: skip
    d["tags"] = tags
    d["site"] = {**d["site"], "id": "e2e-group", "name": f"Bench group of {spec.buildings}"}
    return d


def group_site(spec: GroupSpec) -> Site:
    """The group site, validated."""
    return Site.from_mapping(group_mapping(spec))


def write_group_site(spec: GroupSpec, path: Path) -> Path:
    """Write the group site as TOML (for ``rtls engine --site``); returns ``path``."""
    path.write_text(to_toml(group_mapping(spec)), encoding="utf-8")
    return path


def building_of_gateways(site: Site) -> NDArray[np.intp]:
    """(G,) building index of each gateway (they come in blocks of 40)."""
    return np.arange(len(site.gateways)) // GATEWAYS_PER_BUILDING
