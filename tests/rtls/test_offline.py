"""Offline location and calibration commands, on recorded simulations."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from gateways.recording import record, write_csv
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.service.cli import main
from rtls.site import load_site

SITE = load_site()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    sc = scenario_from_mapping(
        {"scenario": {"name": "static", "duration_s": 40, "ambient": False, "seed": 9}}, site=SITE
    )
    world = World(sc)
    obs = record(world, 40.0)
    path = tmp_path_factory.mktemp("rec") / "obs.csv"
    write_csv(obs, SITE, path)
    return path, world


def test_locate_writes_positions_close_to_truth(
    recorded: tuple[Path, World], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, world = recorded
    out = tmp_path / "pos.csv"
    assert main(["locate", "--input", str(path), "--output", str(out)]) == 0
    assert "observations located" in capsys.readouterr().err
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert list(rows[0]) == ["t", "tag", "x", "y", "z", "floor", "zone", "uncertainty"]
    truth = world.motion.positions(world.t)
    index = {t.id: i for i, t in enumerate(SITE.tags)}
    late = [r for r in rows if float(r["t"]) > world.epoch + 20]
    known = [r for r in late if r["zone"] != "unknown"]
    assert len(known) > 0.5 * len(late)
    err = [
        np.hypot(
            float(r["x"]) - truth.xyz[index[r["tag"]], 0],
            float(r["y"]) - truth.xyz[index[r["tag"]], 1],
        )
        for r in known
    ]
    assert np.median(err) < 3.0
    floors = {f.id: i for i, f in enumerate(SITE.floors)}
    assert all(floors[r["floor"]] == truth.floor[index[r["tag"]]] for r in known)
    unknown = [r for r in rows if r["zone"] == "unknown"]
    assert all(r["x"] == "" and r["floor"] == "" for r in unknown)


def test_locate_is_deterministic(recorded: tuple[Path, World], tmp_path: Path) -> None:
    path, _ = recorded
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["locate", "--input", str(path), "--output", str(a)]) == 0
    assert main(["locate", "--input", str(path), "--output", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_bad_rows_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,gateway,tag,rssi\n1.0,G01,B01,-70\n2.0,G01,B01,loud\n", encoding="utf-8")
    assert main(["locate", "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 2
    assert "line 3" in capsys.readouterr().err


def test_unknown_gateways_and_tags_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "obs.csv"
    f.write_text("1.0,G01,B01,-70\n1.1,GX,B01,-70\n1.2,G01,NOPE,-70\n1.3,G02,1001,-71\n", "utf-8")
    assert main(["locate", "--input", str(f), "--output", "-"]) == 0
    captured = capsys.readouterr()
    assert "2 observations located, 2 skipped" in captured.err
    assert "unknown gateway 'GX'" in captured.err
    assert "unknown tag 'NOPE'" in captured.err
    assert captured.out.startswith("t,tag,x,y,z,floor,zone,uncertainty")


def test_calibrate_writes_a_valid_site(
    recorded: tuple[Path, World], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = recorded
    site_copy = tmp_path / "site.toml"
    site_copy.write_text(SITE.source.read_text(encoding="utf-8"), encoding="utf-8")  # type: ignore[union-attr]
    out = tmp_path / "calibrated.toml"
    assert (
        main(["calibrate", "--site", str(site_copy), "--input", str(path), "--output", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "G01" in printed
    assert "wrote" in printed
    new = load_site(out)
    assert "# calibrated" in out.read_text()
    assert len(new.gateways) == len(SITE.gateways)
    # a dry run writes nothing
    assert main(["calibrate", "--site", str(site_copy), "--input", str(path)]) == 0
    assert "dry run" in capsys.readouterr().out


def test_csv_round_trip_of_recording(recorded: tuple[Path, World]) -> None:
    path, _ = recorded
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["t", "gateway", "tag", "rssi"]
    assert len(rows) > 1000
    gw = {g.id for g in SITE.gateways}
    assert all(r[1] in gw for r in rows[1:50])
