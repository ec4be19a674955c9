"""Synthetic accelerometer traces: physics of each activity, continuity, determinism, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firmware_sim.accelerometer import (
    ACTIVITIES,
    FIDGET_G,
    STANDARD,
    FloatArray,
    Trace,
    compose,
    concatenate,
    main,
    standard_traces,
    synthesize,
)

from rtls.errors import ConfigError

FALLS = ("fall_forward", "fall_backward", "fall_sideways", "fall_slump")


def _tilt(acc: FloatArray) -> FloatArray:
    """Angle (N,) between each reading (N, 3) and the badge z axis, degrees."""
    cos = np.clip(acc[:, 2] / np.linalg.norm(acc, axis=1), -1.0, 1.0)
    return np.asarray(np.degrees(np.arccos(cos)), dtype=np.float64)


def _mag(tr: Trace) -> FloatArray:
    return np.asarray(np.linalg.norm(tr.acc, axis=1), dtype=np.float64)


def _window(tr: Trace, a: float, b: float) -> np.ndarray:
    return (tr.t >= a) & (tr.t < b)


@pytest.mark.parametrize("activity", ACTIVITIES)
@pytest.mark.parametrize(("rate", "jitter"), [(25.0, 0.0), (20.0, 0.9), (100.0, 0.5)])
def test_every_activity_gives_a_valid_trace(activity: str, rate: float, jitter: float) -> None:
    tr = synthesize(activity, np.random.default_rng(1), rate_hz=rate, duration_s=30.0,
                    t0=5.0, jitter=jitter)  # fmt: skip
    assert len(tr) == round(30.0 * rate)
    assert tr.acc.shape == (len(tr), 3)
    assert np.all(np.diff(tr.t) > 0)
    assert np.all(np.isfinite(tr.acc))
    assert tr.t[0] >= 5.0 - 0.5 / rate
    assert tr.end_t == pytest.approx(35.0)
    assert tr.t[-1] < tr.end_t
    assert np.allclose(tr.end_pose @ tr.end_pose.T, np.eye(3), atol=1e-9)
    assert (5.0, f"start:{activity}") in tr.marks
    if jitter:
        spacing = np.diff(tr.t)
        assert spacing.std() > 0.1 / rate
        assert spacing.mean() == pytest.approx(1.0 / rate, rel=0.01)


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = synthesize("walking", np.random.default_rng(7), duration_s=10.0, jitter=0.3)
    b = synthesize("walking", np.random.default_rng(7), duration_s=10.0, jitter=0.3)
    c = synthesize("walking", np.random.default_rng(8), duration_s=10.0, jitter=0.3)
    assert np.array_equal(a.t, b.t)
    assert np.array_equal(a.acc, b.acc)
    assert not np.array_equal(a.acc, c.acc)


def test_standing_reads_gravity_along_z() -> None:
    tr = synthesize("standing", np.random.default_rng(2), duration_s=20.0, fidget_g=0.0)
    mean = tr.acc.mean(axis=0)
    assert np.allclose(mean, [0.0, 0.0, 1.0], atol=0.03)
    assert tr.acc.std(axis=0).max() < 0.03  # sensor noise and sway only


def _second_spread(tr: Trace, rate: float, after: float) -> FloatArray:
    """RMS spread (g) of the samples within each whole second after ``after`` (regular rate)."""
    acc = tr.acc[tr.t >= after]
    per = round(rate)
    blocks = acc[: (acc.shape[0] // per) * per].reshape(-1, per, 3)
    return np.asarray(np.sqrt(blocks.var(axis=1).sum(axis=1)), dtype=np.float64)


@pytest.mark.parametrize("activity", ["sitting", "standing", "lying_awake"])
def test_fidget_g_sizes_the_small_movements(activity: str) -> None:
    spreads = []
    for fidget in (0.0, 0.04, 0.08, 0.16):
        tr = synthesize(activity, np.random.default_rng(6), rate_hz=50.0, duration_s=120.0,
                        noise_g=0.002, fidget_g=fidget)  # fmt: skip
        spreads.append(np.percentile(_second_spread(tr, 50.0, 5.0), 98))
    assert spreads[0] < 0.02  # no small movements: noise, sway and breathing only
    assert spreads[1] < spreads[2] < spreads[3]
    assert 1.8 < spreads[3] / spreads[2] < 2.2  # proportional to fidget_g


def test_noise_level_is_what_was_asked() -> None:
    quiet = synthesize("lying_still", np.random.default_rng(3), duration_s=20.0, noise_g=0.0)
    noisy = synthesize("lying_still", np.random.default_rng(3), duration_s=20.0, noise_g=0.02)
    assert np.std(noisy.acc - quiet.acc) == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_walking_cadence_and_vertical_oscillation(seed: int) -> None:
    tr = synthesize("walking", np.random.default_rng(seed), rate_hz=50.0, duration_s=40.0)
    sel = _window(tr, 5.0, 35.0)
    az = tr.acc[sel, 2] - tr.acc[sel, 2].mean()
    spectrum = np.abs(np.fft.rfft(az * np.hanning(az.size)))
    freqs = np.fft.rfftfreq(az.size, d=1.0 / 50.0)
    assert 1.75 <= freqs[np.argmax(spectrum)] <= 2.05  # step cadence 1.8-2 Hz
    amplitude = np.sqrt(2.0) * az.std()
    assert 0.15 <= amplitude <= 0.4  # 0.2-0.3 g plus its harmonic
    assert _mag(tr).max() < 1.6  # walking is no impact
    assert _tilt(tr.acc[sel].mean(axis=0, keepdims=True))[0] < 10.0


@pytest.mark.parametrize("kind", FALLS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_falls_peak_then_lie_horizontal_and_still(kind: str, seed: int) -> None:
    tr = compose([("walking", 10.0), (kind, 40.0)], np.random.default_rng(seed), rate_hz=200.0)
    impact = tr.mark("impact")
    assert tr.mark("fall") < impact
    near = _window(tr, impact - 0.3, impact + 0.3)
    peak = _mag(tr)[near].max()
    if kind == "fall_slump":
        assert 1.6 <= peak <= 2.0  # slump ~1.8 g
    else:
        assert 1.75 <= peak <= 3.3  # real falls 1.8-3 g
    before = _window(tr, impact - 0.5, impact - 0.05)
    assert _mag(tr)[before].min() < 0.9  # partial free fall in the descent
    after = _window(tr, impact + 5.0, impact + 30.0)
    assert _tilt(tr.acc[after].mean(axis=0, keepdims=True))[0] > 55.0  # lying
    assert tr.acc[after].std(axis=0).max() < 0.03  # nearly still


def _tilt_track(tr: Trace, step: float) -> tuple[FloatArray, FloatArray]:
    """Trunk tilt (K,) in degrees of the mean reading over consecutive ``step``-s windows, and
    the windows' centres (K,)."""
    edges = np.arange(tr.t[0], tr.t[-1], step)
    means = np.array([tr.acc[_window(tr, a, a + step)].mean(axis=0) for a in edges])
    return _tilt(means), edges + step / 2


