"""Door locks and elevator holds commanded from alarms; pure (every call takes ``now``).

Exit, tamper and Code Pink alarms lock the site's lockable exit doors and hold its elevator
landings: those of the alarm's floor (every floor the alarm has been on while open; all floors
when the floor is unknown, and for Code Pink). They are released when no open alarm needs them
any more: resolved, or the baby signed out. The system *commands, never owns* the door
(DOMAIN.md): a lock must give way to the fire alarm and to loss of power, so a door that reports
``fire_release`` is never locked again until it has reported a normal state *and* a human has
cleared it (:meth:`Actuators.clear_fire`). A command the controller does not confirm with a
state report within ``confirm_timeout_s`` is sent again, the wait doubling up to
``max_backoff_s``. Topics and payloads: docs/actuators.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from rtls import geometry
from rtls.alarm import Alarm, AlarmType
from rtls.errors import RtlsError
from rtls.rules import ActuatorRules
from rtls.site import Site, ZoneKind

Kind = Literal["door", "elevator"]
Verb = Literal["lock", "unlock", "hold", "release"]

PREFIX: Final = "rtls/v1/actuator"
STATE_FILTER: Final = f"{PREFIX}/+/+/state"
PAYLOAD_VERSION: Final = 1
#: States a controller may report, per kind; the first two confirm engage / release.
STATES: Final[dict[str, tuple[str, ...]]] = {
    "door": ("locked", "unlocked", "fire_release", "fault"),
    "elevator": ("held", "released", "fire_service", "fault"),
}
ENGAGE: Final[dict[str, Verb]] = {"door": "lock", "elevator": "hold"}
RELEASE: Final[dict[str, Verb]] = {"door": "unlock", "elevator": "release"}
CONFIRMS: Final[dict[str, str]] = {
    "lock": "locked", "unlock": "unlocked", "hold": "held", "release": "released",
}  # fmt: skip
FIRE: Final = frozenset({"fire_release", "fire_service"})
#: Alarms that lock the doors and hold the elevators (issue 4: exit and tamper; Code Pink).
LOCKING: Final = frozenset({AlarmType.EXIT, AlarmType.TAMPER, AlarmType.CODE_PINK})


class ActuatorError(RtlsError):
    """An unknown target, an invalid state report or a refused operator command."""


def command_topic(kind: Kind, target: str) -> str:
    """Where the engine publishes commands for ``target`` (QoS 1, not retained)."""
    return f"{PREFIX}/{kind}/{target}/set"


def state_topic(kind: Kind, target: str) -> str:
    """Where the controller publishes the state of ``target`` (QoS 1, retained)."""
    return f"{PREFIX}/{kind}/{target}/state"


@dataclass(frozen=True)
class Command:
    """One command to one target: ``reason`` the ids of the alarms behind it (for a release:
    the alarms that had held it), ``attempt`` 1 for the first send, more for resends;
    ``floor`` the landing's floor for elevators."""

    kind: Kind
    target: str
    command: Verb
    reason: tuple[int, ...]
    t: float
    attempt: int = 1
    floor: str | None = None

    @property
    def topic(self) -> str:
        return command_topic(self.kind, self.target)

    def payload(self, site_id: str) -> bytes:
        return command_payload(self, site_id)


def command_payload(cmd: Command, site_id: str) -> bytes:
    """The JSON of a command (docs/actuators.md)."""
    body: dict[str, Any] = {
        "v": PAYLOAD_VERSION, "site": site_id, "kind": cmd.kind, "target": cmd.target,
        "command": cmd.command, "reason": list(cmd.reason), "t": cmd.t, "attempt": cmd.attempt,
    }  # fmt: skip
    if cmd.floor is not None:
        body["floor"] = cmd.floor
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class StateReport:
    """A controller's state report, parsed from its topic and payload."""

    kind: Kind
    target: str
    state: str
    t: float | None


