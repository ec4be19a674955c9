"""The site model: one human-editable TOML file describes a site (docs/site-file.md).

``load_site(path)`` parses and validates everything and returns a :class:`Site`; any problem
raises :class:`rtls.errors.SiteError` whose message names the file, line, entry and what is wrong.
The engine and both simulators share this model.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from rtls import geometry
from rtls.errors import SiteError
from rtls.rules import RuleParams

SITE_FORMAT = 1
EXAMPLE_SITE = Path(__file__).parent / "sites" / "example.toml"

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Point2 = tuple[float, float]
Point3 = tuple[float, float, float]


class TagKind(StrEnum):
    """What a tag is worn by; values are the names used in the site file."""

    INFANT = "infant"
    MOTHER = "mother"
    STAFF = "staff"
    REFERENCE = "reference"


class ZoneKind(StrEnum):
    """Zone kinds. ``exit`` zones arm exit alarms; ``secure_perimeter`` bounds a protected ward."""

    ROOM = "room"
    CORRIDOR = "corridor"
    SECURE_PERIMETER = "secure_perimeter"
    EXIT = "exit"
    RESTRICTED = "restricted"
    STAIRS = "stairs"
    ELEVATOR = "elevator"
    PUBLIC = "public"


class GatewayFormat(StrEnum):
    """How a gateway publishes (docs/gateway-formats.md)."""

    NATIVE = "native"
    ESPRESENSE = "espresense"
    OMG = "omg"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SiteInfo(_Model):
    """The ``[site]`` table."""

    id: Ident
    name: str = Field(min_length=1)
    timezone: str = "UTC"


class RadioDefaults(_Model):
    """The ``[radio]`` table: defaults for gateways without their own calibration."""

    rssi_at_1m: float = Field(default=-59.0, ge=-110.0, le=0.0)
    path_loss_exponent: float = Field(default=2.5, ge=1.0, le=6.0)
    shadowing_db: float = Field(default=4.0, ge=0.0, le=20.0)
    wall_loss_db: float = Field(default=5.0, ge=0.0, le=40.0)
    floor_loss_db: float = Field(default=18.0, ge=0.0, le=60.0)
    sensitivity_dbm: float = Field(default=-95.0, ge=-130.0, le=-40.0)


def _polygon(points: Sequence[Point2], what: str) -> Sequence[Point2]:
    if len(points) < 3:
        raise ValueError(f"{what} needs at least 3 points, got {len(points)}")
    arr = np.asarray(points, dtype=float)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has a non-finite coordinate")
    if abs(geometry.polygon_area(arr)) < 1e-6:
        raise ValueError(f"{what} has zero area")
    if not geometry.is_simple_polygon(arr):
        raise ValueError(f"{what} crosses itself")
    return points


class Floor(_Model):
    """A ``[[floors]]`` entry. Coordinates are metres in the floor plane."""

    id: Ident
    name: str = Field(min_length=1)
    elevation: float = Field(ge=-100.0, le=1000.0)
    height: float = Field(default=3.0, gt=1.5, le=20.0)
    outline: list[Point2]
    plan: str | None = None

    @field_validator("outline")
    @classmethod
    def _outline(cls, v: list[Point2]) -> list[Point2]:
        _polygon(v, "outline")
        return v


class Wall(_Model):
    """A ``[[walls]]`` entry: a polyline on one floor; doors are gaps between walls."""

    id: Ident
    floor: Ident
    points: list[Point2] = Field(min_length=2)
    loss_db: float | None = Field(default=None, ge=0.0, le=60.0)
    material: str | None = None


class Door(_Model):
    """A ``[[doors]]`` entry: a door opening (a segment) on one floor."""

    id: Ident
    floor: Ident
    name: str | None = None
    kind: Literal["exit", "room", "stairs", "elevator", "internal"] = "room"
    points: tuple[Point2, Point2]
    lockable: bool = False


class DoorReader(_Model):
    """A ``[[door_readers]]`` entry: a choke-point reader at a door."""

    id: Ident
    door: Ident
    position: Point3 | None = None
    range_m: float = Field(default=1.5, gt=0.1, le=5.0)


class Gateway(_Model):
    """A ``[[gateways]]`` entry; ``position`` z is height above the floor, in metres."""

    id: Ident
    floor: Ident
    position: Point3
    format: GatewayFormat = GatewayFormat.NATIVE
    rssi_at_1m: float | None = Field(default=None, ge=-110.0, le=0.0)
    path_loss_exponent: float | None = Field(default=None, ge=1.0, le=6.0)


class Zone(_Model):
    """A ``[[zones]]`` entry: a polygon on one floor with a kind and optional rule overrides."""

    id: Ident
    name: str | None = None
    floor: Ident
    kind: ZoneKind
    polygon: list[Point2]
    rules: dict[str, float] = Field(default_factory=dict)

    @field_validator("polygon")
    @classmethod
    def _poly(cls, v: list[Point2]) -> list[Point2]:
        _polygon(v, "polygon")
        return v


class Connector(_Model):
    """A ``[[connectors]]`` entry: stairs or an elevator joining floors at given points."""

    id: Ident
    kind: Literal["stairs", "elevator"]
    points: dict[Ident, Point2] = Field(min_length=2)


class Tag(_Model):
    """A ``[[tags]]`` entry. ``serial`` is the number the tag advertises (u32)."""

    id: Ident
    kind: TagKind
    serial: int = Field(ge=1, le=0xFFFF_FFFF)
    name: str | None = None
    home: Ident | None = None
    position: Point3 | None = None
    interval_s: float | None = Field(default=None, ge=0.1, le=25.5)
    rssi_at_1m: float | None = Field(default=None, ge=-110.0, le=0.0)


class SecurityParams(_Model):
    """The ``[security]`` table: tag authentication (docs/tag-auth.md)."""

    require_tag_auth: bool = False  # tags without a provisioned key are rejected
    repeat_window_s: float = Field(default=2.0, ge=0.1, le=30.0)  # same counter accepted again
    accept_unverifiable: bool = False  # keep keyed tags' observations that carry no body
    provision_at_admission: bool = False  # admit / pair generate the tag's key
    spoofing_clear_s: float = Field(default=60.0, ge=1.0, le=86400.0)


class SiteFile(_Model):
    """The whole file as written (schema only; cross-references are checked by ``Site``)."""

    format: int = SITE_FORMAT
    site: SiteInfo
    radio: RadioDefaults = Field(default_factory=RadioDefaults)
    rules: RuleParams = Field(default_factory=RuleParams)
    security: SecurityParams = Field(default_factory=SecurityParams)
    floors: list[Floor] = Field(min_length=1)
    walls: list[Wall] = Field(default_factory=list)
    doors: list[Door] = Field(default_factory=list)
    door_readers: list[DoorReader] = Field(default_factory=list)
    gateways: list[Gateway] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    connectors: list[Connector] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)


@dataclass(frozen=True)
class GatewayArrays:
    """Gateways as arrays (G = number of gateways), in site-file order."""

    ids: tuple[str, ...]
    xyz: NDArray[np.float64]  # (G, 3) absolute: z includes the floor elevation
    floor: NDArray[np.int64]  # (G,) index into Site.floors
    rssi_at_1m: NDArray[np.float64]  # (G,)
    path_loss_exponent: NDArray[np.float64]  # (G,)


class Site:
    """A validated site. Build with :func:`load_site` or :meth:`from_mapping`."""

    def __init__(self, model: SiteFile, source: Path | None = None) -> None:
        self.model = model
        self.source = source

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], source: Path | None = None, text: str | None = None
    ) -> Site:
        """Validate a parsed mapping; errors name the entry (and line when ``text`` is given)."""
        where = _Locator(source, text)
        try:
            model = SiteFile.model_validate(data)
        except ValidationError as exc:
            raise SiteError(where.describe_validation(exc, data)) from exc
        problems = list(_cross_check(model))
        if problems:
            lines = [
                where.entry(section, index, model_id, msg)
                for section, index, model_id, msg in problems
            ]
            raise SiteError(_summary(source, lines))
        return cls(model, source)

    # -- plain accessors ------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.model.site.id

    @property
    def name(self) -> str:
        return self.model.site.name

    @property
    def floors(self) -> list[Floor]:
        return self.model.floors

    @property
    def gateways(self) -> list[Gateway]:
        return self.model.gateways

    @property
    def zones(self) -> list[Zone]:
        return self.model.zones

    @property
    def tags(self) -> list[Tag]:
        return self.model.tags

    @property
    def doors(self) -> list[Door]:
        return self.model.doors

    @property
    def door_readers(self) -> list[DoorReader]:
        return self.model.door_readers

    @property
    def connectors(self) -> list[Connector]:
        return self.model.connectors

    @property
    def radio(self) -> RadioDefaults:
        return self.model.radio

    @property
    def rules(self) -> RuleParams:
        return self.model.rules

    @property
    def security(self) -> SecurityParams:
        return self.model.security

    @cached_property
    def floor_index(self) -> dict[str, int]:
        return {f.id: i for i, f in enumerate(self.model.floors)}

    def floor(self, floor_id: str) -> Floor:
        return self.model.floors[self.floor_index[floor_id]]

    def tag(self, tag_id: str) -> Tag:
        return self._tags_by_id[tag_id]

    def zone(self, zone_id: str) -> Zone:
        return self._zones_by_id[zone_id]

    def gateway(self, gateway_id: str) -> Gateway:
        return self._gateways_by_id[gateway_id]

    def door(self, door_id: str) -> Door:
        return self._doors_by_id[door_id]

    @cached_property
    def _tags_by_id(self) -> dict[str, Tag]:
        return {t.id: t for t in self.model.tags}

    @cached_property
    def _zones_by_id(self) -> dict[str, Zone]:
        return {z.id: z for z in self.model.zones}

    @cached_property
    def _gateways_by_id(self) -> dict[str, Gateway]:
        return {g.id: g for g in self.model.gateways}

    @cached_property
    def _doors_by_id(self) -> dict[str, Door]:
        return {d.id: d for d in self.model.doors}

    @cached_property
    def tags_by_serial(self) -> dict[int, Tag]:
        return {t.serial: t for t in self.model.tags}

    # -- arrays for the numeric code --------------------------------------------------------
    @cached_property
    def gateway_arrays(self) -> GatewayArrays:
        g = self.model.gateways
        radio = self.model.radio
        xyz = np.array([gw.position for gw in g], dtype=np.float64).reshape(-1, 3)
        floor = np.array([self.floor_index[gw.floor] for gw in g], dtype=np.int64)
        if len(g):
            xyz[:, 2] += np.array([self.model.floors[i].elevation for i in floor])
        p0 = np.array(
            [radio.rssi_at_1m if gw.rssi_at_1m is None else gw.rssi_at_1m for gw in g], dtype=float
        )
        n = np.array(
            [
                radio.path_loss_exponent if gw.path_loss_exponent is None else gw.path_loss_exponent
                for gw in g
            ],
            dtype=float,
        )
        return GatewayArrays(tuple(gw.id for gw in g), xyz, floor, p0, n)

    def walls_of(self, floor_id: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Wall segments (W, 4) ``x1, y1, x2, y2`` and their losses (W,) in dB on one floor."""
        segs: list[NDArray[np.float64]] = []
        losses: list[NDArray[np.float64]] = []
        default = self.model.radio.wall_loss_db
        for wall in self.model.walls:
            if wall.floor != floor_id:
                continue
            s = geometry.polyline_segments(wall.points)
            segs.append(s)
            losses.append(np.full(len(s), default if wall.loss_db is None else wall.loss_db))
        if not segs:
            return np.zeros((0, 4)), np.zeros(0)
        return np.vstack(segs), np.concatenate(losses)

    def zones_of(self, floor_id: str, kinds: Iterable[ZoneKind] | None = None) -> list[Zone]:
        wanted = set(kinds) if kinds is not None else None
        return [
            z
            for z in self.model.zones
            if z.floor == floor_id and (wanted is None or z.kind in wanted)
        ]

    def zones_at(self, floor_id: str, xy: Point2) -> list[Zone]:
        """Zones on ``floor_id`` containing the point ``xy`` (smallest area first)."""
        inside = [
            z for z in self.zones_of(floor_id) if geometry.points_in_polygon([xy], z.polygon)[0]
        ]
        return sorted(inside, key=lambda z: abs(geometry.polygon_area(z.polygon)))

    def reader_position(self, reader: DoorReader) -> Point3:
        """The reader's position, defaulting to the middle of its door at 2.2 m."""
        if reader.position is not None:
            return reader.position
        (x1, y1), (x2, y2) = self.door(reader.door).points
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0, 2.2)

    def tag_interval(self, tag: Tag) -> float:
        """Heartbeat (advertising) interval of a tag in seconds."""
        if tag.interval_s is not None:
            return tag.interval_s
        return self.model.rules.for_kind(tag.kind.value).heartbeat_s

    def tag_power(self, tag: Tag) -> float:
        """The tag's measured power: RSSI at 1 m in dBm."""
        return self.model.radio.rssi_at_1m if tag.rssi_at_1m is None else tag.rssi_at_1m