def _turn_time(tr: Trace, lo: float, hi: float) -> float:
    """How long the trunk takes to go from under ``lo`` to over ``hi`` degrees (0.1-s means)."""
    tilt, centre = _tilt_track(tr, 0.1)
    above = int(np.argmax(tilt > hi))
    below = int(np.flatnonzero(tilt[:above] < lo)[-1])
    return float(centre[above] - centre[below])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_toppling_falls_turn_fast_lying_down_and_collapse_slowly(seed: int) -> None:
    # the trunk from under 15° to over 70° off vertical: a toppling fall in a fraction of a
    # second (it reaches the floor about 0.7 s after losing balance), lying down into bed and
    # the slow collapse over seconds
    for kind in ("fall_forward", "fall_backward", "fall_sideways"):
        tr = synthesize(kind, np.random.default_rng(seed), rate_hz=100.0, duration_s=10.0,
                        noise_g=0.002)  # fmt: skip
        assert _turn_time(tr, 15.0, 70.0) < 0.8, kind
    for kind in ("lying_down", "fall_collapse"):
        tr = synthesize(kind, np.random.default_rng(seed), rate_hz=100.0, duration_s=30.0,
                        noise_g=0.002, fidget_g=0.0)  # fmt: skip
        assert _turn_time(tr, 15.0, 70.0) >= 1.0, kind


