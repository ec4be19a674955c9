"""Scenario-driven alarm tests: every alarm type, raised when it should be, within its expected
time, and not raised in the matching near miss (issue 4, "Show").

Each scenario of ``tests/rtls/scenarios/`` is played once per module (module-scoped fixtures)
through the whole chain in accelerated, seeded time: simulated ward (gateways.world) -> engine
-> alarm desk (bench.pipeline.run_scenario), with the world's ground truth kept beside it. The
expected times come from the site's rule parameters and DOMAIN.md's figures; the few
engine-dependent margins are named constants below, with their reasons. ``broker_link_lost``
has no world event (the service's MQTT link): a direct desk test covers it.

Most scenarios run on a *test site*: the shipped example with overridden rules (pairing window
60 s, check-in every 40 s), exit zone E2 that enters only after 60 s (so its door reader alone
catches a quick passage) and an approach zone before E2 with ``loiter_s = 30``. The quiet
stretch runs on the shipped example itself.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from firmware_sim.mandown import DGUV_MAX_TRIGGER_S, ManDownConfig

from bench.pipeline import Order, PipelineRun, run_scenario
from gateways.people import PICKUP_S
from gateways.scenario import Scenario, scenario_from_mapping
from gateways.truth import Truth
from rtls.alarm import Alarm, AlarmState, AlarmType, Priority
from rtls.desk import Desk
from rtls.engine import EngineParams
from rtls.site import EXAMPLE_SITE, Site, load_site
from rtls.supervision import BROKER, Heard

A = AlarmType
SCENARIOS = Path(__file__).parent / "scenarios"
TICK_S = EngineParams().tick_s  # the pipeline evaluates the desk once per engine tick
ZONE_DWELL_S = EngineParams().hysteresis.dwell_s  # zones without their own dwell_s
# DOMAIN.md: SOS "confirmed within 2 s" (DGUV); the same for every alarm the tag sends at once
# in a burst (strap cut, battery flag, pull-cord): one advertisement and one tick away.
AT_ONCE_S = 2.0
# A door read reaches the rules at the next tick; one more tick for the batch in flight.
READ_LAG_S = 2 * TICK_S
# Zone alarms: the zone's dwell, plus the engine's lag in placing a moving tag (the window and
# the tracker report where a walker was 2-3 s ago: docs/accuracy.md, "Lag"), plus two infant
# heartbeats (the locator needs packets: 2 x 2 s) and a tick.
ZONE_LAG_S = 3.0 + 2 * 2.0 + TICK_S
ROOM_LAG_S = 15.0  # a small zone inside a larger one: the room filter's 90 % takes longer
# fall_collapse slides down for 1.5-3 s and keels over in 2.5-4 s (docs/mandown.md): the wearer
# comes to rest at most this long after the event; DGUV's 90 s count from there.
COLLAPSE_S = 7.0
MANDOWN = ManDownConfig()  # what the simulated badges run (the site's [rules.staff] agree)
# A carrier walks to 0.4 m of the baby (gateways.people): from 1 m, 0.6 m at the slowest walking
# speed (0.6 m/s, firmware_sim.motion.walking_speeds).
REACH_S = 0.6 / 0.6


# -- the test site and the runs -------------------------------------------------------------------
@cache
def scenario_site() -> Site:
    """The example site with rules a two-minute scenario can show (docs/rules.md)."""
    data = tomllib.loads(EXAMPLE_SITE.read_text(encoding="utf-8"))
    data["rules"]["infant"]["pairing_window_s"] = 60.0  # vendors: 1 h
    data["rules"]["staff"]["check_in_s"] = 40.0
    for zone in data["zones"]:
        if zone["id"] == "E2":  # only the door reader of E2 can raise a quick exit
            zone["rules"] = {**zone.get("rules", {}), "exit_dwell_s": 60.0}
    data["zones"].append({
        "id": "L1-APPROACH-E2", "name": "Approach to exit E2", "floor": "L1",
        "kind": "corridor", "polygon": [[57, 9], [63, 9], [63, 13], [57, 13]],
        "rules": {"loiter_s": 30.0},
    })  # fmt: skip
    return Site.from_mapping(data)


@dataclass(repr=False)
class Played:
    """A scenario played through the pipeline, with its ground truth."""

    scenario: Scenario
    run: PipelineRun
    truth: list[dict[str, Any]]

    def __repr__(self) -> str:
        return f"Played({self.scenario.info.name!r}, {len(self.raised())} raises)"

    @property
    def site(self) -> Site:
        return self.scenario.site

    def raised(self, type_: AlarmType | None = None) -> list[tuple[float, AlarmType, str]]:
        return self.run.raised(type_)

    def pairs(self) -> set[tuple[AlarmType, str]]:
        return {(ty, s) for _, ty, s in self.raised()}

    def subjects(self, type_: AlarmType) -> set[str]:
        return {s for _, _, s in self.raised(type_)}

    def about(self, subject: str) -> list[tuple[float, AlarmType, str]]:
        return [r for r in self.raised() if r[2] == subject]

    def first(self, type_: AlarmType, subject: str) -> float:
        t = self.run.first(type_, subject)
        assert t is not None, f"no {type_.value} for {subject}; raised: {self.raised()}"
        return t

    def raise_of(self, type_: AlarmType, subject: str) -> Alarm:
        """The alarm as it was raised (the first raise of that condition)."""
        return next(tr.alarm for tr in self.run.transitions if tr.action == "raise"
                    and tr.alarm.type is type_ and tr.alarm.subject == subject)  # fmt: skip

    def closed(self, type_: AlarmType, subject: str) -> list[tuple[float, Alarm]]:
        return [(tr.t - self.run.epoch, tr.alarm) for tr in self.run.transitions
                if tr.action == "close" and tr.alarm.type is type_
                and tr.alarm.subject == subject]  # fmt: skip

    def at(self, action: str, name: str) -> list[float]:
        """Times of the scenario's ``action`` events for ``name`` (tag, person or device)."""
        return [
            e.at_s
            for e in self.scenario.events
            if e.action == action and name in (e.who, e.tag, e.gateway, e.reader)
        ]

    def positions(self, who: str) -> list[dict[str, Any]]:
        return [r for r in self.truth if r["type"] == "position" and r["id"] == who]

    def entered(self, who: str, zone: str) -> float:
        """First truth sample with ``who`` inside ``zone`` (the true entry is at most one
        ``truth_interval_s`` earlier)."""
        return float(next(r["t"] for r in self.positions(who) if zone in r["zones"]))

    def reads(self, who: str, reader: str) -> list[float]:
        return [
            r["t"]
            for r in self.truth
            if r["type"] == "event"
            and r["event"] == "door_read"
            and r["tag"] == who
            and r["reader"] == reader
        ]


