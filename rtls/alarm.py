"""Alarms: the catalogue and the life cycle, as a pure state machine (DOMAIN.md).

The rules (:mod:`rtls.conditions`) say which *conditions* hold: ``(type, subject)`` pairs such as
``("exit", "B03")`` or ``("gateway_silent", "G07")``, raised and cleared over time. An
:class:`AlarmBook` keeps one alarm per condition (not one per beacon) and moves it through the
life cycle of ISA-18.2 / IEC 62682 as DOMAIN.md draws it::

    active_unacknowledged --ack--> active_acknowledged --clears--> cleared (latching)
                                                              \\--clears--> closed (non-latching)
    active_unacknowledged --clears--> cleared_unacknowledged --ack--> cleared / closed
    cleared --resolve(outcome, comment)--> closed

Every change is returned as a :class:`Transition` (who, when, from, to) for the store to commit
*before* anything is announced; the book holds no clock: every call takes ``now`` and the
escalation timers are absolute times, so a restored book resumes them. Catalogue defaults
(priority, latching, rising priority) follow DOMAIN.md's tables; the site file overrides them
(``[alarms]``, :class:`rtls.rules.AlarmRules`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Any

from rtls.errors import RtlsError
from rtls.rules import AlarmRules, EscalationStep


class AlarmError(RtlsError):
    """A command the life cycle refuses (unknown alarm, wrong state, missing comment, ...)."""


class Priority(IntEnum):
    """IEC 60601-1-8 priorities; the console shows high red and flashing, medium yellow."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class AlarmType(StrEnum):
    """Every alarm of DOMAIN.md's infant, lone-worker and technical tables."""

    # infant protection
    EXIT = "exit"
    TAMPER = "tamper"
    TAG_LOOSE = "tag_loose"
    TAG_SILENT = "tag_silent"  # "badge silent" for a staff badge
    RESTRICTED_ZONE = "restricted_zone"
    LOITER = "loiter"
    MISMATCH = "mismatch"
    CODE_PINK = "code_pink"
    LOW_BATTERY = "low_battery"
    SIGN_OUT_OVERDUE = "sign_out_overdue"
    PAIRING_OVERDUE = "pairing_overdue"
    # lone worker
    SOS = "sos"
    PULL_CORD = "pull_cord"
    PRE_ALARM = "pre_alarm"
    MAN_DOWN = "man_down"
    NO_MOVEMENT = "no_movement"
    FALL = "fall"
    CHECK_IN_MISSED = "check_in_missed"
    # technical
    GATEWAY_SILENT = "gateway_silent"
    READER_SILENT = "reader_silent"
    BROKER_LINK_LOST = "broker_link_lost"
    # security
    TAG_SPOOFING = "tag_spoofing"  # a replayed or cloned tag advertisement (docs/tag-auth.md)


class Category(StrEnum):
    INFANT = "infant"
    WORKER = "worker"
    TECHNICAL = "technical"
    SECURITY = "security"


@dataclass(frozen=True)
class AlarmSpec:
    """Catalogue entry: default priority, latching, whether it is technical, and the time after
    which a still-active alarm rises to high priority (None: never)."""

    priority: Priority
    latching: bool
    category: Category
    technical: bool = False
    rise_after_s: float | None = None