def test_slump_collapses_slowly() -> None:
    for seed in range(3):
        slump = synthesize("fall_slump", np.random.default_rng(seed), duration_s=10.0)
        fwd = synthesize("fall_forward", np.random.default_rng(seed), duration_s=10.0)
        assert slump.mark("impact") - slump.mark("fall") >= 1.5
        assert fwd.mark("impact") - fwd.mark("fall") <= 0.9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_slow_collapse_has_no_impact_and_ends_lying_still(seed: int) -> None:
    tr = compose([("walking", 10.0), ("fall_collapse", 40.0)], np.random.default_rng(seed),
                 rate_hz=200.0)  # fmt: skip
    with pytest.raises(KeyError):
        tr.mark("impact")
    fall, floor, lying = tr.mark("fall"), tr.mark("floor"), tr.mark("lying")
    assert fall < floor < lying
    assert lying - fall >= 4.0
    assert _mag(tr)[tr.t > fall].max() < 1.35  # nothing near an impact
    after = _window(tr, lying + 5.0, lying + 30.0)
    assert _tilt(tr.acc[after].mean(axis=0, keepdims=True))[0] > 60.0
    assert tr.acc[after].std(axis=0).max() < 0.03


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fall_and_recover_ends_upright(seed: int) -> None:
    tr = synthesize("fall_recover", np.random.default_rng(seed), rate_hz=100.0, duration_s=15.0)
    impact, up = tr.mark("impact"), tr.mark("upright")
    assert 2.0 < up - impact < 8.0
    assert _mag(tr)[_window(tr, impact - 0.3, impact + 0.3)].max() >= 1.75
    assert _tilt(tr.acc[_window(tr, impact + 1.0, impact + 2.0)].mean(0, keepdims=True))[0] > 45
    assert _tilt(tr.acc[_window(tr, up + 1.0, 15.0)].mean(0, keepdims=True))[0] < 15


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sitting_down_hard_hits_hard_but_stays_upright(seed: int) -> None:
    hard = synthesize("sitting_down_hard", np.random.default_rng(seed), rate_hz=400.0,
                      duration_s=20.0)  # fmt: skip
    soft = synthesize("sitting_down", np.random.default_rng(seed), rate_hz=400.0,
                      duration_s=20.0)  # fmt: skip
    assert 3.8 <= _mag(hard).max() <= 5.2  # up to 4-5 g
    assert _mag(soft).max() < 2.0
    for tr in (hard, soft):
        assert _tilt(tr.acc[_window(tr, 5.0, 20.0)].mean(0, keepdims=True))[0] < 20.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lying_down_in_bed_is_slow_with_small_movements(seed: int) -> None:
    tr = synthesize("lying_down", np.random.default_rng(seed), rate_hz=50.0, duration_s=300.0,
                    noise_g=0.002)  # fmt: skip
    assert _mag(tr).max() < 1.5  # no impact
    # a controlled transition: seated upright on the edge first, then lying back over seconds
    seated = tr.mark("seated")
    tilt, centre = _tilt_track(tr, 0.25)
    assert tilt[(centre > seated + 0.5) & (centre < seated + 1.0)].max() < 25.0
    assert tr.mark("lying") - seated >= 4.0
    turning = (centre > seated) & (centre < tr.mark("lying") + 0.5)
    assert np.abs(np.diff(tilt[turning])).max() / 0.25 < 60.0  # degrees per second
    lying = tr.mark("lying") + 2.0
    assert np.median(_tilt(tr.acc[_window(tr, lying, 300.0)])) > 60.0
    # small movements: seconds with a visible spread (noise alone gives ~0.0035 g), never 30 s
    # apart, yet most seconds are quiet
    spread = _second_spread(tr, 50.0, lying)
    active = np.flatnonzero(spread > 0.012)
    assert 10 < active.size < 0.6 * spread.size
    assert np.diff(np.concatenate([[0], active, [spread.size - 1]])).max() < 30


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bending_tilts_far_then_returns(seed: int) -> None:
    tr = synthesize("bending", np.random.default_rng(seed), rate_hz=50.0, duration_s=12.0)
    bent = tr.mark("bent")
    smooth = np.array(
        [tr.acc[_window(tr, s, s + 0.5)].mean(axis=0) for s in np.arange(0, 11.5, 0.5)]
    )
    tilt = _tilt(smooth)
    assert 50.0 <= tilt.max() <= 95.0
    assert tilt[-4:].max() < 15.0
    assert bent < 5.0


def test_compose_keeps_orientation_continuous() -> None:
    segs = [("walking", 10.0), ("fall_forward", 10.0), ("lying_still", 5.0), ("standing_up", 5.0),
            ("sitting", 10.0), ("lying_down", 30.0), ("bending", 8.0)]  # fmt: skip
    tr = compose(segs, np.random.default_rng(4), rate_hz=100.0, noise_g=0.0)
    steps = np.abs(np.diff(tr.acc, axis=0)).max(axis=1)
    for name, _ in segs[1:]:
        i = int(np.searchsorted(tr.t, tr.mark(f"start:{name}")))
        assert steps[i - 1] < 0.05, name  # no jump where one segment hands over to the next
    assert tr.end_t == pytest.approx(78.0)


