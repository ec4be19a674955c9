"""Smoke test of the end-to-end bench (bench/e2e.py --quick): a real Mosquitto, the engine as a
child process with its console, a WebSocket console client, a small site and a small load.

Checks that the figures are sane, not that targets are met (speed belongs to the bench): no
message lost by the engine, every critical event and zone breach received by the console."""

from __future__ import annotations

from pathlib import Path

from bench import e2e
from tests.conftest import require_mosquitto


def test_quick_run_loses_nothing_and_delivers_every_alarm(tmp_path: Path) -> None:
    require_mosquitto()
    fig = e2e.main(["--quick", "--workdir", str(tmp_path / "work"),
                    "--json", str(tmp_path / "e2e.json"), "--png", str(tmp_path / "e2e.png")])
    tp = fig["throughput"]
    assert tp["lost"] == 0 and tp["bare_lost"] == 0
    assert all(r["engine_processed"] == r["observations"] > 0 for r in tp["runs"])
    assert tp["engine_rate"] > 0 and tp["bare_rate"] > 0
    assert not tp["decode_errors"]
    levels = fig["latency"]["levels"]
    assert len(levels) == 2
    for row in levels.values():
        for kind in ("tamper", "sos", "door_exit", "zone_breach"):
            assert row[kind]["missing"] == 0, (kind, row[kind])
            assert row[kind]["n"] == 3
            assert 0.0 < row[kind]["p50_ms"] <= row[kind]["p99_ms"] <= row[kind]["max_ms"]
    for row in fig["scale"]["rows"]:
        assert "error" not in row
        assert row["us_per_observation"] > 0 and row["rss_mb"] > 0
    assert (tmp_path / "e2e.json").stat().st_size > 0
    assert (tmp_path / "e2e.png").stat().st_size > 0
    assert fig["table"]