H, M, L = Priority.HIGH, Priority.MEDIUM, Priority.LOW
# DOMAIN.md, "Infant protection", "Lone worker" and "Technical alarms" tables.
CATALOGUE: Mapping[AlarmType, AlarmSpec] = {
    AlarmType.EXIT: AlarmSpec(H, True, Category.INFANT),
    AlarmType.TAMPER: AlarmSpec(H, True, Category.INFANT),
    AlarmType.TAG_LOOSE: AlarmSpec(M, False, Category.INFANT),
    AlarmType.TAG_SILENT: AlarmSpec(H, False, Category.INFANT),
    AlarmType.RESTRICTED_ZONE: AlarmSpec(M, False, Category.INFANT, rise_after_s=120.0),
    AlarmType.LOITER: AlarmSpec(M, False, Category.INFANT, rise_after_s=120.0),
    AlarmType.MISMATCH: AlarmSpec(M, False, Category.INFANT),
    AlarmType.CODE_PINK: AlarmSpec(H, True, Category.INFANT),
    AlarmType.LOW_BATTERY: AlarmSpec(L, False, Category.TECHNICAL, technical=True),
    AlarmType.SIGN_OUT_OVERDUE: AlarmSpec(M, False, Category.INFANT),
    AlarmType.PAIRING_OVERDUE: AlarmSpec(M, False, Category.INFANT),
    AlarmType.SOS: AlarmSpec(H, True, Category.WORKER),
    AlarmType.PULL_CORD: AlarmSpec(H, True, Category.WORKER),
    AlarmType.PRE_ALARM: AlarmSpec(M, False, Category.WORKER),
    AlarmType.MAN_DOWN: AlarmSpec(H, True, Category.WORKER),
    AlarmType.NO_MOVEMENT: AlarmSpec(H, True, Category.WORKER),
    AlarmType.FALL: AlarmSpec(H, True, Category.WORKER),
    AlarmType.CHECK_IN_MISSED: AlarmSpec(M, False, Category.WORKER, rise_after_s=300.0),
    AlarmType.GATEWAY_SILENT: AlarmSpec(M, False, Category.TECHNICAL, technical=True),
    AlarmType.READER_SILENT: AlarmSpec(H, False, Category.TECHNICAL, technical=True),
    AlarmType.BROKER_LINK_LOST: AlarmSpec(H, False, Category.TECHNICAL, technical=True),
    AlarmType.TAG_SPOOFING: AlarmSpec(H, True, Category.SECURITY),
}


class AlarmState(StrEnum):
    ACTIVE_UNACK = "active_unacknowledged"
    ACTIVE_ACK = "active_acknowledged"
    CLEARED_UNACK = "cleared_unacknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"

    @property
    def acknowledged(self) -> bool:
        return self in (AlarmState.ACTIVE_ACK, AlarmState.CLEARED, AlarmState.CLOSED)


class Outcome(StrEnum):
    """How an alarm was resolved (DOMAIN.md); ``cleared`` is the system's own closing of a
    non-latching alarm whose condition went away after it was acknowledged."""

    GENUINE = "genuine"
    FALSE = "false"
    TEST = "test"
    TECHNICAL = "technical"
    CLEARED = "cleared"


SYSTEM = "system"  # the actor of transitions nobody commanded


@dataclass(frozen=True)
class Location:
    """Where the subject was: floor and zone ids (None: unknown), position in metres."""

    floor: str | None = None
    zone: str | None = None
    x: float | None = None
    y: float | None = None
    uncertainty: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"floor": self.floor, "zone": self.zone, "x": self.x, "y": self.y,
                "uncertainty": self.uncertainty}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Location:
        return cls(**dict(d)) if d else cls()


@dataclass(frozen=True)
class Condition:
    """A rule's statement at time ``t``: condition ``(type, subject)`` holds (``active``) or no
    longer holds. ``location`` and ``detail`` travel with the alarm; ``priority`` overrides
    the catalogue (e.g. a badge's silence is medium, an infant's high)."""

    type: AlarmType
    subject: str
    active: bool
    t: float
    location: Location | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority | None = None

    @property
    def key(self) -> str:
        return f"{self.type.value}:{self.subject}"