def play(name: str, site: Site | None, orders: Sequence[Order] = ()) -> Played:
    data = tomllib.loads((SCENARIOS / f"{name}.toml").read_text(encoding="utf-8"))
    scenario = scenario_from_mapping(data, source=SCENARIOS / f"{name}.toml", site=site)
    truth = Truth()
    run = run_scenario(scenario, orders=orders, truth=truth)
    assert run.refused == [], run.refused  # every operator order was accepted
    return Played(scenario, run, truth.records)


def rect_distance(xy: tuple[float, float], polygon: list[tuple[float, float]]) -> float:
    """Distance from a point to an axis-aligned rectangular zone (0 inside)."""
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    dx = max(min(xs) - xy[0], 0.0, xy[0] - max(xs))
    dy = max(min(ys) - xy[1], 0.0, xy[1] - max(ys))
    return math.hypot(dx, dy)


# -- exits ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exits() -> Played:
    orders = [Order(50.0, "sign_out", {"baby": "B05", "escort": "S03", "duration_s": 1800.0,
                                       "reason": "imaging"})]  # fmt: skip
    return play("infant_exits", scenario_site(), orders)


def test_exit_raised_only_for_the_babies_that_left(exits: Played) -> None:
    assert exits.subjects(A.EXIT) == {"B03", "B12"}
    assert {ty for ty, _ in exits.pairs()} == {A.EXIT}  # nothing else in this scenario


