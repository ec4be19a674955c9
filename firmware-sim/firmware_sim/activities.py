"""Activities of a badge wearer for synthetic accelerometer traces: what the body does, by name.

An activity builder turns sample times into a :class:`Motion`: the posture over time, whole-body
acceleration in world axes (free fall, impacts) and the trunk's own movements in badge axes
(gait, small movements). :func:`firmware_sim.accelerometer.synthesize` turns a motion into
samples. Figures (DOMAIN.md): step cadence 1.8–2 Hz with 0.2–0.3 g vertical trunk oscillation;
real falls peak 1.8–3 g, a slump about 1.8 g, sitting down hard 4–5 g. Small voluntary movements
are sized by ``fidget_g`` (:data:`firmware_sim.movements.FIDGET_G`). These are plausible shapes
to exercise the detector, not recordings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_sim.movements import (
    breathing,
    bursts,
    event_times,
    fidgets,
    gait,
    hann,
    pulse,
    ramp,
    sway,
)
from firmware_sim.posture import I3, PosePath, X, Y, Z, angle, rot, rotvec_to_matrix, turn_time

FloatArray = npt.NDArray[np.float64]
Rng = np.random.Generator


@dataclass
class Motion:
    """What the body does at N sample times."""

    pose: FloatArray  # (N, 3, 3) badge-to-world, wobble included
    a_world: FloatArray  # (N, 3) g, whole-body acceleration in world axes
    a_badge: FloatArray  # (N, 3) g, the trunk's own movements in badge axes
    marks: list[tuple[float, str]]  # labelled instants (s from the activity start)


Builder = Callable[[FloatArray, FloatArray, Rng, float, float], Motion]
"""``builder(t (N,), start pose (3, 3), rng, duration_s, fidget_g) -> Motion``."""


def _motion(
    t: FloatArray,
    path: PosePath,
    rv: FloatArray,
    a_world: FloatArray | None = None,
    a_badge: FloatArray | None = None,
    marks: list[tuple[float, str]] | None = None,
) -> Motion:
    zeros = np.zeros((t.size, 3))
    return Motion(
        path.eval(t) @ rotvec_to_matrix(rv),
        zeros if a_world is None else a_world,
        zeros if a_badge is None else a_badge,
        marks or [],
    )


def _standing(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Standing still (at a desk, in a queue): upright with postural sway, shifting weight or
    reaching every 4–15 s; with ``fidget_g = 0`` sway only, which the detector sees as none."""
    p = PosePath(start)
    p.move(turn_time(start, I3), I3)
    a, rv = fidgets(t, rng, event_times(rng, p.t + rng.uniform(1.0, 6.0), dur - 1.0, (4.0, 15.0)),
                    fid)  # fmt: skip
    return _motion(t, p, rv + sway(t, rng, 0.7), a_badge=a)


