"""The alarm desk (rtls.desk): commands, admission, tag downlinks, the mismatch flag. Pure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtls.advertisement import Status, Status2
from rtls.alarm import AlarmState, AlarmType
from rtls.decode_result import TELEMETRY_DTYPE
from rtls.desk import CommandError, Desk
from rtls.engine import Engine, TickResult
from rtls.errors import RtlsError
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
    for bad in (float("nan"), float("inf"), 345876451382054092800 ** 20):  # a huge JSON integer
        with pytest.raises(CommandError, match="'duration_s' must be a finite number"):
            desk.command("sign_out", {"baby": "B01", "escort": "S01", "reason": "x",
                                      "duration_s": bad}, "nurse", T0)  # fmt: skip
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


def test_ward_acts_send_the_bracelet_its_pairing() -> None:
    desk = Desk(SITE)
    serial = {t.id: t.serial for t in SITE.tags}

    def sent(name: str, **args: str) -> list[tuple[str, str, int, str | None]]:
        out = desk.command(name, args, "nurse.anna", T0)
        return [(d.tag, d.command, d.as_dict()["mother"], d.as_dict()["mother_tag"])
                for d in out.downlinks]  # fmt: skip

    assert sent("admit", baby="B01") == [("B01", "pair", 0, None)]  # clears a stale pairing
    assert sent("pair", baby="B01", mother="M05") == [("B01", "pair", serial["M05"], "M05")]
    assert sent("unpair", baby="B01", reason="wrong mother") == [("B01", "pair", 0, None)]
    assert sent("pair", baby="B01", mother="M01") == [("B01", "pair", serial["M01"], "M01")]
    with pytest.raises(RtlsError):  # refused: nothing is sent
        desk.command("pair", {"baby": "B01", "mother": "M02"}, "nurse.anna", T0)
    args = {"baby": "B01", "escort": "S01", "duration_s": 60.0, "reason": "imaging"}
    assert desk.command("sign_out", args, "nurse.anna", T0).downlinks == []  # pairing unchanged
    assert sent("return", baby="B01") == []
    assert sent("discharge", baby="B01") == [("B01", "pair", 0, None)]
    orders = Desk(SITE)
    pairs = [d for name, args in orders.admission_orders()
             for d in orders.command(name, args, "admission", T0).downlinks]  # fmt: skip
    last = {d.tag: d.as_dict()["mother"] for d in pairs}  # the last word per bracelet
    assert last["B01"] == serial["M01"] and last["B13"] == last["B11"] == serial["M11"]
    assert set(last) == {t.id for t in SITE.tags if t.kind.value == "infant"}


def _flagged(tag: str, status2: int, now: float) -> np.ndarray:
    tele = np.zeros(1, dtype=TELEMETRY_DTYPE)
    tele[0] = (now, 0, IDS.index(tag), int(now) & 0xFFFF, int(Status.SKIN_CONTACT), status2, 80,
               14)  # fmt: skip
    return tele


def test_bracelet_mismatch_flag_raises_mismatch_at_the_baby_naming_the_mothers() -> None:
    desk = _admitted()
    desk.command("discharge", {"baby": "B02"}, "nurse", T0)  # B02's bracelet is free now
    engine = Engine(SITE)
    room = next(z for z in SITE.zones if z.id == "R101")
    cx, cy = np.mean(np.asarray(room.polygon, dtype=float), axis=0)
    placed = {"B01": ("R101", cx, cy), "M01": ("R101", cx + 0.2, cy),  # her own mother, closest
              "M05": ("R101", cx + 0.5, cy), "M03": ("R101", cx + 3.0, cy)}  # fmt: skip
    flag = int(Status2.MISMATCH)
    changes = []
    for k in range(0, 20):
        now = T0 + 100 + k
        on = 2 <= k < 12
        tele = np.concatenate([_flagged("B01", flag if on else 0, now),
                               _flagged("B02", flag, now)])  # fmt: skip
        out = desk.step(now, _tick(engine, now, placed, tele), None)
        changes += [(tr.t - T0 - 100, tr.action, tr.alarm) for tr in out.transitions
                    if tr.alarm.type is AlarmType.MISMATCH]  # fmt: skip
    hold, held = SITE.rules.infant.clear_hold_s, SITE.rules.infant.mismatch_hold_s
    assert [(t, action) for t, action, _ in changes] == [(2.0 + held, "raise"),
                                                         (12.0 + hold, "clear")]  # fmt: skip
    alarm = changes[0][2]
    assert alarm.subject == "B01" and alarm.location is not None
    assert alarm.location.zone == "R101"  # located at the baby
    assert alarm.detail["paired_mother"] == "M01"
    assert alarm.detail["mother"] == "M05"  # the nearest other mother tag, best effort
    assert [m["tag"] for m in alarm.detail["nearest_mothers"]][:2] == ["M05", "M03"]


def test_a_workers_position_is_published_only_while_in_alarm() -> None:
    desk = _admitted()
    engine = Engine(SITE)
    w, b = IDS.index("W02"), IDS.index("B01")
    vis = desk.visible(T0)
    assert vis[b] and not vis[w]  # babies always; a lone worker is private outside alarms
    tele = np.zeros(1, dtype=TELEMETRY_DTYPE)
    tele[0] = (T0 + 1, 0, w, 7, int(Status.SOS), 0, 80, 20)
    (sos,) = [tr for tr in desk.step(T0 + 1, _tick(engine, T0 + 1, {}, tele), None).transitions
              if tr.alarm.type is AlarmType.SOS]  # fmt: skip
    assert desk.visible(T0 + 1)[w]
    desk.command("acknowledge", {"alarm": sos.alarm_id}, "sec", T0 + 2)
    desk.command("resolve", {"alarm": sos.alarm_id, "outcome": "test", "comment": "drill"},
                 "sec", T0 + 3)  # fmt: skip
    tele[0] = (T0 + 4, 0, w, 8, 0, 0, 80, 20)  # the badge reset (downlink): no alarm flags
    desk.step(T0 + 4, _tick(engine, T0 + 4, {}, tele), None)
    assert not desk.visible(T0 + 4)[w]


def test_documents_go_with_each_alarm_change_and_otherwise_at_most_every_second() -> None:
    desk = _admitted()
    engine = Engine(SITE)
    room = next(z for z in SITE.zones if z.id == "R101")
    cx, cy = np.mean(np.asarray(room.polygon, dtype=float), axis=0)
    tele = np.zeros(1, dtype=TELEMETRY_DTYPE)
    tele[0] = (T0 + 1, 0, IDS.index("B01"), 9, int(Status.TAMPER), 0, 80, 20)
    out = desk.step(T0 + 1, _tick(engine, T0 + 1, {"B01": ("R101", cx, cy)}, tele), None)
    (cut,) = [tr for tr in out.transitions if tr.alarm.type is AlarmType.TAMPER]
    assert "ward" in out.documents  # the raise: at once
    # the baby is carried 2 m: the alarm follows (a condition, no transition), documents wait
    moved = {"B01": ("R101", cx + 2.0, cy)}
    out = desk.step(T0 + 1.25, _tick(engine, T0 + 1.25, moved), None)
    assert out.transitions == [] and out.documents == {}
    assert desk.book.get(cut.alarm_id).location.x == pytest.approx(cx + 2.0, abs=0.01)
    out = desk.step(T0 + 1.5, _tick(engine, T0 + 1.5, moved), None)  # nothing new, not due yet
    assert out.documents == {}
    out = desk.step(T0 + 2.0, _tick(engine, T0 + 2.0, moved), None)  # a second later: due
    assert "workers" in out.documents and "ward" in out.documents
    out = desk.step(T0 + 2.25, _tick(engine, T0 + 2.25, moved), None)
    assert out.documents == {}  # written, nothing has changed since
