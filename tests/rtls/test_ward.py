"""Ward workflows: admission, pairing (and the bracelet's pairing downlink), sign-out, return,
discharge, Code Pink, persistence."""

from __future__ import annotations

import json
import math

import pytest

from rtls.alarm import AlarmBook, AlarmState, AlarmType, Condition, Location
from rtls.errors import RtlsError
from rtls.rules import InfantRules
from rtls.site import Site
from rtls.ward import AuditEvent, Ward, WardError, condition_dict
from tests.rtls.small_site import small_site

H = 3600.0  # default pairing window and longest sign-out


@pytest.fixture(scope="module")
def site() -> Site:
    return small_site()


def _ward(site: Site, **rules: float) -> Ward:
    return Ward(site, InfantRules(**rules)) if rules else Ward(site)


def _keys(conds: list[Condition]) -> list[tuple[str, str, bool, float]]:
    return [(c.type.value, c.subject, c.active, c.t) for c in conds]


def _admitted(site: Site, *babies: str, t: float = 0.0) -> Ward:
    ward = _ward(site)
    for b in babies:
        ward.admit(b, "nurse.ana", t)
    return ward


# -- admission and pairing -------------------------------------------------------------------


def test_admit_bonds_the_tag_and_records_who(site: Site) -> None:
    ward = _ward(site)
    events = ward.admit("B1", " nurse.ana ", 100.0, name="Baby Martin")
    detail = {"name": "Baby Martin", "pairing_due_t": 100.0 + H}
    assert events == [AuditEvent("nurse.ana", "admit", "B1", detail, 100.0)]
    assert ward.bonded("B1") and not ward.bonded("B2")
    assert ward.baby("B1").admitted_by == "nurse.ana"
    assert ward.mother_of("B1") is None
    assert json.loads(json.dumps(events[0].as_dict()))["actor"] == "nurse.ana"


@pytest.mark.parametrize(
    ("tag", "user", "now", "message"),
    [
        ("B9", "ana", 0.0, "not in site"),
        ("M1", "ana", 0.0, "mother tag, not an infant"),
        ("S1", "ana", 0.0, "staff tag, not an infant"),
        ("B1", "ana", 0.0, "already bonded"),
        ("B2", "  ", 0.0, "authenticated user"),
        ("B2", "ana", math.nan, "not finite"),
    ],
)
def test_admit_refusals(site: Site, tag: str, user: str, now: float, message: str) -> None:
    ward = _admitted(site, "B1")
    before = ward.to_dict()
    with pytest.raises(WardError, match=message):
        ward.admit(tag, user, now)
    assert ward.to_dict() == before  # a refused command changes nothing
    assert issubclass(WardError, RtlsError)


def test_pairing_overdue_raises_at_the_window_and_clears_when_paired(site: Site) -> None:
    ward = _admitted(site, "B1", t=10.0)
    assert ward.tick(10.0 + H - 1.0) == []
    raised = ward.tick(10.0 + H + 30.0)
    assert _keys(raised) == [("pairing_overdue", "B1", True, 10.0 + H)]  # dated when due
    assert ward.tick(10.0 + H + 60.0) == []  # raised once
    events = ward.pair("B1", "M1", "midwife.bo", 10.0 + H + 100.0)
    assert events[0].detail["late"] is True
    assert _keys(ward.tick(10.0 + H + 101.0)) == [
        ("pairing_overdue", "B1", False, 10.0 + H + 100.0)
    ]
    assert ward.tick(10.0 + 3 * H) == []


def test_pairing_in_time_raises_nothing(site: Site) -> None:
    ward = _admitted(site, "B1")
    events = ward.pair("B1", "M1", "midwife.bo", H - 1.0)
    detail = {"mother": "M1", "late": False, "siblings": []}
    assert events == [AuditEvent("midwife.bo", "pair", "B1", detail, H - 1.0)]
    assert ward.tick(10 * H) == []
    assert ward.bonded("M1") and not ward.bonded("M2")


def test_overdue_and_paired_between_two_ticks_is_still_raised_then_cleared(site: Site) -> None:
    ward = _admitted(site, "B1")
    ward.pair("B1", "M1", "bo", H + 5.0)  # no tick ran between the due time and the pairing
    assert _keys(ward.tick(H + 6.0)) == [
        ("pairing_overdue", "B1", True, H),
        ("pairing_overdue", "B1", False, H + 5.0),
    ]


def test_twins_share_a_mother_tag(site: Site) -> None:
    ward = _admitted(site, "B1", "B2")
    ward.pair("B1", "M1", "bo", 5.0)
    events = ward.pair("B2", "M1", "bo", 6.0)
    assert events[0].detail["siblings"] == ["B1"]
    assert ward.babies_of("M1") == ["B1", "B2"]
    assert ward.mother_of("B2") == "M1"
    assert ward.babies_of("M2") == []


