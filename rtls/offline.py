"""Offline location: replay recorded observations through the live engine's own code.

``rtls locate --site SITE --input OBS.csv --output POS.csv`` reads rows ``t,gateway,tag,rssi``
(a header line is optional; ``tag`` is a tag id, a serial number or a BLE address), feeds them
to :class:`rtls.engine.Engine` in time order and ticks it every ``tick_s`` of recorded time.
Output rows: ``t,tag,x,y,z,floor,zone,uncertainty`` for every tag located at that tick; an
unknown position has empty x, y, z, floor and uncertainty and zone ``unknown``.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from rtls.directory import UNKNOWN, Directory
from rtls.engine import Engine, EngineParams
from rtls.errors import ConfigError, RtlsError
from rtls.observations import OBS_DTYPE, Observations
from rtls.site import Site

HEADER = ("t", "tag", "x", "y", "z", "floor", "zone", "uncertainty")


@dataclass
class ReadStats:
    """What reading the input found: rows kept, and rows skipped by reason."""

    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unknown_gateways: Counter[str] = field(default_factory=Counter)
    unknown_tags: Counter[str] = field(default_factory=Counter)


def read_observations(
    lines: Iterable[str], site: Site, directory: Directory, stats: ReadStats
) -> Observations:
    """Parse ``t,gateway,tag,rssi`` rows into observations sorted by time.

    A malformed row raises :class:`RtlsError` naming its line; unknown gateways and tags are
    counted in ``stats`` and skipped (they are not located)."""
    d = directory
    tag_ids = {t.id: i for i, t in enumerate(site.tags)}
    rows: list[tuple[float, int, int, float]] = []
    for lineno, row in enumerate(csv.reader(lines), start=1):
        if not row or (row[0].startswith("#")):
            continue
        if lineno == 1 and row[0].strip().lower() == "t":
            continue  # header
        if len(row) != 4:
            raise RtlsError(f"line {lineno}: expected 4 fields t,gateway,tag,rssi, got {len(row)}")
        try:
            t, rssi = float(row[0]), float(row[3])
        except ValueError:
            raise RtlsError(f"line {lineno}: t and rssi must be numbers: {row!r}") from None
        if not (math.isfinite(t) and math.isfinite(rssi)) or not -127.0 <= rssi <= 20.0:
            raise RtlsError(f"line {lineno}: t must be finite and rssi in -127..20 dBm: {row!r}")
        gw_name, tag_name = row[1].strip(), row[2].strip()
        gw = d.gateway(gw_name)
        if gw == UNKNOWN:
            stats.unknown_gateways[gw_name] += 1
            continue
        tag = _tag_index(tag_name, tag_ids, d)
        if tag == UNKNOWN:
            stats.unknown_tags[tag_name] += 1
            continue
        rows.append((t, gw, tag, rssi))
    stats.rows = len(rows)
    obs = np.array(rows, dtype=OBS_DTYPE) if rows else np.zeros(0, dtype=OBS_DTYPE)
    return obs[np.argsort(obs["t"], kind="stable")]


def _tag_index(name: str, tag_ids: dict[str, int], d: Directory) -> int:
    if name in tag_ids:
        return tag_ids[name]
    if name.isdigit():
        return d.tag_for_serial(int(name))
    try:
        return d.tag_for_address(name)
    except (RtlsError, ValueError):
        return UNKNOWN


def locate_rows(engine: Engine, obs: Observations) -> Iterator[tuple[object, ...]]:
    """Feed ``obs`` (sorted by t) tick by tick; yield output rows (see module docstring)."""
    if len(obs) == 0:
        return
    site: Site = engine.site
    tick = engine.params.tick_s
    height = engine.params.locator.tag_height_m
    elevation = np.array([f.elevation for f in site.floors])
    t0 = float(obs["t"][0])
    t_end = float(obs["t"][-1])
    k, start = 1, 0
    while True:
        now = t0 + k * tick
        stop = int(np.searchsorted(obs["t"], now, side="right"))
        if stop > start:
            engine.ingest_observations(obs[start:stop])
            start = stop
        result = engine.tick(now)
        est = result.estimate
        unc = est.uncertainty
        for i in result.located.tolist():
            tag = site.tags[i].id
            if est.known[i]:
                fl = int(est.floor[i])
                zone = site.zones[int(result.zone[i])].id if result.zone[i] >= 0 else ""
                yield (
                    f"{now:.3f}", tag, f"{est.xy[i, 0]:.3f}", f"{est.xy[i, 1]:.3f}",
                    f"{elevation[fl] + height:.2f}", site.floors[fl].id, zone, f"{unc[i]:.2f}",
                )  # fmt: skip
            else:
                yield (f"{now:.3f}", tag, "", "", "", "", "unknown", "")
        if now >= t_end:
            break
        k += 1


def read_file(site: Site, input_path: Path, directory: Directory, stats: ReadStats) -> Observations:
    """:func:`read_observations` of a file; errors name the file (and line)."""
    try:
        with input_path.open(encoding="utf-8", newline="") as fh:
            return read_observations(fh, site, directory, stats)
    except OSError as exc:
        raise ConfigError(f"{input_path}: cannot read: {exc.strerror or exc}") from exc
    except RtlsError as exc:
        raise RtlsError(f"{input_path}: {exc}") from exc


def locate_file(
    site: Site, input_path: Path, output: IO[str], params: EngineParams | None = None
) -> ReadStats:
    """The ``rtls locate`` command's work; returns what reading found."""
    engine = Engine(site, params)
    stats = ReadStats()
    obs = read_file(site, input_path, engine.directory, stats)
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(locate_rows(engine, obs))
    return stats
