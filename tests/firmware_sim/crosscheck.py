"""An independent model of a wearer's small movements, to cross-check the man-down detector.

The synthesiser (firmware_sim.activities) models a small movement as a Hann-windowed sinusoid
with a trunk wobble; the detector's thresholds were chosen looking at those traces. This model is
deliberately different, so the detector is not only tested on the distribution it was tuned on:

- movements are band-passed (0.5–3 Hz) Gaussian noise, switched on in bursts of 0.4–1.6 s with
  exponential gaps (a Poisson process) and a log-normal spread of burst sizes;
- the posture wanders slowly (under 0.3 Hz, random walk), and breathing is an independent pitch
  oscillation whose depth can be set well beyond the synthesiser's 0.3–0.8°.

Everything is added to a trace made with ``fidget_g=0`` (a motionless body): a small rotation
``theta`` turns every sample ``a`` into ``a - theta × a``, and linear movements add. Randomness
only through the generator passed in; times may be irregular (the filters run on sample index at
the nominal rate).

Going down is modelled independently too (:func:`turned_body`): a body turning from upright about
a random horizontal axis with a cumulative-Gaussian angle profile (not the synthesiser's eased
keyframes), optionally hitting the floor with a Gaussian jolt and a rebound (not its half-sine).
"""

from __future__ import annotations

import numpy as np
from firmware_sim.accelerometer import FloatArray, Trace
from scipy.signal import butter, sosfilt
from scipy.spatial.transform import Rotation
from scipy.special import ndtr


def movement_bursts(
    t: FloatArray,
    rng: np.random.Generator,
    rms_g: float,
    *,
    rate_hz: float,
    mean_gap_s: float = 4.0,
    start_s: float = -np.inf,
) -> FloatArray:
    """Linear movements (N, 3) in g: bursts whose per-axis RMS is log-normal around ``rms_g``
    (σ = 0.5 in log), lasting 0.4–1.6 s, gaps exponential with mean ``mean_gap_s``, none before
    ``start_s``."""
    sos = butter(2, [0.5, 3.0], btype="bandpass", fs=rate_hz, output="sos")
    noise = sosfilt(sos, rng.normal(size=(t.size + int(5 * rate_hz), 3)), axis=0)
    noise = noise[-t.size :] / noise.std()  # drop the filter's start-up, unit RMS
    span = float(t[-1] - max(t[0], start_s))
    k = int(span / mean_gap_s * 2) + 2
    starts = max(t[0], start_s) + np.cumsum(rng.exponential(mean_gap_s, k))
    durs = rng.uniform(0.4, 1.6, k)
    sizes = rms_g * rng.lognormal(0.0, 0.5, k)
    u = (t[:, None] - starts[None, :]) / durs[None, :]  # (N, K) position within each burst
    gate = np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
    envelope = (gate * sizes).sum(axis=1) * np.sqrt(8.0 / 3.0)  # sin² window: mean square 3/8
    out: FloatArray = noise * envelope[:, None]
    return out


def posture_wander(t: FloatArray, rng: np.random.Generator, rms_deg: float) -> FloatArray:
    """Slow posture changes as rotation vectors (N, 3), rad: a random walk low-passed below
    0.3 Hz, scaled to ``rms_deg`` about each horizontal axis, none about the trunk axis."""
    rate = (t.size - 1) / float(t[-1] - t[0])
    sos = butter(1, 0.3, btype="lowpass", fs=rate, output="sos")
    walk = sosfilt(sos, np.cumsum(rng.normal(size=(t.size, 2)), axis=0), axis=0)
    walk = walk - walk.mean(axis=0)
    walk = walk / np.maximum(walk.std(axis=0), 1e-12) * np.radians(rms_deg)
    out: FloatArray = np.column_stack([walk, np.zeros(t.size)])
    return out


def breathing(
    t: FloatArray, rng: np.random.Generator, depth_deg: float, per_min: float = 15.0
) -> FloatArray:
    """Chest rise and fall as a pitch oscillation of ``depth_deg`` (rotation vectors (N, 3))."""
    phase = rng.uniform(0.0, 2 * np.pi)
    pitch = np.radians(depth_deg) * np.sin(2 * np.pi * per_min / 60.0 * t + phase)
    out: FloatArray = np.column_stack([np.zeros(t.size), pitch, np.zeros(t.size)])
    return out


def perturb(tr: Trace, rotvec: FloatArray, linear: FloatArray) -> Trace:
    """``tr`` with every sample turned by the small rotation ``rotvec`` (N, 3) and ``linear``
    (N, 3) g added (the trace's marks and end pose are kept)."""
    acc = tr.acc - np.cross(rotvec, tr.acc) + linear
    return Trace(tr.t, acc, end_t=tr.end_t, end_pose=tr.end_pose, marks=tr.marks)


def turned_body(
    t: FloatArray,
    rng: np.random.Generator,
    *,
    turn_at_s: float,
    turn_s: float,
    angle_deg: float,
    impact_g: float = 0.0,
    noise_g: float = 0.01,
) -> Trace:
    """A motionless body (samples at ``t (N,)``) that turns from upright by ``angle_deg`` about
    a random horizontal axis, 95 % of the turn within ``turn_s`` centred on ``turn_at_s``; with
    ``impact_g`` it hits the floor at the end of the turn (a 50-ms Gaussian jolt along the
    vertical peaking at ``impact_g`` in |acc|, then a rebound of 30 % of it). Marks ``turn``
    and ``down`` are the start and the end of the turn."""
    phi = rng.uniform(0.0, 2 * np.pi)
    axis = np.array([np.cos(phi), np.sin(phi), 0.0])
    theta = np.radians(angle_deg) * ndtr((t - turn_at_s) / (turn_s / 4.0))
    pose = Rotation.from_rotvec(theta[:, None] * axis).as_matrix()  # badge to world (N, 3, 3)
    world = np.zeros((t.size, 3))
    world[:, 2] = 1.0
    if impact_g > 0.0:
        dt = t - (turn_at_s + turn_s / 2.0)
        jolt = np.exp(-0.5 * (dt / 0.05) ** 2) - 0.3 * np.exp(-0.5 * ((dt - 0.12) / 0.05) ** 2)
        world[:, 2] += (impact_g - 1.0) * jolt
    acc = np.einsum("nji,nj->ni", pose, world) + noise_g * rng.normal(size=(t.size, 3))
    marks = ((turn_at_s - turn_s / 2.0, "turn"), (turn_at_s + turn_s / 2.0, "down"))
    return Trace(t, acc, end_pose=pose[-1], marks=marks)
