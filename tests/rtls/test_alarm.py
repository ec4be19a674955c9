"""The alarm life cycle (rtls.alarm): pure, no I/O."""

from __future__ import annotations

import pytest

from rtls.alarm import (
    CATALOGUE,
    Alarm,
    AlarmBook,
    AlarmError,
    AlarmState,
    AlarmType,
    Condition,
    Location,
    Outcome,
    Priority,
)
from rtls.rules import AlarmRules, AlarmTypeRules, EscalationStep

S = AlarmState


def on(type_: AlarmType, subject: str, t: float, **kw: object) -> Condition:
    return Condition(type_, subject, True, t, **kw)  # type: ignore[arg-type]


def off(type_: AlarmType, subject: str, t: float) -> Condition:
    return Condition(type_, subject, False, t)


def test_catalogue_covers_every_type_and_domain_latching() -> None:
    assert set(CATALOGUE) == set(AlarmType)
    latching = {t for t, s in CATALOGUE.items() if s.latching}
    for t in ("exit", "tamper", "sos", "pull_cord", "code_pink", "man_down"):
        assert AlarmType(t) in latching
    assert CATALOGUE[AlarmType.LOW_BATTERY].priority is Priority.LOW


def test_one_alarm_per_condition_not_per_beacon() -> None:
    book = AlarmBook()
    out = book.apply([on(AlarmType.EXIT, "B03", 1.0) for _ in range(5)], 1.0)
    assert [t.action for t in out] == ["raise"]
    assert len(book.alarms) == 1
    a = book.by_key(AlarmType.EXIT, "B03")
    assert a is not None and a.state is S.ACTIVE_UNACK and a.priority is Priority.HIGH


def test_latching_alarm_needs_ack_and_resolve_with_comment() -> None:
    book = AlarmBook()
    (raised,) = book.apply([on(AlarmType.EXIT, "B03", 1.0)], 1.0)
    aid = raised.alarm_id
    cleared = book.apply([off(AlarmType.EXIT, "B03", 5.0)], 5.0)
    assert [(t.action, t.to_state) for t in cleared] == [("clear", S.CLEARED_UNACK)]
    with pytest.raises(AlarmError, match="acknowledged before"):
        book.resolve(aid, "nurse1", "genuine", "found", 6.0)
    (ack,) = book.acknowledge(aid, "nurse1", 6.0)
    assert ack.to_state is S.CLEARED and ack.actor == "nurse1"
    with pytest.raises(AlarmError, match="comment"):
        book.resolve(aid, "nurse1", "genuine", "  ", 7.0)
    with pytest.raises(AlarmError, match="outcome"):
        book.resolve(aid, "nurse1", "maybe", "x", 7.0)
    (res,) = book.resolve(aid, "sec1", Outcome.TEST, "monthly test", 8.0)
    assert res.to_state is S.CLOSED and res.alarm.outcome is Outcome.TEST
    assert res.alarm.closed_by == "sec1" and res.alarm.comment == "monthly test"
    assert aid not in book.alarms


def test_latching_alarm_never_closes_by_itself() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.SOS, "W01", 0.0)], 0.0)
    book.acknowledge(r.alarm_id, "sec", 1.0)
    out = book.apply([off(AlarmType.SOS, "W01", 2.0)], 1000.0)
    assert out[0].to_state is S.CLEARED
    assert book.get(r.alarm_id).state is S.CLEARED


def test_non_latching_closes_when_cleared_and_acknowledged() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.TAG_LOOSE, "B01", 0.0)], 0.0)
    book.acknowledge(r.alarm_id, "nurse", 1.0)
    (c,) = book.apply([off(AlarmType.TAG_LOOSE, "B01", 2.0)], 2.0)
    assert c.to_state is S.CLOSED and c.alarm.outcome is Outcome.CLEARED
    # the other order: cleared first, then acknowledged
    (r2,) = book.apply([on(AlarmType.TAG_LOOSE, "B02", 3.0)], 3.0)
    book.apply([off(AlarmType.TAG_LOOSE, "B02", 4.0)], 4.0)
    (a2,) = book.acknowledge(r2.alarm_id, "nurse", 5.0)
    assert a2.from_state is S.CLEARED_UNACK and a2.to_state is S.CLOSED
    with pytest.raises(AlarmError, match="no open alarm"):
        book.acknowledge(r2.alarm_id, "nurse", 6.0)


def test_reactivation_of_a_cleared_alarm_is_the_same_alarm() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.EXIT, "B03", 0.0)], 0.0)
    book.apply([off(AlarmType.EXIT, "B03", 1.0)], 1.0)
    (again,) = book.apply([on(AlarmType.EXIT, "B03", 2.0)], 2.0)
    assert again.action == "reactivate" and again.alarm_id == r.alarm_id
    assert again.alarm.occurrences == 2 and again.to_state is S.ACTIVE_UNACK


def test_resolved_while_condition_holds_does_not_reraise_until_it_clears() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.EXIT, "B03", 0.0)], 0.0)
    book.acknowledge(r.alarm_id, "sec", 1.0)
    book.resolve(r.alarm_id, "sec", "false", "carried by staff", 2.0)
    assert book.apply([on(AlarmType.EXIT, "B03", 3.0)], 3.0) == []
    book.apply([off(AlarmType.EXIT, "B03", 4.0)], 4.0)
    (new,) = book.apply([on(AlarmType.EXIT, "B03", 5.0)], 5.0)
    assert new.action == "raise" and new.alarm_id != r.alarm_id


