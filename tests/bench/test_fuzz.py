"""Short run of the fuzzing bench (bench/fuzz.py): a few thousand seeded inputs through the
decoders, the body codec and the console's request handler (in-process and over real WebSocket
connections to the real server against a real Mosquitto).

Asserts that nothing unexpected happened (no exception but a typed one, no internal error reply,
no store refusal, no implausible decoded row), that every rejection is counted under a
documented reason, and that a normal login and command still work afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from bench import fuzz
from tests.conftest import require_mosquitto


def test_short_fuzz_run_has_no_unexpected_failure_and_counts_errors_by_reason(
    tmp_path: Path,
) -> None:
    require_mosquitto()
    out = tmp_path / "fuzz.json"
    fig = fuzz.main(["--inputs", "3000", "--seed", "20261123", "--json", str(out)])
    assert fig["failures"] == 0, fig["failure_inputs"][:3]
    assert fig["ok"] and fig["final_check"]["ok"], fig["final_check"]
    assert json.loads(out.read_text())["inputs"] == fig["inputs"]
    assert fig["inputs"] >= 3000
    targets = fig["targets"]
    assert set(targets) == set(fuzz.SHARES)
    for name, row in targets.items():
        assert row["inputs"] > 0, name
        assert sum(row["outcomes"].values()) == row["inputs"], name  # one outcome per input
    for name, known in (("decode", fuzz.DECODE_REASONS), ("decode_many", fuzz.DECODE_REASONS),
                        ("body", fuzz.BODY_CODEC_REASONS)):  # fmt: skip
        reasons = {k.removeprefix("error: ") for k in targets[name]["outcomes"] if k != "accepted"}
        assert len(reasons) >= 5 and reasons <= known, (name, reasons - known)
    console = targets["console"]["outcomes"]
    assert console.get("bad_request", 0) > 0 and console.get("accepted", 0) > 0
    assert any(k.startswith("reply: ") for k in console)
    assert "internal_error" not in console and "exception" not in console
    ws = targets["console_ws"]["outcomes"]
    assert ws.get("bad_request", 0) > 0 and "closed: 1011" not in ws
    assert fig["rss_kb"]["peak"] >= fig["rss_kb"]["end"] > 0
    assert fig["traced_bytes"]["peak"] > 0
