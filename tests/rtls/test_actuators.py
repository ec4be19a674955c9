"""Door locks and elevator holds (rtls.actuators): pure, with the synthetic ward site."""

from __future__ import annotations

import json

import pytest

from rtls.actuators import (
    STATE_FILTER,
    ActuatorError,
    Actuators,
    Command,
    command_topic,
    elevator_landings,
    parse_state,
    state_topic,
)
from rtls.alarm import Alarm, AlarmBook, AlarmState, AlarmType, Condition, Location, Priority
from rtls.site import load_site
from tests.rtls.rules_site import T0, make_site

A = AlarmType
SITE = make_site()
TIMEOUT = SITE.rules.actuators.confirm_timeout_s


def alarm(aid: int, type_: AlarmType, subject: str, floor: str | None = "F1",
          state: AlarmState = AlarmState.ACTIVE_UNACK) -> Alarm:  # fmt: skip
    return Alarm(aid, type_, subject, Priority.HIGH, True, state, T0,
                 location=Location(floor, None, 27.0, 8.0, 1.0))  # fmt: skip


def by_target(cmds: list[Command]) -> dict[str, str]:
    return {c.target: c.command for c in cmds}


def confirm(act: Actuators, cmds: list[Command], now: float) -> None:
    state = {"lock": "locked", "unlock": "unlocked", "hold": "held", "release": "released"}
    for c in cmds:
        assert act.report(c.target, state[c.command], now) == []


def test_targets_from_the_site() -> None:
    act = Actuators(SITE)
    doors = {k for k, t in act.targets.items() if t.kind == "door"}
    assert doors == {"D-EX", "D-EX2"}  # lockable exit doors only (not D-R1, not D-EX3)
    landings = {(t.id, t.floor) for t in elevator_landings(SITE)}
    assert landings == {("EL.F1", "F1"), ("EL.F2", "F2")}  # the zones hold the connector
    ex = load_site()
    ex_act = Actuators(ex)
    assert {k for k, t in ex_act.targets.items() if t.kind == "door"} == {
        "D-E1", "D-E2", "D-E3", "D-E4"}  # fmt: skip
    assert {t.id for t in elevator_landings(ex)} == {"EL1.L1", "EL1.L2"}


def test_exit_alarm_locks_its_floor_and_holds_its_landing_then_releases_on_resolve() -> None:
    act = Actuators(SITE)
    a = alarm(7, A.EXIT, "B1")
    cmds = act.update(T0, [a])
    assert by_target(cmds) == {"D-EX": "lock", "EL.F1": "hold"}
    assert all(c.reason == (7,) and c.t == T0 and c.attempt == 1 for c in cmds)
    hold = next(c for c in cmds if c.kind == "elevator")
    assert hold.floor == "F1"
    confirm(act, cmds, T0 + 1)
    assert act.update(T0 + 2, [a]) == []  # nothing new while it stands
    a.state = AlarmState.CLEARED  # cleared but not resolved: a latching alarm still holds
    assert act.update(T0 + 3, [a]) == []
    a.state = AlarmState.CLOSED  # resolved
    cmds = act.update(T0 + 4, [a])
    assert by_target(cmds) == {"D-EX": "unlock", "EL.F1": "release"}
    assert all(c.reason == (7,) for c in cmds)  # the alarms that had held it
    confirm(act, cmds, T0 + 5)
    assert act.update(T0 + 100, []) == []


def test_nothing_is_commanded_without_a_locking_alarm() -> None:
    act = Actuators(SITE)
    others = [alarm(1, A.LOITER, "B1"), alarm(2, A.GATEWAY_SILENT, "G1"),
              alarm(3, A.TAG_LOOSE, "B1")]  # fmt: skip
    assert act.update(T0, others) == []
    assert act.update(T0 + 60, []) == []  # no unlock for a door the system never locked


def test_code_pink_and_unknown_floor_lock_every_floor() -> None:
    for a in (alarm(1, A.CODE_PINK, "ward", floor=None), alarm(2, A.TAMPER, "B1", floor=None)):
        act = Actuators(SITE)
        cmds = act.update(T0, [a])
        assert by_target(cmds) == {"D-EX": "lock", "D-EX2": "lock", "EL.F1": "hold",
                                   "EL.F2": "hold"}  # fmt: skip


