"""Reference estimators for diagnosing the accuracy bench (not baselines: they are slow).

:func:`grid_mle` is the exact maximum-likelihood position of a static tag under the radio
model, found by brute force on a grid over the tag's floor, so it cannot stop in a local
minimum. With ``censored=False`` the likelihood is the Gaussian one of the heard links only
(the engine's model); with ``censored=True`` it is the censored (Tobit) likelihood: a gateway of
the floor that heard nothing says the RSSI there was below the sensitivity, probability
``Φ((s - μ) / σ)``, and a heard link keeps its Gaussian density (Tobin 1958). Comparing the two
on the same data shows how much of the error comes from ignoring what was *not* heard: links
near the sensitivity are heard only when their shadowing is favourable, so the heard ones read
high and pull a plain fit towards far gateways.

:func:`bound_zone_error` draws positions with the Cramér–Rao covariance around the truth: the
zone an efficient unbiased locator would report.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr

from gateways.radio import WallLossMaps
from rtls.bounds import crlb_covariance, fisher_information
from rtls.site import Site
from rtls.zones import ZoneIndex

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

LN10 = float(np.log(10.0))


def grid_mle(
    site: Site,
    rssi: FloatArray,
    floor: IntArray,
    *,
    sigma_db: float,
    censored: bool,
    walls: WallLossMaps | None = None,
    tag_height_m: float = 1.0,
    cell_m: float = 0.5,
) -> FloatArray:
    """Maximum-likelihood xy (N, 2) of N static tags from their RSSI (N, G) (NaN: not heard)
    on their known ``floor`` (N,), over a grid of ``cell_m`` cells covering the floor's
    bounds. Uses the site's gateway calibration and sensitivity, and with ``walls`` the
    simulator's wall losses (the radio model exactly). A Python loop over tags: for diagnosis
    only."""
    ga = site.gateway_arrays
    sens = site.radio.sensitivity_dbm
    out = np.full((rssi.shape[0], 2), np.nan)
    for f, fl in enumerate(site.floors):
        outline = np.asarray(fl.outline, dtype=np.float64)
        lo, hi = outline.min(axis=0), outline.max(axis=0)
        gx, gy = np.meshgrid(np.arange(lo[0] + cell_m / 2, hi[0], cell_m),
                             np.arange(lo[1] + cell_m / 2, hi[1], cell_m))  # fmt: skip
        cells = np.column_stack([gx.ravel(), gy.ravel()])  # (C, 2)
        on = np.flatnonzero(ga.floor == f)
        g = ga.xyz[on]
        dz2 = (fl.elevation + tag_height_m - g[:, 2]) ** 2
        d2 = ((cells[:, None, :] - g[None, :, :2]) ** 2).sum(axis=2) + dz2  # (C, Gf)
        mu = ga.rssi_at_1m[on] - 5.0 * ga.path_loss_exponent[on] * np.log10(np.maximum(d2, 1.0))
        if walls is not None:
            mu = mu - walls.lookup(cells)[:, on]
        below = log_ndtr((sens - mu) / sigma_db)  # (C, Gf) log P(not heard)
        for i in np.flatnonzero(floor == f).tolist():
            y = rssi[i, on]
            heard = np.isfinite(y)
            ll = -0.5 * (((y[heard] - mu[:, heard]) / sigma_db) ** 2).sum(axis=1)
            if censored:
                ll = ll + below[:, ~heard].sum(axis=1)
            out[i] = cells[int(np.argmax(ll))]
    return out


def bound_zone_error(
    site: Site,
    xy: FloatArray,
    floor: IntArray,
    heard: NDArray[np.bool_],
    sigma_db: float,
    rng: np.random.Generator,
    *,
    tag_height_m: float = 1.0,
) -> tuple[IntArray, FloatArray]:
    """Positions xy (N, 2) on ``floor`` (N,) moved by a Gaussian error with the Cramér–Rao
    covariance (σ = ``sigma_db``, the ``heard`` (N, G) gateways, no walls), and the smallest
    zone (N,) holding each (-1: none). Also returns the moved positions (N, 2)."""
    ga = site.gateway_arrays
    elevation = np.array([f.elevation for f in site.floors])
    fisher = fisher_information(
        xy, ga.xyz, ga.path_loss_exponent, sigma_db, heard=heard,
        height=elevation[floor] + tag_height_m, d_min=1.0,
    )  # fmt: skip
    cov = crlb_covariance(fisher)
    ok = np.isfinite(cov).all(axis=(1, 2))
    cov[~ok] = np.eye(2) * 1e6  # not identifiable: anywhere
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(2))
    moved = xy + np.einsum("nij,nj->ni", chol, rng.standard_normal(xy.shape))
    zones = ZoneIndex.from_site(site)
    return zones.smallest(zones.contains(moved, floor)).astype(np.intp), moved