@pytest.mark.parametrize(
    ("baby", "mother", "message"),
    [
        ("B3", "M1", "not bonded"),
        ("B2", "M9", "not in site"),
        ("B2", "S1", "staff tag, not a mother"),
        ("B2", "B1", "infant tag, not a mother"),
        ("B1", "M1", "already paired with mother tag 'M1'"),
        ("B1", "M2", "paired with mother tag 'M1': unpair it first"),
    ],
)
def test_pair_refusals(site: Site, baby: str, mother: str, message: str) -> None:
    ward = _admitted(site, "B1", "B2")
    ward.pair("B1", "M1", "bo", 1.0)
    before = ward.to_dict()
    with pytest.raises(WardError, match=message):
        ward.pair(baby, mother, "bo", 2.0)
    assert ward.to_dict() == before


def test_unpair_needs_a_reason_and_reopens_the_pairing_timer(site: Site) -> None:
    ward = _admitted(site, "B1", "B2")
    ward.pair("B1", "M1", "bo", 1.0)
    with pytest.raises(WardError, match="needs a reason"):
        ward.unpair("B1", "bo", 2.0, " ")
    with pytest.raises(WardError, match="not paired"):
        ward.unpair("B2", "bo", 2.0, "wrong mother")
    ward.tick(2 * H)
    events = ward.unpair("B1", "bo", 2 * H, "wrong mother")
    assert events[0].detail == {"mother": "M1", "reason": "wrong mother"}
    # the window counted from the admission is long gone: overdue at once, dated now
    assert _keys(ward.tick(2 * H + 1.0)) == [("pairing_overdue", "B1", True, 2 * H)]


# -- sign-out and return -----------------------------------------------------------------------


def _paired(site: Site) -> Ward:
    ward = _admitted(site, "B1", "B2", "B3")
    ward.pair("B1", "M1", "bo", 1.0)
    ward.pair("B2", "M2", "bo", 1.0)
    ward.tick(2.0)
    return ward


def test_sign_out_with_escort_authorises_the_exit_until_due(site: Site) -> None:
    ward = _paired(site)
    events = ward.sign_out("B1", "nurse.ana", 100.0, escort="S1", duration_s=1800.0,
                           reason="imaging")  # fmt: skip
    assert events == [AuditEvent("nurse.ana", "sign_out", "B1", {
        "escort": "S1", "escort_kind": "staff", "duration_s": 1800.0, "due_t": 1900.0,
        "reason": "imaging"}, 100.0)]  # fmt: skip
    assert ward.exit_authorised("B1", 200.0, {"S1", "M2"})
    assert not ward.exit_authorised("B1", 200.0, {"S2"})  # escort not near
    assert not ward.exit_authorised("B1", 1900.0, {"S1"})  # overdue
    assert not ward.exit_authorised("B2", 200.0, {"S1"})  # not signed out
    assert not ward.exit_authorised("B3", 200.0, {"S1"})  # bonded, unpaired, not signed out
    assert not ward.exit_authorised("B9", 200.0, {"S1"})  # not a baby at all


def test_the_own_mother_may_escort(site: Site) -> None:
    ward = _paired(site)
    ward.sign_out("B1", "ana", 10.0, escort="M1", duration_s=600.0, reason="walk")
    assert ward.exit_authorised("B1", 20.0, {"M1"})
    assert ward.signed_out("B1") is not None
    assert ward.signed_out("B1").escort == "M1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("baby", "kw", "message"),
    [
        ("B3x", {}, "not in site|not bonded"),
        ("B1", {"escort": "S9"}, "not in site"),
        ("B1", {"escort": "B2"}, "infant tag, not a staff or mother"),
        ("B1", {"escort": "M2"}, "mother tag 'M2' is not paired with baby 'B1'"),
        ("B3", {"escort": "M1"}, "not yet paired"),
        ("B1", {"duration_s": 0.0}, r"must be in \(0, 3600\]"),
        ("B1", {"duration_s": H + 1.0}, r"must be in \(0, 3600\]"),
        ("B1", {"duration_s": math.nan}, "must be in"),
        ("B1", {"reason": "  "}, "needs a reason"),
        ("B2", {}, "already signed out"),
    ],
)
def test_sign_out_refusals(site: Site, baby: str, kw: dict[str, object], message: str) -> None:
    ward = _paired(site)
    ward.sign_out("B2", "ana", 5.0, escort="S2", duration_s=60.0, reason="scan")
    args: dict[str, object] = {"escort": "S1", "duration_s": 600.0, "reason": "scan"} | kw
    before = ward.to_dict()
    with pytest.raises(WardError, match=message):
        ward.sign_out(baby, "ana", 10.0, **args)  # type: ignore[arg-type]
    assert ward.to_dict() == before


