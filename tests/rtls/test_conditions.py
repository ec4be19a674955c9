"""Infant rules (rtls.conditions): each alarm raised when it should be, and its near misses.

Positions go through a real ZoneMembership (tests/rtls/rules_site.py); one test runs the real
engine on the example site with noise-free RSSI."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from bench.e2e_site import GroupSpec, group_site
from rtls.alarm import Alarm, AlarmState, AlarmType, Location, Priority
from rtls.conditions import Rules
from rtls.decode_result import TELEMETRY_DTYPE
from rtls.engine import Engine, EngineParams, TickResult, wall_maps
from rtls.observations import OBS_DTYPE
from rtls.site import load_site
from rtls.track import TrackEstimate
from rtls.zone_visits import ZoneVisits
from rtls.zones import TRANSITION_DTYPE, Transitions
from tests.rtls.rules_site import MISMATCH, SKIN, T0, TAMPER, Driver, FakeWard, make_site

A = AlarmType
SITE = make_site()
IN_R1, IN_R2 = (4.0, 3.0, 0), (12.0, 3.0, 0)
CORRIDOR, APPROACH, AT_EXIT, LOBBY = (10.0, 8.0, 0), (21.0, 8.0, 0), (27.0, 8.0, 0), (34, 8, 0)
UTIL = (18.5, 3.0, 0)


def settled(ward: FakeWard | None = None, **places: tuple[float, float, int]) -> Driver:
    """A driver past the start-up grace with everyone in place (B1, B2 in rooms, M1 with
    B1, staff in the corridor)."""
    d = Driver(SITE, ward)
    d.places = {"B1": IN_R1, "B2": IN_R2, "M1": (4.5, 3.0, 0), "S1": CORRIDOR,
                "S2": (14.0, 8.0, 0), "REF1": (2.0, 2.0, 0)}  # fmt: skip
    d.places.update(places)
    d.run(70)
    assert d.log == [], d.log  # a quiet ward raises nothing
    return d


# -- exit -----------------------------------------------------------------------------------------
def test_bonded_baby_entering_the_exit_zone_raises_exit_at_once_with_its_location() -> None:
    d = settled()
    out = d.step(places={"B1": AT_EXIT})
    (c,) = [c for c in out if c.type is A.EXIT]
    assert c.subject == "B1" and c.active and c.t == d.t
    assert c.priority is None  # the catalogue's: high
    assert c.location == Location("F1", "EXIT", 27.0, 8.0, 1.0)
    assert "EXIT" in c.detail["zones"] and c.detail["armed"] is False


def test_mother_walks_past_the_exit_and_unbonded_tag_raise_nothing() -> None:
    d = settled()
    d.run(5, places={"M1": AT_EXIT, "B3": AT_EXIT})
    d.run(40, places={"M1": LOBBY, "B3": LOBBY})
    assert d.log == []


def test_baby_carried_between_rooms_inside_the_ward_raises_nothing() -> None:
    d = settled()
    path = [IN_R1, (3.6, 5.0, 0), (3.6, 7.5, 0), CORRIDOR, (13.0, 8.0, 0), (12.6, 5.0, 0), IN_R2]
    for p in path:  # carried by her mother
        d.run(3, places={"B1": p, "M1": (p[0] + 0.5, p[1], 0)})
    d.run(60)
    assert d.log == []


def test_signed_out_baby_with_its_escort_passes_the_exit_without_alarm() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward)
    for p in (CORRIDOR, APPROACH, AT_EXIT, (29.0, 8.0, 0), LOBBY):
        d.run(2, places={"B1": p, "S1": (p[0] - 0.8, p[1], 0)})
    d.run(30)
    assert d.raised(A.EXIT) == [] and d.raised(A.LOITER) == []
    assert d.rules.suppressed["exit"] == 1  # one passage, one suppression (not one per tick)
    assert any(b == "B1" and "S1" in near for b, near in ward.asked)


def test_signed_out_baby_whose_escort_is_elsewhere_raises_after_the_escort_wait() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward, S1=(2.0, 8.0, 0))
    wait = SITE.rules.infant.escort_wait_s
    start = d.t
    d.step(places={"B1": AT_EXIT})
    while not d.raised(A.EXIT):
        d.step()
    assert d.t - start == pytest.approx(0.5 + wait)  # entered at +0.5, waited escort_wait_s
    assert d.rules.suppressed["exit"] == 0


def test_escort_a_step_behind_is_waited_for() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward, S1=(14.0, 8.0, 0))
    d.step(places={"B1": AT_EXIT})
    d.run(2)
    d.run(3, places={"S1": (26.0, 8.0, 0)})
    assert d.raised(A.EXIT) == []
    assert d.rules.suppressed["exit"] == 1


def test_baby_not_signed_out_raises_exit_even_with_staff_beside_it() -> None:
    d = settled()
    d.step(places={"B1": AT_EXIT, "S1": (27.5, 8.0, 0)})
    assert len(d.raised(A.EXIT, "B1")) == 1


@pytest.mark.parametrize("cause", ["tamper", "code_pink", "open_tamper_alarm"])
def test_tamper_or_code_pink_arms_every_exit_even_for_signed_out_babies(cause: str) -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward)
    kw: dict[str, Any] = {}
    if cause == "tamper":
        d.status["B2"] = SKIN | TAMPER
        d.step()
        assert len(d.raised(A.TAMPER, "B2")) == 1
    elif cause == "code_pink":
        ward.code_pink_active = True
    else:  # the tamper condition cleared, its latching alarm is still open
        alarm = Alarm(1, A.TAMPER, "B2", Priority.HIGH, True, AlarmState.CLEARED, T0)
        kw = {"open_alarms": [alarm]}
    d.step(places={"B1": AT_EXIT, "S1": (27.5, 8.0, 0)}, **kw)
    (c,) = d.raised(A.EXIT, "B1")
    assert c.detail["armed"] is True
    assert d.rules.suppressed["exit"] == 0


def test_exit_read_by_a_door_reader_without_any_position() -> None:
    d = settled()
    d.step(places={"B1": None}, reads=[("RD-EX", "B1")])
    (c,) = d.raised(A.EXIT, "B1")
    assert c.location is not None and c.location.zone is None  # unknown now: no room guessed
    assert c.location.floor == "F1" and c.detail["position_known"] is False


def test_signed_out_baby_read_with_its_escort_at_the_door_is_suppressed() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward)
    d.step(places={"B1": None, "S1": None}, reads=[("RD-EX", "B1")])
    d.step(reads=[("RD-EX", "S1")])  # read 0.5 s later: within escort_wait_s
    d.run(20)
    assert d.raised(A.EXIT) == []
    assert d.rules.suppressed["exit"] == 1


def test_exit_clears_only_after_the_baby_is_out_for_exit_clear_s_without_flapping() -> None:
    d = settled()
    d.step(places={"B1": AT_EXIT})
    d.run(4, places={"B1": APPROACH})  # out (leave dwell 1 s) ...
    d.run(2, places={"B1": AT_EXIT})  # ... and back in before exit_clear_s
    d.step(places={"B1": CORRIDOR})
    hold = SITE.rules.infant.exit_clear_s
    t_out = d.t
    while not d.cleared(A.EXIT):
        d.step()
    assert len([c for c in d.raised(A.EXIT) if "zones" in c.detail and "armed" in c.detail]) == 1
    assert hold + 1.0 <= d.t - t_out <= hold + 1.5  # leave dwell, then the hold
    assert len(d.cleared(A.EXIT)) == 1


def test_exit_entered_and_left_within_one_tick_is_not_missed() -> None:
    rules = Rules(SITE)
    n = len(SITE.tags)
    cov = np.tile(np.eye(2), (n, 1, 1))
    est = TrackEstimate(T0, np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n, np.int64), cov,
                        np.ones(n, bool), np.full(n, T0))  # fmt: skip
    exit_col = [z.id for z in SITE.zones].index("EXIT")
    entered = np.array([(0, exit_col, T0 - 0.2)], dtype=TRANSITION_DTYPE)
    left = np.array([(0, exit_col, T0 - 0.1)], dtype=TRANSITION_DTYPE)
    tick = TickResult(T0, est, np.full(n, -1, np.int64), Transitions(entered, left,
                      np.zeros(n, bool)), np.arange(n), None)  # fmt: skip
    out = rules.evaluate(T0, tick, None, None, FakeWard(), None)
    assert [(c.type, c.subject) for c in out if c.active] == [(A.EXIT, "B1")]


def test_active_exit_follows_the_baby() -> None:
    d = settled()
    d.step(places={"B1": AT_EXIT})
    d.step(places={"B1": (29.0, 9.0, 0)})
    d.step(places={"B1": (29.2, 9.0, 0)})  # moved less than a metre: no update
    follows = d.raised(A.EXIT, "B1")
    assert [c.location.x for c in follows if c.location] == [27.0, 29.0]


# -- tamper, tag loose, low battery ---------------------------------------------------------------
def test_tamper_raised_for_bonded_babies_only_and_cleared_after_the_hold() -> None:
    d = settled()
    d.status["B1"] = d.status["B3"] = SKIN | TAMPER
    d.step()
    assert [c.subject for c in d.raised(A.TAMPER)] == ["B1"]
    d.status["B1"] = SKIN
    d.run(2)
    d.status["B1"] = SKIN | TAMPER  # a flicker of the strap contact: still one alarm
    d.step()
    d.status["B1"] = SKIN
    d.run(SITE.rules.infant.clear_hold_s - 0.5)
    assert d.cleared(A.TAMPER) == []
    d.run(1)
    assert len(d.cleared(A.TAMPER, "B1")) == 1
    assert len(d.raised(A.TAMPER)) == 1


def test_tag_loose_only_after_the_hold() -> None:
    d = settled()
    hold = SITE.rules.infant.tag_loose_s
    d.status["B1"] = 0
    d.run(hold - 1.0)  # a short loss (the baby being changed) raises nothing
    d.status["B1"] = SKIN
    d.run(5)
    assert d.log == []
    d.status["B1"] = d.status["S1"] = 0  # staff badges have no skin sensor
    lost = d.t
    while not d.raised(A.TAG_LOOSE):
        d.step()
    assert d.t - lost == pytest.approx(hold, abs=0.6)
    assert [c.subject for c in d.raised(A.TAG_LOOSE)] == ["B1"]
    d.status["B1"] = SKIN
    d.run(SITE.rules.infant.clear_hold_s + 0.5)
    assert len(d.cleared(A.TAG_LOOSE, "B1")) == 1


def test_tag_loose_is_not_added_to_a_tamper() -> None:
    d = settled()
    d.status["B1"] = TAMPER  # strap cut and off the skin
    d.run(30)
    assert d.types_raised() == {"tamper"}


# -- mother-infant mismatch (the bracelet's flag) ------------------------------------------------
MISMATCH_HOLD_S = SITE.rules.infant.mismatch_hold_s


def flag_until_raised(d: Driver, tag: str, limit_s: float = 30.0) -> tuple[float, list[Any]]:
    """Set ``tag``'s MISMATCH flag and step (0.5 s, a frame each) until the mismatch rises:
    (seconds from the first flagged frame, the conditions of that step)."""
    d.status2[tag] = MISMATCH
    start = d.t + 0.5 - 0.1  # the driver's frame of the next step
    while d.t - start < limit_s:
        out = [c for c in d.step() if c.type is A.MISMATCH and c.active]
        if out:
            return d.t - 0.1 - start, out
    raise AssertionError(f"no mismatch for {tag} within {limit_s} s")


def test_mismatch_flag_of_a_bonded_baby_raises_after_the_hold_and_clears_after_the_hold() -> None:
    d = settled(M2=(5.0, 3.0, 0))  # another mother tag, 1 m from B1's cot
    d.status2["B3"] = MISMATCH  # B3's bracelet is not bonded: ignored
    held, out = flag_until_raised(d, "B1")
    assert held == pytest.approx(MISMATCH_HOLD_S)  # the first frame that completes the hold
    (c,) = out
    assert (c.subject, c.active, c.t) == ("B1", True, d.t)
    assert c.location == Location("F1", "R1", 4.0, 3.0, 1.0)  # where the baby is
    assert c.detail["paired_mother"] == "M1"
    # M1 (paired) stands closer, but only another mother can have set the flag
    assert c.detail["mother"] == "M2"
    assert c.detail["nearest_mothers"] == [{"tag": "M2", "distance_m": 1.0, "uncertainty_m": 1.0}]
    d.status2["B1"] = 0
    d.run(1)
    d.status2["B1"] = MISMATCH  # a flicker: still one alarm
    d.step()
    d.status2["B1"] = 0
    d.run(SITE.rules.infant.clear_hold_s - 0.5)
    assert d.cleared(A.MISMATCH) == []
    d.run(1)
    assert [c.subject for c in d.cleared(A.MISMATCH)] == ["B1"]
    assert [c.subject for c in d.raised(A.MISMATCH)] == ["B1"]


def test_a_foreign_mother_passing_for_less_than_the_hold_raises_nothing() -> None:
    d = settled(M2=(5.0, 3.0, 0))
    assert MISMATCH_HOLD_S >= 2.0
    for _ in range(3):  # three passes of 1.5 s, each ended by a frame without the flag
        d.status2["B1"] = MISMATCH
        d.run(1.5)
        d.status2["B1"] = 0
        d.step()
    d.status2["B1"] = MISMATCH  # a streak whose frames stop (tag out of coverage): time
    d.step()  # without advertisements is not evidence of a mother still near
    d.silent.add("B1")
    d.run(MISMATCH_HOLD_S + 5)
    assert d.raised(A.MISMATCH) == []
    d.silent.discard("B1")
    d.step()  # the next frame still has the flag, more than the hold after the first
    assert [c.subject for c in d.raised(A.MISMATCH)] == ["B1"]


def test_mismatch_hold_counts_from_the_bonding_and_a_frame_from_a_slow_gateway() -> None:
    ward = FakeWard(bonded_tags={"B1"})
    d = settled(ward, M2=(12.5, 3.0, 0))
    d.status2["B2"] = MISMATCH  # flagged before B2 is bonded (admitted with a mother near)
    d.run(10)
    ward.bonded_tags.add("B2")
    d.run(MISMATCH_HOLD_S - 1.0)
    assert d.raised(A.MISMATCH) == []
    d.run(2.0)  # frames come 0.1 s before each step: the first past the hold is 5.4 s in
    assert [c.subject for c in d.raised(A.MISMATCH)] == ["B2"]
    # an old frame without the flag, delivered late by a slow gateway, changes nothing
    i = d.tag("B1")
    d.status2["B1"] = MISMATCH
    d.run(3)
    since = d.rules.mismatch_since[i]
    late = np.zeros(1, dtype=TELEMETRY_DTYPE)
    late["t"], late["tag"], late["status"] = since - 1.0, i, SKIN
    d.rules.evaluate(d.t, None, late, None, d.ward, None)
    assert d.rules.mismatch_since[i] == since


def test_mismatch_names_the_likeliest_mothers_first_and_clears_on_discharge() -> None:
    ward = FakeWard(mothers={"B2": "M2"})
    d = settled(ward, B2=IN_R2, M2=(12.5, 3.0, 0))
    _, out = flag_until_raised(d, "B2")
    (c,) = out
    assert c.detail["paired_mother"] == "M2"
    assert [m["tag"] for m in c.detail["nearest_mothers"]] == ["M1"]  # the only other one
    d.step(places={"M1": None})  # positions unknown: named by nobody, still raised once
    assert len(d.raised(A.MISMATCH)) == 1
    ward.bonded_tags.discard("B2")  # discharged: cleared at once
    assert [c.subject for c in d.step() if c.type is A.MISMATCH and not c.active] == ["B2"]


def test_mismatch_detail_follows_the_baby() -> None:
    d = settled(M2=(5.0, 3.0, 0))
    flag_until_raised(d, "B1")
    out = d.step(places={"B1": (4.0, 8.0, 0), "M2": (4.5, 8.0, 0)})  # carried into the corridor
    (moved,) = [c for c in out if c.type is A.MISMATCH]
    assert moved.active and moved.location is not None
    assert (moved.location.x, moved.location.y) == (4.0, 8.0)
    assert moved.detail["mother"] == "M2"  # the names from the raise are kept


def test_low_battery_flag_or_percentage_with_hysteresis() -> None:
    d = settled()
    d.battery["B1"] = 15  # below 20 %
    d.battery["S1"] = -1  # the LOW_BATTERY flag (battery unknown)
    d.battery["B3"] = 5  # not bonded: not in service
    d.step()
    assert sorted(c.subject for c in d.raised(A.LOW_BATTERY)) == ["B1", "S1"]
    assert all(c.priority is None for c in d.raised(A.LOW_BATTERY))  # catalogue: low
    d.battery["B1"] = 22  # above the threshold, inside the hysteresis band
    d.run(30)
    assert d.cleared(A.LOW_BATTERY, "B1") == []
    d.battery["B1"] = 100  # a new battery
    d.run(SITE.rules.infant.clear_hold_s + 0.5)
    assert len(d.cleared(A.LOW_BATTERY, "B1")) == 1
    assert d.raised(A.LOW_BATTERY, "B1")[0].detail["battery_pct"] == 15


# -- zones: restricted, loiter --------------------------------------------------------------------
def test_restricted_zone_for_babies_not_staff() -> None:
    d = settled()
    d.run(3, places={"B1": UTIL, "S1": UTIL})
    (c,) = d.raised(A.RESTRICTED_ZONE)
    assert c.subject == "B1" and c.location is not None and c.location.zone == "UTIL"
    d.run(3 + SITE.rules.infant.clear_hold_s, places={"B1": IN_R1})
    assert len(d.cleared(A.RESTRICTED_ZONE, "B1")) == 1


def test_loiter_after_the_zones_own_loiter_s_not_before() -> None:
    d = settled()
    loiter_s = SITE.zone("APPROACH").rules["loiter_s"]
    assert loiter_s != SITE.rules.infant.loiter_s  # the per-zone override is what counts
    d.step(places={"B1": APPROACH})
    d.run(loiter_s - 2.0)
    assert d.raised(A.LOITER) == []
    d.run(3)
    (c,) = d.raised(A.LOITER)
    assert c.subject == "B1" and c.location is not None and c.location.zone == "APPROACH"
    d.run(2 + SITE.rules.infant.clear_hold_s, places={"B1": CORRIDOR})
    assert len(d.cleared(A.LOITER, "B1")) == 1
    assert d.raised(A.EXIT) == []


def test_loiter_clock_survives_a_short_absence_but_not_a_long_one() -> None:
    loiter_s = SITE.zone("APPROACH").rules["loiter_s"]
    hold = SITE.rules.infant.loiter_gap_s
    d = settled()
    d.step(places={"B1": APPROACH})
    d.run(loiter_s - hold - 4.0)
    d.run(hold - 2.0, places={"B1": CORRIDOR})  # out for less than loiter_gap_s
    d.run(8.0, places={"B1": APPROACH})  # back: the clock counted from the first entry
    (c,) = d.raised(A.LOITER)
    assert c.t <= d.t
    d2 = settled()
    d2.step(places={"B1": APPROACH})
    d2.run(loiter_s - hold - 4.0)
    d2.run(hold + 3.0, places={"B1": CORRIDOR})  # really gone: the clock restarts
    d2.run(loiter_s - 2.0, places={"B1": APPROACH})
    assert d2.raised(A.LOITER) == []


def test_loiter_by_a_signed_out_baby_with_its_escort_is_suppressed() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward)
    d.run(40, places={"B1": APPROACH, "S1": (20.0, 8.0, 0)})
    assert d.raised(A.LOITER) == []
    assert d.rules.suppressed["loiter"] == 1


def test_loiter_clock_of_nested_zones_survives_a_short_absence_only() -> None:
    """A tag in WARD and the loiter zone APPROACH inside it steps out of APPROACH (still in
    WARD): back within loiter_gap_s its clock keeps running, later it restarts."""
    ward, approach, exit_, util = 0, 1, 2, 3
    v = ZoneVisits(2, np.array([0, 0, 1, 0], bool), np.array([0, 0, 0, 1], bool),
                   np.array([0, 1, 1, 0], bool), loiter_gap_s=10.0)  # fmt: skip

    def fold(*events: tuple[int, int, float, bool]) -> None:
        tag, zone, t, came = (np.array(c) for c in zip(*events, strict=True))
        v.fold(tag, zone, t.astype(float), came.astype(bool))

    fold((0, ward, 0.0, True), (0, approach, 0.0, True), (1, util, 0.0, True))
    fold((0, approach, 5.0, False))
    assert v.zones_of(0) == [ward] and v.n_loiter[0] == 0 and v.n_restricted.tolist() == [0, 1]
    fold((0, approach, 14.0, True))  # back after 9 s < loiter_gap_s
    assert [a.tolist() for a in v.loiter_clocks()] == [[0], [approach], [0.0]]
    fold((0, approach, 20.0, False), (0, exit_, 20.0, True), (1, exit_, 21.0, True))
    assert v.exit_mates(0) == {1} and v.n_exit.tolist() == [1, 1]
    fold((0, exit_, 25.0, False), (0, approach, 31.0, True))  # back after 11 s: a new clock
    assert [a.tolist() for a in v.loiter_clocks()] == [[0, 1], [approach, exit_], [31.0, 21.0]]
    assert v.zones_of(0) == [ward, approach] and v.exit_mates(1) == set()
    assert v.dense().tolist() == [[True, True, False, False], [False, False, True, True]]


def _arrays(obj: object, seen: set[int]) -> list[np.ndarray]:
    """Every numpy array reachable from ``obj`` through attributes and containers."""
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for x in obj.values() for a in _arrays(x, seen)]
    if isinstance(obj, list | tuple | set | frozenset):
        return [a for x in obj for a in _arrays(x, seen)]
    if type(obj).__module__.startswith("rtls.") and hasattr(obj, "__dict__"):
        return [a for x in vars(obj).values() for a in _arrays(x, seen)]
    return []


def test_rules_memory_scales_with_the_pairs_not_tags_times_zones() -> None:
    site = group_site(GroupSpec(buildings=3, bulk=200))
    n, z = len(site.tags), len(site.zones)
    d = Driver(site)
    d.places = {t.id: (9.5, 11.0, 0) if k % 2 else (20.0, 5.0, 0)  # exit zone E1, or a room
                for k, t in enumerate(site.tags[:80])}  # fmt: skip
    d.run(5)
    rules = d.rules
    assert np.array_equal(rules.inside, d.membership.inside)  # dense view for inspection
    assert (rules.visits.n_exit > 0).sum() == 40
    arrays = _arrays(rules, {id(site)})
    assert arrays and max(a.size for a in arrays) < n * z / 4
    assert sum(a.nbytes for a in arrays) < 17 * n * z / 4  # dense: 17 bytes per pair


def test_discharged_baby_clears_its_conditions() -> None:
    ward = FakeWard()
    d = settled(ward)
    d.run(3, places={"B1": UTIL})
    assert d.raised(A.RESTRICTED_ZONE, "B1")
    ward.bonded_tags.discard("B1")
    d.step()
    assert len(d.cleared(A.RESTRICTED_ZONE, "B1")) == 1


# -- tag silent -----------------------------------------------------------------------------------
def test_tag_silent_per_kind_and_priority() -> None:
    d = settled()
    d.silent |= {"B1", "B3", "M1", "S1", "REF1"}
    start = d.t
    seen: dict[str, float] = {}
    for _ in range(int(130 / 0.5)):
        for c in d.step():
            if c.type is A.TAG_SILENT and c.active:
                seen[c.subject] = c.t - start
    # heard at start - 0.1 s (the driver's telemetry time)
    assert seen["B1"] == pytest.approx(SITE.rules.infant.supervision_s - 0.1, abs=0.5)
    assert seen["S1"] == pytest.approx(SITE.rules.staff.supervision_s - 0.1, abs=0.5)
    assert seen["REF1"] == pytest.approx(SITE.rules.reference.supervision_s - 0.1, abs=0.5)
    assert set(seen) == {"B1", "S1", "REF1"}  # not the unbonded tag, not the mother
    prio = {c.subject: c.priority for c in d.raised(A.TAG_SILENT)}
    assert prio == {"B1": None, "S1": Priority.MEDIUM, "REF1": Priority.LOW}
    loc = d.raised(A.TAG_SILENT, "B1")[0].location
    assert loc is not None and loc.x == 4.0  # where it was last seen


def test_tag_silent_clears_once_heard_steadily_again() -> None:
    d = settled()
    d.silent.add("B1")
    d.run(25)
    assert d.raised(A.TAG_SILENT, "B1")
    d.silent.discard("B1")
    back = d.t
    while not d.cleared(A.TAG_SILENT, "B1"):
        d.step()
    assert d.t - back == pytest.approx(SITE.rules.infant.supervision_s, abs=0.6)


def test_a_single_packet_does_not_clear_tag_silent() -> None:
    d = settled()
    d.silent.add("B1")
    d.run(25)
    d.silent.discard("B1")
    d.step()
    d.silent.add("B1")
    d.run(60)
    assert d.cleared(A.TAG_SILENT) == []
    assert len(d.raised(A.TAG_SILENT, "B1")) == 1


def test_no_tag_silent_during_the_startup_grace_for_never_heard_tags() -> None:
    d = Driver(SITE)
    d.silent |= {"B1", "S1"}
    grace = SITE.rules.infrastructure.startup_grace_s
    d.run(grace - 1.0)
    assert d.raised(A.TAG_SILENT) == []
    d.run(100)
    # the bonded baby is in service from the start; a badge never heard (in its charger) is not
    assert [c.subject for c in d.raised(A.TAG_SILENT)] == ["B1"]
    assert d.raised(A.TAG_SILENT)[0].t - T0 == pytest.approx(grace, abs=0.6)


def test_signed_out_baby_out_of_coverage_is_not_reported_silent() -> None:
    ward = FakeWard(signed_out={"B1": "S1"})
    d = settled(ward)
    d.silent.add("B1")
    d.run(60, places={"B1": None})
    assert d.raised(A.TAG_SILENT) == []
    assert d.rules.suppressed["tag_silent"] == 1


def test_telemetry_from_the_tick_and_shuffled_rows() -> None:
    rules = Rules(SITE)
    tele = np.zeros(3, dtype=TELEMETRY_DTYPE)
    tele["tag"] = [0, 0, 0]
    tele["t"] = [T0 + 3.0, T0 + 1.0, T0 + 2.0]
    tele["status"] = [0, SKIN, 0]  # contact lost at T0 + 2 (the rows arrive out of order)
    ward = FakeWard()
    rules.evaluate(T0 + 3.0, None, tele, None, ward, None)
    assert rules.skin_lost_since[0] == T0 + 2.0
    assert rules.last_heard[0] == T0 + 3.0


# -- the real engine ------------------------------------------------------------------------------
EX = load_site()
_WALLS = wall_maps(EX)
assert _WALLS is not None
WALLS = _WALLS


def _obs(tag: int, xy: tuple[float, float], t: float) -> np.ndarray:
    """Noise-free RSSI (log distance and the site's walls) of a tag 1 m above floor L1."""
    ga = EX.gateway_arrays
    gws = np.flatnonzero(ga.floor == 0)
    d = np.linalg.norm(ga.xyz[gws] - np.array([xy[0], xy[1], 1.0]), axis=1)
    rssi = ga.rssi_at_1m[gws] - 10 * ga.path_loss_exponent[gws] * np.log10(np.maximum(d, 1))
    rssi -= WALLS.lookup(np.array([xy]))[0, gws]
    keep = rssi > -90
    obs = np.zeros(int(keep.sum()), dtype=OBS_DTYPE)
    obs["t"], obs["gateway"], obs["tag"], obs["rssi"] = t, gws[keep], tag, rssi[keep]
    return obs


def _walk(points: list[tuple[float, float]], speed: float = 1.0, dt: float = 0.5) -> list[
        tuple[float, float]]:  # fmt: skip
    out = []
    for a, b in itertools.pairwise(points):
        n = max(1, int(np.hypot(b[0] - a[0], b[1] - a[1]) / (speed * dt)))
        out += [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n)]
    return out + [points[-1]] * 20


