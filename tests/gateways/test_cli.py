"""The technicians' commands: rtls-gateways and rtls (site check, simulate, demo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateways.cli import main as gateways_main
from rtls.service.broker import MosquittoBroker
from rtls.service.cli import main as rtls_main
from rtls.site import EXAMPLE_SITE
from tests.broker import MessageCollector


def test_run_fast_to_file_prints_rates_per_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truth = tmp_path / "m.jsonl", tmp_path / "t.jsonl"
    code = gateways_main(
        ["run", "--scenario", "abduction", "--fast", "--duration", "10", "--out", str(out),
         "--truth", str(truth)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    assert set(summary["formats"]) >= {"native", "espresense", "omg"}
    assert summary["formats"]["native"]["observations"] > 0
    lines = out.read_text().splitlines()
    assert len(lines) == sum(int(f["messages"]) for f in summary["formats"].values()) + 44
    assert any(json.loads(x)["type"] == "position" for x in truth.read_text().splitlines())
    assert "native" in printed


def test_bad_scenario_file_names_the_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[scenario]\nname = "x"\nduration_s = 10\n\n'
        '[[events]]\nat_s = 1\naction = "sos"\nwho = "NOBODY"\n',
        encoding="utf-8",
    )
    assert gateways_main(["run", "--scenario", str(bad), "--fast"]) == 2
    err = capsys.readouterr().err
    assert "events[0] (action 'sos' at 1 s)" in err
    assert "NOBODY" in err


def test_site_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rtls_main(["site", "check"]) == 0
    assert "is valid" in capsys.readouterr().out
    bad = tmp_path / "s.toml"
    bad.write_text(EXAMPLE_SITE.read_text().replace('floor = "L1"', 'floor = "LX"', 1), "utf-8")
    assert rtls_main(["site", "check", str(bad)]) == 2
    assert "floor 'LX' is not defined" in capsys.readouterr().err


def test_bad_broker_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateways_main(["run", "--broker", "nohost", "--duration", "1"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_simulate_against_broker_as_a_process(mosquitto: MosquittoBroker) -> None:
    with MessageCollector(mosquitto.port, ["rtls/v1/gw/+/obs", "home/+/LWT"]) as sub:
        proc = subprocess.run(
            [sys.executable, "-m", "rtls.service.cli", "simulate", "--broker",
             f"{mosquitto.host}:{mosquitto.port}", "--duration", "3", "--speed", "3"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sub.wait_for(lambda m: m.topic.endswith("/obs"), timeout=10)
        assert sub.wait_for(lambda m: m.topic.endswith("/LWT"), timeout=10)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["mqtt"]["published"] > 0
    assert summary["mqtt"]["dropped_disconnected"] == 0


def test_demo_starts_its_own_broker(mosquitto: MosquittoBroker) -> None:
    # `mosquitto` only guarantees the binary is there (or skips/fails per the CI rule)
    proc = subprocess.run(
        [sys.executable, "-m", "rtls.service.cli", "demo", "--duration", "20", "--speed", "5",
         "--console", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "private Mosquitto on 127.0.0.1:" in proc.stdout
    assert "mosquitto_sub -p" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["formats"]["native"]["messages"] > 0
    # the ward_incidents scenario cuts B07's strap at 15 s: the engine raises it, from signed
    # advertisements (every demo tag has a key: an unverified frame would be refused)
    assert "every tag signs its advertisements" in proc.stdout
    assert "ALARM raise" in proc.stdout and "tamper B07" in proc.stdout, proc.stdout
    assert "tag_spoofing" not in proc.stdout  # the genuine tags raise no spoofing alarm
    # the console's address and one demo user per role, with a password
    assert "console at http://127.0.0.1:" in proc.stdout
    for user in ("nurse.anna", "security.sam", "tech.tom", "admin.ada"):
        assert f"{user} " in proc.stdout and "password " in proc.stdout


def test_run_with_a_tag_key_signs_that_tags_advertisements(tmp_path: Path) -> None:
    from rtls.engine import Engine
    from rtls.site import load_site

    key = bytes(range(16))
    key_file = tmp_path / "b03.key"
    key_file.write_text(key.hex() + "\n")
    site = load_site()
    b03 = [t.id for t in site.tags].index("B03")
    counts = {}
    for signed in (True, False):
        out = tmp_path / f"m-{signed}.jsonl"
        extra = ["--tag-key", f"B03={key_file}"] if signed else []
        assert gateways_main(["run", "--fast", "--duration", "8", "--out", str(out), *extra]) == 0
        engine = Engine(site)
        engine.auth.set_key(b03, key)
        for line in out.read_text().splitlines():
            m = json.loads(line)
            engine.ingest_message(m["topic"], bytes.fromhex(m["payload_hex"]), m["t"] + 1e9)
        counts[signed] = (int(engine.auth.rejected[b03].sum()), engine.auth.counts["ok"])
    assert counts[True][0] == 0 and counts[True][1] > 0  # every signed B03 frame verifies
    assert counts[False][0] > 0  # unsigned: the keyed tag's frames are all refused


def test_a_bad_tag_key_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good = tmp_path / "short.key", tmp_path / "good.key"
    bad.write_text("abcd\n")
    good.write_text("00" * 16)
    assert gateways_main(["run", "--fast", "--duration", "1", "--tag-key", f"B03={bad}"]) != 0
    assert "32 hex digits" in capsys.readouterr().err
    assert gateways_main(["run", "--fast", "--duration", "1", "--tag-key", f"NOPE={good}"]) != 0
    assert "NOPE not in the site" in capsys.readouterr().err