def test_sign_out_overdue_raises_at_due_time_and_clears_on_return(site: Site) -> None:
    ward = _paired(site)
    ward.sign_out("B1", "ana", 100.0, escort="S1", duration_s=600.0, reason="imaging")
    assert ward.tick(699.0) == []
    raised = ward.tick(705.0)
    assert _keys(raised) == [("sign_out_overdue", "B1", True, 700.0)]
    assert raised[0].detail["escort"] == "S1"
    events = ward.return_("B1", "bo", 900.0)
    detail = {"escort": "S1", "away_s": 800.0, "late": True}
    assert events == [AuditEvent("bo", "return", "B1", detail, 900.0)]
    assert _keys(ward.tick(901.0)) == [("sign_out_overdue", "B1", False, 900.0)]
    with pytest.raises(WardError, match="not signed out"):
        ward.return_("B1", "bo", 902.0)


def test_return_in_time_raises_nothing(site: Site) -> None:
    ward = _paired(site)
    ward.sign_out("B1", "ana", 100.0, escort="S1", duration_s=600.0, reason="imaging")
    assert ward.return_("B1", "ana", 650.0)[0].detail["late"] is False
    later = ward.tick(5000.0)
    assert [c.type for c in later] == [AlarmType.PAIRING_OVERDUE]  # B3's, not B1's sign-out
    assert later[0].subject == "B3"


# -- discharge ---------------------------------------------------------------------------------


def test_discharge_frees_the_tags_and_clears_the_baby_conditions(site: Site) -> None:
    ward = _admitted(site, "B1", "B2", "B3")
    ward.pair("B2", "M1", "bo", 1.0)
    ward.pair("B3", "M2", "bo", 1.0)
    raised = ward.tick(H + 1.0)
    assert ("pairing_overdue", "B1", True, H) in _keys(raised)
    events = ward.discharge("B1", "dr.li", H + 10.0)
    assert events[0].detail["mother_freed"] is False
    assert events[0].detail["stay_s"] == H + 10.0
    ward.discharge("B2", "dr.li", H + 10.0)
    assert _keys(ward.tick(H + 11.0)) == [("pairing_overdue", "B1", False, H + 10.0)]
    assert not ward.bonded("B1") and not ward.bonded("M1")  # M1 had only B2: freed too
    assert ward.bonded("M2")
    ward.admit("B1", "ana", H + 20.0)  # the freed tag can bond to the next baby
    assert ward.baby("B1").admitted_t == H + 20.0


def test_discharge_refusals(site: Site) -> None:
    ward = _paired(site)
    ward.sign_out("B1", "ana", 5.0, escort="S1", duration_s=60.0, reason="scan")
    with pytest.raises(WardError, match="return it before discharge"):
        ward.discharge("B1", "dr.li", 10.0)
    with pytest.raises(WardError, match="not bonded"):
        ward.discharge("M1", "dr.li", 10.0)
    with pytest.raises(WardError, match="authenticated user"):
        ward.discharge("B2", "", 10.0)
    assert ward.bonded("B2")


# -- Code Pink ---------------------------------------------------------------------------------


def test_code_pink_arms_every_exit_and_refuses_sign_outs(site: Site) -> None:
    ward = _paired(site)
    ward.sign_out("B1", "ana", 5.0, escort="S1", duration_s=600.0, reason="scan")
    events = ward.code_pink("sec.max", 10.0, "baby missing from R3")
    assert events[0].subject == "mat"
    assert events[0].detail == {"reason": "baby missing from R3", "signed_out": ["B1"]}
    assert ward.code_pink_active
    assert not ward.exit_authorised("B1", 11.0, {"S1"})
    with pytest.raises(WardError, match="during a Code Pink"):
        ward.sign_out("B2", "ana", 12.0, escort="S2", duration_s=60.0, reason="scan")
    with pytest.raises(WardError, match="already on"):
        ward.code_pink("sec.max", 13.0, "again")
    assert _keys(ward.tick(14.0)) == [("code_pink", "mat", True, 10.0)]
    assert ward.tick(20.0) == []
    end = ward.end_code_pink("sec.max", 100.0, "baby found")
    assert end[0].detail == {"reason": "baby found", "duration_s": 90.0, "called_by": "sec.max"}
    assert _keys(ward.tick(101.0)) == [("code_pink", "mat", False, 100.0)]
    assert ward.exit_authorised("B1", 102.0, {"S1"})
    with pytest.raises(WardError, match="no Code Pink"):
        ward.end_code_pink("sec.max", 103.0)
    with pytest.raises(WardError, match="needs a reason"):
        ward.code_pink("sec.max", 104.0, "")