def test_escalation_steps_until_acknowledged() -> None:
    rules = AlarmRules(
        escalation={
            "high": [
                EscalationStep(group="nurses", after_s=0.0),
                EscalationStep(group="security", after_s=30.0),
                EscalationStep(group="manager", after_s=90.0),
            ]
        }
    )
    book = AlarmBook(rules)
    (r,) = book.apply([on(AlarmType.TAMPER, "B01", 100.0)], 100.0)
    assert r.alarm.group == "nurses" and r.alarm.next_escalation_t == 130.0
    assert book.tick(129.9) == []
    (e1,) = book.tick(130.0)
    assert (e1.action, e1.detail["group"], e1.t) == ("escalate", "security", 130.0)
    # a restart after a long outage: the missed step is taken at its own time on the next tick
    (e2,) = book.tick(500.0)
    assert (e2.detail["group"], e2.t) == ("manager", 190.0)
    assert book.tick(1000.0) == []
    # acknowledging stops the chain
    (r2,) = book.apply([on(AlarmType.TAMPER, "B02", 0.0)], 0.0)
    book.acknowledge(r2.alarm_id, "n", 10.0)
    assert book.tick(1000.0) == []


def test_rising_priority_while_condition_holds() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.LOITER, "B05", 0.0)], 0.0)
    assert r.alarm.priority is Priority.MEDIUM
    rise = CATALOGUE[AlarmType.LOITER].rise_after_s
    assert rise is not None
    out = book.tick(rise + 1.0)
    assert out[0].action == "priority" and out[0].alarm.priority is Priority.HIGH
    assert out[0].t == rise
    assert all(t.action == "escalate" for t in out[1:])


def test_shelving_only_low_priority_technical() -> None:
    book = AlarmBook()
    (b,) = book.apply([on(AlarmType.LOW_BATTERY, "B07", 0.0)], 0.0)
    (x,) = book.apply([on(AlarmType.EXIT, "B07", 0.0)], 0.0)
    (g,) = book.apply([on(AlarmType.GATEWAY_SILENT, "G01", 0.0)], 0.0)
    with pytest.raises(AlarmError, match="cannot be shelved"):
        book.shelve(x.alarm_id, "tech", 600.0, 1.0)
    with pytest.raises(AlarmError, match="cannot be shelved"):
        book.shelve(g.alarm_id, "tech", 600.0, 1.0)  # medium: not shelvable
    with pytest.raises(AlarmError, match="duration"):
        book.shelve(b.alarm_id, "tech", 10 * 86400.0, 1.0)
    (s,) = book.shelve(b.alarm_id, "tech", 600.0, 1.0)
    assert s.action == "shelve" and s.actor == "tech" and s.alarm.shelved_until == 601.0
    out = [t for t in book.tick(700.0) if t.alarm_id == b.alarm_id]
    assert out[0].action == "unshelve" and out[0].t == 601.0


def test_site_overrides_priority_but_not_latching_of_safety_alarms() -> None:
    rules = AlarmRules(types={"gateway_silent": AlarmTypeRules(priority="low")})
    book = AlarmBook(rules)
    (g,) = book.apply([on(AlarmType.GATEWAY_SILENT, "G01", 0.0)], 0.0)
    assert g.alarm.priority is Priority.LOW
    book.shelve(g.alarm_id, "tech", 60.0, 1.0)  # now shelvable
    with pytest.raises(ValueError, match="always latches"):
        AlarmRules(types={"exit": AlarmTypeRules(latching=False)})
    with pytest.raises(ValueError, match="unknown alarm type"):
        AlarmRules(types={"exitt": AlarmTypeRules()})
    with pytest.raises(ValueError, match="increase"):
        AlarmRules(escalation={"high": [EscalationStep(group="a", after_s=0.0),
                                        EscalationStep(group="b", after_s=0.0)]})  # fmt: skip


def test_condition_priority_overrides_catalogue() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.TAG_SILENT, "W01", 0.0, priority=Priority.MEDIUM)], 0.0)
    assert r.alarm.priority is Priority.MEDIUM


def test_supersede_closes_the_pre_alarm() -> None:
    book = AlarmBook()
    book.apply([on(AlarmType.PRE_ALARM, "W02", 0.0)], 0.0)
    (c,) = book.supersede(AlarmType.PRE_ALARM, "W02", 20.0, "man_down")
    assert c.to_state is S.CLOSED and "man_down" in (c.alarm.comment or "")
    assert book.by_key(AlarmType.PRE_ALARM, "W02") is None


def test_location_follows_subject_and_round_trip_restore() -> None:
    book = AlarmBook()
    loc1 = Location("L1", "R103", 10.0, 5.0, 1.5)
    loc2 = Location("L1", "L1-CORR", 20.0, 9.0, 2.0)
    (r,) = book.apply([on(AlarmType.TAMPER, "B03", 0.0, location=loc1)], 0.0)
    book.apply([on(AlarmType.TAMPER, "B03", 1.0, location=loc2)], 1.0)
    a = book.get(r.alarm_id)
    assert a.location == loc2
    book.acknowledge(a.id, "n", 2.0)
    copy = Alarm.from_dict(a.as_dict())
    assert copy == a
    restored = AlarmBook()
    restored.restore([copy], next_id=book.next_id, held=book.held)
    assert restored.get(a.id).state is S.ACTIVE_ACK
    (r2,) = restored.apply([on(AlarmType.EXIT, "B09", 3.0)], 3.0)
    assert r2.alarm_id == book.next_id  # ids never reused
    assert restored.apply([on(AlarmType.TAMPER, "B03", 4.0)], 4.0) == []


def test_transition_snapshots_do_not_change_afterwards() -> None:
    book = AlarmBook()
    (r,) = book.apply([on(AlarmType.EXIT, "B03", 0.0)], 0.0)
    book.acknowledge(r.alarm_id, "n", 1.0)
    assert r.alarm.state is S.ACTIVE_UNACK and r.as_dict()["to"] == "active_unacknowledged"
