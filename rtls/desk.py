"""The alarm desk: rules, ward, lone workers, alarm book and actuators behind one pure API.

The service calls :meth:`Desk.step` after every engine tick and :meth:`Desk.command` for every
operator command; each returns a :class:`DeskOutput` that the shell must **commit first**
(transitions, audit events, ward documents) and only then announce (alarm state and events on
MQTT, actuator commands, badge and bracelet downlinks). Pure: no clock, no I/O (ARCHITECTURE.md,
step 6-7).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rtls.actuators import Actuators, Command
from rtls.alarm import (
    CATALOGUE,
    SYSTEM,
    Alarm,
    AlarmBook,
    AlarmType,
    Category,
    Condition,
    Transition,
)
from rtls.conditions import Rules
from rtls.engine import TickResult
from rtls.errors import RtlsError
from rtls.site import Site, TagKind
from rtls.spoofing import SpoofingRule
from rtls.supervision import HeardLike
from rtls.tagauth import EMPTY_SPOOF
from rtls.ward import AuditEvent, PairDownlink, Ward
from rtls.worker import Downlink, LoneWorkers, WorkerError

#: Alarms a badge shows locally: acknowledging one confirms it to the badge, resolving resets it.
BADGE_ALARMS = frozenset(
    {AlarmType.SOS, AlarmType.PULL_CORD, AlarmType.MAN_DOWN, AlarmType.NO_MOVEMENT, AlarmType.FALL}
)

#: Seconds between two snapshots of the ward and workers documents when no alarm changed state
#: (they follow every alarm transition and every operator command at once).
DOCUMENTS_EVERY_S = 1.0


class CommandError(RtlsError):
    """An operator command the desk does not understand (unknown name, missing argument)."""


@dataclass
class DeskOutput:
    """What one step or command produced, in the order to commit and then announce."""

    transitions: list[Transition] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # audit events (ward acts, ...)
    commands: list[Command] = field(default_factory=list)
    downlinks: list[Downlink | PairDownlink] = field(default_factory=list)  # badges, bracelets
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # state to persist
    reply: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.transitions or self.events or self.commands or self.downlinks
                    or self.documents)  # fmt: skip


class Desk:
    """All alarm logic of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.book = AlarmBook(site.rules.alarms)
        self.rules = Rules(site)
        self.ward = Ward(site)
        self.workers = LoneWorkers(site)
        self.actuators = Actuators(site)
        self.spoofing = SpoofingRule(site)  # tag_spoofing (docs/tag-auth.md)
        self._tag_ids = tuple(t.id for t in site.tags)
        self._documents_due = False  # documents left to a later step (early pass, throttle)
        self._documents_t = -math.inf  # when the documents were last handed out by step()
        self._staff = np.flatnonzero([t.kind is TagKind.STAFF for t in site.tags])
        self._commands: dict[str, Callable[[Mapping[str, Any], str, float], DeskOutput]] = {
            "acknowledge": self._acknowledge, "resolve": self._resolve, "shelve": self._shelve,
            "admit": self._admit, "pair": self._pair, "unpair": self._unpair,
            "sign_out": self._sign_out, "return": self._return, "discharge": self._discharge,
            "code_pink": self._code_pink, "end_code_pink": self._end_code_pink,
            "check_in": self._check_in, "end_duty": self._end_duty,
            "clear_fire": self._clear_fire,
        }  # fmt: skip

    # -- the engine's side -----------------------------------------------------------------------
    def step(self, now: float, tick: TickResult | None, heard: HeardLike | None, *,
             documents: bool = True) -> DeskOutput:  # fmt: skip
        """One evaluation after an engine tick (``tick`` None: no tick, timers only).
        ``documents`` False (the engine's early passes for critical input, which must not wait
        for a snapshot of the ward and the workers): the documents go with the next step."""
        out = DeskOutput()
        conditions: list[Condition] = []
        superseded: list[tuple[AlarmType, str, float, str]] = []
        if tick is not None:
            wu = self.workers.update(tick.telemetry, now)
            est = tick.estimate
            idx = np.flatnonzero(est.known)
            self.workers.observe(idx, est.floor[idx], est.xy[idx], now, tick.zone[idx],
                                 est.uncertainty[idx])  # fmt: skip
            conditions += wu.conditions
            superseded += [(s.type, s.subject, s.t, s.by.value) for s in wu.superseded]
            superseded += [(AlarmType.PRE_ALARM, tag, now, "wearer cancel") for tag in wu.cancelled]
        conditions += self.rules.evaluate(
            now, tick, None, None, self.ward, heard, open_alarms=list(self.book.alarms.values())
        )
        conditions += self.ward.tick(now)
        conditions += self.workers.tick(now)
        spoof = getattr(tick, "spoofing", None)
        conditions += self.spoofing.update(now, EMPTY_SPOOF if spoof is None else spoof)
        conditions.sort(key=lambda c: c.t)  # stable: each source's own order is kept
        out.transitions += self.book.apply(self._located(conditions), now)
        for type_, subject, t, by in superseded:
            out.transitions += self.book.supersede(type_, subject, t, by)
        out.commands += self.actuators.update(now, self.book.alarms.values(),
                                              signed_out=self._signed_out(now))  # fmt: skip
        out.downlinks += self.workers.due_confirmations(now)
        if conditions or superseded or out.downlinks or self._documents_due:
            # an alarm changed state: its documents go with it; otherwise (a moving alarm's
            # new place, a badge's next frame) at most every DOCUMENTS_EVERY_S: the workers
            # document of thousands of badges is tens of ms of JSON each time
            now_too = bool(out.transitions or superseded or out.downlinks)
            if documents and (now_too or now - self._documents_t >= DOCUMENTS_EVERY_S):
                out.documents = self.documents()
                self._documents_t = now
                self._documents_due = False
            else:
                self._documents_due = True
        return out

    def link(self, now: float, up: bool) -> DeskOutput:
        """The broker link went up or down."""
        return DeskOutput(transitions=self.book.apply(self.rules.link(now, up), now))

    def door_report(self, target: str, state: str, now: float) -> DeskOutput:
        """A door / elevator controller's state report (MQTT, docs/actuators.md)."""
        return DeskOutput(commands=self.actuators.report(target, state, now))

    # -- operators' commands ---------------------------------------------------------------------
    def command(self, name: str, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        """Run one operator command for authenticated ``user`` (roles are checked by the
        console). Raises an :class:`RtlsError` whose message is the reply to show."""
        handler = self._commands.get(name)
        if handler is None:
            raise CommandError(f"unknown command {name!r}; known: {', '.join(self._commands)}")
        if not isinstance(user, str) or not user.strip():
            raise CommandError("a command needs the user who gives it")
        out = handler(args, user.strip(), now)
        out.commands += self.actuators.update(now, self.book.alarms.values(),
                                              signed_out=self._signed_out(now))  # fmt: skip
        out.documents = self.documents()
        return out

    def _acknowledge(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        a = self.book.get(_int(args, "alarm"))
        out = DeskOutput(transitions=self.book.acknowledge(a.id, user, now))
        if a.type in BADGE_ALARMS:
            # the badge may have reset itself already: then there is nothing to confirm
            with contextlib.suppress(WorkerError):
                out.downlinks.append(self.workers.confirm(a.subject, now))
        out.reply = {"alarm": a.id}
        return out

    def _resolve(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        a = self.book.get(_int(args, "alarm"))
        trs = self.book.resolve(a.id, user, _str(args, "outcome"), str(args.get("comment", "")),
                                now)  # fmt: skip
        out = DeskOutput(transitions=trs, reply={"alarm": a.id})
        if a.type in BADGE_ALARMS:
            out.downlinks.append(Downlink(a.subject, "reset", a.type, now, 1, now))
        return out

    def _shelve(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        aid = _int(args, "alarm")
        return DeskOutput(transitions=self.book.shelve(aid, user, _float(args, "duration_s"), now),
                          reply={"alarm": aid})  # fmt: skip

    def _ward(self, events: list[AuditEvent], now: float) -> DeskOutput:
        out = DeskOutput(events=[e.as_dict() for e in events])
        out.transitions += self.book.apply(self.ward.tick(now), now)
        return out

    def _paired(self, baby: str, events: list[AuditEvent], now: float) -> DeskOutput:
        """A ward act that changed ``baby``'s pairing: its bracelet is told its mother tag's
        serial (0: none) by a ``pair`` downlink, so that it can flag a mismatch itself."""
        out = self._ward(events, now)
        out.downlinks.append(self.ward.pair_downlink(baby, now))
        return out

    def _admit(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        name, baby = args.get("name"), _str(args, "baby")
        events = self.ward.admit(baby, user, now, name=str(name) if name else None)
        return self._paired(baby, events, now)  # clears a pairing the bracelet may still hold

    def _pair(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        baby = _str(args, "baby")
        return self._paired(baby, self.ward.pair(baby, _str(args, "mother"), user, now), now)

    def _unpair(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        baby = _str(args, "baby")
        return self._paired(baby, self.ward.unpair(baby, user, now, _str(args, "reason")), now)

    def _sign_out(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        events = self.ward.sign_out(
            _str(args, "baby"), user, now, escort=_str(args, "escort"),
            duration_s=_float(args, "duration_s"), reason=str(args.get("reason", "")),
        )  # fmt: skip
        return self._ward(events, now)

    def _return(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        return self._ward(self.ward.return_(_str(args, "baby"), user, now), now)

    def _discharge(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        baby = _str(args, "baby")
        return self._paired(baby, self.ward.discharge(baby, user, now), now)

    def _code_pink(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        return self._ward(self.ward.code_pink(user, now, str(args.get("reason", ""))), now)

    def _end_code_pink(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        return self._ward(self.ward.end_code_pink(user, now, str(args.get("reason", ""))), now)

    def _check_in(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        tag = _str(args, "tag")
        self.workers.check_in(tag, now)
        out = DeskOutput(events=[_event(user, "worker.check_in", tag, {}, now)])
        out.transitions += self.book.apply(self.workers.tick(now), now)
        return out

    def _end_duty(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        tag = _str(args, "tag")
        self.workers.end_duty(tag, now)
        out = DeskOutput(events=[_event(user, "worker.end_duty", tag, {}, now)])
        out.transitions += self.book.apply(self.workers.tick(now), now)
        return out

    def _clear_fire(self, args: Mapping[str, Any], user: str, now: float) -> DeskOutput:
        target = _str(args, "target")
        cmds = self.actuators.clear_fire(target, user, now)
        event = _event(user, "actuator.clear_fire", target, {}, now)
        return DeskOutput(commands=cmds, events=[event])

    def admission_orders(self) -> list[tuple[str, dict[str, Any]]]:
        """Commands that admit every infant tag of the site and pair it with the mother tag of
        the same home room (twins share one), else the next mother tag without a baby: the
        demo's and the tests' starting ward (``rtls engine --admit-all``)."""
        mothers = [t for t in self.site.tags if t.kind is TagKind.MOTHER]
        free = [m.id for m in mothers]
        orders: list[tuple[str, dict[str, Any]]] = []
        for baby in (t for t in self.site.tags if t.kind is TagKind.INFANT):
            if self.ward.bonded(baby.id):
                continue
            orders.append(("admit", {"baby": baby.id}))
            same = [m.id for m in mothers if m.home is not None and m.home == baby.home]
            mother = same[0] if same else (free[0] if free else None)
            if mother is None:
                continue
            if mother in free:
                free.remove(mother)
            orders.append(("pair", {"baby": baby.id, "mother": mother}))
        return orders

    def visible(self, now: float) -> NDArray[np.bool_]:
        """(N,) tags whose position may be published: every tag but the staff badges, which
        only while their worker is in pre-alarm or alarm or has an open alarm (DOMAIN.md,
        CNIL; ``[rules.staff] show_position`` makes them always visible)."""
        out = np.ones(len(self._tag_ids), dtype=bool)
        worker_alarm = {a.subject for a in self.book.alarms.values()
                        if CATALOGUE[a.type].category is Category.WORKER}  # fmt: skip
        for i in self._staff.tolist():
            tag = self._tag_ids[i]
            out[i] = self.workers.position_visible(tag, now, open_alarm=tag in worker_alarm)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def documents(self) -> dict[str, dict[str, Any]]:
        """The state beside the alarms that must survive a restart (store documents)."""
        return {"ward": self.ward.to_dict(), "workers": self.workers.to_dict()}

    def restore(
        self, alarms: Iterable[Alarm], next_id: int, held: Iterable[str],
        documents: Mapping[str, Mapping[str, Any]],
    ) -> None:  # fmt: skip
        """Resume after a restart from what the store kept."""
        self.book.restore(alarms, next_id, held)
        if "ward" in documents:
            self.ward = Ward.from_dict(self.site, documents["ward"])
        if "workers" in documents:
            self.workers = LoneWorkers.from_dict(self.site, documents["workers"])

    # -- helpers ---------------------------------------------------------------------------------
    def _signed_out(self, now: float) -> set[str]:
        return {b.tag for b in self.ward.babies if self.ward.signed_out(b.tag) is not None}

    def _located(self, conditions: list[Condition]) -> list[Condition]:
        """Worker alarms carry the badge's last known position (kept only for alarms)."""
        out = []
        for c in conditions:
            if (c.active and c.location is None
                    and CATALOGUE[c.type].category is Category.WORKER):  # fmt: skip
                known = self.workers.last_known(c.subject)
                if known is not None:
                    c = Condition(c.type, c.subject, c.active, c.t, known[0], c.detail,
                                  c.priority)  # fmt: skip
            out.append(c)
        return out


def _event(
    actor: str, action: str, subject: str, detail: dict[str, Any], t: float
) -> dict[str, Any]:
    return {"actor": actor, "action": action, "subject": subject, "detail": detail, "t": t}


def _str(args: Mapping[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v.strip():
        raise CommandError(f"argument {key!r} (text) is missing")
    return v.strip()


def _int(args: Mapping[str, Any], key: str) -> int:
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CommandError(f"argument {key!r} (integer) is missing")
    return v


def _float(args: Mapping[str, Any], key: str) -> float:
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CommandError(f"argument {key!r} (number) is missing")
    try:
        f = float(v)  # a JSON integer may be huge: np.isfinite would raise on it
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise CommandError(f"argument {key!r} must be a finite number")
    return f


__all__ = ["SYSTEM", "CommandError", "Desk", "DeskOutput"]
