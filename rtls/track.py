"""Vectorised constant-velocity Kalman filter over all tags, with outlier gating.

State per tag ``(x, y, vx, vy)`` on one floor: arrays (N, 4) and covariance (N, 4, 4). The
motion model is the continuous white-noise-acceleration model (Bar-Shalom, Li and Kirubarajan,
"Estimation with Applications to Tracking and Navigation", 2001, §6.2.2): per axis and step
``dt``, ``F = [[1, dt], [0, 1]]`` and ``Q = q [[dt³/3, dt²/2], [dt²/2, dt]]`` with ``q`` the
acceleration spectral density. A fix from :mod:`rtls.locate` is the measurement ``H = [I 0]``
with its own covariance as the noise ``R``. A fix whose Mahalanobis distance
``νᵀ S⁻¹ ν`` exceeds the chi-square (2 dof) gate is rejected as an outlier; after
``max_rejections`` rejections in a row, or on a floor change, the track restarts at the fix. A
track with no accepted fix for ``timeout_s`` is unknown. No Python loop over tags: predict and
update work on 2×2 blocks of all tags at once. Shapes: ``N`` tags, ``M`` tags updated.

An optional position constraint (the walkable area, :mod:`rtls.walkable`) is applied by
estimate projection (Simon, "Kalman filtering with state constraints: a survey", IET Control
Theory Appl. 4(8), 2010): a state whose position left the area is moved to the most probable
state (weight ``P⁻¹``) on the boundary half-plane through the nearest walkable point, which
corrects the velocity through its correlation with the position; the covariance is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import ConfigError, RtlsError
from rtls.locate import Fix

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
# nearest allowed position (K, 2) of positions (K, 2) on floors (K,), e.g. WalkableArea.project
Constraint = Callable[[FloatArray, IntArray], FloatArray]


class TrackError(RtlsError):
    """Bad input to the tracker (shape, tag index out of range, non-finite time)."""


@dataclass(frozen=True)
class TrackParams:
    """Tracker settings; values and sources in docs/locator.md."""

    accel_psd: float = 1.0  # q, m²/s³: walking speed changes by ~sqrt(q dt) m/s per dt s
    gate_probability: float = 0.997  # chi-square (2 dof) gate: 99.7 % of true fixes pass
    max_rejections: int = 3  # consecutive gated-out fixes before the track restarts there
    timeout_s: float = 10.0  # no accepted fix for longer -> unknown
    initial_speed_sigma: float = 1.5  # m/s, velocity std of a new track (brisk walk)
    measurement_scale: float = 1.0  # R = scale × the fix covariance

    def __post_init__(self) -> None:
        checks = [
            ("accel_psd", self.accel_psd > 0),
            ("gate_probability", 0.0 < self.gate_probability < 1.0),
            ("max_rejections", self.max_rejections >= 1),
            ("timeout_s", self.timeout_s > 0),
            ("initial_speed_sigma", self.initial_speed_sigma > 0),
            ("measurement_scale", self.measurement_scale > 0),
        ]
        for name, ok in checks:
            value = getattr(self, name)
            if not (ok and np.isfinite(value)):
                raise ConfigError(f"TrackParams.{name} = {value!r} is out of range")

    @property
    def gate(self) -> float:
        """Squared Mahalanobis threshold: the chi-square (2 dof) quantile -2 ln(1 - p)."""
        return float(-2.0 * np.log1p(-self.gate_probability))


@dataclass(frozen=True)
class TrackEstimate:
    """Tracked positions of N tags at time ``t``.

    xy (N, 2) and velocity (N, 2) on ``floor`` (N,) (-1: never located); covariance (N, 2, 2)
    of the position; known (N,) False for tags without a track or whose last accepted fix is
    older than the timeout; last_fix_t (N,) time of the last accepted fix (-inf: none).
    """

    t: float
    xy: FloatArray
    velocity: FloatArray
    floor: IntArray
    covariance: FloatArray
    known: BoolArray
    last_fix_t: FloatArray

    @property
    def uncertainty(self) -> FloatArray:
        """RMS radial error (N,) in metres: sqrt(trace(covariance))."""
        return np.asarray(np.sqrt(self.covariance[:, 0, 0] + self.covariance[:, 1, 1]))


@dataclass(frozen=True)
class UpdateResult:
    """What happened to the M fixes of one update, as (M,) masks in the order given.

    accepted: filtered into the track; rejected: gated out as outliers; started: a track was
    (re)started at the fix (new tag, expired track, floor change or too many rejections);
    ignored: the fix was unknown (``Fix.known`` False) and did not touch the track.
    """

    accepted: BoolArray
    rejected: BoolArray
    started: BoolArray
    ignored: BoolArray


class Tracker:
    """Kalman tracks of ``n_tags`` tags. ``timeout_s`` (N,) overrides the params per tag;
    ``constraint`` (e.g. ``WalkableArea.project``) keeps positions in an allowed set."""

    def __init__(
        self,
        n_tags: int,
        params: TrackParams | None = None,
        *,
        timeout_s: ArrayLike | None = None,
        constraint: Constraint | None = None,
    ) -> None:
        if n_tags < 0:
            raise ConfigError(f"n_tags must be >= 0, got {n_tags}")
        self.params = params if params is not None else TrackParams()
        self.n_tags = n_tags
        self.x = np.zeros((n_tags, 4))  # x, y, vx, vy
        self.P = np.zeros((n_tags, 4, 4))
        self.t = np.full(n_tags, -np.inf)  # time the state refers to
        self.floor = np.full(n_tags, -1, dtype=np.intp)
        self.last_fix_t = np.full(n_tags, -np.inf)
        self.rejections = np.zeros(n_tags, dtype=np.intp)
        self.constraint = constraint
        if timeout_s is None:
            self.timeout_s = np.full(n_tags, self.params.timeout_s)
        else:
            to = np.broadcast_to(np.asarray(timeout_s, dtype=np.float64), (n_tags,)).copy()
            if not (np.isfinite(to).all() and (to > 0).all()):
                raise ConfigError("per-tag timeout_s must be finite and > 0")
            self.timeout_s = to

    # -- time ---------------------------------------------------------------------------------
    def _tags(self, tags: ArrayLike | None) -> IntArray:
        if tags is None:
            return np.arange(self.n_tags)
        idx = np.asarray(tags).reshape(-1)
        if idx.size == 0:
            return np.zeros(0, dtype=np.intp)
        if idx.dtype.kind not in "iu" or ((idx < 0) | (idx >= self.n_tags)).any():
            raise TrackError(f"tags must be integer indices in [0, {self.n_tags})")
        if np.unique(idx).shape[0] != idx.shape[0]:
            raise TrackError("tags must not repeat within one call")
        return idx.astype(np.intp)

    @staticmethod
    def _check_time(now: float) -> float:
        t = float(now)
        if not np.isfinite(t):
            raise TrackError(f"now must be a finite time, got {now!r}")
        return t

    def _predicted(self, idx: IntArray, now: float) -> tuple[FloatArray, FloatArray]:
        """State (M, 4) and covariance (M, 4, 4) of tags ``idx`` advanced to ``now``.

        Blocks of P = [[A, B], [Bᵀ, C]] (2×2 each) advance in closed form:
        A += dt (B + Bᵀ) + dt² C + q dt³/3 I, B += dt C + q dt²/2 I, C += q dt I.
        """
        q = self.params.accel_psd
        active = self.floor[idx] >= 0
        dt = np.where(active, np.maximum(now - self.t[idx], 0.0), 0.0)
        x = self.x[idx].copy()
        x[:, 0:2] += dt[:, None] * x[:, 2:4]
        P = self.P[idx].copy()
        A, B, C = P[:, 0:2, 0:2], P[:, 0:2, 2:4], P[:, 2:4, 2:4]
        d1 = dt[:, None, None]
        eye = np.eye(2)[None, :, :]
        A_new = A + d1 * (B + B.transpose(0, 2, 1)) + d1 * d1 * C + (q / 3.0) * d1**3 * eye
        B_new = B + d1 * C + (q / 2.0) * d1 * d1 * eye
        C_new = C + q * d1 * eye
        P[:, 0:2, 0:2], P[:, 0:2, 2:4], P[:, 2:4, 2:4] = A_new, B_new, C_new
        P[:, 2:4, 0:2] = B_new.transpose(0, 2, 1)
        return x, P

    def predict(self, now: float, tags: ArrayLike | None = None) -> None:
        """Advance the tracks of ``tags`` (default all) to ``now``, each from its own last time.

        A time earlier than a track's own is treated as no time passing.
        """
        t = self._check_time(now)
        idx = self._tags(tags)
        x, P = self._predicted(idx, t)
        self.x[idx], self.P[idx] = x, P
        active = self.floor[idx] >= 0
        self.t[idx] = np.where(active, np.maximum(self.t[idx], t), self.t[idx])

    def estimate(self, now: float, tags: ArrayLike | None = None) -> TrackEstimate:
        """Positions of ``tags`` (default all) predicted to ``now``; the tracks are unchanged."""
        t = self._check_time(now)
        idx = self._tags(tags)
        x, P = self._predicted(idx, t)
        floor = self.floor[idx]
        x = self._constrained(x, P, floor)
        known = (floor >= 0) & (t - self.last_fix_t[idx] <= self.timeout_s[idx])
        return TrackEstimate(
            t=t,
            xy=x[:, 0:2],
            velocity=x[:, 2:4],
            floor=floor.copy(),
            covariance=P[:, 0:2, 0:2].copy(),
            known=np.asarray(known),
            last_fix_t=self.last_fix_t[idx].copy(),
        )

    # -- measurements ---------------------------------------------------------------------------
    def update(self, now: float, fix: Fix, tags: ArrayLike | None = None) -> UpdateResult:
        """Fold in fixes made at ``now``: ``fix`` (M tags) for ``tags`` (M,) (default all N).

        Each track is first advanced to ``now``. Unknown fixes are ignored; a known fix starts
        a track (none yet, expired, other floor, or ``max_rejections`` reached), is gated out,
        or is filtered in with R = measurement_scale × fix.covariance.
        """
        t = self._check_time(now)
        idx = self._tags(tags)
        m = idx.shape[0]
        if len(fix) != m:
            raise TrackError(f"fix has {len(fix)} rows for {m} tags")
        p = self.params
        self.predict(t, idx)
        R = fix.covariance * p.measurement_scale
        finite_r = np.isfinite(R).all(axis=(1, 2))
        usable = fix.known & finite_r & np.isfinite(fix.xy).all(axis=1) & (fix.floor >= 0)
        ignored = ~usable
        expired = t - self.last_fix_t[idx] > self.timeout_s[idx]
        fresh = usable & ((self.floor[idx] < 0) | expired | (self.floor[idx] != fix.floor))
        # innovation and its covariance S = A + R for every usable fix (others masked later)
        x, P = self.x[idx], self.P[idx]
        R_safe = np.where(usable[:, None, None], R, np.eye(2)[None])
        nu = np.where(usable[:, None], fix.xy - x[:, 0:2], 0.0)
        S = P[:, 0:2, 0:2] + R_safe
        S_inv = _inv2(S)
        d2 = np.einsum("mi,mij,mj->m", nu, S_inv, nu)
        passes = usable & ~fresh & (d2 <= p.gate)
        rejected = usable & ~fresh & ~passes
        rejections = np.where(rejected, self.rejections[idx] + 1, self.rejections[idx])
        restart = rejected & (rejections >= p.max_rejections)
        started = fresh | restart
        rejected &= ~restart
        # Kalman update of the passing tracks: K = P Hᵀ S⁻¹, x += K ν, P -= K S Kᵀ
        K = P[:, :, 0:2] @ S_inv  # (M, 4, 2)
        x_new = x + np.einsum("mij,mj->mi", K, nu)
        P_new = P - K @ S @ K.transpose(0, 2, 1)
        P_new = 0.5 * (P_new + P_new.transpose(0, 2, 1))
        x = np.where(passes[:, None], x_new, x)
        P = np.where(passes[:, None, None], P_new, P)
        # (re)started tracks: at the fix, at rest, velocity std initial_speed_sigma
        x0 = np.zeros((m, 4))
        x0[:, 0:2] = np.where(usable[:, None], fix.xy, 0.0)
        P0 = np.zeros((m, 4, 4))
        P0[:, 0:2, 0:2] = R_safe
        P0[:, 2, 2] = P0[:, 3, 3] = p.initial_speed_sigma**2
        x = np.where(started[:, None], x0, x)
        P = np.where(started[:, None, None], P0, P)
        took = passes | started
        floor = np.where(started, fix.floor, self.floor[idx])
        x = np.where(took[:, None], self._constrained(x, P, floor), x)
        self.x[idx], self.P[idx] = x, P
        self.t[idx] = np.where(took, t, self.t[idx])
        self.floor[idx] = floor
        self.last_fix_t[idx] = np.where(took, t, self.last_fix_t[idx])
        self.rejections[idx] = np.where(took, 0, rejections)
        return UpdateResult(
            accepted=np.asarray(passes),
            rejected=np.asarray(rejected),
            started=np.asarray(started),
            ignored=np.asarray(ignored),
        )

    def _constrained(self, x: FloatArray, P: FloatArray, floor: IntArray) -> FloatArray:
        """States (M, 4) with their positions kept in the constraint set (if any)."""
        if self.constraint is None or x.shape[0] == 0:
            return x
        fl = np.asarray(floor, dtype=np.intp)
        target = self.constraint(x[:, 0:2], fl)
        out = project_state(x, P, target)
        # the projection lands on the boundary's tangent: a second, Euclidean, pass keeps it
        # inside where the boundary bends (corners, door jambs)
        out[:, 0:2] = self.constraint(out[:, 0:2], fl)
        return out

    def reset(self, tags: ArrayLike | None = None) -> None:
        """Forget the tracks of ``tags`` (default all): they become unknown until a new fix."""
        idx = self._tags(tags)
        self.x[idx] = 0.0
        self.P[idx] = 0.0
        self.t[idx] = -np.inf
        self.floor[idx] = -1
        self.last_fix_t[idx] = -np.inf
        self.rejections[idx] = 0


def project_state(x: FloatArray, P: FloatArray, target: FloatArray) -> FloatArray:
    """Estimate projection (Simon 2010) of states x (M, 4) with covariance P (M, 4, 4)
    onto the half-planes ``n·p <= n·target`` (M, 2), ``n`` the unit vector from ``target`` to
    the position p: for those outside, ``x - P Dᵀ (D P Dᵀ)⁻¹ (D x - n·target)`` with
    ``D = [nᵀ 0]``, the state of least ``(x̃ - x)ᵀ P⁻¹ (x̃ - x)`` on the boundary line. Rows
    with ``target`` equal to their position (or non-finite) are returned unchanged."""
    out = np.array(x, dtype=np.float64, copy=True)
    d = out[:, 0:2] - target
    dist = np.hypot(d[:, 0], d[:, 1])
    rows = np.flatnonzero(np.isfinite(dist) & (dist > 0))
    if rows.size == 0:
        return out
    n = d[rows] / dist[rows, None]
    pd = np.einsum("mij,mj->mi", P[rows][:, :, 0:2], n)  # P Dᵀ (M', 4)
    dpd = np.einsum("mi,mi->m", n, pd[:, 0:2])  # D P Dᵀ
    good = np.isfinite(dpd) & (dpd > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(good[:, None], pd * (dist[rows] / dpd)[:, None], 0.0)
    out[rows] -= step
    # a degenerate covariance (no spread along n): move the position alone
    bad = rows[~good]
    out[bad, 0:2] = target[bad]
    return out


def _inv2(S: FloatArray) -> FloatArray:
    """Inverse of stacked 2×2 matrices (M, 2, 2) in closed form (S is positive definite)."""
    a, b, c, d = S[:, 0, 0], S[:, 0, 1], S[:, 1, 0], S[:, 1, 1]
    inv_det = 1.0 / (a * d - b * c)
    out = np.empty_like(S)
    out[:, 0, 0] = d * inv_det
    out[:, 0, 1] = -b * inv_det
    out[:, 1, 0] = -c * inv_det
    out[:, 1, 1] = a * inv_det
    return out
