"""Scripted walks through doors for the wrong-zone rate of the accuracy bench.

Staff and mothers of the example site walk from room to room of their floor (room -> door ->
corridor -> door -> another room), pausing in each room, while everyone else stays put. The
full simulator plays it (:class:`gateways.world.World`: tags, radio with the site's walls,
Rayleigh fading and packet loss, gateways publishing their own formats, door readers) and the
engine is fed the MQTT messages exactly as the live service feeds it
(:meth:`rtls.engine.Engine.ingest_message`), ticking every ``tick_s``. At every tick the
engine's zone (``TickResult.zone``: membership with hysteresis and dwell) is compared with the
true zone, the smallest zone holding the true position (what ``TickResult.zone`` reports for a
correct position), and with a baseline: the smallest zone holding the tag's latest single-shot
fix, without hysteresis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateways.radio import RadioParams
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls import geometry
from rtls.engine import Engine, EngineParams
from rtls.site import Site, TagKind, ZoneKind

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

WALKERS = (TagKind.STAFF, TagKind.MOTHER)
PAUSE_S = (10.0, 30.0)  # time spent in a room before walking on
DETOUR = 1.4  # walking path length over straight-line distance, to space the walks


def scenario_events(
    site: Site, duration_s: float, rng: np.random.Generator
) -> tuple[list[str], list[dict[str, Any]]]:
    """Walk events: every staff and mother tag walks to a random other room of its floor,
    pauses there, and walks on. Returns the walkers' ids and the events."""
    rooms = {fl.id: [z for z in site.zones_of(fl.id, [ZoneKind.ROOM])] for fl in site.floors}
    walkers, events = [], []
    for tag in site.tags:
        if tag.kind not in WALKERS or tag.home is None:
            continue
        floor = site.zone(tag.home).floor
        here = geometry.polygon_centroid(site.zone(tag.home).polygon)
        t = float(rng.uniform(0.0, 15.0))
        walkers.append(tag.id)
        while t < duration_s:
            room = rooms[floor][int(rng.integers(len(rooms[floor])))]
            there = geometry.polygon_centroid(room.polygon)
            events.append({"at_s": round(t, 2), "action": "walk", "who": tag.id,
                           "to": {"zone": room.id}})  # fmt: skip
            t += DETOUR * float(np.hypot(*(there - here))) / 1.2 + float(rng.uniform(*PAUSE_S))
            here = there
    return walkers, events


@dataclass(frozen=True)
class ZoneRun:
    """Zones every tick (K,) of the walkers (W,): ``true`` (K, W) smallest true zone (-1:
    none), ``engine`` (K, W) the engine's zone, ``engine_known`` (K, W) its position known,
    ``fix`` (K, W) the zone of the latest single-shot fix (-1: none), ``fix_known`` (K, W)
    that fix known; zone values are columns of the engine's ZoneIndex (site.zones order).
    Positions: ``true_xy`` (K, W, 2) on ``true_floor`` (K, W), the engine's ``engine_xy``
    (K, W, 2) on ``engine_floor`` (K, W)."""

    t: FloatArray
    walkers: tuple[str, ...]
    true: IntArray
    engine: IntArray
    engine_known: BoolArray
    fix: IntArray
    fix_known: BoolArray
    true_xy: FloatArray
    true_floor: IntArray
    engine_xy: FloatArray
    engine_floor: IntArray


