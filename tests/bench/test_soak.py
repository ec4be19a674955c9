"""Smoke run of the soak bench (bench/soak.py): a real Mosquitto, the engine as a child process
with alarms, store and console, the load generator, critical events every second measured at a
security user's WebSocket console client that acknowledges and resolves them, 20 s.

Checks that the figures are produced and sane, not that the targets are met (an hour is the
bench's business): memory sampled, windows filled, probes answered, nothing lost."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench import soak
from tests.conftest import require_mosquitto


def test_short_soak_produces_sane_figures(tmp_path: Path) -> None:
    require_mosquitto()
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    fig = soak.main(["--duration", "20", "--warmup", "6", "--window", "7", "--sample", "1",
                     "--buildings", "1", "--tags", "200", "--probe-every", "1",
                     "--workdir", str(tmp_path / "work"), "--json", str(out),
                     "--png", str(png)])  # fmt: skip
    assert json.loads(out.read_text())["probes"] == fig["probes"]
    assert png.stat().st_size > 0
    assert 19.0 <= fig["duration_s"] < 40.0
    assert fig["gateways"] == 40 and fig["tags"] > 200 and fig["offered_obs_per_s"] > 0
    assert len(fig["samples"]) >= 16
    assert all(s["rss_mb"] > 0 and s["peak_mb"] >= s["rss_mb"] for s in fig["samples"])
    assert fig["rss_warm_mb"] > 0 and math.isfinite(fig["rss_growth"])
    assert len(fig["windows"]) == 3
    assert fig["probes"] >= 16 and fig["missing"] <= fig["probes"] // 2
    for key in ("latency_first", "latency_last"):
        lat = fig[key]
        assert lat["n"] > 0 and 0.0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"], lat
    assert fig["ticks"] > 0 and fig["lost"] == 0 and fig["messages_received"] > 0
    handled = fig["console"]
    assert handled["acked"] > 0 and handled["resolved"] > 0 and not handled["error"]
    assert {"tamper", "sos", "exit"} <= set(handled["raised_types"])
    assert [r["figure"] for r in fig["table"]][:3] == [
        "site",
        "offered load",
        "resident memory, end of warm-up -> end",
    ]