def parse_state(topic: str, payload: bytes) -> StateReport:
    """Parse ``rtls/v1/actuator/<kind>/<target>/state`` with ``{"v":1,"state":..,"t":..}``;
    raises ActuatorError naming what is wrong."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != PREFIX or parts[5] != "state":
        raise ActuatorError(f"{topic!r} is not an actuator state topic ({STATE_FILTER})")
    kind, target = parts[3], parts[4]
    if kind not in STATES:
        raise ActuatorError(f"unknown actuator kind {kind!r} in {topic!r}")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ActuatorError(f"{topic}: payload is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != PAYLOAD_VERSION:
        raise ActuatorError(f"{topic}: payload must be an object with v={PAYLOAD_VERSION}")
    state = obj.get("state")
    if state not in STATES[kind]:
        raise ActuatorError(f"{topic}: state {state!r} is not one of {STATES[kind]}")
    t = obj.get("t")
    if t is not None and not (isinstance(t, int | float) and math.isfinite(t)):
        raise ActuatorError(f"{topic}: t must be a finite number")
    return StateReport(kind, target, state, None if t is None else float(t))  # type: ignore[arg-type]


@dataclass
class Target:
    """One lockable exit door, or one elevator landing (an elevator at one floor)."""

    kind: Kind
    id: str
    floor: str
    wanted: bool = False  # some open alarm needs it engaged
    reason: tuple[int, ...] = ()
    engaged: bool = False  # our engage command stands (sent and not released since)
    pending: Command | None = None  # last command, not yet confirmed
    next_send: float = math.inf
    wait: float = 0.0
    reported: str | None = None
    reported_t: float | None = None
    fire: bool = False  # reported fire release: never engage until normal + human clear
    normal_since_fire: bool = False
    fire_cleared_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "id": self.id, "floor": self.floor, "wanted": self.wanted,
            "reason": list(self.reason), "engaged": self.engaged,
            "pending": self.pending.command if self.pending else None,
            "reported": self.reported, "reported_t": self.reported_t, "fire": self.fire,
            "normal_since_fire": self.normal_since_fire,
        }  # fmt: skip


@dataclass
class Actuators:
    """The site's door locks and elevator holds and what the engine wants of them."""

    site: Site
    rules: ActuatorRules | None = None
    targets: dict[str, Target] = field(init=False)
    _floors: dict[int, set[str | None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = self.site.rules.actuators
        self.targets = {t.id: t for t in elevator_landings(self.site)}
        for d in self.site.doors:
            if d.kind == "exit" and d.lockable:
                self.targets[d.id] = Target("door", d.id, d.floor)

    @property
    def params(self) -> ActuatorRules:
        assert self.rules is not None
        return self.rules

    def target(self, target_id: str) -> Target:
        try:
            return self.targets[target_id]
        except KeyError:
            known = ", ".join(sorted(self.targets)) or "none"
            raise ActuatorError(f"unknown actuator {target_id!r} (known: {known})") from None

    # -- alarms -> commands --------------------------------------------------------------------
    def update(
        self, now: float, active_alarms: Iterable[Alarm], *, signed_out: Collection[str] = ()
    ) -> list[Command]:
        """Commands due at ``now`` for the open alarms (any order; closed ones are ignored).

        ``signed_out``: infant tags signed out with their escort: their exit alarms no longer
        hold the doors (their tamper alarms still do)."""
        needs: dict[str, set[int]] = {t: set() for t in self.targets}
        seen: set[int] = set()
        for a in active_alarms:
            if not a.open or a.type not in LOCKING:
                continue
            if a.type is AlarmType.EXIT and a.subject in signed_out:
                continue
            seen.add(a.id)
            floors = self._floors.setdefault(a.id, set())
            floors.add(None if a.type is AlarmType.CODE_PINK else a.location.floor)
            for t in self.targets.values():
                if None in floors or t.floor in floors:
                    needs[t.id].add(a.id)
        for gone in set(self._floors) - seen:
            del self._floors[gone]
        out: list[Command] = []
        for t in self.targets.values():
            ids = tuple(sorted(needs[t.id]))
            t.wanted = bool(ids)
            if ids:
                t.reason = ids
            out += self._drive(t, now)
        return out

    def _drive(self, t: Target, now: float) -> list[Command]:
        """The command ``t`` needs now: a change of what is wanted, or a resend."""
        if t.wanted and not t.engaged and not t.fire:
            return [self._send(t, ENGAGE[t.kind], now)]
        if not t.wanted and t.engaged:
            return [self._send(t, RELEASE[t.kind], now)]
        if t.pending is not None and now >= t.next_send - 1e-9:
            if t.fire and t.pending.command == ENGAGE[t.kind]:
                t.pending = None  # never push a lock at a door in fire release
                return []
            return [self._send(t, t.pending.command, now, t.pending.attempt + 1)]
        return []

    def _send(self, t: Target, verb: Verb, now: float, attempt: int = 1) -> Command:
        engage = verb == ENGAGE[t.kind]
        cmd = Command(t.kind, t.id, verb, t.reason, now, attempt,
                      t.floor if t.kind == "elevator" else None)  # fmt: skip
        t.engaged = engage
        if not engage and attempt == 1:
            t.reason = ()
        p = self.params
        t.wait = p.confirm_timeout_s if attempt == 1 else min(2.0 * t.wait, p.max_backoff_s)
        t.pending, t.next_send = cmd, now + t.wait
        return cmd

    # -- what the controllers say ----------------------------------------------------------------
    def report(self, target: str, state: str, now: float) -> list[Command]:
        """Fold in a controller's state report (door: locked / unlocked / fire_release / fault;
        elevator landing: held / released / fire_service / fault). A report that contradicts
        what is wanted while nothing is pending (a controller that restarted unlocked) gets
        the wanted command again; never while in fire release."""
        t = self.target(target)
        if state not in STATES[t.kind]:
            raise ActuatorError(f"{t.kind} {target!r}: state {state!r} is not one of "
                                f"{STATES[t.kind]}")  # fmt: skip
        t.reported, t.reported_t = state, now
        if state in FIRE:
            t.fire, t.normal_since_fire, t.fire_cleared_by = True, False, None
            t.engaged = False  # the lock gave way; after the clear it is commanded afresh
            t.pending, t.next_send = None, math.inf  # no lock pushed; a release is moot
            return []
        if state == "fault":
            return []
        if t.fire:
            t.normal_since_fire = True
            return []
        if t.pending is not None:
            if CONFIRMS[t.pending.command] == state:
                t.pending, t.next_send = None, math.inf
            return []
        if t.wanted and state != CONFIRMS[ENGAGE[t.kind]]:
            return [self._send(t, ENGAGE[t.kind], now)]
        return []

    def clear_fire(self, target: str, user: str, now: float) -> list[Command]:
        """A human clears a door (or landing) after a fire release: allowed only once it has
        reported a normal state again; returns the command it then needs (a lock if an open
        alarm still wants one)."""
        t = self.target(target)
        if not t.fire:
            raise ActuatorError(f"{t.kind} {target!r} is not in fire release")
        if not t.normal_since_fire:
            raise ActuatorError(
                f"{t.kind} {target!r} still reports {t.reported}: clear it after the fire "
                "panel has reset and the controller reports a normal state"
            )
        t.fire, t.normal_since_fire, t.fire_cleared_by = False, False, user
        return self._drive(t, now)

    def state(self) -> dict[str, dict[str, Any]]:
        """Every target's state, JSON-able (for the console and the store)."""
        return {k: t.as_dict() for k, t in self.targets.items()}


def elevator_landings(site: Site) -> list[Target]:
    """Hold targets: each elevator connector at each floor it serves (``<connector>.<floor>``),
    and each elevator zone holding no elevator connector's point (``<zone>.<floor>``)."""
    out = [Target("elevator", f"{c.id}.{f}", f)
           for c in site.connectors if c.kind == "elevator" for f in c.points]  # fmt: skip
    served = {(f, p) for c in site.connectors if c.kind == "elevator" for f, p in c.points.items()}
    for z in site.zones:
        if z.kind is not ZoneKind.ELEVATOR:
            continue
        has = any(f == z.floor and geometry.points_in_polygon([p], z.polygon)[0]
                  for f, p in served)  # fmt: skip
        if not has:
            out.append(Target("elevator", f"{z.id}.{z.floor}", z.floor))
    return out
