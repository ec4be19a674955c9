"""Batched RSSI locator: one vectorised maximum-likelihood solve for all tags of a tick.

Model (DOMAIN.md, log-distance with log-normal shadowing; Rappaport eq. 4.68 with d0 = 1 m):
the smoothed RSSI of tag i at gateway j is ``P0_j - 10 n_j log10(d_ij) + X_ij``, ``X_ij`` normal
in dB with variance ``v_ij``, ``d_ij`` the 3-D distance from the tag (at ``tag_height_m`` above
its floor) to the gateway. The maximum-likelihood 2-D position minimises the weighted sum of
squared residuals in dB ``Σ_j r_ij² / v_ij``, ``r_ij = RSSI_ij - (P0_j - 10 n_j log10 d_ij)``
(by default with Huber's loss instead of the squares, ``LocatorParams.robust_k``: a link more
than k σ off the model, a wall or a body the model misses, counts linearly, Huber 1964);
with a known receiver sensitivity ``s_j`` the gateways of the tag's floor that heard nothing
count as readings below it (censored, Tobit likelihood), adding ``-2 Σ log Φ((s_j - μ_ij) / σ)``.
This module prepares the inputs (weights, floor choice, starting points), :mod:`rtls.solver`
minimises the cost for all N tags at once (damped Gauss–Newton then Newton steps, closed-form
2×2 systems, no Python loop over tags), and the result gets its covariance and the unknown
rules here. See docs/locator.md. Shapes: ``N`` tags, ``G`` gateways, ``F`` floors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import ConfigError, RtlsError
from rtls.solver import AXX, AXY, AYY, COST, FIT, LN10, ROWS, Box, Censored, Solver, X, Y

if TYPE_CHECKING:
    from rtls.site import Site

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

RAYLEIGH_SPREAD_DB = 5.57  # std of 10 log10 |h|² for Rayleigh fading (docs/radio-model.md)


class LocateError(RtlsError):
    """Bad input to the locator (shape, index out of range, non-positive variance)."""


class Anchors:
    """The gateways as the locator sees them, plus the floors' geometry (treat as read-only).

    xyz (G, 3) absolute (z includes the floor elevation); floor (G,) floor index; p0 (G,) RSSI
    at 1 m in dBm; n (G,) path-loss exponent (p0 and n may be scalars); floor_elevation (F,)
    metres; floor_bounds (F, 4) ``xmin, ymin, xmax, ymax`` of each floor (fixes are kept
    inside); sensitivity_dbm (G,) or scalar: the weakest RSSI a gateway reports (None:
    unknown, silent gateways then say nothing). Build with :meth:`from_site`, or directly
    (arrays are validated and copied; a calibration run makes a new Anchors).
    """

    def __init__(
        self,
        xyz: ArrayLike,
        floor: ArrayLike,
        p0: ArrayLike,
        n: ArrayLike,
        floor_elevation: ArrayLike,
        floor_bounds: ArrayLike,
        sensitivity_dbm: ArrayLike | None = None,
    ) -> None:
        xyz_a = np.array(xyz, dtype=np.float64)
        if xyz_a.ndim != 2 or xyz_a.shape[1] != 3:
            raise ConfigError(f"anchors xyz must have shape (G, 3), got {xyz_a.shape}")
        g = xyz_a.shape[0]
        elev = np.array(floor_elevation, dtype=np.float64).reshape(-1)
        n_floors = elev.shape[0]
        bounds = np.array(floor_bounds, dtype=np.float64)
        if n_floors == 0 or bounds.shape != (n_floors, 4):
            raise ConfigError(
                f"anchors need >= 1 floor and floor_bounds of shape ({n_floors}, 4), "
                f"got {bounds.shape}"
            )
        if ((bounds[:, 2] <= bounds[:, 0]) | (bounds[:, 3] <= bounds[:, 1])).any():
            raise ConfigError("anchors floor_bounds rows must be xmin < xmax, ymin < ymax")
        floor_a = np.array(floor).reshape(-1)
        if floor_a.shape != (g,) or (g and floor_a.dtype.kind not in "iu"):
            raise ConfigError(f"anchors floor must be integers of shape ({g},)")
        floor_a = floor_a.astype(np.intp)
        if g and ((floor_a < 0) | (floor_a >= n_floors)).any():
            raise ConfigError(f"anchors floor indices must be in [0, {n_floors})")
        p0_a = np.broadcast_to(np.asarray(p0, dtype=np.float64), (g,)).copy()
        n_a = np.broadcast_to(np.asarray(n, dtype=np.float64), (g,)).copy()
        if not all(np.isfinite(a).all() for a in (xyz_a, elev, bounds, p0_a, n_a)):
            raise ConfigError("anchors arrays must be finite")
        if (n_a <= 0).any():
            raise ConfigError("anchors path-loss exponents n must be > 0")
        sens: FloatArray | None = None
        if sensitivity_dbm is not None:
            sens = _per_gateway(sensitivity_dbm, g, "anchors sensitivity_dbm", ConfigError)
        self.xyz: FloatArray = xyz_a
        self.floor: IntArray = floor_a
        self.p0: FloatArray = p0_a
        self.n: FloatArray = n_a
        self.floor_elevation: FloatArray = elev
        self.floor_bounds: FloatArray = bounds
        self.k: FloatArray = 10.0 * n_a / LN10  # (G,) dB per neper of distance
        self.sensitivity_dbm: FloatArray | None = sens

    @classmethod
    def from_site(cls, site: Site) -> Anchors:
        """Anchors from a loaded site: its gateways, calibration, floor outlines and the
        radio's sensitivity."""
        ga = site.gateway_arrays
        elev = np.array([f.elevation for f in site.floors], dtype=np.float64)
        bounds = np.array(
            [np.r_[np.min(f.outline, axis=0), np.max(f.outline, axis=0)] for f in site.floors],
            dtype=np.float64,
        )
        return cls(
            ga.xyz,
            ga.floor,
            ga.rssi_at_1m,
            ga.path_loss_exponent,
            elev,
            bounds,
            site.radio.sensitivity_dbm,
        )

    @property
    def n_gateways(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def n_floors(self) -> int:
        return int(self.floor_elevation.shape[0])


@dataclass(frozen=True)
class LocatorParams:
    """Locator settings; defaults and their sources are in docs/locator.md."""

    tag_height_m: float = 1.0  # tag above its floor (wrist, bassinet), for 3-D distances
    sigma_db: float = 4.0  # model σ of a smoothed link (DOMAIN.md: 3-8 dB indoors)
    iterations: int = 5  # Levenberg–Marquardt steps after the initial evaluation
    min_gateways: int = 3  # fewer heard on the chosen floor -> unknown
    max_uncertainty_m: float = 8.0  # sqrt(trace(covariance)) above this -> unknown (sanity bound)
    max_condition: float = 1.0e3  # eigenvalue ratio of JᵀWJ above this -> unknown
    max_residual_db: float = 12.0  # weighted RMS residual above this -> unknown (wrong model)
    floor_switch_db: float = 6.0  # another floor must be this much louder to leave the previous
    inflate_by_residuals: bool = True  # scale covariance by max(1, χ²/dof) when dof >= 2
    max_step_m: float = 5.0  # longest step per iteration (damping against divergence)
    d_min_m: float = 1.0  # path loss held constant below this distance (docs/radio-model.md)
    censored: bool = True  # silent gateways of the floor count as below the sensitivity
    silent_outage: float = 0.01  # chance a link is silent whatever its signal (gateway down)
    robust_k: float | None = 2.0  # Huber's k: residuals beyond k σ count linearly (None: Gaussian)

    def __post_init__(self) -> None:
        checks = [
            ("tag_height_m", np.isfinite(self.tag_height_m)),
            ("sigma_db", self.sigma_db > 0),
            ("iterations", 0 <= self.iterations <= 100),
            ("min_gateways", self.min_gateways >= 2),
            ("max_uncertainty_m", self.max_uncertainty_m > 0),
            ("max_condition", self.max_condition > 1),
            ("max_residual_db", self.max_residual_db > 0),
            ("floor_switch_db", self.floor_switch_db >= 0),
            ("max_step_m", self.max_step_m > 0),
            ("d_min_m", self.d_min_m > 0),
            ("silent_outage", 0 <= self.silent_outage < 1),
            ("robust_k", self.robust_k is None or 0 < self.robust_k <= 100),
        ]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"LocatorParams.{name} = {getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class Fix:
    """Positions of N tags from one solve.

    xy (N, 2) metres on ``floor`` (N,) (floor index, -1 when nothing was heard); covariance
    (N, 2, 2) m² (inverse Fisher information at the fix, inflated by the residuals, see
    docs/locator.md); n_used (N,) gateways used; residual_rms (N,) weighted RMS residual in dB;
    known (N,) False when the position must be treated as unknown (xy is then still the best
    guess but must not be shown or used for zones).
    """

    xy: FloatArray
    floor: IntArray
    covariance: FloatArray
    n_used: IntArray
    residual_rms: FloatArray
    known: BoolArray

    @property
    def uncertainty(self) -> FloatArray:
        """RMS radial error (N,) in metres: sqrt(trace(covariance))."""
        return np.asarray(np.sqrt(self.covariance[:, 0, 0] + self.covariance[:, 1, 1]))

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def link_variance(
    weight: ArrayLike, sigma_db: float = 4.0, fading_db: float = RAYLEIGH_SPREAD_DB
) -> FloatArray:
    """Variance (N, G) in dB² of a smoothed link: shadowing plus fading averaged over packets.

    ``weight`` (N, G) is the effective number of packets behind each mean (the window's
    ``Snapshot.weight``); shadowing does not average out, fading does: ``σ² + σ_f² / weight``.
    Links with zero weight get +inf (unused).
    """
    w = np.asarray(weight, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(sigma_db**2 + fading_db**2 / np.where(w > 0, w, 0.0))


def choose_floor(
    rssi: ArrayLike,
    anchors: Anchors,
    *,
    previous: ArrayLike | None = None,
    switch_db: float = 6.0,
) -> IntArray:
    """Floor (N,) of each tag from its RSSI (N, G) in dBm (NaN = not heard); -1: nothing heard.

    Each floor scores the power sum of its heard gateways, in dB relative to their P0: dominated
    by the strongest links, so a few weak links through a slab count little. The loudest floor
    wins even when it has too few gateways to locate (the tag is then unknown rather than
    placed on the wrong floor). A tag stays on its ``previous`` floor (N,) (-1: none) unless
    another floor scores more than ``switch_db`` above it.
    """
    y = np.asarray(rssi, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != anchors.n_gateways:
        raise LocateError(f"rssi must have shape (N, {anchors.n_gateways}), got {y.shape}")
    y_t = np.ascontiguousarray(y.T, dtype=np.float32)
    heard = np.isfinite(y_t)
    rel = np.fmax(y_t - anchors.p0.astype(np.float32)[:, None], _NEG) * heard
    prev = _previous(previous, y.shape[0])
    return _floor_vote(rel, heard, anchors, prev, switch_db)


def locate(
    rssi: ArrayLike,
    anchors: Anchors,
    params: LocatorParams | None = None,
    **kwargs: ArrayLike | None,
) -> Fix:
    """One-shot :meth:`Locator.locate` (a live engine keeps one :class:`Locator` instead)."""
    return Locator(anchors, params).locate(rssi, **kwargs)


class Locator:
    """The batched locator for one set of anchors; keeps its work arrays between ticks.

    Reusing the (G, N) work arrays keeps a tick free of large fresh allocations (whose page
    faults cost as much as the arithmetic). Not thread-safe: one Locator per thread.
    """

    def __init__(self, anchors: Anchors, params: LocatorParams | None = None) -> None:
        self.anchors = anchors
        self.params = params if params is not None else LocatorParams()
        self._capacity = 0
        self._f32 = np.empty((0, anchors.n_gateways, 0), dtype=np.float32)
        self._f64 = np.empty((0, ROWS, 0))

    def _buffers(self, n_tags: int) -> tuple[NDArray[np.float32], FloatArray]:
        """Work arrays (12, G, N) float32 and (2, ROWS, N) float64, grown when N exceeds them."""
        if n_tags > self._capacity:
            cap = max(n_tags, int(self._capacity * 1.25))
            self._f32 = np.empty((12, self.anchors.n_gateways, cap), dtype=np.float32)
            self._f64 = np.empty((2, ROWS, cap))
            self._capacity = cap
        return self._f32[:, :, :n_tags], self._f64[:, :, :n_tags]

    def locate(
        self,
        rssi: ArrayLike,
        *,
        variances: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        tag_offset_db: ArrayLike | None = None,
        link_offset_db: ArrayLike | None = None,
        initial_xy: ArrayLike | None = None,
        initial_floor: ArrayLike | None = None,
        sensitivity_dbm: ArrayLike | None = None,
        gateway_up: ArrayLike | None = None,
        silent_links: ArrayLike | None = None,
    ) -> Fix:
        """Locate N tags from smoothed RSSI (N, G) in dBm, NaN where not heard.

        variances (N, G) dB² per link (e.g. :func:`link_variance`; +inf drops a link), or
        weights (N, G) relative weights (variance ``sigma_db² / weight``; 0 drops a link);
        default ``sigma_db²`` for every link. tag_offset_db (N,): each tag's measured power
        minus the calibration's (added to every gateway's P0). link_offset_db (N, G): known extra
        loss of each link, added back to its RSSI before the fit — the walls between the tag's
        last position and each gateway (:class:`rtls.walls.WallLossMaps`). initial_xy (N, 2) and
        initial_floor (N,): previous fixes, used as starting points where the floor is
        unchanged (NaN / -1: none); initial_floor also gives the floor choice its hysteresis.

        Silent links (``params.censored``, needs a sensitivity: sensitivity_dbm (G,) or scalar
        here, else the anchors'): a gateway of the tag's chosen floor that did not hear it says
        its RSSI was below the sensitivity (corrected by the same tag and link offsets). By
        default every such gateway counts; gateway_up (G,) False leaves out gateways that are
        down (their silence means nothing), and silent_links (N, G) bool, if given, names the
        links whose silence counts (True on a heard link is ignored).
        """
        p, anchors = self.params, self.anchors
        y_in = np.asarray(rssi)
        if y_in.ndim != 2 or y_in.shape[1] != anchors.n_gateways:
            raise LocateError(f"rssi must have shape (N, {anchors.n_gateways}), got {y_in.shape}")
        n_tags, g = y_in.shape
        if g == 0:  # a site without gateways locates nothing
            nothing = np.zeros(n_tags, dtype=np.intp)
            empty_w = np.zeros((0, n_tags), np.float32)
            return _finish(np.zeros((ROWS, n_tags)), nothing - 1, nothing, empty_w, p)
        f32, f64 = self._buffers(n_tags)
        y, w, dz2, curvature, work = f32[0], f32[1], f32[2], f32[3], f32[4:]
        np.copyto(y, y_in.T, casting="unsafe")  # (G, N) float32 from here on
        heard = ~np.isnan(y)
        if np.isinf(y).any():
            raise LocateError("rssi must be finite dBm or NaN (not heard), found an infinity")
        # -- link weights w = 1 / variance, 0 where unused ---------------------------------------
        tmp = work[0]
        inv_var = np.float32(1.0 / p.sigma_db**2)
        if variances is not None:
            _copy_transposed("variances", variances, (n_tags, g), tmp)
            if (heard & ~(tmp > 0)).any():
                raise LocateError("variances must be > 0 (or +inf to drop a link) where heard")
            np.fmax(tmp, np.float32(_MIN_VARIANCE), out=tmp)
            np.divide(heard, tmp, out=w)
        elif weights is not None:
            _copy_transposed("weights", weights, (n_tags, g), tmp)
            if (heard & ~(tmp >= 0)).any():
                raise LocateError("weights must be >= 0 where rssi is heard")
            np.fmax(tmp, np.float32(0.0), out=tmp)
            np.fmin(tmp, np.float32(_MAX_WEIGHT), out=tmp)
            np.multiply(tmp, heard, out=w)
            w *= inv_var
        else:
            np.multiply(heard, inv_var, out=w)
        off: FloatArray | None = None
        if tag_offset_db is not None:
            off = np.asarray(tag_offset_db, dtype=np.float64).reshape(-1)
            if off.shape != (n_tags,) or not np.isfinite(off).all():
                raise LocateError(f"tag_offset_db must be finite with shape ({n_tags},)")
            y -= off.astype(np.float32)[None, :]
        if link_offset_db is not None:
            _copy_transposed("link_offset_db", link_offset_db, (n_tags, g), tmp)
            if not np.isfinite(tmp).all():
                raise LocateError("link_offset_db must be finite")
            y += tmp
        silent = self._silent(heard, sensitivity_dbm, gateway_up, silent_links)
        usable = heard & (w > 0)
        rel = y  # RSSI - P0 in dB, 0 where unusable (in place)
        rel -= anchors.p0.astype(np.float32)[:, None]
        np.fmax(rel, _NEG, out=rel)
        rel *= usable
        prev_floor = _previous(initial_floor, n_tags)
        # -- floor choice: the links used are the usable ones on the chosen floor ----------------
        z_gw = anchors.xyz[:, 2:3].astype(np.float32)
        if anchors.n_floors == 1:
            floor = np.where(usable.any(axis=0), 0, -1).astype(np.intp)
            used = usable
            dz = np.float32(anchors.floor_elevation[0] + p.tag_height_m) - z_gw
            dz2_used: NDArray[np.float32] = dz * dz  # (G, 1)
            box = Box.of(anchors.floor_bounds[0])
        else:
            floor = _floor_vote(rel, usable, anchors, prev_floor, p.floor_switch_db)
            used = usable & (anchors.floor[:, None] == floor[None, :])
            rel *= used
            w *= used
            fl = np.maximum(floor, 0)
            z_tags = (anchors.floor_elevation[fl] + p.tag_height_m).astype(np.float32)
            np.subtract(z_tags[None, :], z_gw, out=dz2)
            dz2 *= dz2
            dz2_used = dz2
            box = Box.of(anchors.floor_bounds[fl])
        n_used = np.count_nonzero(used, axis=0)
        censored = None
        if silent is not None:
            sens, silent_mask = silent
            silent_mask &= anchors.floor[:, None] == floor[None, :]
            gi, ni = np.nonzero(silent_mask)
            # the sensitivity in the scale of rel: minus P0 and the tag offset, plus the walls
            thr = sens[gi] - anchors.p0[gi]
            if off is not None:
                thr -= off[ni]
            if link_offset_db is not None:
                thr += np.asarray(link_offset_db, dtype=np.float64)[ni, gi]
            rel[gi, ni] = thr
            censored = Censored(gi, ni, p.sigma_db, curvature, p.silent_outage)
        solver = Solver(
            rel, w, dz2_used, anchors.xyz[:, :2], anchors.n, p.d_min_m, work, censored, p.robust_k
        )
        # -- initial guess: the previous fix on the same floor, else a weighted centroid ---------
        start = solver.centroid(used, box)
        if initial_xy is not None:
            ixy = np.asarray(initial_xy, dtype=np.float64)
            if ixy.shape != (n_tags, 2):
                raise LocateError(f"initial_xy must have shape ({n_tags}, 2), got {ixy.shape}")
            take = np.isfinite(ixy).all(axis=1)
            if prev_floor is not None:
                take &= prev_floor == floor
            start = box.clip(np.where(take, ixy.T, start))
        # -- damped Newton / Gauss–Newton iterations (rtls.solver) --------------------------------
        best = solver.solve(start, box, p.iterations, p.max_step_m, f64)
        return _finish(best, floor, n_used, w, p)

    def _silent(
        self,
        heard: BoolArray,
        sensitivity_dbm: ArrayLike | None,
        gateway_up: ArrayLike | None,
        silent_links: ArrayLike | None,
    ) -> tuple[FloatArray, BoolArray] | None:
        """Sensitivity (G,) and the candidate silent links (G, N) (any floor), or None when
        censoring is off or no sensitivity is known. ``heard`` (G, N)."""
        g, n_tags = heard.shape
        if gateway_up is not None:
            up = np.asarray(gateway_up)
            if up.shape != (g,) or up.dtype != np.bool_:
                raise LocateError(f"gateway_up must be bool of shape ({g},), got {up.shape}")
        if silent_links is not None:
            links = np.asarray(silent_links)
            if links.shape != (n_tags, g) or links.dtype != np.bool_:
                raise LocateError(f"silent_links must be bool of shape ({n_tags}, {g})")
        if sensitivity_dbm is not None:
            sens = _per_gateway(sensitivity_dbm, g, "sensitivity_dbm", LocateError)
        elif self.anchors.sensitivity_dbm is not None:
            sens = self.anchors.sensitivity_dbm
        else:
            return None
        if not self.params.censored:
            return None
        mask = ~heard
        if silent_links is not None:
            mask &= links.T
        if gateway_up is not None:
            mask &= up[:, None]
        return sens, mask


_NEG = np.float32(-1e30)  # stands in for NaN before masking (fmax(NaN, _NEG) = _NEG)
_MIN_VARIANCE = 1e-3  # dB²: keeps 1/variance within float32 range
_MAX_WEIGHT = 1e6


def _per_gateway(value: ArrayLike, g: int, name: str, error: type[RtlsError]) -> FloatArray:
    """A finite scalar or (G,) array as a (G,) float64 copy."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (g,)) or not np.isfinite(arr).all():
        raise error(f"{name} must be a finite scalar or have shape ({g},), got {arr.shape}")
    return np.broadcast_to(arr, (g,)).copy()


def _copy_transposed(
    name: str, value: ArrayLike, shape: tuple[int, int], out: NDArray[np.float32]
) -> None:
    """Copy an (N, G) input into ``out`` (G, N) float32."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise LocateError(f"{name} must have shape {shape}, got {arr.shape}")
    np.copyto(out, arr.T, casting="unsafe")


def _previous(previous: ArrayLike | None, n_tags: int) -> IntArray | None:
    if previous is None:
        return None
    prev = np.asarray(previous).reshape(-1)
    if prev.shape != (n_tags,) or prev.dtype.kind not in "iu":
        raise LocateError(f"previous / initial floor must be integers of shape ({n_tags},)")
    return prev.astype(np.intp)


def _floor_vote(
    rel: NDArray[np.float32],
    usable: BoolArray,
    anchors: Anchors,
    previous: IntArray | None,
    switch_db: float,
) -> IntArray:
    """Floor vote over (G, N) arrays: ``rel`` RSSI - P0 in dB (0 where unusable)."""
    n_tags = rel.shape[1]
    onehot = (np.arange(anchors.n_floors)[:, None] == anchors.floor[None, :]).astype(np.float32)
    # power relative to the strongest link of the tag, so exp() cannot overflow
    top = np.max(rel - (~usable) * np.float32(1e4), axis=0)
    top[top < -1e3] = 0.0  # tags with no usable link
    lin = np.exp((rel - top) * np.float32(LN10 / 10.0)) * usable
    with np.errstate(divide="ignore"):
        score = 10.0 * np.log10(onehot @ lin)  # (F, N) dB relative to top; -inf: not heard
    best = np.argmax(score, axis=0)
    if previous is not None:
        cols = np.arange(n_tags)
        valid = (previous >= 0) & (previous < anchors.n_floors)
        prev = np.where(valid, previous, 0)
        keep = valid & (score[prev, cols] >= score[best, cols] - switch_db)
        best = np.where(keep, prev, best)
    out: IntArray = np.where(usable.any(axis=0), best, -1).astype(np.intp)
    return out


def _finish(
    best: FloatArray, floor: IntArray, n_used: IntArray, w: NDArray[np.float32], p: LocatorParams
) -> Fix:
    """Covariance and the unknown rules from the final solver state (ROWS, N)."""
    a, b, d, cost = best[AXX], best[AXY], best[AYY], best[FIT]
    det = a * d - b * b
    half_tr = (a + d) * 0.5
    disc = np.sqrt(np.maximum(half_tr * half_tr - det, 0.0))
    eig_hi, eig_lo = half_tr + disc, half_tr - disc
    well_posed = (det > 0) & (eig_lo * p.max_condition >= eig_hi)
    dof = n_used - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = np.where(well_posed, 1.0 / det, np.inf)
        residual_rms = np.sqrt(cost / w.sum(axis=0))
        chi2 = np.where(dof >= 2, cost / np.maximum(dof, 1), 1.0)
    scale = inv_det * np.maximum(chi2, 1.0) if p.inflate_by_residuals else inv_det
    n_tags = floor.shape[0]
    cov = np.empty((n_tags, 2, 2))
    with np.errstate(invalid="ignore"):
        cov[:, 0, 0] = d * scale
        cov[:, 0, 1] = -b * scale
        cov[:, 1, 0] = cov[:, 0, 1]
        cov[:, 1, 1] = a * scale
    cov[~well_posed] = np.inf
    uncertainty = np.sqrt(cov[:, 0, 0] + cov[:, 1, 1])
    xy = best[X : Y + 1].T.copy()
    known = (
        (floor >= 0)
        & (n_used >= p.min_gateways)
        & well_posed
        & np.isfinite(best[COST])
        & np.isfinite(xy).all(axis=1)
        & (uncertainty <= p.max_uncertainty_m)
        & (residual_rms <= p.max_residual_db)
    )
    return Fix(
        xy=xy,
        floor=floor,
        covariance=cov,
        n_used=n_used.astype(np.intp),
        residual_rms=np.where(n_used > 0, residual_rms, np.nan),
        known=np.asarray(known),
    )
