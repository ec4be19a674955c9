"""Scenario files: a scripted timeline played against a site (docs/scenarios.md).

``load_scenario(path)`` parses and validates a TOML scenario against its site and returns a
:class:`Scenario`; problems raise :class:`rtls.errors.ScenarioError` naming the event.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from rtls.errors import ScenarioError, SiteError
from rtls.site import EXAMPLE_SITE, Site, TagKind, load_site

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

FALL_KINDS = ("forward", "backward", "sideways", "slump", "collapse")

# action -> (required fields, subject kinds allowed: None = any tag or actor)
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "walk": (("who", "to"), None),
    "path": (("who", "waypoints"), None),
    "place": (("who", "to"), None),
    "carry": (("who", "tag", "to"), None),
    "put_down": (("tag",), ("infant",)),
    "fall": (("who",), ("staff",)),
    "lie_down": (("who",), ("staff",)),
    "sit_down": (("who",), ("staff",)),
    "sit_down_hard": (("who",), ("staff",)),
    "bend": (("who",), ("staff",)),
    "get_up": (("who",), ("staff",)),
    "sos": (("who",), ("staff",)),
    "pull_cord": (("who",), ("staff",)),
    "cancel": (("who",), ("staff",)),
    "tamper": (("tag",), ("infant", "mother")),
    "strap_restore": (("tag",), ("infant", "mother")),
    "skin_contact": (("tag", "value"), ("infant",)),
    "battery": (("tag", "percent"), None),
    "tag_silent": (("tag",), None),
    "tag_resume": (("tag",), None),
    "gateway_power": (("gateway", "value"), None),
    "gateway_reboot": (("gateway", "duration_s"), None),
    "reader_power": (("reader", "value"), None),
    # an attacker's device carried by actor ``who`` (docs/tag-auth.md, gateways/attacker.py)
    "replay": (("who", "tag"), None),
    "clone": (("who", "tag"), None),
}
ATTACKS = ("replay", "clone")

Action = Literal[
    "walk", "path", "place", "carry", "put_down", "fall", "lie_down", "sit_down",
    "sit_down_hard", "bend", "get_up", "sos", "pull_cord", "cancel", "tamper", "strap_restore",
    "skin_contact", "battery", "tag_silent", "tag_resume", "gateway_power", "gateway_reboot",
    "reader_power", "replay", "clone",
]  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Target(_Model):
    """Where to go: a zone, a door, a tag's current position, or a point on a floor."""

    zone: Ident | None = None
    door: Ident | None = None
    tag: Ident | None = None
    floor: Ident | None = None
    xy: tuple[float, float] | None = None


class ScenarioInfo(_Model):
    """The ``[scenario]`` table."""

    name: str = Field(min_length=1)
    description: str = ""
    site: str = "example"
    seed: int = Field(default=1, ge=0)
    duration_s: float = Field(gt=0.0, le=7 * 86400.0)
    ambient: bool = True
    start: datetime | None = None
    truth_interval_s: float = Field(default=1.0, gt=0.0, le=60.0)


class Actor(_Model):
    """An ``[[actors]]`` entry: a person without a tag (visitor, abductor, carrier)."""

    id: Ident
    name: str | None = None
    start: Target
    speed: float = Field(default=1.3, gt=0.1, le=4.0)


class Event(_Model):
    """An ``[[events]]`` entry. Fields beyond ``at_s`` and ``action`` depend on the action."""

    at_s: float = Field(ge=0.0)
    action: Action
    who: Ident | None = None
    tag: Ident | None = None
    to: Target | Ident | None = None
    waypoints: list[tuple[float, float]] | None = None
    floor: Ident | None = None
    speed: float | None = Field(default=None, gt=0.1, le=6.0)
    kind: Literal["forward", "backward", "sideways", "slump", "collapse", "recover"] | None = None
    duration_s: float | None = Field(default=None, gt=0.0, le=86400.0)
    value: bool | None = None
    percent: int | None = Field(default=None, ge=0, le=100)
    gateway: Ident | None = None
    reader: Ident | None = None
    note: str = ""


class ScenarioFile(_Model):
    """The whole scenario file as written."""

    scenario: ScenarioInfo
    actors: list[Actor] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario bound to its site; ``events`` are sorted by time (stable)."""

    info: ScenarioInfo
    actors: tuple[Actor, ...]
    events: tuple[Event, ...]
    site: Site
    source: Path | None

    @property
    def epoch(self) -> float:
        """Unix time of scenario t = 0 (``start``, else 2026-01-01T00:00:00Z)."""
        start = self.info.start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return start.timestamp()


def resolve_site(spec: str, base: Path | None) -> Site:
    """``example`` is the shipped example; anything else is a path (relative to ``base``)."""
    if spec == "example":
        return load_site(EXAMPLE_SITE)
    p = Path(spec)
    if not p.is_absolute() and base is not None:
        p = base / p
    return load_site(p)


def load_scenario(path: str | Path, site: Site | None = None) -> Scenario:
    """Load and validate a scenario file; ``site`` overrides the file's ``site`` entry."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from exc
    return scenario_from_mapping(data, source=p, site=site)


def scenario_from_mapping(
    data: dict[str, Any], source: Path | None = None, site: Site | None = None
) -> Scenario:
    """Validate a parsed scenario mapping (see :func:`load_scenario`)."""
    head = f"{source}: " if source else ""
    try:
        model = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(head + _describe(exc, data)) from exc
    if site is None:
        try:
            site = resolve_site(model.scenario.site, source.parent if source else None)
        except SiteError as exc:
            raise ScenarioError(f"{head}scenario.site: {exc}") from exc
    problems = list(_check(model, site))
    if problems:
        if len(problems) == 1:
            raise ScenarioError(head + problems[0])
        raise ScenarioError(f"{head}{len(problems)} problems:\n  " + "\n  ".join(problems))
    order = sorted(range(len(model.events)), key=lambda i: model.events[i].at_s)
    return Scenario(
        model.scenario,
        tuple(model.actors),
        tuple(model.events[i] for i in order),
        site,
        source,
    )


