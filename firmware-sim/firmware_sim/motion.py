"""Where every tag is over time: seeded, pure, piecewise-linear trajectories.

A :class:`Trajectory` is a list of knots (time, x, y, z, floor, moving); between knots the
position is interpolated linearly. ``z`` is the tag's height above its floor. ``floor`` and
``moving`` of knot k hold on the interval from knot k to knot k+1, and after the last knot the
wearer rests there (not moving). Two knots at the same time make an instantaneous step (a baby
lifted from a cot). Trajectories are immutable; builder methods return new ones.

:class:`MotionTable` holds many trajectories in flat arrays and evaluates all of them at a time
``t`` without a Python loop over tags, plus carrying (a tag following a carrier) and re-planning.
No wall clock: time is always passed in; randomness only from a caller's ``np.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from firmware_sim.navigation import Building, ConnectorKind, NavGrid, Route, Transfer
from rtls.errors import RtlsError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Tag heights above the floor (m).
COT_Z = 0.7  # bracelet of a baby lying in a cot
CARRIED_Z = 1.2  # bracelet of a baby carried in arms
BADGE_Z = 1.3  # badge or mother tag on a standing or walking adult
LYING_Z = 0.2  # tag of a person lying on the floor

# Comfortable adult gait speed is about 1.2-1.5 m/s (Bohannon 1997, Age Ageing 26:15); indoors,
# in a ward, people walk at the low end.
WALKING_SPEED = 1.2
WALKING_SPEED_SD = 0.15

_JUMP_TOL = 1e-6  # metres: a re-plan must start within this of the current position


class MotionError(RtlsError):
    """A trajectory or a motion-table operation is invalid; the message says what and where."""


class State(NamedTuple):
    """One wearer at one time: ``xyz`` (3,) with z above the floor, ``floor``, ``moving``."""

    xyz: FloatArray
    floor: int
    moving: bool


class Positions(NamedTuple):
    """Many wearers at one time: ``xyz`` (N, 3), ``floor`` (N,) int64, ``moving`` (N,) bool."""

    xyz: FloatArray
    floor: IntArray
    moving: BoolArray


def walking_speeds(
    rng: np.random.Generator,
    n: int,
    mean: float = WALKING_SPEED,
    sd: float = WALKING_SPEED_SD,
    low: float = 0.6,
    high: float = 1.8,
) -> FloatArray:
    """Per-person walking speeds (n,) in m/s: normal(mean, sd) clipped to [low, high]."""
    return np.clip(rng.normal(mean, sd, size=n), low, high)


def _evaluate(
    kt: FloatArray,
    kxyz: FloatArray,
    kfloor: IntArray,
    kmoving: BoolArray,
    k: IntArray,
    last: IntArray,
    t: FloatArray,
) -> Positions:
    """State at times ``t`` (N,) given the knot ``k`` (N,) in force (the last knot at or before
    t, or the first knot when t precedes it) and each row's ``last`` knot (N,)."""
    k1 = np.minimum(k + 1, last)
    t0 = kt[k]
    dt = kt[k1] - t0
    frac = np.clip(np.divide(t - t0, dt, out=np.zeros_like(dt), where=dt > 0), 0.0, 1.0)
    p0 = kxyz[k]
    xyz = p0 + frac[:, None] * (kxyz[k1] - p0)
    return Positions(xyz, kfloor[k].copy(), kmoving[k] & (t >= t0))


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Knots ``times`` (M,) non-decreasing, ``xyz`` (M, 3), ``floor`` (M,), ``moving`` (M,).

    Before the first knot the wearer stands at it (not moving); after the last one, rests there.
    Build with :meth:`still` or :meth:`resting`, then chain :meth:`walk`, :meth:`walk_to`,
    :meth:`dwell`, :meth:`ride`, :meth:`follow`, :meth:`to_height`.
    """

    times: FloatArray
    xyz: FloatArray
    floor: IntArray
    moving: BoolArray

    def __post_init__(self) -> None:
        for name, dtype in (
            ("times", np.float64),
            ("xyz", np.float64),
            ("floor", np.int64),
            ("moving", np.bool_),
        ):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        m = self.times.shape[0] if self.times.ndim == 1 else -1
        if m < 1:
            raise MotionError(
                f"a trajectory needs times of shape (M,), M >= 1, got {self.times.shape}"
            )
        if self.xyz.shape != (m, 3) or self.floor.shape != (m,) or self.moving.shape != (m,):
            raise MotionError(
                f"trajectory arrays disagree: times {self.times.shape}, xyz {self.xyz.shape}, "
                f"floor {self.floor.shape}, moving {self.moving.shape}"
            )
        if not (np.isfinite(self.times).all() and np.isfinite(self.xyz).all()):
            raise MotionError("trajectory times and positions must be finite")
        if (np.diff(self.times) < 0).any():
            raise MotionError("trajectory times must be non-decreasing")
        if self.moving[-1]:
            raise MotionError("the last knot of a trajectory cannot be moving")

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def still(cls, xy: ArrayLike, floor: int, t0: float, *, z: float = BADGE_Z) -> Trajectory:
        """A wearer standing (or lying) at ``xy`` (2,) on ``floor`` from ``t0`` on."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1)
        if p.shape != (2,):
            raise MotionError(f"position must be (x, y), got {xy!r}")
        return cls(
            times=np.array([float(t0)]),
            xyz=np.array([[p[0], p[1], float(z)]]),
            floor=np.array([int(floor)], dtype=np.int64),
            moving=np.zeros(1, dtype=bool),
        )

    @classmethod
    def resting(
        cls,
        xy: ArrayLike,
        floor: int,
        t0: float,
        t1: float,
        rng: np.random.Generator,
        *,
        z: float = COT_Z,
        jitter: float = 0.02,
        every: float = 30.0,
    ) -> Trajectory:
        """Static placement with tiny seeded jitter from ``t0`` to ``t1`` (a baby asleep in a
        cot): see :meth:`dwell`. Not moving throughout."""
        return cls.still(xy, floor, t0, z=z).dwell(t1 - t0, rng=rng, jitter=jitter, every=every)

    def _extend(
        self,
        dt: FloatArray,
        xyz: FloatArray,
        seg_floor: IntArray,
        seg_moving: BoolArray,
        end_floor: int,
    ) -> Trajectory:
        """Append m knots after ``dt`` (m,) each; ``seg_*`` (m,) describe the interval leading
        into each new knot; ``end_floor`` is the floor after the last one."""
        if dt.size == 0:
            return self
        return Trajectory(
            times=np.concatenate([self.times, self.end_time + np.cumsum(dt)]),
            xyz=np.vstack([self.xyz, xyz]),
            floor=np.concatenate([self.floor[:-1], seg_floor, [end_floor]]).astype(np.int64),
            moving=np.concatenate([self.moving[:-1], seg_moving, [False]]),
        )

    def walk(self, waypoints: ArrayLike, speed: float) -> Trajectory:
        """Walk from the current end through ``waypoints`` (P, 2) at ``speed`` m/s, same floor
        and tag height. Repeated points are skipped."""
        if not (math.isfinite(speed) and speed > 0):
            raise MotionError(f"walking speed must be > 0 m/s, got {speed}")
        pts = np.asarray(waypoints, dtype=np.float64).reshape(-1, 2)
        pts = np.vstack([self.xyz[-1, :2], pts])
        step = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        keep = step > 0
        m = int(keep.sum())
        xyz = np.column_stack([pts[1:][keep], np.full(m, self.xyz[-1, 2])])
        fl = self.end_floor
        return self._extend(step[keep] / speed, xyz, np.full(m, fl), np.ones(m, dtype=bool), fl)

    def walk_to(
        self,
        nav: NavGrid | Building,
        goal_xy: ArrayLike,
        speed: float,
        *,
        goal_floor: int | None = None,
        kinds: Sequence[ConnectorKind] = ("stairs", "elevator"),
    ) -> Trajectory:
        """Plan from the current end to ``goal_xy`` with ``nav`` and walk there at ``speed``.

        With a :class:`Building`, ``goal_floor`` may differ (stairs/elevators of ``kinds``);
        with a single :class:`NavGrid` it must be the current floor. Raises ``NoPathError``.
        """
        here = self.xyz[-1, :2]
        fl = self.end_floor
        target = fl if goal_floor is None else int(goal_floor)
        if isinstance(nav, Building):
            return self.follow(
                nav.route(fl, here, target, goal_xy, speed=speed, kinds=kinds), speed
            )
        if target != fl:
            raise MotionError(
                f"cannot walk from floor {fl} to floor {target} on a single-floor NavGrid"
            )
        return self.walk(nav.path(here, goal_xy), speed)

    def dwell(
        self,
        seconds: float,
        *,
        rng: np.random.Generator | None = None,
        jitter: float = 0.0,
        every: float = 30.0,
    ) -> Trajectory:
        """Stay put for ``seconds`` (not moving). With ``jitter`` > 0 (metres, needs ``rng``)
        the position drifts smoothly between knots every ``every`` s, each offset drawn
        normal(0, jitter) per axis and clipped to 3 jitter; the dwell ends where it began."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise MotionError(f"dwell time must be >= 0 s, got {seconds}")
        fl = self.end_floor
        if jitter <= 0 or seconds == 0:
            return self._extend(
                np.array([seconds]), self.xyz[-1:].copy(), np.array([fl]), np.zeros(1, bool), fl
            )
        if rng is None:
            raise MotionError("a jittered dwell needs a seeded rng")
        if not every > 0:
            raise MotionError(f"jitter interval must be > 0 s, got {every}")
        m = max(1, math.ceil(seconds / every))
        dt = np.full(m, seconds / m)
        off = np.clip(rng.normal(0.0, jitter, size=(m, 2)), -3 * jitter, 3 * jitter)
        off[-1] = 0.0
        xyz = np.repeat(self.xyz[-1:], m, axis=0)
        xyz[:, :2] += off
        return self._extend(dt, xyz, np.full(m, fl), np.zeros(m, dtype=bool), fl)

    def to_height(self, z: float, seconds: float = 0.0) -> Trajectory:
        """Change the tag height to ``z`` over ``seconds`` (0: instantly), staying in place."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise MotionError(f"height change time must be >= 0 s, got {seconds}")
        fl = self.end_floor
        xyz = self.xyz[-1:].copy()
        xyz[0, 2] = float(z)
        return self._extend(np.array([seconds]), xyz, np.array([fl]), np.zeros(1, bool), fl)

    def ride(self, transfer: Transfer) -> Trajectory:
        """Take stairs or an elevator: wait ``transfer.wait_s`` at its first point, then travel
        between its points, ``travel_s`` shared by floors passed. The floor switches halfway
        between two points. Stairs count as moving, an elevator ride does not."""
        pts = transfer.points
        if transfer.floors[0] != self.end_floor:
            raise MotionError(
                f"transfer {transfer.connector!r} leaves floor {transfer.floors[0]}, "
                f"but the wearer is on floor {self.end_floor}"
            )
        gap = float(np.linalg.norm(pts[0] - self.xyz[-1, :2]))
        if gap > _JUMP_TOL:
            raise MotionError(
                f"transfer {transfer.connector!r} starts {gap:.2f} m from the wearer; "
                "walk there first"
            )
        out = self.dwell(transfer.wait_s) if transfer.wait_s > 0 else self
        moving = transfer.kind == "stairs"
        total = sum(transfer.steps)
        z = self.xyz[-1, 2]
        n = len(transfer.steps)
        tau = np.array(transfer.steps, dtype=np.float64) * (transfer.travel_s / max(total, 1))
        mid = 0.5 * (pts[:-1] + pts[1:])
        dt = np.repeat(tau / 2, 2)
        xy = np.empty((2 * n, 2))
        xy[0::2], xy[1::2] = mid, pts[1:]
        fl = np.array(transfer.floors, dtype=np.int64)
        seg_floor = np.empty(2 * n, dtype=np.int64)
        seg_floor[0::2], seg_floor[1::2] = fl[:-1], fl[1:]
        xyz = np.column_stack([xy, np.full(2 * n, z)])
        return out._extend(dt, xyz, seg_floor, np.full(2 * n, moving), int(fl[-1]))

    def follow(self, route: Route, speed: float) -> Trajectory:
        """Walk a :class:`~firmware_sim.navigation.Route`'s legs at ``speed``, riding its
        transfers in between."""
        out = self
        for i, leg in enumerate(route.legs):
            if leg.floor != out.end_floor:
                raise MotionError(
                    f"route leg {i} is on floor {leg.floor}, wearer on {out.end_floor}"
                )
            out = out.walk(leg.waypoints, speed)
            if i < len(route.transfers):
                out = out.ride(route.transfers[i])
        return out

    def splice(self, t: float, other: Trajectory) -> Trajectory:
        """This trajectory up to ``t``, then ``other`` from ``t`` on.

        If ``other`` starts after ``t`` the wearer waits where they are at ``t`` until then;
        if it starts before, its own state at ``t`` is used. A difference in position at the
        join is an instantaneous step (callers check continuity, see :meth:`MotionTable.replan`).
        """
        t = float(t)
        head = self.times < t
        here = self.at(t)
        parts_t: list[FloatArray] = [self.times[head], np.array([t])]
        parts_xyz: list[FloatArray] = [self.xyz[head], here.xyz[None, :]]
        parts_fl: list[IntArray] = [self.floor[head], np.array([here.floor])]
        parts_mv: list[BoolArray] = [self.moving[head], np.array([False])]
        if other.start_time > t:
            parts_t.append(np.array([other.start_time]))
            parts_xyz.append(here.xyz[None, :])
            parts_fl.append(np.array([here.floor]))
            parts_mv.append(np.array([False]))
            tail = np.ones(other.times.shape[0], dtype=bool)
        else:
            there = other.at(t)
            tail = other.times > t
            parts_t.append(np.array([t]))
            parts_xyz.append(there.xyz[None, :])
            parts_fl.append(np.array([there.floor]))
            parts_mv.append(np.array([there.moving]))
        parts_t.append(other.times[tail])
        parts_xyz.append(other.xyz[tail])
        parts_fl.append(other.floor[tail])
        parts_mv.append(other.moving[tail])
        times = np.concatenate(parts_t).astype(np.float64)
        xyz = np.vstack(parts_xyz)
        fl = np.concatenate(parts_fl).astype(np.int64)
        mv = np.concatenate(parts_mv).astype(bool)
        # Drop knots that repeat their predecessor exactly (same time, place and floor).
        dup = np.zeros(times.shape[0], dtype=bool)
        dup[1:] = (
            (times[1:] == times[:-1]) & (xyz[1:] == xyz[:-1]).all(axis=1) & (fl[1:] == fl[:-1])
        )
        # A knot's flags describe the interval after it: keep the later knot's flags.
        keep = ~np.append(dup[1:], False)
        mv[-1] = False
        return Trajectory(times[keep], xyz[keep], fl[keep], mv[keep])

    # -- queries ----------------------------------------------------------------------------

    @property
    def start_time(self) -> float:
        """Time of the first knot."""
        return float(self.times[0])

    @property
    def end_time(self) -> float:
        """Time of the last knot (the wearer rests there afterwards)."""
        return float(self.times[-1])

    @property
    def end_floor(self) -> int:
        """Floor after the last knot."""
        return int(self.floor[-1])

    def sample(self, ts: ArrayLike) -> Positions:
        """States at times ``ts`` (T,), in any order."""
        t = np.asarray(ts, dtype=np.float64).reshape(-1)
        last = self.times.shape[0] - 1
        k = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, last)
        return _evaluate(
            self.times, self.xyz, self.floor, self.moving, k, np.full(t.shape[0], last), t
        )

    def at(self, t: float) -> State:
        """State at time ``t``."""
        p = self.sample([t])
        return State(p.xyz[0], int(p.floor[0]), bool(p.moving[0]))


