"""Lone-worker rules over badge telemetry: bursts, pre-alarm, cancel, confirm, check-in, privacy."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from firmware_sim.accelerometer import compose
from firmware_sim.tags import Frame, StaffBadge
from numpy.typing import NDArray
from pydantic import ValidationError

from rtls.advertisement import Status, Status2, decode_body
from rtls.alarm import AlarmBook, AlarmState, AlarmType, Condition, Location
from rtls.decode_result import TELEMETRY_DTYPE
from rtls.rules import StaffRules
from rtls.site import Site
from rtls.worker import RESTART_GAP_S, Downlink, LoneWorkers, WorkerError
from tests.rtls.small_site import small_site

B1, M1, S1, S2 = 0, 3, 6, 7  # tag indices in small_site()
SOS, PRE, FALL, MAN_DOWN = Status.SOS, Status.PRE_ALARM, Status.FALL, Status.MAN_DOWN
CANCELLED, CONFIRMED, REPEAT = (Status2.PRE_ALARM_CANCELLED, Status2.CONSOLE_CONFIRMED,
                                Status2.BURST_REPEAT)  # fmt: skip

Row = tuple[float, int, int, int, int]  # t, tag, seq, status, status2


@pytest.fixture(scope="module")
def site() -> Site:
    return small_site()


def _tel(rows: Sequence[Row], gateways: Sequence[int] = (0,)) -> NDArray[np.void]:
    """Telemetry rows, each heard by every gateway of ``gateways``."""
    out = np.zeros(len(rows) * len(gateways), dtype=TELEMETRY_DTYPE)
    k = 0
    for t, tag, seq, status, status2 in rows:
        for g in gateways:
            out[k] = (t + 0.001 * g, g, tag, seq, int(status), int(status2), 90, 20)
            k += 1
    return out


def _burst(t: float, tag: int, seq: int, status: int, status2: int = 0) -> list[Row]:
    """A change and its three repeats, as the badge sends them."""
    first: Row = (t, tag, seq, status, status2)
    return [first] + [(t + 0.1 * k, tag, seq, status, status2 | REPEAT) for k in (1, 2, 3)]


def _keys(conds: list[Condition]) -> list[tuple[str, str, bool]]:
    return [(c.type.value, c.subject, c.active) for c in conds]


# -- telemetry ---------------------------------------------------------------------------------


def test_a_burst_heard_by_three_gateways_raises_one_sos(site: Site) -> None:
    w = LoneWorkers(site)
    tel = _tel([(0.0, S1, 9, 0, 0), *_burst(1.0, S1, 10, SOS)], gateways=(0, 1, 2))
    np.random.default_rng(3).shuffle(tel)  # any arrival order
    up = w.update(tel, 1.5)
    assert _keys(up.conditions) == [("sos", "S1", True)]
    assert up.conditions[0].t == pytest.approx(1.0)
    assert up.conditions[0].detail == {"seq": 10}
    assert (up.frames, up.dropped) == (2, 15 - 2)
    # the rest of the burst in the next batch, and a heartbeat with the same state: nothing
    again = w.update(_tel([*_burst(1.0, S1, 10, SOS)[2:], (3.3, S1, 11, SOS, 0)]), 3.5)
    assert again.conditions == [] and again.frames == 1
    assert w.flags("S1") == SOS


def test_flags_dropping_clear_the_conditions(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel(_burst(0.0, S1, 1, SOS | Status.PULL_CORD)), 1.0)
    up = w.update(_tel(_burst(5.0, S1, 2, Status.PULL_CORD)), 6.0)
    assert _keys(up.conditions) == [("sos", "S1", False)]
    up = w.update(_tel([(9.0, S1, 3, 0, 0)]), 9.0)
    assert _keys(up.conditions) == [("pull_cord", "S1", False)]


def test_late_older_frame_is_dropped(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel([(1.0, S1, 10, SOS, 0)]), 1.0)
    up = w.update(_tel([(0.5, S1, 9, 0, 0)], gateways=(4,)), 1.2)  # a slow gateway's copy
    assert up.conditions == [] and up.dropped == 1
    assert w.flags("S1") == SOS


def test_sequence_numbers_wrap(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel([(1.0, S1, 0xFFFF, 0, 0)]), 1.0)
    up = w.update(_tel([(2.0, S1, 0, SOS, 0)]), 2.0)
    assert _keys(up.conditions) == [("sos", "S1", True)]


def test_a_restarted_badge_is_heard_again_after_a_gap(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel([(1.0, S1, 40000, 0, 0)]), 1.0)
    soon = w.update(_tel([(2.0, S1, 30000, SOS, 0)]), 2.0)  # "older" and soon after: a stray
    assert soon.conditions == []
    later = 1.0 + RESTART_GAP_S + 5.0
    rows = [(later, S1, 30000, SOS, 0), (later + 2.0, S1, 30001, SOS, 0)]
    up = w.update(_tel(rows), later + 2.0)
    assert _keys(up.conditions) == [("sos", "S1", True)] and up.frames == 2
    assert w.update(_tel([(later + 4.0, S1, 30002, 0, 0)]), later + 4.0).conditions


def test_changes_within_one_batch_are_taken_in_sequence_order(site: Site) -> None:
    w = LoneWorkers(site)
    rows = [(0.0, S2, 5, 0, 0), (1.0, S2, 6, PRE, 0), (1.2, S2, 7, FALL, 0)]
    tel = _tel(rows, gateways=(0, 1))[::-1].copy()  # arrival order reversed
    up = w.update(tel, 1.5)
    assert _keys(up.conditions) == [
        ("pre_alarm", "S2", True), ("pre_alarm", "S2", False), ("fall", "S2", True)]  # fmt: skip
    assert up.conditions[1].detail == {"seq": 7, "superseded_by": "fall"}
    assert [(s.type, s.subject, s.by, s.t) for s in up.superseded] == [
        (AlarmType.PRE_ALARM, "S2", AlarmType.FALL, pytest.approx(1.2))]  # fmt: skip


def test_pre_alarm_cancelled_by_the_wearer_clears_without_alarm(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel(_burst(10.0, S1, 1, PRE)), 10.5)
    assert w.in_alarm("S1")
    up = w.update(_tel(_burst(15.0, S1, 2, 0, CANCELLED)), 15.5)
    assert _keys(up.conditions) == [("pre_alarm", "S1", False)]
    assert up.conditions[0].detail == {"seq": 2, "cancelled": True}
    assert up.cancelled == ["S1"] and up.superseded == []
    assert not w.in_alarm("S1")


def test_other_kinds_and_unknown_tags_are_ignored(site: Site) -> None:
    w = LoneWorkers(site)
    tel = _tel([(0.0, B1, 1, Status.TAMPER | SOS, 0), (0.0, M1, 1, SOS, 0), (0.0, -1, 1, SOS, 0),
                (0.0, 99, 1, SOS, 0)])  # fmt: skip
    up = w.update(tel, 1.0)
    assert up.conditions == [] and up.frames == 0
    assert w.update(np.zeros(0, TELEMETRY_DTYPE), 1.0).conditions == []


def test_condition_carries_the_last_known_position(site: Site) -> None:
    w = LoneWorkers(site)
    w.observe([S1, B1], [0, 0], [[12.0, 3.0], [1.0, 1.0]], 4.0, zone=[1, 0], uncertainty=[2.5, 1])
    up = w.update(_tel([(5.0, S1, 1, SOS, 0)]), 5.0)
    assert up.conditions[0].location == Location("L1", "R2", 12.0, 3.0, 2.5)


# -- confirmation downlink ---------------------------------------------------------------------


def test_confirm_sends_a_downlink_until_the_badge_shows_it(site: Site) -> None:
    w = LoneWorkers(site)  # confirm_resend_s 5 s by default
    with pytest.raises(WorkerError, match="no alarm to confirm"):
        w.confirm("S1", 0.0)
    w.update(_tel(_burst(1.0, S1, 1, SOS)), 1.5)
    with pytest.raises(WorkerError, match="no man_down alarm"):
        w.confirm("S1", 2.0, AlarmType.MAN_DOWN)
    dl = w.confirm("S1", 2.0)
    assert dl == Downlink("S1", "confirm", AlarmType.SOS, 2.0, 1, 2.0)
    assert dl.as_dict()["alarm"] == "sos"
    assert w.pending_confirmations() == [dl]
    assert w.due_confirmations(6.9) == []
    resent = w.due_confirmations(7.0)
    assert [(d.attempt, d.sent_t) for d in resent] == [(2, 7.0)]
    assert w.due_confirmations(8.0) == []
    up = w.update(_tel(_burst(8.0, S1, 2, SOS, CONFIRMED)), 8.5)
    assert up.confirmed == ["S1"] and up.conditions == []
    assert w.pending_confirmations() == []
    assert w.due_confirmations(60.0) == []


def test_confirm_picks_the_most_severe_and_reset_drops_the_pending(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel([(1.0, S2, 1, PRE | Status.NO_MOVEMENT, 0)]), 1.0)
    assert w.confirm("S2", 2.0).alarm is AlarmType.NO_MOVEMENT
    assert w.confirm("S2", 2.0, AlarmType.PRE_ALARM).alarm is AlarmType.PRE_ALARM
    up = w.update(_tel([(3.0, S2, 2, 0, 0)]), 3.0)  # badge reset from the console
    assert up.confirmed == [] and w.pending_confirmations() == []


def test_confirming_what_the_badge_already_shows_keeps_nothing_pending(site: Site) -> None:
    w = LoneWorkers(site)
    w.update(_tel([(1.0, S1, 1, MAN_DOWN, CONFIRMED)]), 1.0)
    assert w.confirm("S1", 2.0).alarm is AlarmType.MAN_DOWN
    assert w.pending_confirmations() == []
    with pytest.raises(WorkerError, match="not a staff badge"):
        w.confirm("M1", 2.0)
    with pytest.raises(WorkerError, match="not in site"):
        w.confirm("S9", 2.0)


# -- check-in ----------------------------------------------------------------------------------


def test_check_in_missed_raises_when_due_and_clears_on_check_in() -> None:
    w = LoneWorkers(small_site({"staff": {"check_in_s": 600.0}}))
    assert w.tick(50.0) == []  # no timer before the first check-in
    w.check_in("S1", 100.0)
    assert w.on_duty("S1")
    assert w.tick(699.0) == []
    raised = w.tick(750.0)
    assert [(c.type, c.subject, c.active, c.t) for c in raised] == [
        (AlarmType.CHECK_IN_MISSED, "S1", True, 700.0)]  # fmt: skip
    assert w.in_alarm("S1") and w.position_visible("S1", 750.0)
    assert w.tick(800.0) == []
    w.check_in("S1", 810.0)
    assert [(c.active, c.t) for c in w.tick(811.0)] == [(False, 810.0)]
    assert w.tick(1409.0) == []
    assert [c.t for c in w.tick(1500.0)] == [1410.0]
    w.end_duty("S1", 1600.0)
    assert [(c.active, c.t) for c in w.tick(1601.0)] == [(False, 1600.0)]
    assert w.tick(10_000.0) == [] and not w.on_duty("S1")
    with pytest.raises(WorkerError, match="not on check-in duty"):
        w.end_duty("S1", 10_001.0)
    with pytest.raises(WorkerError, match="not a staff badge"):
        w.check_in("B1", 10_002.0)


def test_check_in_off_by_default(site: Site) -> None:
    w = LoneWorkers(site)
    w.check_in("S1", 0.0)
    assert w.tick(1e6) == []


# -- privacy -----------------------------------------------------------------------------------


def test_position_is_shown_only_during_alarms_and_last_known_is_kept(site: Site) -> None:
    w = LoneWorkers(site)
    w.observe([S1], [0], [[3.0, 4.0]], 1.0, zone=[0])
    where = Location("L1", "R1", 3.0, 4.0, None)
    assert w.last_known("S1") == (where, 1.0)  # kept for the alarm...
    assert not w.position_visible("S1", 1.0) and w.position("S1", 1.0) is None  # ...not shown
    with pytest.raises(WorkerError, match="private outside alarms"):
        w.look("S1", "nurse.ana", 1.0)
    w.observe([S1], [-1], [[np.nan, np.nan]], 2.0)  # lost: the last known position stays
    w.update(_tel(_burst(3.0, S1, 1, PRE)), 3.5)
    assert w.position_visible("S1", 3.5) and w.position("S1", 3.5) == where
    loc, event = w.look("S1", "nurse.ana", 4.0)
    assert loc == where
    assert (event.actor, event.action, event.subject, event.t) == (
        "nurse.ana", "view_position", "S1", 4.0)  # fmt: skip
    w.update(_tel(_burst(5.0, S1, 2, 0, CANCELLED)), 5.5)
    assert not w.position_visible("S1", 6.0)
    assert w.position_visible("S1", 6.0, open_alarm=True)  # the book still has an open alarm
    assert w.last_known("S2") is None


def test_show_position_makes_it_always_visible() -> None:
    w = LoneWorkers(small_site({"staff": {"show_position": True}}))
    w.observe([S2], [0], [[15.0, 5.0]], 1.0)
    assert w.position("S2", 2.0) == Location("L1", None, 15.0, 5.0, None)


# -- persistence -------------------------------------------------------------------------------


def test_state_survives_a_json_round_trip(site: Site) -> None:
    rules = StaffRules(check_in_s=300.0)
    w = LoneWorkers(site, rules)
    w.observe([S1, S2], [0, 0], [[12.0, 3.0], [2.0, 2.0]], 1.0, zone=[1, 0])
    w.update(_tel([*_burst(2.0, S1, 7, SOS), (2.0, S2, 3, 0, 0)]), 2.5)
    w.confirm("S1", 3.0)
    w.check_in("S2", 4.0)
    saved = json.loads(json.dumps(w.to_dict()))
    assert "position" in saved["badges"]["S1"]  # in alarm: kept for the alarm
    assert "position" not in saved["badges"]["S2"]  # not in alarm: not written to disk
    r = LoneWorkers.from_dict(site, saved, rules)
    assert r.to_dict() == saved
    assert r.pending_confirmations() == w.pending_confirmations()
    assert r.update(_tel(_burst(2.0, S1, 7, SOS)), 5.0).frames == 0  # seen before the restart
    assert r.last_known("S1") == w.last_known("S1")
    assert [c.t for c in r.tick(400.0)] == [304.0]
    with pytest.raises(WorkerError, match="format"):
        LoneWorkers.from_dict(site, {"format": 0})
    saved["badges"]["B1"] = saved["badges"].pop("S1")
    with pytest.raises(WorkerError, match="not a staff badge"):
        LoneWorkers.from_dict(site, saved)


def test_confirm_resend_rule_is_validated() -> None:
    assert StaffRules().confirm_resend_s == 5.0
    with pytest.raises(ValidationError, match="confirm_resend_s"):
        StaffRules(confirm_resend_s=0.5)


# -- with the badge firmware and the alarm book ------------------------------------------------


def _telemetry(frames: list[Frame], tag: int, rng: np.random.Generator) -> NDArray[np.void]:
    """The badge's frames as two gateways hear them (each loses a quarter), shuffled."""
    rows = []
    for f in frames:
        a = decode_body(f.body)
        for g in (0, 1):
            if rng.random() < 0.75:
                rows.append((f.t, g, tag, a.seq, int(a.status), int(a.status2), 90, 20))
    out = np.array(rows, dtype=TELEMETRY_DTYPE)
    rng.shuffle(out)
    return out


