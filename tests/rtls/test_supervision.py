"""Supervision (rtls.supervision): the no-flapping latch, gateway / reader silence, broker link."""

from __future__ import annotations

import numpy as np
import pytest

from rtls.alarm import AlarmType, Priority
from rtls.decode_result import SourceStatus
from rtls.supervision import BROKER, Heard, Latch, Supervision
from tests.rtls.rules_site import T0, Driver, make_site

A = AlarmType
SITE = make_site()
GRACE = SITE.rules.infrastructure.startup_grace_s
GW_S = SITE.rules.infrastructure.gateway_silent_s
RD_S = SITE.rules.infrastructure.reader_silent_s


def test_latch_raises_at_once_and_clears_after_an_unbroken_hold() -> None:
    latch = Latch(3)
    rise, drop = latch.step(0.0, [True, False, True], 5.0)
    assert rise.tolist() == [0, 2] and drop.tolist() == []
    latch.step(1.0, [False, False, True], 5.0)
    latch.step(4.0, [True, False, True], 5.0)  # back before the hold: the hold restarts
    latch.step(5.0, [False, False, False], 5.0)
    rise, drop = latch.step(9.9, [False, False, False], 5.0)
    assert drop.tolist() == []
    rise, drop = latch.step(10.0, [False, False, False], 5.0)
    assert drop.tolist() == [0, 2] and not latch.active.any()


def test_latch_ineligible_subject_clears_at_once_and_cannot_rise() -> None:
    latch = Latch(2)
    latch.step(0.0, [True, True], 5.0)
    rise, drop = latch.step(1.0, [True, True], 5.0, eligible=[True, False])
    assert drop.tolist() == [1]
    rise, drop = latch.step(2.0, [True, True], 5.0, eligible=[True, False])
    assert rise.tolist() == [] and latch.active.tolist() == [True, False]


def _settled() -> Driver:
    d = Driver(SITE)
    d.run(GRACE + 10)
    assert d.log == []
    return d


def test_gateway_rebooting_for_5_s_raises_nothing() -> None:
    d = _settled()
    d.down.add("G2")
    d.run(5)
    d.down.discard("G2")
    d.run(120)
    assert d.log == []


def test_gateway_silent_after_gateway_silent_s_with_location_and_priority() -> None:
    d = _settled()
    d.down |= {"G1", "G4"}
    start = d.t
    while len(d.raised(A.GATEWAY_SILENT)) < 2:
        d.step()
    assert d.t - start == pytest.approx(GW_S, abs=0.6)
    by = {c.subject: c for c in d.raised(A.GATEWAY_SILENT)}
    assert by["G1"].priority is None  # the catalogue's: medium
    assert by["G4"].priority is Priority.HIGH  # G4 at x = 28 watches the exit zone
    loc = by["G4"].location
    assert loc is not None and (loc.floor, loc.x, loc.y) == ("F1", 28.0, 5.0)
    d.down.clear()
    back = d.t
    while len(d.cleared(A.GATEWAY_SILENT)) < 2:
        d.step()
    assert d.t - back == pytest.approx(max(GW_S, SITE.rules.infrastructure.clear_hold_s), abs=0.6)


def test_no_silence_during_the_startup_grace_for_never_heard_gateways() -> None:
    d = Driver(SITE)
    d.down.add("G1")
    d.run(GRACE - 1)
    assert d.raised(A.GATEWAY_SILENT) == []
    d.run(2)
    assert [c.subject for c in d.raised(A.GATEWAY_SILENT)] == ["G1"]


def _status(state: str, t: float) -> SourceStatus:
    return SourceStatus("reader", 0, state, t, t)  # type: ignore[arg-type]


def test_idle_reader_is_not_silent_but_its_last_will_is() -> None:
    d = Driver(SITE)
    d.rd_last[:] = np.nan  # no reads at all, only its retained online status
    d.step(status=(_status("online", d.t),))
    d.run(600)
    assert d.raised(A.READER_SILENT) == []
    d.step(status=(_status("offline", d.t),))
    off = d.t
    while not d.raised(A.READER_SILENT):
        d.step()
    assert d.t - off == pytest.approx(RD_S, abs=0.6)
    (c,) = d.raised(A.READER_SILENT)
    assert c.detail["why"] == "offline" and c.location is not None
    assert c.location.zone == "LOBBY" and c.location.x == 30.0  # the door's midpoint
    d.step(status=(_status("online", d.t),))
    d.run(SITE.rules.infrastructure.clear_hold_s + 1)
    assert len(d.cleared(A.READER_SILENT)) == 1


def test_reader_that_reboots_quickly_raises_nothing() -> None:
    d = Driver(SITE)
    d.run(GRACE + 5)
    d.step(status=(_status("offline", d.t),))
    d.run(5)
    d.step(status=(_status("online", d.t),))
    d.run(RD_S * 2)
    assert d.raised(A.READER_SILENT) == []


def test_reader_never_heard_is_silent_after_the_grace() -> None:
    d = Driver(SITE)
    d.rd_last[:] = np.nan
    d.run(max(GRACE, RD_S) + 1)
    (c,) = d.raised(A.READER_SILENT)
    assert c.detail["why"] == "never_heard"


def test_broker_link_lost_after_broker_lost_s_and_no_silence_flood() -> None:
    d = _settled()
    sv = d.rules.supervision
    assert d.rules.link(d.t, False) == []
    lost_s = SITE.rules.infrastructure.broker_lost_s
    d.down |= {g.id for g in SITE.gateways}  # nothing arrives while the link is down
    d.silent |= {t.id for t in SITE.tags}
    d.run(lost_s - 1)
    assert d.raised(A.BROKER_LINK_LOST) == []
    d.run(200)
    (c,) = d.raised(A.BROKER_LINK_LOST)
    assert c.subject == BROKER and c.priority is None  # the catalogue's: high
    assert d.types_raised() == {"broker_link_lost"}  # one alarm for the cause, not a flood
    assert not sv.link_up
    d.rules.link(d.t, True)
    d.down.clear()
    d.silent.clear()
    d.run(GRACE + 30)
    assert len(d.cleared(A.BROKER_LINK_LOST)) == 1
    assert d.types_raised() == {"broker_link_lost"}


def test_a_short_broker_blip_raises_nothing() -> None:
    d = _settled()
    d.rules.link(d.t, False)
    d.run(3)
    d.rules.link(d.t, True)
    d.run(30)
    assert d.log == []


def test_heard_from_counters_and_supervision_alone() -> None:
    sv = Supervision(SITE)
    g = len(SITE.gateways)

    class Counters:
        gateway_last_heard = np.full(g, T0)
        reader_last_heard = np.full(1, T0)

    heard = Heard.from_counters(Counters())
    assert sv.step(T0, heard) == []
    out = sv.step(T0 + GRACE + GW_S, heard)
    assert sorted(c.subject for c in out if c.type is A.GATEWAY_SILENT) == sorted(
        gw.id for gw in SITE.gateways
    )
    assert sv.state()["gateways_silent"] == [gw.id for gw in SITE.gateways]
