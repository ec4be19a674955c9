"""Signal parts of synthetic accelerometer traces: pulses, small movements, sway, breathing, gait.

Each function returns arrays over sample times ``t (N,)``: linear accelerations (N, 3) in g in
badge axes, or posture wobbles as rotation vectors (N, 3) in rad. Randomness only through the
``np.random.Generator`` passed in. Used by :mod:`firmware_sim.activities`.

Small voluntary movements ("fidgets": shifting in a chair, reaching across a desk, moving a leg
in bed) are sized by one amplitude, ``fidget_g``; see :data:`FIDGET_G` for the default and how
much of it is an assumption.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

FIDGET_G = 0.08
"""Default median size of a small voluntary movement at the trunk: peak linear acceleration in g
(sizes are log-uniform in [½, 2] × this, so 0.04–0.16 g) with a trunk wobble of 30°/g (2.4°).

An assumption, not a measurement: no published figure for chest-worn badges was found. Chosen
so that, at the same 4 mg sensor noise, sitting and standing have the same 90th-percentile
detector activity (about 0.027 g) as an independently written second generator, and consistent
with the physics of a small reach: a 2–5° trunk lean over 1–2 s gives a few hundredths of a g of
linear acceleration at the chest plus the change of the gravity component. The detector is
tested over 0.03–0.3 g (tests/firmware_sim); docs/mandown.md says where it stops seeing them."""

FIDGET_TILT_DEG_PER_G = 30.0
"""Trunk wobble that goes with a small movement: 30° per g of its size (2.4° at the default)."""


def hann(t: FloatArray, centre: float, width: float) -> FloatArray:
    """Hann window (N,) of full width ``width`` centred at ``centre``."""
    x = (t - centre) / width
    out: FloatArray = np.where(np.abs(x) < 0.5, 0.5 * (1.0 + np.cos(2.0 * np.pi * x)), 0.0)
    return out


def pulse(t: FloatArray, centre: float, width: float) -> FloatArray:
    """Half-sine impact pulse (N,), peak 1 at ``centre``, full width ``width``."""
    x = (t - centre) / width
    out: FloatArray = np.where(np.abs(x) < 0.5, np.cos(np.pi * x), 0.0)
    return out


def ramp(t: FloatArray, start: float, dur: float) -> FloatArray:
    """Smooth step (N,) from 0 at ``start`` to 1 at ``start + dur``."""
    u = np.clip((t - start) / dur, 0.0, 1.0)
    out: FloatArray = u * u * (3.0 - 2.0 * u)
    return out


def event_times(
    rng: np.random.Generator, first: float, end: float, gap: tuple[float, float]
) -> FloatArray:
    """Instants (K,) from ``first`` with random gaps uniform in ``gap`` (s), all before ``end``."""
    n = max(0, int(np.ceil((end - first) / gap[0])) + 1)
    out = first + np.concatenate([[0.0], np.cumsum(rng.uniform(*gap, n))])
    res: FloatArray = out[out < end]
    return res


def unit_vectors(rng: np.random.Generator, n: int) -> FloatArray:
    """Random directions (n, 3), uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    out: FloatArray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def _shaped(
    t: FloatArray,
    rng: np.random.Generator,
    centres: FloatArray,
    amps: FloatArray,
    angles: FloatArray,
    durs: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Movements centred at ``centres`` (K,) lasting ``durs`` (K,) s: Hann-windowed 0.8–2.5 Hz
    oscillations of peak ``amps`` (K,) g in random directions (a_badge (N, 3)) and trunk wobbles
    peaking at ``angles`` (K,) rad about random axes (rotation vectors (N, 3))."""
    k = centres.size
    freqs, phases = rng.uniform(0.8, 2.5, k), rng.uniform(0.0, 2 * np.pi, k)
    dirs, axes = unit_vectors(rng, k), unit_vectors(rng, k)
    dt = t[:, None] - centres[None, :]
    w = np.where(np.abs(dt) < durs / 2, 0.5 * (1.0 + np.cos(2 * np.pi * dt / durs)), 0.0)
    osc = w * np.sin(2 * np.pi * freqs * dt + phases)
    a: FloatArray = (osc * amps) @ dirs
    rv: FloatArray = (w * angles) @ axes
    return a, rv


def bursts(
    t: FloatArray,
    rng: np.random.Generator,
    centres: FloatArray,
    amp: tuple[float, float],
    dur: tuple[float, float] = (1.0, 2.5),
    tilt_deg: tuple[float, float] = (1.0, 5.0),
) -> tuple[FloatArray, FloatArray]:
    """Movements centred at ``centres`` (K,) with peak uniform in ``amp`` (g), duration uniform
    in ``dur`` (s) and trunk wobble uniform in ``tilt_deg``; returns a_badge (N, 3) and wobble
    rotation vectors (N, 3) (see :func:`_shaped`)."""
    k = centres.size
    amps, durs = rng.uniform(*amp, k), rng.uniform(*dur, k)
    angles = np.radians(rng.uniform(*tilt_deg, k))
    return _shaped(t, rng, centres, amps, angles, durs)


def fidgets(
    t: FloatArray,
    rng: np.random.Generator,
    centres: FloatArray,
    fidget_g: float,
    dur: tuple[float, float] = (1.0, 2.5),
) -> tuple[FloatArray, FloatArray]:
    """Small voluntary movements at ``centres`` (K,), each of size ``s`` log-uniform in
    [½, 2] × ``fidget_g`` (median ``fidget_g``): an oscillation of peak ``s`` g and a trunk
    wobble of ``s`` × :data:`FIDGET_TILT_DEG_PER_G` degrees (see :func:`_shaped`).
    ``fidget_g = 0`` gives none. Returns a_badge (N, 3) and wobble rotation vectors (N, 3)."""
    k = centres.size
    size = fidget_g * np.exp(rng.uniform(np.log(0.5), np.log(2.0), k))
    durs = rng.uniform(*dur, k)
    return _shaped(t, rng, centres, size, np.radians(size * FIDGET_TILT_DEG_PER_G), durs)


def sway(t: FloatArray, rng: np.random.Generator, amp_deg: float) -> FloatArray:
    """Postural sway: slow (0.1–0.5 Hz) pitch and roll wobble, rotation vectors (N, 3)."""
    f = rng.uniform(0.1, 0.5, (2, 2))
    ph = rng.uniform(0.0, 2 * np.pi, (2, 2))
    a = np.radians(amp_deg) * rng.uniform(0.5, 1.0, (2, 2))
    rv = np.zeros((t.size, 3))
    for ax in range(2):  # pitch and roll, two sinusoids each
        wave = np.sin(2 * np.pi * f[ax, :, None] * t + ph[ax, :, None])
        rv[:, ax] = (a[ax, :, None] * wave).sum(axis=0)
    return rv


def breathing(t: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Chest rise and fall: 0.3–0.8° pitch at 12–20 breaths/min, rotation vectors (N, 3)."""
    rv = np.zeros((t.size, 3))
    amp = np.radians(rng.uniform(0.3, 0.8))
    f, ph = rng.uniform(0.2, 0.33), rng.uniform(0.0, 2 * np.pi)
    rv[:, 1] = amp * np.sin(2 * np.pi * f * t + ph)
    return rv


def gait(
    t: FloatArray, rng: np.random.Generator, t_on: float, t_off: float
) -> tuple[FloatArray, FloatArray]:
    """Walking between ``t_on`` and ``t_off``: cadence 1.8–2 steps/s, vertical oscillation
    0.2–0.3 g at the step frequency, forward 0.08–0.15 g, lateral 0.05–0.1 g at the stride
    frequency (half the step frequency); returns a_badge (N, 3) and trunk wobble (N, 3)."""
    f = rng.uniform(1.8, 2.0)
    av, aap, aml = rng.uniform(0.2, 0.3), rng.uniform(0.08, 0.15), rng.uniform(0.05, 0.1)
    ph = rng.uniform(0.0, 2 * np.pi, 4)
    env = ramp(t, t_on, 1.0) * (1.0 - ramp(t, t_off - 0.6, 0.6))
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