def test_abduction_raises_exit_on_entering_the_exit_zone_or_at_the_door_read(
    exits: Played,
) -> None:
    (taken,) = exits.at("carry", "B03")
    t = exits.first(A.EXIT, "B03")
    entry = exits.entered("B03", "E1")
    reads = exits.reads("B03", "DR-E1")
    assert reads, "the abductor carried B03 through door D-E1"
    dwell = exits.site.zone("E1").rules["exit_dwell_s"]
    assert taken < t <= min(entry + dwell + ZONE_LAG_S, reads[0] + READ_LAG_S)
    assert exits.raise_of(A.EXIT, "B03").priority is Priority.HIGH
    locks = [c for o in exits.run.outputs for c in o.commands
             if c.target == "D-E1" and c.command == "lock"]  # fmt: skip
    assert locks and locks[0].t - exits.run.epoch <= t + TICK_S  # the exit locks the door


def test_exit_read_by_the_door_reader_alone(exits: Played) -> None:
    t = exits.first(A.EXIT, "B12")
    reads = exits.reads("B12", "DR-E2")
    assert reads
    entry = exits.entered("B12", "E2")
    in_e2 = [r["t"] for r in exits.positions("B12") if "E2" in r["zones"]]
    # the passage through E2 was far shorter than E2's dwell: the zone could not raise it
    assert in_e2[-1] - entry < exits.site.zone("E2").rules["exit_dwell_s"] / 2
    assert reads[0] - READ_LAG_S <= t <= reads[0] + READ_LAG_S


def test_mother_walks_out_through_the_exit_and_back_raises_nothing(exits: Played) -> None:
    assert exits.reads("M01", "DR-E1")  # read at the exit door, both ways
    assert any("L1-LOBBY" in r["zones"] for r in exits.positions("M01"))
    assert exits.about("M01") == []


def test_signed_out_baby_carried_out_by_its_escort_raises_nothing(exits: Played) -> None:
    assert exits.reads("B05", "DR-E1") and exits.reads("S03", "DR-E1")
    assert any("L1-LOBBY" in r["zones"] for r in exits.positions("B05"))
    assert exits.about("B05") == []
    assert exits.run.desk is not None
    assert exits.run.desk.rules.suppressed["exit"] >= 1  # suppressed by design, and counted


def test_baby_carried_between_rooms_past_the_exit_raises_nothing(exits: Played) -> None:
    path = exits.positions("B04")
    assert "R104" in path[0]["zones"] and "STATION" in path[-1]["zones"]
    e1 = exits.site.zone("E1").polygon
    assert min(rect_distance((r["x"], r["y"]), e1) for r in path) < 3.5  # it passed close by
    assert exits.about("B04") == []  # no exit, restricted_zone or loiter


# -- bracelets and ward workflows ---------------------------------------------------------------
ADMITTED_T, PAIRED_T = 10.0, 40.0  # B13 and B14 re-admitted; only B13 paired
SIGNED_OUT_T, B16_AWAY_S, RETURNED_T = 10.0, 30.0, 50.0  # B15 (60 s) back in time, B16 not
CODE_PINK_T = 100.0


@pytest.fixture(scope="module")
def tags() -> Played:
    def sign_out(baby: str, escort: str, away_s: float) -> Order:
        args = {"baby": baby, "escort": escort, "duration_s": away_s, "reason": "imaging"}
        return Order(SIGNED_OUT_T, "sign_out", args)

    orders = [
        Order(5.0, "discharge", {"baby": "B13"}),
        Order(5.0, "discharge", {"baby": "B14"}),
        Order(ADMITTED_T, "admit", {"baby": "B13"}),
        Order(ADMITTED_T, "admit", {"baby": "B14"}),
        Order(PAIRED_T, "pair", {"baby": "B13", "mother": "M11"}),
        sign_out("B15", "S02", 60.0),
        sign_out("B16", "S01", B16_AWAY_S),
        Order(RETURNED_T, "return", {"baby": "B15"}),
        Order(CODE_PINK_T, "code_pink", {"reason": "drill"}),
    ]
    return play("infant_tags", scenario_site(), orders)


def test_tamper_within_2_s(tags: Played) -> None:
    (cut,) = tags.at("tamper", "B07")
    assert cut <= tags.first(A.TAMPER, "B07") <= cut + AT_ONCE_S
    assert tags.subjects(A.TAMPER) == {"B07"}