def test_signed_out_baby_releases_its_exit_alarm_locks_but_not_a_tamper() -> None:
    act = Actuators(SITE)
    ex, tamper = alarm(1, A.EXIT, "B1"), alarm(2, A.TAMPER, "B2", floor="F2")
    confirm(act, act.update(T0, [ex, tamper]), T0)
    cmds = act.update(T0 + 1, [ex, tamper], signed_out={"B1", "B2"})
    assert by_target(cmds) == {"D-EX": "unlock", "EL.F1": "release"}  # F2 stays for the tamper


def test_an_alarm_keeps_every_floor_it_has_been_on() -> None:
    act = Actuators(SITE)
    a = alarm(1, A.EXIT, "B1")
    confirm(act, act.update(T0, [a]), T0)
    a.location = Location("F2", None, 1.0, 1.0, 1.0)  # carried upstairs
    cmds = act.update(T0 + 10, [a])
    assert by_target(cmds) == {"D-EX2": "lock", "EL.F2": "hold"}  # F1 stays locked too
    assert act.targets["D-EX"].engaged


def test_two_alarms_release_only_when_both_are_gone() -> None:
    act = Actuators(SITE)
    a, b = alarm(1, A.EXIT, "B1"), alarm(2, A.TAMPER, "B2")
    cmds = act.update(T0, [a, b])
    assert {c.reason for c in cmds} == {(1, 2)}
    confirm(act, cmds, T0)
    assert act.update(T0 + 1, [b]) == []
    assert by_target(act.update(T0 + 2, [])) == {"D-EX": "unlock", "EL.F1": "release"}


def test_unconfirmed_command_is_resent_with_backoff_until_confirmed() -> None:
    act = Actuators(SITE)
    a = alarm(1, A.EXIT, "B1")
    act.update(T0, [a])
    sends: list[tuple[float, int]] = []
    t = T0
    while t < T0 + 200:
        t += 0.5
        sends += [(c.t - T0, c.attempt) for c in act.update(t, [a]) if c.target == "D-EX"]
    waits = [b[0] - a_[0] for a_, b in zip([(0.0, 1), *sends], sends, strict=False)]
    assert [s[1] for s in sends[:3]] == [2, 3, 4]
    assert waits[:4] == [TIMEOUT, 2 * TIMEOUT, 4 * TIMEOUT, 8 * TIMEOUT]
    assert max(waits) <= SITE.rules.actuators.max_backoff_s
    act.report("D-EX", "fault", t)  # a fault is no confirmation
    assert act.targets["D-EX"].pending is not None
    act.report("D-EX", "locked", t)
    assert act.targets["D-EX"].pending is None
    assert [c for c in act.update(t + 500, [a]) if c.target == "D-EX"] == []


def test_fire_release_is_never_relocked_until_normal_and_cleared_by_a_human() -> None:
    act = Actuators(SITE)
    a = alarm(1, A.EXIT, "B1")
    confirm(act, act.update(T0, [a]), T0)
    assert act.report("D-EX", "fire_release", T0 + 10) == []
    for k in range(1, 400):  # the alarm stays open for a long time: no lock, no resend
        assert [c for c in act.update(T0 + 10 + k, [a]) if c.target == "D-EX"] == []
    with pytest.raises(ActuatorError, match="still reports fire_release"):
        act.clear_fire("D-EX", "security1", T0 + 500)
    assert act.report("D-EX", "unlocked", T0 + 600) == []  # normal again, not yet cleared
    assert [c for c in act.update(T0 + 601, [a]) if c.target == "D-EX"] == []
    (cmd,) = act.clear_fire("D-EX", "security1", T0 + 700)
    assert (cmd.target, cmd.command, cmd.reason) == ("D-EX", "lock", (1,))
    assert act.targets["D-EX"].fire_cleared_by == "security1"
    with pytest.raises(ActuatorError, match="not in fire release"):
        act.clear_fire("D-EX", "security1", T0 + 701)


def test_fire_release_while_a_lock_is_pending_drops_it() -> None:
    act = Actuators(SITE)
    a = alarm(1, A.EXIT, "B1")
    act.update(T0, [a])
    act.report("D-EX", "fire_release", T0 + 1)
    assert [c for c in act.update(T0 + 60, [a]) if c.target == "D-EX"] == []
    act.report("D-EX", "locked", T0 + 70)  # normal, but nobody cleared it
    assert [c for c in act.update(T0 + 80, [a]) if c.target == "D-EX"] == []


