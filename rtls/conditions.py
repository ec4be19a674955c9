"""The alarm rules of infant protection and supervision: ticks, telemetry and reads -> conditions.

:class:`Rules` is a pure state machine over arrays of all the site's tags (N), with zone
membership kept sparse (:class:`rtls.zone_visits.ZoneVisits`: it scales with the (tag, zone)
pairs tags are inside, not with tags x zones). Call :meth:`Rules.evaluate` once per engine tick
with what that tick brought, and :meth:`Rules.link` when the service's broker link changes. It
returns :class:`rtls.alarm.Condition` edges (raised / cleared) for the
:class:`rtls.alarm.AlarmBook`.
Every alarm's detection, parameters, clearing and priority: docs/rules.md.

- Infant rules (exit, tamper, tag_loose, restricted_zone, loiter, mismatch) are about *bonded*
  babies only (the ward says which infant tags are bonded); an exit by a signed-out baby with its
  escort near is suppressed by design and counted in :attr:`Rules.suppressed`, except while a
  tamper alarm or Code Pink arms every exit.
- Supervision: tag_silent (bonded infants high, staff badges medium, reference tags low;
  mother tags are not supervised), low_battery (every tag in service), and the technical
  alarms of :mod:`rtls.supervision` (gateway_silent, reader_silent, broker_link_lost).
- No flapping: every condition goes through a :class:`rtls.supervision.Latch`: it stays raised
  until its clearing criterion has held for the rule's hold time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Set
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import BATTERY_UNKNOWN, Status, Status2
from rtls.alarm import Alarm, AlarmType, Condition, Location, Priority
from rtls.decode_result import SourceStatus
from rtls.engine import TickResult
from rtls.site import Site, TagKind, ZoneKind
from rtls.supervision import HeardLike, Latch, Supervision
from rtls.zone_visits import ZoneVisits

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]

_EPS = 1e-9
FOLLOW_M = 1.0  # an active tag condition follows its tag once it moved this far (or changed zone)
NEAREST_MOTHERS = 3  # mismatch detail: this many mother tags nearest the baby by position


class WardView(Protocol):
    """What the rules ask the ward (rtls.ward.Ward)."""

    @property
    def code_pink_active(self) -> bool: ...

    def bonded(self, tag_id: str) -> bool: ...

    def mother_of(self, baby_tag: str) -> str | None: ...

    def exit_authorised(self, baby_tag: str, now: float, escort_near: set[str]) -> bool: ...


class Rules:
    """Condition rules of one site; a pure state machine (no clock, no I/O).

    State (read it, never write it): ``visits`` (:class:`rtls.zone_visits.ZoneVisits`) zone
    membership and loiter clocks folded from the ticks' transitions, sparse (:attr:`inside`:
    the dense (N, Z) matrix, built for inspection only); ``last_heard`` (N,) newest
    advertisement / read of each tag (NaN: never), ``bonded`` (N,), ``mismatch_since`` /
    ``mismatch_seen`` (N,) first and newest frame of the current streak of the MISMATCH flag
    (NaN: none), and one :class:`Latch` per tag rule in :attr:`latches`."""

    TAG_RULES = (AlarmType.EXIT, AlarmType.TAMPER, AlarmType.TAG_LOOSE, AlarmType.LOW_BATTERY,
                 AlarmType.RESTRICTED_ZONE, AlarmType.LOITER, AlarmType.TAG_SILENT,
                 AlarmType.MISMATCH)  # fmt: skip

    def __init__(self, site: Site) -> None:
        self.site = site
        rp = site.rules
        self.infant_rules = ir = rp.infant
        tags, zones = site.tags, site.zones
        n, z, r = len(tags), len(zones), len(site.door_readers)
        self.tag_ids = tuple(t.id for t in tags)
        kind = np.array([t.kind.value for t in tags], dtype=object)
        self.is_infant = np.asarray(kind == TagKind.INFANT.value, dtype=bool)
        self.is_staff = np.asarray(kind == TagKind.STAFF.value, dtype=bool)
        self.is_mother = np.asarray(kind == TagKind.MOTHER.value, dtype=bool)
        self.is_reference = np.asarray(kind == TagKind.REFERENCE.value, dtype=bool)
        per_kind = [rp.for_kind(t.kind.value) for t in tags]
        self.supervision_s = np.array([k.supervision_s for k in per_kind], dtype=np.float64)
        self.clear_hold_s = np.array([k.clear_hold_s for k in per_kind], dtype=np.float64)
        self.battery_pct = np.array([k.low_battery_pct for k in per_kind], dtype=np.float64)
        self.battery_hyst = np.array([k.low_battery_hysteresis_pct for k in per_kind], float)
        self.escort_ids = np.flatnonzero(self.is_staff | self.is_mother)
        self._all_escorts = {self.tag_ids[i] for i in self.escort_ids.tolist()}

        self.zone_ids = tuple(zn.id for zn in zones)
        self.is_exit_zone = np.array([zn.kind is ZoneKind.EXIT for zn in zones], dtype=bool)
        self.is_restricted = np.array([zn.kind is ZoneKind.RESTRICTED for zn in zones], bool)
        # loiter zones: exit zones, and any zone whose rules set loiter_s (docs/rules.md)
        self.loiter_s = np.array([
            float(zn.rules.get("loiter_s", ir.loiter_s))
            if zn.kind is ZoneKind.EXIT or "loiter_s" in zn.rules else np.nan
            for zn in zones
        ], dtype=np.float64).reshape(z)  # fmt: skip
        self.reader_exit = np.array(
            [site.door(rd.door).kind == "exit" for rd in site.door_readers], dtype=bool
        ).reshape(r)
        self.floor_ids = tuple(f.id for f in site.floors)

        self.visits = ZoneVisits(n, self.is_exit_zone, self.is_restricted,
                                 np.isfinite(self.loiter_s), ir.loiter_gap_s)  # fmt: skip
        self.last_heard = np.full(n, np.nan)
        self.ever_heard = np.zeros(n, dtype=bool)
        self.status = np.zeros(n, dtype=np.uint8)
        self.status2 = np.zeros(n, dtype=np.uint8)
        self.battery = np.full(n, BATTERY_UNKNOWN, dtype=np.uint8)
        self._tele_t = np.full(n, -np.inf)
        self.skin_lost_since = np.full(n, np.nan)
        # mismatch flag: first and newest advertisement of its current streak (NaN: not set)
        self.mismatch_since = np.full(n, np.nan)
        self.mismatch_seen = np.full(n, np.nan)
        self.bonded = np.zeros(n, dtype=bool)
        self.bond_t = np.full(n, np.nan)
        self.read_t = np.full((n, r), np.nan)
        self.xy = np.full((n, 2), np.nan)  # last known position
        self.floor = np.full(n, -1, dtype=np.int64)
        self.known = np.zeros(n, dtype=bool)
        self.uncertainty = np.full(n, np.nan)
        self.zone = np.full(n, -1, dtype=np.int64)
        self.latches = {t: Latch(n) for t in self.TAG_RULES}
        self._exit_wait = np.full(n, np.nan)  # signed-out baby at an exit: escort awaited since
        self._suppressing = {t: np.zeros(n, dtype=bool) for t in self.TAG_RULES}
        self._followed: dict[tuple[AlarmType, int], Location] = {}
        self._folded_estimate: object = None  # the last tick's estimate folded in (identity)
        self._held_detail: dict[tuple[AlarmType, int], dict[str, Any]] = {}  # set at the raise
        self.suppressed: Counter[str] = Counter()  # suppressed by design, per alarm type
        self.supervision = Supervision(site)

    # -- the service's calls -------------------------------------------------------------------
    def link(self, now: float, up: bool) -> list[Condition]:
        """The broker link went up or down (broker_link_lost after ``broker_lost_s``)."""
        return self.supervision.link(now, up)

    def evaluate(
        self,
        now: float,
        tick: TickResult | None,
        telemetry: NDArray[np.void] | None,
        reads: NDArray[np.void] | None,
        ward: WardView,
        heard: HeardLike | None,
        *,
        open_alarms: Iterable[Alarm] | None = None,
    ) -> list[Condition]:
        """Fold in one tick and return the condition edges at ``now``.

        ``tick``: the engine's tick (None: no tick since the last call); ``telemetry``
        (TELEMETRY_DTYPE (K,)) and ``reads`` (READ_DTYPE (M,)) decoded since the last call
        (None: the tick's own ``telemetry`` / ``reads``); ``heard``: when gateways / readers
        last proved alive (:class:`rtls.supervision.Heard` or the decoder's counters; the
        tick's ``status`` updates are folded in too). ``open_alarms``: the book's open alarms;
        an open tamper alarm keeps every exit armed until it is resolved (without it: while a
        tamper condition holds)."""
        sv = self.supervision
        sv.start(now)
        status: tuple[SourceStatus, ...] = ()
        if tick is not None:
            telemetry = getattr(tick, "telemetry", None) if telemetry is None else telemetry
            reads = getattr(tick, "reads", None) if reads is None else reads
            status = tuple(getattr(tick, "status", ()))
        moved = tick is None or tick.estimate is not self._folded_estimate
        entered_exit = self._fold_tick(tick)
        self._fold_telemetry(now, telemetry)
        exit_read = self._fold_reads(now, reads)
        self._refresh_bonded(now, ward)
        out: list[Condition] = []
        bonded = self.bonded
        hold = self.clear_hold_s

        # tamper first: a strap cut in this tick arms the exits of this tick
        lt = self.latches[AlarmType.TAMPER]
        tamper = (self.status & Status.TAMPER) != 0
        out += self._emit(now, AlarmType.TAMPER, *lt.step(now, tamper, hold, bonded))
        open_tamper = any(a.type is AlarmType.TAMPER and a.open for a in open_alarms or ())
        armed = bool(ward.code_pink_active or open_tamper or lt.active.any())

        out += self._mismatch(now, ward)
        out += self._exit(now, ward, armed, entered_exit | exit_read)
        out += self._loiter(now, ward)

        in_restricted = self.visits.n_restricted > 0
        lr = self.latches[AlarmType.RESTRICTED_ZONE]
        out += self._emit(now, AlarmType.RESTRICTED_ZONE, *lr.step(now, in_restricted, hold,
                                                                   bonded))  # fmt: skip

        ll = self.latches[AlarmType.TAG_LOOSE]
        lost = ~np.isnan(self.skin_lost_since)
        with np.errstate(invalid="ignore"):
            long_lost = now - np.fmax(self.skin_lost_since, self.bond_t) >= (
                self.infant_rules.tag_loose_s - _EPS)  # fmt: skip
        raw = np.where(ll.active, lost, lost & long_lost & ~lt.active)
        out += self._emit(now, AlarmType.TAG_LOOSE, *ll.step(now, raw, hold,
                                                             bonded & self.is_infant))  # fmt: skip

        lb = self.latches[AlarmType.LOW_BATTERY]
        flag = (self.status2 & Status2.LOW_BATTERY) != 0
        pct = np.where(self.battery == BATTERY_UNKNOWN, np.nan, self.battery.astype(float))
        with np.errstate(invalid="ignore"):
            low = flag | (pct < self.battery_pct)
            recovered = ~flag & ~(pct < self.battery_pct + self.battery_hyst)
        in_service = (self.is_infant & bonded) | self.is_staff | self.is_mother | self.is_reference
        raw = np.where(lb.active, ~recovered, low)
        out += self._emit(now, AlarmType.LOW_BATTERY, *lb.step(now, raw, hold, in_service))

        out += self._silence(now, ward)
        if moved:  # an early pass re-uses the last tick's estimate: nobody moved
            out += self._follow(now)
        out += sv.step(now, heard, status)
        return out

    # -- folding the inputs ----------------------------------------------------------------------
    def _fold_tick(self, tick: TickResult | None) -> BoolArray:
        """Positions and zone membership from a tick; returns the tags that entered an exit
        zone in it (even if they left again within the same tick)."""
        n = len(self.tag_ids)
        entered_exit = np.zeros(n, dtype=bool)
        if tick is None:
            return entered_exit
        est = self._folded_estimate = tick.estimate
        k = np.asarray(est.known, dtype=bool)
        self.known = k.copy()
        self.xy[k] = est.xy[k]
        self.floor[k] = est.floor[k]
        cov = est.covariance[k]  # RMS radial error, as TrackEstimate.uncertainty
        self.uncertainty[k] = np.sqrt(np.maximum(cov[:, 0, 0] + cov[:, 1, 1], 0.0))
        self.zone = np.where(k, tick.zone, -1).astype(np.int64)
        located = np.asarray(tick.located, dtype=np.intp)
        if len(located):
            self.last_heard[located] = np.fmax(self.last_heard[located], tick.t)
            self.ever_heard[located] = True
        tr = tick.transitions
        events = np.concatenate([tr.entered, tr.left])
        sign = np.r_[np.ones(len(tr.entered), bool), np.zeros(len(tr.left), bool)]
        order = np.argsort(events["t"], kind="stable")
        ev = events[order]
        self.visits.fold(ev["tag"], ev["zone"], ev["t"], sign[order])
        entered = tr.entered[self.is_exit_zone[tr.entered["zone"]]]
        entered_exit[entered["tag"].astype(np.intp)] = True  # even if it left in the tick too
        return entered_exit

    @property
    def inside(self) -> BoolArray:
        """(N, Z) bool zone membership, built on each call: for inspection and tests only
        (large on a big site; the rules keep it sparse in :attr:`visits`)."""
        return self.visits.dense()

    def flags_changed(self, tele: NDArray[np.void]) -> NDArray[np.bool_]:
        """(K,) bool: which frames (TELEMETRY_DTYPE (K,)) carry a status or status2 other
        than their tag's last folded one (frames of unknown tags: False). Reads nothing but
        the frames and changes nothing: the engine service runs an early pass only for news
        (a tag keeps its alarm bits set in every advertisement until it is reset)."""
        tag = tele["tag"].astype(np.intp)
        ok = (tag >= 0) & (tag < len(self.tag_ids))
        t = np.where(ok, tag, 0)
        changed = (tele["status"] != self.status[t]) | (tele["status2"] != self.status2[t])
        out: NDArray[np.bool_] = ok & changed
        return out

    def _fold_telemetry(self, now: float, tele: NDArray[np.void] | None) -> None:
        """Latest status, status2 and battery of each tag; when skin contact was lost."""
        if tele is None or not len(tele):
            return
        n = len(self.tag_ids)
        tele = tele[(tele["tag"] >= 0) & (tele["tag"] < n)]
        tag = tele["tag"].astype(np.intp)
        t = np.minimum(tele["t"].astype(np.float64), now)  # gateway clocks run a little ahead
        skin = (tele["status"] & Status.SKIN_CONTACT) != 0
        order = np.lexsort((t, tag))
        tag, t, skin, rows = tag[order], t[order], skin[order], tele[order]
        last = np.r_[tag[1:] != tag[:-1], True] if len(tag) else np.zeros(0, bool)
        self._fold_mismatch(tag, t, rows["status2"])
        lt, lrow = tag[last], rows[last]
        newer = t[last] >= self._tele_t[lt]
        lt, lrow, ltime = lt[newer], lrow[newer], t[last][newer]
        self.status[lt], self.status2[lt] = lrow["status"], lrow["status2"]
        self.battery[lt], self._tele_t[lt] = lrow["battery"], ltime
        np.fmax.at(self.last_heard, tag, t)
        self.ever_heard[tag] = True
        # skin contact: lost since the first contact-less frame after the last frame with it
        last_skin = np.full(n, -np.inf)
        np.maximum.at(last_skin, tag[skin], t[skin])
        first_loss = np.full(n, np.inf)
        after = ~skin & (t > last_skin[tag])
        np.minimum.at(first_loss, tag[after], t[after])
        has_skin = (self.status & Status.SKIN_CONTACT) != 0
        seen = np.zeros(n, dtype=bool)
        seen[lt] = True
        self.skin_lost_since[seen & has_skin] = np.nan
        start = seen & ~has_skin & np.isnan(self.skin_lost_since) & np.isfinite(first_loss)
        self.skin_lost_since[start] = first_loss[start]

    def _fold_mismatch(self, tag: IntArray, t: FloatArray, status2: NDArray[np.uint8]) -> None:
        """The streak of the MISMATCH flag from frames sorted by (tag, t): a frame without it
        ends the streak, the first frame with it after that starts one. Frames older than the
        tag's newest frame before this call (a slow gateway's copy) are ignored."""
        n = len(self.tag_ids)
        cur = t >= self._tele_t[tag]
        flag = (status2 & Status2.MISMATCH) != 0
        last_clear = np.full(n, -np.inf)
        np.maximum.at(last_clear, tag[cur & ~flag], t[cur & ~flag])
        on = cur & flag
        first_on = np.full(n, np.inf)
        after = on & (t > last_clear[tag])
        np.minimum.at(first_on, tag[after], t[after])
        newest_on = np.full(n, -np.inf)
        np.maximum.at(newest_on, tag[after], t[after])
        cleared = np.isfinite(last_clear)
        self.mismatch_since[cleared] = np.nan
        self.mismatch_seen[cleared] = np.nan
        got = np.isfinite(first_on)
        start = got & np.isnan(self.mismatch_since)
        self.mismatch_since[start] = first_on[start]
        self.mismatch_seen[got] = np.fmax(self.mismatch_seen[got], newest_on[got])

    def _fold_reads(self, now: float, reads: NDArray[np.void] | None) -> BoolArray:
        """Door reads: per (tag, reader) newest time; returns the tags read at an exit door."""
        n = len(self.tag_ids)
        out = np.zeros(n, dtype=bool)
        if reads is None or not len(reads):
            return out
        ok = (reads["tag"] >= 0) & (reads["tag"] < n) & (reads["reader"] >= 0)
        ok &= reads["reader"] < self.read_t.shape[1]
        tag = reads["tag"][ok].astype(np.intp)
        rd = reads["reader"][ok].astype(np.intp)
        t = np.minimum(reads["t"][ok].astype(np.float64), now)
        np.fmax.at(self.read_t, (tag, rd), t)
        np.fmax.at(self.last_heard, tag, t)
        self.ever_heard[tag] = True
        out[tag[self.reader_exit[rd]]] = True
        return out

    def _refresh_bonded(self, now: float, ward: WardView) -> None:
        infants = np.flatnonzero(self.is_infant)
        b = np.zeros(len(self.tag_ids), dtype=bool)
        b[infants] = [ward.bonded(self.tag_ids[i]) for i in infants.tolist()]
        self.bond_t[b & ~self.bonded] = now
        self.bond_t[~b] = np.nan
        self.bonded = b

    # -- the infant rules ------------------------------------------------------------------------
    def _exit(self, now: float, ward: WardView, armed: bool, hit: BoolArray) -> list[Condition]:
        """Exit: in an exit zone, entered one since the last call, or read at an exit door
        (since the last call, or within the last escort_wait_s)."""
        ir = self.infant_rules
        le = self.latches[AlarmType.EXIT]
        with np.errstate(invalid="ignore"):  # a read counts for the escort wait
            read = (self.read_t[:, self.reader_exit] >= now - ir.escort_wait_s - _EPS).any(1)
        at_exit = self.bonded & ((self.visits.n_exit > 0) | hit | read)
        raise_now = np.zeros_like(at_exit)
        supp = self._suppressing[AlarmType.EXIT]
        supp &= at_exit
        self._exit_wait[~at_exit] = np.nan
        for b in np.flatnonzero(at_exit & ~le.active).tolist():  # babies at an exit: few
            if armed:
                raise_now[b] = True
                continue
            tag = self.tag_ids[b]
            if ward.exit_authorised(tag, now, self.escorts_near(b, now)):
                self._count(AlarmType.EXIT, b)
                self._exit_wait[b] = np.nan
                continue
            supp[b] = False
            signed_out = ward.exit_authorised(tag, now, set(self._all_escorts))
            if signed_out and ir.escort_wait_s > 0:
                if np.isnan(self._exit_wait[b]):
                    self._exit_wait[b] = now
                if now - self._exit_wait[b] < ir.escort_wait_s - _EPS:
                    continue  # its escort may be a step behind: wait a little
            raise_now[b] = True
        raw = np.where(le.active, at_exit, raise_now)
        rise, drop = le.step(now, raw, ir.exit_clear_s, self.bonded)
        self._exit_wait[rise] = np.nan
        return self._emit(now, AlarmType.EXIT, rise, drop, armed=armed)

    def _mismatch(self, now: float, ward: WardView) -> list[Condition]:
        """Mismatch: a bonded baby's bracelet flags (``Status2.MISMATCH``) a mother tag that is
        not its paired one within its short range, in every advertisement for at least
        ``mismatch_hold_s`` (from the first one with the flag, or the bonding, to one that
        still has it): a mother passing a carried baby raises nothing. The flag does not say
        which mother: the detail names the paired mother and, best effort, the likeliest
        others by position."""
        lm = self.latches[AlarmType.MISMATCH]
        foreign = (self.status2 & Status2.MISMATCH) != 0
        with np.errstate(invalid="ignore"):
            held = self.mismatch_seen - np.fmax(self.mismatch_since, self.bond_t) >= (
                self.infant_rules.mismatch_hold_s - _EPS)  # fmt: skip
        raw = np.where(lm.active, foreign, foreign & held)
        rise, drop = lm.step(now, raw, self.clear_hold_s, self.bonded & self.is_infant)
        for i in rise.tolist():
            self._held_detail[(AlarmType.MISMATCH, i)] = self._mothers_near(i, ward)
        return self._emit(now, AlarmType.MISMATCH, rise, drop)

    def _mothers_near(self, baby: int, ward: WardView) -> dict[str, Any]:
        """The baby's paired mother, and up to NEAREST_MOTHERS other mother tags located now on
        its floor, likeliest at the baby first: both positions as isotropic Gaussians (variance
        u²/2 per axis, u = RMS radial error), ranked by the density of their difference at 0,
        ``exp(-d²/2s) / 2πs``, ``s = (u_b² + u_m²)/2``. A hint for the nurse, not a proof."""
        paired = ward.mother_of(self.tag_ids[baby])
        near: list[dict[str, Any]] = []
        if np.isfinite(self.xy[baby]).all():
            c = np.flatnonzero(self.is_mother & self.known & (self.floor == self.floor[baby]))
            c = c[[self.tag_ids[m] != paired for m in c.tolist()]] if paired else c
            d = np.hypot(*(self.xy[c] - self.xy[baby]).T) if len(c) else np.zeros(0)
            ub = self.uncertainty[baby] if self.known[baby] else np.nan
            um = self.uncertainty[c]
            s = np.maximum((np.nan_to_num(ub, nan=0.0) ** 2 + np.nan_to_num(um, nan=0.0) ** 2)
                           / 2.0, 0.25)  # fmt: skip
            score = -(d**2) / (2.0 * s) - np.log(s)
            order = np.argsort(-score, kind="stable")[:NEAREST_MOTHERS]
            near = [{"tag": self.tag_ids[int(c[k])], "distance_m": _r1(d[k]),
                     "uncertainty_m": _r1(um[k])} for k in order.tolist()]  # fmt: skip
        return {"paired_mother": paired, "mother": near[0]["tag"] if near else None,
                "nearest_mothers": near}  # fmt: skip

    def _loiter(self, now: float, ward: WardView) -> list[Condition]:
        """Loiter: in a loiter zone longer than its loiter_s, without the exit raised."""
        ll = self.latches[AlarmType.LOITER]
        in_zone = self.visits.n_loiter > 0
        due = np.zeros_like(in_zone)
        tag, zone, entered = self.visits.loiter_clocks()  # the few tags in loiter zones
        with np.errstate(invalid="ignore"):
            since = np.fmax(entered, self.bond_t[tag])
            due[tag[now - since >= self.loiter_s[zone] - _EPS]] = True
        start = due & self.bonded & ~ll.active & ~self.latches[AlarmType.EXIT].active
        supp = self._suppressing[AlarmType.LOITER]
        supp &= due
        raise_now = np.zeros_like(start)
        for b in np.flatnonzero(start).tolist():
            if ward.exit_authorised(self.tag_ids[b], now, self.escorts_near(b, now)):
                self._count(AlarmType.LOITER, b)
            else:
                supp[b] = False
                raise_now[b] = True
        raw = np.where(ll.active, in_zone, raise_now)
        return self._emit(now, AlarmType.LOITER, *ll.step(now, raw, self.clear_hold_s,
                                                          self.bonded))  # fmt: skip

    def escorts_near(self, baby: int, now: float) -> set[str]:
        """Staff and mother tags near tag index ``baby``: in the same zone (or the same exit
        zone), within ``escort_distance_m`` on the same floor (both positions known), or read
        by the same door reader within ``escort_wait_s`` of the baby's recent read."""
        ir = self.infant_rules
        c = self.escort_ids[self.escort_ids != baby]
        if not len(c):
            return set()
        zb = self.zone[baby]
        near = (zb >= 0) & (self.zone[c] == zb)
        mates = self.visits.exit_mates(baby)  # in the same exit zone
        if mates:
            near |= np.isin(c, np.fromiter(mates, dtype=np.intp, count=len(mates)))
        if self.known[baby]:
            d = np.hypot(*(self.xy[c] - self.xy[baby]).T)
            near |= self.known[c] & (self.floor[c] == self.floor[baby]) & (
                d <= ir.escort_distance_m)  # fmt: skip
        rb = self.read_t[baby]
        with np.errstate(invalid="ignore"):
            recent = rb >= now - ir.exit_clear_s - ir.escort_wait_s
            same = np.abs(self.read_t[c] - rb) <= ir.escort_wait_s
        near |= (same & recent).any(axis=1)
        return {self.tag_ids[i] for i in c[near].tolist()}

    def _count(self, type_: AlarmType, i: int) -> None:
        """Count one suppression by design per episode (not per tick)."""
        flags = self._suppressing[type_]
        if not flags[i]:
            flags[i] = True
            self.suppressed[type_.value] += 1

    # -- supervision of tags ---------------------------------------------------------------------
    def _silence(self, now: float, ward: WardView) -> list[Condition]:
        """tag_silent: bonded infants (high), staff badges once heard (medium), reference tags
        (low); mothers are not supervised. Signed-out babies are exempt (suppressed)."""
        sv = self.supervision
        ls = self.latches[AlarmType.TAG_SILENT]
        watched = (self.is_infant & self.bonded) | (self.is_staff & self.ever_heard)
        watched |= self.is_reference
        with np.errstate(invalid="ignore"):
            ref = np.fmax(np.fmax(self.last_heard, sv.epoch), self.bond_t)
            silent = now - ref >= self.supervision_s - _EPS
            quiet = ~(now - self.last_heard < self.supervision_s)
        if sv.suspended(now):
            raw = ls.active.copy()
        else:
            raw = np.where(ls.active, quiet, silent & watched)
            supp = self._suppressing[AlarmType.TAG_SILENT]
            supp &= silent
            for b in np.flatnonzero(raw & ~ls.active & self.is_infant).tolist():
                if ward.exit_authorised(self.tag_ids[b], now, set(self._all_escorts)):
                    raw[b] = False  # signed out: may be out of coverage (imaging)
                    self._count(AlarmType.TAG_SILENT, b)
                else:
                    supp[b] = False
        hold = np.maximum(self.clear_hold_s, self.supervision_s)
        return self._emit(now, AlarmType.TAG_SILENT, *ls.step(now, raw, hold, watched))

    # -- conditions ------------------------------------------------------------------------------
    def location(self, i: int) -> Location:
        """Where tag ``i`` is: the tracked estimate, else its last known position (zone and
        uncertainty unknown: never "the neighbouring room")."""
        f = int(self.floor[i])
        if f < 0 or not np.isfinite(self.xy[i]).all():
            return Location()
        x, y = round(float(self.xy[i, 0]), 2), round(float(self.xy[i, 1]), 2)
        if not self.known[i]:
            return Location(self.floor_ids[f], None, x, y, None)
        z = int(self.zone[i])
        u = float(self.uncertainty[i])
        return Location(self.floor_ids[f], self.zone_ids[z] if z >= 0 else None, x, y,
                        round(u, 2) if math.isfinite(u) else None)  # fmt: skip

    def _detail(self, type_: AlarmType, i: int, **extra: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"tag": self.tag_ids[i], "position_known": bool(self.known[i])}
        lh = float(self.last_heard[i])
        if type_ is AlarmType.TAG_SILENT:
            d["last_heard_t"] = round(lh, 3) if math.isfinite(lh) else None
        if type_ is AlarmType.LOW_BATTERY:
            b = int(self.battery[i])
            d["battery_pct"] = None if b == BATTERY_UNKNOWN else b
        if type_ in (AlarmType.EXIT, AlarmType.RESTRICTED_ZONE, AlarmType.LOITER):
            d["zones"] = [self.zone_ids[z] for z in self.visits.zones_of(i)]
        d.update(self._held_detail.get((type_, i), {}))
        d.update(extra)
        return d

    def _priority(self, type_: AlarmType, i: int) -> Priority | None:
        if type_ is AlarmType.TAG_SILENT:
            if self.is_staff[i]:
                return Priority.MEDIUM
            if self.is_reference[i]:
                return Priority.LOW
        return None

    def _emit(
        self, now: float, type_: AlarmType, rise: IntArray, drop: IntArray, **extra: Any
    ) -> list[Condition]:
        out = []
        for i in rise.tolist():
            loc = self.location(i)
            self._followed[(type_, i)] = loc
            out.append(self._raised(type_, i, now, loc, **extra))
        for i in drop.tolist():
            self._followed.pop((type_, i), None)
            self._held_detail.pop((type_, i), None)
            out.append(Condition(type_, self.tag_ids[i], False, now))
        return out

    def _follow(self, now: float) -> list[Condition]:
        """Re-state active conditions whose tag moved (the book updates the alarm's location
        without a transition): security goes where the baby is now."""
        out = []
        for (type_, i), was in self._followed.items():
            loc = self.location(i)
            if loc == was or loc.x is None:
                continue
            moved = was.x is None or was.y is None or math.hypot(
                loc.x - was.x, (loc.y or 0.0) - was.y) >= FOLLOW_M  # fmt: skip
            if moved or loc.zone != was.zone or loc.floor != was.floor:
                self._followed[(type_, i)] = loc
                out.append(self._raised(type_, i, now, loc))
        return out

    def _raised(
        self, type_: AlarmType, i: int, now: float, loc: Location, **extra: Any
    ) -> Condition:
        detail = self._detail(type_, i, **extra)
        return Condition(type_, self.tag_ids[i], True, now, loc, detail, self._priority(type_, i))

    def active(self) -> dict[str, Set[str]]:
        """Subjects of every active tag condition, per alarm type (for tests and the console)."""
        return {t.value: frozenset(self.tag_ids[i] for i in np.flatnonzero(lt.active).tolist())
                for t, lt in self.latches.items()}  # fmt: skip


def _r1(x: float) -> float | None:
    """Rounded to 0.1 for a condition's detail; None when not finite (JSON-safe)."""
    return round(float(x), 1) if math.isfinite(x) else None