def walk_to(
    nav: NavGrid | Building,
    start_xy: ArrayLike,
    goal_xy: ArrayLike,
    *,
    t0: float,
    speed: float = WALKING_SPEED,
    floor: int = 0,
    goal_floor: int | None = None,
    z: float = BADGE_Z,
    kinds: Sequence[ConnectorKind] = ("stairs", "elevator"),
) -> Trajectory:
    """A trajectory leaving ``start_xy`` on ``floor`` at ``t0`` and walking to ``goal_xy`` (on
    ``goal_floor``, default the same) at ``speed``, planned with ``nav``; it rests at the goal.
    Raises ``NoPathError`` when no path exists."""
    return Trajectory.still(start_xy, floor, t0, z=z).walk_to(
        nav, goal_xy, speed, goal_floor=goal_floor, kinds=kinds
    )


class _Carry(NamedTuple):
    tag: int
    carrier: int
    t_from: float
    t_to: float
    offset: tuple[float, float]
    z: float


class MotionTable:
    """Trajectories of many wearers, evaluated together by :meth:`positions`.

    Rows are tags and untagged actors (``transmits=False``, e.g. an abductor: it moves and can
    carry, but the radio model must not hear it; filter with :attr:`transmits`). Knots of all
    rows live in one flat pool; each row points at its slice. A per-row cursor follows
    increasing ``t`` in O(N) per tick; a step back in time re-seeks with a vectorised binary
    search. Re-planning appends the new knots to the pool (compacted when half is garbage).
    Operations must be applied in time order of the events they model.
    """

    _MAX_STEPS = 4  # cursor advances per tick before falling back to a binary search

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._traj: list[Trajectory] = []
        self._transmits: list[bool] = []
        self._kt = np.zeros(0)
        self._kxyz = np.zeros((0, 3))
        self._kfloor = np.zeros(0, dtype=np.int64)
        self._kmoving = np.zeros(0, dtype=bool)
        self._used = 0
        self._start = np.zeros(0, dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)
        self._cursor = np.zeros(0, dtype=np.int64)
        self._last_t = -math.inf
        self._carries: list[_Carry] = []
        self._carry_arrays: (
            tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray] | None
        ) = None

    # -- rows --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> tuple[str, ...]:
        """Row names, in row order."""
        return tuple(self._names)

    @property
    def transmits(self) -> BoolArray:
        """(N,) True for rows that are transmitting tags, False for untagged actors."""
        return np.array(self._transmits, dtype=bool)

    def row(self, tag: int | str) -> int:
        """Row index of ``tag`` (a name or an index)."""
        if isinstance(tag, str):
            if tag not in self._index:
                raise MotionError(f"unknown tag {tag!r}")
            return self._index[tag]
        if not 0 <= tag < len(self._names):
            raise MotionError(f"tag row {tag} out of range (0..{len(self._names) - 1})")
        return int(tag)

    def trajectory(self, tag: int | str) -> Trajectory:
        """The row's own trajectory (ignoring carrying)."""
        return self._traj[self.row(tag)]

    def add(self, name: str, trajectory: Trajectory, *, transmits: bool = True) -> int:
        """Add a row; returns its index. ``transmits=False`` for an untagged actor."""
        if name in self._index:
            raise MotionError(f"tag {name!r} is already in the motion table")
        r = len(self._names)
        self._names.append(name)
        self._index[name] = r
        self._traj.append(trajectory)
        self._transmits.append(bool(transmits))
        self._start = np.append(self._start, 0)
        self._count = np.append(self._count, 0)
        self._cursor = np.append(self._cursor, 0)
        self._store(r, trajectory)
        return r

    def replan(
        self, tag: int | str, t: float, trajectory: Trajectory, *, allow_jump: bool = False
    ) -> None:
        """From ``t`` on, ``tag`` follows ``trajectory`` (its past is kept). ``trajectory`` must
        start where the tag is at ``t`` (same floor, within 1 µm) unless ``allow_jump``."""
        r = self.row(tag)
        if self._carrier_of(r, t) is not None:
            raise MotionError(
                f"tag {self._names[r]!r} is being carried at t={t}; put it down first"
            )
        old = self._traj[r]
        if not allow_jump:
            here = old.at(t)
            there = trajectory.at(max(t, trajectory.start_time))
            gap = float(np.linalg.norm(here.xyz[:2] - there.xyz[:2]))
            if gap > _JUMP_TOL or here.floor != there.floor:
                raise MotionError(
                    f"re-plan of {self._names[r]!r} at t={t} starts {gap:.2f} m away "
                    f"(floor {there.floor}, tag on floor {here.floor}); plan from its position"
                )
        new = old.splice(t, trajectory)
        self._traj[r] = new
        self._store(r, new)

    def send(
        self,
        tag: int | str,
        t: float,
        nav: NavGrid | Building,
        goal_xy: ArrayLike,
        speed: float,
        *,
        goal_floor: int | None = None,
    ) -> None:
        """Re-plan ``tag`` to walk from where it is at ``t`` to ``goal_xy`` (scenario event)."""
        here = self.state(tag, t)
        plan = Trajectory.still(here.xyz[:2], here.floor, t, z=float(here.xyz[2]))
        self.replan(tag, t, plan.walk_to(nav, goal_xy, speed, goal_floor=goal_floor))

    # -- carrying ----------------------------------------------------------------------------

    def carry(
        self,
        tag: int | str,
        carrier: int | str,
        t: float,
        *,
        offset: tuple[float, float] = (0.15, 0.0),
        z: float = CARRIED_Z,
    ) -> None:
        """From ``t`` until :meth:`put_down`, ``tag`` is at the carrier's (x, y) + ``offset``,
        on its floor, at height ``z``, moving when it moves. Keep ``offset`` below the walking
        clearance so the tag stays on the carrier's side of walls. No chains: a carried row
        cannot carry, and a carrier cannot be carried."""
        r, c = self.row(tag), self.row(carrier)
        if r == c:
            raise MotionError(f"tag {self._names[r]!r} cannot carry itself")
        for k in self._carries:
            if k.t_to <= t:
                continue
            if k.tag == r:
                raise MotionError(f"tag {self._names[r]!r} is already carried at or after t={t}")
            if k.tag == c:
                raise MotionError(f"carrier {self._names[c]!r} is itself carried at t={t}")
            if k.carrier == r:
                raise MotionError(f"tag {self._names[r]!r} is carrying another tag at t={t}")
        self._carries.append(
            _Carry(r, c, float(t), math.inf, (float(offset[0]), float(offset[1])), float(z))
        )
        self._carry_arrays = None

    def put_down(
        self,
        tag: int | str,
        t: float,
        *,
        z: float = COT_Z,
        rng: np.random.Generator | None = None,
        jitter: float = 0.0,
        until: float | None = None,
    ) -> None:
        """End the carry of ``tag`` at ``t``: it stays where the carrier held it, at height
        ``z`` (optionally jittered until ``until``, see :meth:`Trajectory.resting`)."""
        r = self.row(tag)
        i = self._carrier_index(r, t)
        if i is None:
            raise MotionError(f"tag {self._names[r]!r} is not being carried at t={t}")
        k = self._carries[i]
        held = self._traj[k.carrier].at(t)
        xy = held.xyz[:2] + np.asarray(k.offset)
        if until is not None and jitter > 0:
            if rng is None:
                raise MotionError("a jittered put-down needs a seeded rng")
            rest = Trajectory.resting(xy, held.floor, t, until, rng, z=z, jitter=jitter)
        else:
            rest = Trajectory.still(xy, held.floor, t, z=z)
        self._carries[i] = k._replace(t_to=float(t))
        self._carry_arrays = None
        new = self._traj[r].splice(t, rest)
        self._traj[r] = new
        self._store(r, new)

    def _carrier_index(self, r: int, t: float) -> int | None:
        for i, k in enumerate(self._carries):
            if k.tag == r and k.t_from <= t < k.t_to:
                return i
        return None

    def _carrier_of(self, r: int, t: float) -> int | None:
        i = self._carrier_index(r, t)
        return None if i is None else self._carries[i].carrier

    # -- evaluation --------------------------------------------------------------------------

    def state(self, tag: int | str, t: float) -> State:
        """State of one row at ``t``, carrying included."""
        r = self.row(tag)
        i = self._carrier_index(r, t)
        if i is None:
            return self._traj[r].at(t)
        k = self._carries[i]
        held = self._traj[k.carrier].at(t)
        xyz = np.array([held.xyz[0] + k.offset[0], held.xyz[1] + k.offset[1], k.z])
        return State(xyz, held.floor, held.moving)

    def positions(self, t: float) -> Positions:
        """States of all N rows at ``t``: xyz (N, 3), floor (N,), moving (N,). Rows in the
        order added; untagged actors included (see :attr:`transmits`)."""
        t = float(t)
        last = self._start + self._count - 1
        cur = self._advance(t, last) if t >= self._last_t else self._seek(t)
        self._cursor = cur
        self._last_t = t
        tt = np.full(cur.shape[0], t)
        out = _evaluate(self._kt, self._kxyz, self._kfloor, self._kmoving, cur, last, tt)
        if self._carries:
            tag, car, t_from, t_to, off, z = self._carry_table()
            on = (t_from <= t) & (t < t_to)
            if on.any():
                rows, by = tag[on], car[on]
                out.xyz[rows, :2] = out.xyz[by, :2] + off[on]
                out.xyz[rows, 2] = z[on]
                out.floor[rows] = out.floor[by]
                out.moving[rows] = out.moving[by]
        return out

    def _advance(self, t: float, last: IntArray) -> IntArray:
        cur = self._cursor.copy()
        idx = np.arange(cur.shape[0])
        for _ in range(self._MAX_STEPS):
            nxt = np.minimum(cur[idx] + 1, last[idx])
            step = (nxt > cur[idx]) & (self._kt[nxt] <= t)
            if not step.any():
                return cur
            idx = idx[step]
            cur[idx] += 1
        return self._seek(t)

    def _seek(self, t: float) -> IntArray:
        """Vectorised binary search: per row, the last knot at or before ``t`` (or its first)."""
        lo = self._start.copy()
        hi = self._start + self._count
        while True:
            act = lo < hi
            if not act.any():
                break
            mid = (lo + hi) // 2
            le = self._kt[np.minimum(mid, self._used - 1)] <= t
            lo = np.where(act & le, mid + 1, lo)
            hi = np.where(act & ~le, mid, hi)
        return np.maximum(lo - 1, self._start)

    def _carry_table(
        self,
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        if self._carry_arrays is None:
            c = self._carries
            self._carry_arrays = (
                np.array([k.tag for k in c], dtype=np.int64),
                np.array([k.carrier for k in c], dtype=np.int64),
                np.array([k.t_from for k in c]),
                np.array([k.t_to for k in c]),
                np.array([k.offset for k in c], dtype=np.float64).reshape(-1, 2),
                np.array([k.z for k in c]),
            )
        return self._carry_arrays

    # -- knot pool ---------------------------------------------------------------------------

    def _store(self, r: int, traj: Trajectory) -> None:
        """Append ``traj``'s knots to the pool and point row ``r`` at them."""
        m = traj.times.shape[0]
        if self._used + m > self._kt.shape[0]:
            live = int(self._count.sum()) - int(self._count[r])
            if self._used - live > live:
                self._compact(exclude=r)
            if self._used + m > self._kt.shape[0]:
                self._grow(max(2 * self._kt.shape[0], self._used + m, 1024))
        s = self._used
        self._kt[s : s + m] = traj.times
        self._kxyz[s : s + m] = traj.xyz
        self._kfloor[s : s + m] = traj.floor
        self._kmoving[s : s + m] = traj.moving
        self._used += m
        self._start[r], self._count[r] = s, m
        k = int(np.searchsorted(traj.times, self._last_t, side="right")) - 1
        self._cursor[r] = s + min(max(k, 0), m - 1)

    def _grow(self, cap: int) -> None:
        n = self._used
        kt, kxyz = np.zeros(cap), np.zeros((cap, 3))
        kfloor, kmoving = np.zeros(cap, dtype=np.int64), np.zeros(cap, dtype=bool)
        kt[:n], kxyz[:n], kfloor[:n], kmoving[:n] = (
            self._kt[:n],
            self._kxyz[:n],
            self._kfloor[:n],
            self._kmoving[:n],
        )
        self._kt, self._kxyz, self._kfloor, self._kmoving = kt, kxyz, kfloor, kmoving

    def _compact(self, exclude: int) -> None:
        """Rewrite the pool with only the live knots of every row but ``exclude``."""
        rows = [i for i in range(len(self._traj)) if i != exclude]
        rel = self._cursor - self._start
        counts = self._count[rows]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        segs = [np.arange(self._start[i], self._start[i] + self._count[i]) for i in rows]
        take = np.concatenate(segs) if segs else np.zeros(0, dtype=np.int64)
        n = take.shape[0]
        self._kt[:n] = self._kt[take]
        self._kxyz[:n] = self._kxyz[take]
        self._kfloor[:n] = self._kfloor[take]
        self._kmoving[:n] = self._kmoving[take]
        self._used = n
        self._start[rows] = starts
        self._cursor[rows] = starts + rel[rows]
        self._start[exclude] = self._count[exclude] = self._cursor[exclude] = 0
