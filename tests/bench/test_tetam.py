"""The TETAM converter (bench/tetam.py), its site file and a short replay through rtls.offline.

Tests that read the dataset itself skip, naming the path, when ../shared/data/danis-tetam is not
there (it lives outside the repository) — but never in CI (CI=true), where shared/ is always
beside the clone: there a missing dataset fails them.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench import replay, tetam
from rtls.site import load_site

DEVICES_TEXT = (
    'Dongles:{"b827eb4521b4": [[7.00, 7.09, 1.22], 16711680, "sensor10"], '
    '"000000000101": [[7.18, 0.68, 2.30], 16711730, "sensor11"]}\n'
    'Beacons:{"e78f135624ce": [[], 1328790, "beacon1"] }\n'
)
ORIENTATION = ",0.062,-0.0,-0.998,0.998,0.017,0.062,0.017,-1.0,0.002"
Line = tuple[str, str, str, str, str, str, str]  # t, receiver, beacon, rssi, x, y, z
LINES: list[Line] = [  # deliberately out of time order
    ("1581249601.5000", "000000000101", "e78f135624ce", "-85", "18.0", "8.4", "1.8"),
    ("1581249601.4087", "b827eb4521b4", "e78f135624ce", "-87", "18.031", "8.465", "1.816"),
    ("1581249601.6000", "b827ebf7d096", "e78f135624ce", "-70", "17.9", "8.4", "1.8"),  # unknown rx
    ("1581249601.7000", "b827eb4521b4", "e78f135624ce", "42", "17.8", "8.4", "1.8"),  # impossible
    ("1581249601.8000", "b827eb4521b4", "aaaaaaaaaaaa", "-60", "17.7", "8.4", "1.8"),  # beacon?
]

needs_data = pytest.mark.skipif(
    not (tetam.DEFAULT_DATA / "trk").is_dir() and os.environ.get("CI") != "true",
    reason=f"dataset not found at {tetam.DEFAULT_DATA}",
)


@pytest.fixture(scope="module")
def devices() -> tetam.Devices:
    return tetam.parse_devices(DEVICES_TEXT)


def track_text(lines: list[Line]) -> list[str]:
    return [",".join(line) + ORIENTATION + "\n" for line in lines]


def test_devices_are_parsed_with_aliases_and_positions(devices: tetam.Devices) -> None:
    assert [r.alias for r in devices.receivers] == ["sensor10", "sensor11"]
    assert devices.receivers[1].xyz == (7.18, 0.68, 2.30)
    assert devices.beacons == {"e78f135624ce": "beacon1"}


def test_converter_writes_the_rows_of_known_lines(devices: tetam.Devices) -> None:
    track = tetam.parse_track(track_text(LINES), devices, "sample")
    out = io.StringIO()
    tetam.write_observations(track, devices, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["t", "gateway", "tag", "rssi"]
    # the two valid lines, in time order, receiver and beacon by alias
    assert rows[1:] == [
        [LINES[1][0], "sensor10", "beacon1", LINES[1][3]],
        [LINES[0][0], "sensor11", "beacon1", LINES[0][3]],
    ]
    assert track.dropped == Counter(unknown_receiver=1, positive_rssi=1, unknown_beacon=1)


def test_truth_rows_give_the_true_positions_in_time_order(devices: tetam.Devices) -> None:
    track = tetam.parse_track(track_text(LINES[:2]), devices, "sample")
    out = io.StringIO()
    tetam.write_truth(track, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        ["t", "x", "y"],
        [LINES[1][0], LINES[1][4], LINES[1][5]],
        [LINES[0][0], "18.000", "8.400"],
    ]


def test_malformed_line_names_the_line(devices: tetam.Devices) -> None:
    text = [*track_text(LINES[:1]), "1581249601.9,b827eb4521b4,e78f135624ce,-80,nan_x\n"]
    with pytest.raises(tetam.TetamError, match="line 2"):
        tetam.parse_track(text, devices, "sample")
    with pytest.raises(tetam.TetamError, match="line 1"):
        tetam.parse_track(["1581249601.9,b827eb4521b4,e78f135624ce,-80,1,2,z\n"], devices, "s")


def test_fit_recovers_a_noise_free_calibration(devices: tetam.Devices) -> None:
    rng = np.random.default_rng(4)
    p0, n = np.array([-61.0, -56.5]), 1.8
    t = np.arange(400) * 0.25
    receiver = np.arange(400) % 2
    pos = rng.uniform([0, 0, 1.5], [20, 17, 2.0], size=(400, 3))
    d = np.linalg.norm(pos - devices.xyz[receiver], axis=1)
    rows = np.zeros(400, dtype=tetam.TRACK_DTYPE)
    rows["t"], rows["receiver"] = t, receiver
    rows["x"], rows["y"], rows["z"] = pos.T
    rows["rssi"] = p0[receiver] - 10 * n * np.log10(d)
    # one observation per (1 s window, receiver) pair would make the window means exact; use a
    # 0.1 s window so that every observation is its own mean
    cal = tetam.fit_calibration([tetam.Track("synthetic", rows, "beacon1")], devices, window_s=0.1)
    assert cal.rssi_at_1m == pytest.approx(p0, abs=1e-3)
    assert cal.path_loss_exponent == pytest.approx(n, abs=1e-4)
    assert cal.residual_db < 1e-3


def test_site_file_loads_and_matches_the_office() -> None:
    site = load_site(tetam.TETAM_SITE)
    outline = np.asarray(site.floors[0].outline)
    assert np.ptp(outline, axis=0) == pytest.approx([20.66, 17.64], abs=0.01)
    assert [t.id for t in site.tags] == ["beacon1"]
    assert len(site.gateways) == 12 and len(site.zones) == 1


@needs_data
def test_site_gateways_are_the_dataset_receivers() -> None:
    devices = tetam.read_devices(tetam.DEFAULT_DATA)
    site = load_site(tetam.TETAM_SITE)
    ga = site.gateway_arrays
    for rec in devices.receivers:
        assert ga.xyz[ga.ids.index(rec.alias)] == pytest.approx(rec.xyz)
    assert set(devices.beacons.values()) == {t.id for t in site.tags}


def test_calibrated_site_takes_the_new_calibration() -> None:
    shipped = load_site(tetam.TETAM_SITE)
    receivers = tuple(tetam.Receiver(g.id, g.id, g.position) for g in shipped.gateways)
    devices = tetam.Devices(receivers[::-1], {})  # any receiver order maps by alias
    p0 = np.linspace(-65.0, -55.0, len(receivers))
    site = tetam.calibrated_site(tetam.Calibration(p0, 2.2, 4.0, 1), devices)
    ga = site.gateway_arrays
    order = [ga.ids.index(r.alias) for r in devices.receivers]
    assert ga.rssi_at_1m[order] == pytest.approx(p0, abs=0.006)  # written to 0.01 dB
    assert ga.path_loss_exponent == pytest.approx(np.full(len(p0), 2.2))
    assert ga.xyz == pytest.approx(shipped.gateway_arrays.xyz)


@needs_data
def test_real_track_lines_convert_to_their_own_values() -> None:
    devices = tetam.read_devices(tetam.DEFAULT_DATA)
    path = tetam.DEFAULT_DATA / "trk" / ("straight_01" + tetam.TRACK_SUFFIX)
    head = path.read_text(encoding="utf-8").splitlines()[:24]
    track = tetam.parse_track(head, devices, "straight_01")
    alias = {r.mac: r.alias for r in devices.receivers}
    expected = sorted(
        (float(f[0]), alias[f[1]], "beacon1", float(f[3])) for f in (x.split(",") for x in head)
    )
    got = [
        (float(t), alias_, tag, float(rssi))
        for t, alias_, tag, rssi in (
            r for r in csv.reader(_observations(track, devices)) if r[0] != "t"
        )
    ]
    assert sorted((round(t, 4), a, b, r) for t, a, b, r in expected) == sorted(got)
    assert [t for t, *_ in got] == sorted(t for t, *_ in got)  # in time order


def _observations(track: tetam.Track, devices: tetam.Devices) -> io.StringIO:
    out = io.StringIO()
    tetam.write_observations(track, devices, out)
    out.seek(0)
    return out


@needs_data
def test_short_replay_through_rtls_offline_gives_a_finite_error(tmp_path: Path) -> None:
    devices = tetam.read_devices(tetam.DEFAULT_DATA)
    track = tetam.read_track(tetam.DEFAULT_DATA, "straight_01", devices)
    head = track.rows[track.rows["t"] < track.rows["t"][0] + 15.0]
    short = tetam.Track("straight_01", head, track.beacon)
    result = replay.replay_track(short, devices, load_site(tetam.TETAM_SITE), tmp_path)
    assert (tmp_path / "straight_01.pos.csv").is_file()
    assert len(result.engine) > 10
    assert np.isfinite(np.median(result.engine))
    assert np.isfinite(result.centroid).all() and np.isfinite(result.lsq).all()
