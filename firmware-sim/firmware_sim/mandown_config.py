"""Parameters of the on-badge man-down detector (:mod:`firmware_sim.mandown`), validated.

Three motion levels, all on the same activity feature (RMS deviation of the raw samples from
gravity over ``activity_window_s``, see :mod:`firmware_sim.mandown_features`):

- below ``stillness_threshold_g``: no motion at all (the no-movement rule);
- below ``activity_threshold_g``: nearly motionless (the tilt and fall rules);
- at or above ``motion_threshold_g``: moving normally (cancels a tilt or fall pre-alarm).

The tilt rule counts a "down" episode only if the wearer went down in an uncontrolled way: an
impact of ``impact_g`` or more, or the gravity direction turning at ``fall_rotation_dps`` or
more, around the start of the episode (``tilt_requires_fall``).

docs/mandown.md gives every default with its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from rtls.errors import ConfigError

DGUV_MAX_TRIGGER_S = 90.0  # DGUV: position / no-movement alarms, pre-alarm included
DGUV_MAX_PRE_ALARM_S = 45.0
_FLAGS = frozenset({"dguv", "tilt_requires_fall"})


@dataclass(frozen=True)
class ManDownConfig:
    """Detector parameters (validated; ConfigError names the field). See docs/mandown.md.

    Defaults match the site file's ``[rules.staff]`` (tilt 45°, 30 s, no movement 60 s,
    pre-alarm 20 s): DGUV's 30–45° upper end, pre-alarm under 45 s, and every nominal time to
    trigger (hold time + pre-alarm) within DGUV's 90 s. With ``dguv=False`` longer vendor-style
    times (no movement 120 s) are accepted. ``tilt_requires_fall=False`` gives DGUV's plain
    position alarm (any tilted, nearly motionless episode, lying down in bed included).
    Thresholds must keep ``stillness_threshold_g <= activity_threshold_g < motion_threshold_g``.
    """

    tilt_deg: float = 45.0  # trunk beyond this from vertical is "tilted"
    tilt_hysteresis_deg: float = 10.0  # upright again below tilt_deg - this
    tilt_hold_s: float = 30.0  # tilted and nearly motionless this long -> pre-alarm
    tilt_requires_fall: bool = True  # tilt rule only after an impact or a fast rotation
    fall_rotation_dps: float = 80.0  # gravity turning this fast (deg/s) is an uncontrolled fall
    no_movement_s: float = 60.0  # no motion at all, any posture, this long -> pre-alarm
    pre_alarm_s: float = 20.0  # time the wearer has to cancel before the alarm
    impact_g: float = 1.6  # |acc| peak counted as an impact (real falls 1.8-3 g)
    fall_window_s: float = 2.0  # tilted within this after the impact (and tilted since)
    fall_settle_s: float = 60.0  # post-impact stillness must begin within this
    post_impact_still_s: float = 10.0  # tilted and still this long after an impact -> fall
    stillness_threshold_g: float = 0.03  # activity below this is "no motion at all"
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
            if f.name in _FLAGS:
                if not isinstance(value, bool):
                    raise ConfigError(f"{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{f.name} must be a positive finite number, got {value!r}")
        checks = (
            (self.tilt_deg < 90.0, "tilt_deg must be below 90"),
            (self.tilt_hysteresis_deg < self.tilt_deg, "tilt_hysteresis_deg must be < tilt_deg"),
            (self.stillness_threshold_g <= self.activity_threshold_g,
             "stillness_threshold_g must not exceed activity_threshold_g"),
            (self.motion_threshold_g > self.activity_threshold_g,
             "motion_threshold_g must exceed activity_threshold_g"),
            (self.impact_g > 1.0, "impact_g must exceed 1 g (gravity alone)"),
            (self.fall_rotation_dps < 180.0 / self.frame_s,
             "fall_rotation_dps must be below 180 degrees per frame_s (the most a frame shows)"),
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
