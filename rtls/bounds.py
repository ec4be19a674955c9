"""Cramér–Rao bound of RSSI positioning under the log-distance / log-normal model.

The model (DOMAIN.md, "Positioning figures"): the RSSI of gateway i is
``P_i = P0_i - 10 n_i log10(d_i) + X_i`` with ``X_i ~ N(0, σ_i²)`` independent across gateways.
Patwari et al. (2003), "Relative location estimation in wireless sensor networks", IEEE Trans.
Signal Processing 51(8), eq. (14)-(16): with ``b_i = 10 n_i / (σ_i ln 10)`` and ``u_i`` the unit
vector from gateway i to the position at distance ``d_i``, the Fisher information is

    F = Σ_i b_i² u_i u_iᵀ / d_i²,        RMSE ≥ sqrt(trace(F⁻¹)).

How the height enters: the unknown is the 2-D position (x, y) on a floor, while ``d_i`` is the
3-D distance to the (ceiling) gateway. Differentiating the mean RSSI with respect to (x, y) only
gives ``∂μ_i/∂(x, y) = -(10 n_i / ln 10) (x - x_i, y - y_i) / d_i²``, so ``u_i`` above is the
*horizontal projection* of the 3-D unit vector (shorter than 1 by the cosine of the elevation
angle) and ``d_i`` the 3-D distance. A gateway straight above the tag gives no information on
(x, y). Links closer than ``d_min`` (where the path loss is held constant, docs/radio-model.md)
carry no information either.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import RtlsError

FloatArray = NDArray[np.float64]

LN10 = float(np.log(10.0))


class BoundError(RtlsError):
    """Bad input to the bound (shape, NaN, non-positive σ or n)."""


def _per_gateway(name: str, value: ArrayLike, g: int) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(g, float(arr))
    if arr.shape != (g,):
        raise BoundError(f"{name} must be a scalar or have shape ({g},), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise BoundError(f"{name} must be finite and > 0")
    return arr


def fisher_information(
    positions: ArrayLike,
    gateway_xyz: ArrayLike,
    path_loss_exponent: ArrayLike,
    sigma_db: ArrayLike,
    *,
    heard: ArrayLike | None = None,
    height: ArrayLike = 0.0,
    d_min: float = 0.0,
) -> FloatArray:
    """Fisher information (N, 2, 2) of the 2-D position from the RSSI of the heard gateways.

    positions: (N, 2) ``x, y`` with absolute height ``height`` (scalar or (N,)), or (N, 3)
    ``x, y, z`` (``height`` ignored). gateway_xyz (G, 3) absolute. path_loss_exponent and
    sigma_db: scalars or (G,). heard: (N, G) bool, which gateways hear each position (default
    all). Links with 3-D distance below ``d_min`` contribute nothing.
    """
    pos = np.asarray(positions, dtype=np.float64)
    gw = np.asarray(gateway_xyz, dtype=np.float64)
    if gw.ndim != 2 or gw.shape[1] != 3:
        raise BoundError(f"gateway_xyz must have shape (G, 3), got {gw.shape}")
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise BoundError(f"positions must have shape (N, 2) or (N, 3), got {pos.shape}")
    if not (np.isfinite(pos).all() and np.isfinite(gw).all()):
        raise BoundError("positions and gateway_xyz must be finite")
    n_pos, g = pos.shape[0], gw.shape[0]
    if pos.shape[1] == 2:
        z = np.broadcast_to(np.asarray(height, dtype=np.float64), (n_pos,))
    else:
        z = pos[:, 2]
    n = _per_gateway("path_loss_exponent", path_loss_exponent, g)
    sigma = _per_gateway("sigma_db", sigma_db, g)
    b2 = (10.0 * n / (sigma * LN10)) ** 2  # (G,)
    dx = pos[:, 0:1] - gw[None, :, 0]  # (N, G)
    dy = pos[:, 1:2] - gw[None, :, 1]
    dz = z[:, None] - gw[None, :, 2]
    d2 = dx * dx + dy * dy + dz * dz
    # b² u_h u_hᵀ / d² with u_h = (dx, dy) / d  ->  b² (dx, dy)(dx, dy)ᵀ / d⁴
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(d2 > max(d_min, 0.0) ** 2, b2[None, :] / (d2 * d2), 0.0)
    if heard is not None:
        mask = np.asarray(heard, dtype=bool)
        if mask.shape != (n_pos, g):
            raise BoundError(f"heard must have shape ({n_pos}, {g}), got {mask.shape}")
        c = np.where(mask, c, 0.0)
    out = np.empty((n_pos, 2, 2))
    out[:, 0, 0] = np.einsum("ng,ng,ng->n", c, dx, dx)
    out[:, 0, 1] = out[:, 1, 0] = np.einsum("ng,ng,ng->n", c, dx, dy)
    out[:, 1, 1] = np.einsum("ng,ng,ng->n", c, dy, dy)
    return out


def crlb_covariance(fisher: ArrayLike) -> FloatArray:
    """Inverse (N, 2, 2) of Fisher matrices (N, 2, 2), closed form; +inf where singular."""
    f = np.asarray(fisher, dtype=np.float64)
    if f.ndim != 3 or f.shape[1:] != (2, 2):
        raise BoundError(f"fisher must have shape (N, 2, 2), got {f.shape}")
    a, b, c, d = f[:, 0, 0], f[:, 0, 1], f[:, 1, 0], f[:, 1, 1]
    det = a * d - b * c
    scale = np.maximum(np.abs(a) + np.abs(d), np.finfo(np.float64).tiny)
    ok = det > 1e-12 * scale * scale  # singular: fewer than 2 effective anchors, or collinear
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = np.where(ok, 1.0 / det, np.inf)
    out = np.empty_like(f)
    with np.errstate(invalid="ignore"):  # 0 * inf where singular, overwritten below
        out[:, 0, 0] = d * inv_det
        out[:, 0, 1] = -b * inv_det
        out[:, 1, 0] = -c * inv_det
        out[:, 1, 1] = a * inv_det
    out[~ok] = np.inf
    return out


def crlb_rmse(
    positions: ArrayLike,
    gateway_xyz: ArrayLike,
    path_loss_exponent: ArrayLike,
    sigma_db: ArrayLike,
    *,
    heard: ArrayLike | None = None,
    height: ArrayLike = 0.0,
    d_min: float = 0.0,
) -> FloatArray:
    """Lower bound (N,) in metres on the RMSE of any unbiased 2-D position estimate.

    ``sqrt(trace(F⁻¹))`` with F from :func:`fisher_information` (same arguments); +inf where
    the position is not identifiable (fewer than two informative gateways, or all collinear
    with it in plan).
    """
    fisher = fisher_information(
        positions,
        gateway_xyz,
        path_loss_exponent,
        sigma_db,
        heard=heard,
        height=height,
        d_min=d_min,
    )
    cov = crlb_covariance(fisher)
    return np.asarray(np.sqrt(cov[:, 0, 0] + cov[:, 1, 1]))
