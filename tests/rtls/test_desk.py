"""The alarm desk (rtls.desk): commands, admission, badge downlinks, meetings. Pure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtls.advertisement import Status
from rtls.alarm import AlarmState, AlarmType
from rtls.decode_result import TELEMETRY_DTYPE
from rtls.desk import CommandError, Desk
from rtls.engine import Engine, TickResult
from rtls.site import load_site
from rtls.track import TrackEstimate

SITE = load_site()
IDS = [t.id for t in SITE.tags]
T0 = 1_800_000_000.0


def _admitted() -> Desk:
    desk = Desk(SITE)
    for name, args in desk.admission_orders():
        desk.command(name, args, "admission", T0)
    return desk


def _tick(engine: Engine, now: float, placed: dict[str, tuple[str, float, float]],
          telemetry: np.ndarray | None = None) -> TickResult:  # fmt: skip
    """An engine tick whose estimate puts the tags of ``placed`` (id -> zone, x, y) there
    with 0.5 m uncertainty, everything else unknown."""
    base = engine.tick(now)
    n = len(IDS)
    xy, floor = np.zeros((n, 2)), np.full(n, -1, dtype=np.intp)
    known, zone = np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64)
    zone_index = {z.id: i for i, z in enumerate(SITE.zones)}
    for tag, (z, x, y) in placed.items():
        i = IDS.index(tag)
        xy[i], floor[i], known[i], zone[i] = (x, y), 0, True, zone_index[z]
    cov = np.tile(np.eye(2) * 0.125, (n, 1, 1))
    est = TrackEstimate(now, xy, np.zeros((n, 2)), floor, cov, known, np.full(n, now))
    tele = base.telemetry if telemetry is None else telemetry
    return dataclasses.replace(base, estimate=est, zone=zone, telemetry=tele)


def test_admission_pairs_babies_with_the_mother_of_their_room() -> None:
    desk = _admitted()
    assert desk.ward.mother_of("B01") == "M01"
    assert desk.ward.mother_of("B13") == "M11"  # twins in R111 share their mother
    assert all(desk.ward.bonded(t.id) for t in SITE.tags if t.kind.value == "infant")
    assert desk.admission_orders() == []  # nothing left to admit


def test_commands_refuse_clearly_and_change_nothing() -> None:
    desk = _admitted()
    with pytest.raises(CommandError, match="unknown command"):
        desk.command("unlock_everything", {}, "nurse", T0)
    with pytest.raises(CommandError, match="user"):
        desk.command("code_pink", {"reason": "x"}, " ", T0)
    with pytest.raises(CommandError, match="'alarm'"):
        desk.command("acknowledge", {"alarm": "12"}, "nurse", T0)
    with pytest.raises(CommandError, match="'duration_s'"):
        desk.command("sign_out", {"baby": "B01", "escort": "S01", "reason": "x"}, "nurse", T0)
    assert desk.ward.signed_out("B01") is None
    out = desk.command("sign_out", {"baby": "B01", "escort": "S01", "duration_s": 600.0,
                                    "reason": "imaging"}, "nurse.anna", T0)  # fmt: skip
    assert out.events and out.events[0]["actor"] == "nurse.anna"
    assert "ward" in out.documents


def test_badge_alarm_acknowledge_confirms_and_resolve_resets_the_badge() -> None:
    desk = _admitted()
    engine = Engine(SITE)
    w = IDS.index("W01")
    tele = np.zeros(1, dtype=TELEMETRY_DTYPE)
    tele[0] = (T0 + 1, 0, w, 5, int(Status.SOS), 0, 80, 20)
    out = desk.step(T0 + 1, _tick(engine, T0 + 1, {}, tele), None)
    (raised,) = [tr for tr in out.transitions if tr.alarm.type is AlarmType.SOS]
    ack = desk.command("acknowledge", {"alarm": raised.alarm_id}, "security.sam", T0 + 2)
    assert [(d.tag, d.command) for d in ack.downlinks] == [("W01", "confirm")]
    assert ack.transitions[0].to_state is AlarmState.ACTIVE_ACK
    args = {"alarm": raised.alarm_id, "outcome": "false", "comment": "pressed by mistake"}
    res = desk.command("resolve", args, "security.sam", T0 + 3)
    assert [(d.tag, d.command) for d in res.downlinks] == [("W01", "reset")]
    assert res.transitions[-1].to_state is AlarmState.CLOSED


def test_broker_link_lost_is_raised_after_its_delay_and_clears() -> None:
    desk = _admitted()
    lost = SITE.rules.infrastructure.broker_lost_s
    desk.link(T0, False)
    late = desk.step(T0 + lost + 1, None, None).transitions
    assert [tr.alarm.type for tr in late if tr.action == "raise"] == [AlarmType.BROKER_LINK_LOST]
    up = T0 + lost + 5
    back = desk.link(up, True).transitions
    hold = SITE.rules.infrastructure.clear_hold_s
    back += desk.step(up + hold + 1, None, None).transitions  # clears once the link held
    cleared = [tr for tr in back if tr.action in ("clear", "close")]
    assert [tr.alarm.type for tr in cleared] == [AlarmType.BROKER_LINK_LOST]


@pytest.mark.parametrize(("mother", "zone", "expect"), [
    ("M05", "R101", True),     # another baby's mother held at B01's cot
    ("M01", "R101", False),    # B01's own mother
    ("M05", "L1-CORR", False),  # a meeting in the corridor is just passing by
])  # fmt: skip
def test_mother_held_at_the_wrong_baby_raises_mismatch(
    mother: str, zone: str, expect: bool
) -> None:
    desk = _admitted()
    engine = Engine(SITE)
    where = next(z for z in SITE.zones if z.id == zone)
    cx, cy = np.mean(np.asarray(where.polygon, dtype=float), axis=0)
    raised = []
    for k in range(0, 25):  # 24 s together, 0.5 m apart
        now = T0 + 100 + k
        tick = _tick(engine, now, {"B01": (zone, cx, cy), mother: (zone, cx + 0.5, cy)})
        raised += [tr for tr in desk.step(now, tick, None).transitions
                   if tr.alarm.type is AlarmType.MISMATCH and tr.action == "raise"]  # fmt: skip
    assert bool(raised) is expect
    if expect:
        assert raised[0].alarm.subject == "B01"
        assert raised[0].t >= T0 + 100 + desk.meeting.hold_s  # held, not a glance
