"""TETAM real data: convert the Daniş et al. track files to rtls observations and ground truth.

The dataset (``../shared/data/danis-tetam``, CC0; Daniş, Naskali, Cemgil, Ersoy, Pervasive and
Mobile Computing 81, 2022) holds walks of one BLE beacon through a 20.66 m × 17.64 m office
heard by 12 fixed receivers, with camera ground truth. A track line is
``unix_ts,receiver_mac,beacon_mac,rssi,x,y,z,<3x3 orientation>``; receivers and beacons are
named in ``cnf/tetam.dev``. This module turns a track into

- observations ``t,gateway,tag,rssi`` for ``rtls locate`` (gateway = the receiver's alias,
  e.g. ``sensor10``, tag = the beacon's alias ``beacon1``, both defined in
  ``bench/sites/tetam.toml``), and
- ground truth ``t,x,y`` (the beacon's true position, metres, one row per line);

and fits the log-distance calibration (:func:`fit_calibration`). Readings of 0 dBm or more
are impossible for these receivers (two lines say +42 and +29 dBm) and are dropped and
counted, as are lines of unknown receivers or beacons.

    python -m bench.tetam convert [--data DIR] [--out bench/out/tetam]
    python -m bench.tetam fit [--data DIR]      # the calibration in bench/sites/tetam.toml
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from rtls.errors import RtlsError
from rtls.site import Site

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "danis-tetam"
DEFAULT_OUT = REPO / "bench" / "out" / "tetam"
TETAM_SITE = REPO / "bench" / "sites" / "tetam.toml"
TRACK_SUFFIX = "_all_sensors.mbd"

# Tracks that repeat the same path share a group; calibration cross-validation leaves out a
# whole group, so the calibration never saw the path it is evaluated on.
TRACK_GROUPS: dict[str, str] = {
    "straight_01": "straight-y8.5",
    "straight_04": "straight-y8.5",
    "straight_05": "straight-y8.5",
    "straight_02": "straight-y4.3",
    "straight_03": "straight-x11.6",
    "rectangular_with_rotation": "rectangle",
    "rectangular_without_rotation": "rectangle",
    "zigzagging_with_rotation": "zigzag",
    "zigzagging_without_rotation": "zigzag",
}

TRACK_DTYPE = np.dtype(
    [("t", "<f8"), ("receiver", "<i4"), ("rssi", "<f4"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8")]
)


class TetamError(RtlsError):
    """A dataset file is missing or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Receiver:
    mac: str  # 12 lower-case hex digits, as in the track files
    alias: str  # e.g. "sensor10": the gateway id in bench/sites/tetam.toml
    xyz: tuple[float, float, float]  # metres; z is the absolute height (floor at 0)


@dataclass(frozen=True)
class Devices:
    """The receivers and beacons of ``cnf/tetam.dev``, in file order."""

    receivers: tuple[Receiver, ...]
    beacons: dict[str, str]  # mac -> alias

    @property
    def xyz(self) -> NDArray[np.float64]:
        """Receiver positions (R, 3)."""
        return np.array([r.xyz for r in self.receivers], dtype=np.float64).reshape(-1, 3)

    def index(self) -> dict[str, int]:
        """Receiver mac -> index."""
        return {r.mac: i for i, r in enumerate(self.receivers)}


def parse_devices(text: str, name: str = "tetam.dev") -> Devices:
    """Parse a devices file: ``Dongles:{mac: [[x, y, z], colour, alias], ...}`` and
    ``Beacons:{mac: [[], colour, alias]}`` lines (JSON after the first colon)."""
    tables: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise TetamError(
                f"{name}: line {lineno}: expected 'Dongles:{{...}}' or 'Beacons:{{...}}'"
            )
        try:
            tables[key.strip()] = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise TetamError(f"{name}: line {lineno}: not a JSON object: {exc}") from exc
    if "Dongles" not in tables or "Beacons" not in tables:
        raise TetamError(f"{name}: needs a Dongles line and a Beacons line")
    receivers = []
    for mac, entry in tables["Dongles"].items():
        try:
            x, y, z = (float(v) for v in entry[0])
            alias = str(entry[2])
        except (TypeError, ValueError, IndexError) as exc:
            raise TetamError(
                f"{name}: receiver {mac}: expected [[x, y, z], colour, alias]"
            ) from exc
        receivers.append(Receiver(mac.lower(), alias, (x, y, z)))
    beacons = {mac.lower(): str(entry[2]) for mac, entry in tables["Beacons"].items()}
    return Devices(tuple(receivers), beacons)


