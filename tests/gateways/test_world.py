"""The simulated ward end to end, in accelerated time: determinism, truth, devices, faults."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from gateways.cli import shipped_scenarios
from gateways.runner import FileSink, run
from gateways.scenario import Scenario, load_scenario
from gateways.truth import Truth
from gateways.world import World
from rtls import geometry
from rtls.advertisement import Status, Status2, decode_bodies, tag_serial
from rtls.batch import decode_batch

SCENARIOS = shipped_scenarios()


def _play(scenario: Scenario, tmp_path: Path, name: str, duration: float) -> tuple[Path, Truth]:
    out = tmp_path / f"{name}.jsonl"
    truth = Truth()
    run(World(scenario, truth=truth), FileSink(out), duration)
    return out, truth


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _reseeded(sc: Scenario, seed: int) -> Scenario:
    return Scenario(sc.info.model_copy(update={"seed": seed}), sc.actors, sc.events, sc.site, None)


@pytest.fixture(scope="module")
def abduction(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    sc = load_scenario(SCENARIOS["abduction"])
    fine = sc.info.model_copy(update={"truth_interval_s": 0.2})  # chords follow the paths
    sc = Scenario(fine, sc.actors, sc.events, sc.site, sc.source)
    return _play(sc, tmp_path_factory.mktemp("abduction"), "a", 75.0)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS["abduction"])
    a, _ = _play(sc, tmp_path, "a", 40.0)
    b, _ = _play(sc, tmp_path, "b", 40.0)
    c, _ = _play(_reseeded(sc, 99), tmp_path, "c", 40.0)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_all_formats_and_door_reads_are_published(abduction: tuple[Path, Truth]) -> None:
    lines = _lines(abduction[0])
    topics = [str(m["topic"]) for m in lines if "topic" in m]
    assert any(t.startswith("rtls/v1/gw/") and t.endswith("/obs") for t in topics)
    assert any(t.startswith("espresense/devices/") for t in topics)
    assert any("/BTtoMQTT/" in t for t in topics)
    assert any(t.startswith("rtls/v1/door/DR-E1/read") for t in topics)
    assert any(t.endswith("/health") for t in topics)
    # every native batch decodes, and carries valid bodies of site tags
    sc = load_scenario(SCENARIOS["abduction"])
    serials = {t.serial for t in sc.site.tags}
    n = 0
    for m in lines:
        if str(m.get("topic", "")).endswith("/obs"):
            batch = decode_batch(bytes.fromhex(str(m["payload_hex"])))
            bodies, valid = decode_bodies(batch.records["body"])
            assert valid.all()
            assert set(bodies["serial"].tolist()) <= serials
            assert (batch.records["rssi"] >= -95).all()
            n += len(batch.records)
    assert n > 1000


def test_abduction_truth_baby_leaves_through_exit(abduction: tuple[Path, Truth]) -> None:
    _, truth = abduction
    b03 = [r for r in truth.records if r["type"] == "position" and r["id"] == "B03"]
    zones_over_time = [set(r["zones"]) for r in b03]
    assert "R103" in zones_over_time[0]
    assert any("E1" in z for z in zones_over_time)
    assert "L1-EL1" in zones_over_time[-1]
    reads = [r for r in truth.records if r.get("event") == "door_read" and r["tag"] == "B03"]
    assert reads
    assert reads[0]["reader"] == "DR-E1"
    assert 30.0 < reads[0]["t"] < 75.0
    # the stranger has no tag: never read, but truth still tracks them
    assert not [
        r for r in truth.records if r.get("event") == "door_read" and r["tag"] == "stranger"
    ]
    assert any(r["type"] == "position" and r["id"] == "stranger" for r in truth.records)


def test_nobody_walks_through_walls(abduction: tuple[Path, Truth]) -> None:
    _, truth = abduction
    sc = load_scenario(SCENARIOS["abduction"])
    walls = {f.id: sc.site.walls_of(f.id)[0] for f in sc.site.floors}
    tracks: dict[str, list[dict[str, object]]] = {}
    for r in truth.records:
        if r["type"] == "position":
            tracks.setdefault(str(r["id"]), []).append(r)
    moved = 0
    for recs in tracks.values():
        for p, q in itertools.pairwise(recs):
            if p["floor"] != q["floor"] or (p["x"], p["y"]) == (q["x"], q["y"]):
                continue
            moved += 1
            a = np.array([[p["x"], p["y"]]], dtype=float)
            b = np.array([[q["x"], q["y"]]], dtype=float)
            crossings = geometry.segment_crossings(a, b, walls[str(p["floor"])])
            assert crossings[0] == 0, (p, q)
    assert moved > 100


def test_tamper_is_sent_at_once_in_a_burst(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS["ward_incidents"])
    out, _ = _play(sc, tmp_path, "w", 18.0)
    b07 = next(t for t in sc.site.tags if t.id == "B07").serial
    tamper_t: list[float] = []
    repeats = 0
    for m in _lines(out):
        if not str(m.get("topic", "")).endswith("/obs"):
            continue
        batch = decode_batch(bytes.fromhex(str(m["payload_hex"])))
        body = batch.records["body"]
        mine = body["serial"] == b07
        flagged = mine & ((body["status"] & int(Status.TAMPER)) != 0)
        tamper_t += (batch.times()[flagged] - sc.epoch).tolist()
        repeats += int((flagged & ((body["status2"] & int(Status2.BURST_REPEAT)) != 0)).sum())
    assert tamper_t
    assert 15.0 <= min(tamper_t) < 15.3
    assert repeats >= 1


def test_gateway_failures(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS["gateway_failure"])
    out, _ = _play(sc, tmp_path, "g", 100.0)
    lines = _lines(out)
    power = [(m["source"], m["power"], m["t"]) for m in lines if "power" in m]
    assert ("G12", "off", 30.0) in [(s, p, round(float(t), 1)) for s, p, t in power]
    on12 = [float(t) for s, p, t in power if s == "G12" and p == "on"]
    assert on12
    assert 35.0 <= on12[0] <= 35.1
    assert ("DR-E2", "off") in [(s, p) for s, p, _ in power]
    g07_after = [m for m in lines if m.get("source") == "G07" and "topic" in m and m["t"] > 60.0]
    g07_before = [m for m in lines if m.get("source") == "G07" and float(m["t"]) < 60.0]
    assert g07_before
    assert not g07_after
    g12_back = [m for m in lines if m.get("source") == "G12" and float(m["t"]) > 36.0]
    assert any(
        str(m["topic"]).startswith("espresense/devices/") for m in g12_back
    )  # G12: ESPresense


def test_door_reads_name_known_tags(abduction: tuple[Path, Truth]) -> None:
    for m in _lines(abduction[0]):
        if str(m.get("topic", "")).endswith("/read"):
            body = json.loads(bytes.fromhex(str(m["payload_hex"])))
            assert body["serial"] == tag_serial(body["mac"])
            assert body["door"].startswith("D-E")


def test_worker_fall_raises_badge_alarm_within_dguv_time(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS["worker_fall"])
    out, truth = _play(sc, tmp_path, "f", 140.0)
    events = [r for r in truth.records if r["type"] == "event" and r.get("who") == "W02"]
    kinds = [(r["event"], r.get("cause")) for r in events]
    assert ("fall", None) in kinds
    pre = [r["t"] for r in events if r["event"] == "badge_pre_alarm"]
    alarm = [r["t"] for r in events if r["event"] == "badge_alarm"]
    assert pre
    assert alarm
    assert 40.0 < pre[0] < alarm[0] <= 40.0 + 90.0  # DGUV: at most 90 s to trigger
    # the alarm is on the air: W02's advertisements carry the fall flag after the alarm
    w02 = next(t for t in sc.site.tags if t.id == "W02").serial
    flagged = []
    for m in _lines(out):
        if str(m.get("topic", "")).endswith("/obs"):
            batch = decode_batch(bytes.fromhex(str(m["payload_hex"])))
            body = batch.records["body"]
            hit = (body["serial"] == w02) & ((body["status"] & int(Status.FALL)) != 0)
            flagged += (batch.times()[hit] - sc.epoch).tolist()
    assert flagged
    assert min(flagged) >= alarm[0] - 0.01
    assert min(flagged) < alarm[0] + 0.5
    # W02 lies on the floor where the fall happened, inside room P212
    last = [r for r in truth.records if r["type"] == "position" and r["id"] == "W02"][-1]
    assert "P212" in last["zones"]
    assert last["z"] < 0.5


def test_daily_activity_on_a_badge_raises_nothing(tmp_path: Path) -> None:
    data = {
        "scenario": {"name": "adl", "duration_s": 120, "ambient": False},
        "events": [
            {"at_s": 5, "action": "sit_down_hard", "who": "W03"},
            {"at_s": 40, "action": "get_up", "who": "W03"},
            {"at_s": 60, "action": "bend", "who": "W03"},
        ],
    }
    from gateways.scenario import scenario_from_mapping

    sc = scenario_from_mapping(data, site=load_scenario(SCENARIOS["worker_fall"]).site)
    _, truth = _play(sc, tmp_path, "adl", 110.0)
    assert not [r for r in truth.records if str(r.get("event", "")).startswith("badge_")]


def _mismatch_frames(world: World, serial: int, t_to: float) -> list[tuple[float, int]]:
    """(time, status2) of the frames of ``serial`` heard by native gateways up to ``t_to``."""
    out: list[tuple[float, int]] = []
    t = world.t
    while t < t_to:
        t = round(t + 0.05, 9)
        for routed in world.step(t).messages:
            if routed.msg.topic.endswith("/obs"):
                batch = decode_batch(routed.msg.payload)
                body = batch.records["body"]
                mine = body["serial"] == serial
                times = (batch.times()[mine] - world.epoch).tolist()
                out += list(zip(times, body["status2"][mine].astype(int).tolist(), strict=True))
    return sorted(out)


def test_bracelet_flags_a_foreign_mother_in_arms_not_one_beside_the_cot() -> None:
    """Proximity is 3-D and short (~0.5 m): M05 standing beside B06's cot (0.6 m away, her tag
    0.6 m above the cot) is not near; M05 holding B06 is. M01 holding her own B01: nothing."""
    from gateways.scenario import scenario_from_mapping

    data = {
        "scenario": {"name": "mismatch", "duration_s": 80, "ambient": False, "seed": 7,
                     "truth_interval_s": 0.5},
        "events": [
            {"at_s": 1, "action": "walk", "who": "M05", "to": {"tag": "B06"}},
            {"at_s": 1, "action": "carry", "who": "M01", "tag": "B01", "to": {"tag": "B01"}},
            {"at_s": 40, "action": "carry", "who": "M05", "tag": "B06", "to": {"tag": "B06"}},
        ],
    }  # fmt: skip
    sc = scenario_from_mapping(data, site=load_scenario(SCENARIOS["abduction"]).site)
    truth = Truth()
    world = World(sc, truth=truth)
    site = sc.site
    for baby, mother in (("B01", "M01"), ("B06", "M06")):  # as the engine's admission does
        assert world.downlink(baby, "pair", 0.0, mother=site.tag(mother).serial)
    b06 = site.tag("B06").serial
    before = _mismatch_frames(world, b06, 39.0)
    pos = [r for r in truth.records if r["type"] == "position" and r["t"] >= 30.0]
    m05 = {r["t"]: (r["x"], r["y"]) for r in pos if r["id"] == "M05"}
    cot = {r["t"]: (r["x"], r["y"]) for r in pos if r["id"] == "B06"}
    assert max(float(np.hypot(*np.subtract(m05[t], cot[t]))) for t in cot) < 1.0  # beside it
    assert before and not any(f & Status2.MISMATCH for _, f in before)
    after = _mismatch_frames(world, b06, 70.0)
    events = [r for r in truth.records if r.get("event") == "bracelet_mismatch"]
    assert [(e["tag"], e["near"]) for e in events] == [("B06", ["M05"])]  # never B01
    flagged = [(t, f) for t, f in after if f & Status2.MISMATCH]
    assert flagged and flagged[0][0] == pytest.approx(events[0]["t"], abs=0.02)
    # set at once in a burst, and in every frame while she holds the baby
    assert sum(1 for _, f in flagged if f & Status2.BURST_REPEAT) >= 1
    assert all(f & Status2.MISMATCH for t, f in after if t > flagged[0][0])
