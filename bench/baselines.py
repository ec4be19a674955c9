"""Baseline locators for the accuracy bench: weighted centroid and naive least squares.

Both use the same log-distance model and calibration as the engine (DOMAIN.md:
``P = P0 - 10 n log10(d)``) so that a difference in accuracy comes from the method, not the
calibration. Shapes: ``N`` fixes, ``G`` gateways, ``W`` time windows.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def weighted_centroid(
    rssi: ArrayLike,
    gateway_xyz: ArrayLike,
    p0: ArrayLike,
    n: ArrayLike,
    gateway_floor: ArrayLike | None = None,
) -> tuple[FloatArray, IntArray]:
    """Weighted centroid (Blumenthal et al. 2007, weights ``1 / d̂²``) of N RSSI vectors.

    rssi (N, G) dBm, NaN where not heard; gateway_xyz (G, 3); p0 (G,) RSSI at 1 m; n (G,)
    path-loss exponents; gateway_floor (G,) floor indices (default: one floor). The floor is
    the one of the strongest gateway relative to its P0, and only that floor's heard gateways
    take part. ``d̂ = 10^((P0 - RSSI) / (10 n))``, so the weight is ``10^((RSSI - P0) / (5 n))``.
    Returns xy (N, 2) (NaN where nothing was heard) and floor (N,) (-1 where nothing heard).
    """
    y = np.asarray(rssi, dtype=np.float64)
    gw = np.asarray(gateway_xyz, dtype=np.float64)
    g = gw.shape[0]
    p0_ = np.broadcast_to(np.asarray(p0, dtype=np.float64), (g,))
    n_ = np.broadcast_to(np.asarray(n, dtype=np.float64), (g,))
    fl = np.zeros(g, np.intp) if gateway_floor is None else np.asarray(gateway_floor, np.intp)
    heard = np.isfinite(y)
    rel = np.where(heard, y - p0_[None, :], -np.inf)  # (N, G)
    floor = np.where(heard.any(axis=1), fl[np.argmax(rel, axis=1)], -1)
    use = heard & (fl[None, :] == floor[:, None])
    rel_u = np.where(use, rel, -np.inf)
    top = np.max(rel_u, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.where(use, 10.0 ** ((rel_u - top) / (5.0 * n_[None, :])), 0.0)  # scaled: no underflow
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xy = (w @ gw[:, :2]) / total[:, None]
    return np.asarray(xy, dtype=np.float64), floor.astype(np.intp)


def least_squares_fix(
    rssi: ArrayLike,
    gateway_xyz: ArrayLike,
    p0: ArrayLike,
    n: ArrayLike,
    *,
    tag_z: float,
    bounds: tuple[float, float, float, float],
) -> FloatArray:
    """Unweighted least squares in dB on the log-distance model, one RSSI vector (G,).

    ``scipy.optimize.least_squares`` (trust-region reflective) minimises
    ``Σ (RSSI_j - P0_j + 10 n_j log10 d_j)²`` over the heard gateways, with the tag at absolute
    height ``tag_z`` and inside ``bounds`` (xmin, ymin, xmax, ymax), starting from the plain
    mean of the heard gateways. Returns xy (2,), NaN when fewer than three gateways are heard.
    """
    y = np.asarray(rssi, dtype=np.float64)
    gw = np.asarray(gateway_xyz, dtype=np.float64)
    g = gw.shape[0]
    p0_ = np.broadcast_to(np.asarray(p0, dtype=np.float64), (g,))
    n_ = np.broadcast_to(np.asarray(n, dtype=np.float64), (g,))
    heard = np.isfinite(y)
    if heard.sum() < 3:
        return np.full(2, np.nan)
    yh, gh, ph, nh = y[heard], gw[heard], p0_[heard], n_[heard]
    dz2 = (tag_z - gh[:, 2]) ** 2
    lo = np.array(bounds[:2], dtype=np.float64)
    hi = np.array(bounds[2:], dtype=np.float64)

    def residuals(p: FloatArray) -> FloatArray:
        d2 = (p[0] - gh[:, 0]) ** 2 + (p[1] - gh[:, 1]) ** 2 + dz2
        return np.asarray(yh - ph + 5.0 * nh * np.log10(np.maximum(d2, 1e-6)))

    def jacobian(p: FloatArray) -> FloatArray:
        dx, dy = p[0] - gh[:, 0], p[1] - gh[:, 1]
        k = 10.0 * nh / (np.log(10.0) * np.maximum(dx * dx + dy * dy + dz2, 1e-6))
        return np.column_stack([k * dx, k * dy])

    start = np.clip(gh[:, :2].mean(axis=0), lo + 1e-6, hi - 1e-6)
    result = least_squares(residuals, start, jac=jacobian, bounds=(lo, hi), method="trf")
    return np.asarray(result.x, dtype=np.float64)


def window_means(
    t: ArrayLike, gateway: ArrayLike, rssi: ArrayLike, n_gateways: int, window_s: float
) -> tuple[FloatArray, FloatArray]:
    """Mean RSSI per gateway in consecutive windows of ``window_s`` from the first time.

    t (M,), gateway (M,) indices, rssi (M,) dBm. Returns the window centres (W,) of windows
    holding at least one observation and their means (W, G) in dBm (NaN: not heard there).
    """
    tt = np.asarray(t, dtype=np.float64)
    gi = np.asarray(gateway, dtype=np.intp)
    y = np.asarray(rssi, dtype=np.float64)
    if tt.size == 0:
        return np.zeros(0), np.zeros((0, n_gateways))
    t0 = float(tt.min())
    k = np.floor((tt - t0) / window_s).astype(np.intp)
    windows, inv = np.unique(k, return_inverse=True)
    cell = inv * n_gateways + gi
    size = windows.size * n_gateways
    total = np.bincount(cell, y, minlength=size)
    count = np.bincount(cell, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan).reshape(windows.size, n_gateways)
    centres = t0 + (windows + 0.5) * window_s
    return centres.astype(np.float64), mean
