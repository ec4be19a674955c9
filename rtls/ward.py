"""The maternity ward: admission, pairing, sign-out, return, discharge and Code Pink (DOMAIN.md,
"Work flows around the alarms"; issue 4 part 3). Pure: no clock, no I/O, every call takes ``now``.

Commands take the authenticated ``user`` (the console checks roles, not this module), refuse with
a :class:`WardError` that says why (and then change nothing), and return the
:class:`AuditEvent` records to write: every act records who did it. The conditions the ward
holds (``pairing_overdue``, ``sign_out_overdue``, ``code_pink``) come out of
:meth:`Ward.tick` as changes for the alarm book, dated when they became true or false: a command
that ends a condition's cause (a pairing, a return) has its clear dated at the command and
delivered by the next tick. The exit rule asks :meth:`Ward.exit_authorised`.

The mother-infant mismatch is not decided here: the infant bracelet knows its paired mother
tag (:meth:`Ward.pair_downlink` tells it) and flags a foreign one itself; rtls.conditions turns
the flag into the condition and asks :meth:`Ward.mother_of` for the detail.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rtls.alarm import AlarmType, Condition, Location, Priority
from rtls.errors import RtlsError
from rtls.rules import InfantRules
from rtls.site import Site, TagKind

FORMAT = 1  # version of the to_dict() layout


class WardError(RtlsError):
    """A ward command refused (unknown or wrong tag, wrong state, bad duration, ...)."""


@dataclass(frozen=True)
class AuditEvent:
    """One act to record in the audit trail: who (``actor``) did what to whom, when."""

    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]
    t: float

    def as_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "action": self.action, "subject": self.subject,
                "detail": dict(self.detail), "t": self.t}  # fmt: skip


@dataclass(frozen=True)
class SignOut:
    """A baby's temporary sign-out: who signed it out, with which escort tag, until when."""

    escort: str
    by: str
    start_t: float
    due_t: float
    reason: str


@dataclass(frozen=True)
class Baby:
    """A bonded infant tag: admission, pairing with a mother tag, current sign-out."""

    tag: str
    admitted_by: str
    admitted_t: float
    name: str | None = None
    mother: str | None = None
    paired_by: str | None = None
    paired_t: float | None = None
    sign_out: SignOut | None = None


@dataclass(frozen=True)
class CodePink:
    """A Code Pink in progress: who called it, why, since when."""

    by: str
    reason: str
    t: float


@dataclass(frozen=True)
class PairDownlink:
    """The ``pair`` downlink to an infant bracelet (docs/mqtt.md): the serial of the mother
    tag it is paired with, 0 when none (admitted, unpaired, discharged). With it the bracelet
    flags a mother tag that is not its own (``Status2.MISMATCH``, docs/advertisement.md)."""

    tag: str  # the baby's bracelet
    mother: str | None  # the paired mother tag's id (None: not paired)
    serial: int  # its serial; 0: not paired
    t: float
    command: str = "pair"

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "command": self.command, "mother": self.serial,
                "mother_tag": self.mother, "t": self.t}  # fmt: skip


@dataclass
class _Timers:
    """The conditions the ward currently holds and those not yet handed out by tick()."""

    active: dict[str, Condition] = field(default_factory=dict)
    pending: list[Condition] = field(default_factory=list)
    settled_t: float = -math.inf  # time of the last settle


