"""Real-data replay for the accuracy bench: TETAM tracks through ``rtls locate``, with baselines.

Each track is converted (:mod:`bench.tetam`), written as ``t,gateway,tag,rssi`` CSV and located
by :func:`rtls.offline.locate_file` -- the code behind ``rtls locate``, i.e. the live engine --
into a positions CSV, which is read back and compared with the ground truth interpolated at the
output times. Baselines in the same run, on the same calibration: a weighted centroid and an
unweighted least-squares fix per 1 s window of mean RSSI per receiver, compared with the truth
at the window centre. The calibration is either the site file's, or refitted on the tracks of
the other paths (leave-one-path-out: no calibration leakage).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench import tetam
from bench.baselines import least_squares_fix, weighted_centroid, window_means
from rtls.bounds import crlb_rmse
from rtls.engine import EngineParams
from rtls.errors import RtlsError
from rtls.offline import locate_file
from rtls.site import Site, load_site

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class TrackResult:
    """Errors (metres) on one track. ``engine`` (K,) per known output row of ``rtls locate``;
    ``outputs`` rows output, ``unknown`` the fraction of them that were unknown; ``centroid``
    and ``lsq`` (W,) per window; ``crb`` (W,) the Cramér–Rao bound at the window's true
    position (context)."""

    name: str
    engine: FloatArray
    outputs: int
    unknown: float
    centroid: FloatArray
    lsq: FloatArray
    crb: FloatArray
    n_path_loss: float


def read_positions(path: Path, tag: str) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Rows of one tag from an ``rtls locate`` output: t (K,), xy (K, 2) (NaN when unknown),
    known (K,)."""
    ts: list[float] = []
    xy: list[tuple[float, float]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["tag"] != tag:
                continue
            ts.append(float(row["t"]))
            known = row["x"] != ""
            xy.append((float(row["x"]), float(row["y"])) if known else (np.nan, np.nan))
    arr = np.array(xy, dtype=np.float64).reshape(-1, 2)
    return np.array(ts, dtype=np.float64), arr, np.isfinite(arr[:, 0])


def truth_at(track: tetam.Track, t: FloatArray) -> FloatArray:
    """True xy (K, 2) at times t (K,), linearly interpolated (held at the ends)."""
    tt, xy = tetam.truth(track)
    return np.column_stack([np.interp(t, tt, xy[:, 0]), np.interp(t, tt, xy[:, 1])])


def replay_track(
    track: tetam.Track,
    devices: tetam.Devices,
    site: Site,
    work_dir: Path,
    *,
    window_s: float = 1.0,
    params: EngineParams | None = None,
) -> TrackResult:
    """Replay one track through ``rtls locate`` on ``site`` and run the baselines."""
    work_dir.mkdir(parents=True, exist_ok=True)
    obs_path = work_dir / f"{track.name}.csv"
    pos_path = work_dir / f"{track.name}.pos.csv"
    with obs_path.open("w", encoding="utf-8", newline="") as fh:
        tetam.write_observations(track, devices, fh)
    with (work_dir / f"{track.name}.truth.csv").open("w", encoding="utf-8", newline="") as fh:
        tetam.write_truth(track, fh)
    with pos_path.open("w", encoding="utf-8", newline="") as fh:
        stats = locate_file(site, obs_path, fh, params)
    if stats.unknown_gateways or stats.unknown_tags:
        raise RtlsError(
            f"{track.name}: site and data disagree: unknown gateways "
            f"{dict(stats.unknown_gateways)}, tags {dict(stats.unknown_tags)}"
        )
    t, xy, known = read_positions(pos_path, track.beacon)
    err = np.hypot(*(xy[known] - truth_at(track, t[known])).T)

    # baselines on 1 s windows of mean RSSI, gateways in site order
    ga = site.gateway_arrays
    order = [ga.ids.index(r.alias) for r in devices.receivers]  # receiver -> gateway index
    gw = np.asarray(order, dtype=np.intp)[track.rows["receiver"]]
    centres, means = window_means(track.rows["t"], gw, track.rows["rssi"], len(ga.ids), window_s)
    true_w = truth_at(track, centres)
    height = (params or EngineParams()).locator.tag_height_m
    outline = np.asarray(site.floors[0].outline, dtype=np.float64)
    box = (*outline.min(axis=0).tolist(), *outline.max(axis=0).tolist())
    wc, _ = weighted_centroid(means, ga.xyz, ga.rssi_at_1m, ga.path_loss_exponent, ga.floor)
    lsq = np.array([
        least_squares_fix(m, ga.xyz, ga.rssi_at_1m, ga.path_loss_exponent, tag_z=height,
                          bounds=(box[0], box[1], box[2], box[3]))
        for m in means
    ]).reshape(-1, 2)  # fmt: skip
    sigma = site.radio.shadowing_db
    crb = crlb_rmse(
        true_w, ga.xyz, ga.path_loss_exponent, sigma, heard=np.isfinite(means), height=height
    )
    return TrackResult(
        track.name,
        err,
        len(known),
        float(1.0 - known.mean()) if len(known) else 1.0,
        np.hypot(*(wc - true_w).T),
        np.hypot(*(lsq - true_w).T),
        crb,
        float(np.median(ga.path_loss_exponent)),
    )


def evaluate(
    data_dir: Path,
    work_dir: Path,
    *,
    mode: str = "cross-validated",
    names: Sequence[str] | None = None,
    per_receiver: bool = True,
    params: EngineParams | None = None,
) -> list[TrackResult]:
    """Replay tracks (default: all) with one calibration ``mode``:

    - ``"cross-validated"``: for each track, fit on the tracks of the *other* paths
      (:data:`bench.tetam.TRACK_GROUPS`) and locate with that fit;
    - ``"site"``: the calibration of ``bench/sites/tetam.toml`` (fitted on every track).
    """
    devices = tetam.read_devices(data_dir)
    all_names = tetam.track_names(data_dir)
    tracks = {n: tetam.read_track(data_dir, n, devices) for n in all_names}
    shipped = load_site(tetam.TETAM_SITE)
    out = []
    for name in names if names is not None else all_names:
        track = tracks[name]
        if mode == "site":
            site = shipped
        elif mode == "cross-validated":
            train = [tr for tr in tracks.values() if tr.group != track.group]
            cal = tetam.fit_calibration(train, devices, per_receiver=per_receiver)
            site = tetam.calibrated_site(cal, devices)
        else:
            raise RtlsError(f"unknown calibration mode {mode!r}")
        out.append(replay_track(track, devices, site, work_dir / mode, params=params))
    return out