@pytest.mark.parametrize(("route", "expect_exit"), [
    ([(16.0, 4.0), (15.7, 8.0), (15.7, 11.0), (25.0, 11.0), (24.7, 8.0), (25.0, 4.0)], False),
    ([(16.0, 4.0), (15.7, 8.0), (15.7, 11.0), (9.0, 11.0)], True),
])  # fmt: skip
def test_real_engine_room_to_room_is_quiet_and_walking_to_the_exit_raises(
    route: list[tuple[float, float]], expect_exit: bool
) -> None:
    eng = Engine(EX, EngineParams())  # the engine's defaults, as the service runs it
    rules = Rules(EX)
    ward = FakeWard(bonded_tags={"B02"})
    baby = [t.id for t in EX.tags].index("B02")
    out = []
    t = T0
    for xy in [route[0]] * 140 + _walk(route):  # 70 s in the room (past the grace), then go
        t += 0.5
        eng.ingest_observations(_obs(baby, xy, t - 0.25))
        tick = eng.tick(t)
        out += [c for c in rules.evaluate(t, tick, None, None, ward, None) if c.subject == "B02"]
    types = {c.type for c in out if c.active}
    assert types == ({A.EXIT} if expect_exit else set())


def test_new_rule_parameters_are_validated() -> None:
    from rtls.errors import SiteError

    with pytest.raises(SiteError, match="low_battery_hysteresis_pct"):
        make_site(infant={"low_battery_pct": 90, "low_battery_hysteresis_pct": 20})
    with pytest.raises(SiteError, match="escort_wait_s"):
        make_site(infant={"escort_wait_s": 60.0})
    site = make_site(infant={"tag_loose_s": 30.0}, infrastructure={"startup_grace_s": 0.0})
    assert site.rules.infant.tag_loose_s == 30.0
    assert site.rules.infrastructure.startup_grace_s == 0.0


def test_flags_changed_marks_only_frames_with_news() -> None:
    rules = Rules(SITE)
    tele = np.zeros(4, dtype=TELEMETRY_DTYPE)
    tele["tag"] = [0, 0, 1, 10_000]  # the last is no tag of the site
    tele["t"] = T0
    tele["status"] = [TAMPER, 0, 0, TAMPER]
    assert rules.flags_changed(tele).tolist() == [True, False, False, False]
    rules.evaluate(T0, None, tele[:1], None, FakeWard(), None)  # tag 0 now has TAMPER set
    again = tele.copy()
    again["t"] = T0 + 2
    assert rules.flags_changed(again).tolist() == [False, True, False, False]
    again["status2"][2] = MISMATCH
    assert rules.flags_changed(again)[2]