def _walking(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    lean = rot(Y, rng.uniform(3.0, 6.0))
    p = PosePath(start)
    t_on = p.move(turn_time(start, lean), lean)
    a, rv = gait(t, rng, t_on, dur)
    return _motion(t, p, rv + sway(t, rng, 0.3), a_badge=a)


def _seated_life(
    t: FloatArray, rng: Rng, first: float, dur: float, fid: float
) -> tuple[FloatArray, FloatArray]:
    """Seated: a small movement (writing, reaching, shifting) every 4–15 s, and breathing."""
    a, rv = fidgets(t, rng, event_times(rng, first, dur - 1.0, (4.0, 15.0)), fid)
    return a, rv + breathing(t, rng)


def _sitting(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    seat = rot(Y, -rng.uniform(5.0, 15.0))
    p = PosePath(start)
    p.move(turn_time(start, seat), seat)
    a, rv = _seated_life(t, rng, p.t + rng.uniform(1.0, 6.0), dur, fid)
    return _motion(t, p, rv, a_badge=a)


def _sit_down(
    t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float, hard: bool
) -> Motion:
    lean = rng.uniform(20.0, 30.0)
    p = PosePath(start)
    p.move(turn_time(start, I3), I3)
    p.move(rng.uniform(0.6, 0.9), rot(Y, lean))
    descent = rng.uniform(0.25, 0.4) if hard else rng.uniform(0.5, 0.8)
    t_seat = p.move(descent, rot(Y, 0.6 * lean))
    p.move(rng.uniform(0.8, 1.5), rot(Y, -rng.uniform(5.0, 15.0)))
    a_world = np.zeros((t.size, 3))
    dip = rng.uniform(0.4, 0.6) if hard else rng.uniform(0.1, 0.2)
    a_world[:, 2] -= dip * hann(t, t_seat - descent / 2, descent)
    # seat contact: soft 1.3–1.7 g; hard 4–5 g with the trunk still near upright (DOMAIN.md)
    peak = rng.uniform(3.0, 4.0) if hard else rng.uniform(0.3, 0.7)
    width = rng.uniform(0.06, 0.1) if hard else rng.uniform(0.15, 0.25)
    a_world[:, 2] += peak * pulse(t, t_seat, width)
    a, rv = _seated_life(t, rng, p.t + rng.uniform(3.0, 8.0), dur, fid)
    marks = [(t_seat, "seat_contact")] + ([(t_seat, "impact")] if hard else [])
    return _motion(t, p, rv, a_world, a, marks)


def _sitting_down(t: FloatArray, s: FloatArray, rng: Rng, d: float, fid: float) -> Motion:
    return _sit_down(t, s, rng, d, fid, hard=False)


def _sitting_down_hard(t: FloatArray, s: FloatArray, rng: Rng, d: float, fid: float) -> Motion:
    return _sit_down(t, s, rng, d, fid, hard=True)


def _standing_up(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    lean = rot(Y, rng.uniform(25.0, 35.0))
    p = PosePath(start)
    t_push = p.move(0.8 + 1.5 * angle(start, lean) / (np.pi / 2), lean)
    t_up = p.move(rng.uniform(0.8, 1.2), I3)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] += rng.uniform(0.15, 0.3) * hann(t, t_push, 1.0)
    return _motion(t, p, sway(t, rng, 0.7), a_world, marks=[(t_up, "upright")])


def _lying_still(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Motionless in the current posture: breathing only (asleep, unconscious)."""
    return _motion(t, PosePath(start), breathing(t, rng))


def _lying_awake(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Lying awake in the current posture: a small movement every 5–20 s, breathing; no turning
    over (see ``lying_down`` for that)."""
    small = event_times(rng, rng.uniform(2.0, 10.0), dur - 1.0, (5.0, 20.0))
    a, rv = fidgets(t, rng, small, fid)
    return _motion(t, PosePath(start), rv + breathing(t, rng), a_badge=a)


def _lying_down(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Into bed, a controlled transition: sit on the edge (trunk near upright, seat contact
    1.1–1.3 g), stay seated 1–3 s, lie back over 3–5 s (the trunk turns at most about 55°/s,
    the mattress takes it without impact), then lie awake: a small movement every 5–20 s,
    turning over (to a side, or back) every 40–100 s, breathing."""
    p = PosePath(start)
    p.move(turn_time(start, I3), I3)
    p.move(rng.uniform(0.6, 0.9), rot(Y, rng.uniform(15.0, 25.0)))
    t_seat = p.move(rng.uniform(0.6, 0.9), rot(Y, -rng.uniform(0.0, 5.0)))
    p.hold_until(p.t + rng.uniform(1.0, 3.0))
    lie = rot(Y, -rng.uniform(75.0, 90.0))  # supine; the bed head may be raised a little
    t_lie = p.move(rng.uniform(3.0, 5.0), lie)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] += rng.uniform(0.1, 0.3) * pulse(t, t_seat, 0.25)
    a_world[:, 2] += rng.uniform(0.05, 0.1) * pulse(t, t_lie, 0.3)
    turns = event_times(rng, t_lie + rng.uniform(20.0, 60.0), dur - 4.0, (40.0, 100.0))
    side = 0
    for tt in turns:  # a handful of posture keyframes, not a hot path
        side = int(rng.choice([-1, 1])) if side == 0 else 0
        p.hold_until(tt)
        p.move(rng.uniform(1.5, 3.0), lie @ rot(Z, 90.0 * side))
    a_turn, rv_turn = bursts(t, rng, turns + 1.0, (0.2, 0.4), (2.0, 3.0), (0.0, 2.0))
    small = event_times(rng, t_lie + rng.uniform(2.0, 10.0), dur - 1.0, (5.0, 20.0))
    a, rv = fidgets(t, rng, small, fid)
    rv = rv + rv_turn + breathing(t, rng)
    return _motion(t, p, rv, a_world, a + a_turn, [(t_seat, "seated"), (t_lie, "lying")])


def _bending(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Bend to pick something up: trunk 60–90° forward for 1.5–4 s with reaching, then back."""
    p = PosePath(start)
    p.move(turn_time(start, I3), I3)
    p.hold_until(p.t + rng.uniform(0.5, 2.0))
    t_down = p.move(rng.uniform(0.8, 1.5), rot(Y, rng.uniform(60.0, 90.0)))
    hold = rng.uniform(1.5, 4.0)
    p.hold_until(t_down + hold)
    p.move(rng.uniform(0.8, 1.5), I3)
    reach = t_down + np.arange(0.5, hold, 1.0)
    a, rv = bursts(t, rng, reach, (0.1, 0.3), (0.6, 1.2))
    return _motion(t, p, rv + sway(t, rng, 0.7), a_badge=a, marks=[(t_down, "bent")])


def _fall_pose(rng: Rng, kind: str) -> FloatArray:
    """Where a fall of this kind ends: face down, on the back, on a side, or slumped."""
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    if kind == "forward":
        return rot(Y, rng.uniform(80.0, 100.0)) @ rot(X, rng.uniform(-15.0, 15.0))
    if kind == "backward":
        return rot(Y, -rng.uniform(80.0, 100.0)) @ rot(X, rng.uniform(-15.0, 15.0))
    if kind == "sideways":
        return rot(X, side * rng.uniform(80.0, 100.0)) @ rot(Y, rng.uniform(-15.0, 15.0))
    if rng.uniform() < 0.5:  # slump: collapse forward or onto a side
        return rot(Y, rng.uniform(60.0, 90.0)) @ rot(X, rng.uniform(-20.0, 20.0))
    return rot(X, side * rng.uniform(70.0, 90.0))


def _fall(t: FloatArray, start: FloatArray, rng: Rng, dur: float, kind: str) -> Motion:
    """Loss of balance, descent, impact, then either a few seconds of settling and lying still
    (breathing) or, for ``recover``, getting up again. Toppling forward, backward or sideways
    takes 0.6–0.9 s, accelerating to the impact (falls from standing reach the floor about
    0.7 s after losing balance: Hsiao & Robinovitch, J Biomech 31:1–9, 1998); a slump (fainting)
    crumples over 1.5–3 s, as slowly as lying down, and is told from it by its impact."""
    recover = kind == "recover"
    if recover:
        kind = "forward" if rng.uniform() < 0.5 else "sideways"
    final = _fall_pose(rng, kind)
    slump = kind == "slump"
    p = PosePath(start)
    p.move(0.5 * turn_time(start, I3), I3)
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
    a_world[:, 2] += (peak - 1.0) * pulse(t, t_imp, width)
    heading = rng.uniform(0.0, 2 * np.pi)
    shear = rng.uniform(0.0, 0.2) * (peak - 1.0) * pulse(t, t_imp, width)
    a_world[:, 0] += shear * np.cos(heading)
    a_world[:, 1] += shear * np.sin(heading)
    if not slump:  # rebound
        rebound = rng.uniform(0.3, 0.5) * (peak - 1.0)
        a_world[:, 2] += rebound * pulse(t, t_imp + rng.uniform(0.15, 0.25), 0.8 * width)
    stumble = np.array([t_fall + 0.1])
    a, rv = bursts(t, rng, stumble, (0.05, 0.15) if slump else (0.3, 0.6), (0.3, 0.5), (0.0, 2.0))
    marks = [(t_fall, "fall"), (t_imp, "impact")]
    if recover:  # moves on the floor for 2–4 s, kneels, stands up
        t_rise = t_imp + rng.uniform(2.0, 4.0)
        floor = np.arange(t_imp + 0.5, t_rise, 0.6)
        a2, rv2 = bursts(t, rng, floor, (0.2, 0.5), (0.6, 1.0), (2.0, 8.0))
        p.hold_until(t_rise)
        p.move(rng.uniform(1.0, 1.5), rot(Y, rng.uniform(30.0, 45.0)))
        t_up = p.move(rng.uniform(0.8, 1.2), I3)
        a_world[:, 2] += rng.uniform(0.2, 0.35) * hann(t, t_up - 0.6, 1.2)
        rv2 = rv2 + sway(t, rng, 0.7) * ramp(t, t_up, 1.0)[:, None]
        marks.append((t_up, "upright"))
    else:  # settles within 0.3–2.5 s, then lies still
        settle = t_imp + np.sort(rng.uniform(0.3, 2.5, 2))
        a2, rv2 = bursts(t, rng, settle, (0.05, 0.12) if slump else (0.1, 0.3), (0.5, 1.0))
    return _motion(t, p, rv + rv2 + breathing(t, rng), a_world, a + a2, marks)


def _collapse(t: FloatArray, start: FloatArray, rng: Rng, dur: float, fid: float) -> Motion:
    """Slow collapse without impact (fainting against a wall or furniture): the knees give way
    and the wearer slides down to sitting on the floor (1.5–3 s, trunk 10–30° off vertical,
    buttocks landing softly under 1.3 g), then keels over onto a side or the back over 2.5–4 s
    (a controlled-looking rotation, no impact) and lies still (breathing)."""
    p = PosePath(start)
    p.move(0.5 * turn_time(start, I3), I3)
    p.hold_until(p.t + rng.uniform(0.2, 0.6))
    t_fall = p.t
    slide = rng.uniform(1.5, 3.0)
    way = 1.0 if rng.uniform() < 0.5 else -1.0  # slumping forward, or back against a wall
    t_floor = p.move(slide, rot(Y, way * rng.uniform(10.0, 30.0)))
    p.hold_until(t_floor + rng.uniform(0.5, 2.0))
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    final = (rot(X, side * rng.uniform(70.0, 90.0)) if rng.uniform() < 0.6  # onto a side
             else rot(Y, way * rng.uniform(70.0, 90.0)))  # fmt: skip
    t_lie = p.move(rng.uniform(2.5, 4.0), final)
    a_world = np.zeros((t.size, 3))
    a_world[:, 2] -= rng.uniform(0.05, 0.15) * hann(t, t_fall + slide / 2, slide)
    a_world[:, 2] += rng.uniform(0.1, 0.25) * pulse(t, t_floor, 0.3)  # soft landing on the floor
    a_world[:, 2] += rng.uniform(0.03, 0.08) * pulse(t, t_lie, 0.4)
    settle = t_lie + np.sort(rng.uniform(0.3, 2.0, 2))
    a, rv = bursts(t, rng, settle, (0.05, 0.1), (0.5, 1.0))
    marks = [(t_fall, "fall"), (t_floor, "floor"), (t_lie, "lying")]
    return _motion(t, p, rv + breathing(t, rng), a_world, a, marks)


def _fall_kind(kind: str) -> Builder:
    def build(t: FloatArray, s: FloatArray, rng: Rng, d: float, fid: float) -> Motion:
        return _fall(t, s, rng, d, kind)

    return build


BUILDERS: dict[str, Builder] = {
    "standing": _standing,
    "walking": _walking,
    "sitting": _sitting,
    "sitting_down": _sitting_down,
    "sitting_down_hard": _sitting_down_hard,
    "standing_up": _standing_up,
    "lying_down": _lying_down,
    "lying_still": _lying_still,
    "lying_awake": _lying_awake,
    "bending": _bending,
    "fall_forward": _fall_kind("forward"),
    "fall_backward": _fall_kind("backward"),
    "fall_sideways": _fall_kind("sideways"),
    "fall_slump": _fall_kind("slump"),
    "fall_recover": _fall_kind("recover"),
    "fall_collapse": _collapse,
}

ACTIVITIES: tuple[str, ...] = tuple(BUILDERS)
"""Activity names accepted by :func:`firmware_sim.accelerometer.synthesize`. Each starts from
the previous posture and eases into its own; ``lying_still`` keeps whatever posture it starts
in, as does ``lying_awake``. ``fall_collapse`` is the slow collapse without impact.
``fidget_g`` sizes the small movements of ``standing``,
``sitting``, ``sitting_down``, ``sitting_down_hard``, ``lying_down`` and ``lying_awake`` (not
gait, bending, turning over or falls)."""