def test_low_battery_within_2_s(tags: Played) -> None:
    (low,) = tags.at("battery", "B06")
    assert low <= tags.first(A.LOW_BATTERY, "B06") <= low + AT_ONCE_S
    assert tags.raise_of(A.LOW_BATTERY, "B06").priority is Priority.LOW
    assert tags.subjects(A.LOW_BATTERY) == {"B06"}


def test_tag_loose_after_tag_loose_s_but_not_for_a_nappy_change(tags: Played) -> None:
    (lost,) = tags.at("skin_contact", "B09")
    hold = tags.site.rules.infant.tag_loose_s
    assert lost + hold <= tags.first(A.TAG_LOOSE, "B09") <= lost + hold + AT_ONCE_S
    off, on = tags.at("skin_contact", "B10")
    assert on - off < hold
    assert tags.subjects(A.TAG_LOOSE) == {"B09"}  # B10 was off skin for 6 s only


def _silent_after_supervision(played: Played, tag: str, kind: str, priority: Priority) -> None:
    (quiet,) = played.at("tag_silent", tag)
    rules = played.site.rules.for_kind(kind)
    t = played.first(A.TAG_SILENT, tag)
    # counted from its last heartbeat, at most one heartbeat before it went silent
    assert quiet + rules.supervision_s - rules.heartbeat_s - TICK_S <= t
    assert t <= quiet + rules.supervision_s + 2 * TICK_S
    assert played.raise_of(A.TAG_SILENT, tag).priority is priority


def test_infant_tag_silent_after_supervision_s_with_high_priority(tags: Played) -> None:
    _silent_after_supervision(tags, "B08", "infant", Priority.HIGH)


def test_restricted_zone_on_entering_the_utility_room(tags: Played) -> None:
    entry = tags.entered("B02", "UTIL")
    dwell = tags.site.zone("UTIL").rules.get("dwell_s", ZONE_DWELL_S)  # the zone's own dwell
    assert (
        entry + dwell - ZONE_LAG_S
        <= tags.first(A.RESTRICTED_ZONE, "B02")
        <= (entry + dwell + ZONE_LAG_S)
    )
    assert tags.subjects(A.RESTRICTED_ZONE) == {"B02"}


def test_loiter_in_the_approach_to_an_exit(tags: Played) -> None:
    entry = tags.entered("B11", "L1-APPROACH-E2")
    loiter_s = tags.site.zone("L1-APPROACH-E2").rules["loiter_s"]
    t = tags.first(A.LOITER, "B11")
    # a 6 x 4 m sub-zone of the corridor is named only once the room filter holds it at 90 %
    # (docs/zones.md), several advertisements after the true entry: ROOM_LAG_S, not ZONE_LAG_S
    assert entry + loiter_s - ZONE_LAG_S <= t <= entry + loiter_s + ROOM_LAG_S
    assert tags.subjects(A.LOITER) == {"B11"}
    assert tags.about("B11") == [(t, A.LOITER, "B11")]  # no exit: E2 was not reached


def test_mismatch_when_another_mother_stays_at_the_cot(tags: Played) -> None:
    b06 = {r["t"]: (r["x"], r["y"]) for r in tags.positions("B06")}
    arrived = next(r["t"] for r in tags.positions("M05")
                   if math.dist((r["x"], r["y"]), b06[r["t"]]) <= 1.0)  # fmt: skip
    # The bracelet flags M05's tag once it is within its ~0.5 m range: when she lifts B06,
    # PICKUP_S / 2 after reaching the cot (her last 0.6 m take at most REACH_S); the flag goes
    # out at once in a burst. The rule raises it once the flag has held for mismatch_hold_s,
    # at the first heartbeat past it (heartbeat_s), one tick away (AT_ONCE_S): docs/rules.md.
    # ``arrived`` is sampled every truth_interval_s.
    lift = PICKUP_S / 2
    infant = tags.site.rules.infant
    t = tags.first(A.MISMATCH, "B06")
    truth_dt = tags.scenario.info.truth_interval_s
    earliest = arrived + lift + infant.mismatch_hold_s - truth_dt
    assert earliest <= t <= earliest + truth_dt + REACH_S + infant.heartbeat_s + AT_ONCE_S
    assert tags.raise_of(A.MISMATCH, "B06").detail["mother"] == "M05"


