"""On-badge man-down detection: fall, loss of verticality (tilt) and no movement.

Input: raw accelerometer samples, ``t (N,)`` in s (strictly increasing, 20 Hz or more on average,
irregular spacing allowed) and ``acc (N, 3)`` in g, badge axes (+z up the trunk when standing).
Output: :class:`Event` objects (``pre_alarm``, ``alarm``, ``cancel``) with their times.

Samples are grouped into fixed frames of ``frame_s`` on the absolute time grid; per frame the
detector keeps the mean, the spread and the peak magnitude. Features, vectorised over the frames
of a chunk: gravity = first-order low-pass of the frame means (``gravity_tau_s``); tilt = angle
between the badge z axis and gravity; activity = RMS deviation of the raw samples from gravity
over ``activity_window_s``; impact = a sample with ``|acc| >= impact_g``. A small state machine
(monitor → pre_alarm → alarm, back to monitor on cancel) runs over the frame features, so results
do not depend on how the samples are split into chunks. See docs/mandown.md.

Command: ``python -m firmware_sim.mandown FILE.csv [--config JSON]`` prints one JSON event a line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from rtls.errors import ConfigError, PayloadError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
EventKind = Literal["pre_alarm", "alarm", "cancel"]
Cause = Literal["fall", "tilt", "no_movement"]

DGUV_MAX_TRIGGER_S = 90.0  # DGUV: position / no-movement alarms, pre-alarm included
DGUV_MAX_PRE_ALARM_S = 45.0


class SampleError(PayloadError):
    """Unusable accelerometer samples; ``index`` is the offending sample in the chunk, if any."""

    def __init__(self, message: str, reason: str = "bad_samples", index: int | None = None):
        super().__init__(message, reason)
        self.index = index


@dataclass(frozen=True)
class ManDownConfig:
    """Detector parameters (validated; ConfigError names the field). See docs/mandown.md.

    Defaults match the site file's ``[rules.staff]`` (tilt 45°, 30 s, no movement 60 s,
    pre-alarm 20 s): DGUV's 30–45° upper end, pre-alarm under 45 s, and every nominal time to
    trigger (hold time + pre-alarm) within DGUV's 90 s. With ``dguv=False`` longer vendor-style
    times (no movement 120 s) are accepted.
    """

    tilt_deg: float = 45.0  # trunk beyond this from vertical is "tilted"
    tilt_hysteresis_deg: float = 10.0  # upright again below tilt_deg - this
    tilt_hold_s: float = 30.0  # tilted and nearly motionless this long -> pre-alarm
    no_movement_s: float = 60.0  # no motion at all, any posture, this long -> pre-alarm
    pre_alarm_s: float = 20.0  # time the wearer has to cancel before the alarm
    impact_g: float = 1.6  # |acc| peak counted as an impact (real falls 1.8-3 g)
    fall_window_s: float = 2.0  # tilt must be reached within this after the impact
    fall_settle_s: float = 10.0  # stillness must begin within this after the impact
    post_impact_still_s: float = 10.0  # tilted and still this long after an impact -> fall
    activity_threshold_g: float = 0.05  # activity below this is "nearly motionless"
    motion_threshold_g: float = 0.15  # activity at or above this is "moving normally"
    recovery_s: float = 2.0  # upright / moving this long cancels a pre-alarm or alarm
    gravity_tau_s: float = 0.5  # gravity low-pass time constant
    activity_window_s: float = 1.0  # activity RMS window
    frame_s: float = 0.1  # feature frame on the absolute time grid
    min_rate_hz: float = 20.0  # lowest accepted average sample rate (5 % tolerance)
    max_gap_s: float = 0.5  # longest accepted gap between two samples
    dguv: bool = True  # enforce DGUV's 45 s pre-alarm and 90 s time-to-trigger limits

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dguv":
                if not isinstance(value, bool):
                    raise ConfigError(f"dguv must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{f.name} must be a positive finite number, got {value!r}")
        checks = (
            (self.tilt_deg < 90.0, "tilt_deg must be below 90"),
            (self.tilt_hysteresis_deg < self.tilt_deg, "tilt_hysteresis_deg must be < tilt_deg"),
            (self.motion_threshold_g > self.activity_threshold_g,
             "motion_threshold_g must exceed activity_threshold_g"),
            (self.impact_g > 1.0, "impact_g must exceed 1 g (gravity alone)"),
            (0.01 <= self.frame_s <= 0.5, "frame_s must be within 0.01-0.5 s"),
            (self.activity_window_s >= self.frame_s, "activity_window_s must be >= frame_s"),
            (self.max_gap_s >= 2.0 / self.min_rate_hz,
             "max_gap_s must allow at least two sample periods at min_rate_hz"),
        )  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.dguv:
            if self.pre_alarm_s > DGUV_MAX_PRE_ALARM_S:
                raise ConfigError(
                    f"pre_alarm_s = {self.pre_alarm_s} exceeds DGUV's {DGUV_MAX_PRE_ALARM_S} s "
                    "(set dguv=false to allow it)"
                )
            for name in ("tilt_hold_s", "no_movement_s"):
                total = getattr(self, name) + self.pre_alarm_s
                if total > DGUV_MAX_TRIGGER_S:
                    raise ConfigError(
                        f"{name} + pre_alarm_s = {total} s exceeds DGUV's {DGUV_MAX_TRIGGER_S} s "
                        "maximum time to trigger (set dguv=false to allow it)"
                    )

    @property
    def detection_lag_s(self) -> float:
        """Worst-case delay before stillness is recognised after a posture change (activity
        window plus 4 gravity time constants plus one frame); adds to every time to trigger."""
        return self.activity_window_s + 4.0 * self.gravity_tau_s + self.frame_s

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ManDownConfig:
        """Build from a JSON-like mapping; unknown keys and wrong types raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown man-down parameter(s): {', '.join(unknown)}")
        return cls(**data)  # type: ignore[arg-type]  # values are type-checked in __post_init__


