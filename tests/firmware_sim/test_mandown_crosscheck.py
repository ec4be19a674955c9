"""Man-down detector on traces whose small movements follow an independent model (crosscheck.py).

The thresholds were chosen on the synthesiser's traces; here the movements have another shape,
timing and size distribution, breathing can be deeper, the posture wanders, and the sizes are
set by what the detector's own activity feature measures (a quiet sitter: 90th percentile about
0.03 g, the level at which an independent cross-check once found false no-movement alarms).
Lying in bed is tested the same way: lying down is no fall, so only the no-movement rule applies.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from firmware_sim.accelerometer import Trace, compose
from firmware_sim.mandown import DGUV_MAX_TRIGGER_S, ManDownConfig, detect, frame_features

from tests.firmware_sim.crosscheck import (
    breathing,
    movement_bursts,
    perturb,
    posture_wander,
    turned_body,
)

CFG = ManDownConfig()
SAMPLING = ((0, 25.0, 0.0), (1, 20.0, 0.8), (2, 100.0, 0.5), (3, 50.0, 0.3))
QUIET_RMS = 0.015  # per-axis RMS of a movement burst: a quiet sitter
SEATED = {
    "sitting_down": (("walking", 20.0), ("sitting_down", 150.0), ("standing_up", 5.0),
                     ("walking", 10.0)),
    "sitting_down_hard": (("walking", 20.0), ("sitting_down_hard", 150.0),
                          ("standing_up", 5.0), ("walking", 10.0)),
    "standing": (("walking", 20.0), ("standing", 150.0), ("walking", 10.0)),
}  # fmt: skip
# when the small movements happen: from a mark, for so long (None: to the end of the trace)
WINDOWS = {
    "sitting_down": ("seat_contact", 145.0),
    "sitting_down_hard": ("seat_contact", 145.0),
    "standing": ("start:standing", 150.0),
}
FALLS = ("fall_forward", "fall_backward", "fall_sideways", "fall_slump")


def _moving(
    segments: tuple[tuple[str, float], ...],
    seed: int,
    rate: float,
    jitter: float,
    rms: float,
    window: tuple[str, float | None],
    noise: float = 0.01,
) -> tuple[Trace, float, float]:
    """A motionless-body trace (``fidget_g=0``) plus independent movements of ``rms`` and a
    0.5° posture wander from 2 s after the mark ``window[0]`` for ``window[1]`` s (None: to the
    end). Returns the trace and the start and end of the moving window."""
    rng = np.random.default_rng([seed, 31])
    tr = compose(segments, rng, rate_hz=rate, jitter=jitter, noise_g=noise, fidget_g=0.0)
    start = tr.mark(window[0]) + 2.0
    stop = start - 2.0 + window[1] if window[1] is not None else float(tr.t[-1])
    inside = ((tr.t > start) & (tr.t < stop))[:, None]
    linear = movement_bursts(tr.t, rng, rms, rate_hz=rate, start_s=start) if rms else 0.0 * tr.acc
    return perturb(tr, posture_wander(tr.t, rng, 0.5) * inside, linear * inside), start, stop


def _p90_activity(tr: Trace, start: float, stop: float) -> float:
    ff = frame_features(tr.t, tr.acc)
    return float(np.percentile(ff.activity_g[(ff.t > start + 3.0) & (ff.t < stop)], 90))


@pytest.mark.parametrize("name", sorted(SEATED))
def test_quiet_sitter_or_stander_rarely_gets_a_pre_alarm(name: str) -> None:
    # at this level a whole minute below the stillness threshold happens now and then (about 4 %
    # of 2.5-minute sittings, measured over 240): that is a no-movement pre-alarm, withdrawn by
    # the next movement; it becomes an alarm only if 20 more seconds pass without any
    pre_alarms, runs = 0, 0
    for seed, rate, jitter in SAMPLING[:3]:
        for noise in (0.003, 0.01):
            tr, start, stop = _moving(SEATED[name], seed, rate, jitter, QUIET_RMS,
                                      WINDOWS[name], noise)  # fmt: skip
            if noise == 0.003:
                assert 0.02 <= _p90_activity(tr, start, stop) <= 0.035  # the quiet regime
            events = detect(tr.t, tr.acc)
            assert {e.cause for e in events} <= {"no_movement"}
            pres = [e for e in events if e.event == "pre_alarm"]
            settled = tr.mark(WINDOWS[name][0]) - 1.0  # walking or sitting down ends
            assert all(e.t >= settled + CFG.no_movement_s for e in pres)
            ff = frame_features(tr.t, tr.acc)
            for ev, nxt in itertools.pairwise(events):
                if ev.event == "pre_alarm" and nxt.event == "alarm":
                    quiet = (ff.t > ev.t) & (ff.t < nxt.t)
                    assert ff.activity_g[quiet].max() < CFG.stillness_threshold_g
            pre_alarms += len(pres)
            runs += 1
    assert pre_alarms <= runs // 6


@pytest.mark.parametrize("name", sorted(SEATED))
def test_ordinary_movements_from_another_model_raise_nothing(name: str) -> None:
    for seed, rate, jitter in SAMPLING:
        tr, _, _ = _moving(SEATED[name], seed, rate, jitter, 2 * QUIET_RMS, WINDOWS[name])
        assert detect(tr.t, tr.acc) == [], (seed, rate)


@pytest.mark.parametrize("rms", [0.5 * QUIET_RMS, QUIET_RMS])
@pytest.mark.parametrize("kind", FALLS)
def test_falls_alarm_within_dguv_with_small_movements_on_the_floor(kind: str, rms: float) -> None:
    # conscious or not, a fallen wearer may twitch and shift a little: the alarm must still come
    for seed, rate, jitter in SAMPLING:
        tr, _, _ = _moving((("walking", 20.0), (kind, 100.0)), seed, rate, jitter, rms,
                           ("impact", None))  # fmt: skip
        events = detect(tr.t, tr.acc)
        alarms = [e for e in events if e.event == "alarm"]
        assert alarms, (seed, rate, [(e.event, e.cause) for e in events])
        assert alarms[0].cause in ("fall", "tilt")
        assert alarms[0].t - tr.mark("impact") <= DGUV_MAX_TRIGGER_S
        assert "cancel" not in [e.event for e in events]


def test_fall_and_recover_with_small_movements_never_alarms() -> None:
    segs = (("walking", 20.0), ("fall_recover", 12.0), ("walking", 60.0))
    for seed, rate, jitter in SAMPLING:
        tr, _, _ = _moving(segs, seed, rate, jitter, QUIET_RMS, ("upright", None))
        events = detect(tr.t, tr.acc)
        assert [e.event for e in events] in ([], ["pre_alarm", "cancel"])


@pytest.mark.parametrize("noise", [0.003, 0.01])
@pytest.mark.parametrize("per_min", [12.0, 20.0])
def test_deeper_breathing_is_not_movement(per_min: float, noise: float) -> None:
    # 1.5° of chest tilt per breath, about twice the synthesiser's: still "no motion at all"
    for seed, rate, jitter in SAMPLING:
        rng = np.random.default_rng([seed, 37])
        tr = compose((("walking", 20.0), ("sitting_down", 110.0)), rng, rate_hz=rate,
                     jitter=jitter, noise_g=noise, fidget_g=0.0)  # fmt: skip
        seat = tr.mark("seat_contact")
        breath = breathing(tr.t, rng, 1.5, per_min) * (tr.t > seat + 2.0)[:, None]
        tr = perturb(tr, breath, 0.0 * tr.acc)
        events = detect(tr.t, tr.acc)
        assert [(e.event, e.cause) for e in events] == [
            ("pre_alarm", "no_movement"),
            ("alarm", "no_movement"),
        ]
        assert events[1].t <= seat + 4.0 + DGUV_MAX_TRIGGER_S


IN_BED = (("walking", 10.0), ("lying_down", 20.0), ("lying_still", 150.0))


def test_in_bed_with_ordinary_movements_from_another_model_raises_nothing() -> None:
    # lying down was controlled, so only the no-movement rule could apply, and ordinary small
    # movements keep it quiet
    for seed, rate, jitter in SAMPLING:
        tr, _, _ = _moving(IN_BED, seed, rate, jitter, 2 * QUIET_RMS, ("lying", None))
        assert detect(tr.t, tr.acc) == [], (seed, rate)


@pytest.mark.parametrize("rms", [0.5 * QUIET_RMS, QUIET_RMS])
def test_quiet_in_bed_with_movements_from_another_model(rms: float) -> None:
    # quieter than that, in bed as in a chair: at most the no-movement rule (never tilt: lying
    # down is no fall), at the quiet-sitter level rarely; half of it is nearly motionless for
    # the detector, and the no-movement pre-alarm is common
    pre_alarms, runs = 0, 0
    for seed, rate, jitter in SAMPLING:
        for noise in (0.003, 0.01):
            tr, _, _ = _moving(IN_BED, seed, rate, jitter, rms, ("lying", None), noise)
            events = detect(tr.t, tr.acc)
            assert {e.cause for e in events} <= {"no_movement"}
            pres = [e for e in events if e.event == "pre_alarm"]
            assert all(e.t >= tr.mark("lying") + CFG.no_movement_s for e in pres)
            pre_alarms += len(pres)
            runs += 1
    if rms == QUIET_RMS:
        assert pre_alarms <= runs // 6


# --------------------------------------------- going down, from an independent model


def _turn(
    seed: int,
    rate: float,
    jitter: float,
    turn_s: tuple[float, float],
    impact_g: float,
    rms_after: float,
) -> Trace:
    """10 s upright moving ordinarily, a turn to 75-95° lasting ``turn_s`` (uniform), with an
    impact of ``impact_g`` (0: none), then 100 s lying with movements of ``rms_after`` and
    1° breathing (all from crosscheck.py, not the synthesiser)."""
    rng = np.random.default_rng([seed, 43])
    n = round(112.0 * rate)
    t = (np.arange(n) + jitter * rng.uniform(-0.5, 0.5, n)) / rate
    dur = rng.uniform(*turn_s)
    tr = turned_body(t, rng, turn_at_s=10.0 + dur / 2, turn_s=dur,
                     angle_deg=rng.uniform(75.0, 95.0), impact_g=impact_g)  # fmt: skip
    down = tr.mark("down")
    before = movement_bursts(t, rng, 2 * QUIET_RMS, rate_hz=rate) * (t < 9.0)[:, None]
    after = movement_bursts(t, rng, rms_after, rate_hz=rate, start_s=down + 3.0) if rms_after else 0
    wobble = breathing(t, rng, 1.0) * (t > down)[:, None]
    return perturb(tr, wobble, before + after * (t > down + 3.0)[:, None])


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_fast_turn_without_impact_is_a_fall(seed: int, rate: float, jitter: float) -> None:
    # down within 0.4-0.8 s, landing softly: the rotation alone arms the tilt rule
    tr = _turn(seed, rate, jitter, (0.4, 0.8), 0.0, 0.0)
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause) for e in events][:2] == [("pre_alarm", "tilt"), ("alarm", "tilt")]
    assert events[1].t <= tr.mark("down") + CFG.tilt_hold_s + CFG.pre_alarm_s + 5.0


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_slow_turn_with_impact_is_a_fall(seed: int, rate: float, jitter: float) -> None:
    tr = _turn(seed, rate, jitter, (2.5, 6.0), 2.2, 0.0)
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause) for e in events][:2] == [("pre_alarm", "fall"), ("alarm", "fall")]
    assert events[1].t <= tr.mark("down") + DGUV_MAX_TRIGGER_S


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_slow_turn_without_impact_is_lying_down(seed: int, rate: float, jitter: float) -> None:
    # lying down over 2.5-6 s: awake (ordinary movements) nothing; motionless, the no-movement
    # rule within DGUV's 90 s of coming to rest
    tr = _turn(seed, rate, jitter, (2.5, 6.0), 0.0, 2 * QUIET_RMS)
    assert detect(tr.t, tr.acc) == []
    tr = _turn(seed, rate, jitter, (2.5, 6.0), 0.0, 0.0)
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause) for e in events] == [
        ("pre_alarm", "no_movement"),
        ("alarm", "no_movement"),
    ]
    assert events[1].t <= tr.mark("down") + DGUV_MAX_TRIGGER_S