def test_controller_restarting_unlocked_is_locked_again() -> None:
    act = Actuators(SITE)
    a = alarm(1, A.EXIT, "B1")
    confirm(act, act.update(T0, [a]), T0)
    (cmd,) = act.report("D-EX", "unlocked", T0 + 30)
    assert (cmd.command, cmd.attempt) == ("lock", 1)
    assert act.report("D-EX", "locked", T0 + 31) == []
    a.state = AlarmState.CLOSED
    confirm(act, act.update(T0 + 40, [a]), T0 + 40)
    assert act.report("D-EX", "locked", T0 + 50) == []  # the hospital's own lock: not ours


def test_report_rejects_unknown_targets_and_states() -> None:
    act = Actuators(SITE)
    with pytest.raises(ActuatorError, match="unknown actuator 'D-R1'"):
        act.report("D-R1", "locked", T0)
    with pytest.raises(ActuatorError, match="not one of"):
        act.report("EL.F1", "locked", T0)


def test_topics_and_payloads_round_trip() -> None:
    cmd = Command("elevator", "EL.F1", "hold", (3, 4), T0, 2, "F1")
    assert cmd.topic == command_topic("elevator", "EL.F1") == "rtls/v1/actuator/elevator/EL.F1/set"
    body = json.loads(cmd.payload("mini"))
    assert body == {
        "v": 1,
        "site": "mini",
        "kind": "elevator",
        "target": "EL.F1",
        "command": "hold",
        "reason": [3, 4],
        "t": T0,
        "attempt": 2,
        "floor": "F1",
    }
    topic = state_topic("door", "D-EX")
    assert topic == "rtls/v1/actuator/door/D-EX/state" and STATE_FILTER.endswith("/+/+/state")
    rep = parse_state(topic, b'{"v":1,"state":"fire_release","t":12.5}')
    assert (rep.kind, rep.target, rep.state, rep.t) == ("door", "D-EX", "fire_release", 12.5)
    for bad_topic, payload, match in [
        ("rtls/v1/actuator/door/D-EX/set", b'{"v":1,"state":"locked"}', "not an actuator state"),
        ("rtls/v1/actuator/gate/X/state", b'{"v":1,"state":"locked"}', "unknown actuator kind"),
        (topic, b"not json", "not JSON"),
        (topic, b'{"v":2,"state":"locked"}', "v=1"),
        (topic, b'{"v":1,"state":"held"}', "not one of"),
        (topic, b'{"v":1,"state":"locked","t":"soon"}', "finite number"),
    ]:  # fmt: skip
        with pytest.raises(ActuatorError, match=match):
            parse_state(bad_topic, payload)


def test_with_a_real_alarm_book() -> None:
    """Exit raised, acknowledged, cleared, resolved: locked until the resolve."""
    book = AlarmBook()
    act = Actuators(SITE)
    loc = Location("F1", "EXIT", 27.0, 8.0, 1.0)
    book.apply([Condition(A.EXIT, "B1", True, T0, loc)], T0)
    assert by_target(act.update(T0, book.active())) == {"D-EX": "lock", "EL.F1": "hold"}
    (a,) = book.active()
    book.acknowledge(a.id, "nurse1", T0 + 5)
    book.apply([Condition(A.EXIT, "B1", False, T0 + 20)], T0 + 20)
    assert all(c.command in ("lock", "hold") for c in act.update(T0 + 21, book.active()))
    book.resolve(a.id, "nurse1", "false", "baby was with the paediatrician", T0 + 30)
    assert by_target(act.update(T0 + 30, book.active())) == {"D-EX": "unlock",
                                                             "EL.F1": "release"}  # fmt: skip


def test_actuator_parameters_from_the_site_file() -> None:
    from rtls.errors import SiteError

    site = make_site(actuators={"confirm_timeout_s": 2.0, "max_backoff_s": 8.0})
    act = Actuators(site)
    act.update(T0, [alarm(1, A.EXIT, "B1")])
    sends = [c.t - T0 for k in range(1, 60) for c in act.update(T0 + k, [alarm(1, A.EXIT, "B1")])
             if c.target == "D-EX"]  # fmt: skip
    assert sends[:4] == [2.0, 6.0, 14.0, 22.0]  # 2, 4, 8, then capped at 8
    with pytest.raises(SiteError, match="max_backoff_s"):
        make_site(actuators={"confirm_timeout_s": 10.0, "max_backoff_s": 5.0})