@dataclass(frozen=True)
class Event:
    """A detector output. ``t`` is the end of the frame in which it was decided (or the button
    press for a button cancel). ``peak_g``/``impact_t`` describe the impact of a fall;
    ``reason`` says why a pre-alarm or alarm was cancelled (``button`` or ``recovered``)."""

    t: float
    event: EventKind
    cause: Cause
    tilt_deg: float
    activity_g: float
    peak_g: float | None = None
    impact_t: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (times to the ms, figures to 3 decimals, absent details left out)."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = round(value, 3) if isinstance(value, float) else value
        return out


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """Per-frame features (M frames): ``t`` frame end (s), ``tilt_deg``, ``activity_g``,
    ``peak_g`` (largest |acc| in the frame, 0 if empty) and ``peak_t`` (its time, NaN if empty)."""

    t: FloatArray
    tilt_deg: FloatArray
    activity_g: FloatArray
    peak_g: FloatArray
    peak_t: FloatArray


@dataclass
class _Signal:
    """Carried signal state between chunks."""

    frame: int | None = None  # index of the first frame not yet emitted
    pend_t: FloatArray = field(default_factory=lambda: np.zeros(0))
    pend_acc: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    last_mean: FloatArray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    last_var: float = 0.0
    zi_g: FloatArray | None = None  # gravity low-pass state (1, 3)
    hist_d: FloatArray | None = None  # last W-1 squared deviations (activity window)
    first_t: float = math.nan
    last_t: float = math.nan
    count: int = 0


def _validate(sig: _Signal, cfg: ManDownConfig, t: FloatArray, acc: FloatArray) -> None:
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


def _frames(sig: _Signal, cfg: ManDownConfig, t: FloatArray, acc: FloatArray) -> FrameFeatures:
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
        return FrameFeatures(e, e, e, e, e)
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
    return FrameFeatures(t_end, tilt, activity, peak, peak_t)


def _runs(flag: BoolArray, t_start: FloatArray, carry: float) -> tuple[FloatArray, float]:
    """Start time (M,) of the run of True each frame belongs to (NaN where False), given the
    start of a run still open at the end of the previous chunk (``carry``, NaN if none)."""
    s = np.where(flag, t_start, -np.inf)
    prev = np.concatenate([[not math.isnan(carry)], flag[:-1]])
    s = np.where(flag & prev, -np.inf, s)
    if flag[0] and not math.isnan(carry):
        s[0] = carry
    s = np.maximum.accumulate(s)
    out = np.where(flag, s, np.nan)
    return out, float(out[-1])


