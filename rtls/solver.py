"""Batched damped Newton solver of the log-distance RSSI model for all tags at once.

The cost of tag i is ``Σ_j w_ij r_ij²`` with ``r_ij = rel_ij + (k_j / 2) ln d_ij²``,
``rel = RSSI - P0``, ``k = 10 n / ln 10`` (the log-distance model of DOMAIN.md in natural
logarithms) and ``d`` the 3-D tag-gateway distance, plus optionally ``-2 Σ log Φ(r_ij / σ)``
over the silent links (:class:`Censored`, ``rel`` there is the sensitivity minus P0): minus
twice the log-likelihood of the censored (Tobit) model, Tobin (1958). Optionally the heard
links' squares ``w r²`` become Huber's loss (Huber 1964, quadratic up to k σ, linear beyond), so
one link far off the model (a wall the model misses, a body in the way) pulls a fix with a
bounded force; it is minimised by iteratively reweighted least squares inside the same damped
Newton iterations (weights from each evaluation's residuals). Arrays are laid out
(G, N), gateways by tags, in float32: every operation then runs along contiguous rows of N tags
(broadcasting per-gateway constants down a column is as fast as a plain product), which is what
makes one solve of 10,000 tags × 8 gateways take a few milliseconds. All 2×2 systems are solved
in closed form. The per-tag state is a (ROWS, N) float64 array with the rows named below. Used
by :mod:`rtls.locate`, which owns the model's inputs and the meaning of the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

LN10 = float(np.log(10.0))
LOG_SQRT_2PI = float(0.5 * np.log(2.0 * np.pi))
# rows of the (ROWS, N) state: position, cost (Σ w r² plus the censored term), Gauss–Newton
# matrix A = JᵀWJ (xx, xy, yy), half-gradient g = JᵀWr, Hessian H used for the next step
# (Newton's or A), FIT the heard links' part Σ w r² (Huber: Σ ρ) of the cost
X, Y, COST, AXX, AXY, AYY, GX, GY, HXX, HXY, HYY, FIT = range(12)  # X, Y and GX, GY adjacent
ROWS = 12
GN_STEPS = 2  # iterations with Gauss–Newton steps before Newton's


@dataclass(frozen=True)
class Box:
    """The floor's bounds, which fixes stay inside: lo, hi (2, 1) for all tags or (2, N)."""

    lo: FloatArray
    hi: FloatArray

    @classmethod
    def of(cls, bounds: FloatArray) -> Box:
        """From ``xmin, ymin, xmax, ymax``: one row (4,) for all tags, or (N, 4) per tag."""
        b = np.asarray(bounds, dtype=np.float64)
        if b.ndim == 1:
            return cls(b[:2].reshape(2, 1), b[2:].reshape(2, 1))
        return cls(np.ascontiguousarray(b[:, :2].T), np.ascontiguousarray(b[:, 2:].T))

    def clip(self, p: FloatArray) -> FloatArray:
        """Positions (2, N) clipped into the box."""
        return np.asarray(np.clip(p, self.lo, self.hi))


@dataclass(frozen=True)
class Censored:
    """The silent links: gateways that could have heard a tag and heard nothing.

    gateway, tag (M,) indices into the (G, N) arrays of the M silent links (their ``w`` must
    be 0 and their ``rel`` the sensitivity minus P0, in the RSSI's corrected scale); sigma_db
    the shadowing σ of the censored reading; curvature (G, N) float32 scratch, which holds the
    links' weights in A (``w`` where heard); outage ε in [0, 1): the probability that a link
    is silent whatever its signal (a gateway down without anyone knowing), so a silent link
    has probability ``ε + (1 - ε) Φ(z)`` and its cost is bounded by ``-2 ln ε``.
    """

    gateway: NDArray[np.intp]
    tag: NDArray[np.intp]
    sigma_db: float
    curvature: NDArray[np.float32]
    outage: float = 0.0


