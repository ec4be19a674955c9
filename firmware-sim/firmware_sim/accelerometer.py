"""Synthetic tri-axial accelerometer traces of a staff badge worn on the trunk (chest or belt).

Units are g. Badge axes: +z up along the trunk when the wearer stands, +x forward (out of the
chest), +y to the wearer's left, so standing still reads about (0, 0, 1). A sample is the specific
force in badge axes::

    acc(t) = R(t)ᵀ (up + a_world(t)) + a_badge(t) + noise

with ``R(t)`` the badge-to-world rotation (the posture), ``up = (0, 0, 1)`` (what an accelerometer
at rest senses), ``a_world`` whole-body acceleration in world axes (free fall, impacts) and
``a_badge`` the trunk's own small movements (gait, fidgets). Postures are keyframes joined by eased
geodesic rotations, so orientation is continuous, also across the segments of :func:`compose`.

Figures: step cadence 1.8–2 Hz with 0.2–0.3 g vertical trunk oscillation; real falls peak 1.8–3 g,
a slump about 1.8 g, sitting down hard 4–5 g (DOMAIN.md). They are plausible shapes to exercise
the detector, not recordings. Everything is pure: randomness comes only from the
``np.random.Generator`` passed in.

Command: ``python -m firmware_sim.accelerometer --out DIR [--seed N] [--rate HZ] [--jitter F]``
writes one CSV (``t,ax,ay,az``) per trace of :func:`standard_traces`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from rtls.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

UP = np.array([0.0, 0.0, 1.0])
_I3 = np.eye(3)
_X, _Y, _Z = 0, 1, 2


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True, eq=False)
class Trace:
    """Samples ``t (N,)`` in s (strictly increasing) and ``acc (N, 3)`` in g, badge axes.

    ``end_t`` and ``end_pose (3, 3)`` (badge-to-world rotation) are where a following segment
    starts; ``marks`` are labelled instants such as ``(31.2, "impact")`` for tests and plots.
    """

    t: FloatArray
    acc: FloatArray
    end_t: float = float("nan")
    end_pose: FloatArray = field(default_factory=lambda: np.eye(3))
    marks: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        t = np.asarray(self.t, dtype=np.float64)
        acc = np.asarray(self.acc, dtype=np.float64)
        if t.ndim != 1 or t.size == 0:
            raise ConfigError(f"trace t must be a non-empty 1-D array, got shape {t.shape}")
        if acc.shape != (t.size, 3):
            raise ConfigError(f"trace acc must have shape ({t.size}, 3), got {acc.shape}")
        if np.any(np.diff(t) <= 0):
            raise ConfigError("trace t must be strictly increasing")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "acc", acc)
        if np.isnan(self.end_t):
            object.__setattr__(self, "end_t", float(t[-1]))

    def __len__(self) -> int:
        return int(self.t.size)

    def concat(self, other: Trace) -> Trace:
        """This trace followed by ``other`` (which must start after this one ends)."""
        if other.t[0] <= self.t[-1]:
            raise ConfigError(
                f"cannot append a trace starting at {other.t[0]:.3f} s to one ending at "
                f"{self.t[-1]:.3f} s"
            )
        return Trace(
            np.concatenate([self.t, other.t]),
            np.concatenate([self.acc, other.acc]),
            end_t=other.end_t,
            end_pose=other.end_pose,
            marks=self.marks + other.marks,
        )

    def mark(self, label: str) -> float:
        """Time of the first mark with this label (e.g. ``"impact"``); KeyError if none."""
        for t, name in self.marks:
            if name == label:
                return t
        raise KeyError(label)


def concatenate(traces: Sequence[Trace]) -> Trace:
    """The traces one after the other (each must start after the previous one ends)."""
    if not traces:
        raise ConfigError("concatenate needs at least one trace")
    out = traces[0]
    for tr in traces[1:]:
        out = out.concat(tr)
    return out


def write_csv(trace: Trace, path: Path) -> None:
    """Write ``t,ax,ay,az`` rows with a header line."""
    data = np.column_stack([trace.t, trace.acc])
    np.savetxt(path, data, fmt=["%.6f", "%.5f", "%.5f", "%.5f"], delimiter=",",
               header="t,ax,ay,az", comments="")  # fmt: skip


# ------------------------------------------------------------------ rotation maths


def _exp(rotvec: FloatArray) -> FloatArray:
    """Rotation matrices (N, 3, 3) from rotation vectors (N, 3) in rad (Rodrigues' formula)."""
    theta = np.linalg.norm(rotvec, axis=1)
    k = rotvec / np.where(theta > 1e-12, theta, 1.0)[:, None]
    K = np.zeros((rotvec.shape[0], 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s = np.sin(theta)[:, None, None]
    c = (1.0 - np.cos(theta))[:, None, None]
    out = _I3 + s * K + c * (K @ K)
    return np.asarray(out, dtype=np.float64)


def _log(R: FloatArray) -> FloatArray:
    """Rotation vectors (K, 3) of rotation matrices (K, 3, 3)."""
    return np.asarray(Rotation.from_matrix(R).as_rotvec(), dtype=np.float64)


def _rot(axis: int, deg: float) -> FloatArray:
    """One rotation (3, 3) about a badge axis (0 x, 1 y, 2 z) by ``deg`` degrees."""
    v = np.zeros((1, 3))
    v[0, axis] = np.radians(deg)
    out: FloatArray = _exp(v)[0]
    return out


def _angle(a: FloatArray, b: FloatArray) -> float:
    """Angle in rad between two poses (3, 3)."""
    return float(np.linalg.norm(_log((a.T @ b)[None])[0]))


def _turn_time(a: FloatArray, b: FloatArray) -> float:
    """Duration of an unhurried posture change: 0.4 s plus 1.6 s per 90°."""
    return 0.4 + 1.6 * _angle(a, b) / (np.pi / 2)


class _Path:
    """Posture keyframes ``(time, pose, ease)``; ``ease`` shapes the move ending at the key:
    ``smooth`` (zero speed at both ends) or ``fall`` (accelerating, fastest at impact)."""

    def __init__(self, start: FloatArray) -> None:
        self.keys: list[tuple[float, FloatArray, str]] = [(0.0, start, "smooth")]

    @property
    def t(self) -> float:
        return self.keys[-1][0]

    @property
    def pose(self) -> FloatArray:
        return self.keys[-1][1]

    def move(self, dur: float, pose: FloatArray, ease: str = "smooth") -> float:
        self.keys.append((self.t + max(dur, 1e-3), pose, ease))
        return self.t

    def hold_until(self, t: float) -> None:
        if t > self.t:
            self.move(t - self.t, self.pose)

    def eval(self, t: FloatArray) -> FloatArray:
        """Poses (N, 3, 3) at times t (N,); the first pose before, the last pose after."""
        times = np.array([k[0] for k in self.keys])
        poses = np.stack([k[1] for k in self.keys])
        if len(self.keys) == 1:
            return np.broadcast_to(poses[0], (t.size, 3, 3)).copy()
        rel = _log(np.transpose(poses[:-1], (0, 2, 1)) @ poses[1:])
        fall = np.array([k[2] == "fall" for k in self.keys[1:]])
        i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
        u = np.clip((t - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
        s = np.where(fall[i], u * u, u**3 * (10.0 - 15.0 * u + 6.0 * u * u))
        out: FloatArray = poses[i] @ _exp(s[:, None] * rel[i])
        return out


# --------------------------------------------------------------------- signal parts


def _hann(t: FloatArray, centre: float, width: float) -> FloatArray:
    """Hann window (N,) of full width ``width`` centred at ``centre``."""
    x = (t - centre) / width
    out: FloatArray = np.where(np.abs(x) < 0.5, 0.5 * (1.0 + np.cos(2.0 * np.pi * x)), 0.0)
    return out


def _pulse(t: FloatArray, centre: float, width: float) -> FloatArray:
    """Half-sine impact pulse (N,), peak 1 at ``centre``, full width ``width``."""
    x = (t - centre) / width
    out: FloatArray = np.where(np.abs(x) < 0.5, np.cos(np.pi * x), 0.0)
    return out


def _ramp(t: FloatArray, start: float, dur: float) -> FloatArray:
    """Smooth step (N,) from 0 at ``start`` to 1 at ``start + dur``."""
    u = np.clip((t - start) / dur, 0.0, 1.0)
    out: FloatArray = u * u * (3.0 - 2.0 * u)
    return out


def _times(
    rng: np.random.Generator, first: float, end: float, gap: tuple[float, float]
) -> FloatArray:
    """Instants from ``first`` with random gaps in ``gap`` (s), all before ``end``."""
    n = max(0, int(np.ceil((end - first) / gap[0])) + 1)
    out = first + np.concatenate([[0.0], np.cumsum(rng.uniform(*gap, n))])
    res: FloatArray = out[out < end]
    return res


def _unit(rng: np.random.Generator, n: int) -> FloatArray:
    v = rng.normal(size=(n, 3))
    out: FloatArray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def _bursts(
    t: FloatArray,
    rng: np.random.Generator,
    centres: FloatArray,
    amp: tuple[float, float],
    dur: tuple[float, float] = (1.0, 2.5),
    tilt_deg: tuple[float, float] = (1.0, 5.0),
) -> tuple[FloatArray, FloatArray]:
    """Small movements centred at ``centres`` (K,): Hann-windowed 0.8–2.5 Hz oscillations in a
    random direction (a_badge (N, 3), g) and matching posture wobbles (rotation vectors (N, 3))."""
    k = centres.size
    amps, durs = rng.uniform(*amp, k), rng.uniform(*dur, k)
    freqs, phases = rng.uniform(0.8, 2.5, k), rng.uniform(0.0, 2 * np.pi, k)
    dirs, axes = _unit(rng, k), _unit(rng, k)
    angles = np.radians(rng.uniform(*tilt_deg, k))
    dt = t[:, None] - centres[None, :]
    w = np.where(np.abs(dt) < durs / 2, 0.5 * (1.0 + np.cos(2 * np.pi * dt / durs)), 0.0)
    osc = w * np.sin(2 * np.pi * freqs * dt + phases)
    a: FloatArray = (osc * amps) @ dirs
    rv: FloatArray = (w * angles) @ axes
    return a, rv


def _sway(t: FloatArray, rng: np.random.Generator, amp_deg: float) -> FloatArray:
    """Postural sway: slow pitch and roll wobble (rotation vectors (N, 3))."""
    f = rng.uniform(0.1, 0.5, (2, 2))
    ph = rng.uniform(0.0, 2 * np.pi, (2, 2))
    a = np.radians(amp_deg) * rng.uniform(0.5, 1.0, (2, 2))
    rv = np.zeros((t.size, 3))
    for ax in range(2):  # pitch and roll, two sinusoids each
        wave = np.sin(2 * np.pi * f[ax, :, None] * t + ph[ax, :, None])
        rv[:, ax] = (a[ax, :, None] * wave).sum(axis=0)
    return rv


def _breathing(t: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Chest rise and fall: 0.3–0.8° pitch at 12–20 breaths/min (rotation vectors (N, 3))."""
    rv = np.zeros((t.size, 3))
    amp = np.radians(rng.uniform(0.3, 0.8))
    f, ph = rng.uniform(0.2, 0.33), rng.uniform(0.0, 2 * np.pi)
    rv[:, _Y] = amp * np.sin(2 * np.pi * f * t + ph)
    return rv


def _gait(
    t: FloatArray, rng: np.random.Generator, t_on: float, t_off: float
) -> tuple[FloatArray, FloatArray]:
    """Walking between ``t_on`` and ``t_off``: cadence 1.8–2 steps/s, vertical oscillation
    0.2–0.3 g at the step frequency, forward 0.08–0.15 g, lateral 0.05–0.1 g at the stride
    frequency (half the step frequency); returns a_badge (N, 3) and trunk wobble (N, 3)."""
    f = rng.uniform(1.8, 2.0)
    av, aap, aml = rng.uniform(0.2, 0.3), rng.uniform(0.08, 0.15), rng.uniform(0.05, 0.1)
    ph = rng.uniform(0.0, 2 * np.pi, 4)
    env = _ramp(t, t_on, 1.0) * (1.0 - _ramp(t, t_off - 0.6, 0.6))
    w = 2 * np.pi * f * (t - t_on)
    a = np.column_stack([
        aap * np.sin(w + ph[0]),
        aml * np.sin(w / 2 + ph[1]),
        av * (np.sin(w + ph[2]) + 0.3 * np.sin(2 * w + ph[3])),
    ]) * env[:, None]  # fmt: skip
    rv = np.column_stack([
        np.radians(2.0) * np.sin(w / 2 + ph[1]),
        np.radians(1.5) * np.sin(w + ph[0]),
        np.zeros_like(t),
    ]) * env[:, None]  # fmt: skip
    return a, rv


# ------------------------------------------------------------------------ activities


@dataclass
class _Motion:
    pose: FloatArray  # (N, 3, 3) badge-to-world, wobble included
    a_world: FloatArray  # (N, 3) g
    a_badge: FloatArray  # (N, 3) g
    marks: list[tuple[float, str]]


def _motion(
    t: FloatArray,
    path: _Path,
    rv: FloatArray,
    a_world: FloatArray | None = None,
    a_badge: FloatArray | None = None,
    marks: list[tuple[float, str]] | None = None,
) -> _Motion:
    zeros = np.zeros((t.size, 3))
    return _Motion(
        path.eval(t) @ _exp(rv),
        zeros if a_world is None else a_world,
        zeros if a_badge is None else a_badge,
        marks or [],
    )


Builder = Callable[[FloatArray, FloatArray, np.random.Generator, float], _Motion]


def _standing(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    """Quiet standing: upright, postural sway only (no movement at all for the detector)."""
    p = _Path(start)
    p.move(_turn_time(start, _I3), _I3)
    return _motion(t, p, _sway(t, rng, 0.7))


def _walking(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    lean = _rot(_Y, rng.uniform(3.0, 6.0))
    p = _Path(start)
    t_on = p.move(_turn_time(start, lean), lean)
    a, rv = _gait(t, rng, t_on, dur)
    return _motion(t, p, rv + _sway(t, rng, 0.3), a_badge=a)


def _seated_fidgets(
    t: FloatArray, rng: np.random.Generator, first: float, dur: float
) -> tuple[FloatArray, FloatArray]:
    """Seated life: small movements (writing, reaching, shifting) every 4–15 s, and breathing."""
    a, rv = _bursts(t, rng, _times(rng, first, dur - 1.0, (4.0, 15.0)), (0.15, 0.3))
    return a, rv + _breathing(t, rng)


def _sitting(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    seat = _rot(_Y, -rng.uniform(5.0, 15.0))
    p = _Path(start)
    p.move(_turn_time(start, seat), seat)
    a, rv = _seated_fidgets(t, rng, p.t + rng.uniform(1.0, 6.0), dur)
    return _motion(t, p, rv, a_badge=a)


def _sit_down(
    t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float, hard: bool
) -> _Motion:
    lean = rng.uniform(20.0, 30.0)
    p = _Path(start)
    p.move(_turn_time(start, _I3), _I3)
    p.move(rng.uniform(0.6, 0.9), _rot(_Y, lean))
    descent = rng.uniform(0.25, 0.4) if hard else rng.uniform(0.5, 0.8)
    t_seat = p.move(descent, _rot(_Y, 0.6 * lean))
    p.move(rng.uniform(0.8, 1.5), _rot(_Y, -rng.uniform(5.0, 15.0)))
    a_world = np.zeros((t.size, 3))
    dip = rng.uniform(0.4, 0.6) if hard else rng.uniform(0.1, 0.2)
    a_world[:, 2] -= dip * _hann(t, t_seat - descent / 2, descent)
    # seat contact: soft 1.3–1.7 g; hard 4–5 g with the trunk still near upright (DOMAIN.md)
    peak = rng.uniform(3.0, 4.0) if hard else rng.uniform(0.3, 0.7)
    width = rng.uniform(0.06, 0.1) if hard else rng.uniform(0.15, 0.25)
    a_world[:, 2] += peak * _pulse(t, t_seat, width)
    a, rv = _seated_fidgets(t, rng, p.t + rng.uniform(3.0, 8.0), dur)
    marks = [(t_seat, "seat_contact")] + ([(t_seat, "impact")] if hard else [])
    return _motion(t, p, rv, a_world, a, marks)


def _sitting_down(t: FloatArray, s: FloatArray, rng: np.random.Generator, d: float) -> _Motion:
    return _sit_down(t, s, rng, d, hard=False)


def _sitting_down_hard(t: FloatArray, s: FloatArray, rng: np.random.Generator, d: float) -> _Motion:
    return _sit_down(t, s, rng, d, hard=True)


def _standing_up(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    lean = _rot(_Y, rng.uniform(25.0, 35.0))
    p = _Path(start)
    t_push = p.move(0.8 + 1.5 * _angle(start, lean) / (np.pi / 2), lean)
    t_up = p.move(rng.uniform(0.8, 1.2), _I3)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] += rng.uniform(0.15, 0.3) * _hann(t, t_push, 1.0)
    return _motion(t, p, _sway(t, rng, 0.7), a_world, marks=[(t_up, "upright")])


def _lying_still(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    """Motionless in the current posture: breathing only (asleep, unconscious)."""
    return _motion(t, _Path(start), _breathing(t, rng))


def _lying_down(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    """Into bed: sit on the edge, lie back slowly (3–5 s, no impact), then lie awake: a small
    movement every 5–20 s, turning over (to a side, or back) every 40–100 s, breathing."""
    p = _Path(start)
    p.move(_turn_time(start, _I3), _I3)
    p.move(rng.uniform(0.6, 0.9), _rot(_Y, rng.uniform(15.0, 25.0)))
    t_seat = p.move(rng.uniform(0.6, 0.9), _rot(_Y, -rng.uniform(0.0, 5.0)))
    p.hold_until(p.t + rng.uniform(1.0, 3.0))
    lie = _rot(_Y, -rng.uniform(75.0, 90.0))  # supine; the bed head may be raised a little
    t_lie = p.move(rng.uniform(3.0, 5.0), lie)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] += rng.uniform(0.1, 0.3) * _pulse(t, t_seat, 0.25)
    a_world[:, 2] += rng.uniform(0.05, 0.1) * _pulse(t, t_lie, 0.3)
    turns = _times(rng, t_lie + rng.uniform(20.0, 60.0), dur - 4.0, (40.0, 100.0))
    side = 0
    for tt in turns:  # a handful of posture keyframes, not a hot path
        side = int(rng.choice([-1, 1])) if side == 0 else 0
        p.hold_until(tt)
        p.move(rng.uniform(1.5, 3.0), lie @ _rot(_Z, 90.0 * side))
    a_turn, rv_turn = _bursts(t, rng, turns + 1.0, (0.2, 0.4), (2.0, 3.0), (0.0, 2.0))
    small = _times(rng, t_lie + rng.uniform(2.0, 10.0), dur - 1.0, (5.0, 20.0))
    a, rv = _bursts(t, rng, small, (0.15, 0.35), (1.0, 2.5), (2.0, 8.0))
    rv = rv + rv_turn + _breathing(t, rng)
    return _motion(t, p, rv, a_world, a + a_turn, [(t_lie, "lying")])


def _bending(t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float) -> _Motion:
    """Bend to pick something up: trunk 60–90° forward for 1.5–4 s with reaching, then back."""
    p = _Path(start)
    p.move(_turn_time(start, _I3), _I3)
    p.hold_until(p.t + rng.uniform(0.5, 2.0))
    t_down = p.move(rng.uniform(0.8, 1.5), _rot(_Y, rng.uniform(60.0, 90.0)))
    hold = rng.uniform(1.5, 4.0)
    p.hold_until(t_down + hold)
    p.move(rng.uniform(0.8, 1.5), _I3)
    reach = t_down + np.arange(0.5, hold, 1.0)
    a, rv = _bursts(t, rng, reach, (0.1, 0.3), (0.6, 1.2))
    return _motion(t, p, rv + _sway(t, rng, 0.7), a_badge=a, marks=[(t_down, "bent")])


def _fall(
    t: FloatArray, start: FloatArray, rng: np.random.Generator, dur: float, kind: str
) -> _Motion:
    """Loss of balance, descent (0.6–0.9 s toppling; slump 1.5–3 s), impact, then either a few
    seconds of settling and lying still (breathing) or, for ``recover``, getting up again."""
    if kind == "recover":
        kind = "forward" if rng.uniform() < 0.5 else "sideways"
        recover = True
    else:
        recover = False
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    if kind == "forward":
        final = _rot(_Y, rng.uniform(80.0, 100.0)) @ _rot(_X, rng.uniform(-15.0, 15.0))
    elif kind == "backward":
        final = _rot(_Y, -rng.uniform(80.0, 100.0)) @ _rot(_X, rng.uniform(-15.0, 15.0))
    elif kind == "sideways":
        final = _rot(_X, side * rng.uniform(80.0, 100.0)) @ _rot(_Y, rng.uniform(-15.0, 15.0))
    elif rng.uniform() < 0.5:  # slump: collapse forward or onto a side
        final = _rot(_Y, rng.uniform(60.0, 90.0)) @ _rot(_X, rng.uniform(-20.0, 20.0))
    else:
        final = _rot(_X, side * rng.uniform(70.0, 90.0))
    slump = kind == "slump"
    p = _Path(start)
    p.move(0.5 * _turn_time(start, _I3), _I3)
    p.hold_until(p.t + rng.uniform(0.2, 0.6))
    t_fall = p.t
    descent = rng.uniform(1.5, 3.0) if slump else rng.uniform(0.6, 0.9)
    t_imp = p.move(descent, final, "smooth" if slump else "fall")
    # partial free fall during the descent, deepest just before the impact
    u = np.clip((t - t_fall) / descent, 0.0, 1.0)
    depth = rng.uniform(0.1, 0.25) if slump else rng.uniform(0.5, 0.7)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] -= depth * 6.75 * u * u * (1.0 - u)
    # impact: real falls 1.8–3 g, a slump about 1.8 g (DOMAIN.md); half-sine of 0.12–0.25 s
    peak = rng.uniform(1.7, 1.9) if slump else rng.uniform(1.8, 3.0)
    width = rng.uniform(0.15, 0.25) if slump else rng.uniform(0.12, 0.2)
    a_world[:, 2] += (peak - 1.0) * _pulse(t, t_imp, width)
    heading = rng.uniform(0.0, 2 * np.pi)
    shear = rng.uniform(0.0, 0.2) * (peak - 1.0) * _pulse(t, t_imp, width)
    a_world[:, 0] += shear * np.cos(heading)
    a_world[:, 1] += shear * np.sin(heading)
    if not slump:  # rebound
        rebound = rng.uniform(0.3, 0.5) * (peak - 1.0)
        a_world[:, 2] += rebound * _pulse(t, t_imp + rng.uniform(0.15, 0.25), 0.8 * width)
    stumble = np.array([t_fall + 0.1])
    a, rv = _bursts(t, rng, stumble, (0.05, 0.15) if slump else (0.3, 0.6), (0.3, 0.5), (0.0, 2.0))
    marks = [(t_fall, "fall"), (t_imp, "impact")]
    if recover:  # moves on the floor for 2–4 s, kneels, stands up
        t_rise = t_imp + rng.uniform(2.0, 4.0)
        floor = np.arange(t_imp + 0.5, t_rise, 0.6)
        a2, rv2 = _bursts(t, rng, floor, (0.2, 0.5), (0.6, 1.0), (2.0, 8.0))
        p.hold_until(t_rise)
        p.move(rng.uniform(1.0, 1.5), _rot(_Y, rng.uniform(30.0, 45.0)))
        t_up = p.move(rng.uniform(0.8, 1.2), _I3)
        a_world[:, 2] += rng.uniform(0.2, 0.35) * _hann(t, t_up - 0.6, 1.2)
        rv2 = rv2 + _sway(t, rng, 0.7) * _ramp(t, t_up, 1.0)[:, None]
        marks.append((t_up, "upright"))
    else:  # settles within 0.3–2.5 s, then lies still
        settle = t_imp + np.sort(rng.uniform(0.3, 2.5, 2))
        a2, rv2 = _bursts(t, rng, settle, (0.05, 0.12) if slump else (0.1, 0.3), (0.5, 1.0))
    return _motion(t, p, rv + rv2 + _breathing(t, rng), a_world, a + a2, marks)


def _fall_kind(kind: str) -> Builder:
    def build(t: FloatArray, s: FloatArray, rng: np.random.Generator, d: float) -> _Motion:
        return _fall(t, s, rng, d, kind)

    return build


_BUILDERS: dict[str, Builder] = {
    "standing": _standing,
    "walking": _walking,
    "sitting": _sitting,
    "sitting_down": _sitting_down,
    "sitting_down_hard": _sitting_down_hard,
    "standing_up": _standing_up,
    "lying_down": _lying_down,
    "lying_still": _lying_still,
    "bending": _bending,
    "fall_forward": _fall_kind("forward"),
    "fall_backward": _fall_kind("backward"),
    "fall_sideways": _fall_kind("sideways"),
    "fall_slump": _fall_kind("slump"),
    "fall_recover": _fall_kind("recover"),
}

ACTIVITIES: tuple[str, ...] = tuple(_BUILDERS)
"""Activity names accepted by :func:`synthesize`. Each starts from the previous posture and
eases into its own; ``lying_still`` keeps whatever posture it starts in."""


# ----------------------------------------------------------------------- public API


def synthesize(
    activity: str,
    rng: np.random.Generator,
    *,
    rate_hz: float = 25.0,
    duration_s: float = 60.0,
    t0: float = 0.0,
    jitter: float = 0.0,
    noise_g: float = 0.01,
    start: FloatArray | None = None,
) -> Trace:
    """One activity for ``duration_s`` seconds sampled at ``rate_hz`` from ``t0``.

    ``jitter`` in [0, 1) moves each sample uniformly by up to ±jitter/2 of the nominal period
    (irregular spacing, still strictly increasing); ``noise_g`` is the white sensor noise per
    axis (g, 1 σ); ``start`` the badge-to-world pose (3, 3) to start from (default upright).
    Raises ConfigError for an unknown activity or a bad parameter.
    """
    if activity not in _BUILDERS:
        raise ConfigError(f"unknown activity {activity!r}; known: {', '.join(ACTIVITIES)}")
    for name, value, ok in (
        ("rate_hz", rate_hz, 0.0 < rate_hz <= 10_000.0),
        ("duration_s", duration_s, 0.0 < duration_s <= 86_400.0),
        ("jitter", jitter, 0.0 <= jitter < 1.0),
        ("noise_g", noise_g, 0.0 <= noise_g <= 1.0),
        ("t0", t0, bool(np.isfinite(t0))),
    ):
        if not ok:
            raise ConfigError(f"{name} = {value!r} is out of range")
    pose0 = _I3 if start is None else np.asarray(start, dtype=np.float64)
    if pose0.shape != (3, 3) or not np.allclose(pose0.T @ pose0, _I3, atol=1e-6):
        raise ConfigError("start must be a 3x3 rotation matrix")
    n = max(2, round(duration_s * rate_hz))
    period = 1.0 / rate_hz
    t_rel = np.arange(n) * period
    if jitter > 0.0:
        t_rel = t_rel + jitter * period * rng.uniform(-0.5, 0.5, n)
    end = n * period
    motion = _BUILDERS[activity](np.append(t_rel, end), pose0, rng, end)
    specific = UP + motion.a_world
    acc = np.einsum("nji,nj->ni", motion.pose, specific) + motion.a_badge
    acc = acc[:-1] + noise_g * rng.normal(size=(n, 3))
    marks = ((t0, f"start:{activity}"), *((t0 + m, label) for m, label in motion.marks))
    return Trace(
        np.asarray(t0 + t_rel, dtype=np.float64),
        acc,
        end_t=t0 + end,
        end_pose=motion.pose[-1],
        marks=marks,
    )


def compose(
    segments: Sequence[tuple[str, float]],
    rng: np.random.Generator,
    *,
    rate_hz: float = 25.0,
    t0: float = 0.0,
    jitter: float = 0.0,
    noise_g: float = 0.01,
    start: FloatArray | None = None,
) -> Trace:
    """Activities ``(name, duration_s)`` one after the other, each starting in the posture the
    previous one ended in (see :func:`synthesize` for the other parameters)."""
    if not segments:
        raise ConfigError("compose needs at least one segment")
    traces: list[Trace] = []
    t, pose = t0, start
    for activity, duration in segments:
        tr = synthesize(activity, rng, rate_hz=rate_hz, duration_s=duration, t0=t,
                        jitter=jitter, noise_g=noise_g, start=pose)  # fmt: skip
        traces.append(tr)
        t, pose = tr.end_t, tr.end_pose
    return concatenate(traces)


STANDARD: dict[str, tuple[tuple[str, float], ...]] = {
    "fall_forward": (("walking", 20.0), ("fall_forward", 110.0)),
    "fall_backward": (("walking", 20.0), ("fall_backward", 110.0)),
    "fall_sideways": (("walking", 20.0), ("fall_sideways", 110.0)),
    "fall_slump": (("walking", 20.0), ("fall_slump", 110.0)),
    "fall_recover": (("walking", 20.0), ("fall_recover", 12.0), ("walking", 60.0)),
    "adl_walking": (("standing", 5.0), ("walking", 120.0)),
    "adl_sitting_down": (
        ("walking", 20.0), ("sitting_down", 90.0), ("standing_up", 5.0), ("walking", 20.0),
    ),
    "adl_sitting_down_hard": (
        ("walking", 20.0), ("sitting_down_hard", 90.0), ("standing_up", 5.0), ("walking", 20.0),
    ),
    "adl_lying_in_bed": (("walking", 15.0), ("lying_down", 300.0)),
    "adl_bending": (
        ("walking", 15.0), ("bending", 10.0), ("walking", 15.0), ("bending", 12.0),
        ("walking", 20.0), ("bending", 8.0), ("walking", 40.0),
    ),
}  # fmt: skip
"""Named scenarios of :func:`standard_traces`: ``fall_*`` are falls, ``adl_*`` daily activities."""


def standard_traces(
    rng: np.random.Generator, *, rate_hz: float = 25.0, jitter: float = 0.0
) -> dict[str, Trace]:
    """Every scenario of :data:`STANDARD`, each from its own child generator of ``rng`` (so a
    scenario does not change when another is added)."""
    children = rng.spawn(len(STANDARD))
    return {
        name: compose(segs, child, rate_hz=rate_hz, jitter=jitter)
        for (name, segs), child in zip(STANDARD.items(), children, strict=True)
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firmware_sim.accelerometer --out DIR [--seed N] [--rate HZ] [--jitter F]``."""
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim.accelerometer",
        description="Write synthetic badge accelerometer traces (t,ax,ay,az CSV), one per "
        "scenario: fall_*.csv are falls, adl_*.csv daily activities.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--rate", type=float, default=25.0, help="sample rate in Hz (default 25)")
    parser.add_argument(
        "--jitter", type=float, default=0.0, help="timing jitter, fraction of the period (0 to <1)"
    )
    args = parser.parse_args(argv)
    try:
        traces = standard_traces(np.random.default_rng(args.seed), rate_hz=args.rate,
                                 jitter=args.jitter)  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        for name, tr in traces.items():
            path = args.out / f"{name}.csv"
            write_csv(tr, path)
            print(f"{path}: {len(tr)} samples, {tr.t[-1] - tr.t[0]:.1f} s")
    except (ConfigError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
