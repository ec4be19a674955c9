"""The location engine's pure pipeline: decode -> window -> locate -> track -> zones.

One :class:`Engine` per site. Feed it messages (:meth:`Engine.ingest_message`) or observation
arrays (:meth:`Engine.ingest_observations`, used by offline ``rtls locate``), then call
:meth:`Engine.tick` every ``tick_s`` with the current time: all tags that were heard since the
last tick are located together in one vectorised call, tracked, and checked against every zone.
The live service (``rtls.service.engine``) and the offline command run exactly this code; the
service also hands critical input (strap tamper, SOS, door reads) to the rules at once, with
the last tick's positions, through :meth:`Engine.early`, and runs each tick in two parts
(:meth:`Engine.tick_first`, then :meth:`Engine.tick`) so that the watched tags' zone breaches
do not wait for the whole tick (docs/engine.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import NDArray

from rtls.buildings import Building, assign, buildings_of
from rtls.decode import Decoder
from rtls.decode_result import (
    EMPTY_READS,
    EMPTY_TELEMETRY,
    Decoded,
    SourceStatus,
    unique_frames,
)
from rtls.directory import Directory
from rtls.errors import ConfigError
from rtls.geometry import points_in_polygon
from rtls.locate import Anchors, Fix, Locator, LocatorParams, choose_floor, link_variance
from rtls.observations import Observations
from rtls.rooms import RoomFilter, RoomParams
from rtls.site import Site, TagKind
from rtls.tagauth import EMPTY_SPOOF, TagAuth
from rtls.track import Tracker, TrackEstimate, TrackParams
from rtls.walkable import WalkableArea, WalkableParams
from rtls.walls import WallLossMaps, site_walls
from rtls.window import RssiWindow
from rtls.zones import (
    TRANSITION_DTYPE,
    DoorIndex,
    Hysteresis,
    Transitions,
    ZoneIndex,
    ZoneMembership,
    place_at_door,
)

ROOM_CHUNK = 512  # tags per call of the room filter's evidence (its arrays are points x tags)
GRID_CHUNK = 1024  # tags per block of the grid search of new tracks (its arrays: tags x cells)
# the tags a tick's first part locates: those the exit and mismatch rules are about
WATCHED_KINDS = (TagKind.INFANT, TagKind.MOTHER)
PART_MIN_TAGS = 256  # a share of the other tags (tick(share=...)) is at least this many


@dataclass(frozen=True)
class EngineParams:
    """Engine settings; the defaults are documented in docs/engine.md."""

    tick_s: float = 0.25  # issue 3: at most 250 ms
    # the live service locates the watched tags (infants, mothers) this often: at every tick
    # and between ticks (Engine.tick_first; docs/engine.md "Two-part ticks"); at most tick_s;
    # None: half of tick_s (watch_period_s)
    watch_s: float | None = None
    # a tag other than the watched ones is located once its first observation since it was
    # last located arrived at least this long ago, so that one fix takes the reports of every
    # gateway that heard its advertisement (the collection window of RTLS servers); 0: at
    # once. The live service's is COLLECT_S (docs/engine.md "Collection window")
    collect_s: float = 0.0
    window_tau_s: float = 1.5  # fading; the tracker smooths over time (docs/locator.md)
    window_horizon_s: float = 8.0
    locator: LocatorParams = field(default_factory=LocatorParams)
    tracker: TrackParams = field(default_factory=TrackParams)
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    wall_model: bool = True  # add the site's wall losses back before the fit
    rooms: RoomParams = field(default_factory=RoomParams)  # room filter, docs/zones.md
    # tracks kept in the walkable area (floor outlines minus walls); None: off
    walkable: WalkableParams | None = field(default_factory=WalkableParams)

    def __post_init__(self) -> None:
        if not 0.0 < self.tick_s <= 5.0:
            raise ConfigError(f"tick_s = {self.tick_s} must be in (0, 5] s")
        if self.watch_s is not None and not 0.0 < self.watch_s <= self.tick_s:
            raise ConfigError(f"watch_s = {self.watch_s} must be in (0, tick_s = {self.tick_s}] s")
        if not 0.0 <= self.collect_s <= 5.0:
            raise ConfigError(f"collect_s = {self.collect_s} must be in [0, 5] s")

    @property
    def watch_period_s(self) -> float:
        """How often the live service locates the watched tags (``watch_s``, default half a
        tick)."""
        return self.tick_s / 2 if self.watch_s is None else self.watch_s


@dataclass(frozen=True)
class TickResult:
    """What one tick produced: every tag's tracked position and the zone transitions.

    ``estimate`` covers all tags (site order); ``zone`` (N,) index into ``site.zones`` of the
    smallest zone holding each tag (-1: none or unknown); ``located`` (K,) tags solved this
    tick; ``fix`` their single-shot fixes.
    """

    t: float
    estimate: TrackEstimate
    zone: NDArray[np.int64]
    transitions: Transitions
    located: NDArray[np.intp]
    fix: Fix | None
    # what the rules need besides positions (issue 4), all received since the last tick:
    telemetry: NDArray[np.void] = field(default_factory=lambda: EMPTY_TELEMETRY)
    reads: NDArray[np.void] = field(default_factory=lambda: EMPTY_READS)
    status: tuple[SourceStatus, ...] = ()
    # rejected observations that show an attack (rtls.tagauth.SPOOF_DTYPE), for the desk
    spoofing: NDArray[np.void] = field(default_factory=lambda: EMPTY_SPOOF)


class Engine:
    """The pure engine of one site; no I/O, no clock: every call takes the time."""

    def __init__(self, site: Site, params: EngineParams | None = None) -> None:
        self.site = site
        self.params = p = params or EngineParams()
        self.directory = Directory.from_site(site)
        self.decoder = Decoder(self.directory)
        self.auth = TagAuth(len(site.tags), site.security)  # keys: set_key (docs/tag-auth.md)
        n_tags, n_gw = len(site.tags), len(site.gateways)
        self.window = RssiWindow(n_tags, n_gw, tau_s=p.window_tau_s, horizon_s=p.window_horizon_s)
        self.anchors = Anchors.from_site(site)
        self.locator = Locator(self.anchors, p.locator)
        # several buildings: each tag is located with its building's gateways only (rtls.buildings)
        self.buildings = buildings_of(site, self.anchors)
        self._building_locators = [Locator(b.anchors, p.locator) for b in self.buildings]
        self._gateway_building = np.zeros(n_gw, dtype=np.intp)
        for i, b in enumerate(self.buildings):
            self._gateway_building[b.gateways] = i
        self.walkable = WalkableArea.from_site(site, p.walkable) if p.walkable else None
        self.tracker = Tracker(
            n_tags, p.tracker, constraint=self.walkable.project if self.walkable else None
        )
        self.zones = ZoneIndex.from_site(site)
        self.membership = ZoneMembership.from_site(site, self.zones, p.hysteresis)
        self.doors = DoorIndex.from_site(site, self.zones)
        self.walls = wall_maps(site) if p.wall_model else None
        self.rooms: RoomFilter | None = None  # zones from room probabilities (rtls.rooms)
        if p.rooms.enabled and len(self.zones):
            self.rooms = RoomFilter.for_site(
                site, self.zones, self.anchors, p.rooms, walls=self.walls, locator=p.locator
            )
        self._grids: dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
        self._reads: list[NDArray[np.void]] = []
        self._telemetry: list[NDArray[np.void]] = []  # handed to the rules each tick
        self._status: list[SourceStatus] = []
        self._last: TickResult | None = None  # what early passes take the positions from
        # the room filter's packets of the next tick: the watched tags', the others'
        self._room_obs_watched: list[Observations] = []
        self._room_obs: list[Observations] = []
        # (N,) the tags of a tick's first part; what it located, for the second (tick_first)
        self.watched = np.array([t.kind in WATCHED_KINDS for t in site.tags], dtype=bool)
        self._others = ~self.watched
        # (N,) engine time of each tag's first observation since it was last located
        self._pending_since = np.full(len(site.tags), np.inf)
        self._first: tuple[NDArray[np.intp], Fix | None] | None = None
        self.observations = 0
        self.last_tick = -np.inf

    # -- input ---------------------------------------------------------------------------------
    def ingest_message(self, topic: str, payload: bytes, received_t: float) -> Decoded:
        """Decode one MQTT message (never raises: bad input is counted and dropped) and fold
        it in. Returns what was kept (decoded, minus what tag authentication rejected)."""
        decoded = self.decoder.decode_safely(topic, payload, received_t)
        return self.ingest(decoded, received_t)

    def ingest_messages(self, messages: Sequence[tuple[str, bytes, float]]) -> Decoded:
        """Decode a tick's worth of ``(topic, payload, received_t)`` messages together (native
        batches in one vectorised pass; bad messages counted and dropped) and fold them in;
        tag authentication takes the newest ``received_t`` as its ``now``."""
        decoded = self.decoder.decode_many(messages)
        now = max((m[2] for m in messages), default=-np.inf)
        return self.ingest(decoded, now)

    def ingest(self, decoded: Decoded, now: float | None = None) -> Decoded:
        """Fold decoded input in, after tag authentication (``now``: the engine's receive
        time; None: the newest row time). Returns what was kept."""
        if self.auth.active:
            if now is None or not np.isfinite(now):
                now = _newest(decoded)
            decoded = self.auth.filter(decoded, now)
        if len(decoded.obs):
            self.ingest_observations(decoded.obs, now)
        if len(decoded.reads):
            self._reads.append(decoded.reads)
        if len(decoded.telemetry):
            self._telemetry.append(decoded.telemetry)
        if decoded.status:
            self._status.extend(decoded.status)
        return decoded

    def ingest_observations(self, obs: Observations, received: float | None = None) -> None:
        """Observations (OBS_DTYPE) with valid gateway and tag indices, received at the engine
        time ``received`` (None: their newest time)."""
        if len(obs):
            t_in = float(obs["t"].max()) if received is None else received
            if not np.isfinite(t_in):
                t_in = float(obs["t"].max())
            tags = obs["tag"].astype(np.intp)
            self._pending_since[tags] = np.minimum(self._pending_since[tags], t_in)
        self.window.add(obs)
        self.observations += len(obs)
        if self.rooms is not None:
            self._pool(obs)

    def ingest_reads(self, reads: NDArray[np.void]) -> None:
        """Door reads (READ_DTYPE: t, reader, tag, rssi)."""
        self._reads.append(reads)

    # -- the tick --------------------------------------------------------------------------------
    def tick(self, now: float, share: float = 1.0) -> TickResult:
        """Locate every tag heard since the last tick, track, place door reads, update zones.

        After :meth:`tick_first` (and :meth:`advance_others`) calls this is the tick's last
        part: ``located`` and ``fix`` cover every tag located since the last tick (a tag's
        newest fix), ``transitions`` what the first parts did not return. ``share`` < 1: of
        the tags other than the watched ones, only that share is located now (see
        :meth:`advance_others`); the rest wait for the next call. With ``collect_s`` the
        other tags heard within ``collect_s`` of ``now`` wait too."""
        tags = self._take(now, share)
        partial = share < 1.0 or self.params.collect_s > 0.0
        fix = self._advance(now, tags, partial=partial) if len(tags) else None
        if self._first is not None:
            tags, fix = _join(self._first, (tags, fix))
            self._first = None
        door_transitions = None
        reads = EMPTY_READS
        if self._reads:
            reads = np.concatenate(self._reads)
            self._reads.clear()
            door = place_at_door(self.doors, reads["reader"], reads["tag"], reads["t"])
            self._place(now, door.tag, door.xy, door.floor, door.uncertainty)
            if self.rooms is not None:
                self.rooms.place(now, door.tag, door.xy, door.floor, door.uncertainty, door.zones)
            door_transitions = self.membership.enter_at_door(door)
        est, zone, transitions = self._zones(now)
        if door_transitions is not None:
            transitions = _merge(door_transitions, transitions)
        self.last_tick = now
        telemetry = EMPTY_TELEMETRY  # each advertisement once (several gateways heard it)
        if self._telemetry:
            telemetry = unique_frames(np.concatenate(self._telemetry))
        status = tuple(self._status)
        self._telemetry.clear()
        self._status.clear()
        result = TickResult(now, est, zone, transitions, tags, fix, telemetry, reads, status,
                            self.auth.take_spoofing())  # fmt: skip
        self._last = result
        return result

    def tick_first(self, now: float) -> TickResult:
        """Locate and track only the ``watched`` tags heard since the last call (infant and
        mother tags: the exit and mismatch rules are about them) and advance their zone
        membership, so that a baby's zone breach reaches the rules without waiting for the
        thousands of badges (the live service's, docs/engine.md "Two-part ticks": between ticks
        every ``watch_s``, and as the first part of each tick). Its result has every tag's
        estimate and zone (the other tags' as of the last tick), the watched tags'
        transitions, no telemetry or door reads. The next :meth:`tick` does the rest, and its
        ``located`` and ``fix`` cover what the calls since the last tick located (a tag's
        newest fix)."""
        tags = self.window.take_changed(self.watched)
        fix = self._advance(now, tags, partial=True, watched=True) if len(tags) else None
        self._first = (tags, fix) if self._first is None else _join(self._first, (tags, fix))
        est, zone, transitions = self._zones(now, self.watched)
        # not the early passes' positions (self._last): those stay the last tick's, which the
        # desk has folded, so an early pass need not follow anyone (Rules.evaluate)
        return TickResult(now, est, zone, transitions, tags, fix)

    def advance_others(self, now: float, share: float) -> int:
        """Locate and track ``share`` (0-1] of the tags other than the watched ones heard since
        they were last located, at least ``PART_MIN_TAGS`` (all of them under light load), in
        turn (under steady load each once per tick with ``share`` = 1 / passes per tick;
        every one within a few passes); the next :meth:`tick` returns them. The live service
        spreads the badges of a tick over its passes of the watched tags with it, so that each
        pass comes on time however long the whole tick's work (docs/engine.md "Two-part
        ticks"). Returns how many."""
        tags = self.window.take_changed(self._ripe(now), self._share_limit(share))
        if len(tags):
            fix = self._advance(now, tags, partial=True)
            self._first = (tags, fix) if self._first is None else _join(self._first, (tags, fix))
        return len(tags)

    def _share_limit(self, share: float) -> int:
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"share = {share} must be in (0, 1]")
        pending = int(np.count_nonzero(self.window.changed & self._others))
        return max(PART_MIN_TAGS, int(np.ceil(share * pending)))

    def _take(self, now: float, share: float) -> NDArray[np.intp]:
        """The tags a tick locates: every one heard, or with ``share`` < 1 the watched ones and
        that share of the others (with ``collect_s``: of those whose collection is over)."""
        limit = self._share_limit(share)
        if share == 1.0 and self.params.collect_s == 0.0:
            return self.window.take_changed()
        watched = self.window.take_changed(self.watched)
        return np.union1d(watched, self.window.take_changed(self._ripe(now), limit))

    def _ripe(self, now: float) -> NDArray[np.bool_]:
        """(N,) the other tags that may be located at ``now``: their collection window is over
        (``collect_s`` since their first observation since they were last located)."""
        if self.params.collect_s == 0.0:
            return self._others
        return self._others & (now - self._pending_since >= self.params.collect_s - 1e-9)

    def _advance(
        self, now: float, tags: NDArray[np.intp], *, partial: bool, watched: bool = False
    ) -> Fix:
        """Locate ``tags`` (sorted), fold the fixes into their tracks and room filter
        (``partial``: other tags' packets stay for a later call; ``watched``: ``tags`` are all
        the watched tags heard, and no others)."""
        self._pending_since[tags] = np.inf
        fix = self._locate(now, tags)
        self.tracker.update(now, fix, tags)
        if self.rooms is not None:
            self._update_rooms(now, tags, fix.floor, partial=partial, watched=watched)
        return fix

    def _pool(self, obs: Observations) -> None:
        """Hold packets for the room filter, the watched tags' apart."""
        mine = self.watched[obs["tag"]]
        if mine.all():
            self._room_obs_watched.append(obs)
        elif not mine.any():
            self._room_obs.append(obs)
        else:
            self._room_obs_watched.append(obs[mine])
            self._room_obs.append(obs[~mine])

    def _zones(
        self, now: float, among: NDArray[np.bool_] | None = None
    ) -> tuple[TrackEstimate, NDArray[np.int64], Transitions]:
        """Every tag's estimate at ``now``, smallest zone (-1: none or unknown) and the zone
        transitions since the last call; ``among`` (N,) bool: of those tags only, the other
        tags' estimate and zone are the last tick's and their membership is left as it is."""
        last = self._last
        if among is None or last is None:
            est = self.tracker.estimate(now)
            rows = None
        else:
            rows = np.flatnonzero(among)
            est = _overlay(last.estimate, self.tracker.estimate(now, rows), rows)
        if self.rooms is None:
            transitions = self.membership.update(now, est.xy, est.floor, est.known, est.uncertainty,
                                                 among=among)  # fmt: skip
        else:
            transitions = self.rooms.update_membership(now, self.membership, among)
        r, z = self.membership.inside_pairs(rows)
        if self.rooms is not None:
            named = self.rooms.named_pairs(r if rows is None else rows[r], z)
            r, z = r[named], z[named]
        n = len(self.site.tags) if rows is None else len(rows)
        zone = np.where(self.membership.known if rows is None else self.membership.known[rows],
                        self.zones.smallest_of(r, z, n), -1)  # fmt: skip
        if rows is not None:
            assert last is not None
            zone, part = last.zone.copy(), zone
            zone[rows] = part
        return est, zone, transitions

    def _update_rooms(self, now: float, tags: NDArray[np.intp], floor: NDArray[np.intp], *,
                      partial: bool = False, watched: bool = False) -> None:  # fmt: skip
        """Evidence for the room filter: what was heard of ``tags`` (sorted) on their chosen
        floors, ``ROOM_CHUNK`` tags at a time with their packets (its work arrays grow with the
        tags of one call: points x tags); ``partial``: the packets of other tags are kept for
        the next call; ``watched``: see :meth:`_advance`."""
        assert self.rooms is not None
        taken = self._room_obs_watched if watched else self._room_obs_watched + self._room_obs
        self._room_obs_watched = []
        if not watched:
            self._room_obs = []
        obs = np.concatenate(taken) if taken else None
        if obs is not None and partial and not watched:
            mine = np.isin(obs["tag"], tags)
            if not mine.all():
                self._pool(obs[~mine])
                obs = obs[mine]
        if obs is None:
            self.rooms.evidence(now, tags, floor, self.window)
            return
        # chunks of the tags sorted by floor: the filter works floor by floor, and a chunk
        # that spans every floor of a big site is many small products (docs/performance.md)
        order = np.lexsort((tags, floor))
        place = np.full(len(self.site.tags), -1, dtype=np.intp)
        place[tags[order]] = np.arange(len(tags))
        chunk_of = place[obs["tag"]] // ROOM_CHUNK  # (O,) -1 // ROOM_CHUNK = -1: not located
        by = np.argsort(chunk_of, kind="stable")
        obs = obs[by]
        n_chunks = -(-len(tags) // ROOM_CHUNK)
        bounds = np.searchsorted(chunk_of[by], np.arange(n_chunks + 1))  # each chunk's packets
        for c, s in enumerate(range(0, len(tags), ROOM_CHUNK)):
            sel = order[s : s + ROOM_CHUNK]
            self.rooms.add(obs[bounds[c] : bounds[c + 1]])
            self.rooms.evidence(now, tags[sel], floor[sel], self.window)

    def early(self, now: float, decoded: Decoded) -> TickResult:
        """An early pass for critical input (strap tamper, SOS, door reads, docs/engine.md): a
        result holding ``decoded``'s telemetry and door reads with the positions and zones of
        the last tick (nothing located, no zone change). Reads and changes no state, so it may
        run while a tick runs in another thread. The same input reaches the rules again with the
        tick that ingests it: the rules treat a repeated frame as one (every advertisement is
        heard by several gateways anyway)."""
        if self.auth.active:  # check only: the tick that ingests the same input commits
            decoded = self.auth.filter(decoded, now, commit=False)
        last = self._last
        n = len(self.site.tags)
        if last is None:
            est = TrackEstimate(now, np.full((n, 2), np.nan), np.zeros((n, 2)),
                                np.full(n, -1, dtype=np.intp), np.zeros((n, 2, 2)),
                                np.zeros(n, dtype=bool), np.full(n, -np.inf))  # fmt: skip
            zone = np.full(n, -1, dtype=np.int64)
        else:
            est, zone = last.estimate, last.zone
        none = np.zeros(0, dtype=TRANSITION_DTYPE)
        transitions = Transitions(none, none, np.zeros(n, dtype=bool))
        return TickResult(now, est, zone, transitions, np.zeros(0, dtype=np.intp), None,
                          decoded.telemetry, decoded.reads, ())  # fmt: skip

    def _locate(self, now: float, tags: NDArray[np.intp]) -> Fix:
        """One vectorised fix of ``tags``; on a site of several buildings, one per building
        with its own gateways (a tag goes to the building whose gateways heard it most)."""
        if len(self.buildings) < 2:
            return self._locate_in(now, tags, self.anchors, self.locator, None)
        which = assign(self.window.heard(now, tags), self._gateway_building, len(self.buildings))
        which = np.maximum(which, 0)  # heard by none: unknown in any building
        n = len(tags)
        xy, floor = np.full((n, 2), np.nan), np.full(n, -1, dtype=np.intp)
        cov, n_used = np.full((n, 2, 2), np.inf), np.zeros(n, dtype=np.intp)
        residual, known = np.full(n, np.nan), np.zeros(n, dtype=bool)
        for b in np.unique(which).tolist():
            rows = np.flatnonzero(which == b)
            bld = self.buildings[b]
            fix = self._locate_in(now, tags[rows], bld.anchors, self._building_locators[b], bld)
            xy[rows], cov[rows], n_used[rows] = fix.xy, fix.covariance, fix.n_used
            residual[rows], known[rows] = fix.residual_rms, fix.known
            floor[rows] = np.where(fix.floor >= 0, bld.floors[np.maximum(fix.floor, 0)], -1)
        return Fix(xy=xy, floor=floor, covariance=cov, n_used=n_used, residual_rms=residual,
                   known=known)  # fmt: skip

    def _locate_in(
        self,
        now: float,
        tags: NDArray[np.intp],
        anchors: Anchors,
        locator: Locator,
        building: Building | None,
    ) -> Fix:
        """One vectorised fix of ``tags`` against ``anchors`` (the site's, or ``building``'s:
        its gateways, floor indices local to it; the fix's floors are then local too).

        With walls in the site the multi-wall loss between the tag and every gateway (COST 231
        multi-wall model, docs/engine.md) is added back to the RSSI before the fit, evaluated at
        the tag's track; a tag without a track starts from a coarse grid search of the wall-aware
        model over its floor (the wall loss is piecewise constant, so the fit needs a start in
        the right room)."""
        gws = None if building is None else building.gateways
        snap = self.window.snapshot(now, tags, gws)
        prev = self.tracker.estimate(now, tags)
        prev_floor = prev.floor
        if building is not None:  # site floor -> the building's (-1: another building)
            at = np.minimum(np.searchsorted(building.floors, prev.floor), len(building.floors) - 1)
            prev_floor = np.where(building.floors[at] == prev.floor, at, -1)
        prev_known = prev.known & (prev_floor >= 0)
        variances = link_variance(snap.weight, self.params.locator.sigma_db)
        up = self.window.gateways_up(now)
        if gws is not None:
            up = up[gws]
        if self.walls is None:
            return locator.locate(
                snap.rssi,
                variances=variances,
                gateway_up=up,
                initial_xy=np.where(prev_known[:, None], prev.xy, np.nan),
                initial_floor=np.where(prev_known, prev_floor, -1),
            )
        ref = prev.xy.copy()
        floor = prev_floor.copy()
        new = ~prev_known
        if new.any():
            floor[new] = choose_floor(snap.rssi[new], anchors)
            site_floor = floor[new] if building is None else np.where(
                floor[new] >= 0, building.floors[np.maximum(floor[new], 0)], -1)  # fmt: skip
            ref[new] = self._grid_start(snap.rssi[new], variances[new], site_floor, gws)
        floor = np.where(prev_known | (floor >= 0), floor, -1)
        offset = self.walls.lookup(ref, gateways=gws)
        return locator.locate(
            snap.rssi,
            variances=variances,
            gateway_up=up,
            link_offset_db=offset,
            initial_xy=np.where((floor >= 0)[:, None], ref, np.nan),
            initial_floor=floor,
        )

    def _grid_start(
        self,
        rssi: NDArray[np.float64],
        variances: NDArray[np.float64],
        floor: NDArray[np.intp],
        gateways: NDArray[np.intp] | None = None,
    ) -> NDArray[np.float64]:
        """Best point (K, 2) of a 1 m grid of each tag's floor (site index) under the
        wall-aware model: weighted squared error over the heard gateways of that floor, as
        matrix products. ``gateways``: the (sorted) columns of ``rssi`` (default: all)."""
        out = np.full((len(rssi), 2), np.nan)
        gw_floor = self.anchors.floor if gateways is None else self.anchors.floor[gateways]
        for f in np.unique(floor[floor >= 0]).tolist():
            cand, m = self._grid_model(f)  # m (C, G_f)
            on = gw_floor == f
            m2 = (m * m).T
            every = np.flatnonzero(floor == f)
            for s in range(0, len(every), GRID_CHUNK):  # (tags, C) costs: bounded blocks
                rows = every[s : s + GRID_CHUNK]
                y = rssi[rows][:, on]
                w = np.where(np.isfinite(y), 1.0 / variances[rows][:, on], 0.0)
                y = np.nan_to_num(y)
                # sum_g w (y - m)^2 = sum w y^2 - 2 (w y) m^T + w (m^2)^T
                cost = (w * y * y).sum(axis=1)[:, None] - 2.0 * (w * y) @ m.T + w @ m2
                out[rows] = cand[np.argmin(cost, axis=1)]
        return out

    def _grid_model(self, f: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Candidate points (C, 2) inside floor ``f`` and the model RSSI (C, G_f) there at the
        floor's own gateways (cached per floor)."""
        if f not in self._grids:
            outline = np.asarray(self.site.floors[f].outline, dtype=np.float64)
            lo, hi = outline.min(axis=0), outline.max(axis=0)
            gx, gy = np.meshgrid(
                np.arange(lo[0] + 0.5, hi[0], 1.0), np.arange(lo[1] + 0.5, hi[1], 1.0)
            )
            cand = np.column_stack([gx.ravel(), gy.ravel()])
            cand = cand[points_in_polygon(cand, outline)]
            a = self.anchors
            on = a.floor == f
            z = a.floor_elevation[f] + self.params.locator.tag_height_m
            xyz = a.xyz[on]
            d = np.sqrt(
                ((cand[:, None, :] - xyz[None, :, :2]) ** 2).sum(axis=2) + (xyz[:, 2] - z) ** 2
            )
            model = a.p0[on] - 10.0 * a.n[on] * np.log10(np.maximum(d, self.params.locator.d_min_m))
            assert self.walls is not None
            self._grids[f] = (cand, model - self.walls.lookup(cand, gateways=np.flatnonzero(on)))
        return self._grids[f]

    def _place(
        self,
        now: float,
        tags: NDArray[np.int64],
        xy: NDArray[np.float64],
        floor: NDArray[np.int64],
        uncertainty: NDArray[np.float64],
    ) -> None:
        """A door read: restart the tag's track at the door, whatever RSSI said."""
        tags, first = np.unique(tags[::-1], return_index=True)  # the latest read of each tag
        last = len(xy) - 1 - first
        m = len(tags)
        var = (uncertainty[last] ** 2) / 2.0
        cov = np.zeros((m, 2, 2))
        cov[:, 0, 0] = var
        cov[:, 1, 1] = var
        fix = Fix(
            xy=xy[last].astype(np.float64),
            floor=floor[last].astype(np.int64),
            covariance=cov,
            n_used=np.zeros(m, dtype=np.int64),
            residual_rms=np.zeros(m),
            known=np.ones(m, dtype=bool),
        )
        self.tracker.reset(tags)
        self.tracker.update(now, fix, tags)


def wall_maps(site: Site) -> WallLossMaps | None:
    """Wall-loss rasters of the site's gateways over their floors (None: no walls)."""
    ga = site.gateway_arrays
    maps = WallLossMaps(ga.xyz, ga.floor, site_walls(site))
    return None if maps.empty else maps


def _newest(decoded: Decoded) -> float:
    times = [float(a["t"].max()) for a in (decoded.obs, decoded.telemetry) if len(a)]
    return max(times, default=0.0)


def _join(
    a: tuple[NDArray[np.intp], Fix | None], b: tuple[NDArray[np.intp], Fix | None]
) -> tuple[NDArray[np.intp], Fix | None]:
    """Located tags and fixes of two calls as one, sorted by tag (a tag in both: ``b``'s)."""
    parts = [(t, f) for t, f in (a, b) if f is not None and len(t)]
    if len(parts) < 2:
        return parts[0] if parts else (np.zeros(0, dtype=np.intp), None)
    tags = np.concatenate([parts[0][0], parts[1][0]])
    # the last occurrence of each tag: np.unique on the reversed order gives the first
    _, first = np.unique(tags[::-1], return_index=True)
    keep = len(tags) - 1 - first  # sorted by tag
    f0, f1 = parts[0][1], parts[1][1]
    assert f0 is not None and f1 is not None
    fix = Fix(**{k.name: np.concatenate([getattr(f0, k.name), getattr(f1, k.name)])[keep]
                 for k in fields(Fix)})  # fmt: skip
    return tags[keep], fix


def _overlay(base: TrackEstimate, part: TrackEstimate, rows: NDArray[np.intp]) -> TrackEstimate:
    """``base`` (N tags) with the rows ``rows`` replaced by ``part`` (len(rows) tags), at
    ``part``'s time."""
    out = {}
    for k in fields(TrackEstimate):
        if k.name == "t":
            continue
        arr = getattr(base, k.name).copy()
        arr[rows] = getattr(part, k.name)
        out[k.name] = arr
    return TrackEstimate(t=part.t, **out)


def _merge(a: Transitions, b: Transitions) -> Transitions:
    entered = np.sort(np.concatenate([a.entered, b.entered]), order="t")
    left = np.sort(np.concatenate([a.left, b.left]), order="t")
    return Transitions(entered, left, b.unknown)