class Solver:
    """Cost, gradient and Hessians of all tags, over (G, N) float32 arrays.

    rel (G, N) RSSI - P0 in dB (0 where unused); w (G, N) 1/variance (0 where unused);
    dz2 (G, N) or (G, 1) squared height difference tag - gateway; gateway_xy (G, 2);
    n (G,) path-loss exponents; work (6, G, N) float32 scratch, reused by every call;
    censored: the silent links counted as readings below the sensitivity (None: heard only).
    robust_k: Huber's threshold k in σ of each link (None: Gaussian, quadratic throughout);
    then ``work`` needs 8 rows (two more scratch arrays).
    """

    def __init__(
        self,
        rel: NDArray[np.float32],
        w: NDArray[np.float32],
        dz2: NDArray[np.float32],
        gateway_xy: FloatArray,
        n: FloatArray,
        d_min: float,
        work: NDArray[np.float32],
        censored: Censored | None = None,
        robust_k: float | None = None,
    ) -> None:
        f32 = np.float32
        self.rel, self.w, self.dz2, self.work = rel, w, dz2, work
        self.censored = censored if censored is not None and censored.tag.size else None
        if self.censored is not None:
            np.copyto(self.censored.curvature, w)
        self.robust_k = None if robust_k is None else f32(robust_k)
        if self.robust_k is not None and work.shape[0] < 8:
            raise ValueError("a robust solver needs 8 scratch rows in work")
        self.n = n
        self.gx = gateway_xy[:, 0:1].astype(f32)
        self.gy = gateway_xy[:, 1:2].astype(f32)
        self.gxy = np.ascontiguousarray(gateway_xy.T, dtype=f32)  # (2, G)
        k = 10.0 * n[:, None] / LN10
        self.k = k.astype(f32)
        self.half_k = (0.5 * k).astype(f32)
        self.d2_min = f32(d_min * d_min)
        # with ceiling gateways every tag is farther than d_min: skip the near-field test
        self.may_be_near = bool(dz2.size == 0 or dz2.min() < self.d2_min)

    def centroid(self, used: BoolArray, box: Box) -> FloatArray:
        """Weighted centroid (2, N) of the used gateways, weight 1/d̂⁴, d̂ the range from RSSI.

        ln(1/d̂⁴) = 0.4 ln 10 (RSSI - P0) / n: the strongest gateways dominate. Tags with no
        used gateway start in the middle of their floor's bounds.
        """
        e, t = self.work[0], self.work[1]
        np.multiply(self.rel, (0.4 * LN10 / self.n).astype(np.float32)[:, None], out=e)
        np.multiply(~used, np.float32(1e4), out=t)
        e -= t  # unused links: weight exp(-1e4) = 0
        e -= e.max(axis=0)
        np.exp(e, out=e)
        total = e.sum(axis=0, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = (self.gxy @ e) / total  # (2, G) @ (G, N)
        middle = np.broadcast_to((box.lo + box.hi) * 0.5, c.shape)
        return box.clip(np.where(total > 0, c, middle))

    def evaluate(self, p: FloatArray, out: FloatArray, newton: bool) -> None:
        """Fill the state ``out`` (ROWS, N) at positions ``p`` (2, N); rows named above.

        r = rel + (k/2) ln d², J = ∂r/∂(x, y) = k (x - x_j, y - y_j) / d², zero below d_min.
        ``newton`` False skips Newton's Hessian (H rows = A rows: a Gauss–Newton step).

        A silent link (z = r / σ, the sensitivity's distance above the model mean in σ) adds
        -2 ln P(z), P = ε + (1 - ε) Φ(z), to the cost; with the inverse Mills ratio
        λ = (1 - ε) φ(z) / P its half-gradient is -(λ/σ) J and its half-Hessian
        λ (z + λ) / σ² JJᵀ - (λ/σ) ∇²r: it enters as a heard link with w r replaced by -λ/σ and,
        in A, w by max(0, λ (z + λ)) / σ² (for ε = 0 in (0, 1/σ²]: -ln Φ is convex; with ε > 0
        the cost saturates where the gateway should have heard the tag, and the negative
        curvature there goes into Newton's H only, so A stays positive semi-definite).
        """
        dx, dy, d2, r, s, t = self.work[:6]
        p32 = p.astype(np.float32)
        np.subtract(p32[0:1], self.gx, out=dx)  # (G, N)
        np.subtract(p32[1:2], self.gy, out=dy)
        np.multiply(dx, dx, out=d2)
        np.multiply(dy, dy, out=t)
        d2 += t
        d2 += self.dz2
        near = (d2 < self.d2_min) if self.may_be_near else None
        if near is not None:
            np.maximum(d2, self.d2_min, out=d2)
        np.log(d2, out=r)
        r *= self.half_k
        r += self.rel
        np.divide(self.k, d2, out=s)
        if near is not None and near.any():
            s[near] = 0.0
        out[X : Y + 1] = p
        np.multiply(self.w, r, out=t)  # w r
        out[FIT] = np.einsum("gn,gn->n", t, r)
        wa = self.w
        c = self.censored
        if self.robust_k is not None:
            wa = self._huber(r, t, out[FIT])
        concave: NDArray[np.intp] | None = None
        extra: list[FloatArray] = []
        if c is None:
            out[COST] = out[FIT]
        else:  # silent links (their w is 0): coefficients of the censored term in t and wa
            z = r[c.gateway, c.tag].astype(np.float64) * (1.0 / c.sigma_db)
            log_p = log_ndtr(z)
            if c.outage > 0.0:  # ln(ε + (1 - ε) Φ(z))
                log_p = np.logaddexp(np.log(c.outage), np.log1p(-c.outage) + log_p)
                mills = np.exp(np.log1p(-c.outage) - 0.5 * z * z - LOG_SQRT_2PI - log_p)
            else:
                mills = np.exp(-0.5 * z * z - LOG_SQRT_2PI - log_p)
            out[COST] = out[FIT] - 2.0 * np.bincount(c.tag, log_p, minlength=p.shape[1])
            t[c.gateway, c.tag] = mills * (-1.0 / c.sigma_db)
            curv = mills * (z + mills)
            curv *= 1.0 / (c.sigma_db * c.sigma_db)
            concave = np.flatnonzero(curv < 0.0) if newton and c.outage > 0.0 else None
            if concave is not None and concave.size:
                gc, nc = c.gateway[concave], c.tag[concave]
                jx = s[gc, nc] * dx[gc, nc]
                jy = s[gc, nc] * dy[gc, nc]
                neg = curv[concave]
                n_tags = p.shape[1]
                extra = [
                    np.asarray(np.bincount(nc, neg * a * b, minlength=n_tags), dtype=np.float64)
                    for a, b in ((jx, jx), (jx, jy), (jy, jy))
                ]
            np.maximum(curv, 0.0, out=curv)
            c.curvature[c.gateway, c.tag] = curv
            wa = c.curvature
        t *= s  # w s r
        out[GX] = np.einsum("gn,gn->n", t, dx)
        out[GY] = np.einsum("gn,gn->n", t, dy)
        s *= s
        s *= wa  # w s²
        np.multiply(s, dx, out=r)  # r is free from here on
        out[AXX] = np.einsum("gn,gn->n", r, dx)
        out[AXY] = np.einsum("gn,gn->n", r, dy)
        s *= dy
        out[AYY] = np.einsum("gn,gn->n", s, dy)
        if not newton:  # H = A: the proposal takes a Gauss–Newton step
            out[HXX], out[HXY], out[HYY] = out[AXX], out[AXY], out[AYY]
            return
        # Newton's Hessian adds Σ w r ∇²r: ∂²r/∂x² = k (1/d² - 2 dx²/d⁴), ∂²r/∂x∂y = -2k dx dy/d⁴
        total = t.sum(axis=0, dtype=np.float64)  # Σ w s r
        t /= d2  # w s r / d²
        np.multiply(t, dx, out=s)
        out[HXX] = out[AXX] + total - 2.0 * np.einsum("gn,gn->n", s, dx)
        out[HXY] = out[AXY] - 2.0 * np.einsum("gn,gn->n", s, dy)
        t *= dy
        out[HYY] = out[AYY] + total - 2.0 * np.einsum("gn,gn->n", t, dy)
        if extra:
            out[HXX] += extra[0]
            out[HXY] += extra[1]
            out[HYY] += extra[2]

    def _huber(
        self, r: NDArray[np.float32], t: NDArray[np.float32], fit: FloatArray
    ) -> NDArray[np.float32]:
        """Huber's loss (Huber 1964) on the heard links, in place: with u = r √w the residual in
        σ, ρ(u) = u² for |u| <= k, 2k|u| - k² beyond, i.e. u² - max(|u| - k, 0)², subtracted
        from ``fit`` (N,) (Σ w r² on entry); ``t`` (w r) becomes ψ(u)/2 in the same scale,
        w' r with the IRLS weight w' = w min(1, k / |u|) (Holland and Welsch 1977), which is
        returned (G, N) (the censored curvature array when there are silent links, whose rows
        the censored term then overwrites) for A = Jᵀ W' J."""
        k = self.robust_k
        assert k is not None
        u: NDArray[np.float32] = self.work[6]
        wa: NDArray[np.float32] = self.work[7]
        if self.censored is not None:
            wa = self.censored.curvature
        np.multiply(t, r, out=u)  # w r² = u²
        np.sqrt(u, out=u)
        np.subtract(u, k, out=wa)
        np.maximum(wa, 0.0, out=wa)
        fit -= np.einsum("gn,gn->n", wa, wa)
        np.maximum(u, k, out=u)
        np.divide(k, u, out=u)  # min(1, k / |u|)
        t *= u
        np.multiply(self.w, u, out=wa)
        return wa

    def solve(
        self, p: FloatArray, box: Box, iterations: int, max_step: float, state: FloatArray
    ) -> FloatArray:
        """Minimise the cost of every tag from positions ``p`` (2, N); returns the final state.

        ``state`` (2, ROWS, N) float64 is scratch, and the result (ROWS, N) is a view of it. A
        fixed number of iterations, each one evaluation for all tags: a damped step from the
        best point so far (Levenberg 1944, Marquardt 1963) inside a trust radius, kept per tag
        when the cost falls; a failed step halves the radius below its length and multiplies
        the damping by 10, a good one divides the damping by 10. Gauss–Newton steps first
        (robust far from the optimum), then Newton's where its Hessian is positive definite
        (fast near it, where large residuals make Gauss–Newton zig-zag).
        """
        best, cand = state[0], state[1]
        self.evaluate(p, best, newton=False)
        n_tags = p.shape[1]
        lam = np.full(n_tags, 1e-3)
        radius = np.full(n_tags, max_step)
        for it in range(iterations):
            q = propose(best, lam, radius, box)
            # the last evaluation feeds no further step: no Newton terms needed
            self.evaluate(q, cand, newton=GN_STEPS <= it + 1 < iterations)
            better = cand[COST] < best[COST]
            q -= best[X : Y + 1]
            length = np.sqrt(np.einsum("kn,kn->n", q, q))
            radius = np.where(better, max_step, 0.5 * length)
            lam *= 10.0 - 9.9 * better
            np.clip(lam, 1e-7, 1e7, out=lam)
            failed = np.flatnonzero(~better)
            if failed.size:
                cand[:, failed] = best[:, failed]
            best, cand = cand, best
        result: FloatArray = best
        return result


def propose(at: FloatArray, lam: FloatArray, radius: FloatArray, box: Box) -> FloatArray:
    """Damped step from state ``at``: solve (H + λ diag A) δ = -g in closed form, cap |δ| at
    ``radius`` (N,), clip into the box. Returns the new positions (2, N).

    H is the state's Hessian (Newton's, or Gauss–Newton's A = JᵀWJ) where positive definite,
    else A (positive semi-definite); damping is scaled by A's diagonal (Marquardt 1963), which
    stays informative where Newton's H is nearly flat.
    """
    hxx, hxy, hyy = at[HXX], at[HXY], at[HYY]
    axx, ayy = at[AXX], at[AYY]
    newton = (hxx > 0) & (hxx * hyy > hxy * hxy)
    a = np.where(newton, hxx, axx)
    a += lam * axx
    d = np.where(newton, hyy, ayy)
    d += lam * ayy
    b = np.where(newton, hxy, at[AXY])
    det = a * d - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(det > 0, 1.0 / det, 0.0)
    g = at[GX : GY + 1]
    gx, gy = g
    step = np.empty_like(g)
    step[0] = (b * gy - d * gx) * inv
    step[1] = (b * gx - a * gy) * inv
    p = at[X : Y + 1]
    # a coordinate on its bound whose descent direction points outward stays there, and the
    # other one takes the one-dimensional step (projected Newton, Bertsekas 1982)
    hold = ((p <= box.lo) & (g > 0)) | ((p >= box.hi) & (g < 0))
    if hold.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            step[0] = np.where(hold[1], -gx / a, step[0])
            step[1] = np.where(hold[0], -gy / d, step[1])
        step *= ~hold
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.minimum(1.0, radius / np.sqrt(np.einsum("kn,kn->n", step, step)))
    shrink[np.isnan(shrink)] = 0.0
    step *= shrink
    step += p
    return box.clip(step)