def _event_name(i: int, raw: Any) -> str:
    if isinstance(raw, dict):
        return f"events[{i}] (action {raw.get('action')!r} at {raw.get('at_s')} s)"
    return f"events[{i}]"


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "events" and isinstance(loc[1], int):
            events = data.get("events", [])
            name = _event_name(loc[1], events[loc[1]] if loc[1] < len(events) else None)
            rest = loc[2:]
        elif len(loc) >= 2 and loc[0] == "actors" and isinstance(loc[1], int):
            name, rest = f"actors[{loc[1]}]", loc[2:]
        else:
            name, rest = str(loc[0]) if loc else "scenario", loc[1:]
        field = ".".join(str(x) for x in rest if not str(x).startswith(("Target", "str")))
        msg = "unknown key (misspelt?)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{name}: {field + ': ' if field else ''}{msg}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n  " + "\n  ".join(lines)


def _check(model: ScenarioFile, site: Site) -> Iterable[str]:
    tags = {t.id: t for t in site.tags}
    actors = {a.id for a in model.actors}
    zones = {z.id for z in site.zones}
    doors = {d.id for d in site.doors}
    floors = set(site.floor_index)
    gateways = {g.id for g in site.gateways}
    readers = {r.id for r in site.door_readers}

    def target_problems(t: Target | str | None, name: str) -> Iterable[str]:
        if t is None:
            return
        if isinstance(t, str):
            if t not in zones and t not in doors and t not in tags:
                yield f"{name}: 'to' {t!r} is neither a zone, a door nor a tag of the site"
            return
        set_fields = [f for f in ("zone", "door", "tag", "xy") if getattr(t, f) is not None]
        if len(set_fields) != 1:
            yield f"{name}: give exactly one of zone, door, tag or xy (got {set_fields or 'none'})"
        if t.zone is not None and t.zone not in zones:
            yield f"{name}: zone {t.zone!r} is not defined in the site"
        if t.door is not None and t.door not in doors:
            yield f"{name}: door {t.door!r} is not defined in the site"
        if t.tag is not None and t.tag not in tags:
            yield f"{name}: tag {t.tag!r} is not defined in the site"
        if t.xy is not None and t.floor is None:
            yield f"{name}: a point xy needs its floor"
        if t.floor is not None and t.floor not in floors:
            yield f"{name}: floor {t.floor!r} is not defined in the site"

    seen: set[str] = set()
    for i, a in enumerate(model.actors):
        name = f"actors[{i}] (id {a.id!r})"
        if a.id in seen:
            yield f"{name}: duplicate actor id"
        if a.id in tags:
            yield f"{name}: id is also a tag id; an actor is a person without a tag"
        seen.add(a.id)
        yield from target_problems(a.start, name)
        if a.start.tag is not None:
            yield f"{name}: an actor starts at a zone, a door or a point, not at a tag"

    for i, ev in enumerate(model.events):
        name = f"events[{i}] (action {ev.action!r} at {ev.at_s:g} s)"
        if ev.at_s > model.scenario.duration_s:
            yield f"{name}: at_s is after the end of the scenario ({model.scenario.duration_s} s)"
        required, kinds = ACTIONS[ev.action]
        for field in required:
            if getattr(ev, field) is None:
                yield f"{name}: needs {field!r}"
        if ev.who is not None:
            if ev.who in tags:
                kind = tags[ev.who].kind
                if kind is TagKind.REFERENCE:
                    yield f"{name}: reference tag {ev.who!r} is fixed and cannot move"
                if kinds is not None and "who" in required and kind.value not in kinds:
                    yield f"{name}: {ev.who!r} is a {kind.value} tag; {ev.action!r} needs " + (
                        " or ".join(kinds)
                    )
            elif ev.who in actors:
                if kinds is not None and "who" in required:
                    yield f"{name}: {ev.who!r} is an actor without a tag; {ev.action!r} needs a tag"
            else:
                yield f"{name}: who {ev.who!r} is neither a tag of the site nor an actor"
        if ev.action in ATTACKS and ev.who is not None and ev.who not in actors:
            yield f"{name}: the attacker 'who' must be an actor (a person without a tag)"
        if ev.tag is not None:
            if ev.tag not in tags:
                yield f"{name}: tag {ev.tag!r} is not defined in the site"
            elif kinds is not None and "tag" in required and tags[ev.tag].kind.value not in kinds:
                yield (
                    f"{name}: tag {ev.tag!r} is a {tags[ev.tag].kind.value} tag; {ev.action!r} "
                    + ("needs " + " or ".join(kinds))
                )
        if ev.action == "carry" and ev.tag in tags and tags[ev.tag].kind is not TagKind.INFANT:
            yield f"{name}: only infants are carried (tag {ev.tag!r} is {tags[ev.tag].kind.value})"
        yield from target_problems(ev.to, name)
        if ev.waypoints is not None:
            if len(ev.waypoints) < 1:
                yield f"{name}: waypoints is empty"
            if ev.floor is not None and ev.floor not in floors:
                yield f"{name}: floor {ev.floor!r} is not defined in the site"
        if ev.gateway is not None and ev.gateway not in gateways:
            yield f"{name}: gateway {ev.gateway!r} is not defined in the site"
        if ev.reader is not None and ev.reader not in readers:
            yield f"{name}: door reader {ev.reader!r} is not defined in the site"
