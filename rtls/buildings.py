"""Buildings: groups of floors joined by stairs or elevators, located apart.

A site may hold several buildings (a hospital group's campus). A tag in one building is heard by
that building's gateways only, so locating it against every gateway of the site wastes work and
memory in proportion to the number of buildings: the locator's arrays are (gateways × tags).
:func:`buildings_of` cuts the site into buildings, the connected components of its floors
under its ``[[connectors]]`` (a site without connectors is one building: nothing says its
floors are apart); :func:`assign` puts each tag in the building whose gateways heard it most.
The engine then locates each building's tags with that building's gateways only
(docs/locator.md, "Buildings").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rtls.locate import Anchors
from rtls.site import Site

IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class Building:
    """``floors`` (F_b,) and ``gateways`` (G_b,) sorted site indices; ``anchors`` those gateways
    and floors, with floor indices local to the building (position in ``floors``)."""

    floors: IntArray
    gateways: IntArray
    anchors: Anchors


def buildings_of(site: Site, anchors: Anchors) -> list[Building]:
    """The buildings of ``site`` (with ``anchors`` its gateways), in order of their first floor."""
    n = len(site.floors)
    a, b = [], []
    for c in site.connectors:
        fl = [site.floor_index[f] for f in c.points]
        a += fl[:-1]
        b += fl[1:]
    if not site.connectors:
        a, b = list(range(n - 1)), list(range(1, n))
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    out = []
    for comp in dict.fromkeys(label.tolist()):  # components in order of first floor
        floors = np.flatnonzero(label == comp)
        gateways = np.flatnonzero(np.isin(anchors.floor, floors))
        local = np.searchsorted(floors, anchors.floor[gateways])
        sens = anchors.sensitivity_dbm
        sub = Anchors(
            anchors.xyz[gateways],
            local,
            anchors.p0[gateways],
            anchors.n[gateways],
            anchors.floor_elevation[floors],
            anchors.floor_bounds[floors],
            None if sens is None else sens[gateways],
        )
        out.append(Building(floors, gateways, sub))
    return out


def assign(heard: IntArray, gateway_building: IntArray, n_buildings: int) -> IntArray:
    """(K,) the building of each tag: the one whose gateways are most of those that heard it
    (``heard`` (K, L) gateway indices, -1: none; ties go to the lower index); -1 when nothing
    heard it. ``gateway_building`` (G,) building of each gateway."""
    k = heard.shape[0]
    rows, cols = np.nonzero(heard >= 0)
    votes = np.zeros((k, n_buildings), dtype=np.intp)
    np.add.at(votes, (rows, gateway_building[heard[rows, cols]]), 1)
    out: IntArray = np.where(votes.any(axis=1), votes.argmax(axis=1), -1).astype(np.intp)
    return out
