"""The console load bench (bench/console_load.py) in its ``--quick`` mode, end to end: a real
Mosquitto, the engine with its console as a separate process, the load generator's process
and real WebSocket clients. Checks that the figures are sane, never how fast they are."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import console_load
from tests import conftest


def test_site_file_round_trips_with_infant_tags_in_the_south_rooms(tmp_path: Path) -> None:
    site = console_load.write_site(tmp_path / "site.toml", 40, seed=3)
    assert {t.kind.value for t in site.tags} == {"infant"}
    assert {g.format.value for g in site.gateways} == {"native"}
    assert not site.door_readers
    homes = [site.zone(t.home) for t in site.tags if t.home is not None]
    assert len(homes) == 40
    assert all(max(p[1] for p in z.polygon) <= 9.0 for z in homes)  # the band the tags roam
    assert {z.floor for z in homes} == {f.id for f in site.floors}
    assert all(1.0 <= site.tag_interval(t) <= 2.0 for t in site.tags)


@pytest.mark.broker
def test_quick_run_delivers_every_alarm_to_every_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conftest.require_mosquitto()
    figures = console_load.main(["--quick", "--keep", str(tmp_path)])
    assert figures is not None
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == figures  # the JSON line closes the output
    assert figures["clients"] == 3 and figures["alarms"] == 5
    assert figures["pairs"] == 15
    assert figures["missing"] == 0, "every client gets every tamper alarm"
    p50, p99, worst = (figures[f"delivery_{k}_ms"] for k in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= worst and math.isfinite(worst)
    for key in ("obs_per_s", "obs_per_s_baseline", "cpu_per_1000_obs",
                "cpu_per_1000_obs_baseline"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["cpu_ratio"] == pytest.approx(
        figures["cpu_per_1000_obs"] / figures["cpu_per_1000_obs_baseline"], rel=1e-2
    )
    assert figures["client_messages"] > 3 * 3  # reply, snapshot, then positions and alarms
    assert figures["repeats"] == 1 and figures["cpu_ratios"] == [figures["cpu_ratio"]]
    assert (tmp_path / "clients-0" / "engine.log").is_file()