def test_code_pink_alarm_latches_in_the_book_after_it_ends(site: Site) -> None:
    ward, book = _paired(site), AlarmBook()
    ward.code_pink("sec.max", 10.0, "drill")
    book.apply(ward.tick(10.0), 10.0)
    ward.end_code_pink("sec.max", 20.0)
    book.apply(ward.tick(20.0), 20.0)
    alarm = book.by_key(AlarmType.CODE_PINK, "mat")
    assert alarm is not None and alarm.state is AlarmState.CLEARED_UNACK and alarm.latching


# -- the bracelet's pairing -------------------------------------------------------------------


def test_pair_downlink_tells_the_bracelet_its_mother_tags_serial(site: Site) -> None:
    ward = _paired(site)
    m1 = site.tag("M1").serial
    dl = ward.pair_downlink("B1", 5.0)
    assert (dl.tag, dl.command, dl.mother, dl.serial, dl.t) == ("B1", "pair", "M1", m1, 5.0)
    assert dl.as_dict() == {"tag": "B1", "command": "pair", "mother": m1, "mother_tag": "M1",
                            "t": 5.0}  # fmt: skip
    assert ward.pair_downlink("B3", 5.0).serial == 0  # admitted, not paired
    ward.unpair("B1", "bo", 6.0, "wrong tag")
    assert ward.pair_downlink("B1", 6.0).serial == 0
    ward.discharge("B2", "dr.li", 7.0)
    assert (ward.pair_downlink("B2", 7.0).mother, ward.pair_downlink("B2", 7.0).serial) == (
        None, 0)  # fmt: skip
    with pytest.raises(WardError, match="not finite"):
        ward.pair_downlink("B1", math.nan)


def test_ward_holds_no_mismatch_and_clears_one_left_by_an_older_engine(site: Site) -> None:
    """The bracelet flags a mismatch and the rules raise it (rtls.conditions): the ward keeps
    no meetings. A saved state of the older, position-based engine still loads; the mismatch
    condition it held clears at the next tick, dated then."""
    ward = _paired(site)
    saved = ward.to_dict()
    assert "meetings" not in saved
    legacy = Condition(AlarmType.MISMATCH, "B1", True, 50.0, Location(floor="L1", zone="R1"),
                       {"mother": "M2", "paired_mother": "M1", "since_t": 50.0})  # fmt: skip
    saved["meetings"] = {"B1": {"mother": "M2", "first_t": 50.0, "last_t": 55.0,
                                "location": None, "paired_mother": "M1"}}  # fmt: skip
    saved["active"] = [condition_dict(legacy)]
    restored = Ward.from_dict(site, json.loads(json.dumps(saved)))
    assert _keys(restored.tick(60.0)) == [("mismatch", "B1", False, 60.0)]
    assert restored.tick(61.0) == [] and "meetings" not in restored.to_dict()


# -- persistence ---------------------------------------------------------------------------------


def test_state_survives_a_json_round_trip_and_timers_resume(site: Site) -> None:
    ward = _admitted(site, "B1", "B2", "B3")
    ward.pair("B2", "M1", "bo", 1.0)
    ward.sign_out("B2", "ana", 10.0, escort="M1", duration_s=600.0, reason="walk")
    ward.tick(20.0)
    ward.code_pink("sec", 30.0, "drill")  # its raise is left pending in the saved state
    ward.pair("B3", "M2", "bo", 40.0)
    saved = json.loads(json.dumps(ward.to_dict()))
    assert [c["type"] for c in saved["pending"]] == ["code_pink"]
    restored = Ward.from_dict(site, saved)
    assert restored.to_dict() == ward.to_dict()
    for t in (41.0, 700.0, H + 5.0):
        assert _keys(restored.tick(t)) == _keys(ward.tick(t))
    assert restored.exit_authorised("B2", 50.0, {"M1"}) is False  # Code Pink still on
    assert restored.babies_of("M1") == ["B2"]


def test_from_dict_refuses_state_that_does_not_fit_the_site(site: Site) -> None:
    ward = _admitted(site, "B1")
    data = ward.to_dict()
    data["babies"][0]["tag"] = "B7"
    with pytest.raises(WardError, match="'B7' is not in site"):
        Ward.from_dict(site, data)
    with pytest.raises(WardError, match="format"):
        Ward.from_dict(site, {"format": 99})
    with pytest.raises(WardError, match="malformed"):
        Ward.from_dict(site, {"format": 1})
