"""Man-down detector: a wearer who went down (impact or fast rotation) against one who lay down.

The tilt rule counts only a down episode entered in an uncontrolled way; lying down into bed
(controlled: no impact, the trunk turning over seconds) is left to the no-movement rule. Also
the issue's "Show" line: the CLI over every standard trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from firmware_sim.accelerometer import STANDARD, Trace, compose
from firmware_sim.accelerometer import main as accelerometer_main
from firmware_sim.mandown import (
    DGUV_MAX_TRIGGER_S,
    Event,
    ManDownConfig,
    detect,
    frame_features,
    main,
)
from firmware_sim.posture import I3, PosePath, Y, rot

FALLS = ("fall_forward", "fall_backward", "fall_sideways", "fall_slump")
# (seed, rate Hz, jitter as a fraction of the period): regular and irregular sampling, 20-100 Hz
SAMPLING = ((0, 25.0, 0.0), (1, 20.0, 0.8), (2, 100.0, 0.5), (3, 50.0, 0.3))


def _trace(segments: tuple[tuple[str, float], ...], seed: int, rate: float, jitter: float) -> Trace:
    return compose(segments, np.random.default_rng(seed), rate_hz=rate, jitter=jitter)


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.event, e.cause) for e in events]


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_falls_go_down_fast_or_hard_lying_down_does_neither(
    seed: int, rate: float, jitter: float
) -> None:
    # around the moment the trunk passes tilt_deg (fall_window_s either side): a fall shows an
    # impact or a fast rotation of the gravity direction; lying down into bed neither
    cfg = ManDownConfig()

    def transition(segments: tuple[tuple[str, float], ...]) -> tuple[float, float]:
        tr = _trace(segments, seed, rate, jitter)
        ff = frame_features(tr.t, tr.acc)
        down = ff.t[int(np.argmax(ff.tilt_deg > cfg.tilt_deg))]
        near = np.abs(ff.t - down) <= cfg.fall_window_s
        return float(ff.peak_g[near].max()), float(ff.rotation_dps[near].max())

    for kind in ("fall_forward", "fall_backward", "fall_sideways"):
        peak, rotation = transition((("walking", 20.0), (kind, 20.0)))
        assert rotation >= cfg.fall_rotation_dps, kind
        assert peak >= cfg.impact_g, kind
    peak, rotation = transition((("walking", 20.0), ("fall_slump", 20.0)))
    assert peak >= cfg.impact_g  # slow, but it hits the floor
    peak, rotation = transition((("walking", 15.0), ("lying_down", 30.0)))
    assert peak < cfg.impact_g
    assert rotation < 0.7 * cfg.fall_rotation_dps


def _turn_to_horizontal(duration: float, ease: str, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Pure trunk rotation from upright to 85° back over ``duration`` s, nothing else but 10 mg
    of noise: what the rotation proxy sees of the rotation alone."""
    t = np.arange(0.0, 15.0, 1.0 / rate)
    path = PosePath(I3)
    path.hold_until(3.0)
    path.move(duration, rot(Y, -85.0), ease)
    acc = np.einsum("nji,j->ni", path.eval(t), np.array([0.0, 0.0, 1.0]))
    return t, acc + 0.01 * np.random.default_rng(3).normal(size=acc.shape)


@pytest.mark.parametrize("rate", [20.0, 25.0, 100.0])
def test_rotation_threshold_separates_one_second_from_two(rate: float) -> None:
    # fall_rotation_dps on the rotation alone, without impact or free fall: turning to
    # horizontal within 1 s (a fall's rotation) exceeds it, a lie-back over 2 s or more stays
    # below it, with either speed profile
    cfg = ManDownConfig()
    for duration, ease, fast in ((0.5, "fall", True), (1.0, "fall", True), (1.0, "smooth", True),
                                 (2.0, "smooth", False), (2.0, "fall", False),
                                 (4.0, "smooth", False)):  # fmt: skip
        t, acc = _turn_to_horizontal(duration, ease, rate)
        ff = frame_features(t, acc)
        assert ff.tilt_deg[-1] > 80.0
        assert (ff.rotation_dps.max() >= cfg.fall_rotation_dps) == fast, (duration, ease)
        events = detect(t, acc, ManDownConfig(tilt_hold_s=5.0))  # 11 s lying motionless
        assert _kinds(events)[:1] == ([("pre_alarm", "tilt")] if fast else []), (duration, ease)


@pytest.mark.parametrize("kind", FALLS)
def test_fall_with_missed_impact_still_alarms(kind: str) -> None:
    tr = _trace((("walking", 20.0), (kind, 100.0)), 5, 25.0, 0.2)
    events = detect(tr.t, tr.acc, ManDownConfig(impact_g=6.0))  # no impact is ever counted
    impact = tr.mark("impact")
    if kind == "fall_slump":
        # crumpling over 1.5-3 s turns the trunk no faster than lying down: without its impact
        # the slump is caught by the no-movement rule, once the wearer lies motionless
        assert _kinds(events) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
        assert events[0].t >= impact + ManDownConfig().no_movement_s
    else:  # toppling over turns the trunk fast: the tilt rule is armed without the impact
        assert _kinds(events) == [("pre_alarm", "tilt"), ("alarm", "tilt")]
    assert events[1].t <= impact + DGUV_MAX_TRIGGER_S


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_slow_collapse_without_impact_alarms_by_no_movement(
    seed: int, rate: float, jitter: float
) -> None:
    # fainting against a wall: slides down and keels over slowly, nothing reaches impact_g and
    # the trunk turns as slowly as lying down into bed, so neither the fall nor the tilt rule
    # applies; lying motionless, the wearer gets the no-movement alarm, within DGUV's 90 s of
    # coming to rest
    tr = _trace((("walking", 20.0), ("fall_collapse", 100.0)), seed, rate, jitter)
    ff = frame_features(tr.t, tr.acc)
    cfg = ManDownConfig()
    assert ff.peak_g.max() < cfg.impact_g
    assert ff.rotation_dps.max() < cfg.fall_rotation_dps
    events = detect(tr.t, tr.acc)
    assert _kinds(events) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
    rest = tr.mark("lying")
    assert events[0].t >= rest + cfg.no_movement_s
    assert events[1].t <= rest + DGUV_MAX_TRIGGER_S


# ------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("seed", "options"), [(1, ()), (2, ()), (3, ()), (4, ("--rate", "20", "--jitter", "0.8"))]
)
def test_cli_over_every_standard_trace(
    seed: int, options: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the "Show" line, through the functions behind ``python -m firmware_sim.accelerometer
    # --out DIR`` and ``python -m firmware_sim.mandown FILE``: every fall except fall_recover
    # prints an alarm; the daily activities (lying down in bed included) and fall_recover print
    # nothing at all
    assert accelerometer_main(["--out", str(tmp_path), "--seed", str(seed), *options]) == 0
    capsys.readouterr()
    files = sorted(tmp_path.glob("*.csv"))
    assert {p.stem for p in files} == set(STANDARD)
    for path in files:
        assert main([str(path)]) == 0
        out = capsys.readouterr().out
        if path.stem.startswith("fall_") and path.stem != "fall_recover":
            events = [json.loads(line) for line in out.splitlines()]
            assert "alarm" in [e["event"] for e in events], path.stem
        else:
            assert out == "", path.stem