def _ffill(values: FloatArray, carry: float) -> FloatArray:
    """Last non-NaN value up to each position (``carry`` before the first)."""
    src = np.maximum.accumulate(np.where(np.isnan(values), -1, np.arange(values.size)))
    out: FloatArray = np.where(src >= 0, values[np.maximum(src, 0)], carry)
    return out


@dataclass
class _Machine:
    state: Literal["monitor", "pre_alarm", "alarm"] = "monitor"
    cause: Cause = "fall"
    pre_t: float = math.nan
    peak_g: float | None = None
    impact_t: float | None = None
    rearm_t: float = -math.inf  # conditions count only from here (after a cancel or reset)
    runs: dict[str, float] = field(default_factory=dict)
    impact_last_t: float = math.nan  # last impact
    impact_last_g: float = math.nan  # strongest peak of its cluster, and its time
    impact_last_tmax: float = math.nan
    recent_t: FloatArray = field(default_factory=lambda: np.zeros(0))  # impacts still in reach
    recent_g: FloatArray = field(default_factory=lambda: np.zeros(0))
    tilt: float = 0.0
    activity: float = 0.0


class ManDownDetector:
    """Streaming detector: :meth:`feed` chunks of samples, get events. Pure: time comes only from
    the samples and the ``t`` arguments. Events are decided per frame, once a sample of a later
    frame has arrived (at most one frame, 0.1 s by default, behind the input)."""

    def __init__(self, config: ManDownConfig | None = None) -> None:
        self.config = config or ManDownConfig()
        self._sig = _Signal()
        self._m = _Machine()

    @property
    def state(self) -> Literal["monitor", "pre_alarm", "alarm"]:
        """``monitor``, ``pre_alarm`` or ``alarm``."""
        return self._m.state

    def feed(self, t: npt.ArrayLike, acc: npt.ArrayLike) -> list[Event]:
        """Process samples ``t (N,)`` s and ``acc (N, 3)`` g that follow those fed before.

        Raises SampleError (a PayloadError) for wrong shapes, non-finite values, t not strictly
        increasing, a gap over ``max_gap_s`` or an average rate under ``min_rate_hz``; the
        detector is then unchanged.
        """
        try:
            ta = np.asarray(t, dtype=np.float64)
            aa = np.asarray(acc, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SampleError(f"samples are not numeric arrays: {exc}", "not_numeric") from exc
        _validate(self._sig, self.config, ta, aa)
        if ta.size == 0:
            return []
        if not self._sig.count:
            self._sig.first_t = float(ta[0])
        self._sig.count += ta.size
        self._sig.last_t = float(ta[-1])
        ff = _frames(self._sig, self.config, ta, aa)
        return self._step(ff) if ff.t.size else []

    def cancel(self, t: float) -> list[Event]:
        """The wearer pressed the button at ``t``: cancels a pre-alarm that is running at ``t``
        (``[cancel]``); otherwise nothing (an alarm stays until the wearer gets up or reset)."""
        m, cfg = self._m, self.config
        if not math.isfinite(t):
            raise SampleError(f"cancel time {t!r} is not finite", "not_finite")
        if m.state != "pre_alarm" or not m.pre_t <= t < m.pre_t + cfg.pre_alarm_s:
            return []
        ev = Event(float(t), "cancel", m.cause, m.tilt, m.activity, m.peak_g, m.impact_t, "button")
        self._to_monitor(float(t))
        return [ev]

    def reset(self) -> None:
        """Forget any pre-alarm or alarm (alarm handled); every timer restarts from the last
        sample fed. The signal filters keep running: the next feed continues the same stream."""
        last = self._sig.last_t
        self._to_monitor(-math.inf if math.isnan(last) else last)

    def _to_monitor(self, t: float) -> None:
        m = self._m
        m.state, m.pre_t, m.peak_g, m.impact_t = "monitor", math.nan, None, None
        m.rearm_t = t

    def _step(self, ff: FrameFeatures) -> list[Event]:
        cfg, m = self.config, self._m
        t, M = ff.t, ff.t.size
        tilted = ff.tilt_deg > cfg.tilt_deg
        upright = ff.tilt_deg < cfg.tilt_deg - cfg.tilt_hysteresis_deg
        still = ff.activity_g < cfg.activity_threshold_g
        moving = ff.activity_g >= cfg.motion_threshold_g
        t0 = t - cfg.frame_s
        flags = {
            "tilted": tilted,
            "tilted_still": tilted & still,
            "still": still,
            "up_or_moving": upright | moving,
            "not_still": ~still,
        }
        run: dict[str, FloatArray] = {}
        for name, flag in flags.items():
            run[name], m.runs[name] = _runs(flag, t0, m.runs.get(name, math.nan))
        # impacts: each frame sees the last impact; its detail is the strongest peak within
        # fall_window_s before it (a fall's main hit and its rebound count as one impact)
        hits = np.flatnonzero(ff.peak_g >= cfg.impact_g)
        it = np.concatenate([m.recent_t, ff.peak_t[hits]])
        ig = np.concatenate([m.recent_g, ff.peak_g[hits]])
        imp_t, imp_g, imp_tmax = np.full(M, np.nan), np.full(M, np.nan), np.full(M, np.nan)
        if hits.size:
            near = (it[None, :] <= it[:, None]) & (it[None, :] >= it[:, None] - cfg.fall_window_s)
            best = np.argmax(np.where(near, ig[None, :], -1.0), axis=1)[m.recent_t.size :]
            imp_t[hits] = it[m.recent_t.size :]
            imp_g[hits], imp_tmax[hits] = ig[best], it[best]
        imp_t = _ffill(imp_t, m.impact_last_t)
        imp_g, imp_tmax = _ffill(imp_g, m.impact_last_g), _ffill(imp_tmax, m.impact_last_tmax)
        m.impact_last_t, m.impact_last_g = float(imp_t[-1]), float(imp_g[-1])
        m.impact_last_tmax = float(imp_tmax[-1])
        keep = it >= t[-1] - cfg.fall_window_s
        m.recent_t, m.recent_g = it[keep], ig[keep]
        m.tilt, m.activity = float(ff.tilt_deg[-1]), float(ff.activity_g[-1])

        events: list[Event] = []
        k = 0
        while k < M:
            s = slice(k, M)
            if m.state == "monitor":
                r = m.rearm_t
                ts, ti = run["tilted_still"][s], imp_t[s]
                with np.errstate(invalid="ignore"):
                    fall = (
                        (ti >= r)
                        & (run["tilted"][s] <= ti + cfg.fall_window_s)
                        & (ts <= ti + cfg.fall_settle_s)
                        & (t[s] - np.maximum(np.maximum(ts, ti), r) >= cfg.post_impact_still_s)
                    )
                    tilt = t[s] - np.maximum(ts, r) >= cfg.tilt_hold_s
                    nomove = t[s] - np.maximum(run["still"][s], r) >= cfg.no_movement_s
                hit = fall | tilt | nomove
                if not hit.any():
                    break
                j = int(np.argmax(hit))
                cause: Cause = "fall" if fall[j] else "tilt" if tilt[j] else "no_movement"
                i = k + j
                m.state, m.cause, m.pre_t = "pre_alarm", cause, float(t[i])
                m.peak_g = float(imp_g[i]) if cause == "fall" else None
                m.impact_t = float(imp_tmax[i]) if cause == "fall" else None
                events.append(self._event(i, ff, "pre_alarm"))
            else:
                rec_run = run["not_still" if m.cause == "no_movement" else "up_or_moving"][s]
                with np.errstate(invalid="ignore"):
                    rec = t[s] - np.maximum(rec_run, m.pre_t) >= cfg.recovery_s
                due = t[s] >= m.pre_t + cfg.pre_alarm_s
                if m.state == "alarm":
                    due = np.zeros_like(due)
                hit = rec | due
                if not hit.any():
                    break
                j = int(np.argmax(hit))
                i = k + j
                if rec[j]:
                    events.append(self._event(i, ff, "cancel", "recovered"))
                    self._to_monitor(float(t[i]))
                else:
                    events.append(self._event(i, ff, "alarm"))
                    m.state = "alarm"
            k = i + 1
        return events

    def _event(
        self, i: int, ff: FrameFeatures, kind: EventKind, reason: str | None = None
    ) -> Event:
        m = self._m
        return Event(float(ff.t[i]), kind, m.cause, float(ff.tilt_deg[i]),
                     float(ff.activity_g[i]), m.peak_g, m.impact_t, reason)  # fmt: skip


def detect(
    t: npt.ArrayLike, acc: npt.ArrayLike, config: ManDownConfig | None = None
) -> list[Event]:
    """All events of one recording (a fresh :class:`ManDownDetector` fed in one chunk)."""
    return ManDownDetector(config).feed(t, acc)


def frame_features(
    t: npt.ArrayLike, acc: npt.ArrayLike, config: ManDownConfig | None = None
) -> FrameFeatures:
    """The detector's per-frame features of one recording (for plots and checks)."""
    cfg = config or ManDownConfig()
    sig = _Signal()
    ta, aa = np.asarray(t, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    _validate(sig, cfg, ta, aa)
    return _frames(sig, cfg, ta, aa)


# ------------------------------------------------------------------------------ CLI


def read_csv(path: Path) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Rows ``t,ax,ay,az`` (optional header line, blank and ``#`` lines skipped) as t (N,),
    acc (N, 3) and the file line number of each sample (N,). PayloadError names the line."""
    rows: list[list[float]] = []
    lines: list[int] = []
    seen_first = False
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            parts = [p.strip() for p in text.split(",")]
            if not seen_first:
                seen_first = True
                if len(parts) == 4 and not any(_is_number(p) for p in parts):
                    continue  # header
            if len(parts) != 4:
                raise PayloadError(
                    f"{path}:{lineno}: expected 4 comma-separated values t,ax,ay,az, "
                    f"got {len(parts)}: {text[:60]!r}",
                    "malformed_row",
                )
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise PayloadError(
                    f"{path}:{lineno}: not a number in {text[:60]!r}", "malformed_row"
                ) from None
            if not all(math.isfinite(v) for v in values):
                raise PayloadError(f"{path}:{lineno}: non-finite value in {text[:60]!r}",
                                   "malformed_row")  # fmt: skip
            rows.append(values)
            lines.append(lineno)
    data = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return data[:, 0], data[:, 1:], np.array(lines, dtype=np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_config(text: str | None) -> ManDownConfig:
    if text is None:
        return ManDownConfig()
    source = text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8")
    try:
        data = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("--config must be a JSON object of parameter: value")
    return ManDownConfig.from_mapping(data)


def main(argv: Sequence[str] | None = None) -> int:
    """``rtls-mandown FILE.csv [--config JSON]``: one JSON event a line; exit 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="rtls-mandown",
        description="Run the badge man-down detector over a t,ax,ay,az CSV file (t in s, acc in "
        "g) and print one JSON object per event (pre_alarm, alarm, cancel).",
    )
    parser.add_argument("file", type=Path, help="CSV file: t,ax,ay,az rows, header optional")
    parser.add_argument("--config", metavar="JSON",
                        help="parameters as a JSON object or the path of a JSON file, e.g. "
                        "'{\"tilt_deg\": 40}'")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        config = _load_config(args.config)
        t, acc, lines = read_csv(args.file)
        if t.size == 0:
            raise PayloadError(f"{args.file}: no samples", "empty")
        try:
            events = detect(t, acc, config)
        except SampleError as exc:
            where = f"{args.file}:{lines[exc.index]}: " if exc.index is not None else ""
            raise PayloadError(f"{where}{exc}", exc.reason) from exc
    except (ConfigError, PayloadError, OSError) as exc:
        print(f"rtls-mandown: error: {exc}", file=sys.stderr)
        return 2
    for ev in events:
        print(json.dumps(ev.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