def load_site(path: str | Path | None = None) -> Site:
    """Load and validate a site file (default: the shipped example site)."""
    p = Path(path) if path is not None else EXAMPLE_SITE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(f"{p}: cannot read site file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{p}: not valid TOML: {exc}") from exc
    return Site.from_mapping(data, source=p, text=text)


# -- validation across entries -------------------------------------------------------------

Problem = tuple[str, int | None, str | None, str]  # section, index, entry id, message


def _cross_check(m: SiteFile) -> Iterable[Problem]:
    if m.format != SITE_FORMAT:
        yield (
            "format",
            None,
            None,
            f"unsupported site format {m.format} (this rtls reads format {SITE_FORMAT})",
        )
    sections: list[tuple[str, Sequence[Any]]] = [
        ("floors", m.floors), ("walls", m.walls), ("doors", m.doors),
        ("door_readers", m.door_readers), ("gateways", m.gateways), ("zones", m.zones),
        ("connectors", m.connectors), ("tags", m.tags),
    ]  # fmt: skip
    for name, items in sections:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.id in seen:
                yield (name, i, item.id, f"duplicate id (also {name}[{seen[item.id]}])")
            seen[item.id] = i
    floors = {f.id: f for f in m.floors}
    floor_list = ", ".join(floors)

    def floor_ref(section: str, i: int, item_id: str, fid: str) -> Iterable[Problem]:
        if fid not in floors:
            yield (section, i, item_id, f"floor {fid!r} is not defined (floors: {floor_list})")

    def inside(fid: str, pts: Sequence[Point2], slack: float = 0.05) -> bool:
        outline = np.asarray(floors[fid].outline, dtype=float)
        lo, hi = outline.min(axis=0) - slack, outline.max(axis=0) + slack
        arr = np.asarray(pts, dtype=float).reshape(-1, 2)
        return bool(((arr >= lo) & (arr <= hi)).all())

    for i, w in enumerate(m.walls):
        yield from floor_ref("walls", i, w.id, w.floor)
        if w.floor in floors and not inside(w.floor, w.points):
            yield ("walls", i, w.id, "runs outside the floor outline")
    doors = {d.id: d for d in m.doors}
    for i, d in enumerate(m.doors):
        yield from floor_ref("doors", i, d.id, d.floor)
        (x1, y1), (x2, y2) = d.points
        if np.hypot(x2 - x1, y2 - y1) < 0.5:
            yield ("doors", i, d.id, "door opening is narrower than 0.5 m")
    for i, r in enumerate(m.door_readers):
        if r.door not in doors:
            yield ("door_readers", i, r.id, f"door {r.door!r} is not defined")
        elif r.position is not None:
            (x1, y1), (x2, y2) = doors[r.door].points
            mid = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            if np.hypot(*(np.array(r.position[:2]) - mid)) > 3.0:
                yield ("door_readers", i, r.id, f"is more than 3 m from door {r.door!r}")
    for i, g in enumerate(m.gateways):
        yield from floor_ref("gateways", i, g.id, g.floor)
        if g.floor in floors:
            f = floors[g.floor]
            if not geometry.points_in_polygon([g.position[:2]], f.outline)[0]:
                yield (
                    "gateways",
                    i,
                    g.id,
                    f"position {g.position[:2]} is outside floor {f.id!r}'s outline",
                )
            if not 0.0 <= g.position[2] <= f.height + 0.5:
                yield (
                    "gateways",
                    i,
                    g.id,
                    f"height z={g.position[2]} m is not between the floor "
                    f"(0) and its ceiling ({f.height} m)",
                )
    zone_ids = {z.id for z in m.zones}
    for i, z in enumerate(m.zones):
        yield from floor_ref("zones", i, z.id, z.floor)
        if z.floor in floors and not inside(z.floor, z.polygon):
            yield ("zones", i, z.id, "polygon extends outside the floor outline")
        for key in z.rules:
            if key not in RuleParams.zone_override_keys():
                allowed = ", ".join(sorted(RuleParams.zone_override_keys()))
                yield ("zones", i, z.id, f"unknown rule override {key!r} (allowed: {allowed})")
    for i, c in enumerate(m.connectors):
        for fid, pt in c.points.items():
            yield from floor_ref("connectors", i, c.id, fid)
            if fid in floors and not geometry.points_in_polygon([pt], floors[fid].outline)[0]:
                yield ("connectors", i, c.id, f"point on floor {fid!r} is outside its outline")
    serials: dict[int, str] = {}
    for i, t in enumerate(m.tags):
        if t.serial in serials:
            yield (
                "tags",
                i,
                t.id,
                f"serial {t.serial} is already used by tag {serials[t.serial]!r}",
            )
        serials[t.serial] = t.id
        if t.home is not None and t.home not in zone_ids:
            yield ("tags", i, t.id, f"home zone {t.home!r} is not defined")
        if t.kind is TagKind.REFERENCE and t.position is None:
            yield ("tags", i, t.id, "a reference tag needs a fixed position [x, y, z]")
        if t.position is not None and t.home is None:
            yield (
                "tags",
                i,
                t.id,
                "a tag with a fixed position needs its home zone (for the floor)",
            )


