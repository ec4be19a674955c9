"""Tag firmware models: heartbeat, sequence numbers, bursts, battery, every state change on air."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from firmware_sim.accelerometer import Trace, compose
from firmware_sim.mandown import ManDownConfig
from firmware_sim.tags import (
    ADV_DELAY_MAX_S,
    BATTERY_PCT_PER_ADV,
    MODELS,
    Frame,
    InfantBracelet,
    MotherTag,
    ReferenceTag,
    StaffBadge,
    TagFirmware,
    Wristband,
)

from rtls.advertisement import Advertisement, Status, Status2, TagKind, decode_body
from rtls.errors import RtlsError

SERIAL = 0x00012345
INTERVAL = 1.0
BURST_DT = 0.1
REPEATS = 3
REPEAT = Status2.BURST_REPEAT


def _tag(cls: type[TagFirmware] = InfantBracelet, seed: int = 0, **kw: Any) -> Any:
    params: dict[str, Any] = {
        "interval_s": INTERVAL,
        "rng": np.random.default_rng(seed),
        "burst_repeats": REPEATS,
        "burst_interval_s": BURST_DT,
    }
    return cls(SERIAL, **(params | kw))


def _run(tag: TagFirmware, start: float, end: float, step: float = 0.05) -> list[Frame]:
    """Call ``due`` on the tick grid of (start, end], as the world does."""
    frames: list[Frame] = []
    k0, k1 = round(start / step), round(end / step)
    for k in range(k0 + 1, k1 + 1):
        frames += tag.due(round(k * step, 9))
    return frames


def _decode(frames: list[Frame]) -> list[Advertisement]:
    return [decode_body(f.body) for f in frames]


def _state(adv: Advertisement) -> tuple[Status, Status2]:
    return adv.status, adv.status2 & ~REPEAT


def _changes(frames: list[Frame]) -> list[tuple[float, Status, Status2]]:
    """(time, status, status2) of every frame whose state differs from the frame before."""
    out = []
    prev = None
    for f, a in zip(frames, _decode(frames), strict=True):
        if _state(a) != prev:
            out.append((f.t, *_state(a)))
            prev = _state(a)
    return out


def _check_protocol(frames: list[Frame], interval: float = INTERVAL) -> None:
    """Every frame is a heartbeat, a change or a repeat, and each follows the rules:

    times never go back; a heartbeat comes interval + advDelay after the frame before it and
    takes the next sequence number with the same state; a change takes the next number and is
    followed by REPEATS repeats BURST_DT apart with its number and state (unless another change
    cuts the burst short); no heartbeat inside a burst.
    """
    advs = _decode(frames)
    assert all(a.serial == SERIAL for a in advs)
    left = 0  # repeats still expected
    for i in range(1, len(frames)):
        a, p = advs[i], advs[i - 1]
        dt = frames[i].t - frames[i - 1].t
        assert dt >= 0.0
        if a.status2 & REPEAT:
            assert left > 0, f"frame {i}: a repeat outside a burst"
            assert a.seq == p.seq
            assert _state(a) == _state(p)
            assert dt == pytest.approx(BURST_DT, abs=1e-9)
            left -= 1
            continue
        assert a.seq == (p.seq + 1) & 0xFFFF, f"frame {i}: seq {a.seq} after {p.seq}"
        if _state(a) != _state(p):
            left = REPEATS
        else:
            assert left == 0, f"frame {i}: a heartbeat inside a burst"
            assert interval - 1e-9 <= dt <= interval + ADV_DELAY_MAX_S + 1e-9


# ------------------------------------------------------------------- heartbeat and seq


@pytest.mark.parametrize("interval", [0.1, 1.4, 2.0, 25.5])
def test_heartbeat_period_is_interval_plus_adv_delay(interval: float) -> None:
    tag = _tag(ReferenceTag, seed=3, interval_s=interval, start_t=5.0)
    first = tag.next_due
    assert 5.0 <= first < 5.0 + interval
    frames = tag.due(5.0 + 400 * interval)
    gaps = np.diff([f.t for f in frames])
    assert frames[0].t == first
    assert len(frames) >= 400 * interval / (interval + ADV_DELAY_MAX_S) - 1
    delays = gaps - interval
    assert delays.min() >= -1e-9
    assert delays.max() <= ADV_DELAY_MAX_S + 1e-9
    # advDelay is drawn per event, roughly uniform over 0-10 ms: not a constant offset
    assert delays.max() - delays.min() > 0.8 * ADV_DELAY_MAX_S
    assert delays.mean() == pytest.approx(ADV_DELAY_MAX_S / 2, abs=0.001)
    assert all(not a.status2 & REPEAT for a in _decode(frames))
    _check_protocol(frames, interval)


def test_body_carries_identity_and_settings() -> None:
    tag = _tag(InfantBracelet, interval_s=1.4, tx_power=-61.0, battery_pct=87.0)
    adv = decode_body(tag.due(2.0)[-1].body)
    assert (adv.kind, adv.serial, adv.interval_ms) == (TagKind.INFANT, SERIAL, 1400)
    assert (adv.battery, adv.measured_power) == (87, -61)
    assert adv.status == Status.SKIN_CONTACT
    assert adv.status2 == Status2.NONE
    assert adv.seq == tag.seq


@pytest.mark.parametrize(("name", "kind"), [("infant", TagKind.INFANT), ("mother", TagKind.MOTHER),
                                            ("staff", TagKind.STAFF_BADGE),
                                            ("reference", TagKind.REFERENCE)])  # fmt: skip
def test_models_advertise_their_kind(name: str, kind: TagKind) -> None:
    tag = _tag(MODELS[name])
    advs = _decode(tag.due(3.0))
    assert advs
    assert {a.kind for a in advs} == {kind}


def test_sequence_increments_per_heartbeat_and_wraps() -> None:
    tag = _tag(ReferenceTag, seed=1)
    tag.seq = 0xFFFD
    seqs = [a.seq for a in _decode(tag.due(6.0))]
    assert seqs[:5] == [0xFFFE, 0xFFFF, 0, 1, 2]


def test_initial_sequence_and_phase_come_from_the_generator() -> None:
    a, b = _tag(seed=1), _tag(seed=2)
    assert (a.seq, a.next_due) != (b.seq, b.next_due)
    c = _tag(seed=1)
    assert (a.seq, a.next_due) == (c.seq, c.next_due)


def test_next_due_is_the_next_frame_and_due_is_empty_before_it() -> None:
    tag = _tag(StaffBadge, seed=4)
    for _ in range(5):
        t = tag.next_due
        assert tag.due(t - 1e-6) == []
        frames = tag.due(t)
        assert [f.t for f in frames] == [t]
    hb = tag.next_due
    tag.press_sos(hb + 0.3)
    assert tag.next_due == hb  # the heartbeat before the press is still to come
    assert [f.t for f in tag.due(hb + 0.3)] == [hb, hb + 0.3]
    assert tag.next_due == pytest.approx(hb + 0.3 + BURST_DT)


def test_constructor_rejects_bad_settings() -> None:
    rng = np.random.default_rng(0)
    cases: tuple[tuple[dict[str, Any], str], ...] = (
        ({"interval_s": 0.05}, "interval"),
        ({"interval_s": 30.0}, "interval"),
        ({"interval_s": 1.0, "battery_pct": 150.0}, "battery"),
        ({"interval_s": 1.0, "burst_repeats": -1}, "burst_repeats"),
        ({"interval_s": 1.0, "burst_interval_s": 0.0}, "burst_interval_s"),
    )
    for kw, words in cases:
        with pytest.raises(RtlsError, match=words):
            InfantBracelet(SERIAL, rng=rng, **kw)


# ------------------------------------------------------------------------------- bursts


def test_state_change_sends_a_burst_with_one_sequence_number() -> None:
    tag = _tag(InfantBracelet, seed=5)
    before = _run(tag, 0.0, 10.0)
    last_seq = decode_body(before[-1].body).seq
    tag.cut_strap(10.3)
    frames = [f for f in _run(tag, 10.0, 20.0) if f.t >= 10.3]
    advs = _decode(frames)
    burst = list(zip(frames[:4], advs[:4], strict=True))
    assert [f.t for f, _ in burst] == pytest.approx([10.3, 10.4, 10.5, 10.6])
    assert [bool(a.status2 & REPEAT) for _, a in burst] == [False, True, True, True]
    assert {a.seq for _, a in burst} == {(last_seq + 1) & 0xFFFF}
    assert all(a.status & Status.TAMPER for a in advs)
    # the heartbeat resumes one interval (plus advDelay) after the last repeat
    assert 10.6 + INTERVAL <= frames[4].t <= 10.6 + INTERVAL + ADV_DELAY_MAX_S + 1e-9
    _check_protocol(before + frames)


def test_no_heartbeat_inside_a_burst_longer_than_the_interval() -> None:
    tag = _tag(StaffBadge, seed=6, interval_s=0.1, burst_repeats=4, burst_interval_s=0.25)
    _run(tag, 0.0, 3.0)
    tag.press_sos(3.0)
    frames = _run(tag, 3.0, 6.0)
    advs = _decode(frames)
    in_burst = [(f.t, a) for f, a in zip(frames, advs, strict=True) if f.t <= 4.0 + 1e-9]
    assert [t for t, _ in in_burst] == pytest.approx([3.0, 3.25, 3.5, 3.75, 4.0])
    assert len({a.seq for _, a in in_burst}) == 1
    assert [bool(a.status2 & REPEAT) for _, a in in_burst] == [False] + [True] * 4
    assert 4.1 <= frames[5].t <= 4.1 + ADV_DELAY_MAX_S


def test_no_repeats_when_burst_repeats_is_zero() -> None:
    tag = _tag(InfantBracelet, seed=7, burst_repeats=0)
    _run(tag, 0.0, 5.0)
    tag.cut_strap(5.0)
    frames = _run(tag, 5.0, 12.0)
    advs = _decode(frames)
    assert not any(a.status2 & REPEAT for a in advs)
    assert frames[0].t == 5.0
    assert 6.0 <= frames[1].t <= 6.0 + ADV_DELAY_MAX_S


def test_a_change_during_a_burst_starts_a_new_one() -> None:
    tag = _tag(StaffBadge, seed=8)
    frames = _run(tag, 0.0, 4.0)
    tag.press_sos(4.0)
    frames += tag.due(4.15)
    tag.pull_cord(4.15)
    frames += _run(tag, 4.15, 8.0)
    advs = _decode(frames)
    sos = [f for f in frames if 4.0 <= f.t < 4.15]
    assert [f.t for f in sos] == pytest.approx([4.0, 4.1])
    sos_seq = decode_body(sos[0].body).seq
    after = [a for f, a in zip(frames, advs, strict=True) if f.t >= 4.15]
    assert after[0].seq == (sos_seq + 1) & 0xFFFF
    assert all(a.seq != sos_seq for a in after)  # the old burst's last repeats are dropped
    assert sum(bool(a.status2 & REPEAT) for a in after[: REPEATS + 1]) == REPEATS
    _check_protocol(frames)


def test_frames_due_before_a_change_go_out_with_the_old_state() -> None:
    tag = _tag(InfantBracelet, seed=9)
    _run(tag, 0.0, 5.0)
    hb = tag.next_due  # the next heartbeat, not yet collected
    tag.cut_strap(hb + 0.05)  # a coarse caller: the change comes before due() reaches hb
    frames = tag.due(hb + 3.0)
    advs = _decode(frames)
    assert frames[0].t == hb
    assert not advs[0].status & Status.TAMPER
    assert frames[1].t == pytest.approx(hb + 0.05)
    assert advs[1].status & Status.TAMPER
    assert advs[1].seq == (advs[0].seq + 1) & 0xFFFF
    _check_protocol(frames)


def test_a_change_dated_in_the_past_is_sent_at_the_current_time() -> None:
    tag = _tag(InfantBracelet, seed=10)
    old = _run(tag, 0.0, 10.0)
    tag.cut_strap(9.5)
    frames = tag.due(12.0)
    assert frames[0].t == 10.0
    assert decode_body(frames[0].body).status & Status.TAMPER
    _check_protocol(old + frames)


def test_no_change_no_burst() -> None:
    tag = _tag(InfantBracelet, seed=11)
    _run(tag, 0.0, 3.0)
    tag.cut_strap(3.0)
    _run(tag, 3.0, 4.0)
    seq = tag.seq
    tag.cut_strap(4.0)  # already open
    tag.set_skin_contact(4.0, True)  # already in contact
    assert tag.seq == seq
    assert tag.next_due > 4.0  # nothing sent now
    badge = _tag(StaffBadge, seed=11)
    badge.due(3.0)
    seq = badge.seq
    badge.confirm(3.0)  # nothing to confirm
    badge.reset(3.0)  # nothing to reset
    badge.press_cancel(3.0)  # no pre-alarm
    assert badge.seq == seq
    assert badge.status2 == Status2.NONE


# ------------------------------------------------------------- every state change on air


Step = tuple[str, tuple[Any, ...]]

CHANGES: list[tuple[str, list[Step], Status, Status2]] = [
    ("infant", [], Status.SKIN_CONTACT, Status2.NONE),
    ("infant", [("cut_strap", ())], Status.SKIN_CONTACT | Status.TAMPER, Status2.NONE),
    ("infant", [("cut_strap", ()), ("restore_strap", ())], Status.SKIN_CONTACT, Status2.NONE),
    ("infant", [("set_skin_contact", (False,))], Status.NONE, Status2.NONE),
    ("infant", [("set_skin_contact", (False,)), ("set_skin_contact", (True,))],
     Status.SKIN_CONTACT, Status2.NONE),
    ("mother", [("cut_strap", ())], Status.SKIN_CONTACT | Status.TAMPER, Status2.NONE),
    ("mother", [("set_skin_contact", (False,))], Status.NONE, Status2.NONE),
    ("staff", [("press_sos", ())], Status.SOS, Status2.NONE),
    ("staff", [("pull_cord", ())], Status.PULL_CORD, Status2.NONE),
    ("staff", [("press_sos", ()), ("confirm", ())], Status.SOS, Status2.CONSOLE_CONFIRMED),
    ("staff", [("press_sos", ()), ("confirm", ()), ("pull_cord", ())],
     Status.SOS | Status.PULL_CORD, Status2.NONE),
    ("staff", [("press_sos", ()), ("confirm", ()), ("reset", ())], Status.NONE, Status2.NONE),
    ("staff", [("pull_cord", ()), ("reset", ())], Status.NONE, Status2.NONE),
    ("reference", [("set_battery", (15.0,))], Status.NONE, Status2.LOW_BATTERY),
    ("infant", [("set_battery", (10.0,)), ("set_battery", (50.0,))],
     Status.SKIN_CONTACT, Status2.NONE),
]  # fmt: skip


@pytest.mark.parametrize(("model", "steps", "status", "status2"), CHANGES)
def test_every_state_change_is_on_air(
    model: str, steps: list[Step], status: Status, status2: Status2
) -> None:
    tag = _tag(MODELS[model], seed=12)
    frames: list[Frame] = []
    times = [2.3 + 2.0 * k for k in range(len(steps))]
    prev = 0.0
    for t, (method, args) in zip(times, steps, strict=True):
        frames += _run(tag, prev, t)
        getattr(tag, method)(t, *args)
        prev = t
    frames += _run(tag, prev, prev + 3.0)
    changes = _changes(frames)
    # one change on air per step, at the step's time, and the final state in every later frame
    assert [t for t, _, _ in changes[1:]] == pytest.approx(times)
    assert _state(_decode(frames)[-1]) == (status, status2)
    assert changes[-1][1:] == (status, status2)
    _check_protocol(frames)


def test_sos_pressed_again_is_sent_again_and_needs_a_new_confirmation() -> None:
    badge = _tag(StaffBadge, seed=13)
    frames = _run(badge, 0.0, 2.0)
    prev = 2.0
    for t, action in ((2.0, badge.press_sos), (3.0, badge.press_sos), (4.0, badge.confirm),
                      (6.0, badge.press_sos)):  # fmt: skip
        frames += _run(badge, prev, t)
        action(t)
        prev = t
    frames += _run(badge, prev, 8.0)
    advs = _decode(frames)
    firsts = [(f.t, a) for f, a in zip(frames, advs, strict=True)
              if f.t in (2.0, 3.0, 4.0, 6.0) and not a.status2 & REPEAT]  # fmt: skip
    assert [t for t, _ in firsts] == [2.0, 3.0, 4.0, 6.0]
    assert [a.status2 for _, a in firsts] == [
        Status2.NONE, Status2.NONE, Status2.CONSOLE_CONFIRMED, Status2.NONE,
    ]  # fmt: skip
    seqs = [a.seq for _, a in firsts]
    assert seqs[1] == (seqs[0] + 1) & 0xFFFF  # pressed again: a new number, sent again
    assert all(a.status & Status.SOS for _, a in firsts)


# ------------------------------------------------------------------- man-down on air


def _trace(segments: tuple[tuple[str, float], ...], seed: int) -> Trace:
    return compose(segments, np.random.default_rng(seed), rate_hz=25.0)


FALL = (("walking", 20.0), ("fall_forward", 100.0))


def _drive(
    badge: StaffBadge,
    trace: Trace,
    step: float = 0.5,
    on_step: Callable[[StaffBadge, float], None] | None = None,
) -> list[Frame]:
    """Feed the trace in ``step`` chunks and collect the frames, as the world does."""
    frames: list[Frame] = []
    fed = -np.inf
    for k in range(1, int(trace.t[-1] / step) + 2):
        t = k * step
        sel = (trace.t > fed) & (trace.t <= t)
        if sel.any():
            badge.feed_accelerometer(trace.t[sel], trace.acc[sel])
            fed = t
        if on_step is not None:
            on_step(badge, t)
        frames += badge.due(t)
    return frames


def _flag_of(cause: str) -> Status:
    return {"fall": Status.FALL, "tilt": Status.MAN_DOWN, "no_movement": Status.NO_MOVEMENT}[cause]


def _check_events_on_air(badge: StaffBadge, frames: list[Frame]) -> None:
    """Each detector event is a change on air at its time, with the flags it implies."""
    changes = _changes(frames)[1:]
    assert len(changes) == len(badge.events)
    for ev, (t, status, status2) in zip(badge.events, changes, strict=True):
        assert t == pytest.approx(ev.t, abs=1e-9)
        flag = _flag_of(ev.cause)
        if ev.event == "pre_alarm":
            assert status & Status.PRE_ALARM
            assert not status2 & Status2.PRE_ALARM_CANCELLED
        elif ev.event == "alarm":
            assert not status & Status.PRE_ALARM
            assert status & flag
            assert not status2 & Status2.CONSOLE_CONFIRMED
        else:
            assert not status & (Status.PRE_ALARM | flag)
            assert status2 & Status2.PRE_ALARM_CANCELLED
    _check_protocol(frames, badge.interval_s)


@pytest.mark.parametrize(
    ("segments", "seed", "config", "cause"),
    [
        (FALL, 21, ManDownConfig(), "fall"),
        (FALL, 21, ManDownConfig(impact_g=6.0), "tilt"),  # impact never counted: tilt alarm
        ((("walking", 20.0), ("lying_still", 100.0)), 11, ManDownConfig(), "no_movement"),
    ],
)
def test_man_down_pre_alarm_then_alarm_on_air(
    segments: tuple[tuple[str, float], ...], seed: int, config: ManDownConfig, cause: str
) -> None:
    badge = _tag(StaffBadge, seed=14, interval_s=2.0, mandown=config)
    frames = _drive(badge, _trace(segments, seed))
    kinds = [(e.event, e.cause) for e in badge.events]
    assert kinds == [("pre_alarm", cause), ("alarm", cause)]
    _check_events_on_air(badge, frames)
    final = _state(_decode(frames)[-1])
    assert final == (_flag_of(cause), Status2.NONE)


def test_man_down_alarm_confirmed_then_reset() -> None:
    badge = _tag(StaffBadge, seed=15, interval_s=2.0)
    trace = _trace(FALL, 21)
    frames = _drive(badge, trace)
    alarm = next(e for e in badge.events if e.event == "alarm")
    end = trace.t[-1] + 5.0  # after the last due() of _drive
    badge.confirm(end)
    frames += badge.due(end + 1.0)
    assert _state(_decode(frames)[-1]) == (Status.FALL, Status2.CONSOLE_CONFIRMED)
    badge.reset(end + 1.0)
    frames += badge.due(end + 5.0)
    assert badge.detector.state == "monitor"
    changes = _changes(frames)
    assert [c[1:] for c in changes[-2:]] == [
        (Status.FALL, Status2.CONSOLE_CONFIRMED),
        (Status.NONE, Status2.NONE),
    ]
    assert changes[-3][0] == pytest.approx(alarm.t)
    _check_protocol(frames, 2.0)


def test_button_cancels_the_pre_alarm_on_air() -> None:
    badge = _tag(StaffBadge, seed=16, interval_s=2.0)
    pressed: list[float] = []

    def press_once(b: StaffBadge, t: float) -> None:
        if not pressed and b.status & Status.PRE_ALARM:
            pressed.append(t)
            b.press_cancel(t)

    frames = _drive(badge, _trace(FALL, 21), on_step=press_once)
    assert pressed
    kinds = [(e.event, e.cause, e.reason) for e in badge.events]
    assert kinds[:2] == [("pre_alarm", "fall", None), ("cancel", "fall", "button")]
    assert badge.events[1].t == pressed[0]
    # still lying: a new pre-alarm (tilt) later clears the cancelled mark
    assert kinds[2][:2] == ("pre_alarm", "tilt")
    _check_events_on_air(badge, frames)
    changes = _changes(frames)
    assert changes[2][1:] == (Status.NONE, Status2.PRE_ALARM_CANCELLED)
    assert changes[3][1:] == (Status.PRE_ALARM, Status2.NONE)
    assert not any(a.status & Status.FALL for a in _decode(frames))


def test_getting_up_after_the_alarm_clears_it_on_air() -> None:
    segs = (("walking", 20.0), ("fall_backward", 50.0), ("standing_up", 4.0), ("walking", 30.0))
    badge = _tag(StaffBadge, seed=17, interval_s=2.0)
    frames = _drive(badge, _trace(segs, 32))
    kinds = [(e.event, e.cause, e.reason) for e in badge.events]
    assert kinds == [("pre_alarm", "fall", None), ("alarm", "fall", None),
                     ("cancel", "fall", "recovered")]  # fmt: skip
    _check_events_on_air(badge, frames)
    assert _state(_decode(frames)[-1]) == (Status.NONE, Status2.PRE_ALARM_CANCELLED)


def test_man_down_frames_do_not_depend_on_feeding_chunk_size() -> None:
    trace = _trace(FALL, 21)
    a = _drive(_tag(StaffBadge, seed=18, interval_s=2.0), trace, step=0.5)
    b = _drive(_tag(StaffBadge, seed=18, interval_s=2.0), trace, step=2.5)
    assert [(f.t, f.body) for f in a if f.t <= 115.0] == [(f.t, f.body) for f in b if f.t <= 115.0]


# ------------------------------------------------------------------------------ battery


def test_battery_drains_per_frame_sent() -> None:
    tag = _tag(ReferenceTag, seed=19, battery_pct=50.0)
    n = len(tag.due(100.0))
    assert tag.battery_pct == pytest.approx(50.0 - n * BATTERY_PCT_PER_ADV, rel=1e-12)


def test_low_battery_flag_crosses_the_threshold_once_with_a_burst() -> None:
    tag = _tag(InfantBracelet, seed=20, low_battery_pct=20,
               battery_pct=20.0 + 5.5 * BATTERY_PCT_PER_ADV)  # fmt: skip
    frames = tag.due(40.0)
    advs = _decode(frames)
    low = [bool(a.status2 & Status2.LOW_BATTERY) for a in advs]
    assert low[:5] == [False] * 5
    assert all(low[5:])
    assert low.count(False) == 5  # exactly one crossing, at the sixth frame
    assert not advs[5].status2 & REPEAT
    assert [bool(a.status2 & REPEAT) for a in advs[6 : 6 + REPEATS]] == [True] * REPEATS
    assert {a.seq for a in advs[5 : 6 + REPEATS]} == {advs[5].seq}
    assert advs[5].battery == 20  # the percentage rounds; the flag follows the exact level
    _check_protocol(frames)


def test_set_battery_toggles_the_flag_only_across_the_threshold() -> None:
    tag = _tag(StaffBadge, seed=21)
    frames = _run(tag, 0.0, 2.0)
    for t, pct in ((2.0, 60.0), (4.0, 15.0), (6.0, 12.0), (8.0, 25.0), (10.0, 150.0)):
        tag.set_battery(t, pct)
        frames += _run(tag, t, t + 2.0)
    changes = _changes(frames)
    assert [(c[0], c[2]) for c in changes] == [
        (frames[0].t, Status2.NONE),
        (4.0, Status2.LOW_BATTERY),
        (8.0, Status2.NONE),
    ]
    assert tag.battery_pct > 100.0 - 10 * BATTERY_PCT_PER_ADV  # clamped, then drained
    assert decode_body(frames[-1].body).battery == 100
    _check_protocol(frames)


def test_low_battery_at_start_is_flagged_from_the_first_frame() -> None:
    tag = _tag(ReferenceTag, seed=22, battery_pct=5.0)
    advs = _decode(tag.due(5.0))
    assert advs
    assert all(a.status2 & Status2.LOW_BATTERY for a in advs)


def test_flat_battery_sends_nothing() -> None:
    tag = _tag(InfantBracelet, seed=23)
    _run(tag, 0.0, 2.0)
    tag.set_battery(2.0, 0.0)
    frames = tag.due(2.0)  # the low-battery change itself cannot go out
    frames += _run(tag, 2.0, 30.0)
    assert frames == []


# ------------------------------------------------------------------------------ silence


def test_silent_tag_sends_nothing_and_resumes_with_its_state() -> None:
    tag = _tag(InfantBracelet, seed=24)
    before = _run(tag, 0.0, 3.0)
    battery = tag.battery_pct
    tag.set_silent(True)
    tag.cut_strap(3.5)  # happens while shielded: its burst is lost ...
    silent = _run(tag, 3.0, 20.0)
    assert silent == []
    assert tag.battery_pct == battery
    assert tag.next_due > 20.0  # the timers keep running
    tag.set_silent(False)
    after = _run(tag, 20.0, 25.0)
    advs = _decode(after)
    assert len(after) >= 4
    assert all(a.status & Status.TAMPER for a in advs)  # ... the state is in every heartbeat
    assert not any(a.status2 & REPEAT for a in advs)
    assert before


def test_set_silent_with_time_sends_what_was_due_before() -> None:
    tag = _tag(ReferenceTag, seed=25)
    _run(tag, 0.0, 3.0)
    hb = tag.next_due
    tag.set_silent(True, now=hb + 0.5)
    frames = tag.due(hb + 10.0)
    assert [f.t for f in frames] == [hb]


# ---------------------------------------------------------- determinism and long gaps


def _scripted(seed: int, step: float) -> list[Frame]:
    badge = _tag(StaffBadge, seed=seed, interval_s=1.4)
    frames = _run(badge, 0.0, 10.0, step)
    badge.press_sos(10.0)
    frames += _run(badge, 10.0, 20.0, step)
    badge.confirm(20.0)
    frames += _run(badge, 20.0, 30.0, step)
    badge.reset(30.0)
    frames += _run(badge, 30.0, 60.0, step)
    return frames


def test_same_seed_same_frames_other_seed_differs() -> None:
    a, b, c = _scripted(30, 0.05), _scripted(30, 0.05), _scripted(31, 0.05)
    assert [(f.t, f.body) for f in a] == [(f.t, f.body) for f in b]
    assert [(f.t, f.body) for f in a] != [(f.t, f.body) for f in c]


def test_frames_do_not_depend_on_how_often_due_is_called() -> None:
    fine, coarse = _scripted(32, 0.05), _scripted(32, 10.0)
    assert [(f.t, f.body) for f in fine] == [(f.t, f.body) for f in coarse]
    _check_protocol(fine, 1.4)


def test_long_gap_returns_every_frame_in_time_order() -> None:
    tag = _tag(StaffBadge, seed=33, interval_s=0.5)
    tag.press_sos(100.0)  # scheduled in the future: the heartbeats before it come first
    frames = tag.due(1000.0)
    times = [f.t for f in frames]
    assert times == sorted(times)
    assert 1000.0 / (0.5 + ADV_DELAY_MAX_S) <= len(frames) <= 1000.0 / 0.5 + REPEATS + 1
    assert frames[-1].t <= 1000.0
    assert tag.due(1000.0) == []
    _check_protocol(frames, 0.5)
    sos = [f.t for f, a in zip(frames, _decode(frames), strict=True) if a.status & Status.SOS]
    assert sos[0] == 100.0
    assert all(t >= 100.0 for t in sos)
    assert len(sos) == len(frames) - sum(f.t < 100.0 for f in frames)


def test_mother_tag_is_a_wristband_of_its_own_kind_without_pairing() -> None:
    mother = _tag(MotherTag)
    assert isinstance(mother, Wristband) and not isinstance(mother, InfantBracelet)
    assert not hasattr(mother, "meet") and not hasattr(mother, "pair")
    assert decode_body(mother.due(2.0)[0].body).kind == TagKind.MOTHER
    assert mother.status == Status.SKIN_CONTACT


# ------------------------------------------------------------ mother-infant mismatch
OWN, OTHER, THIRD = 0x0000_1006, 0x0000_1005, 0x0000_1007
MISMATCH = Status2.MISMATCH


def _mismatch_at(frames: list[Frame]) -> list[tuple[float, bool]]:
    """(time, MISMATCH set) of each change of the flag on air."""
    return [(t, bool(s2 & MISMATCH)) for t, _, s2 in _changes(frames)]


def test_bracelet_flags_a_mother_that_is_not_its_own_with_a_burst() -> None:
    tag = _tag(InfantBracelet, seed=30)
    frames = _run(tag, 0.0, 2.0)
    tag.pair(OWN, 2.0)
    frames += _run(tag, 2.0, 4.0)
    tag.meet(OWN, 4.0)  # her own mother holds the baby: nothing
    frames += _run(tag, 4.0, 6.0)
    assert not tag.mismatch
    tag.meet([OWN, OTHER], 6.2)  # another mother comes within range too: flagged
    frames += _run(tag, 6.0, 9.0)
    tag.meet(None, 9.3)  # both gone: cleared
    frames += _run(tag, 9.0, 12.0)
    changes = _mismatch_at(frames)[1:]  # after the first frame's state
    assert [t for t, _ in changes] == pytest.approx([6.2, 9.3])
    assert [on for _, on in changes] == [True, False]
    advs = _decode(frames)
    burst = [a for f, a in zip(frames, advs, strict=True) if 6.2 <= f.t < 6.2 + 0.35]
    assert len(burst) == 1 + REPEATS and len({a.seq for a in burst}) == 1  # one change, repeated
    assert [bool(a.status2 & REPEAT) for a in burst] == [False] + [True] * REPEATS
    assert all(a.status2 & MISMATCH for a in burst)
    assert all(a.status == Status.SKIN_CONTACT for a in advs)  # status byte untouched
    _check_protocol(frames)


def test_unpaired_bracelet_says_nothing_and_pairing_decides() -> None:
    tag = _tag(InfantBracelet, seed=31)
    frames = _run(tag, 0.0, 2.0)
    tag.meet(OTHER, 2.0)  # not paired yet: nothing to compare with
    frames += _run(tag, 2.0, 4.0)
    assert not tag.mismatch
    tag.pair(OWN, 4.0)  # paired while OTHER is still in range: flagged at the pairing
    frames += _run(tag, 4.0, 6.0)
    tag.pair(OTHER, 6.0)  # re-paired with the mother in range (a corrected pairing): cleared
    frames += _run(tag, 6.0, 8.0)
    tag.meet([OTHER, THIRD], 8.0)
    frames += _run(tag, 8.0, 10.0)
    tag.pair(0, 10.0)  # discharged: unpaired, silent again
    frames += _run(tag, 10.0, 12.0)
    changes = _mismatch_at(frames)[1:]
    assert [t for t, _ in changes] == pytest.approx([4.0, 6.0, 8.0, 10.0])
    assert [on for _, on in changes] == [True, False, True, False]
    _check_protocol(frames)


def test_meeting_the_same_mothers_again_is_no_state_change() -> None:
    tag = _tag(InfantBracelet, seed=32)
    tag.pair(OWN, 0.0)
    tag.meet(OTHER, 1.0)
    seq = tag.seq
    for t in (1.5, 2.0, 2.5):
        tag.meet([OTHER], t)
    assert tag.seq == seq and tag.mismatch
    with pytest.raises(RtlsError, match="not a u32"):
        tag.pair(-1, 3.0)
    assert tag.paired_mother == OWN