def test_pairing_overdue_at_the_end_of_the_window_not_when_paired_in_time(
    tags: Played,
) -> None:
    window = tags.site.rules.infant.pairing_window_s
    t = tags.first(A.PAIRING_OVERDUE, "B14")
    assert ADMITTED_T + window > PAIRED_T  # B13 was paired within its window
    assert t == pytest.approx(ADMITTED_T + window, abs=TICK_S)  # B14 never paired
    assert tags.subjects(A.PAIRING_OVERDUE) == {"B14"}  # B13 was paired in time


def test_sign_out_overdue_at_the_due_time_not_when_back_in_time(tags: Played) -> None:
    t = tags.first(A.SIGN_OUT_OVERDUE, "B16")
    assert t == pytest.approx(SIGNED_OUT_T + B16_AWAY_S, abs=TICK_S)
    assert tags.subjects(A.SIGN_OUT_OVERDUE) == {"B16"}  # B15 returned before its due time


def test_code_pink_at_the_order(tags: Played) -> None:
    site_id = tags.site.id
    assert tags.first(A.CODE_PINK, site_id) == pytest.approx(CODE_PINK_T, abs=TICK_S)
    assert tags.raise_of(A.CODE_PINK, site_id).priority is Priority.HIGH


def test_bracelet_scenario_raises_nothing_else(tags: Played) -> None:
    expected = {(A.TAMPER, "B07"), (A.LOW_BATTERY, "B06"), (A.TAG_LOOSE, "B09"),
                (A.TAG_SILENT, "B08"), (A.RESTRICTED_ZONE, "B02"), (A.LOITER, "B11"),
                (A.MISMATCH, "B06"), (A.PAIRING_OVERDUE, "B14"), (A.SIGN_OUT_OVERDUE, "B16"),
                (A.CODE_PINK, tags.site.id)}  # fmt: skip
    assert tags.pairs() - expected == set()


# -- lone workers and infrastructure ------------------------------------------------------------
CHECK_INS = {"W06": [2.0, 30.0, 60.0, 90.0], "W12": [2.0]}


@pytest.fixture(scope="module")
def workers() -> Played:
    orders = [Order(t, "check_in", {"tag": tag}) for tag, ts in CHECK_INS.items() for t in ts]
    return play("lone_workers", scenario_site(), orders)


@pytest.mark.parametrize(("type_", "who"), [(A.SOS, "W05"), (A.PULL_CORD, "W10")])
def test_sos_and_pull_cord_within_dguv_2_s(workers: Played, type_: AlarmType, who: str) -> None:
    (pressed,) = workers.at(type_.value, who)
    assert pressed <= workers.first(type_, who) <= pressed + AT_ONCE_S
    assert workers.raise_of(type_, who).priority is Priority.HIGH
    assert [ty for _, ty, _ in workers.about(who)] == [type_]  # no pre-alarm before an SOS


def test_fall_goes_through_the_pre_alarm_and_alarms_within_dguv_90_s(workers: Played) -> None:
    (fell,) = workers.at("fall", "W02")
    pre = workers.first(A.PRE_ALARM, "W02")
    t = workers.first(A.FALL, "W02")
    assert fell + MANDOWN.post_impact_still_s <= pre < t <= fell + DGUV_MAX_TRIGGER_S
    assert t - pre == pytest.approx(MANDOWN.pre_alarm_s, abs=2 * TICK_S)
    ((closed_t, _),) = workers.closed(A.PRE_ALARM, "W02")  # the pre-alarm became the alarm
    assert closed_t == pytest.approx(t, abs=TICK_S)
    assert {ty for _, ty, _ in workers.about("W02")} == {A.PRE_ALARM, A.FALL}


def test_man_down_after_a_cancelled_fall_pre_alarm(workers: Played) -> None:
    (cancelled,) = workers.at("cancel", "W07")
    first_pre = workers.first(A.PRE_ALARM, "W07")
    assert first_pre < cancelled  # the fall's pre-alarm, cancelled by the wearer: no fall
    assert workers.closed(A.PRE_ALARM, "W07")[0][0] == pytest.approx(cancelled, abs=TICK_S)
    t = workers.first(A.MAN_DOWN, "W07")
    # still down after the cancel: the tilt rule, within DGUV's 90 s of the cancel
    assert cancelled + MANDOWN.tilt_hold_s + MANDOWN.pre_alarm_s <= t + TICK_S
    assert t <= cancelled + DGUV_MAX_TRIGGER_S
    assert {ty for _, ty, _ in workers.about("W07")} == {A.PRE_ALARM, A.MAN_DOWN}


