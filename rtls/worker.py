"""Lone-worker rules over staff badge telemetry (DOMAIN.md "Lone worker"; issue 4 part 5). Pure.

The badge does its own detection (firmware_sim.tags.StaffBadge): it advertises SOS, pull-cord,
pre-alarm, man-down, no-movement and fall as status flags, repeats every change in a burst with
the same sequence number, marks a pre-alarm cancelled by the wearer (PRE_ALARM_CANCELLED) and
shows the console's confirmation (CONSOLE_CONFIRMED). :meth:`LoneWorkers.update` turns a tick's
telemetry array into condition changes: vectorised over the rows (group by badge, keep frames
newer than the last one by sequence number, drop burst repeats and copies heard by several
gateways, find the frames whose flags changed); only the changed frames go through Python.

It also keeps the console's confirmations until the badge shows them (downlink re-sent), the
check-in timers, and each worker's last known position, shown only while that worker has a
pre-alarm or an alarm (CNIL; ``rules.show_position`` lifts that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.advertisement import Status, Status2
from rtls.alarm import AlarmType, Condition, Location
from rtls.errors import RtlsError
from rtls.rules import StaffRules
from rtls.site import Site, TagKind
from rtls.ward import AuditEvent, condition_dict, condition_from_dict

FORMAT: Final = 1
#: Status flag -> alarm type, in the order the changes of one frame are reported.
FLAG_TYPES: Final = (
    (Status.SOS, AlarmType.SOS),
    (Status.PULL_CORD, AlarmType.PULL_CORD),
    (Status.PRE_ALARM, AlarmType.PRE_ALARM),
    (Status.MAN_DOWN, AlarmType.MAN_DOWN),
    (Status.NO_MOVEMENT, AlarmType.NO_MOVEMENT),
    (Status.FALL, AlarmType.FALL),
)
ALARM_FLAGS: Final = int(Status.SOS | Status.PULL_CORD | Status.PRE_ALARM | Status.MAN_DOWN
                         | Status.NO_MOVEMENT | Status.FALL)  # fmt: skip
INVOLUNTARY: Final = ((Status.MAN_DOWN, AlarmType.MAN_DOWN), (Status.FALL, AlarmType.FALL),
                      (Status.NO_MOVEMENT, AlarmType.NO_MOVEMENT))  # fmt: skip
SERVICE_FLAGS: Final = int(Status2.PRE_ALARM_CANCELLED | Status2.CONSOLE_CONFIRMED)
#: What the console confirms when it does not say: the most severe alarm the badge shows.
CONFIRM_ORDER: Final = (
    (Status.SOS, AlarmType.SOS),
    (Status.PULL_CORD, AlarmType.PULL_CORD),
    *INVOLUNTARY,
    (Status.PRE_ALARM, AlarmType.PRE_ALARM),
)
SEQ_MOD: Final = 0x10000
#: A frame whose sequence number is older than the last accepted one is a late copy, unless the
#: badge is heard this long after its last accepted frame: then it restarted (new random seq).
RESTART_GAP_S: Final = 10.0


class WorkerError(RtlsError):
    """A lone-worker command refused (not a staff badge, nothing to confirm, private, ...)."""


@dataclass(frozen=True)
class Supersede:
    """A badge's pre-alarm became an alarm: the caller closes the pre-alarm
    (``AlarmBook.supersede(type, subject, t, by)``)."""

    subject: str
    by: AlarmType
    t: float
    type: AlarmType = AlarmType.PRE_ALARM


@dataclass(frozen=True)
class Downlink:
    """A message for a badge, published by the service on MQTT: ``command`` "confirm" tells
    the badge that the console received ``alarm`` (it may stop its local alarm).
    ``attempt`` counts the sends; ``sent_t`` is the latest."""

    tag: str
    command: str
    alarm: AlarmType
    t: float
    attempt: int = 1
    sent_t: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "command": self.command, "alarm": self.alarm.value,
                "t": self.t, "attempt": self.attempt, "sent_t": self.sent_t}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Downlink:
        return cls(str(d["tag"]), str(d["command"]), AlarmType(d["alarm"]), float(d["t"]),
                   int(d["attempt"]), float(d["sent_t"]))  # fmt: skip


@dataclass(frozen=True)
class WorkerUpdate:
    """What one batch of telemetry changed.

    ``conditions`` in frame order; ``superseded`` pre-alarms that became alarms (their clear
    is in ``conditions`` too); ``cancelled`` badges whose wearer cancelled the pre-alarm;
    ``confirmed`` badges that now show the console's confirmation (no more downlink);
    ``frames`` frames kept after deduplication, ``dropped`` rows dropped (burst repeats,
    copies from other gateways, late frames)."""

    conditions: list[Condition] = field(default_factory=list)
    superseded: list[Supersede] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    frames: int = 0
    dropped: int = 0


class LoneWorkers:
    """The lone-worker rules of one site: every staff badge of ``site.tags``. Pure.

    ``rules`` defaults to ``site.rules.staff``. Telemetry rows index ``site.tags`` (the
    engine's tag indices); rows of other tag kinds are ignored.
    """

    def __init__(self, site: Site, rules: StaffRules | None = None) -> None:
        self.site = site
        self.rules = rules if rules is not None else site.rules.staff
        self.ids: tuple[str, ...] = tuple(t.id for t in site.tags)
        self._index = {t: i for i, t in enumerate(self.ids)}
        n = len(self.ids)
        self.staff = np.array([t.kind is TagKind.STAFF for t in site.tags], dtype=bool)  # (T,)
        self.seq = np.full(n, -1, dtype=np.int64)  # (T,) last accepted sequence number
        self.last_t = np.full(n, -np.inf)  # (T,) time of the last accepted frame
        self.status = np.zeros(n, dtype=np.uint8)  # (T,) flags of the last accepted frame
        self.status2 = np.zeros(n, dtype=np.uint8)
        # last known position (T,): floor / zone index (-1: none), xy, uncertainty, time
        self.pos_floor = np.full(n, -1, dtype=np.int64)
        self.pos_zone = np.full(n, -1, dtype=np.int64)
        self.pos_xy = np.full((n, 2), np.nan)
        self.pos_unc = np.full(n, np.nan)
        self.pos_t = np.full(n, -np.inf)
        self._duty: dict[str, float] = {}  # badge -> last check-in (check-in timer running)
        self._missed: dict[str, Condition] = {}  # check_in_missed held
        self._pending: list[Condition] = []  # timer changes not yet handed out by tick()
        self._settled_t = -math.inf
        self._confirm: dict[str, Downlink] = {}

    # -- telemetry ---------------------------------------------------------------------------
    def update(self, telemetry: NDArray[np.void], now: float) -> WorkerUpdate:
        """Fold one batch of telemetry (TELEMETRY_DTYPE (K,), any order, several gateways)
        in. Frames are ordered per badge by sequence number (16-bit, wrapping); one already
        seen (burst repeat, another gateway's copy) or older than the last accepted one is
        dropped."""
        tag_all = telemetry["tag"].astype(np.int64)
        ok = (tag_all >= 0) & (tag_all < len(self.ids))
        ok[ok] = self.staff[tag_all[ok]]
        rows = telemetry[ok]
        if not len(rows):
            return WorkerUpdate()
        tag = rows["tag"].astype(np.int64)
        seq = rows["seq"].astype(np.int64)
        t = rows["t"].astype(np.float64)
        o = np.lexsort((seq, t, tag))  # by badge, then time
        tag, seq, t = tag[o], seq[o], t[o]
        st, st2 = rows["status"][o], rows["status2"][o]
        head = np.r_[True, tag[1:] != tag[:-1]]
        starts = np.flatnonzero(head)
        group = np.cumsum(head) - 1  # (K,) group of each row
        g_tag = tag[starts]
        known = self.seq[g_tag] >= 0
        # reference sequence number per badge: the last accepted one, or one before the
        # earliest frame of the batch for a badge never heard (or restarted)
        ref = np.where(known, self.seq[g_tag], seq[starts] - 1)
        d = (seq - ref[group]) % SEQ_MOD
        new = (d >= 1) & (d < SEQ_MOD // 2)
        restart = known & ~np.logical_or.reduceat(new, starts)
        restart &= np.maximum.reduceat(t, starts) > self.last_t[g_tag] + RESTART_GAP_S
        if restart.any():
            ref = np.where(restart, seq[starts] - 1, ref)
            d = (seq - ref[group]) % SEQ_MOD
            new = (d >= 1) & (d < SEQ_MOD // 2)
        keep = np.flatnonzero(new)
        keep = keep[np.lexsort((d[keep], tag[keep]))]  # by badge, then sequence
        same = (tag[keep][1:] == tag[keep][:-1]) & (d[keep][1:] == d[keep][:-1])
        keep = keep[np.r_[True, ~same]] if len(keep) else keep
        update = WorkerUpdate(frames=len(keep), dropped=len(telemetry) - len(keep))
        if not len(keep):
            return update
        ktag, kseq, kt, kst, kst2 = tag[keep], seq[keep], t[keep], st[keep], st2[keep]
        khead = np.r_[True, ktag[1:] != ktag[:-1]]
        kstarts = np.flatnonzero(khead)
        prev, prev2 = np.empty_like(kst), np.empty_like(kst2)
        prev[1:], prev2[1:] = kst[:-1], kst2[:-1]
        prev[kstarts], prev2[kstarts] = self.status[ktag[kstarts]], self.status2[ktag[kstarts]]
        changed = (((kst ^ prev) & ALARM_FLAGS) | ((kst2 ^ prev2) & SERVICE_FLAGS)) != 0
        ends = np.r_[kstarts[1:], len(keep)] - 1
        btag = ktag[ends]
        self.seq[btag] = kseq[ends]
        self.last_t[btag] = np.maximum(self.last_t[btag], np.maximum.reduceat(kt, kstarts))
        self.status[btag], self.status2[btag] = kst[ends], kst2[ends]
        for i in np.flatnonzero(changed):  # only frames that changed a badge's flags
            self._change(int(ktag[i]), int(prev[i]), int(kst[i]), int(prev2[i]), int(kst2[i]),
                         float(kt[i]), int(kseq[i]), update)  # fmt: skip
        return update

    def _change(
        self, i: int, old: int, new: int, old2: int, new2: int, t: float, seq: int,
        out: WorkerUpdate,
    ) -> None:  # fmt: skip
        tag = self.ids[i]
        loc = self._location(i)
        rose, fell = new & ~old, old & ~new
        for flag, typ in FLAG_TYPES:
            if rose & flag:
                out.conditions.append(Condition(typ, tag, True, t, loc, {"seq": seq}))
            elif fell & flag:
                detail: dict[str, Any] = {"seq": seq}
                if flag is Status.PRE_ALARM:
                    by = next((ty for f, ty in INVOLUNTARY if new & f), None)
                    if by is not None:
                        detail["superseded_by"] = by.value
                        out.superseded.append(Supersede(tag, by, t))
                    elif new2 & Status2.PRE_ALARM_CANCELLED:
                        detail["cancelled"] = True
                        out.cancelled.append(tag)
                out.conditions.append(Condition(typ, tag, False, t, loc, detail))
        confirmed = bool(new2 & ~old2 & Status2.CONSOLE_CONFIRMED)
        if confirmed and self._confirm.pop(tag, None) is not None:
            out.confirmed.append(tag)
        if not new & ALARM_FLAGS:
            self._confirm.pop(tag, None)  # reset: nothing left to confirm

    def flags(self, tag: str) -> Status:
        """The alarm and sensor flags of the badge's last accepted frame."""
        return Status(int(self.status[self._badge(tag)]))

    # -- console confirmation -----------------------------------------------------------------
    def confirm(self, tag: str, now: float, alarm: AlarmType | None = None) -> Downlink:
        """The console acknowledged the badge's alarm: the downlink to publish so the badge may
        stop its local alarm (DOMAIN.md). ``alarm`` defaults to the most severe the badge
        shows. Kept in :meth:`pending_confirmations` until a frame shows CONSOLE_CONFIRMED."""
        i = self._badge(tag)
        shown = [ty for f, ty in CONFIRM_ORDER if self.status[i] & f]
        if not shown:
            raise WorkerError(f"badge {tag!r} shows no alarm to confirm")
        if alarm is None:
            alarm = shown[0]
        elif alarm not in shown:
            have = ", ".join(a.value for a in shown)
            raise WorkerError(f"badge {tag!r} shows no {alarm.value} alarm (it shows {have})")
        dl = Downlink(tag, "confirm", alarm, now, 1, now)
        if self.status2[i] & Status2.CONSOLE_CONFIRMED:
            self._confirm.pop(tag, None)  # the badge already shows it: send once, keep nothing
        else:
            self._confirm[tag] = dl
        return dl

    def pending_confirmations(self) -> list[Downlink]:
        """Confirmations the badges do not show yet, by badge."""
        return [self._confirm[k] for k in sorted(self._confirm)]

    def due_confirmations(self, now: float) -> list[Downlink]:
        """Pending confirmations to send again: last sent ``rules.confirm_resend_s`` ago or
        more. Each is returned with its attempt counted and ``sent_t = now``."""
        out = []
        for k in sorted(self._confirm):
            dl = self._confirm[k]
            if now >= dl.sent_t + self.rules.confirm_resend_s:
                dl = self._confirm[k] = replace(dl, attempt=dl.attempt + 1, sent_t=now)
                out.append(dl)
        return out

    # -- check-in ------------------------------------------------------------------------------
    def check_in(self, tag: str, now: float) -> None:
        """The worker confirmed (console or badge call). The first check-in starts the badge's
        check-in timer (``rules.check_in_s``, 0: off); each one restarts it and clears a
        ``check_in_missed``, delivered by the next :meth:`tick`."""
        self._badge(tag)
        self._settle(now)
        self._duty[tag] = now
        self._settle(now)

    def end_duty(self, tag: str, now: float) -> None:
        """The worker's lone shift is over: no more check-in timer (a missed one clears)."""
        self._badge(tag)
        if tag not in self._duty:
            raise WorkerError(f"badge {tag!r} is not on check-in duty")
        self._settle(now)
        del self._duty[tag]
        self._settle(now)

    def on_duty(self, tag: str) -> bool:
        return tag in self._duty

    def tick(self, now: float) -> list[Condition]:
        """Check-in changes up to ``now`` in the order they happened (a missed check-in is
        dated when it fell due, also after a restart)."""
        self._settle(now)
        out, self._pending = self._pending, []
        return out

    def _settle(self, now: float) -> None:
        period = self.rules.check_in_s
        wanted: dict[str, float] = {}
        if period > 0.0:
            wanted = {k: last + period for k, last in self._duty.items() if now >= last + period}
        for k in [k for k in self._missed if k not in wanted]:
            c = self._missed.pop(k)
            self._pending.append(replace(c, active=False, t=max(c.t, now)))
        for k, due in wanted.items():
            if k not in self._missed:
                i = self._index[k]
                detail = {"last_check_in": self._duty[k], "due_t": due}
                c = Condition(AlarmType.CHECK_IN_MISSED, k, True, max(due, self._settled_t),
                              self._location(i), detail)  # fmt: skip
                self._missed[k] = c
                self._pending.append(c)
        self._settled_t = max(self._settled_t, now)

    # -- positions and privacy -----------------------------------------------------------------
    def observe(
        self, tags: ArrayLike, floor: ArrayLike, xy: ArrayLike, now: float,
        zone: ArrayLike | None = None, uncertainty: ArrayLike | None = None,
    ) -> None:  # fmt: skip
        """Positions from the locator: ``tags`` (N,) indices into ``site.tags``, ``floor`` (N,)
        floor index (-1: unknown), ``xy`` (N, 2) m, ``zone`` (N,) zone index (-1: none),
        ``uncertainty`` (N,) m. Staff badges with a known floor become their last known
        position (only the latest is kept: no history); other rows are ignored."""
        idx = np.asarray(tags, dtype=np.int64).reshape(-1)
        fl = np.asarray(floor, dtype=np.int64).reshape(-1)
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        zn = np.full(len(idx), -1) if zone is None else np.asarray(zone, np.int64).reshape(-1)
        un = (np.full(len(idx), np.nan) if uncertainty is None
              else np.asarray(uncertainty, np.float64).reshape(-1))  # fmt: skip
        ok = (idx >= 0) & (idx < len(self.ids)) & (fl >= 0) & np.isfinite(pts).all(axis=1)
        ok[ok] = self.staff[idx[ok]]
        k = idx[ok]
        self.pos_floor[k], self.pos_xy[k], self.pos_zone[k] = fl[ok], pts[ok], zn[ok]
        self.pos_unc[k], self.pos_t[k] = un[ok], now

    def last_known(self, tag: str) -> tuple[Location, float] | None:
        """The badge's last known position and its time, for the alarm (None: never located).
        Not for display: see :meth:`position`."""
        i = self._badge(tag)
        loc = self._location(i)
        return None if loc is None else (loc, float(self.pos_t[i]))

    def in_alarm(self, tag: str) -> bool:
        """The badge shows a pre-alarm or an alarm, or its worker missed a check-in."""
        return bool(self.status[self._badge(tag)] & ALARM_FLAGS) or tag in self._missed

    def position_visible(self, tag: str, now: float, open_alarm: bool = False) -> bool:
        """May the console show this worker's position (CNIL)? Only while the worker is in
        pre-alarm or alarm (:meth:`in_alarm`), or ``open_alarm`` (the caller's alarm book
        still has an open alarm of this worker, e.g. an SOS not yet resolved after the badge
        was reset), or always with ``rules.show_position``."""
        return self.rules.show_position or open_alarm or self.in_alarm(tag)

    def position(self, tag: str, now: float, open_alarm: bool = False) -> Location | None:
        """The last known position if it may be shown (None: private or never located)."""
        if not self.position_visible(tag, now, open_alarm):
            return None
        known = self.last_known(tag)
        return known[0] if known else None

    def look(
        self, tag: str, user: str, now: float, open_alarm: bool = False
    ) -> tuple[Location | None, AuditEvent]:
        """A console user looks up a worker's position: refused while it is private; else the
        position and the audit event "who looked" (DOMAIN.md, CNIL)."""
        if not isinstance(user, str) or not user.strip():
            raise WorkerError("looking up a worker's position needs the authenticated user")
        if not self.position_visible(tag, now, open_alarm):
            raise WorkerError(f"the position of badge {tag!r} is private outside alarms")
        known = self.last_known(tag)
        detail = {"located_t": known[1] if known else None}
        return (known[0] if known else None), AuditEvent(user.strip(), "view_position", tag,
                                                         detail, now)  # fmt: skip

    def _location(self, i: int) -> Location | None:
        if self.pos_floor[i] < 0:
            return None
        z = int(self.pos_zone[i])
        unc = float(self.pos_unc[i])
        return Location(
            floor=self.site.floors[int(self.pos_floor[i])].id,
            zone=self.site.zones[z].id if z >= 0 else None,
            x=float(self.pos_xy[i, 0]),
            y=float(self.pos_xy[i, 1]),
            uncertainty=unc if math.isfinite(unc) else None,
        )

    def _badge(self, tag: str) -> int:
        i = self._index.get(tag)
        if i is None:
            raise WorkerError(f"tag {tag!r} is not in site {self.site.id!r}")
        if not self.staff[i]:
            raise WorkerError(f"tag {tag!r} is not a staff badge")
        return i

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state. Positions are kept only for workers in alarm (privacy: the alarm
        carries its own location; nobody else's whereabouts go to disk)."""
        badges: dict[str, Any] = {}
        for i in np.flatnonzero(self.staff & (self.seq >= 0)):
            tag = self.ids[i]
            b: dict[str, Any] = {
                "seq": int(self.seq[i]),
                "last_t": float(self.last_t[i]),
                "status": int(self.status[i]),
                "status2": int(self.status2[i]),
            }
            if self.in_alarm(tag) and self.pos_floor[i] >= 0:
                b["position"] = {"floor": int(self.pos_floor[i]), "zone": int(self.pos_zone[i]),
                                 "xy": [float(v) for v in self.pos_xy[i]],
                                 "uncertainty": _num(self.pos_unc[i]),
                                 "t": float(self.pos_t[i])}  # fmt: skip
            badges[tag] = b
        return {
            "format": FORMAT,
            "badges": badges,
            "duty": dict(sorted(self._duty.items())),
            "missed": [condition_dict(self._missed[k]) for k in sorted(self._missed)],
            "pending": [condition_dict(c) for c in self._pending],
            "settled_t": _num(self._settled_t),
            "confirm": [d.as_dict() for d in self.pending_confirmations()],
        }

    @classmethod
    def from_dict(
        cls, site: Site, data: Mapping[str, Any], rules: StaffRules | None = None
    ) -> LoneWorkers:
        """Restore the state saved by :meth:`to_dict`; WorkerError when it does not fit."""
        w = cls(site, rules)
        try:
            if data.get("format") != FORMAT:
                raise WorkerError(f"lone-worker state format {data.get('format')!r} is not "
                                  f"{FORMAT}")  # fmt: skip
            for tag, b in data["badges"].items():
                i = w._badge(tag)
                w.seq[i], w.last_t[i] = int(b["seq"]), float(b["last_t"])
                w.status[i], w.status2[i] = int(b["status"]), int(b["status2"])
                p = b.get("position")
                if p:
                    w.pos_floor[i], w.pos_zone[i] = int(p["floor"]), int(p["zone"])
                    w.pos_xy[i] = p["xy"]
                    w.pos_unc[i] = np.nan if p["uncertainty"] is None else p["uncertainty"]
                    w.pos_t[i] = float(p["t"])
            for tag, last in data.get("duty", {}).items():
                w._badge(tag)
                w._duty[tag] = float(last)
            for c in map(condition_from_dict, data.get("missed", [])):
                w._missed[c.subject] = c
            w._pending = [condition_from_dict(c) for c in data.get("pending", [])]
            s = data.get("settled_t")
            w._settled_t = -math.inf if s is None else float(s)
            for d in data.get("confirm", []):
                dl = Downlink.from_dict(d)
                w._badge(dl.tag)
                w._confirm[dl.tag] = dl
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise WorkerError(f"lone-worker state is malformed: {exc!r}") from exc
        return w


def _num(v: float) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None