# -- error messages that name the entry -----------------------------------------------------


class _Locator:
    """Turns (section, index) into ``file:line: section[i] (id 'X')``."""

    def __init__(self, source: Path | None, text: str | None) -> None:
        self.source = source
        self.headers: dict[str, list[int]] = {}
        if text is not None:
            for lineno, line in enumerate(text.splitlines(), start=1):
                mt = re.match(r"^\s*\[\[\s*([A-Za-z0-9_]+)\s*\]\]", line)
                if mt:
                    self.headers.setdefault(mt.group(1), []).append(lineno)

    def line(self, section: str, index: int | None) -> int | None:
        rows = self.headers.get(section)
        if index is None or rows is None or index >= len(rows):
            return None
        return rows[index]

    def entry(self, section: str, index: int | None, item_id: str | None, msg: str) -> str:
        lineno = self.line(section, index)
        where = f"line {lineno}: " if lineno else ""
        name = section if index is None else f"{section}[{index}]"
        ident = f" (id {item_id!r})" if item_id else ""
        return f"{where}{name}{ident}: {msg}"

    def describe_validation(self, exc: ValidationError, data: dict[str, Any]) -> str:
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            section = str(loc[0]) if loc else "site"
            index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            item_id = None
            if index is not None:
                items = data.get(section)
                if (
                    isinstance(items, list)
                    and index < len(items)
                    and isinstance(items[index], dict)
                ):
                    raw = items[index].get("id")
                    item_id = str(raw) if raw is not None else None
            rest = loc[2:] if index is not None else loc[1:]
            field = ".".join(str(p) for p in rest)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (misspelt?)"
            lines.append(
                self.entry(section, index, item_id, f"{field + ': ' if field else ''}{msg}")
            )
        return _summary(self.source, lines)


def _summary(source: Path | None, lines: list[str]) -> str:
    head = f"{source}: " if source else ""
    if len(lines) == 1:
        return f"{head}{lines[0]}"
    return f"{head}{len(lines)} problems:\n  " + "\n  ".join(lines)
