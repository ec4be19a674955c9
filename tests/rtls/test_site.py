"""The site model: the shipped example is complete, and bad files name the offending entry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rtls.errors import SiteError
from rtls.site import EXAMPLE_SITE, GatewayFormat, TagKind, ZoneKind, load_site

EXAMPLE_TEXT = EXAMPLE_SITE.read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(text, encoding="utf-8")
    return p


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


def test_example_site_has_what_the_issue_asks_for() -> None:
    site = load_site()
    assert [f.id for f in site.floors] == ["L1", "L2"]
    rooms_l1 = site.zones_of("L1", [ZoneKind.ROOM])
    assert len(rooms_l1) >= 12
    names = {z.name for z in site.zones_of("L1")}
    assert "Nurses' station" in names
    assert "Nursery" in names
    exits = site.zones_of("L1", [ZoneKind.EXIT])
    assert len(exits) >= 2
    exit_doors = [d for d in site.doors if d.floor == "L1" and d.kind == "exit"]
    readers = {r.door for r in site.door_readers}
    assert len(exit_doors) >= 2
    assert all(d.id in readers for d in exit_doors)
    assert site.zones_of("L1", [ZoneKind.STAIRS]) and site.zones_of("L1", [ZoneKind.ELEVATOR])
    assert 35 <= len(site.gateways) <= 45
    assert 50 <= len(site.tags) <= 70
    kinds = {t.kind for t in site.tags}
    assert {TagKind.INFANT, TagKind.MOTHER, TagKind.STAFF} <= kinds
    formats = {g.format for g in site.gateways}
    assert formats == set(GatewayFormat)
    assert site.floor("L2").name == "Psychiatric unit"
    assert any(
        t.kind is TagKind.STAFF for t in site.tags if t.home and site.zone(t.home).floor == "L2"
    )


def test_gateway_arrays_are_absolute_and_calibrated() -> None:
    site = load_site()
    ga = site.gateway_arrays
    assert ga.xyz.shape == (len(site.gateways), 3)
    l2 = ga.floor == site.floor_index["L2"]
    assert np.allclose(ga.xyz[l2, 2], 4.0 + 2.8)
    assert np.allclose(ga.xyz[~l2, 2], 2.8)
    calibrated = [g.id for g in site.gateways if g.rssi_at_1m is not None]
    assert calibrated
    i = ga.ids.index(calibrated[0])
    assert ga.rssi_at_1m[i] == site.gateway(calibrated[0]).rssi_at_1m
    assert np.all(ga.path_loss_exponent == site.radio.path_loss_exponent)


def test_walls_and_zone_lookup() -> None:
    site = load_site()
    segs, loss = site.walls_of("L1")
    assert segs.shape[1] == 4 and len(segs) == len(loss) > 20
    assert loss.max() >= 12.0 and loss.min() == site.radio.wall_loss_db
    zones = [z.id for z in site.zones_at("L1", (12.0, 4.0))]
    assert zones[0] == "R101"
    assert "L1-WARD" in zones


def test_tag_interval_defaults_by_kind() -> None:
    site = load_site()
    infant = next(t for t in site.tags if t.kind is TagKind.INFANT)
    assert site.tag_interval(infant) == site.rules.infant.heartbeat_s
    assert site.tags_by_serial[infant.serial] is infant


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        (
            'id = "G05"\nfloor = "L1"',
            'id = "G05"\nfloor = "L9"',
            r"line \d+: gateways\[4\] \(id 'G05'\): floor 'L9' is not defined",
        ),
        (
            'id = "G02"\n',
            'id = "G01"\n',
            r"gateways\[1\] \(id 'G01'\): duplicate id",
        ),
        (
            "position = [21.25, 4.5, 2.8]",
            "position = [21.25, 4.5]",
            r"gateways\[1\] \(id 'G02'\): position",
        ),
        (
            'id = "R105"\nname = "Room R105"\nfloor = "L1"\nkind = "room"\npolygon = [[28, 0]',
            'id = "R105"\nname = "Room R105"\nfloor = "L1"\nkind = "room"\npolygon = [[28, 50]',
            r"zones\[\d+\] \(id 'R105'\): polygon",
        ),
        (
            'id = "B03"\nkind = "infant"',
            'id = "B03"\nkind = "infantt"',
            r"tags\[2\] \(id 'B03'\): kind",
        ),
        (
            'id = "B03"\nkind = "infant"',
            'id = "B03"\ncolour = "blue"\nkind = "infant"',
            r"tags\[2\] \(id 'B03'\): colour: unknown key",
        ),
        (
            "serial = 1003\n",
            "serial = 1002\n",
            r"tags\[2\] \(id 'B03'\): serial 1002 is already used by tag 'B02'",
        ),
        (
            "pre_alarm_s = 20.0",
            "pre_alarm_s = 70.0",
            r"rules: staff\.pre_alarm_s",
        ),
        (
            "tilt_hold_s = 30.0",
            "tilt_hold_s = 80.0",
            r"exceeds DGUV's 90 s",
        ),
        (
            'door = "D-E1"',
            'door = "D-E9"',
            r"door_readers\[0\] \(id 'DR-E1'\): door 'D-E9' is not defined",
        ),
        (
            "rules = { exit_dwell_s = 10.0, loiter_s = 60.0 }",
            "rules = { exit_dwel_s = 10.0, loiter_s = 60.0 }",
            r"zones\[\d+\] \(id 'E1'\): unknown rule override 'exit_dwel_s'",
        ),
    ],
)
def test_bad_entries_are_named(tmp_path: Path, old: str, new: str, pattern: str) -> None:
    path = _write(tmp_path, _replace_once(EXAMPLE_TEXT, old, new))
    with pytest.raises(SiteError) as info:
        load_site(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(pattern, message), message


def test_line_number_points_at_the_entry(tmp_path: Path) -> None:
    text = _replace_once(EXAMPLE_TEXT, 'id = "G05"\nfloor = "L1"', 'id = "G05"\nfloor = "L9"')
    path = _write(tmp_path, text)
    with pytest.raises(SiteError) as info:
        load_site(path)
    lineno = int(re.search(r"line (\d+)", str(info.value)).group(1))  # type: ignore[union-attr]
    lines = text.splitlines()
    assert lines[lineno - 1].strip() == "[[gateways]]"
    assert lines[lineno].strip() == 'id = "G05"'


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE_TEXT.replace("[site]\n", "[site\n", 1))
    with pytest.raises(SiteError, match=r"not valid TOML.*line \d+"):
        load_site(path)


def test_missing_file_is_a_site_error(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="cannot read site file"):
        load_site(tmp_path / "nope.toml")


def test_gateway_outside_outline(tmp_path: Path) -> None:
    text = _replace_once(EXAMPLE_TEXT, "position = [21.25, 4.5, 2.8]", "position = [90, 4.5, 2.8]")
    with pytest.raises(SiteError, match=r"gateways\[1\] \(id 'G02'\): position .* outside"):
        load_site(_write(tmp_path, text))


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = _replace_once(EXAMPLE_TEXT, 'id = "G05"\nfloor = "L1"', 'id = "G05"\nfloor = "L9"')
    text = _replace_once(text, 'door = "D-E1"', 'door = "D-E9"')
    with pytest.raises(SiteError, match=r"2 problems") as info:
        load_site(_write(tmp_path, text))
    assert "G05" in str(info.value) and "DR-E1" in str(info.value)
