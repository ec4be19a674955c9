"""Man-down detector: falls alarm within DGUV's 90 s, daily activities do not, chunking is exact.

Going down versus lying down (impact, rotation, the standard traces through the CLI) is in
test_mandown_transitions.py; small movements of different sizes (sitting, standing, lying in bed)
in test_mandown_stillness.py; an independent small-movement model in
test_mandown_crosscheck.py."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firmware_sim.accelerometer import FIDGET_G, Trace, compose, write_csv
from firmware_sim.mandown import (
    DGUV_MAX_TRIGGER_S,
    Event,
    ManDownConfig,
    ManDownDetector,
    SampleError,
    detect,
    frame_features,
    main,
)

from rtls.errors import ConfigError, PayloadError, RtlsError

FALLS = ("fall_forward", "fall_backward", "fall_sideways", "fall_slump")
# (seed, rate Hz, jitter as a fraction of the period): regular and irregular sampling, 20-100 Hz
SAMPLING = ((0, 25.0, 0.0), (1, 20.0, 0.8), (2, 100.0, 0.5), (3, 50.0, 0.3))
ADLS = {
    "walking": (("standing", 5.0), ("walking", 120.0)),
    "standing": (("walking", 15.0), ("standing", 120.0), ("walking", 15.0)),
    "sitting_down": (("walking", 20.0), ("sitting_down", 90.0), ("standing_up", 5.0),
                     ("walking", 20.0)),
    "sitting_down_hard": (("walking", 20.0), ("sitting_down_hard", 90.0), ("standing_up", 5.0),
                          ("walking", 20.0)),
    "bending": (("walking", 15.0), ("bending", 10.0), ("walking", 15.0), ("bending", 12.0),
                ("walking", 30.0)),
}  # fmt: skip


def _trace(
    segments: tuple[tuple[str, float], ...],
    seed: int,
    rate: float,
    jitter: float,
    fidget_g: float = FIDGET_G,
) -> Trace:
    rng = np.random.default_rng(seed)
    return compose(segments, rng, rate_hz=rate, jitter=jitter, fidget_g=fidget_g)


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.event, e.cause) for e in events]


def _feed_chunks(det: ManDownDetector, tr: Trace, sizes: np.ndarray) -> list[Event]:
    events: list[Event] = []
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for a, b in itertools.pairwise(bounds):
        events += det.feed(tr.t[a:b], tr.acc[a:b])
    return events


# ------------------------------------------------------------------ falls and ADLs


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
@pytest.mark.parametrize("kind", FALLS)
def test_fall_alarms_within_dguv_time(kind: str, seed: int, rate: float, jitter: float) -> None:
    tr = _trace((("walking", 20.0), (kind, 100.0)), seed, rate, jitter)
    events = detect(tr.t, tr.acc)
    impact = tr.mark("impact")
    alarms = [e for e in events if e.event == "alarm"]
    assert alarms, _kinds(events)
    first = alarms[0]
    assert impact < first.t <= impact + DGUV_MAX_TRIGGER_S
    assert first.cause == "fall"
    pre = [e for e in events if e.event == "pre_alarm"]
    assert pre[0].t < first.t
    assert first.t - pre[0].t == pytest.approx(ManDownConfig().pre_alarm_s, abs=0.11)
    assert first.peak_g is not None and first.peak_g >= ManDownConfig().impact_g
    assert first.tilt_deg > ManDownConfig().tilt_deg
    assert not [e for e in events if e.event == "cancel"]


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
def test_fall_and_recover_never_alarms(seed: int, rate: float, jitter: float) -> None:
    tr = _trace((("walking", 20.0), ("fall_recover", 12.0), ("walking", 60.0)), seed, rate, jitter)
    events = detect(tr.t, tr.acc)
    assert "alarm" not in [e.event for e in events]
    assert [e.event for e in events] in ([], ["pre_alarm", "cancel"])


@pytest.mark.parametrize(("seed", "rate", "jitter"), SAMPLING)
@pytest.mark.parametrize("name", sorted(ADLS))
def test_daily_activities_raise_nothing(name: str, seed: int, rate: float, jitter: float) -> None:
    tr = _trace(ADLS[name], seed, rate, jitter)
    assert detect(tr.t, tr.acc) == []


def test_sitting_down_hard_is_an_impact_but_upright() -> None:
    tr = _trace(ADLS["sitting_down_hard"], 7, 100.0, 0.0)
    ff = frame_features(tr.t, tr.acc)
    assert ff.peak_g.max() >= 3.5  # well above any fall's peak ...
    assert ff.tilt_deg.max() < ManDownConfig().tilt_deg  # ... but the trunk stays upright
    assert detect(tr.t, tr.acc) == []


def test_motionless_upright_gives_no_movement_alarm_within_dguv() -> None:
    # slumped in a chair / standing unconscious: trunk near vertical, no motion at all
    tr = _trace((("walking", 20.0), ("lying_still", 100.0)), 11, 25.0, 0.0)
    events = detect(tr.t, tr.acc)
    assert _kinds(events) == [("pre_alarm", "no_movement"), ("alarm", "no_movement")]
    still_from = tr.mark("start:lying_still")
    assert events[0].t >= still_from + ManDownConfig().no_movement_s
    assert events[1].t <= still_from + DGUV_MAX_TRIGGER_S


# ------------------------------------------------------------ cancel, recovery, reset


def _fall_trace(seed: int = 21) -> Trace:
    return _trace((("walking", 20.0), ("fall_forward", 100.0)), seed, 25.0, 0.3)


def test_button_cancel_within_pre_alarm_prevents_the_alarm() -> None:
    tr, cfg = _fall_trace(), ManDownConfig()
    det = ManDownDetector(cfg)
    events: list[Event] = []
    cancelled_at = None
    for a in range(0, len(tr), 50):
        events += det.feed(tr.t[a : a + 50], tr.acc[a : a + 50])
        if cancelled_at is None and events and events[-1].event == "pre_alarm":
            cancelled_at = float(tr.t[min(a + 49, len(tr) - 1)])
            got = det.cancel(cancelled_at)
            assert [(e.event, e.cause, e.reason) for e in got] == [("cancel", "fall", "button")]
            assert det.state == "monitor"
            events += got
    assert cancelled_at is not None
    # the wearer keeps lying still: re-armed timers give a new pre-alarm (tilt), never sooner
    later = [e for e in events if e.t > cancelled_at and e.event != "cancel"]
    assert later[0].event == "pre_alarm"
    assert later[0].cause == "tilt"
    assert later[0].t >= cancelled_at + cfg.tilt_hold_s
    alarms = [e for e in events if e.event == "alarm"]
    assert all(e.t >= later[0].t + cfg.pre_alarm_s - 0.1 for e in alarms)


def test_cancel_outside_a_pre_alarm_does_nothing() -> None:
    tr = _fall_trace()
    det = ManDownDetector()
    assert det.cancel(1.0) == []  # monitoring
    events = det.feed(tr.t, tr.acc)
    alarm = next(e for e in events if e.event == "alarm")
    assert det.state == "alarm"
    assert det.cancel(alarm.t + 1.0) == []  # the button does not silence an alarm
    assert det.state == "alarm"
    with pytest.raises(SampleError):
        det.cancel(float("nan"))


def test_cancel_after_the_pre_alarm_time_is_too_late() -> None:
    tr = _fall_trace()
    det = ManDownDetector()
    pre = next(e for e in detect(tr.t, tr.acc) if e.event == "pre_alarm")
    cut = int(np.searchsorted(tr.t, pre.t + 1.0))
    det.feed(tr.t[:cut], tr.acc[:cut])
    assert det.state == "pre_alarm"
    assert det.cancel(pre.t + ManDownConfig().pre_alarm_s + 0.5) == []
    rest = det.feed(tr.t[cut:], tr.acc[cut:])
    assert rest[0].event == "alarm"


def test_getting_up_during_pre_alarm_cancels_it() -> None:
    segs = (("walking", 20.0), ("fall_sideways", 18.0), ("standing_up", 4.0), ("walking", 30.0))
    tr = _trace(segs, 31, 25.0, 0.0)
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause, e.reason) for e in events] == [
        ("pre_alarm", "fall", None),
        ("cancel", "fall", "recovered"),
    ]


def test_getting_up_after_the_alarm_cancels_it_with_its_cause() -> None:
    segs = (("walking", 20.0), ("fall_backward", 50.0), ("standing_up", 4.0), ("walking", 30.0))
    tr = _trace(segs, 32, 25.0, 0.0)
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause, e.reason) for e in events] == [
        ("pre_alarm", "fall", None),
        ("alarm", "fall", None),
        ("cancel", "fall", "recovered"),
    ]
    assert events[2].t >= tr.mark("start:standing_up")


def test_moving_while_still_down_does_not_end_the_alarm() -> None:
    # turning over, convulsing or waving while lying is no recovery: only getting up ends it
    segs = (("walking", 20.0), ("fall_forward", 45.0), ("lying_awake", 40.0),
            ("standing_up", 4.0), ("walking", 20.0))  # fmt: skip
    tr = _trace(segs, 33, 25.0, 0.3, fidget_g=0.6)  # big movements on the floor
    ff = frame_features(tr.t, tr.acc)
    floor = (ff.t > tr.mark("start:lying_awake")) & (ff.t < tr.mark("start:standing_up"))
    assert ff.activity_g[floor].max() >= ManDownConfig().motion_threshold_g
    events = detect(tr.t, tr.acc)
    assert [(e.event, e.cause, e.reason) for e in events] == [
        ("pre_alarm", "fall", None),
        ("alarm", "fall", None),
        ("cancel", "fall", "recovered"),
    ]
    assert events[2].t > tr.mark("start:standing_up")


def test_reset_clears_the_alarm_and_rearms() -> None:
    tr, cfg = _fall_trace(), ManDownConfig()
    det = ManDownDetector(cfg)
    alarm = next(e for e in detect(tr.t, tr.acc) if e.event == "alarm")
    cut = int(np.searchsorted(tr.t, alarm.t + 1.0))
    det.feed(tr.t[:cut], tr.acc[:cut])
    states = [det.state]
    det.reset()
    states.append(det.state)
    assert states == ["alarm", "monitor"]
    rest = det.feed(tr.t[cut:], tr.acc[cut:])
    # still lying: a new pre-alarm, from tilt (the old impact is forgotten), after the hold time
    assert rest[0].event == "pre_alarm"
    assert rest[0].cause == "tilt"
    assert rest[0].t >= tr.t[cut - 1] + cfg.tilt_hold_s


# ------------------------------------------------------------------------ streaming


SLUMP_AND_GET_UP = (
    ("walking", 20.0),
    ("fall_slump", 80.0),
    ("standing_up", 4.0),
    ("walking", 20.0),
)


QUIET_SITTING = (("walking", 15.0), ("sitting_down", 200.0), ("standing_up", 5.0),
                 ("walking", 10.0))  # fmt: skip


BED_MOTIONLESS_THEN_UP = (("walking", 15.0), ("lying_down", 20.0), ("lying_still", 90.0),
                          ("standing_up", 4.0), ("walking", 10.0))  # fmt: skip
TOPPLE_AND_GET_UP = (("walking", 20.0), ("fall_forward", 50.0), ("standing_up", 4.0),
                     ("walking", 10.0))  # fmt: skip


@pytest.mark.parametrize(
    ("segments", "fidget", "impact_g"),
    [(BED_MOTIONLESS_THEN_UP, 0.08, 1.6), (SLUMP_AND_GET_UP, 0.08, 1.6),
     (QUIET_SITTING, 0.05, 1.6), (TOPPLE_AND_GET_UP, 0.08, 6.0)],
)  # fmt: skip
def test_events_do_not_depend_on_chunking(
    segments: tuple[tuple[str, float], ...], fidget: float, impact_g: float
) -> None:
    # the last case has its tilt rule armed by the fast rotation alone (impacts not counted)
    tr = _trace(segments, 41, 40.0, 0.7, fidget_g=fidget)
    cfg = ManDownConfig(tilt_hold_s=15.0, impact_g=impact_g)
    whole = detect(tr.t, tr.acc, cfg)
    assert len({e.event for e in whole}) >= 2  # something to compare
    rng = np.random.default_rng(0)
    for _ in range(3):
        sizes = rng.integers(1, 400, size=len(tr))
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), len(tr))) + 1]
        sizes[-1] = len(tr) - sizes[:-1].sum()
        assert _feed_chunks(ManDownDetector(cfg), tr, sizes) == whole
    singles = np.ones(3000, dtype=int)  # one sample at a time, then the rest at once
    sizes = np.append(singles, len(tr) - 3000)
    assert _feed_chunks(ManDownDetector(cfg), tr, sizes) == whole


def test_empty_chunk_and_list_input_are_accepted() -> None:
    det = ManDownDetector()
    assert det.feed(np.zeros(0), np.zeros((0, 3))) == []
    t = [i * 0.04 for i in range(100)]
    assert det.feed(t, [[0.0, 0.0, 1.0]] * 100) == []


def test_features_tilt_and_activity() -> None:
    segs = (("standing", 20.0), ("walking", 20.0), ("fall_backward", 30.0))
    tr = _trace(segs, 51, 25.0, 0.0, fidget_g=0.0)  # standing without small movements
    ff = frame_features(tr.t, tr.acc)
    stand = (ff.t > 3.0) & (ff.t < 19.0)
    walk = (ff.t > 25.0) & (ff.t < 39.0)
    lying = ff.t > tr.mark("impact") + 10.0
    assert ff.tilt_deg[stand].max() < 10.0
    assert ff.tilt_deg[lying].min() > 70.0
    cfg = ManDownConfig()
    assert ff.activity_g[stand].max() < cfg.activity_threshold_g
    assert ff.activity_g[walk].min() > cfg.motion_threshold_g
    assert ff.activity_g[lying].max() < cfg.stillness_threshold_g  # no motion at all
    assert np.all(np.diff(ff.t) > 0)


# ----------------------------------------------------------------------- bad input


def _good(n: int = 200, rate: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) / rate
    acc = np.tile([0.0, 0.0, 1.0], (n, 1))
    return t, acc


@pytest.mark.parametrize(
    ("mutate", "reason", "words"),
    [
        (lambda t, a: (t[::-1].copy(), a), "not_monotonic", "does not increase"),
        (lambda t, a: (np.where(np.arange(t.size) == 7, t[6], t), a), "not_monotonic", "sample 7"),
        (lambda t, a: (t, np.where(np.arange(t.size)[:, None] == 9, np.nan, a)), "not_finite",
         "sample 9"),
        (lambda t, a: (t, a[:, :2]), "shape", "shape"),
        (lambda t, a: (t[:, None], a), "shape", "1-D"),
        (lambda t, a: (t * 2.5, a), "rate", "below min_rate_hz"),
        (lambda t, a: (np.where(t > 2.0, t + 1.0, t), a), "gap", "max_gap_s"),
    ],
)  # fmt: skip
def test_bad_samples_raise_a_clear_payload_error(mutate: object, reason: str, words: str) -> None:
    t, acc = mutate(*_good())  # type: ignore[operator]
    det = ManDownDetector()
    with pytest.raises(SampleError, match=words) as info:
        det.feed(t, acc)
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, RtlsError)
    assert info.value.reason == reason
    good_t, good_acc = _good()
    assert det.feed(good_t, good_acc) == []  # the failed chunk left no trace


def test_time_going_back_across_chunks_is_rejected() -> None:
    t, acc = _good()
    det = ManDownDetector()
    det.feed(t[:100], acc[:100])
    with pytest.raises(SampleError, match="sample 0"):
        det.feed(t[50:], acc[50:])


def test_non_numeric_samples_are_rejected() -> None:
    with pytest.raises(SampleError, match="numeric"):
        detect(["a", "b"], [[0, 0, 1], [0, 0, 1]])


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tilt_deg": 95.0}, "tilt_deg"),
        ({"tilt_hold_s": -1.0}, "tilt_hold_s"),
        ({"pre_alarm_s": 50.0}, "pre_alarm_s"),
        ({"no_movement_s": 120.0}, "no_movement_s"),
        ({"activity_threshold_g": 0.2}, "motion_threshold_g"),
        ({"stillness_threshold_g": 0.06}, "stillness_threshold_g"),
        ({"activity_threshold_g": 0.02}, "stillness_threshold_g"),
        ({"stillness_threshold_g": 0.0}, "stillness_threshold_g"),
        ({"impact_g": 0.9}, "impact_g"),
        ({"frame_s": float("nan")}, "frame_s"),
        ({"fall_rotation_dps": 0.0}, "fall_rotation_dps"),
        ({"fall_rotation_dps": 2000.0}, "fall_rotation_dps"),
        ({"tilt_requires_fall": 1}, "tilt_requires_fall"),
    ],
)
def test_config_is_validated(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ManDownConfig.from_mapping(changes)


def test_vendor_times_need_dguv_off() -> None:
    cfg = ManDownConfig(no_movement_s=120.0, pre_alarm_s=30.0, dguv=False)
    assert cfg.no_movement_s + cfg.pre_alarm_s > DGUV_MAX_TRIGGER_S
    assert 0 < ManDownConfig().detection_lag_s < 10.0


def test_config_from_mapping() -> None:
    assert ManDownConfig.from_mapping({"tilt_deg": 40}).tilt_deg == 40
    with pytest.raises(ConfigError, match="unknown"):
        ManDownConfig.from_mapping({"tilt": 40})
    with pytest.raises(ConfigError, match="number"):
        ManDownConfig.from_mapping({"tilt_deg": "40"})
    with pytest.raises(ConfigError, match="dguv"):
        ManDownConfig.from_mapping({"dguv": "no"})


def test_event_to_json() -> None:
    ev = Event(12.34567, "pre_alarm", "fall", 88.1234, 0.01234, peak_g=2.5, impact_t=1.0)
    data = ev.to_json()
    assert data == {"t": 12.346, "event": "pre_alarm", "cause": "fall", "tilt_deg": 88.123,
                    "activity_g": 0.012, "peak_g": 2.5, "impact_t": 1.0}  # fmt: skip
    assert json.loads(json.dumps(data)) == data


# ------------------------------------------------------------------------------ CLI


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_sim.mandown", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_json_lines_alarm_for_a_fall_none_for_an_adl(tmp_path: Path) -> None:
    fall, adl = tmp_path / "fall_forward.csv", tmp_path / "adl_bending.csv"
    write_csv(_fall_trace(61), fall)
    write_csv(_trace(ADLS["bending"], 62, 25.0, 0.0), adl)
    out = _run_cli(str(fall))
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["event"] for e in events] == ["pre_alarm", "alarm"]
    assert all(e["cause"] == "fall" and isinstance(e["t"], float) for e in events)
    out = _run_cli(str(adl), "--config", '{"tilt_deg": 40}')
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_cli_malformed_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t,ax,ay,az\n0.00,0,0,1\n0.04,0,0,1\n0.08,0,zero,1\n", encoding="utf-8")
    out = _run_cli(str(path))
    assert out.returncode == 2
    assert f"{path}:4:" in out.stderr
    assert out.stdout == ""


def test_cli_errors_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.csv"
    rows = [f"{i * 0.04:.2f},0,0,1" for i in range(100)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")  # no header
    assert main([str(path)]) == 0
    rows[50] = "1.00,0,0,1,5"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert f"{path}:51: expected 4" in capsys.readouterr().err
    rows[50] = "0.10,0,0,1"  # time goes back: the detector's error names the file line
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert f"{path}:51:" in capsys.readouterr().err
    assert main([str(path), "--config", '{"tilt_deg": 100}']) == 2
    assert "tilt_deg" in capsys.readouterr().err
    assert main([str(path), "--config", "{nope"]) == 2
    assert "JSON" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"no_movement_s": 30}', encoding="utf-8")
    path.write_text("t,ax,ay,az\n0.0,0,0,1\n0.04,0,0,1\n", encoding="utf-8")
    assert main([str(path), "--config", str(cfg)]) == 0