def test_start_pose_is_respected() -> None:
    lying = synthesize("fall_backward", np.random.default_rng(5), duration_s=10.0)
    still = synthesize("lying_still", np.random.default_rng(6), duration_s=5.0,
                       start=lying.end_pose, noise_g=0.0)  # fmt: skip
    expected = lying.end_pose.T @ np.array([0.0, 0.0, 1.0])
    assert np.allclose(still.acc.mean(axis=0), expected, atol=0.02)


def test_concatenate_and_its_errors() -> None:
    rng = np.random.default_rng(9)
    a = synthesize("standing", rng, duration_s=2.0)
    b = synthesize("walking", rng, duration_s=2.0, t0=a.end_t)
    both = concatenate([a, b])
    assert len(both) == len(a) + len(b)
    assert both.end_t == b.end_t
    with pytest.raises(ConfigError, match="cannot append"):
        concatenate([b, a])
    with pytest.raises(ConfigError):
        concatenate([])
    with pytest.raises(KeyError):
        a.mark("impact")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"activity": "dancing"}, "unknown activity"),
        ({"jitter": 1.0}, "jitter"),
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"noise_g": -0.1}, "noise_g"),
        ({"fidget_g": -0.1}, "fidget_g"),
        ({"start": np.ones((3, 3))}, "rotation"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"activity": "standing", **kwargs}
    activity = str(args.pop("activity"))
    with pytest.raises(ConfigError, match=words):
        synthesize(activity, np.random.default_rng(0), **args)  # type: ignore[arg-type]


def test_trace_rejects_bad_arrays() -> None:
    with pytest.raises(ConfigError, match="increasing"):
        Trace(np.array([0.0, 0.0]), np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="shape"):
        Trace(np.array([0.0, 1.0]), np.zeros((2, 2)))


def test_standard_traces_are_named_and_long_enough() -> None:
    traces = standard_traces(np.random.default_rng(0))
    assert set(traces) == set(STANDARD)
    assert all(name.startswith(("fall_", "adl_")) for name in traces)
    for name, tr in traces.items():
        duration = tr.t[-1] - tr.t[0]
        if name == "fall_collapse":
            assert tr.t[-1] - tr.mark("lying") >= 90.0
        elif name.startswith("fall_") and name != "fall_recover":
            assert tr.t[-1] - tr.mark("impact") >= 90.0
        elif name == "adl_lying_in_bed":
            assert duration >= 300.0
        else:
            assert duration >= 90.0
    # a scenario does not change when the generator is reused for another run
    again = standard_traces(np.random.default_rng(0))
    assert np.array_equal(again["fall_slump"].acc, traces["fall_slump"].acc)


def test_cli_writes_one_csv_per_scenario(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "firmware_sim.accelerometer", "--out", str(tmp_path),
         "--seed", "3", "--rate", "20"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert files == sorted(f"{name}.csv" for name in STANDARD)
    text = (tmp_path / "fall_forward.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == "t,ax,ay,az"
    data = np.loadtxt(tmp_path / "fall_forward.csv", delimiter=",", skiprows=1)
    assert data.shape[1] == 4
    assert np.all(np.diff(data[:, 0]) > 0)
    assert (data.shape[0] - 1) / (data[-1, 0] - data[0, 0]) == pytest.approx(20.0, rel=0.01)


def test_cli_fidget_changes_the_daily_activities_only(tmp_path: Path) -> None:
    quiet, lively = tmp_path / "quiet", tmp_path / "lively"
    assert main(["--out", str(quiet), "--seed", "4", "--fidget", "0"]) == 0
    assert main(["--out", str(lively), "--seed", "4", "--fidget", str(2 * FIDGET_G)]) == 0
    for name, changes in (("adl_standing", True), ("fall_forward", False)):
        a = np.loadtxt(quiet / f"{name}.csv", delimiter=",", skiprows=1)
        b = np.loadtxt(lively / f"{name}.csv", delimiter=",", skiprows=1)
        assert a.shape == b.shape
        assert (not np.allclose(a, b)) == changes, name


def test_cli_bad_jitter_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--jitter", "1.5"]) == 2
    assert "jitter" in capsys.readouterr().err
