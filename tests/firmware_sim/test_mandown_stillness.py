"""Man-down detector against the size of the wearer's small movements (synthesiser's fidget_g).

What must hold: a motionless body stays below the no-movement threshold whatever the sensor
noise (up to 10 mg per axis) and rate, so it alarms within DGUV's 90 s; sitting, standing or
lying awake in bed with ordinary small movements never alarms; quieter people get at most the
no-movement rule (in bed too: lying down is no fall); after a fall, small movements on the floor
do not cancel the tilt pre-alarm.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from firmware_sim.accelerometer import FIDGET_G, Trace, compose
from firmware_sim.mandown import (
    DGUV_MAX_TRIGGER_S,
    Event,
    ManDownConfig,
    ManDownDetector,
    detect,
    frame_features,
)

CFG = ManDownConfig()
FRAME = CFG.frame_s
# (seed, rate Hz, jitter as a fraction of the period): regular and irregular sampling, 20-100 Hz
SAMPLING = ((0, 25.0, 0.0), (1, 20.0, 0.8), (2, 100.0, 0.5), (3, 50.0, 0.3))
NOISES = (0.003, 0.01)  # g per axis: a typical badge MEMS part, and a pessimistic one
# sampling paired with sensor noise, for the sweeps
RUNS = tuple((seed, rate, jitter, NOISES[seed % 2]) for seed, rate, jitter in SAMPLING)
SEATED = {
    "sitting_down": (("walking", 20.0), ("sitting_down", 150.0), ("standing_up", 5.0),
                     ("walking", 10.0)),
    "sitting_down_hard": (("walking", 20.0), ("sitting_down_hard", 150.0),
                          ("standing_up", 5.0), ("walking", 10.0)),
    "standing": (("walking", 20.0), ("standing", 150.0), ("walking", 10.0)),
}  # fmt: skip


def _trace(
    segments: tuple[tuple[str, float], ...],
    seed: int,
    rate: float,
    jitter: float,
    noise_g: float = 0.01,
    fidget_g: float = FIDGET_G,
) -> Trace:
    rng = np.random.default_rng([seed, 17])
    return compose(segments, rng, rate_hz=rate, jitter=jitter, noise_g=noise_g, fidget_g=fidget_g)


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.event, e.cause) for e in events]


# ------------------------------------------------------------------ motionless bodies


@pytest.mark.parametrize("noise", [0.002, 0.005, 0.01])
@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_motionless_seated_body_alarms_within_dguv(
    seed: int, rate: float, jitter: float, noise: float
) -> None:
    # slumped in a chair: breathing only. Sensor noise and breathing must stay below the
    # stillness threshold, or the no-movement timer keeps restarting and the alarm comes late
    segs = (("walking", 20.0), ("sitting_down", 110.0))
    tr = _trace(segs, seed, rate, jitter, noise_g=noise, fidget_g=0.0)
    ff = frame_features(tr.t, tr.acc)
    seated = ff.t > tr.mark("seat_contact") + 4.0
    assert ff.activity_g[seated].max() < CFG.stillness_threshold_g
    events = detect(tr.t, tr.acc)
    assert _kinds(events) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
    # onset of stillness as the detector saw it: the last motion before the pre-alarm
    moving = ff.t[(ff.activity_g >= CFG.stillness_threshold_g) & (ff.t < events[0].t)]
    onset = float(moving[-1])
    assert onset <= tr.mark("seat_contact") + 4.0  # i.e. once seated, nothing moved
    assert events[0].t - onset >= CFG.no_movement_s
    assert events[1].t - onset <= DGUV_MAX_TRIGGER_S
    assert events[1].t - events[0].t == pytest.approx(CFG.pre_alarm_s, abs=FRAME + 1e-6)


# ------------------------------------------------------- sitting and standing, swept


@pytest.mark.parametrize("fidget", [FIDGET_G, 0.15, 0.3])
@pytest.mark.parametrize("name", sorted(SEATED))
def test_sitting_or_standing_with_small_movements_never_alarms(name: str, fidget: float) -> None:
    for seed, rate, jitter, noise in RUNS:
        tr = _trace(SEATED[name], seed, rate, jitter, noise_g=noise, fidget_g=fidget)
        assert detect(tr.t, tr.acc) == [], (seed, rate)


@pytest.mark.parametrize("fidget", [0.0, 0.03, 0.05])
@pytest.mark.parametrize("name", sorted(SEATED))
def test_quieter_sitters_get_at_most_a_no_movement_pre_alarm(name: str, fidget: float) -> None:
    # movements below about 0.05 g are lost in the sensor noise and breathing: for the detector
    # such a wearer is motionless. Whatever happens is the no-movement rule, never tilt or fall,
    # and an alarm only after an uncancelled pre-alarm
    seen = []
    for seed, rate, jitter, noise in RUNS:
        tr = _trace(SEATED[name], seed, rate, jitter, noise_g=noise, fidget_g=fidget)
        events = detect(tr.t, tr.acc)
        assert {e.cause for e in events} <= {"no_movement"}
        start = tr.mark(f"start:{SEATED[name][1][0]}")
        pres = [e for e in events if e.event == "pre_alarm"]
        assert all(e.t >= start + CFG.no_movement_s for e in pres)
        for a in (e for e in events if e.event == "alarm"):
            delays = [a.t - p.t for p in pres]
            assert CFG.pre_alarm_s in [pytest.approx(d, abs=FRAME + 1e-6) for d in delays]
        seen.append("alarm" in [e.event for e in events])
    if fidget == 0.0:
        assert all(seen)  # motionless: always the alarm


# ------------------------------------------------------------------------ lying in bed


def _into_bed_then(still_s: float, seed: int = 5, rate: float = 25.0, jitter: float = 0.4) -> Trace:
    """Walking, lying down into bed (20 s, motionless once lying), then ``still_s`` motionless."""
    segs = (("walking", 10.0), ("lying_down", 20.0), ("lying_still", still_s))
    rng = np.random.default_rng([seed, 23])
    return compose(segs, rng, rate_hz=rate, jitter=jitter, fidget_g=0.0)


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_motionless_in_bed_gets_the_no_movement_pre_alarm_then_alarm(
    seed: int, rate: float, jitter: float
) -> None:
    # asleep (or unconscious) after lying down in a controlled way: lying down never arms the
    # tilt rule, but no motion at all for no_movement_s does the no-movement rule, in any posture
    tr = _into_bed_then(90.0, seed, rate, jitter)
    events = detect(tr.t, tr.acc)
    assert _kinds(events) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
    lying = tr.mark("lying")
    assert events[0].t >= lying + CFG.no_movement_s - 2.0  # still from late in the lie-back
    assert events[1].t <= lying + DGUV_MAX_TRIGGER_S
    assert events[1].t - events[0].t == pytest.approx(CFG.pre_alarm_s, abs=FRAME + 1e-6)


def test_in_bed_the_button_cancels_and_the_pre_alarm_returns() -> None:
    tr = _into_bed_then(150.0)
    pre = detect(tr.t, tr.acc)[0]
    det = ManDownDetector()
    cut = int(np.searchsorted(tr.t, pre.t + 5.0))
    assert _kinds(det.feed(tr.t[:cut], tr.acc[:cut])) == [("pre_alarm", "no_movement")]
    pressed = float(tr.t[cut - 1])
    assert [(e.event, e.reason) for e in det.cancel(pressed)] == [("cancel", "button")]
    again = det.feed(tr.t[cut:], tr.acc[cut:])
    assert _kinds(again) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
    assert again[0].t >= pressed + CFG.no_movement_s


def _then(
    base: Trace, t_cut: float, activity: str, seed: int, rate: float, jitter: float, fidget: float
) -> Trace:
    """``base`` up to ``t_cut``, then ``activity`` (60 s) from the pose ``base`` ends in."""
    keep = base.t < t_cut
    head = Trace(base.t[keep], base.acc[keep], end_t=float(base.t[keep][-1]) + 1.0 / rate,
                 end_pose=base.end_pose, marks=base.marks)  # fmt: skip
    tail = compose([(activity, 60.0)], np.random.default_rng([seed, 41]), rate_hz=rate,
                   jitter=jitter, t0=head.end_t, start=head.end_pose, fidget_g=fidget)  # fmt: skip
    return head.concat(tail)


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_in_bed_a_small_movement_withdraws_the_no_movement_pre_alarm(
    seed: int, rate: float, jitter: float
) -> None:
    base = _into_bed_then(100.0, seed, rate, jitter)
    pre = detect(base.t, base.acc)[0]
    assert (pre.event, pre.cause) == ("pre_alarm", "no_movement")
    tr = _then(base, pre.t - 1.0, "lying_awake", seed, rate, jitter, 0.15)  # moves 2-10 s later
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause, e.reason) for e in events] == [
        ("pre_alarm", "no_movement", None),
        ("cancel", "no_movement", "recovered"),
    ]
    assert events[0].t == pytest.approx(pre.t, abs=1e-9)
    assert events[1].t < pre.t + CFG.pre_alarm_s


IN_BED = (("walking", 15.0), ("lying_down", 300.0))


@pytest.mark.parametrize("fidget", [FIDGET_G, 0.15, 0.3])
def test_awake_in_bed_raises_nothing(fidget: float) -> None:
    # five minutes in bed, awake: small movements every 5-20 s, turning over every 40-100 s.
    # Lying down was controlled (no impact, slow rotation), so the tilt rule never applies;
    # the movements keep the no-movement rule quiet
    for seed, rate, jitter, noise in RUNS:
        tr = _trace(IN_BED, seed, rate, jitter, noise_g=noise, fidget_g=fidget)
        assert detect(tr.t, tr.acc) == [], (seed, rate)


@pytest.mark.parametrize("fidget", [0.0, 0.03, 0.05])
def test_very_quiet_in_bed_gets_at_most_the_no_movement_rule(fidget: float) -> None:
    # movements under about 0.05 g are lost in noise and breathing: such a wearer is, for the
    # detector, motionless. Only the no-movement rule may fire (never tilt or fall), never
    # before no_movement_s of lying; a pre-alarm ends in the alarm or in a "recovered" cancel
    # (turning over is a movement); an alarm ends only in a "recovered" cancel (turning over
    # is moving normally)
    for seed, rate, jitter, noise in RUNS[:3]:
        tr = _trace(IN_BED, seed, rate, jitter, noise_g=noise, fidget_g=fidget)
        events = detect(tr.t, tr.acc)
        assert {e.cause for e in events} <= {"no_movement"}
        pres = [e for e in events if e.event == "pre_alarm"]
        assert all(e.t >= tr.mark("lying") + CFG.no_movement_s - 2.0 for e in pres)
        for ev, nxt in itertools.pairwise(events):
            if ev.event == "pre_alarm":
                assert nxt.event in ("alarm", "cancel")
                if nxt.event == "alarm":
                    assert nxt.t - ev.t == pytest.approx(CFG.pre_alarm_s, abs=FRAME + 1e-6)
                else:
                    assert nxt.reason == "recovered"
            elif ev.event == "alarm":
                assert (nxt.event, nxt.reason) == ("cancel", "recovered")
        if fidget == 0.0:
            assert pres  # motionless between turns: the pre-alarm comes


def test_plain_position_alarm_when_configured() -> None:
    # tilt_requires_fall=False: DGUV's plain position alarm, any tilted and nearly motionless
    # episode; lying down in bed then gives the tilt pre-alarm after tilt_hold_s
    tr = _into_bed_then(60.0)
    events = detect(tr.t, tr.acc, ManDownConfig(tilt_requires_fall=False))
    assert _kinds(events) == [("pre_alarm", "tilt"), ("alarm", "tilt")]
    lying = tr.mark("lying")
    assert lying + CFG.tilt_hold_s <= events[0].t <= lying + CFG.tilt_hold_s + CFG.detection_lag_s


# ------------------------------------------------------------------- after a fall


@pytest.mark.parametrize("fidget", [FIDGET_G, 0.12])
def test_small_movements_on_the_floor_do_not_cancel_a_tilt_pre_alarm(fidget: float) -> None:
    # decision: once the badge asks "are you OK?" after the wearer went down, only the button,
    # getting up or moving normally withdraws the question; a conscious but injured person on
    # the floor also moves a little. The impact is not counted, so the tilt rule (armed by the
    # fast rotation of the fall) is what fires
    cfg = ManDownConfig(impact_g=6.0)
    during_max = []
    for seed, rate, jitter in SAMPLING:
        rng = np.random.default_rng([seed, 29])
        base = compose((("walking", 10.0), ("fall_forward", 60.0)), rng, rate_hz=rate,
                       jitter=jitter, fidget_g=0.0)  # fmt: skip
        pre = detect(base.t, base.acc, cfg)[0]
        assert (pre.event, pre.cause) == ("pre_alarm", "tilt")
        tr = _then(base, pre.t - 1.0, "lying_awake", seed, rate, jitter, fidget)
        events = detect(tr.t, tr.acc, cfg)
        assert _kinds(events) == [("pre_alarm", "tilt"), ("alarm", "tilt")]
        assert events[0].t == pytest.approx(pre.t, abs=1e-9)
        ff = frame_features(tr.t, tr.acc)
        during = (ff.t > events[0].t) & (ff.t < events[1].t)
        during_max.append(ff.activity_g[during].max())
    # they were movements, beyond "nearly motionless" even, yet short of moving normally
    assert max(during_max) >= CFG.activity_threshold_g
    assert max(during_max) < CFG.motion_threshold_g
