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
fix, without hysteresis. An answer is *wrong* when the tag is not in the zone it names; naming
an enclosing zone (the ward for a tag in a room) is right but coarse, so :func:`score` also
counts how often the answer is the true (smallest) zone. The time the engine spends in its
locator and in its zone filter is measured per tick (:class:`StageTimes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


@dataclass
class StageTimes:
    """Seconds one engine spent over a run: ``locate`` (its locator: window snapshot, grid
    start, solve), ``zones`` (with the room filter: its evidence, door placement and the
    membership update; without: the position membership update), over ``ticks`` ticks."""

    locate: float = 0.0
    zones: float = 0.0
    ticks: int = 0

    def per_tick_ms(self, stage: str) -> float:
        return 1e3 * float(getattr(self, stage)) / max(1, self.ticks)


@dataclass(frozen=True)
class ZoneRun:
    """Zones every tick (K,) of the walkers (W,): ``true`` (K, W) smallest true zone (-1:
    none), ``true_in`` (K, W, Z) the zones holding the true position, ``engine`` (K, W) the
    engine's zone (``TickResult.zone``, -1: none), ``engine_known`` (K, W) its position known,
    ``fix`` (K, W) the zone of the latest single-shot fix (-1: none), ``fix_known`` (K, W)
    that fix known; zone values are columns of the engine's ZoneIndex (site.zones order).
    Positions: ``true_xy`` (K, W, 2) on ``true_floor`` (K, W), the engine's ``engine_xy``
    (K, W, 2) on ``engine_floor`` (K, W). ``others``: the zones (K, W) of the comparison
    engines fed the same messages; ``times`` / ``other_times`` what each engine spent."""

    t: FloatArray
    walkers: tuple[str, ...]
    true: IntArray
    true_in: BoolArray
    engine: IntArray
    engine_known: BoolArray
    fix: IntArray
    fix_known: BoolArray
    true_xy: FloatArray
    true_floor: IntArray
    engine_xy: FloatArray
    engine_floor: IntArray
    others: dict[str, IntArray]
    times: StageTimes
    other_times: dict[str, StageTimes]


def _timed(fn: Callable[..., Any], times: StageTimes, stage: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            setattr(times, stage, getattr(times, stage) + time.perf_counter() - t0)

    return wrapper


def _instrumented(site: Site, params: EngineParams | None) -> tuple[Engine, StageTimes]:
    """An engine whose locator and zone stages add their time to a StageTimes."""
    engine = Engine(site, params)
    times = StageTimes()
    engine._locate = _timed(engine._locate, times, "locate")  # type: ignore[method-assign]
    if engine.rooms is not None:
        engine._update_rooms = _timed(  # type: ignore[method-assign]
            engine._update_rooms, times, "zones"
        )
        for name in ("place", "update_membership"):
            setattr(engine.rooms, name, _timed(getattr(engine.rooms, name), times, "zones"))
    else:
        m = engine.membership
        m.update = _timed(m.update, times, "zones")  # type: ignore[method-assign]
    return engine, times


def run_door_walks(
    site: Site,
    *,
    duration_s: float,
    seed: int,
    radio: RadioParams | None = None,
    params: EngineParams | None = None,
    compare: Mapping[str, EngineParams] | None = None,
) -> ZoneRun:
    """Play the walks for ``duration_s`` (``radio`` overrides the site's radio model) through
    an engine with ``params`` and, on the same messages, one engine per ``compare`` entry."""
    rng = np.random.default_rng(seed)
    walkers, events = scenario_events(site, duration_s - 5.0, rng)
    scenario = scenario_from_mapping(
        {"scenario": {"name": "door walks", "seed": seed, "duration_s": duration_s,
                      "ambient": False},
         "events": events},
        site=site,
    )  # fmt: skip
    world = World(scenario, radio=radio)
    engine, times = _instrumented(site, params)
    extra = {name: _instrumented(site, p) for name, p in (compare or {}).items()}
    tick = engine.params.tick_s
    zones = engine.zones
    rows = np.array([i for i, t in enumerate(site.tags) if t.id in set(walkers)], dtype=np.intp)
    n_tags = len(site.tags)
    fix_zone = np.full(n_tags, -1, dtype=np.int64)
    fix_known = np.zeros(n_tags, dtype=bool)
    ts, true, eng, eng_known, fz, fk = [], [], [], [], [], []
    true_xy, true_floor, eng_xy, eng_floor, true_in = [], [], [], [], []
    others: dict[str, list[IntArray]] = {name: [] for name in extra}
    t, k = 0.0, 0
    while t < duration_s:
        k += 1
        t = k * tick
        now = world.epoch + t
        messages = world.step(t).messages
        for routed in messages:
            engine.ingest_message(routed.msg.topic, routed.msg.payload, now)
        result = engine.tick(now)
        times.ticks += 1
        for name, (other, other_times) in extra.items():
            for routed in messages:
                other.ingest_message(routed.msg.topic, routed.msg.payload, now)
            others[name].append(other.tick(now).zone[rows])
            other_times.ticks += 1
        if result.fix is not None and len(result.located):
            f = result.fix
            inside = zones.contains(f.xy, np.maximum(f.floor, 0))
            fix_zone[result.located] = np.where(f.floor >= 0, zones.smallest(inside), -1)
            fix_known[result.located] = f.known
        p = world.motion.positions(t)
        holds = zones.contains(p.xyz[rows, :2], p.floor[rows])
        true_in.append(holds)
        ts.append(t)
        true.append(zones.smallest(holds))
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
        np.array(true_in, dtype=bool).reshape(k, w, len(zones)),
        np.array(eng, dtype=np.int64),
        np.array(eng_known, dtype=bool),
        np.array(fz, dtype=np.int64),
        np.array(fk, dtype=bool),
        np.array(true_xy, dtype=np.float64).reshape(k, w, 2),
        np.array(true_floor, dtype=np.int64).reshape(k, w),
        np.array(eng_xy, dtype=np.float64).reshape(k, w, 2),
        np.array(eng_floor, dtype=np.int64).reshape(k, w),
        {name: np.array(z, dtype=np.int64).reshape(k, w) for name, z in others.items()},
        times,
        {name: tt for name, (_, tt) in extra.items()},
    )


@dataclass(frozen=True)
class ZoneScore:
    """Over the evaluated samples, the fractions where the answer (a zone, or none) was:
    ``wrong`` a zone the tag is not in; ``room`` the true zone (the smallest holding the tag);
    ``coarse`` a zone holding the tag but larger than the true one (the ward); ``none`` no zone
    (unknown); ``not_true`` anything but the true zone while answering (the earlier metric,
    which counted coarse answers as wrong). ``samples``: how many."""

    wrong: float
    room: float
    coarse: float
    none: float
    not_true: float
    samples: int


def evaluated(run: ZoneRun, *, grace_s: float, warmup_s: float) -> BoolArray:
    """(K, W) samples to score: after ``warmup_s``, and not within ``grace_s`` after a change
    of the true zone."""
    changed = np.zeros_like(run.true, dtype=bool)
    changed[1:] = run.true[1:] != run.true[:-1]
    last = np.where(changed, run.t[:, None], -np.inf)
    last = np.maximum.accumulate(last, axis=0)
    return np.asarray((run.t[:, None] - last >= grace_s) & (run.t[:, None] >= warmup_s))


def score(zone: IntArray, true: IntArray, true_in: BoolArray, mask: BoolArray) -> ZoneScore:
    """Score answers ``zone`` (K, W) (-1: none) against the true smallest zone ``true`` (K, W)
    and the zones holding the tag ``true_in`` (K, W, Z), over ``mask`` (K, W)."""
    n = int(mask.sum())
    if n == 0:
        nan = float("nan")
        return ZoneScore(nan, nan, nan, nan, nan, 0)
    answered = zone >= 0
    holds = np.take_along_axis(true_in, np.maximum(zone, 0)[..., None], axis=2)[..., 0]
    right = zone == true
    wrong = answered & ~holds & ~right
    coarse = answered & holds & ~right
    m = mask
    return ZoneScore(
        float(wrong[m].mean()),
        float((right & (answered | (true < 0)))[m].mean()),
        float(coarse[m].mean()),
        float((~answered & (true >= 0))[m].mean()),
        float((answered & ~right)[m].mean()),
        n,
    )


def without_walls(data: dict[str, Any]) -> dict[str, Any]:
    """A site mapping with no walls (diagnosis: the radio then follows the locator's model;
    people still walk the same rooms, but their paths may cross where walls were)."""
    out = dict(data)
    out["walls"] = []
    return out
