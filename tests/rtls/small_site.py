"""A small one-floor site for the pure rule tests (ward, lone workers)."""

from __future__ import annotations

from typing import Any

from rtls.site import Site

INFANTS = ("B1", "B2", "B3")
MOTHERS = ("M1", "M2", "M3")
STAFF = ("S1", "S2")


def small_site(rules: dict[str, Any] | None = None) -> Site:
    """Floor L1 (20 m x 10 m) with rooms R1, R2; tags B1-B3 (infant), M1-M3 (mother),
    S1-S2 (staff), in that order (tag indices 0-7)."""
    kinds = [("infant", INFANTS), ("mother", MOTHERS), ("staff", STAFF)]
    tags = [{"id": t, "kind": k} for k, ids in kinds for t in ids]
    for serial, tag in enumerate(tags, start=101):
        tag["serial"] = serial
    data: dict[str, Any] = {
        "site": {"id": "mat", "name": "Maternity"},
        "floors": [{"id": "L1", "name": "Ground", "elevation": 0.0,
                    "outline": [[0, 0], [20, 0], [20, 10], [0, 10]]}],
        "zones": [
            {"id": "R1", "floor": "L1", "kind": "room",
             "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]]},
            {"id": "R2", "floor": "L1", "kind": "room",
             "polygon": [[10, 0], [20, 0], [20, 10], [10, 10]]},
        ],
        "tags": tags,
        "rules": rules or {},
    }  # fmt: skip
    return Site.from_mapping(data)
