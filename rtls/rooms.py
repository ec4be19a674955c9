"""Room filter: a hidden Markov model of each tag's room, vectorised over tags.

Bayesian filtering of a tag's room in the spirit of Fox et al. (2003, "Bayesian filtering for
location estimation", IEEE Pervasive Computing). The state of a tag is a probability vector over
the cells of its floor (:class:`rtls.room_map.RoomMap`: the rooms that the site's zones and
walls cut the floor into, large rooms cut into blocks of ``block_m``). Every tick, for all the
tags heard at once:

- **predict**: a continuous-time Markov chain between cells that share an opening (a door, a
  gap, a zone boundary without a wall). The rate from cell a to cell b is ``v L_ab / (π A_a)``:
  the rate at which a walker moving at speed ``v`` in random directions, spread uniformly over
  a cell of area ``A_a``, crosses an opening of length ``L_ab`` (the wall flux of kinetic
  theory), plus a small rate of jumping anywhere on the floor (a door the site file forgot). The
  chain is reversible with the cells' areas as its stationary law, so ``exp(Q dt)`` comes from
  one symmetric eigendecomposition per floor, for any dt per tag.
- **update**: the log-likelihood of what was heard under the engine's wall-aware path-loss
  model (docs/locator.md) at sample points of every cell, as matrix products over all tags:
  Gaussian for the heard links, censored (Tobit, Tobin 1958, with an outage floor as in
  :class:`rtls.solver.Censored`) for the floor's gateways that are up and heard nothing;
  log-sum-exp over each cell's points weighted by area (the tag is anywhere in the cell).

  Evidence ("packets", default): the advertisements received since the last tick, each packet
  counted once: variance σ² + σ_f² (shadowing plus Rayleigh fading), silence censored at the
  per-packet level (fading and packet loss). Shadowing is the same from one packet to the next
  while a tag stands still, so the prior is tempered by exponential forgetting (Kulhavý and
  Zarrop 1993): ``p ∝ prior^γ × likelihood``. A static tag's evidence then converges to
  ``1 / (1 - γ)`` packets' worth; γ = σ_f² / (σ² + σ_f²) makes that the information of the
  shadowing alone (σ² against σ² + σ_f² per packet), i.e. the shadowing counted once.
  Evidence "window": the engine's RSSI window (:class:`rtls.window.RssiWindow`), whose
  successive snapshots overlap: each counts ``min(1, dt / τ)`` of its log-likelihood.

The filter sums cells into zone probabilities, per tag over the zones of its own floor;
:meth:`RoomFilter.update_membership` turns them into membership
(:meth:`rtls.zones.ZoneMembership.update_pairs`: thresholds and dwell, over the pairs a
threshold is reached) and the engine names a zone only while its probability stays high
(:meth:`RoomFilter.named_pairs`): a room when the filter is sure of it, else the enclosing zone
(the ward), else none. :meth:`RoomFilter.zone_probability` and :meth:`RoomFilter.named` are the
dense (N, Z) views, for tests. Pure: every call takes ``now``. docs/zones.md. Shapes: ``N``
tags, ``K`` tags updated, ``S`` cells, ``C`` sample points, ``G`` gateways, ``Z`` zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.special import log_ndtr

from rtls.errors import ConfigError
from rtls.locate import RAYLEIGH_SPREAD_DB, Anchors, LocatorParams, link_variance
from rtls.observations import Observations
from rtls.room_map import RoomMap
from rtls.site import Site
from rtls.walls import WallLossMaps
from rtls.window import RssiWindow
from rtls.zone_index import ZoneError, ZoneIndex
from rtls.zones import Transitions, ZoneMembership

__all__ = ["RoomFilter", "RoomMap", "RoomParams"]

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

_TINY = 1e-12  # probabilities below this are stored as 0 (and predicted back to at least it)
_ONE_THREAD_MNK = 1 << 18  # OpenBLAS runs a product of m n k below this on one thread
_MIN_ROWS = 256  # but never cut the likelihood product into blocks of fewer points


@dataclass(frozen=True)
class RoomParams:
    """Room filter settings; defaults and their reasons in docs/zones.md ("Room filter").
    ``enabled``: the engine runs the filter (when the site has zones)."""

    enabled: bool = True
    evidence: Literal["packets", "window"] = "packets"  # each tick's packets, or the window
    cell_m: float = 0.5  # raster that cuts floors into rooms (and finds openings)
    point_stride: int = 2  # sample points every stride squares (1 m), all squares near walls
    block_m: float = 3.0  # rooms are cut into cells of at most this (0: whole rooms)
    walk_speed_m_s: float = 1.0  # v of the crossing rate v L / (π A)
    jump_rate_per_s: float = 1e-3  # rate of a jump anywhere on the floor
    temper: float = 1.0  # exponent of each reading's likelihood (< 1: distrust the model)
    forgetting: float | None = None  # γ per packet; None: σ_f² / (σ² + σ_f²) (window: 1)
    fading_db: float = RAYLEIGH_SPREAD_DB  # per-packet fading spread (docs/radio-model.md)
    packet_loss: float = 0.05  # chance a packet is missed whatever its signal (censoring floor)
    settle_s: float = 1.0  # a link heard this recently is not counted silent (packets)
    enter_probability: float = 0.9  # a zone is entered at or above this, for its dwell
    leave_probability: float = 0.6  # and left below this, for its dwell
    exit_enter_probability: float = 0.5  # exit zones (alarms: a missed exit is the worst error)
    exit_leave_probability: float = 0.3
    show_probability: float = 0.9  # a zone is named only while at or above this
    min_gateways: int = 3  # fewer heard links on the floor: no evidence
    stale_s: float = 10.0  # no evidence for longer: the tag's room is unknown
    # a reading stands for the tag's advertising interval plus this (until the next is due);
    # older, it is no evidence for a membership dwell to complete on (docs/zones.md)
    reading_slack_s: float = 0.5
    robust_k: float | None = None  # Huber's k (residuals beyond k σ count linearly); None: Gaussian

    def __post_init__(self) -> None:
        checks = [
            ("evidence", self.evidence in ("packets", "window")),
            ("cell_m", 0.05 <= self.cell_m <= 5.0),
            ("point_stride", 1 <= self.point_stride <= 10),
            ("block_m", 0.0 <= self.block_m <= 1000.0),
            ("walk_speed_m_s", 0.0 <= self.walk_speed_m_s <= 10.0),
            ("jump_rate_per_s", 0.0 <= self.jump_rate_per_s <= 1.0),
            ("temper", 0.0 < self.temper <= 1.0),
            ("forgetting", self.forgetting is None or 0.0 < self.forgetting <= 1.0),
            ("fading_db", 0.0 <= self.fading_db <= 20.0),
            ("packet_loss", 0.0 <= self.packet_loss < 1.0),
            ("settle_s", 0.0 <= self.settle_s <= 60.0),
            ("enter_probability", 0.5 < self.enter_probability <= 1.0),
            ("leave_probability", 0.0 <= self.leave_probability <= self.enter_probability),
            ("exit_enter_probability", 0.0 < self.exit_enter_probability <= 1.0),
            (
                "exit_leave_probability",
                0.0 <= self.exit_leave_probability <= self.exit_enter_probability,
            ),
            ("show_probability", 0.0 <= self.show_probability <= 1.0),
            ("min_gateways", 1 <= self.min_gateways <= 100),
            ("stale_s", 0.0 < self.stale_s <= 3600.0),
            ("reading_slack_s", 0.0 <= self.reading_slack_s <= 60.0),
            ("robust_k", self.robust_k is None or 0.0 < self.robust_k <= 100.0),
        ]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"RoomParams.{name} = {getattr(self, name)!r} is out of range")


# -- the filter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FloorModel:
    """What the filter precomputes for one floor with rooms."""

    cells: slice  # of the RoomMap
    gateways: IntArray  # (G_f,) the floor's gateways
    terms: Float32Array  # (C_f, 3 G_f + 1): m, -m²/2, log P(silent | point), log share
    gather: csr_matrix  # (S_f, C_f) float32, 1 where the point belongs to the cell
    prior: FloatArray  # (S_f,) stationary law (area)
    sqrt_prior: FloatArray  # (S_f,)
    basis: FloatArray  # (S_f, S_f) eigenvectors of the symmetrised generator
    rate: FloatArray  # (S_f,) its eigenvalues (<= 0)


class RoomFilter:
    """Cell probabilities of ``n_tags`` tags; a pure state machine (read, never write, the
    state: ``prob`` (N, S), ``floor`` (N,) -1 before any evidence, ``t_prob`` (N,) time ``prob``
    refers to, ``t_evidence`` (N,) time of the last evidence or door read).

    ``anchors`` give the gateways and their calibration; ``walls`` (None: no walls) the wall
    losses the engine adds to the model; ``sigma_db``, ``outage``, ``tag_height_m`` and
    ``d_min_m`` are the locator's (:class:`rtls.locate.LocatorParams`); ``interval_s`` (N,) or
    one number, each tag's advertising interval (how long a reading stands, with
    ``reading_slack_s``)."""

    def __init__(
        self,
        rooms: RoomMap,
        anchors: Anchors,
        n_tags: int,
        params: RoomParams | None = None,
        *,
        walls: WallLossMaps | None = None,
        sigma_db: float = 4.0,
        outage: float = 0.01,
        tag_height_m: float = 1.0,
        d_min_m: float = 1.0,
        exit_zones: ArrayLike | None = None,
        interval_s: ArrayLike = 2.0,
    ) -> None:
        self.rooms = rooms
        self.anchors = anchors
        self.params = p = params or RoomParams()
        self.sigma_db = sigma_db
        if p.forgetting is not None:
            self._gamma = p.forgetting
        elif p.evidence == "packets":  # a static tag's evidence converges to shadowing alone
            self._gamma = p.fading_db**2 / (sigma_db**2 + p.fading_db**2)
        else:
            self._gamma = 1.0
        self._floors: dict[int, _FloorModel] = {}
        for f, csl in enumerate(rooms.cell_slice):
            if csl.stop > csl.start:
                self._floors[f] = _floor_model(
                    rooms, f, anchors, p, walls, sigma_db, outage, tag_height_m, d_min_m
                )
        # each tag's probabilities over its own floor's cells only, (N, max S_f): over every
        # cell of the site this was (N, S), 900 MB at 10,000 tags on a 25-building group
        widest = max((csl.stop - csl.start for csl in rooms.cell_slice), default=0)
        # float32: probabilities are kept to _TINY (1e-12), far above float32's smallest
        # normal (1e-38), and the products that use them run in float64; half the memory
        # (18 -> 9 MB at 10,000 tags on the group, 180 -> 90 MB at 100,000 on one building)
        self._local = np.zeros((n_tags, widest), dtype=np.float32)
        # zone probabilities over each tag's own floor's zones only, (N, max Z_f): over every
        # zone of the site this was (N, Z), 113 MB at 10,000 tags on a 25-building group
        n_zones = rooms.zones.shape[1]
        floor_cols = {f: np.flatnonzero(rooms.zones[fm.cells].sum(axis=0))
                      for f, fm in self._floors.items()}  # fmt: skip
        width = max((len(c) for c in floor_cols.values()), default=0)
        n_floors = len(rooms.cell_slice)
        self._floor_zones = np.full((n_floors + 1, width), -1, dtype=np.int64)  # [-1]: none
        self._zone_col = np.zeros(n_zones, dtype=np.intp)  # local column of each zone
        self._zone_floor = np.full(n_zones, -2, dtype=np.intp)  # its floor (-2: no cells)
        self._zone_matrix: dict[int, csr_matrix] = {}  # per floor: (Z_f, S_f), sparse
        for f, cols in floor_cols.items():
            self._floor_zones[f, : len(cols)] = cols
            self._zone_col[cols] = np.arange(len(cols))
            self._zone_floor[cols] = f
            cells = self._floors[f].cells
            self._zone_matrix[f] = csr_matrix(rooms.zones[cells][:, cols].T, dtype=np.float64)
        self._zone_prob = np.zeros((n_tags, width))  # prob summed per zone of the tag's floor
        self._revision = np.zeros(n_tags, dtype=np.int64)  # bumped at each change of _zone_prob
        self.floor = np.full(n_tags, -1, dtype=np.intp)
        self.t_prob = np.full(n_tags, -np.inf)
        self.t_evidence = np.full(n_tags, -np.inf)
        self._pending: list[Observations] = []
        is_exit = np.zeros(n_zones, bool) if exit_zones is None else np.asarray(exit_zones, bool)
        if is_exit.shape != (n_zones,):
            raise ZoneError(f"exit_zones must have shape ({n_zones},), got {is_exit.shape}")
        self._enter = np.where(is_exit, p.exit_enter_probability, p.enter_probability)  # (Z,)
        self._leave = np.where(is_exit, p.exit_leave_probability, p.leave_probability)
        self._show = np.where(is_exit, p.exit_enter_probability, p.show_probability)
        try:
            every = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), (n_tags,))
        except ValueError:
            raise ZoneError(f"interval_s must be one number or one per tag ({n_tags})") from None
        if not (np.isfinite(every).all() and (every > 0).all()):
            raise ZoneError("interval_s must be finite and > 0 for every tag")
        self.reading_s = every + p.reading_slack_s  # (N,) how long a reading stands

    @classmethod
    def for_site(
        cls,
        site: Site,
        index: ZoneIndex,
        anchors: Anchors,
        params: RoomParams | None = None,
        *,
        walls: WallLossMaps | None = None,
        locator: LocatorParams | None = None,
    ) -> RoomFilter:
        """The filter of every tag of ``site`` with the locator's model settings."""
        p = params or RoomParams()
        lp = locator or LocatorParams()
        rooms = RoomMap.from_site(
            site, index, cell_m=p.cell_m, point_stride=p.point_stride, block_m=p.block_m
        )
        interval = [t.interval_s or site.rules.for_kind(t.kind.value).heartbeat_s
                    for t in site.tags]  # fmt: skip
        return cls(
            rooms, anchors, len(site.tags), p, walls=walls, sigma_db=lp.sigma_db,
            outage=lp.silent_outage, tag_height_m=lp.tag_height_m, d_min_m=lp.d_min_m,
            exit_zones=index.is_exit, interval_s=interval,
        )  # fmt: skip

    # -- evidence ------------------------------------------------------------------------------

    def add(self, obs: Observations) -> None:
        """Keep observations (OBS_DTYPE) for the next :meth:`evidence` (packet evidence)."""
        if self.params.evidence == "packets" and len(obs):
            self._pending.append(obs)

    def evidence(self, now: float, tags: ArrayLike, floor: ArrayLike, window: RssiWindow) -> None:
        """Fold in what was heard of ``tags`` (K,) since the last call, on their ``floor`` (K,)
        (-1: no update): with ``evidence = "packets"`` the observations given to :meth:`add`,
        else the RSSI ``window``'s snapshot. The window also says which gateways are up."""
        idx = np.asarray(tags, dtype=np.intp).reshape(-1)
        order = np.argsort(idx, kind="stable")
        idx, floor = idx[order], np.asarray(floor).reshape(-1)[order]
        # only the gateways of these tags' floors count (update): columns (G_c,) of them
        columns = np.flatnonzero(np.isin(self.anchors.floor, floor[floor >= 0]))
        up = window.gateways_up(now)[columns]
        if self.params.evidence == "window":
            snap = window.snapshot(now, idx, columns)
            var = link_variance(snap.weight, self.sigma_db, self.params.fading_db)
            silent = ~np.isfinite(snap.rssi) & up[None, :]
            new = np.minimum(1.0, (now - self.t_evidence[idx]) / window.tau_s)
            self.update(now, idx, snap.rssi, var, silent, floor, self.params.temper * new,
                        columns=columns)  # fmt: skip
            return
        obs = np.concatenate(self._pending) if self._pending else None
        self._pending.clear()
        if obs is None or not len(idx):
            return
        rssi, var, silent = self._packets(obs, idx, window, up, columns)
        self.update(now, idx, rssi, var, silent, floor, columns=columns)

    def _packets(
        self,
        obs: Observations,
        idx: IntArray,
        window: RssiWindow,
        up: BoolArray,
        columns: IntArray,
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """One reading per tag from the observations since the last tick, over the gateways
        ``columns`` (G_c,) (``up`` (G_c,) theirs): per link the mean RSSI (K, G_c) of its
        packets, their variance (K, G_c) (shadowing plus fading over the packet count) and the
        silent links (K, G_c): gateways up that have reported past the tag's first packet (so
        the packet would be in) and heard neither it nor any packet of the tag within
        ``settle_s`` before. Packets of other gateways count for nothing (their floors')."""
        g = len(columns)
        col = np.full(self.anchors.n_gateways, -1, dtype=np.intp)
        col[columns] = np.arange(g)
        k = np.searchsorted(idx, obs["tag"])
        k = np.minimum(k, len(idx) - 1)
        gw = col[obs["gateway"].astype(np.intp)]
        mine = (idx[k] == obs["tag"]) & (gw >= 0)
        k, gw = k[mine], gw[mine]
        t, y = obs["t"][mine].astype(np.float64), obs["rssi"][mine].astype(np.float64)
        link = k * g + gw
        count = np.bincount(link, minlength=len(idx) * g).reshape(len(idx), g)
        total = np.bincount(link, y, minlength=len(idx) * g).reshape(len(idx), g)
        first = np.full(len(idx), np.inf)
        np.minimum.at(first, k, t)
        heard = count > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            rssi = np.where(heard, total / np.maximum(count, 1), np.nan)
            var = self.sigma_db**2 + self.params.fading_db**2 / np.where(heard, count, 0)
        # a link not heard in these packets: its newest packet in the window is older
        recent = window.newest(idx, columns) >= first[:, None] - self.params.settle_s
        caught_up = window.gateway_last[columns][None, :] >= first[:, None]
        silent = ~heard & ~recent & caught_up & up[None, :]
        return rssi, var, silent

    def update(
        self,
        now: float,
        tags: ArrayLike,
        rssi: ArrayLike,
        variances: ArrayLike,
        silent: ArrayLike,
        floor: ArrayLike,
        weight: ArrayLike | None = None,
        *,
        columns: IntArray | None = None,
    ) -> None:
        """Fold in one reading of each of ``tags`` (K,) (distinct): ``rssi`` (K, G) dBm, NaN
        where not heard; ``variances`` (K, G) dB² of each heard link; ``silent`` (K, G) bool the
        links whose silence counts (censored); ``floor`` (K,) each tag's floor (-1: no update);
        ``weight`` (K,) or scalar, the power of each reading's likelihood (default ``temper``);
        ``columns`` (G_c,) sorted: the readings' columns are those gateways (every gateway of
        the tags' floors), (K, G_c), instead of all the site's.

        A tag on a new floor starts from the floor's stationary law. A tag with fewer than
        ``min_gateways`` heard links on its floor gets no evidence this time."""
        idx = np.asarray(tags, dtype=np.intp).reshape(-1)
        y = np.asarray(rssi, dtype=np.float64)
        var = np.asarray(variances, dtype=np.float64)
        quiet = np.asarray(silent, dtype=bool)
        fl = np.asarray(floor, dtype=np.intp).reshape(-1)
        cols = np.arange(self.anchors.n_gateways) if columns is None else columns
        g = len(cols)
        shape = (len(idx), g)
        wt = np.broadcast_to(
            np.asarray(self.params.temper if weight is None else weight, dtype=np.float64),
            idx.shape,
        )
        if y.shape != shape or var.shape != shape or quiet.shape != shape or fl.shape != idx.shape:
            raise ZoneError(f"update needs rssi, variances, silent (K, {g}) and floor (K,)")
        on_floor = self.anchors.floor[cols][None, :] == fl[:, None]  # (K, G_c)
        n_heard = (np.isfinite(y) & on_floor).sum(axis=1)
        ok = (fl >= 0) & (n_heard >= self.params.min_gateways)
        for f in np.unique(fl[ok]).tolist():
            k = np.flatnonzero(ok & (fl == f))
            fm = self._floors.get(f)
            if fm is None:  # a floor without rooms: known, in no zone
                self._reset(idx[k], f, None, now)
            else:
                gw = np.searchsorted(cols, fm.gateways)  # the floor's columns
                reading = (y[k][:, gw], var[k][:, gw], quiet[k][:, gw])
                self._evidence(fm, now, idx[k], f, *reading, wt[k])
            self.t_evidence[idx[k]] = now

    def place(
        self,
        now: float,
        tags: ArrayLike,
        xy: ArrayLike,
        floor: ArrayLike,
        radius: ArrayLike,
        zones: ArrayLike | None = None,
    ) -> None:
        """Door reads: each tag (M,) is within ``radius`` (M,) metres of ``xy`` (M, 2) on
        ``floor`` (M,) now, whatever its RSSI said: its probability becomes that of the rooms
        whose sample points lie within the radius (the nearest point's room if none), by area.
        ``zones`` (M, Z) bool (``DoorFix.zones``: an exit door's exit zones): where such a zone
        has points within the radius, only its rooms count (the tag entered it, as
        :meth:`rtls.zones.ZoneMembership.enter_at_door` says). The latest read of a tag counts."""
        tg = np.asarray(tags, dtype=np.intp).reshape(-1)
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        fl = np.asarray(floor, dtype=np.intp).reshape(-1)
        r = np.asarray(radius, dtype=np.float64).reshape(-1)
        n_zones = self.rooms.zones.shape[1]
        into = np.zeros((len(tg), n_zones), bool) if zones is None else np.asarray(zones, bool)
        if not len(tg) == len(pts) == len(fl) == len(r) == len(into):
            raise ZoneError("place needs tags, xy, floor, radius (and zones) of the same length")
        tg, first = np.unique(tg[::-1], return_index=True)  # the latest read of each tag
        last = len(pts) - 1 - first
        pts, fl, r, into = pts[last], fl[last], r[last], into[last]
        for f in np.unique(fl[fl >= 0]).tolist():
            k = np.flatnonzero(fl == f)
            fm = self._floors.get(f)
            if fm is None:
                self._reset(tg[k], f, None, now)
            else:
                psl = self.rooms.point_slice[f]
                ps = self.rooms.points[psl]
                d = np.hypot(*(ps[None, :, :] - pts[k, None, :]).transpose(2, 0, 1))  # (M, C)
                near = d <= r[k, None]
                near[np.arange(len(k)), np.argmin(d, axis=1)] = True
                cols = self._floor_zones[f][self._floor_zones[f] >= 0]  # the floor's zones
                zone_in = self.rooms.zones[self.rooms.point_cell[psl]][:, cols].toarray()
                exit_pt = (into[k][:, cols].astype(np.float64) @ zone_in.T.astype(np.float64)) > 0
                use = np.where((near & exit_pt).any(axis=1, keepdims=True), near & exit_pt, near)
                area = use * self.rooms.point_area[psl]
                mass = np.asarray(fm.gather @ area.T).T
                self._reset(tg[k], f, mass / mass.sum(axis=1, keepdims=True), now)
            self.t_evidence[tg[k]] = now

    # -- answers -------------------------------------------------------------------------------

    def known(self, now: float) -> BoolArray:
        """(N,) tags with a floor and evidence (or a door read) within ``stale_s`` of ``now``."""
        return np.asarray((self.floor >= 0) & (now - self.t_evidence <= self.params.stale_s))

    def predicted(self, now: float, tags: ArrayLike | None = None) -> FloatArray:
        """(K, S) cell probabilities of ``tags`` (default all) advanced to ``now`` by the chain
        alone (what the next update starts from); rows of tags without a floor are 0."""
        idx = np.arange(len(self._local)) if tags is None else np.asarray(tags, np.intp)
        out = np.zeros((len(idx), len(self.rooms)))
        for f, fm in self._floors.items():
            k = np.flatnonzero(self.floor[idx] == f)
            if len(k):
                rows = idx[k]
                p = self._predict(fm, self._cells(rows, fm), now - self.t_prob[rows])
                out[k[:, None], np.arange(fm.cells.start, fm.cells.stop)[None, :]] = p
        return out

    @property
    def prob(self) -> FloatArray:
        """(N, S) cell probabilities over the whole site as of each tag's last update (dense:
        for inspection and tests, large on a big site)."""
        out = np.zeros((len(self._local), len(self.rooms)))
        for f, fm in self._floors.items():
            rows = np.flatnonzero(self.floor == f)
            out[rows, fm.cells] = self._cells(rows, fm)
        return out

    def _cells(self, tags: IntArray, fm: _FloorModel) -> FloatArray:
        """(K, S_f) probabilities of ``tags`` (all on ``fm``'s floor) over its cells."""
        return self._local[tags, : fm.cells.stop - fm.cells.start]

    def zone_probability(self) -> FloatArray:
        """(N, Z) probability that each tag is in each zone: the sum over the cells inside it
        (as of each tag's last evidence). Rows of tags on a floor without rooms are 0. Dense,
        built on each call: for inspection and tests (the engine reads pairs)."""
        out = np.zeros((len(self._zone_prob), self.rooms.zones.shape[1]))
        rows = np.flatnonzero(self.floor >= 0)
        table = self._floor_zones[self.floor[rows]]  # (K, W)
        r, c = np.nonzero(table >= 0)
        out[rows[r], table[r, c]] = self._zone_prob[rows[r], c]
        return out

    def zone_probability_of(self, tags: ArrayLike, zones: ArrayLike) -> FloatArray:
        """(P,) the probability that each of ``tags`` (P,) is in the paired zone of ``zones``
        (P,) (0 for a zone of another floor than the tag's)."""
        tg = np.asarray(tags, dtype=np.intp)
        zn = np.asarray(zones, dtype=np.intp)
        here = self._zone_floor[zn] == self.floor[tg]
        return np.where(here, self._zone_prob[tg, self._zone_col[zn]], 0.0)

    def update_membership(
        self, now: float, membership: ZoneMembership, among: BoolArray | None = None
    ) -> Transitions:
        """Advance ``membership`` with the zone probabilities: enter at ``enter_probability``,
        leave below ``leave_probability`` (exit zones: the ``exit_`` ones), each for the zone's
        dwell; unknown tags frozen. A run completes only while the tag's newest evidence (or
        door read) is at most ``reading_s`` old (the ``fresh`` rows of
        :meth:`~rtls.zones.ZoneMembership.update_probability`): a reading held after the next
        one was due, because too few links were heard, does not complete a dwell. ``among``
        (N,) bool: advance only those tags (:meth:`~rtls.zones.ZoneMembership.update`)."""
        known = self.known(now)
        busy = membership.busy(known, self._revision)  # the others: nothing could change
        if among is not None:
            busy &= among
        rows = np.flatnonzero(known & busy)
        table = self._floor_zones[self.floor[rows]]  # (K, W) the zones of each tag's floor
        valid = table >= 0
        col = np.where(valid, table, 0)
        p = self._zone_prob[rows]
        toward_in = valid & (p >= self._enter[col])
        toward_out = ~valid | (p < self._leave[col])
        r, c = np.nonzero(toward_in | ~toward_out)  # the rest: far, as update_pairs assumes
        return membership.update_pairs(
            now, known, rows[r], table[r, c], toward_in[r, c], toward_out[r, c], toward_in[r, c],
            fresh=now - self.t_evidence <= self.reading_s + 1e-9, among=busy,
            revision=self._revision,
        )  # fmt: skip

    def named(self, inside: ArrayLike, tags: IntArray | None = None) -> BoolArray:
        """(N, Z): the zones of membership ``inside`` (N, Z) that may be named now, those whose
        probability is still at least ``show_probability`` (exit zones: at least
        ``exit_enter_probability``, as their membership): a zone being left is not shown during
        its leave dwell, so the answer falls back to the enclosing zone. ``tags`` (K,): the
        rows of ``inside`` (K, Z) are those tags'."""
        prob = self.zone_probability()
        return np.asarray(inside, dtype=bool) & (
            (prob if tags is None else prob[tags]) >= self._show
        )

    def named_pairs(self, tags: ArrayLike, zones: ArrayLike) -> BoolArray:
        """(P,) which (tag, zone) pairs of a membership may be named now: as :meth:`named`,
        for the zones tags are inside (:meth:`rtls.zones.ZoneMembership.inside_pairs`)."""
        zn = np.asarray(zones, dtype=np.intp)
        return np.asarray(self.zone_probability_of(tags, zn) >= self._show[zn])

    # -- internals -----------------------------------------------------------------------------

    def _reset(self, tags: IntArray, f: int, prob: FloatArray | None, now: float) -> None:
        """Put ``tags`` on floor ``f`` with cell probabilities ``prob`` (K, S_f) (None: the
        floor's stationary law, or nothing on a floor without rooms)."""
        self._local[tags] = 0.0
        fm = self._floors.get(f)
        if fm is not None:
            self._local[tags, : fm.cells.stop - fm.cells.start] = fm.prior if prob is None else prob
        self.floor[tags] = f
        self.t_prob[tags] = now
        self._sum_zones(tags, f)

    def _evidence(
        self,
        fm: _FloorModel,
        now: float,
        tags: IntArray,
        f: int,
        y: FloatArray,
        var: FloatArray,
        silent: BoolArray,
        weight: FloatArray,
    ) -> None:
        moved = self.floor[tags] != f
        if moved.any():
            self._reset(tags[moved], f, None, now)
        prior = self._predict(fm, self._cells(tags, fm), now - self.t_prob[tags])
        ll = self._log_likelihood(fm, y, var, silent, weight, self.params.robust_k)  # (C_f, K)
        cell_ll = _segment_logsumexp(ll, fm.gather).T  # (K, S_f)
        with np.errstate(divide="ignore"):
            post = self._gamma * np.log(prior) + cell_ll
        post -= post.max(axis=1, keepdims=True)
        np.exp(post, out=post)
        post /= post.sum(axis=1, keepdims=True)
        post[post < _TINY] = 0.0  # no denormals (slow) in later products
        self._local[tags, : fm.cells.stop - fm.cells.start] = post
        self._sum_zones(tags, f)
        self.t_prob[tags] = now

    def _sum_zones(self, tags: IntArray, f: int) -> None:
        """Refresh the zone probabilities of ``tags`` (all on floor ``f``): one sparse product
        (single-threaded, cheap for the few tags of a tick)."""
        fm = self._floors.get(f)
        self._zone_prob[tags] = 0.0
        self._revision[tags] += 1
        if fm is None:
            return
        z = self._zone_matrix[f].shape[0]
        self._zone_prob[tags, :z] = (self._zone_matrix[f] @ self._cells(tags, fm).T).T

    @staticmethod
    def _predict(fm: _FloorModel, p: FloatArray, dt: FloatArray) -> FloatArray:
        """p (K, S_f) after ``dt`` (K,) seconds of the chain: p exp(Q dt), with
        Q = Π^(-1/2) U Λ Uᵀ Π^(1/2) (Π = diag(prior), U Λ Uᵀ the symmetrised generator)."""
        q = (p / fm.sqrt_prior) @ fm.basis
        q *= np.exp(np.maximum(dt, 0.0)[:, None] * fm.rate[None, :])
        out = (q @ fm.basis.T) * fm.sqrt_prior
        np.maximum(out, _TINY, out=out)  # every cell stays possible
        out /= out.sum(axis=1, keepdims=True)
        return out

    @staticmethod
    def _log_likelihood(
        fm: _FloorModel,
        y: FloatArray,
        var: FloatArray,
        silent: BoolArray,
        weight: FloatArray,
        robust_k: float | None = None,
    ) -> Float32Array:
        """(C_f, K) float32, points by tags: ``weight`` (K,) times the log-likelihood of the
        readings at the floor's sample points, up to a constant per tag, plus each point's
        log share of its cell's area (the tag is anywhere in the cell):
        ``weight (Σ_heard (y m - m²/2) / v + Σ_silent log P(silent)) + log share``, i.e.
        -½ Σ (y - m)² / v without the Σ y² / v that is the same at every point. One product:
        terms @ [w y, w, silent, 1]ᵀ, in row blocks small enough for BLAS to run each on one
        thread (a tick's few tags must not wake a thread pool; the locator runs beside).

        ``robust_k``: Huber's loss (Huber 1964) for the heard links instead of the squares:
        with u = (y - m) / √v, -ρ(u)/2 = -u²/2 + max(|u| - k, 0)²/2, the excess over Huber's
        bound added per heard link (K L elements per point for the L heard links of the K tags,
        not K G), summed per tag by a sparse product."""
        heard = np.isfinite(y)
        w = np.where(heard, weight[:, None] / np.where(heard, var, 1.0), 0.0)
        right = np.ascontiguousarray(
            np.hstack(
                [
                    w * np.where(heard, y, 0.0),
                    w,
                    (silent & ~heard) * weight[:, None],
                    np.ones((len(y), 1)),
                ]
            ).T,
            dtype=np.float32,
        )  # (3 G_f + 1, K)
        c, k = fm.terms.shape[0], right.shape[1]
        out = np.empty((c, k), dtype=np.float32)
        step = max(_MIN_ROWS, _ONE_THREAD_MNK // max(1, k * right.shape[0]))
        for s in range(0, c, step):
            np.matmul(fm.terms[s : s + step], right, out=out[s : s + step])
        if robust_k is not None:
            _add_huber_excess(out, fm.terms[:, : y.shape[1]], y, var, weight, robust_k)
        return out


def _add_huber_excess(
    out: Float32Array, model: Float32Array, y: FloatArray, var: FloatArray, weight: FloatArray,
    k: float,
) -> None:  # fmt: skip
    """Add ``weight_k / 2 Σ_heard max(|y - m| / √v - k, 0)²`` to ``out`` (C, K): the part of
    the Gaussian log-likelihood's squares beyond Huber's loss. model (C, G) m at the points;
    y, var (K, G) the reading (NaN: not heard); weight (K,). Row blocks of ~2¹⁸ elements."""
    kk, gg = np.nonzero(np.isfinite(y))
    if not len(kk):
        return
    yl = y[kk, gg]
    scale = 1.0 / np.sqrt(var[kk, gg])
    c, n_links = model.shape[0], len(kk)
    # (K, L) the half tempering weight of each link's tag, as a sparse sum over its links
    per_tag = csr_matrix(
        (0.5 * weight[kk], (np.arange(n_links), kk)), shape=(n_links, len(y))
    ).T.tocsr()
    step = max(16, (1 << 18) // n_links)
    for s in range(0, c, step):
        e = model[s : s + step, gg]  # (b, L)
        e -= yl
        np.abs(e, out=e)
        e *= scale
        e -= k
        np.maximum(e, 0.0, out=e)
        e *= e
        out[s : s + step] += np.asarray(per_tag @ e.T).T


def _segment_logsumexp(x: Float32Array, gather: csr_matrix) -> Float32Array:
    """log Σ exp over the rows of x (C, K) that ``gather`` (S, C) 0/1 sums: (S, K). Overwrites
    x. Shifted by each column's maximum: a segment more than ~87 below it (float32) gives -inf
    (a cell e⁻⁸⁷ below the best one has no probability anyway)."""
    peak = x.max(axis=0, keepdims=True)
    x -= peak
    np.exp(x, out=x)
    total = np.asarray(gather @ x)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(total) + peak)


def _floor_model(
    rooms: RoomMap,
    f: int,
    anchors: Anchors,
    p: RoomParams,
    walls: WallLossMaps | None,
    sigma_db: float,
    outage: float,
    tag_height_m: float,
    d_min_m: float,
) -> _FloorModel:
    csl, psl = rooms.cell_slice[f], rooms.point_slice[f]
    pts = rooms.points[psl]
    gws = np.flatnonzero(anchors.floor == f)
    z = anchors.floor_elevation[f] + tag_height_m
    g = anchors.xyz[gws]
    d = np.sqrt(((pts[:, None, :] - g[None, :, :2]) ** 2).sum(axis=2) + (g[:, 2] - z) ** 2)
    model = anchors.p0[gws] - 10.0 * anchors.n[gws] * np.log10(np.maximum(d, d_min_m))
    if walls is not None:
        model = model - walls.lookup(pts, gateways=gws)
    if anchors.sensitivity_dbm is None:  # silence means nothing without a sensitivity
        log_silent = np.zeros_like(model)
    else:  # the locator's censored term with an outage floor (rtls.solver.Censored); one
        # packet's silence also depends on its fading and on packet loss
        packets = p.evidence == "packets"
        eps = max(outage, p.packet_loss) if packets else outage
        sigma = float(np.hypot(sigma_db, p.fading_db)) if packets else sigma_db
        z_sens = (anchors.sensitivity_dbm[gws] - model) / sigma
        log_silent = np.logaddexp(np.log(max(eps, 1e-300)), np.log1p(-eps) + log_ndtr(z_sens))
    local = rooms.point_cell[psl] - csl.start
    n_cells = csl.stop - csl.start
    share = rooms.point_area[psl] / np.bincount(local, rooms.point_area[psl], n_cells)[local]
    area = rooms.area[csl]
    prior = area / area.sum()
    # generator: Q_ab = v L_ab / (π A_a) + jump π_b (a != b), rows summing to 0; reversible
    # with respect to π (area), so S = Π^(1/2) Q Π^(-1/2) is symmetric
    flux = p.walk_speed_m_s * rooms.opening[csl, csl].toarray() / np.pi
    sqrt_prior = np.sqrt(prior)
    s = flux / np.sqrt(area[:, None] * area[None, :]) + p.jump_rate_per_s * np.outer(
        sqrt_prior, sqrt_prior
    )
    np.fill_diagonal(s, 0.0)
    out_rate = flux.sum(axis=1) / area + p.jump_rate_per_s * (1.0 - prior)
    s -= np.diag(out_rate)
    rate, basis = np.linalg.eigh(s)
    terms = np.hstack([model, -0.5 * model * model, log_silent, np.log(share)[:, None]])
    gather = csr_matrix(
        (np.ones(len(local), dtype=np.float32), (local, np.arange(len(local)))),
        (n_cells, len(local)),
    )
    # float32: the likelihood's product and exponentials are most of a tick's work, twice as
    # fast as float64, with ~1e-3 error on log-likelihoods whose useful range is ~10
    return _FloorModel(
        csl, gws, np.ascontiguousarray(terms, dtype=np.float32), gather, prior, sqrt_prior, basis,
        np.minimum(rate, 0.0),
    )  # fmt: skip