@dataclass
class Alarm:
    """One alarm: a condition's occurrence from its raise to its closing."""

    id: int
    type: AlarmType
    subject: str
    priority: Priority
    latching: bool
    state: AlarmState
    raised_t: float
    condition: bool = True
    location: Location = field(default_factory=Location)
    detail: dict[str, Any] = field(default_factory=dict)
    updated_t: float = 0.0
    acked_by: str | None = None
    acked_t: float | None = None
    cleared_t: float | None = None
    closed_t: float | None = None
    closed_by: str | None = None
    outcome: Outcome | None = None
    comment: str | None = None
    escalation_step: int = 0
    activated_t: float = 0.0  # raise or latest re-activation: escalation steps count from it
    group: str | None = None
    next_escalation_t: float | None = None
    shelved_until: float | None = None
    shelved_by: str | None = None
    occurrences: int = 1

    @property
    def key(self) -> str:
        return f"{self.type.value}:{self.subject}"

    @property
    def open(self) -> bool:
        return self.state is not AlarmState.CLOSED

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the store keeps and MQTT / the console publish)."""
        return {
            "id": self.id, "type": self.type.value, "subject": self.subject,
            "priority": self.priority.label, "latching": self.latching,
            "state": self.state.value, "raised_t": self.raised_t, "condition": self.condition,
            "location": self.location.as_dict(), "detail": dict(self.detail),
            "updated_t": self.updated_t, "acked_by": self.acked_by, "acked_t": self.acked_t,
            "cleared_t": self.cleared_t, "closed_t": self.closed_t, "closed_by": self.closed_by,
            "outcome": self.outcome.value if self.outcome else None, "comment": self.comment,
            "escalation_step": self.escalation_step, "activated_t": self.activated_t,
            "group": self.group,
            "next_escalation_t": self.next_escalation_t, "shelved_until": self.shelved_until,
            "shelved_by": self.shelved_by, "occurrences": self.occurrences,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alarm:
        """Inverse of :meth:`as_dict`."""
        v = dict(d)
        v["type"] = AlarmType(v["type"])
        v["priority"] = Priority[str(v["priority"]).upper()]
        v["state"] = AlarmState(v["state"])
        v["location"] = Location.from_dict(v.get("location"))
        v["outcome"] = Outcome(v["outcome"]) if v.get("outcome") else None
        v["detail"] = dict(v.get("detail") or {})
        return cls(**v)


@dataclass(frozen=True)
class Transition:
    """One change of one alarm, as the audit trail and the announcements carry it.

    ``action``: raise, reactivate, clear, acknowledge, resolve, close, escalate, priority,
    shelve, unshelve, update. ``alarm`` is the alarm's state after the change."""

    alarm_id: int
    t: float
    action: str
    from_state: AlarmState | None
    to_state: AlarmState
    actor: str
    alarm: Alarm
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id, "t": self.t, "action": self.action,
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value, "actor": self.actor, "detail": dict(self.detail),
            "alarm": self.alarm.as_dict(),
        }  # fmt: skip