def _run_badge(
    badge: StaffBadge, w: LoneWorkers, book: AlarmBook, end: float, start: float = 0.0,
    cancel_pre_alarm: bool = False, feed: bool = True,
) -> list[str]:  # fmt: skip
    """Step the world every 0.25 s: badge (accelerometer fed), telemetry batch, rules, book."""
    rng = np.random.default_rng(7)
    trace = compose((("walking", 20.0), ("fall_forward", 100.0)), np.random.default_rng(21),
                    rate_hz=25.0)  # fmt: skip
    actions = []
    for k in range(round(start / 0.25) + 1, round(end / 0.25) + 1):
        now = k * 0.25
        if feed:
            sel = (trace.t > now - 0.25) & (trace.t <= now)
            if sel.any():
                badge.feed_accelerometer(trace.t[sel], trace.acc[sel])
        if cancel_pre_alarm and badge.status & Status.PRE_ALARM:
            badge.press_cancel(now)
        up = w.update(_telemetry(badge.due(now), S1, rng), now)
        tr = book.apply(up.conditions, now)
        for s in up.superseded:
            tr += book.supersede(s.type, s.subject, now, s.by.value)
        for tag in up.cancelled:  # the wearer cancelled: the caller closes the pre-alarm
            tr += book.supersede(AlarmType.PRE_ALARM, tag, now, "wearer cancel")
        actions += [f"{x.action}:{x.alarm.type.value}" for x in tr]
    return actions