def run_door_walks(
    site: Site,
    *,
    duration_s: float,
    seed: int,
    radio: RadioParams | None = None,
    params: EngineParams | None = None,
) -> ZoneRun:
    """Play the walks for ``duration_s`` (``radio`` overrides the site's radio model)."""
    rng = np.random.default_rng(seed)
    walkers, events = scenario_events(site, duration_s - 5.0, rng)
    scenario = scenario_from_mapping(
        {"scenario": {"name": "door walks", "seed": seed, "duration_s": duration_s,
                      "ambient": False},
         "events": events},
        site=site,
    )  # fmt: skip
    world = World(scenario, radio=radio)
    engine = Engine(site, params)
    tick = engine.params.tick_s
    zones = engine.zones
    rows = np.array([i for i, t in enumerate(site.tags) if t.id in set(walkers)], dtype=np.intp)
    n_tags = len(site.tags)
    fix_zone = np.full(n_tags, -1, dtype=np.int64)
    fix_known = np.zeros(n_tags, dtype=bool)
    ts, true, eng, eng_known, fz, fk = [], [], [], [], [], []
    true_xy, true_floor, eng_xy, eng_floor = [], [], [], []
    t, k = 0.0, 0
    while t < duration_s:
        k += 1
        t = k * tick
        now = world.epoch + t
        for routed in world.step(t).messages:
            engine.ingest_message(routed.msg.topic, routed.msg.payload, now)
        result = engine.tick(now)
        if result.fix is not None and len(result.located):
            f = result.fix
            inside = zones.contains(f.xy, np.maximum(f.floor, 0))
            fix_zone[result.located] = np.where(f.floor >= 0, zones.smallest(inside), -1)
            fix_known[result.located] = f.known
        p = world.motion.positions(t)
        truth = zones.smallest(zones.contains(p.xyz[rows, :2], p.floor[rows]))
        ts.append(t)
        true.append(truth)
        eng.append(result.zone[rows])
        eng_known.append(result.estimate.known[rows])
        fz.append(fix_zone[rows])
        fk.append(fix_known[rows])
        true_xy.append(p.xyz[rows, :2])
        true_floor.append(p.floor[rows])
        eng_xy.append(result.estimate.xy[rows])
        eng_floor.append(result.estimate.floor[rows])
    k, w = len(ts), len(rows)
    return ZoneRun(
        np.array(ts),
        tuple(site.tags[i].id for i in rows),
        np.array(true, dtype=np.int64),
        np.array(eng, dtype=np.int64),
        np.array(eng_known, dtype=bool),
        np.array(fz, dtype=np.int64),
        np.array(fk, dtype=bool),
        np.array(true_xy, dtype=np.float64).reshape(k, w, 2),
        np.array(true_floor, dtype=np.int64).reshape(k, w),
        np.array(eng_xy, dtype=np.float64).reshape(k, w, 2),
        np.array(eng_floor, dtype=np.int64).reshape(k, w),
    )


@dataclass(frozen=True)
class ZoneScore:
    """Over the evaluated samples: ``wrong`` fraction known and in another zone than the
    truth, ``unknown`` fraction with the position unknown, ``samples`` how many."""

    wrong: float
    unknown: float
    samples: int


def evaluated(run: ZoneRun, *, grace_s: float, warmup_s: float) -> BoolArray:
    """(K, W) samples to score: after ``warmup_s``, and not within ``grace_s`` after a change
    of the true zone."""
    changed = np.zeros_like(run.true, dtype=bool)
    changed[1:] = run.true[1:] != run.true[:-1]
    last = np.where(changed, run.t[:, None], -np.inf)
    last = np.maximum.accumulate(last, axis=0)
    return np.asarray((run.t[:, None] - last >= grace_s) & (run.t[:, None] >= warmup_s))


def score(zone: IntArray, known: BoolArray, true: IntArray, mask: BoolArray) -> ZoneScore:
    """Wrong-zone and unknown fractions of ``zone`` (K, W) against ``true`` over ``mask``."""
    n = int(mask.sum())
    if n == 0:
        return ZoneScore(float("nan"), float("nan"), 0)
    wrong = known & (zone != true)
    return ZoneScore(float(wrong[mask].mean()), float((~known)[mask].mean()), n)


def without_walls(data: dict[str, Any]) -> dict[str, Any]:
    """A site mapping with no walls (diagnosis: the radio then follows the locator's model;
    people still walk the same rooms, but their paths may cross where walls were)."""
    out = dict(data)
    out["walls"] = []
    return out