class Ward:
    """One maternity ward's babies, pairings, sign-outs and Code Pink. Pure: no clock, no I/O.

    ``rules`` defaults to ``site.rules.infant`` (pairing window, longest sign-out).
    """

    def __init__(self, site: Site, rules: InfantRules | None = None) -> None:
        self.site = site
        self.rules = rules if rules is not None else site.rules.infant
        self._babies: dict[str, Baby] = {}
        self._code_pink: CodePink | None = None
        self._timers = _Timers()

    # -- queries -----------------------------------------------------------------------------
    @property
    def babies(self) -> list[Baby]:
        """Every bonded baby, by tag id."""
        return [self._babies[k] for k in sorted(self._babies)]

    def baby(self, baby_tag: str) -> Baby:
        """The bonded baby wearing ``baby_tag``; WardError when the tag is not bonded."""
        b = self._babies.get(baby_tag)
        if b is None:
            raise WardError(f"tag {baby_tag!r} is not bonded to an admitted baby")
        return b

    def bonded(self, tag: str) -> bool:
        """True for the tag of an admitted baby and for a mother tag paired with one; a free
        tag (never admitted, or discharged) is not bonded."""
        return tag in self._babies or any(b.mother == tag for b in self._babies.values())

    def mother_of(self, baby_tag: str) -> str | None:
        """The mother tag paired with ``baby_tag`` (None: not bonded or not yet paired)."""
        b = self._babies.get(baby_tag)
        return b.mother if b is not None else None

    def babies_of(self, mother_tag: str) -> list[str]:
        """The baby tags paired with ``mother_tag`` (twins: several), sorted."""
        return sorted(b.tag for b in self._babies.values() if b.mother == mother_tag)

    def signed_out(self, baby_tag: str) -> SignOut | None:
        b = self._babies.get(baby_tag)
        return b.sign_out if b is not None else None

    @property
    def code_pink_active(self) -> bool:
        return self._code_pink is not None

    @property
    def current_code_pink(self) -> CodePink | None:
        """The Code Pink in progress (None: none)."""
        return self._code_pink

    def exit_authorised(self, baby_tag: str, now: float, escort_near: Collection[str]) -> bool:
        """May ``baby_tag`` pass an exit now? Only when it is signed out, the sign-out is not
        overdue, its escort's tag is in ``escort_near`` (the caller decides what "near" is:
        same zone, same door read, within a distance) and no Code Pink is on (it arms every
        exit)."""
        b = self._babies.get(baby_tag)
        if b is None or b.sign_out is None or self._code_pink is not None:
            return False
        return now < b.sign_out.due_t and b.sign_out.escort in escort_near

    # -- commands ----------------------------------------------------------------------------
    def admit(
        self, baby_tag: str, user: str, now: float, name: str | None = None
    ) -> list[AuditEvent]:
        """Bond an infant tag to a newly admitted baby. The mother tag must then be paired
        within ``rules.pairing_window_s`` or ``pairing_overdue`` is raised."""
        user, now = _user(user), _time(now)
        self._tag(baby_tag, (TagKind.INFANT,), "an infant")
        if baby_tag in self._babies:
            b = self._babies[baby_tag]
            raise WardError(
                f"tag {baby_tag!r} is already bonded (admitted by {b.admitted_by} at "
                f"t={b.admitted_t:g}); discharge frees it"
            )
        self._settle(now)
        clean = (name.strip() or None) if name is not None else None
        self._babies[baby_tag] = Baby(baby_tag, user, now, name=clean)
        self._settle(now)
        due = now + self.rules.pairing_window_s
        return [AuditEvent(user, "admit", baby_tag, {"name": clean, "pairing_due_t": due}, now)]

    def pair(self, baby_tag: str, mother_tag: str, user: str, now: float) -> list[AuditEvent]:
        """Pair an admitted baby with a mother tag (a mother tag may be paired with several
        babies: twins). Clears the baby's ``pairing_overdue``."""
        user, now = _user(user), _time(now)
        b = self.baby(baby_tag)
        self._tag(mother_tag, (TagKind.MOTHER,), "a mother")
        if b.mother == mother_tag:
            raise WardError(f"baby {baby_tag!r} is already paired with mother tag {mother_tag!r}")
        if b.mother is not None:
            raise WardError(
                f"baby {baby_tag!r} is paired with mother tag {b.mother!r}: unpair it first"
            )
        self._settle(now)
        overdue = now >= b.admitted_t + self.rules.pairing_window_s
        self._babies[baby_tag] = replace(b, mother=mother_tag, paired_by=user, paired_t=now)
        self._settle(now)
        twins = [t for t in self.babies_of(mother_tag) if t != baby_tag]
        detail = {"mother": mother_tag, "late": overdue, "siblings": twins}
        return [AuditEvent(user, "pair", baby_tag, detail, now)]

    def unpair(self, baby_tag: str, user: str, now: float, reason: str) -> list[AuditEvent]:
        """Undo a wrong pairing (a reason is required). The pairing window counts again from
        the admission: an old admission is at once ``pairing_overdue``."""
        user, now, text = _user(user), _time(now), _reason(reason, "unpairing")
        b = self.baby(baby_tag)
        if b.mother is None:
            raise WardError(f"baby {baby_tag!r} is not paired")
        self._settle(now)
        self._babies[baby_tag] = replace(b, mother=None, paired_by=None, paired_t=None)
        self._settle(now)
        return [AuditEvent(user, "unpair", baby_tag, {"mother": b.mother, "reason": text}, now)]

    def sign_out(
        self, baby_tag: str, user: str, now: float, *, escort: str, duration_s: float, reason: str
    ) -> list[AuditEvent]:
        """Sign a baby out for ``duration_s`` (at most ``rules.sign_out_max_s``) with an escort:
        a staff tag, or the baby's own mother tag. Not during a Code Pink."""
        user, now, text = _user(user), _time(now), _reason(reason, "a sign-out")
        b = self.baby(baby_tag)
        if b.sign_out is not None:
            raise WardError(
                f"baby {baby_tag!r} is already signed out (escort {b.sign_out.escort!r}, due "
                f"t={b.sign_out.due_t:g})"
            )
        if self._code_pink is not None:
            raise WardError("no sign-out during a Code Pink")
        kind = self._tag(escort, (TagKind.STAFF, TagKind.MOTHER), "a staff or mother")
        if kind is TagKind.MOTHER and b.mother != escort:
            raise WardError(
                f"mother tag {escort!r} is not paired with baby {baby_tag!r}"
                + (f" (its mother tag is {b.mother!r})" if b.mother else " (not yet paired)")
            )
        limit = self.rules.sign_out_max_s
        if not (math.isfinite(duration_s) and 0.0 < duration_s <= limit):
            raise WardError(f"sign-out duration {duration_s} s must be in (0, {limit:g}] s")
        self._settle(now)
        so = SignOut(escort=escort, by=user, start_t=now, due_t=now + duration_s, reason=text)
        self._babies[baby_tag] = replace(b, sign_out=so)
        self._settle(now)
        detail = {"escort": escort, "escort_kind": kind.value, "duration_s": duration_s,
                  "due_t": so.due_t, "reason": text}  # fmt: skip
        return [AuditEvent(user, "sign_out", baby_tag, detail, now)]

    def return_(self, baby_tag: str, user: str, now: float) -> list[AuditEvent]:
        """The signed-out baby is back; clears its ``sign_out_overdue``."""
        user, now = _user(user), _time(now)
        b = self.baby(baby_tag)
        so = b.sign_out
        if so is None:
            raise WardError(f"baby {baby_tag!r} is not signed out")
        self._settle(now)
        self._babies[baby_tag] = replace(b, sign_out=None)
        self._settle(now)
        detail = {"escort": so.escort, "away_s": now - so.start_t, "late": now >= so.due_t}
        return [AuditEvent(user, "return", baby_tag, detail, now)]

    def discharge(self, baby_tag: str, user: str, now: float) -> list[AuditEvent]:
        """The baby leaves the hospital: the tag (and the mother tag, if no other baby is
        paired with it) is freed; the baby's ward conditions clear. A signed-out baby must be
        returned first."""
        user, now = _user(user), _time(now)
        b = self.baby(baby_tag)
        if b.sign_out is not None:
            raise WardError(f"baby {baby_tag!r} is signed out: return it before discharge")
        self._settle(now)
        del self._babies[baby_tag]
        self._settle(now)
        detail = {"name": b.name, "mother": b.mother, "stay_s": now - b.admitted_t,
                  "mother_freed": b.mother is not None and not self.bonded(b.mother)}  # fmt: skip
        return [AuditEvent(user, "discharge", baby_tag, detail, now)]

    def code_pink(self, user: str, now: float, reason: str) -> list[AuditEvent]:
        """Code Pink (suspected abduction): arms every exit, refuses sign-outs, raises the
        ``code_pink`` condition until :meth:`end_code_pink`."""
        user, now, text = _user(user), _time(now), _reason(reason, "a Code Pink")
        if self._code_pink is not None:
            cp = self._code_pink
            raise WardError(f"a Code Pink is already on (called by {cp.by} at t={cp.t:g})")
        self._settle(now)
        self._code_pink = CodePink(user, text, now)
        self._settle(now)
        signed_out = sorted(b.tag for b in self._babies.values() if b.sign_out is not None)
        detail = {"reason": text, "signed_out": signed_out}
        return [AuditEvent(user, "code_pink", self.site.id, detail, now)]

    def end_code_pink(self, user: str, now: float, reason: str = "") -> list[AuditEvent]:
        """End the Code Pink; its (latching) alarm stays in the book until resolved."""
        user, now = _user(user), _time(now)
        cp = self._code_pink
        if cp is None:
            raise WardError("no Code Pink is on")
        self._settle(now)
        self._code_pink = None
        self._settle(now)
        detail = {"reason": reason.strip(), "duration_s": now - cp.t, "called_by": cp.by}
        return [AuditEvent(user, "end_code_pink", self.site.id, detail, now)]

    # -- conditions --------------------------------------------------------------------------
    def pair_downlink(self, baby_tag: str, now: float) -> PairDownlink:
        """What ``baby_tag``'s bracelet must know now: its paired mother tag's serial (0 when
        the baby is not paired, or no longer bonded). The desk sends it after every act that
        changes a pairing (admit, pair, unpair, discharge)."""
        mother = self.mother_of(baby_tag)
        serial = self.site.tag(mother).serial if mother is not None else 0
        return PairDownlink(baby_tag, mother, serial, _time(now))

    def tick(self, now: float) -> list[Condition]:
        """Condition changes up to ``now``, in the order they happened: raised when a timer
        falls due (dated at the due time, also after a restart) or a command made it true
        (dated at the command), cleared when the cause ended."""
        self._settle(_time(now))
        out, self._timers.pending = self._timers.pending, []
        return out

    @property
    def active_conditions(self) -> list[Condition]:
        """The conditions the ward holds now (as last raised), by key."""
        return [self._timers.active[k] for k in sorted(self._timers.active)]

    def _wanted(self, now: float) -> dict[str, Condition]:
        """Conditions that hold at ``now``."""
        out: dict[str, Condition] = {}
        window = self.rules.pairing_window_s
        for b in self._babies.values():
            if b.mother is None and now >= b.admitted_t + window:
                due = b.admitted_t + window
                detail = {"admitted_t": b.admitted_t, "due_t": due, "name": b.name}
                c = Condition(AlarmType.PAIRING_OVERDUE, b.tag, True, due, detail=detail)
                out[c.key] = c
            so = b.sign_out
            if so is not None and now >= so.due_t:
                detail = {"escort": so.escort, "due_t": so.due_t, "by": so.by,
                          "reason": so.reason, "name": b.name}  # fmt: skip
                c = Condition(AlarmType.SIGN_OUT_OVERDUE, b.tag, True, so.due_t, detail=detail)
                out[c.key] = c
        if self._code_pink is not None:
            cp = self._code_pink
            detail = {"by": cp.by, "reason": cp.reason}
            c = Condition(AlarmType.CODE_PINK, self.site.id, True, cp.t, detail=detail)
            out[c.key] = c
        return out

    def _settle(self, now: float) -> None:
        """Move the held conditions to what holds at ``now``; changes go to the pending list."""
        wanted = self._wanted(now)
        tm = self._timers
        for key in [k for k in tm.active if k not in wanted]:
            c = tm.active.pop(key)
            tm.pending.append(replace(c, active=False, t=max(c.t, now)))
        for key, c in wanted.items():
            if key not in tm.active:
                # not held at the last settle: it became true since (a timer due since then
                # keeps its due time; a command that made it true dates it now)
                c = replace(c, t=max(c.t, tm.settled_t))
                tm.active[key] = c
                tm.pending.append(c)
        tm.settled_t = max(tm.settled_t, now)

    # -- helpers -----------------------------------------------------------------------------
    def _kind(self, tag_id: str) -> TagKind:
        try:
            return self.site.tag(tag_id).kind
        except KeyError:
            raise WardError(f"tag {tag_id!r} is not in site {self.site.id!r}") from None

    def _tag(self, tag_id: str, kinds: tuple[TagKind, ...], what: str) -> TagKind:
        kind = self._kind(tag_id)
        if kind not in kinds:
            raise WardError(f"tag {tag_id!r} is a {kind.value} tag, not {what} tag")
        return kind

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state for the store; :meth:`from_dict` restores it (timers included:
        they are absolute times)."""
        return {
            "format": FORMAT,
            "babies": [_baby_dict(b) for b in self.babies],
            "code_pink": None if self._code_pink is None else {
                "by": self._code_pink.by, "reason": self._code_pink.reason,
                "t": self._code_pink.t},
            "active": [condition_dict(c) for c in self.active_conditions],
            "pending": [condition_dict(c) for c in self._timers.pending],
            "settled_t": self._timers.settled_t if math.isfinite(self._timers.settled_t) else None,
        }  # fmt: skip

    @classmethod
    def from_dict(
        cls, site: Site, data: Mapping[str, Any], rules: InfantRules | None = None
    ) -> Ward:
        """Restore a ward saved by :meth:`to_dict`. Raises WardError when the state does not
        fit the site (a bonded tag no longer in the site file is not dropped silently)."""
        ward = cls(site, rules)
        try:
            if data.get("format") != FORMAT:
                raise WardError(f"ward state format {data.get('format')!r} is not {FORMAT}")
            for d in data["babies"]:
                so = d.get("sign_out")
                b = Baby(
                    tag=str(d["tag"]), admitted_by=str(d["admitted_by"]),
                    admitted_t=float(d["admitted_t"]), name=d.get("name"),
                    mother=d.get("mother"), paired_by=d.get("paired_by"),
                    paired_t=d.get("paired_t"),
                    sign_out=SignOut(**so) if so else None,
                )  # fmt: skip
                ward._tag(b.tag, (TagKind.INFANT,), "an infant")
                if b.mother is not None:
                    ward._tag(b.mother, (TagKind.MOTHER,), "a mother")
                if b.sign_out is not None:
                    ward._tag(b.sign_out.escort, (TagKind.STAFF, TagKind.MOTHER), "an escort")
                ward._babies[b.tag] = b
            cp = data.get("code_pink")
            ward._code_pink = CodePink(**cp) if cp else None
            # "meetings" of an older engine (position-based mismatch) are not read: a
            # mismatch condition it held is not wanted any more and clears at the next settle
            for c in map(condition_from_dict, data.get("active", [])):
                ward._timers.active[c.key] = c
            ward._timers.pending = [condition_from_dict(c) for c in data.get("pending", [])]
            settled = data.get("settled_t")
            ward._timers.settled_t = -math.inf if settled is None else float(settled)
        except (KeyError, TypeError, ValueError) as exc:
            raise WardError(f"ward state is malformed: {exc!r}") from exc
        return ward


def _baby_dict(b: Baby) -> dict[str, Any]:
    so = b.sign_out
    return {"tag": b.tag, "admitted_by": b.admitted_by, "admitted_t": b.admitted_t,
            "name": b.name, "mother": b.mother, "paired_by": b.paired_by,
            "paired_t": b.paired_t,
            "sign_out": None if so is None else {
                "escort": so.escort, "by": so.by, "start_t": so.start_t, "due_t": so.due_t,
                "reason": so.reason}}  # fmt: skip


def condition_dict(c: Condition) -> dict[str, Any]:
    """JSON-ready form of a condition (the store keeps the ones a module holds)."""
    return {"type": c.type.value, "subject": c.subject, "active": c.active, "t": c.t,
            "location": c.location.as_dict() if c.location else None,
            "detail": dict(c.detail),
            "priority": c.priority.label if c.priority is not None else None}  # fmt: skip


def condition_from_dict(d: Mapping[str, Any]) -> Condition:
    """Inverse of :func:`condition_dict`."""
    p = d.get("priority")
    return Condition(
        type=AlarmType(d["type"]), subject=str(d["subject"]), active=bool(d["active"]),
        t=float(d["t"]), location=Location.from_dict(d["location"]) if d.get("location") else None,
        detail=dict(d.get("detail") or {}), priority=Priority[str(p).upper()] if p else None,
    )  # fmt: skip


def _user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise WardError("every ward act needs the authenticated user who does it")
    return user.strip()


def _time(now: float) -> float:
    t = float(now)
    if not math.isfinite(t):
        raise WardError(f"time {now!r} is not finite")
    return t


def _reason(reason: str, what: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise WardError(f"{what} needs a reason")
    return text
