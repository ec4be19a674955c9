"""Simulated data for the accuracy bench: static tags and walks over the example site.

Observations come from the simulator's radio channel (:class:`gateways.radio.RadioChannel`,
docs/radio-model.md) over the site's gateways and calibration: log-distance path loss, per-link
log-normal shadowing (σ, correlated along a tag's path over ``shadowing_corr_m``), optional
Rayleigh fading and walls, 3 % packet loss, the site's sensitivity and floor loss. They are
fed as observation arrays to :class:`rtls.engine.Engine` (the live engine's pure core) ticked
every ``tick_s``. Everything random comes from one seed. Shapes: ``N`` tags, ``G`` gateways,
``A`` advertisements, ``K`` ticks kept.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
from firmware_sim.navigation import NavGrid, NoPathError
from numpy.typing import NDArray

from gateways.radio import FloorWalls, RadioChannel, RadioParams, mean_rssi
from rtls import geometry
from rtls.bounds import crlb_rmse
from rtls.engine import Engine, EngineParams
from rtls.observations import OBS_DTYPE, Observations
from rtls.site import EXAMPLE_SITE, Site, ZoneKind
from rtls.walls import site_walls

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

TAG_HEIGHT_M = 1.0  # the engine's default tag height (LocatorParams.tag_height_m)


@dataclass(frozen=True)
class RadioSetup:
    """Which parts of the radio model are on. Defaults: the model of the Cramér–Rao bound
    (log-distance + log-normal shadowing), without fading or walls. ``walls``: the walls of
    the site given to :func:`channel` attenuate the links."""

    sigma_db: float = 4.0
    fading: bool = False
    walls: bool = False
    shadowing_corr_m: float = 3.0


def example_data() -> dict[str, Any]:
    """The shipped example site as a mapping (its gateways, floors, walls and zones)."""
    return tomllib.loads(EXAMPLE_SITE.read_text(encoding="utf-8"))


def synthetic_site(floor: IntArray, interval_s: float, *, walls: bool = False) -> Site:
    """The example site with its tags replaced by N staff tags, tag i on floor ``floor[i]``,
    all advertising every ``interval_s``; without its walls unless ``walls`` (the engine models
    the walls of its site, so the site must have walls exactly when the radio has them)."""
    d = example_data()
    if not walls:
        d["walls"] = []
    floors = [f["id"] for f in d["floors"]]
    corridor = {
        fid: next(z["id"] for z in d["zones"] if z["floor"] == fid and z["kind"] == "corridor")
        for fid in floors
    }
    d["tags"] = [
        {"id": f"T{i:04d}", "kind": "staff", "serial": 100_000 + i,
         "home": corridor[floors[int(f)]], "interval_s": interval_s}
        for i, f in enumerate(floor.tolist())
    ]  # fmt: skip
    return Site.from_mapping(d)


def nav_grids(site: Site) -> dict[int, NavGrid]:
    """Walkable grids of every floor (0.25 m cells, 0.3 m from walls), as the simulator's;
    give a site with walls (positions and paths then respect them whatever the radio)."""
    grids = {}
    for i, fl in enumerate(site.floors):
        segs, _ = site.walls_of(fl.id)
        outline = np.asarray(fl.outline, dtype=np.float64)
        grids[i] = NavGrid.build(outline, segs, resolution=0.25, clearance=0.3)
    return grids


def walkable_points(
    site: Site, grids: dict[int, NavGrid], per_floor: int, rng: np.random.Generator
) -> tuple[FloatArray, IntArray]:
    """``per_floor`` uniform random walkable points on every floor: xy (N, 2), floor (N,)."""
    xy, floor = [], []
    for i, fl in enumerate(site.floors):
        outline = np.asarray(fl.outline, dtype=np.float64)
        lo, hi = outline.min(axis=0), outline.max(axis=0)
        found = np.zeros((0, 2))
        while len(found) < per_floor:
            cand = rng.uniform(lo, hi, size=(4 * per_floor, 2))
            found = np.vstack([found, cand[grids[i].is_walkable(cand)]])
        xy.append(found[:per_floor])
        floor.append(np.full(per_floor, i, dtype=np.intp))
    return np.vstack(xy), np.concatenate(floor)


def floor_walls(site: Site) -> dict[int, FloorWalls]:
    """The site's walls per floor index, rasters covering each floor's outline."""
    return site_walls(site)


def channel(site: Site, setup: RadioSetup, rng: np.random.Generator) -> RadioChannel:
    """The simulator's radio channel over the site's gateways, for all site tags."""
    ga = site.gateway_arrays
    walls = floor_walls(site) if setup.walls else None
    params = RadioParams(
        shadowing_sigma_db=setup.sigma_db,
        shadowing_corr_m=setup.shadowing_corr_m,
        fading=setup.fading,
        floor_loss_db=site.radio.floor_loss_db,
        sensitivity_dbm=site.radio.sensitivity_dbm,
    )
    rx_offset = ga.rssi_at_1m - site.radio.rssi_at_1m  # as gateways.world.World
    return RadioChannel(
        ga.xyz, ga.floor, ga.path_loss_exponent, rx_offset, walls, params, len(site.tags), rng
    )


def schedule(
    phase: FloatArray, interval_s: float, t_lo: float, t_hi: float
) -> tuple[IntArray, FloatArray]:
    """Advertisements in (t_lo, t_hi] of tags sending at ``phase + k interval_s``: tag (A,)
    and time (A,), in time order."""
    first = np.floor((t_lo - phase) / interval_s).astype(np.intp) + 1
    last = np.floor((t_hi - phase) / interval_s).astype(np.intp)
    count = np.maximum(last - first + 1, 0)
    tags = np.repeat(np.arange(phase.shape[0]), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + first[tags]
    times = phase[tags] + k * interval_s
    order = np.argsort(times, kind="stable")
    return tags[order], times[order]


def observe(
    ch: RadioChannel,
    site: Site,
    tags: IntArray,
    times: FloatArray,
    xy: FloatArray,
    floor: IntArray,
) -> Observations:
    """What the gateways hear of advertisements of ``tags`` (A,) at ``times`` (A,) from xy
    (A, 2) on ``floor`` (A,), tags at TAG_HEIGHT_M: an OBS_DTYPE array."""
    elevation = np.array([f.elevation for f in site.floors])
    xyz = np.column_stack([xy, elevation[floor] + TAG_HEIGHT_M])
    heard = ch.hear(tags, xyz, floor, site.radio.rssi_at_1m)
    obs = np.zeros(len(heard), dtype=OBS_DTYPE)
    obs["t"] = times[heard.adv]
    obs["gateway"] = heard.gateway
    obs["tag"] = tags[heard.adv]
    obs["rssi"] = heard.rssi
    return obs


def expected_heard(site: Site, xy: FloatArray, floor: IntArray) -> BoolArray:
    """(N, G): the gateways of each tag's floor whose mean RSSI at xy (N, 2) on ``floor``
    (N,) (no shadowing, no walls) reaches the site's sensitivity -- the links a locator can
    expect to hear."""
    ga = site.gateway_arrays
    elevation = np.array([f.elevation for f in site.floors])
    z = elevation[floor] + TAG_HEIGHT_M
    mean = mean_rssi(
        np.column_stack([xy, z]), floor, site.radio.rssi_at_1m, ga.xyz, ga.floor,
        ga.path_loss_exponent, ga.rssi_at_1m - site.radio.rssi_at_1m,
        floor_loss_db=site.radio.floor_loss_db,
    )  # fmt: skip
    return np.asarray((mean >= site.radio.sensitivity_dbm) & (ga.floor[None, :] == floor[:, None]))


def bound(site: Site, xy: FloatArray, floor: IntArray, sigma_db: float) -> FloatArray:
    """Cramér–Rao bound (N,) in metres (DOMAIN.md, rtls.bounds) at positions xy (N, 2) on
    ``floor`` (N,), tags at TAG_HEIGHT_M, from the :func:`expected_heard` gateways."""
    ga = site.gateway_arrays
    elevation = np.array([f.elevation for f in site.floors])
    heard = expected_heard(site, xy, floor)
    z = elevation[floor] + TAG_HEIGHT_M
    return crlb_rmse(xy, ga.xyz, ga.path_loss_exponent, sigma_db, heard=heard, height=z, d_min=1.0)


# -- static tags -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticRun:
    """Static tags at xy (N, 2) on floor (N,): the last single-shot fix of each tag
    (``TickResult.fix``) as fix_xy (N, 2), fix_floor (N,), fix_known (N,); the window's RSSI
    at the end, rssi (N, G) dBm (NaN: not heard)."""

    xy: FloatArray
    floor: IntArray
    fix_xy: FloatArray
    fix_floor: IntArray
    fix_known: BoolArray
    rssi: FloatArray


def run_static(
    site: Site,
    xy: FloatArray,
    floor: IntArray,
    setup: RadioSetup,
    *,
    interval_s: float,
    duration_s: float,
    seed: int,
    params: EngineParams | None = None,
) -> StaticRun:
    """Tags of ``site`` (one per position) stand still for ``duration_s`` and advertise every
    ``interval_s``; the engine ticks every ``params.tick_s``."""
    rng = np.random.default_rng(seed)
    ch = channel(site, setup, rng)
    engine = Engine(site, params)
    tick = engine.params.tick_s
    n = xy.shape[0]
    phase = rng.uniform(0.0, interval_s, size=(n,))
    fix_xy = np.full((n, 2), np.nan)
    fix_floor = np.full(n, -1, dtype=np.intp)
    fix_known = np.zeros(n, dtype=bool)
    now, k = 0.0, 0
    while now < duration_s:
        k += 1
        prev, now = now, k * tick
        tags, times = schedule(phase, interval_s, prev, now)
        engine.ingest_observations(observe(ch, site, tags, times, xy[tags], floor[tags]))
        result = engine.tick(now)
        if result.fix is not None:
            fix_xy[result.located] = result.fix.xy
            fix_floor[result.located] = result.fix.floor
            fix_known[result.located] = result.fix.known
    snap = engine.window.snapshot(now)
    return StaticRun(xy, floor, fix_xy, fix_floor, fix_known, snap.rssi)


# -- walks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Walks:
    """N walkers, each along a polyline ``paths[i]`` (P_i, 2) on ``floor[i]`` at ``speed[i]``
    m/s from t = 0 (standing at the end when it runs out); ``arc[i]`` (P_i,) is the path
    length at each vertex."""

    paths: tuple[FloatArray, ...]
    floor: IntArray
    speed: FloatArray
    arc: tuple[FloatArray, ...]

    @classmethod
    def of(cls, paths: list[FloatArray], floor: IntArray, speed: FloatArray) -> Walks:
        arc = [np.r_[0.0, np.cumsum(np.hypot(*np.diff(p, axis=0).T))] for p in paths]
        return cls(tuple(paths), floor, speed, tuple(arc))

    def positions(self, t: FloatArray, who: IntArray) -> FloatArray:
        """Positions (A, 2) of walkers ``who`` (A,) at times ``t`` (A,)."""
        out = np.empty((t.shape[0], 2))
        for w in np.unique(who).tolist():
            sel = who == w
            p, s = self.paths[w], self.arc[w]
            arc = t[sel] * self.speed[w]
            out[sel, 0] = np.interp(arc, s, p[:, 0])
            out[sel, 1] = np.interp(arc, s, p[:, 1])
        return out


def random_walks(
    site: Site,
    grids: dict[int, NavGrid],
    n: int,
    duration_s: float,
    rng: np.random.Generator,
) -> Walks:
    """N walkers alternating between floors, each from a random walkable point of a room or
    corridor along walkable paths to successive such points (rooms and corridors are joined
    by doors, unlike stair wells and lift shafts), at 1.0-1.4 m/s, long enough for
    ``duration_s``."""
    floor = np.arange(n, dtype=np.intp) % len(site.floors)
    speed = rng.uniform(1.0, 1.4, n)
    areas = {
        i: [np.asarray(z.polygon, dtype=np.float64)
            for z in site.zones_of(fl.id, [ZoneKind.ROOM, ZoneKind.CORRIDOR])]
        for i, fl in enumerate(site.floors)
    }  # fmt: skip
    paths = []
    for i in range(n):
        fl = int(floor[i])
        grid = grids[fl]
        legs = [_walkable_point(grid, areas[fl], rng)[None, :]]
        length = 0.0
        while length < speed[i] * duration_s + 1.0:
            goal = _walkable_point(grid, areas[fl], rng)
            try:
                leg = grid.path(legs[-1][-1], goal)
            except NoPathError:
                continue  # a spot cut off from here (e.g. behind furniture): draw another
            legs.append(leg[1:])
            length += float(np.hypot(*np.diff(leg, axis=0).T).sum())
        paths.append(np.vstack(legs))
    return Walks.of(paths, floor, speed)


def _walkable_point(
    grid: NavGrid, polygons: list[FloatArray], rng: np.random.Generator
) -> FloatArray:
    """A uniform random walkable point of a random polygon among ``polygons``."""
    while True:
        poly = polygons[int(rng.integers(len(polygons)))]
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        cand = rng.uniform(lo, hi, size=(32, 2))
        ok = grid.is_walkable(cand) & geometry.points_in_polygon(cand, poly)
        if ok.any():
            return np.asarray(cand[int(np.argmax(ok))], dtype=np.float64)


@dataclass(frozen=True)
class WalkRun:
    """Engine output on walks, every tick after the warm-up.

    t (K,); truth (K, N, 2); tracked (K, N, 2), tracked_floor (K, N), tracked_known (K, N)
    and tracked_uncertainty (K, N) from ``TickResult.estimate``; the single-shot fixes of the
    same run (``TickResult.fix``) as fix_t (M,), fix_tag (M,), fix_xy (M, 2), fix_floor (M,),
    fix_known (M,), fix_truth (M, 2); held (K, N, 2) each tag's latest known fix at each tick
    (NaN before its first), what a display of the fixes alone would show.
    """

    t: FloatArray
    truth: FloatArray
    tracked: FloatArray
    tracked_floor: IntArray
    tracked_known: BoolArray
    tracked_uncertainty: FloatArray
    fix_t: FloatArray
    fix_tag: IntArray
    fix_xy: FloatArray
    fix_floor: IntArray
    fix_known: BoolArray
    fix_truth: FloatArray
    held: FloatArray


def run_walks(
    site: Site,
    walks: Walks,
    setup: RadioSetup,
    *,
    interval_s: float,
    duration_s: float,
    warmup_s: float,
    seed: int,
    params: EngineParams | None = None,
) -> WalkRun:
    """Tags of ``site`` (one per walker) walk and advertise every ``interval_s``; the engine
    ticks every ``params.tick_s``; samples after ``warmup_s`` are kept."""
    rng = np.random.default_rng(seed)
    ch = channel(site, setup, rng)
    engine = Engine(site, params)
    tick = engine.params.tick_s
    n = walks.floor.shape[0]
    everyone = np.arange(n)
    phase = rng.uniform(0.0, interval_s, size=(n,))
    ts, truth, tracked, t_floor, known, unc, held = [], [], [], [], [], [], []
    f_t, f_tag, f_xy, f_floor, f_known, f_truth = [], [], [], [], [], []
    latest = np.full((n, 2), np.nan)
    now, k = 0.0, 0
    while now < duration_s:
        k += 1
        prev, now = now, k * tick
        tags, times = schedule(phase, interval_s, prev, now)
        where = walks.positions(times, tags)
        engine.ingest_observations(observe(ch, site, tags, times, where, walks.floor[tags]))
        result = engine.tick(now)
        if result.fix is not None and len(result.located):
            ok = result.fix.known
            latest[result.located[ok]] = result.fix.xy[ok]
        if now < warmup_s:
            continue
        true_now = walks.positions(np.full(n, now), everyone)
        ts.append(now)
        truth.append(true_now)
        tracked.append(result.estimate.xy.copy())
        t_floor.append(result.estimate.floor.copy())
        known.append(result.estimate.known.copy())
        unc.append(result.estimate.uncertainty.copy())
        held.append(latest.copy())
        if result.fix is not None and len(result.located):
            f_t.append(np.full(len(result.located), now))
            f_tag.append(result.located)
            f_xy.append(result.fix.xy)
            f_floor.append(result.fix.floor)
            f_known.append(result.fix.known)
            f_truth.append(true_now[result.located])
    return WalkRun(
        np.array(ts),
        np.array(truth).reshape(-1, n, 2),
        np.array(tracked).reshape(-1, n, 2),
        np.array(t_floor, dtype=np.intp).reshape(-1, n),
        np.array(known, dtype=bool).reshape(-1, n),
        np.array(unc).reshape(-1, n),
        np.concatenate(f_t) if f_t else np.zeros(0),
        np.concatenate(f_tag).astype(np.intp) if f_tag else np.zeros(0, np.intp),
        np.vstack(f_xy) if f_xy else np.zeros((0, 2)),
        np.concatenate(f_floor).astype(np.intp) if f_floor else np.zeros(0, np.intp),
        np.concatenate(f_known) if f_known else np.zeros(0, bool),
        np.vstack(f_truth) if f_truth else np.zeros((0, 2)),
        np.array(held).reshape(-1, n, 2),
    )
