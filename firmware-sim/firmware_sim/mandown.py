"""On-badge man-down detection: fall, loss of verticality (tilt) and no movement.

Input: raw accelerometer samples, ``t (N,)`` in s (strictly increasing, 20 Hz or more on average,
irregular spacing allowed) and ``acc (N, 3)`` in g, badge axes (+z up the trunk when standing).
Output: :class:`Event` objects (``pre_alarm``, ``alarm``, ``cancel``) with their times.

The tilt rule is about a wearer who went down, not one who lay down: it counts a tilted episode
only after an impact or a fast rotation of the trunk around its start (an uncontrolled
transition). Lying down into bed and staying motionless is left to the no-movement rule.

Per-frame features (tilt, rotation, activity, impact peaks) come from
:mod:`firmware_sim.mandown_features` and the parameters from :mod:`firmware_sim.mandown_config`;
both are re-exported here. A small state machine (monitor → pre_alarm → alarm, back to monitor on
cancel) runs over the features, vectorised per chunk, so results do not depend on how the samples
are split. See docs/mandown.md.

Command: ``python -m firmware_sim.mandown FILE.csv [--config JSON]`` prints one JSON event a line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from firmware_sim.mandown_config import DGUV_MAX_PRE_ALARM_S, DGUV_MAX_TRIGGER_S, ManDownConfig
from firmware_sim.mandown_features import (
    FrameFeatures,
    SampleError,
    SignalState,
    frame_features,
    frames,
    validate,
)
from rtls.errors import ConfigError, PayloadError

__all__ = [
    "DGUV_MAX_PRE_ALARM_S",
    "DGUV_MAX_TRIGGER_S",
    "Cause",
    "Event",
    "EventKind",
    "FrameFeatures",
    "ManDownConfig",
    "ManDownDetector",
    "SampleError",
    "detect",
    "frame_features",
    "main",
    "read_csv",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
EventKind = Literal["pre_alarm", "alarm", "cancel"]
Cause = Literal["fall", "tilt", "no_movement"]


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


# What ends a pre-alarm or an alarm, by (state, cause is no_movement): the flag that must hold
# and whether for ``recovery_s`` (else one frame). A fall or tilt pre-alarm is withdrawn when the
# wearer gets up or moves normally; a no-movement pre-alarm by any motion above the stillness
# threshold (the same evidence that restarts its timer). An alarm stays until the wearer gets up
# (no movement: moves normally), so small movements, turning over or convulsions while lying
# never end it.
_RECOVERY = {
    ("pre_alarm", False): ("up_or_moving", True),
    ("pre_alarm", True): ("not_still", False),
    ("alarm", False): ("upright", True),
    ("alarm", True): ("moving", True),
}


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
    down: float = 0.0  # 1.0 while in a down episode (tilted, not yet upright again)
    episode: int = 0  # number of the current (or last) down episode
    armed_episode: int = -1  # last episode armed for the tilt rule
    fast_last_t: float = math.nan  # last frame with a fast (uncontrolled) rotation


class ManDownDetector:
    """Streaming detector: :meth:`feed` chunks of samples, get events. Pure: time comes only from
    the samples and the ``t`` arguments. Events are decided per frame, once a sample of a later
    frame has arrived (at most one frame, 0.1 s by default, behind the input)."""

    def __init__(self, config: ManDownConfig | None = None) -> None:
        self.config = config or ManDownConfig()
        self._sig = SignalState()
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
        validate(self._sig, self.config, ta, aa)
        if ta.size == 0:
            return []
        if not self._sig.count:
            self._sig.first_t = float(ta[0])
        self._sig.count += ta.size
        self._sig.last_t = float(ta[-1])
        ff = frames(self._sig, self.config, ta, aa)
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
        sample fed. The signal filters keep running: the next feed continues the same stream, and
        a wearer still down after a fall stays down for the tilt rule."""
        last = self._sig.last_t
        self._to_monitor(-math.inf if math.isnan(last) else last)

    def _to_monitor(self, t: float) -> None:
        m = self._m
        m.state, m.pre_t, m.peak_g, m.impact_t = "monitor", math.nan, None, None
        m.rearm_t = t

    def _impacts(self, ff: FrameFeatures) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per frame (M,): time of the last impact so far, the strongest peak within
        ``fall_window_s`` before it and that peak's time (NaN before the first impact): a fall's
        main hit and its rebound count as one impact."""
        cfg, m, M = self.config, self._m, ff.t.size
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
        keep = it >= ff.t[-1] - cfg.fall_window_s
        m.recent_t, m.recent_g = it[keep], ig[keep]
        return imp_t, imp_g, imp_tmax

    def _armed(
        self, ff: FrameFeatures, tilted: BoolArray, upright: BoolArray, imp_t: FloatArray
    ) -> BoolArray:
        """Frames (M,) of a down episode that the tilt rule counts. A down episode begins when
        the trunk tilts beyond ``tilt_deg`` and ends when it is upright again (below
        ``tilt_deg - tilt_hysteresis_deg``). It is armed from the first frame by which the
        wearer is known to have gone down rather than lain down: an impact since
        ``fall_window_s`` before the episode began, or the gravity direction turning at
        ``fall_rotation_dps`` or faster within ``fall_window_s`` of its start. Armed, it stays
        armed until the episode ends (a cancel or reset does not disarm it)."""
        cfg, m = self.config, self._m
        t = ff.t
        state = np.where(tilted, 1.0, np.where(upright, 0.0, np.nan))
        down = _ffill(state, m.down) == 1.0
        begins = down & ~np.concatenate([[m.down == 1.0], down[:-1]])
        episode = m.episode + np.cumsum(begins)
        ds, m.runs["down"] = _runs(down, t - cfg.frame_s, m.runs.get("down", math.nan))
        fast = ff.rotation_dps >= cfg.fall_rotation_dps
        fast_t = _ffill(np.where(fast, t, np.nan), m.fast_last_t)
        w = cfg.fall_window_s
        if cfg.tilt_requires_fall:
            with np.errstate(invalid="ignore"):
                went_down = (imp_t >= ds - w) | ((fast_t >= ds - w) & (t <= ds + w))
            cond = down & went_down
        else:  # DGUV's plain position alarm: every down episode counts
            cond = down
        marks = np.concatenate([[m.armed_episode], np.where(cond, episode, -1)])
        seen = np.maximum.accumulate(marks)[1:]
        m.down, m.episode = float(down[-1]), int(episode[-1])
        m.armed_episode, m.fast_last_t = int(seen[-1]), float(fast_t[-1])
        armed: BoolArray = down & (seen == episode)
        return armed

    def _step(self, ff: FrameFeatures) -> list[Event]:
        cfg, m = self.config, self._m
        t, M = ff.t, ff.t.size
        tilted = ff.tilt_deg > cfg.tilt_deg
        upright = ff.tilt_deg < cfg.tilt_deg - cfg.tilt_hysteresis_deg
        quiet = ff.activity_g < cfg.activity_threshold_g  # nearly motionless: tilt, fall
        still = ff.activity_g < cfg.stillness_threshold_g  # no motion at all: no movement
        moving = ff.activity_g >= cfg.motion_threshold_g
        imp_t, imp_g, imp_tmax = self._impacts(ff)
        flags = {
            "tilted": tilted,
            "tilted_still": tilted & quiet,
            "armed": self._armed(ff, tilted, upright, imp_t),
            "still": still,
            "up_or_moving": upright | moving,
            "not_still": ~still,
            "upright": upright,
            "moving": moving,
        }
        run: dict[str, FloatArray] = {}
        for name, flag in flags.items():
            run[name], m.runs[name] = _runs(flag, t - cfg.frame_s, m.runs.get(name, math.nan))
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
                    since = np.maximum(np.maximum(ts, run["armed"][s]), r)
                    tilt = t[s] - since >= cfg.tilt_hold_s
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
                rec_flag, sustained = _RECOVERY[m.state, m.cause == "no_movement"]
                need = cfg.recovery_s if sustained else 0.5 * cfg.frame_s
                with np.errstate(invalid="ignore"):
                    rec = t[s] - np.maximum(run[rec_flag][s], m.pre_t) >= need
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
