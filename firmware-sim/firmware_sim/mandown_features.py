"""Signal side of the man-down detector: input checks and per-frame features, vectorised.

Samples are grouped into fixed frames of ``frame_s`` on the absolute time grid; per frame the
detector keeps the mean, the spread and the peak magnitude. Features over the frames of a chunk:
gravity = first-order low-pass of the frame means (``gravity_tau_s``); tilt = angle between the
badge z axis and gravity; rotation = how fast the gravity direction turns (angle between the
estimates of consecutive frames over ``frame_s``), the accelerometer-only proxy for the trunk's
angular velocity that tells a fall from lying down; activity = RMS deviation of the raw samples
from gravity over ``activity_window_s``; impact = the peak ``|acc|`` of each frame. The carried
:class:`SignalState` makes the features independent of how the samples are split into chunks.
The state machine that turns features into events is in :mod:`firmware_sim.mandown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from firmware_sim.mandown_config import ManDownConfig
from rtls.errors import PayloadError

FloatArray = npt.NDArray[np.float64]


class SampleError(PayloadError):
    """Unusable accelerometer samples; ``index`` is the offending sample in the chunk, if any."""

    def __init__(self, message: str, reason: str = "bad_samples", index: int | None = None):
        super().__init__(message, reason)
        self.index = index


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """Per-frame features (M frames): ``t`` frame end (s), ``tilt_deg``, ``activity_g``,
    ``peak_g`` (largest |acc| in the frame, 0 if empty), ``peak_t`` (its time, NaN if empty) and
    ``rotation_dps`` (how fast the gravity estimate turned since the previous frame, °/s)."""

    t: FloatArray
    tilt_deg: FloatArray
    activity_g: FloatArray
    peak_g: FloatArray
    peak_t: FloatArray
    rotation_dps: FloatArray


@dataclass
class SignalState:
    """Signal state carried between chunks (private to the detector)."""

    frame: int | None = None  # index of the first frame not yet emitted
    pend_t: FloatArray = field(default_factory=lambda: np.zeros(0))
    pend_acc: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    last_mean: FloatArray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    last_var: float = 0.0
    zi_g: FloatArray | None = None  # gravity low-pass state (1, 3)
    last_g: FloatArray | None = None  # gravity estimate of the last frame (3,)
    hist_d: FloatArray | None = None  # last W-1 squared deviations (activity window)
    first_t: float = math.nan
    last_t: float = math.nan
    count: int = 0


def validate(sig: SignalState, cfg: ManDownConfig, t: FloatArray, acc: FloatArray) -> None:
    """Raise SampleError for wrong shapes, non-finite values, time going backwards, gaps or too
    low an average rate; the stream state is not changed."""
    if t.ndim != 1:
        raise SampleError(f"t must be a 1-D array, got shape {t.shape}", "shape")
    if acc.shape != (t.size, 3):
        raise SampleError(f"acc must have shape ({t.size}, 3) to match t, got {acc.shape}", "shape")
    if t.size == 0:
        return
    bad = ~np.isfinite(t) | ~np.isfinite(acc).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise SampleError(f"sample {i}: t or acc is not a finite number", "not_finite", i)
    prev = np.concatenate([[sig.last_t], t]) if sig.count else t
    dt = np.diff(prev)
    offset = 0 if sig.count else 1
    if (dt <= 0).any():
        i = int(np.argmax(dt <= 0)) + offset
        raise SampleError(f"sample {i}: t = {t[i]!r} does not increase", "not_monotonic", i)
    if (dt > cfg.max_gap_s).any():
        i = int(np.argmax(dt > cfg.max_gap_s)) + offset
        raise SampleError(
            f"sample {i}: gap of {dt[i - offset]:.3f} s before t = {t[i]!r} exceeds "
            f"max_gap_s = {cfg.max_gap_s} s",
            "gap",
            i,
        )
    first = t[0] if not sig.count else sig.first_t
    span, n = float(t[-1] - first), sig.count + t.size
    if span >= 1.0 and (n - 1) / span < 0.95 * cfg.min_rate_hz:
        raise SampleError(
            f"average sample rate {(n - 1) / span:.1f} Hz over {span:.1f} s is below "
            f"min_rate_hz = {cfg.min_rate_hz} Hz",
            "rate",
        )


def frames(sig: SignalState, cfg: ManDownConfig, t: FloatArray, acc: FloatArray) -> FrameFeatures:
    """Features of the frames completed by this chunk (updates ``sig``); t (N,), acc (N, 3)."""
    F = cfg.frame_s
    all_t = np.concatenate([sig.pend_t, t])
    all_a = np.concatenate([sig.pend_acc, acc])
    idx = np.floor(all_t / F).astype(np.int64)
    last = int(idx[-1])
    first = int(idx[0]) if sig.frame is None else sig.frame
    done = idx < last
    sig.pend_t, sig.pend_acc = all_t[~done], all_a[~done]
    M = last - first
    if M <= 0:
        e = np.zeros(0)
        return FrameFeatures(e, e, e, e, e, e)
    sig.frame = last
    ct, ca, ci = all_t[done], all_a[done], idx[done] - first
    n = np.bincount(ci, minlength=M).astype(np.float64)
    sums = np.column_stack([np.bincount(ci, weights=ca[:, j], minlength=M) for j in range(3)])
    sq = np.bincount(ci, weights=(ca * ca).sum(axis=1), minlength=M)
    mag = np.sqrt((ca * ca).sum(axis=1))
    peak = np.zeros(M)
    np.maximum.at(peak, ci, mag)
    peak_t = np.full(M, np.nan)
    is_peak = mag == peak[ci]
    frames_hit, first_hit = np.unique(ci[is_peak], return_index=True)
    peak_t[frames_hit] = ct[is_peak][first_hit]
    nz = np.maximum(n, 1.0)
    mean = sums / nz[:, None]
    var = np.maximum(sq / nz - (mean * mean).sum(axis=1), 0.0)
    # an empty frame (irregular sampling) repeats the last non-empty one
    src = np.maximum.accumulate(np.where(n > 0, np.arange(M), -1))
    mean = np.where((src >= 0)[:, None], mean[np.maximum(src, 0)], sig.last_mean)
    var = np.where(src >= 0, var[np.maximum(src, 0)], sig.last_var)
    sig.last_mean, sig.last_var = mean[-1], float(var[-1])
    # gravity: first-order low-pass, alpha = 1 - exp(-F / tau)
    alpha = 1.0 - math.exp(-F / cfg.gravity_tau_s)
    if sig.zi_g is None:
        sig.zi_g = (1.0 - alpha) * mean[:1]
    g, sig.zi_g = lfilter([alpha], [1.0, alpha - 1.0], mean, axis=0, zi=sig.zi_g)
    g = np.asarray(g, dtype=np.float64)
    gn = np.maximum(np.linalg.norm(g, axis=1), 1e-9)
    tilt = np.degrees(np.arccos(np.clip(g[:, 2] / gn, -1.0, 1.0)))
    # rotation rate: angle between consecutive gravity directions (atan2 form, exact for small
    # angles) over the frame length; the first frame ever has nothing to turn from
    prev = np.concatenate([g[:1] if sig.last_g is None else sig.last_g[None, :], g[:-1]])
    sig.last_g = g[-1].copy()
    turn = np.arctan2(np.linalg.norm(np.cross(prev, g), axis=1), (prev * g).sum(axis=1))
    rotation = np.asarray(np.degrees(turn) / F, dtype=np.float64)
    # mean squared deviation of the raw samples from gravity: |mean - g|^2 + spread
    d = ((mean - g) ** 2).sum(axis=1) + var
    W = max(1, round(cfg.activity_window_s / F))
    hist = np.full(W - 1, d[0]) if sig.hist_d is None else sig.hist_d
    ext = np.concatenate([hist, d])
    acc2 = np.zeros(M)
    for j in range(W):  # W shifted adds: exact, whatever the chunking
        acc2 = acc2 + ext[j : j + M]
    sig.hist_d = ext[ext.size - (W - 1) :]
    activity = np.asarray(np.sqrt(acc2 / W), dtype=np.float64)
    t_end = np.asarray((first + np.arange(M) + 1) * F, dtype=np.float64)
    return FrameFeatures(t_end, tilt, activity, peak, peak_t, rotation)


def frame_features(
    t: npt.ArrayLike, acc: npt.ArrayLike, config: ManDownConfig | None = None
) -> FrameFeatures:
    """The detector's per-frame features of one recording (for plots and checks)."""
    cfg = config or ManDownConfig()
    sig = SignalState()
    ta, aa = np.asarray(t, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    validate(sig, cfg, ta, aa)
    return frames(sig, cfg, ta, aa)