def test_badge_fall_pre_alarm_is_superseded_then_confirmed() -> None:
    site = small_site()
    w, book = LoneWorkers(site), AlarmBook()
    badge = StaffBadge(site.tag("S1").serial, interval_s=2.0, rng=np.random.default_rng(15))
    actions = _run_badge(badge, w, book, 120.0)
    assert actions[:2] == ["raise:pre_alarm", "clear:pre_alarm"]
    assert "raise:fall" in actions and "close:pre_alarm" in actions
    assert actions.count("raise:fall") == 1  # one alarm, not one per frame or gateway
    fall = book.by_key(AlarmType.FALL, "S1")
    assert fall is not None and fall.state is AlarmState.ACTIVE_UNACK
    assert book.by_key(AlarmType.PRE_ALARM, "S1") is None
    book.acknowledge(fall.id, "nurse.ana", 121.0)
    dl = w.confirm("S1", 121.0)
    assert dl.alarm is AlarmType.FALL
    badge.confirm(121.5)  # the service published the downlink; the badge got it
    up = w.update(_telemetry(badge.due(122.0), S1, np.random.default_rng(1)), 122.0)
    assert up.confirmed == ["S1"] and w.pending_confirmations() == []


def test_badge_cancelled_pre_alarm_raises_no_alarm() -> None:
    site = small_site()
    w, book = LoneWorkers(site), AlarmBook()
    badge = StaffBadge(site.tag("S1").serial, interval_s=2.0, rng=np.random.default_rng(16))
    actions = _run_badge(badge, w, book, 40.0, cancel_pre_alarm=True)
    assert "raise:pre_alarm" in actions and "clear:pre_alarm" in actions
    assert not any(a.endswith((":fall", ":man_down", ":no_movement")) for a in actions)
    assert actions[-1] == "close:pre_alarm"
    assert book.by_key(AlarmType.PRE_ALARM, "S1") is None and not book.alarms