def test_no_movement_after_a_slow_collapse_within_dguv_90_s(workers: Played) -> None:
    (collapsed,) = workers.at("fall", "W03")
    pre = workers.first(A.PRE_ALARM, "W03")
    t = workers.first(A.NO_MOVEMENT, "W03")
    assert collapsed + MANDOWN.no_movement_s <= pre < t
    assert t <= collapsed + COLLAPSE_S + DGUV_MAX_TRIGGER_S
    assert {ty for _, ty, _ in workers.about("W03")} == {A.PRE_ALARM, A.NO_MOVEMENT}


def test_worker_asleep_on_a_rest_bed_gets_a_pre_alarm_and_cancels_it(workers: Played) -> None:
    """DOMAIN.md: lying down is not going down (no man-down or fall); a motionless sleeper gets
    the no-movement *pre-alarm*, shown as such, which the wearer cancels: no alarm."""
    (lay,) = workers.at("lie_down", "W09")
    pre = workers.first(A.PRE_ALARM, "W09")
    assert pre >= lay + MANDOWN.no_movement_s
    ((closed_t, alarm),) = workers.closed(A.PRE_ALARM, "W09")
    assert closed_t - pre < MANDOWN.pre_alarm_s  # cancelled within its pre-alarm
    assert alarm.comment is not None and "wearer cancel" in alarm.comment
    assert [ty for _, ty, _ in workers.about("W09")] == [A.PRE_ALARM]


def test_short_rest_and_sitting_down_hard_raise_nothing(workers: Played) -> None:
    assert workers.at("get_up", "W04") and workers.at("sit_down_hard", "W08")
    assert workers.about("W04") == []  # lay on a bed for 45 s, got up
    assert workers.about("W08") == []  # an impact without a fall (DOMAIN.md: up to 5 g)


def test_check_in_missed_at_the_due_time_not_while_checking_in(workers: Played) -> None:
    every = workers.site.rules.staff.check_in_s
    t = workers.first(A.CHECK_IN_MISSED, "W12")
    assert t == pytest.approx(CHECK_INS["W12"][-1] + every, abs=TICK_S)
    assert max(np.diff(CHECK_INS["W06"])) < every
    assert workers.subjects(A.CHECK_IN_MISSED) == {"W12"}


def test_badge_silent_after_supervision_s_with_medium_priority(workers: Played) -> None:
    _silent_after_supervision(workers, "W13", "staff", Priority.MEDIUM)


def test_gateway_silent_after_power_loss_not_after_a_5_s_reboot(workers: Played) -> None:
    (off,) = workers.at("gateway_power", "G27")
    silent_s = workers.site.rules.infrastructure.gateway_silent_s
    t = workers.first(A.GATEWAY_SILENT, "G27")
    alarm = workers.raise_of(A.GATEWAY_SILENT, "G27")
    last = alarm.detail["last_heard_t"] - workers.run.epoch
    assert last <= off + TICK_S and t == pytest.approx(last + silent_s, abs=2 * TICK_S)
    assert off < t <= off + silent_s + TICK_S
    assert alarm.priority is Priority.HIGH  # within 5 m of exit E4: a blind exit
    assert workers.subjects(A.GATEWAY_SILENT) == {"G27"}  # G32 rebooted for 5 s: nothing


def test_reader_silent_after_its_offline_will_stood_reader_silent_s(workers: Played) -> None:
    (off,) = workers.at("reader_power", "DR-E4")
    t = workers.first(A.READER_SILENT, "DR-E4")
    silent_s = workers.site.rules.infrastructure.reader_silent_s
    assert t == pytest.approx(off + silent_s, abs=2 * TICK_S)
    assert workers.raise_of(A.READER_SILENT, "DR-E4").detail["why"] == "offline"


