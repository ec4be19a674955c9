"""Buildings: floors joined by connectors, tags assigned by who heard them, located apart."""

from __future__ import annotations

import numpy as np

from bench.e2e_site import GroupSpec, group_site
from rtls.buildings import assign, buildings_of
from rtls.engine import Engine
from rtls.locate import Anchors
from rtls.observations import OBS_DTYPE
from rtls.site import Site, load_site


def test_the_example_is_one_building_and_a_group_is_one_per_copy() -> None:
    site = load_site()
    (only,) = buildings_of(site, Anchors.from_site(site))
    assert only.floors.tolist() == [0, 1] and len(only.gateways) == len(site.gateways)
    group = group_site(GroupSpec(buildings=3, bulk=0))
    anchors = Anchors.from_site(group)
    found = buildings_of(group, anchors)
    assert [b.floors.tolist() for b in found] == [[0, 1], [2, 3], [4, 5]]
    for b in found:
        assert np.isin(anchors.floor[b.gateways], b.floors).all()
        assert b.anchors.n_floors == 2 and set(b.anchors.floor.tolist()) == {0, 1}
        assert np.array_equal(b.anchors.xyz, anchors.xyz[b.gateways])
    assert sum(len(b.gateways) for b in found) == len(group.gateways)


def test_a_tag_goes_to_the_building_that_heard_it_most() -> None:
    gateway_building = np.array([0, 0, 1, 1, 1])
    heard = np.array([[0, 2, 3, -1], [0, 1, 4, -1], [-1, -1, -1, -1], [1, 2, -1, -1]])
    assert assign(heard, gateway_building, 2).tolist() == [1, 0, -1, 0]  # a tie: the lower


def _heard_at(engine: Engine, site: Site, tag: int, floor: str, xy: tuple[float, float],
              t0: float) -> None:  # fmt: skip
    """Four packets per gateway of ``floor`` over 1.5 s from a tag at ``xy``, under the
    engine's own model (log distance and walls), no noise."""
    a = engine.anchors
    f = site.floor_index[floor]
    on = np.flatnonzero(a.floor == f)
    z = a.floor_elevation[f] + engine.params.locator.tag_height_m
    d = np.sqrt(((a.xyz[on, :2] - np.array(xy)) ** 2).sum(axis=1) + (a.xyz[on, 2] - z) ** 2)
    rssi = a.p0[on] - 10 * a.n[on] * np.log10(np.maximum(d, 1.0))
    if engine.walls is not None:
        rssi -= engine.walls.lookup(np.array([xy]))[0, on]
    keep = rssi > -95.0
    for k in range(4):
        obs = np.zeros(int(keep.sum()), dtype=OBS_DTYPE)
        obs["t"], obs["gateway"], obs["tag"], obs["rssi"] = t0 + 0.5 * k, on[keep], tag, rssi[keep]
        engine.ingest_observations(obs)


def test_a_tag_in_another_building_is_located_as_in_a_site_of_its_own() -> None:
    one = group_site(GroupSpec(buildings=1, bulk=0))
    two = group_site(GroupSpec(buildings=2, bulk=0))
    alone, both = Engine(one), Engine(two)
    assert len(both.buildings) == 2 and len(alone.buildings) == 1
    _heard_at(alone, one, 3, "L2", (30.0, 5.0), 100.0)
    _heard_at(both, two, 3, "B01-L2", (30.0, 5.0), 100.0)
    fa = alone.tick(101.6).fix
    fb = both.tick(101.6).fix
    assert fa is not None and fb is not None
    assert fa.known[0] and fb.known[0]
    assert two.floors[int(fb.floor[0])].id == "B01-L2" and one.floors[int(fa.floor[0])].id == "L2"
    assert np.allclose(fa.xy, fb.xy, atol=1e-6) and np.allclose(fa.covariance, fb.covariance)
    assert float(np.hypot(*(fb.xy[0] - (30.0, 5.0)))) < 1.0  # noiseless: close to the truth
