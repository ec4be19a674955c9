"""Where the people of a simulated ward are and where they go.

:class:`Ward` places every tag at the start (babies in cots in their home room, adults in their
home zone, reference tags at their surveyed spot), turns scenario movements into trajectories
(walk, scripted path, carry, put down) and, when the scenario asks for ambient life, sends
mothers and staff between rooms with seeded dwell times. Paths come from
:mod:`firmware_sim.navigation`, so nobody walks through a wall.
"""

from __future__ import annotations

import heapq

import numpy as np
from firmware_sim.motion import BADGE_Z, COT_Z, MotionTable, Trajectory
from firmware_sim.navigation import Building, Connector, NavGrid, NoPathError

from gateways.scenario import Event, Target
from rtls import geometry
from rtls.errors import RtlsError
from rtls.site import Site, Tag, TagKind, Zone, ZoneKind

AMBIENT_KINDS = (ZoneKind.ROOM, ZoneKind.CORRIDOR)
PICKUP_S = 4.0  # time to lift a baby from the cot
STAFF_DWELL_S = (30.0, 180.0)
MOTHER_DWELL_S = (60.0, 600.0)
MOTHER_OUTING_P = 0.3


class Ward:
    """Placement, scripted movement and ambient life for the tags and actors of a site."""

    def __init__(self, site: Site, rng: np.random.Generator, *, ambient: bool = True) -> None:
        self.site = site
        self.rng = rng
        self.ambient = ambient
        self.speed: dict[str, float] = {}
        grids = {}
        for i, floor in enumerate(site.floors):
            segs, _ = site.walls_of(floor.id)
            grids[i] = NavGrid.build(
                np.asarray(floor.outline, dtype=float), segs, resolution=0.25, clearance=0.3
            )
        connectors = [
            Connector(c.id, c.kind, {site.floor_index[f]: xy for f, xy in c.points.items()})
            for c in site.connectors
        ]
        self.building = Building(grids, connectors)
        self.motion: MotionTable | None = None
        self._scripted: set[str] = set()
        self._agenda: list[tuple[float, int, str]] = []  # (time, tiebreak, who)
        self._tick = 0

    # -- placement ---------------------------------------------------------------------------
    def random_point(self, zone: Zone) -> tuple[float, float]:
        """A walkable point inside ``zone`` drawn from the ward's generator."""
        grid = self.building.floors[self.site.floor_index[zone.floor]]
        poly = np.asarray(zone.polygon, dtype=float)
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        cand = self.rng.uniform(lo, hi, size=(64, 2))
        ok = geometry.points_in_polygon(cand, poly) & grid.is_walkable(cand)
        if ok.any():
            p = cand[int(np.argmax(ok))]
            return float(p[0]), float(p[1])
        c = geometry.polygon_centroid(poly)
        return float(c[0]), float(c[1])

    def initial_trajectory(self, tag: Tag) -> Trajectory:
        """Where ``tag`` is at t = 0; babies lie in a cot, adults stand in their home zone."""
        if tag.position is not None:
            floor = self._floor_of(tag)
            return Trajectory.still(tag.position[:2], floor, 0.0, z=tag.position[2])
        floor = self._floor_of(tag)
        xy = self.random_point(self.site.zone(tag.home)) if tag.home else (1.0, 1.0)
        z = COT_Z if tag.kind is TagKind.INFANT else BADGE_Z
        if self.ambient and tag.kind in (TagKind.MOTHER, TagKind.STAFF):
            lo, hi = STAFF_DWELL_S if tag.kind is TagKind.STAFF else MOTHER_DWELL_S
            self._schedule(float(self.rng.uniform(0.0, hi - lo)), tag.id)
        return Trajectory.still(xy, floor, 0.0, z=z)

    def _floor_of(self, tag: Tag) -> int:
        if tag.home is None:
            return 0
        return self.site.floor_index[self.site.zone(tag.home).floor]

    def attach(self, motion: MotionTable) -> None:
        self.motion = motion

    # -- targets -----------------------------------------------------------------------------
    def resolve(self, target: Target | str, who: str | None, t: float) -> tuple[int, np.ndarray]:
        """A scenario target as (floor index, xy (2,))."""
        site = self.site
        if isinstance(target, str):
            ids = {z.id for z in site.zones}
            if target in ids:
                target = Target(zone=target)
            elif target in {d.id for d in site.doors}:
                target = Target(door=target)
            else:
                target = Target(tag=target)
        if target.zone is not None:
            zone = site.zone(target.zone)
            return site.floor_index[zone.floor], np.asarray(self.random_point(zone))
        if target.door is not None:
            door = site.door(target.door)
            (x1, y1), (x2, y2) = door.points
            return site.floor_index[door.floor], np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        if target.tag is not None:
            state = self._motion().state(target.tag, t)
            return int(state.floor), np.asarray(state.xyz[:2], dtype=float)
        assert target.xy is not None and target.floor is not None
        return site.floor_index[target.floor], np.asarray(target.xy, dtype=float)

    # -- scenario movement -------------------------------------------------------------------
    def move(self, ev: Event, t: float) -> None:
        """Apply a walk, place, path, carry or put_down event at time ``t``."""
        motion = self._motion()
        if ev.action == "put_down":
            motion.put_down(str(ev.tag), t)
            return
        who = str(ev.who)
        self._scripted.add(who)
        speed = ev.speed or self.speed.get(who, 1.2)
        here = motion.state(who, t)
        start = Trajectory.still(here.xyz[:2], int(here.floor), t, z=float(here.xyz[2]))
        if ev.action == "place":
            assert ev.to is not None
            floor, xy = self.resolve(ev.to, who, t)
            motion.replan(who, t, Trajectory.still(xy, floor, t, z=float(here.xyz[2])),
                          allow_jump=True)  # fmt: skip
        elif ev.action == "path":
            assert ev.waypoints is not None
            motion.replan(who, t, start.walk(ev.waypoints, speed))
        elif ev.action == "walk":
            assert ev.to is not None
            floor, xy = self.resolve(ev.to, who, t)
            if ev.to == ev.tag or (isinstance(ev.to, Target) and ev.to.tag is not None):
                xy = xy + np.array([0.6, 0.0])  # stand next to the tag's wearer, not on it
            motion.replan(who, t, self._plan(start, floor, xy, speed, who))
        elif ev.action == "carry":
            assert ev.to is not None and ev.tag is not None
            baby = motion.state(ev.tag, t)
            to_baby = self._plan(start, int(baby.floor), baby.xyz[:2] + np.array([0.4, 0.0]),
                                 speed, who)  # fmt: skip
            pick = to_baby.dwell(PICKUP_S)
            t_pick = to_baby.end_time + PICKUP_S / 2
            floor, xy = self.resolve(ev.to, who, t)
            motion.replan(who, t, self._plan(pick, floor, xy, speed, who))
            motion.carry(ev.tag, who, t_pick)

    def hold(self, who: str, t: float, z: float) -> None:
        """``who`` stops where they are at ``t`` (fall, lying down, sitting) at tag height z."""
        motion = self._motion()
        self._scripted.add(who)
        here = motion.state(who, t)
        plan = Trajectory.still(here.xyz[:2], int(here.floor), t, z=float(here.xyz[2]))
        motion.replan(who, t, plan.to_height(z, 1.0))

    def _plan(
        self, start: Trajectory, floor: int, xy: np.ndarray, speed: float, who: str
    ) -> Trajectory:
        try:
            return start.walk_to(self.building, xy, speed, goal_floor=floor)
        except NoPathError as exc:
            raise RtlsError(f"{who} cannot walk to {tuple(np.round(xy, 2))}: {exc}") from exc

    # -- ambient life ------------------------------------------------------------------------
    def _schedule(self, t: float, who: str) -> None:
        self._tick += 1
        heapq.heappush(self._agenda, (t, self._tick, who))

    def tick(self, t: float) -> None:
        """Send the people whose dwell ended by ``t`` somewhere new (ambient life)."""
        motion = self._motion() if self._agenda else None
        while self._agenda and self._agenda[0][0] <= t:
            when, _, who = heapq.heappop(self._agenda)
            if who in self._scripted or motion is None:
                continue
            tag = self.site.tag(who)
            here = motion.state(who, when)
            floor_id = self.site.floors[int(here.floor)].id
            if tag.kind is TagKind.MOTHER:
                lo, hi = MOTHER_DWELL_S
                home = self.site.zone(tag.home) if tag.home else None
                at_home = (
                    home is not None and geometry.points_in_polygon([here.xyz[:2]], home.polygon)[0]
                )
                if home is not None and (not at_home or self.rng.random() > MOTHER_OUTING_P):
                    dest = home
                else:
                    dest = self._any_zone(floor_id)
            else:
                lo, hi = STAFF_DWELL_S
                dest = self._any_zone(floor_id)
            start = Trajectory.still(here.xyz[:2], int(here.floor), when, z=float(here.xyz[2]))
            try:
                plan = start.walk_to(self.building, self.random_point(dest), self.speed[who])
                motion.replan(who, when, plan)
                next_t = plan.end_time + float(self.rng.uniform(lo, hi))
            except NoPathError:
                next_t = when + lo
            self._schedule(next_t, who)

    def _any_zone(self, floor_id: str) -> Zone:
        zones = self.site.zones_of(floor_id, AMBIENT_KINDS)
        return zones[int(self.rng.integers(len(zones)))]

    def _motion(self) -> MotionTable:
        if self.motion is None:
            raise RtlsError("Ward.attach(motion) first")
        return self.motion