def read_devices(data_dir: Path) -> Devices:
    path = data_dir / "cnf" / "tetam.dev"
    try:
        return parse_devices(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise TetamError(f"{path}: cannot read: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class Track:
    """One walk: ``rows`` (TRACK_DTYPE, sorted by t), the beacon alias, dropped lines by reason."""

    name: str
    rows: NDArray[np.void]
    beacon: str
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def group(self) -> str:
        return TRACK_GROUPS.get(self.name, self.name)


def parse_track(
    lines: Iterable[str], devices: Devices, name: str, source: str | None = None
) -> Track:
    """Parse the lines of track ``name`` (see the module docstring). Malformed lines raise
    TetamError naming ``source`` (default ``name``) and the line; impossible RSSI (>= 0 dBm),
    unknown receivers and unknown beacons are dropped and counted in ``Track.dropped``."""
    where = source or name
    index = devices.index()
    rows: list[tuple[float, int, float, float, float, float]] = []
    beacons: set[str] = set()
    dropped: Counter[str] = Counter()
    for lineno, line in enumerate(lines, start=1):
        parts = line.strip().split(",")
        if parts == [""]:
            continue
        if len(parts) < 7:
            raise TetamError(
                f"{where}: line {lineno}: expected at least 7 fields, got {len(parts)}"
            )
        try:
            t, rssi, x, y, z = (float(parts[i]) for i in (0, 3, 4, 5, 6))
        except ValueError:
            raise TetamError(f"{where}: line {lineno}: t, rssi, x, y, z must be numbers") from None
        if not all(math.isfinite(v) for v in (t, rssi, x, y, z)):
            raise TetamError(f"{where}: line {lineno}: non-finite number")
        receiver = index.get(parts[1].strip().lower())
        beacon = devices.beacons.get(parts[2].strip().lower())
        if receiver is None:
            dropped["unknown_receiver"] += 1
        elif beacon is None:
            dropped["unknown_beacon"] += 1
        elif rssi >= 0.0:
            dropped["positive_rssi"] += 1
        else:
            rows.append((t, receiver, rssi, x, y, z))
            beacons.add(beacon)
    if len(beacons) > 1:
        raise TetamError(f"{where}: several beacons {sorted(beacons)}; one track, one beacon")
    arr = np.array(rows, dtype=TRACK_DTYPE) if rows else np.zeros(0, dtype=TRACK_DTYPE)
    arr = arr[np.argsort(arr["t"], kind="stable")]
    return Track(name, arr, beacons.pop() if beacons else "", dropped)


def track_names(data_dir: Path) -> list[str]:
    """Names of the track files in ``data_dir/trk`` (without the ``_all_sensors.mbd`` end)."""
    names = sorted(
        p.name[: -len(TRACK_SUFFIX)] for p in (data_dir / "trk").glob("*" + TRACK_SUFFIX)
    )
    if not names:
        raise TetamError(f"{data_dir / 'trk'}: no *{TRACK_SUFFIX} track files")
    return names


def read_track(data_dir: Path, name: str, devices: Devices) -> Track:
    path = data_dir / "trk" / (name + TRACK_SUFFIX)
    try:
        with path.open(encoding="utf-8") as fh:
            return parse_track(fh, devices, name, str(path))
    except OSError as exc:
        raise TetamError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def write_observations(track: Track, devices: Devices, out: IO[str]) -> None:
    """Write ``t,gateway,tag,rssi`` rows (with a header) for ``rtls locate``."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("t", "gateway", "tag", "rssi"))
    alias = [r.alias for r in devices.receivers]
    for t, g, rssi in zip(
        track.rows["t"].tolist(),
        track.rows["receiver"].tolist(),
        track.rows["rssi"].tolist(),
        strict=True,
    ):
        w.writerow((f"{t:.4f}", alias[g], track.beacon, f"{rssi:g}"))


def truth(track: Track) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Ground truth: times (K,) strictly increasing and positions (K, 2) (first row per time)."""
    t, first = np.unique(track.rows["t"], return_index=True)
    xy = np.column_stack([track.rows["x"][first], track.rows["y"][first]])
    return t.astype(np.float64), xy.astype(np.float64)


def write_truth(track: Track, out: IO[str]) -> None:
    """Write ``t,x,y`` rows (with a header)."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("t", "x", "y"))
    t, xy = truth(track)
    for ti, (x, y) in zip(t.tolist(), xy.tolist(), strict=True):
        w.writerow((f"{ti:.4f}", f"{x:.3f}", f"{y:.3f}"))


@dataclass(frozen=True)
class Converted:
    name: str
    observations: Path
    truth: Path
    rows: int
    dropped: Counter[str]


def convert(data_dir: Path, out_dir: Path, names: Sequence[str] | None = None) -> list[Converted]:
    """Convert tracks (default: all) to ``NAME.csv`` and ``NAME.truth.csv`` in ``out_dir``."""
    devices = read_devices(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names if names is not None else track_names(data_dir):
        track = read_track(data_dir, name, devices)
        obs_path, truth_path = out_dir / f"{name}.csv", out_dir / f"{name}.truth.csv"
        with obs_path.open("w", encoding="utf-8", newline="") as fh:
            write_observations(track, devices, fh)
        with truth_path.open("w", encoding="utf-8", newline="") as fh:
            write_truth(track, fh)
        done.append(Converted(name, obs_path, truth_path, len(track.rows), track.dropped))
    return done


# -- calibration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Log-distance calibration: ``rssi_at_1m`` (R,) per receiver, one ``path_loss_exponent``,
    ``residual_db`` the RMS residual of the fit, ``windows`` the (window, receiver) means used."""

    rssi_at_1m: NDArray[np.float64]
    path_loss_exponent: float
    residual_db: float
    windows: int


def fit_calibration(
    tracks: Sequence[Track], devices: Devices, *, window_s: float = 1.0, per_receiver: bool = True
) -> Calibration:
    """Fit ``RSSI = P0_r - 10 n log10(d)`` by ordinary least squares.

    Data: per track, window of ``window_s`` and receiver, the mean RSSI (dB) against the mean
    of log10 of the true 3-D distance beacon -> receiver (averaging over a window removes most
    of the fast fading, as the engine's RSSI window does). ``per_receiver``: one P0 per
    receiver (receiver gains differ) and a common n; else one P0 and one n for all.
    """
    r = len(devices.receivers)
    xyz = devices.xyz
    xs, ys, gs = [], [], []
    for track in tracks:
        rows = track.rows
        if len(rows) == 0:
            continue
        g = rows["receiver"].astype(np.intp)
        pos = np.column_stack([rows["x"], rows["y"], rows["z"]])
        logd = np.log10(np.maximum(np.linalg.norm(pos - xyz[g], axis=1), 0.1))
        k = np.floor((rows["t"] - rows["t"][0]) / window_s).astype(np.intp)
        cells, inv = np.unique(k * r + g, return_inverse=True)
        count = np.bincount(inv)
        ys.append(np.bincount(inv, rows["rssi"].astype(np.float64)) / count)
        xs.append(np.bincount(inv, logd) / count)
        gs.append(cells % r)
    if not xs:
        raise TetamError("no observations to fit a calibration on")
    x, y, g = np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)
    cols = np.eye(r)[g] if per_receiver else np.ones((len(x), 1))
    design = np.column_stack([cols, -10.0 * x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    p0 = coef[:-1] if per_receiver else np.full(r, coef[0])
    return Calibration(
        np.asarray(p0, dtype=np.float64),
        float(coef[-1]),
        float(np.sqrt(np.mean(residual**2))),
        len(x),
    )


def site_mapping(path: Path = TETAM_SITE) -> dict[str, Any]:
    """The TETAM site file as a mapping (to modify before :meth:`Site.from_mapping`)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TetamError(f"{path}: cannot read the TETAM site: {exc}") from exc


def calibrated_site(calibration: Calibration, devices: Devices, path: Path = TETAM_SITE) -> Site:
    """The TETAM site with its gateways' calibration replaced by ``calibration``."""
    data = site_mapping(path)
    by_alias = {r.alias: i for i, r in enumerate(devices.receivers)}
    for gw in data.get("gateways", []):
        i = by_alias.get(gw["id"])
        if i is None:
            raise TetamError(f"{path}: gateway {gw['id']!r} is not a receiver of the dataset")
        gw["rssi_at_1m"] = round(float(calibration.rssi_at_1m[i]), 2)
        gw["path_loss_exponent"] = round(calibration.path_loss_exponent, 3)
    data.setdefault("radio", {})["path_loss_exponent"] = round(calibration.path_loss_exponent, 3)
    return Site.from_mapping(data, source=path)


# -- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tetam", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("convert", "fit"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the danis-tetam directory")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (convert)")
    args = p.parse_args(argv)
    try:
        if args.command == "convert":
            for c in convert(args.data, args.out):
                note = ", ".join(f"{k} {v}" for k, v in sorted(c.dropped.items())) or "none"
                print(f"{c.name}: {c.rows} rows -> {c.observations} (+ truth); dropped: {note}")
            return 0
        devices = read_devices(args.data)
        tracks = [read_track(args.data, n, devices) for n in track_names(args.data)]
        cal = fit_calibration(tracks, devices)
        print(f"# fit on all {len(tracks)} tracks, {cal.windows} (1 s window, receiver) means")
        print(f"# path_loss_exponent = {cal.path_loss_exponent:.3f}, "
              f"residual {cal.residual_db:.2f} dB RMS")  # fmt: skip
        for rec, p0 in zip(devices.receivers, cal.rssi_at_1m.tolist(), strict=True):
            print(f"{rec.alias}: rssi_at_1m = {p0:.2f}")
        return 0
    except RtlsError as exc:
        print(f"bench.tetam: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