def test_lone_worker_scenario_raises_nothing_else(workers: Played) -> None:
    expected = {(A.SOS, "W05"), (A.PULL_CORD, "W10"), (A.TAG_SILENT, "W13"),
                (A.CHECK_IN_MISSED, "W12"), (A.GATEWAY_SILENT, "G27"),
                (A.READER_SILENT, "DR-E4"), (A.FALL, "W02"), (A.MAN_DOWN, "W07"),
                (A.NO_MOVEMENT, "W03")}  # fmt: skip
    expected |= {(A.PRE_ALARM, w) for w in ("W02", "W07", "W03", "W09")}
    assert workers.pairs() == expected


# -- a quiet stretch ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet() -> Played:
    return play("quiet_day", None)


def test_quiet_stretch_raises_no_alarm_of_any_type(quiet: Played) -> None:
    site = quiet.site
    grace = site.rules.infrastructure.startup_grace_s
    assert quiet.scenario.info.duration_s >= grace + 120.0  # two minutes after the grace
    moves = 0  # ordinary activity happened: people changed zones
    for tag in site.tags:
        zones = [tuple(r["zones"]) for r in quiet.positions(tag.id)]
        moves += sum(a != b for a, b in itertools.pairwise(zones))
    assert moves >= 20
    assert quiet.raised() == []


def test_mother_walking_past_a_carried_baby_raises_no_mismatch(quiet: Played) -> None:
    """M08 walks along the corridor past B07 in M07's arms: her tag is within the bracelet's
    range for a moment (the bracelet flags it: ground truth), shorter than the rule's hold;
    the quiet stretch raises nothing (above)."""
    kinds = ("bracelet_mismatch", "bracelet_match")
    met = [(r["t"], r["event"], r["near"]) for r in quiet.truth
           if r["type"] == "event" and r["event"] in kinds and r["tag"] == "B07"]  # fmt: skip
    assert [e for _, e, _ in met] == ["bracelet_mismatch", "bracelet_match"], met
    (start, _, near), (end, _, _) = met
    assert "M08" in near
    assert 0.0 < end - start < quiet.site.rules.infant.mismatch_hold_s


# -- the broker link (the service's own MQTT connection) ------------------------------------------
def test_broker_link_lost_after_broker_lost_s_and_not_for_a_blip() -> None:
    site = load_site()
    infra = site.rules.infrastructure
    desk = Desk(site)
    g, r = len(site.gateways), len(site.door_readers)
    t0 = 1_000.0
    raised: list[tuple[float, Alarm]] = []

    def run(t_from: float, t_to: float, link_up: bool) -> None:
        heard_t = t_from  # nothing is heard while the link is down
        for now in np.arange(t_from, t_to, 1.0):
            now = float(now)
            if link_up:
                heard_t = now
            heard = Heard(np.full(g, heard_t), np.full(r, heard_t))
            out = desk.step(now, None, heard)
            raised.extend((tr.t, tr.alarm) for tr in out.transitions if tr.action == "raise")

    run(t0, t0 + 70.0, True)  # past the start-up grace
    down = t0 + 70.0
    raised += [(tr.t, tr.alarm) for tr in desk.link(down, False).transitions]
    run(down, down + 200.0, False)  # long enough for every gateway to look silent
    raised += [(tr.t, tr.alarm) for tr in desk.link(down + 200.0, True).transitions]
    run(down + 200.0, down + 230.0, True)
    blip = down + 230.0
    desk.link(blip, False)
    run(blip, blip + infra.broker_lost_s - 5.0, False)  # a reconnect blip
    desk.link(blip + infra.broker_lost_s - 5.0, True)
    run(blip + infra.broker_lost_s - 5.0, blip + 30.0, True)
    # one alarm for the cause, none for the gateways and tags nobody could hear
    assert [(a.type, a.subject) for _, a in raised] == [(A.BROKER_LINK_LOST, BROKER)]
    t, alarm = raised[0]
    assert t == pytest.approx(down + infra.broker_lost_s, abs=1.0)
    assert alarm.priority is Priority.HIGH
    final = desk.book.by_key(A.BROKER_LINK_LOST, BROKER)
    assert final is not None and final.state is AlarmState.CLEARED_UNACK  # the link came back
