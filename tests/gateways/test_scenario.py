"""Scenario files: shipped scenarios load; every kind of mistake names the event."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateways.scenarios
from gateways.scenario import ACTIONS, load_scenario, scenario_from_mapping
from rtls.errors import ScenarioError
from rtls.site import load_site

SCENARIOS = sorted(Path(gateways.scenarios.__file__).parent.glob("*.toml"))
SITE = load_site()


def _scenario(*events: dict[str, object], actors: list[dict[str, object]] | None = None) -> dict:
    return {
        "scenario": {"name": "t", "duration_s": 100},
        "actors": actors or [],
        "events": list(events),
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.events
    assert [e.at_s for e in sc.events] == sorted(e.at_s for e in sc.events)
    assert sc.site.id == "example"


def test_events_are_sorted_stably_and_epoch_defaults() -> None:
    sc = scenario_from_mapping(
        _scenario(
            {"at_s": 20, "action": "sos", "who": "W01"},
            {"at_s": 5, "action": "tamper", "tag": "B01"},
            {"at_s": 20, "action": "cancel", "who": "W01"},
        ),
        site=SITE,
    )
    assert [(e.at_s, e.action) for e in sc.events] == [(5, "tamper"), (20, "sos"), (20, "cancel")]
    assert sc.epoch == 1767225600.0


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"at_s": 5, "action": "sos", "who": "W99"}, "who 'W99' is neither a tag"),
        ({"at_s": 5, "action": "sos", "who": "B01"}, "'B01' is a infant tag; 'sos' needs staff"),
        ({"at_s": 5, "action": "fall"}, "needs 'who'"),
        ({"at_s": 5, "action": "walk", "who": "M01", "to": "NOWHERE"}, "'to' 'NOWHERE' is neither"),
        ({"at_s": 5, "action": "walk", "who": "M01", "to": {"xy": [1, 2]}}, "needs its floor"),
        (
            {"at_s": 5, "action": "walk", "who": "M01", "to": {"zone": "R101", "door": "D-E1"}},
            "exactly one of",
        ),
        ({"at_s": 500, "action": "tamper", "tag": "B01"}, "after the end of the scenario"),
        ({"at_s": 5, "action": "jump", "who": "M01"}, "action"),
        ({"at_s": 5, "action": "tamper", "tag": "B01", "colour": 1}, "colour: unknown key"),
        ({"at_s": 5, "action": "gateway_power", "gateway": "G99", "value": False}, "G99"),
        ({"at_s": 5, "action": "carry", "who": "M01", "tag": "M02", "to": "E1"}, "only infants"),
        ({"at_s": 5, "action": "walk", "who": "REF1", "to": "E1"}, "reference tag 'REF1' is fixed"),
        ({"at_s": -1, "action": "tamper", "tag": "B01"}, "at_s"),
    ],
)
def test_bad_event_is_named(event: dict[str, object], message: str) -> None:
    data = _scenario({"at_s": 1, "action": "tamper", "tag": "B02"}, event)
    with pytest.raises(ScenarioError) as info:
        scenario_from_mapping(data, site=SITE)
    text = str(info.value)
    assert "events[1]" in text, text
    assert message in text, text


def test_bad_actor_is_named() -> None:
    data = _scenario(actors=[{"id": "B01", "start": {"zone": "L1-LOBBY"}}])
    with pytest.raises(ScenarioError, match=r"actors\[0\] \(id 'B01'\): id is also a tag id"):
        scenario_from_mapping(data, site=SITE)


def test_actor_cannot_do_badge_actions() -> None:
    data = _scenario(
        {"at_s": 3, "action": "sos", "who": "x"},
        actors=[{"id": "x", "start": {"zone": "L1-LOBBY"}}],
    )
    with pytest.raises(ScenarioError, match="actor without a tag"):
        scenario_from_mapping(data, site=SITE)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname = 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"not valid TOML.*line 1"):
        load_scenario(bad)
    other = tmp_path / "other.toml"
    other.write_text('[scenario]\nname = "x"\nduration_s = 10\nsite = "nope.toml"\n', "utf-8")
    with pytest.raises(ScenarioError, match=r"scenario.site: .*nope.toml"):
        load_scenario(other)


def test_every_action_has_its_requirements_listed() -> None:
    for action, (required, _kinds) in ACTIONS.items():
        data = _scenario({"at_s": 1, "action": action})
        with pytest.raises(ScenarioError) as info:
            scenario_from_mapping(data, site=SITE)
        for field in required:
            assert f"needs {field!r}" in str(info.value)
