"""Synthetic tri-axial accelerometer traces of a staff badge worn on the trunk (chest or belt).

Units are g. Badge axes: +z up along the trunk when the wearer stands, +x forward (out of the
chest), +y to the wearer's left, so standing still reads about (0, 0, 1). A sample is the specific
force in badge axes::

    acc(t) = R(t)ᵀ (up + a_world(t)) + a_badge(t) + noise

with ``R(t)`` the badge-to-world rotation (the posture), ``up = (0, 0, 1)`` (what an accelerometer
at rest senses), ``a_world`` whole-body acceleration in world axes (free fall, impacts) and
``a_badge`` the trunk's own movements (gait, small movements). The activities themselves are in
:mod:`firmware_sim.activities` (posture keyframes in :mod:`firmware_sim.posture`, signal parts in
:mod:`firmware_sim.movements`); orientation is continuous, also across the segments of
:func:`compose`. They are plausible shapes to exercise the detector, not recordings. Everything
is pure: randomness comes only from the ``np.random.Generator`` passed in.

Command: ``python -m firmware_sim.accelerometer --out DIR [--seed N] [--rate HZ] [--jitter F]
[--fidget G]`` writes one CSV (``t,ax,ay,az``) per trace of :func:`standard_traces`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from firmware_sim.activities import ACTIVITIES, BUILDERS
from firmware_sim.movements import FIDGET_G
from rtls.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

UP = np.array([0.0, 0.0, 1.0])
_I3 = np.eye(3)

__all__ = [
    "ACTIVITIES",
    "FIDGET_G",
    "STANDARD",
    "UP",
    "FloatArray",
    "Trace",
    "compose",
    "concatenate",
    "main",
    "standard_traces",
    "synthesize",
    "write_csv",
]


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
    fidget_g: float = FIDGET_G,
    start: FloatArray | None = None,
) -> Trace:
    """One activity for ``duration_s`` seconds sampled at ``rate_hz`` from ``t0``.

    ``jitter`` in [0, 1) moves each sample uniformly by up to ±jitter/2 of the nominal period
    (irregular spacing, still strictly increasing); ``noise_g`` is the white sensor noise per
    axis (g, 1 σ); ``fidget_g`` the typical peak of the wearer's small movements while standing,
    sitting or lying awake (0 for none; default :data:`FIDGET_G`); ``start`` the badge-to-world
    pose (3, 3) to start from (default upright). Raises ConfigError for an unknown activity or a
    bad parameter.
    """
    if activity not in BUILDERS:
        raise ConfigError(f"unknown activity {activity!r}; known: {', '.join(ACTIVITIES)}")
    for name, value, ok in (
        ("rate_hz", rate_hz, 0.0 < rate_hz <= 10_000.0),
        ("duration_s", duration_s, 0.0 < duration_s <= 86_400.0),
        ("jitter", jitter, 0.0 <= jitter < 1.0),
        ("noise_g", noise_g, 0.0 <= noise_g <= 1.0),
        ("fidget_g", fidget_g, 0.0 <= fidget_g <= 2.0),
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
    motion = BUILDERS[activity](np.append(t_rel, end), pose0, rng, end, fidget_g)
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
    fidget_g: float = FIDGET_G,
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
                        jitter=jitter, noise_g=noise_g, fidget_g=fidget_g,
                        start=pose)  # fmt: skip
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
    "adl_standing": (("walking", 15.0), ("standing", 120.0), ("walking", 15.0)),
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
    "fall_collapse": (("walking", 20.0), ("fall_collapse", 110.0)),
}  # fmt: skip
"""Named scenarios of :func:`standard_traces`: ``fall_*`` are falls, ``adl_*`` daily activities.
(New scenarios go at the end: each takes the next child generator.)"""


def standard_traces(
    rng: np.random.Generator,
    *,
    rate_hz: float = 25.0,
    jitter: float = 0.0,
    fidget_g: float = FIDGET_G,
) -> dict[str, Trace]:
    """Every scenario of :data:`STANDARD`, each from its own child generator of ``rng`` (so a
    scenario does not change when another is added)."""
    children = rng.spawn(len(STANDARD))
    return {
        name: compose(segs, child, rate_hz=rate_hz, jitter=jitter, fidget_g=fidget_g)
        for (name, segs), child in zip(STANDARD.items(), children, strict=True)
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firmware_sim.accelerometer --out DIR [--seed N] [--rate HZ] [--jitter F]
    [--fidget G]``."""
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
    parser.add_argument(
        "--fidget", type=float, default=FIDGET_G,
        help=f"typical peak of small movements in g (default {FIDGET_G}; 0 for none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        traces = standard_traces(np.random.default_rng(args.seed), rate_hz=args.rate,
                                 jitter=args.jitter, fidget_g=args.fidget)  # fmt: skip
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