class AlarmBook:
    """All alarms of a site and their life cycle. Pure: no clock, no I/O.

    Mutating calls return the transitions they made, in order; the caller commits them before
    announcing them (issue 4: "a transition is committed before it is announced")."""

    def __init__(self, rules: AlarmRules | None = None) -> None:
        self.rules = rules or AlarmRules()
        self.alarms: dict[int, Alarm] = {}  # open alarms (closed ones are dropped from memory)
        self._by_key: dict[str, int] = {}
        self._held: set[str] = set()  # resolved while the condition still held: no re-raise
        self.next_id = 1

    # -- queries ---------------------------------------------------------------------------------
    def get(self, alarm_id: int) -> Alarm:
        try:
            return self.alarms[alarm_id]
        except KeyError:
            raise AlarmError(f"no open alarm {alarm_id}") from None

    def by_key(self, type_: AlarmType, subject: str) -> Alarm | None:
        i = self._by_key.get(f"{type_.value}:{subject}")
        return self.alarms.get(i) if i is not None else None

    def active(self) -> list[Alarm]:
        """Open alarms, highest priority first, then oldest first."""
        return sorted(self.alarms.values(), key=lambda a: (-a.priority, a.raised_t, a.id))

    def spec(self, type_: AlarmType) -> AlarmSpec:
        s = CATALOGUE[type_]
        o = self.rules.types.get(type_.value)
        if o is None:
            return s
        return replace(
            s,
            priority=Priority[o.priority.upper()] if o.priority else s.priority,
            latching=s.latching if o.latching is None else o.latching,
            rise_after_s=s.rise_after_s if o.rise_after_s is None else o.rise_after_s,
        )

    def chain(self, priority: Priority) -> list[EscalationStep]:
        return list(self.rules.escalation.get(priority.label, []))

    # -- conditions --------------------------------------------------------------------------------
    def apply(self, conditions: Iterable[Condition], now: float) -> list[Transition]:
        """Fold the rules' conditions in (in the order given) and run the timers up to ``now``."""
        out: list[Transition] = []
        for c in conditions:
            out.extend(self._raise(c) if c.active else self._clear(c))
        out.extend(self.tick(now))
        return out

    def _raise(self, c: Condition) -> list[Transition]:
        key = c.key
        if key in self._held:
            return []
        a = self.alarms.get(self._by_key.get(key, -1))
        if a is not None:
            if a.condition:
                if c.location is not None and c.location != a.location:
                    a.location = c.location  # follow the subject; not a transition of its own
                return []
            before = a.state
            a.condition, a.updated_t, a.occurrences = True, c.t, a.occurrences + 1
            a.location = c.location or a.location
            a.cleared_t = None
            a.state = AlarmState.ACTIVE_UNACK
            self._start_escalation(a, c.t)
            return [self._tr(a, c.t, "reactivate", before, SYSTEM, dict(c.detail))]
        spec = self.spec(c.type)
        priority = c.priority if c.priority is not None else spec.priority
        a = Alarm(
            id=self.next_id, type=c.type, subject=c.subject, priority=priority,
            latching=spec.latching, state=AlarmState.ACTIVE_UNACK, raised_t=c.t,
            location=c.location or Location(), detail=dict(c.detail), updated_t=c.t,
        )  # fmt: skip
        self.next_id += 1
        self.alarms[a.id] = a
        self._by_key[key] = a.id
        self._start_escalation(a, c.t)
        return [self._tr(a, c.t, "raise", None, SYSTEM, dict(c.detail))]

    def _clear(self, c: Condition) -> list[Transition]:
        key = c.key
        self._held.discard(key)
        a = self.alarms.get(self._by_key.get(key, -1))
        if a is None or not a.condition:
            return []
        before = a.state
        a.condition, a.cleared_t, a.updated_t = False, c.t, c.t
        if a.state is AlarmState.ACTIVE_UNACK:
            a.state = AlarmState.CLEARED_UNACK
        elif a.state is AlarmState.ACTIVE_ACK:
            if not a.latching:
                return [self._close(a, c.t, SYSTEM, Outcome.CLEARED, None, "clear", before)]
            a.state = AlarmState.CLEARED
        return [self._tr(a, c.t, "clear", before, SYSTEM, dict(c.detail))]

    # -- operator commands -----------------------------------------------------------------------
    def acknowledge(self, alarm_id: int, user: str, now: float) -> list[Transition]:
        a = self.get(alarm_id)
        if a.state.acknowledged:
            raise AlarmError(f"alarm {alarm_id} is already acknowledged ({a.state.value})")
        before = a.state
        a.acked_by, a.acked_t, a.updated_t = user, now, now
        a.next_escalation_t = None
        if before is AlarmState.CLEARED_UNACK and not a.latching:
            return [self._close(a, now, user, Outcome.CLEARED, None, "acknowledge", before)]
        a.state = AlarmState.ACTIVE_ACK if before is AlarmState.ACTIVE_UNACK else AlarmState.CLEARED
        return [self._tr(a, now, "acknowledge", before, user)]

    def resolve(
        self, alarm_id: int, user: str, outcome: Outcome | str, comment: str, now: float
    ) -> list[Transition]:
        """Close an acknowledged alarm with an outcome and a comment (required for latching
        alarms). Resolving while the condition still holds closes this alarm and holds the
        condition back until it clears, so it does not re-raise at once."""
        a = self.get(alarm_id)
        try:
            oc = Outcome(outcome)
        except ValueError:
            raise AlarmError(
                f"unknown outcome {outcome!r}: genuine, false, test or technical"
            ) from None
        if oc is Outcome.CLEARED:
            raise AlarmError(
                "outcome 'cleared' is the system's own; use genuine, false, test or technical"
            )
        if not a.state.acknowledged:
            raise AlarmError(f"alarm {alarm_id} must be acknowledged before it is resolved")
        text = comment.strip()
        if a.latching and not text:
            raise AlarmError(f"alarm {alarm_id} is latching: resolving it needs a comment")
        if a.condition:
            self._held.add(a.key)
        return [self._close(a, now, user, oc, text or None, "resolve", a.state)]

    def shelve(self, alarm_id: int, user: str, duration_s: float, now: float) -> list[Transition]:
        """Timed shelving: low-priority technical alarms only (DOMAIN.md), at most
        ``rules.shelve_max_s``. A shelved alarm neither escalates nor sounds until it returns."""
        a = self.get(alarm_id)
        spec = self.spec(a.type)
        if not (spec.technical and a.priority is Priority.LOW):
            raise AlarmError(
                f"alarm {alarm_id} ({a.type.value}, {a.priority.label}) cannot be shelved: "
                "only low-priority technical alarms can"
            )
        if not 0 < duration_s <= self.rules.shelve_max_s:
            raise AlarmError(
                f"shelve duration {duration_s} s must be in (0, {self.rules.shelve_max_s}] s"
            )
        a.shelved_until, a.shelved_by, a.updated_t = now + duration_s, user, now
        return [self._tr(a, now, "shelve", a.state, user, {"until": a.shelved_until})]

    def supersede(self, type_: AlarmType, subject: str, now: float, by: str) -> list[Transition]:
        """Close a non-latching alarm that another replaced (a pre-alarm becoming man-down)."""
        a = self.by_key(type_, subject)
        if a is None:
            return []
        self._held.discard(a.key)
        return [self._close(a, now, SYSTEM, Outcome.CLEARED, f"superseded by {by}", "close",
                            a.state)]  # fmt: skip

    # -- timers ------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Transition]:
        """Escalations, rising priorities and shelving expiries due by ``now`` (also those that
        fell due while the process was down: a restored book catches up on the first tick)."""
        out: list[Transition] = []
        for a in sorted(self.alarms.values(), key=lambda x: x.id):
            if a.shelved_until is not None and now >= a.shelved_until:
                t = a.shelved_until
                a.shelved_until, a.shelved_by, a.updated_t = None, None, t
                if not a.state.acknowledged:
                    self._start_escalation(a, t)
                out.append(self._tr(a, t, "unshelve", a.state, SYSTEM))
            spec = self.spec(a.type)
            if (spec.rise_after_s is not None and a.condition and a.priority < Priority.HIGH
                    and now >= a.raised_t + spec.rise_after_s):  # fmt: skip
                t = a.raised_t + spec.rise_after_s
                before_p = a.priority
                a.priority, a.updated_t = Priority.HIGH, t
                self._start_escalation(a, t, keep_step=True)
                out.append(self._tr(a, t, "priority", a.state, SYSTEM,
                                    {"from": before_p.label, "to": a.priority.label}))  # fmt: skip
            while (a.next_escalation_t is not None and now >= a.next_escalation_t
                   and a.shelved_until is None and not a.state.acknowledged):  # fmt: skip
                chain = self.chain(a.priority)
                t = a.next_escalation_t
                a.escalation_step += 1
                a.group = chain[a.escalation_step].group
                nxt = a.escalation_step + 1
                a.next_escalation_t = (
                    a.activated_t + chain[nxt].after_s if nxt < len(chain) else None
                )
                a.updated_t = t
                out.append(self._tr(a, t, "escalate", a.state, SYSTEM,
                                    {"step": a.escalation_step, "group": a.group}))  # fmt: skip
        return out

    def _start_escalation(self, a: Alarm, now: float, keep_step: bool = False) -> None:
        """(Re)arm the escalation chain of ``a``'s priority. Step k notifies its group
        ``after_s[k]`` after the (re)activation; ``keep_step`` (priority rise) keeps the step
        reached and the activation time."""
        chain = self.chain(a.priority)
        if not keep_step:
            a.escalation_step, a.activated_t = 0, now
        if not chain:
            a.group, a.next_escalation_t = None, None
            return
        a.escalation_step = min(a.escalation_step, len(chain) - 1)
        a.group = chain[a.escalation_step].group
        nxt = a.escalation_step + 1
        due = a.activated_t + chain[nxt].after_s if nxt < len(chain) else None
        a.next_escalation_t = None if a.state.acknowledged else due

    # -- persistence -------------------------------------------------------------------------------
    def restore(self, alarms: Iterable[Alarm], next_id: int, held: Iterable[str] = ()) -> None:
        """Load the open alarms a store kept (after a restart); timers resume from their
        absolute times on the next :meth:`tick`."""
        self.alarms = {a.id: a for a in alarms if a.open}
        self._by_key = {a.key: a.id for a in self.alarms.values()}
        self._held = set(held)
        self.next_id = max([next_id, *(a.id + 1 for a in self.alarms.values())])

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    # -- helpers -----------------------------------------------------------------------------------
    def _close(
        self, a: Alarm, now: float, actor: str, outcome: Outcome, comment: str | None,
        action: str, before: AlarmState,
    ) -> Transition:  # fmt: skip
        a.state, a.closed_t, a.closed_by, a.updated_t = AlarmState.CLOSED, now, actor, now
        a.outcome, a.comment, a.next_escalation_t = outcome, comment, None
        del self.alarms[a.id]
        if self._by_key.get(a.key) == a.id:
            del self._by_key[a.key]
        detail = {"outcome": outcome.value, "comment": comment}
        return self._tr(a, now, action, before, actor, detail)

    @staticmethod
    def _tr(
        a: Alarm, t: float, action: str, before: AlarmState | None, actor: str,
        detail: Mapping[str, Any] | None = None,
    ) -> Transition:  # fmt: skip
        snapshot = replace(a, detail=dict(a.detail))
        return Transition(a.id, t, action, before, a.state, actor, snapshot, dict(detail or {}))
