"""Tag authentication (rtls.tagauth): the code, the replay rules, the policy, the filtering."""

from __future__ import annotations

import hmac

import numpy as np
import pytest

from rtls.advertisement import (
    BODY_DTYPE,
    Advertisement,
    Status,
    Status2,
    TagKind,
    encode_body,
)
from rtls.decode_result import TELEMETRY_DTYPE, Decoded
from rtls.observations import OBS_DTYPE
from rtls.site import SecurityParams
from rtls.tagauth import (
    BAD_MAC,
    LATE,
    REPLAY,
    SPOOF_DTYPE,
    UNAUTHENTICATED,
    TagAuth,
    TagAuthError,
    auth_code,
    sign_body,
)

KEY = bytes(range(16))
OTHER = bytes(range(100, 116))
SERIALS = (0x12345, 0x12346, 0x12347)
W = 2.0  # the default repeat window


def body(seq: int, tag: int = 0, status: Status = Status.SKIN_CONTACT,
         status2: Status2 = Status2.NONE) -> bytes:  # fmt: skip
    adv = Advertisement(kind=TagKind.INFANT, serial=SERIALS[tag], seq=seq & 0xFFFF,
                        status=status, status2=status2, battery=87, interval_ms=1400)  # fmt: skip
    return encode_body(adv)


def signed(counter: int, tag: int = 0, key: bytes = KEY, **kw: object) -> bytes:
    return sign_body(key, body(counter, tag, **kw), counter)  # type: ignore[arg-type]


def heard(bodies: list[bytes], tags: list[int], t: float, gateways: int = 1) -> Decoded:
    """Each body heard by ``gateways`` gateways at gateway time ``t``: obs + telemetry rows."""
    n = len(bodies) * gateways
    obs = np.zeros(n, dtype=OBS_DTYPE)
    tel = np.zeros(n, dtype=TELEMETRY_DTYPE)
    raw = np.frombuffer(b"".join(bodies), dtype=BODY_DTYPE)
    rows = np.repeat(raw, gateways)
    obs["t"] = tel["t"] = t
    obs["gateway"] = tel["gateway"] = np.tile(np.arange(gateways), len(bodies))
    obs["tag"] = tel["tag"] = np.repeat(tags, gateways)
    obs["rssi"] = -70.0
    tel["seq"] = rows["seq"]
    tel["status"] = rows["status"]
    return Decoded(obs=obs, telemetry=tel, obs_body=rows, telemetry_body=rows.copy())


def auth(**params: object) -> TagAuth:
    a = TagAuth(len(SERIALS), SecurityParams(**params))  # type: ignore[arg-type]
    a.set_key(0, KEY)
    return a


def kept(a: TagAuth, d: Decoded, now: float, **kw: object) -> int:
    out = a.filter(d, now, **kw)  # type: ignore[arg-type]
    assert len(out.obs) == len(out.telemetry)
    return len(out.obs)


def test_code_is_hmac_sha256_truncated_over_bytes_0_11_and_counter_high_bits() -> None:
    b = body(7)
    for counter in (7, 7 + 65536 * 3):
        msg = b[:12] + (counter >> 16).to_bytes(2, "little")
        assert auth_code(KEY, b, counter) == hmac.digest(KEY, msg, "sha256")[:8]
    assert auth_code(KEY, b, 7) != auth_code(KEY, b, 7 + 65536)
    assert auth_code(KEY, b, 7) != auth_code(OTHER, b, 7)


def test_golden_vector_of_the_worked_example() -> None:
    """docs/advertisement.md's worked example, signed with key 00 01 .. 0f at counter 7."""
    b = body(7)
    assert b.hex() == "11452301000700020057c50e0000000000000000"
    assert sign_body(KEY, b, 7).hex() == "11452301000700020057c50e837b2a26aaf5aa83"
    assert auth_code(KEY, b, 65543).hex() == "4b15bb2087e9a8e6"  # one wrap later


def test_sign_body_checks_the_counter_and_sizes() -> None:
    with pytest.raises(TagAuthError):
        sign_body(KEY, body(7), 8)
    with pytest.raises(TagAuthError):
        sign_body(KEY[:8], body(7), 7)
    with pytest.raises(TagAuthError):
        TagAuth(3).set_key(5, KEY)


def test_inactive_without_keys_is_a_no_op() -> None:
    a = TagAuth(len(SERIALS))
    d = heard([body(1)], [0], 10.0, gateways=3)
    assert not a.active
    assert a.filter(d, 10.0) is d
    assert a.counts["unauthenticated_accepted"] == 3


def test_new_counter_accepted_once_per_advertisement_not_per_gateway() -> None:
    a = auth()
    assert kept(a, heard([signed(1)], [0], 10.0, gateways=8), 10.1) == 8
    assert a.macs == 1
    assert a.last[0] == 1
    assert kept(a, heard([signed(2), signed(3)], [0, 0], 12.0, gateways=4), 12.1) == 8
    assert a.last[0] == 3 and a.prev[0] == 2
    assert a.macs == 3


def test_burst_repeats_and_late_gateways_within_the_window() -> None:
    a = auth()
    assert kept(a, heard([signed(5)], [0], 10.0), 10.1) == 1
    repeat = signed(5, status2=Status2.BURST_REPEAT)  # same counter, other code
    assert kept(a, heard([repeat], [0], 10.1, gateways=3), 10.3) == 3
    assert kept(a, heard([signed(5)], [0], 10.0, gateways=2), 10.1 + W - 0.01) == 2
    assert a.counts["replay"] == 0


def test_replay_after_the_window_and_old_counters() -> None:
    a = auth()
    kept(a, heard([signed(5)], [0], 10.0), 10.0)
    kept(a, heard([signed(6)], [0], 12.0), 12.0)
    # the same advertisements re-broadcast later, heard later: replays
    assert kept(a, heard([signed(6)], [0], 30.0), 30.0) == 0
    assert kept(a, heard([signed(5)], [0], 31.0), 31.0) == 0
    assert kept(a, heard([signed(2)], [0], 32.0), 32.0) == 0
    assert a.counts["replay"] == 3
    assert a.rejected[0, REPLAY] == 3
    spoof = a.take_spoofing()
    assert spoof.dtype == SPOOF_DTYPE
    assert spoof["reason"].tolist() == [REPLAY] * 3
    assert len(a.take_spoofing()) == 0


def test_late_delivery_of_a_genuine_copy_is_dropped_without_alarm() -> None:
    """A slow gateway delivers, after the window, what it heard at the original time."""
    a = auth()
    kept(a, heard([signed(5)], [0], 10.0), 10.0)
    kept(a, heard([signed(6)], [0], 12.0), 12.0)
    assert kept(a, heard([signed(6)], [0], 12.0), 40.0) == 0  # heard at 12, delivered at 40
    assert kept(a, heard([signed(4)], [0], 9.0), 40.0) == 0  # never accepted, heard earlier
    assert a.counts["late"] == 2
    assert a.rejected[0, LATE] == 2
    assert len(a.take_spoofing()) == 0


def test_wrap_across_65535_to_0_keeps_old_codes_closed() -> None:
    a = auth()
    kept(a, heard([signed(65534)], [0], 10.0), 10.0)
    assert kept(a, heard([signed(65536)], [0], 11.0), 11.0) == 1  # low bits 0: next block
    assert a.last[0] == 65536
    assert kept(a, heard([signed(65537)], [0], 12.0), 12.0) == 1
    # an old code from before the wrap has the same low bits as a future counter: a replay
    assert kept(a, heard([signed(65535)], [0], 20.0), 20.0) == 0
    assert kept(a, heard([signed(3)], [0], 21.0), 21.0) == 0
    assert a.counts["replay"] == 2
    assert a.last[0] == 65537


def test_forward_jump_and_resync_after_a_long_absence() -> None:
    a = auth()
    kept(a, heard([signed(10)], [0], 10.0), 10.0)
    assert kept(a, heard([signed(40_000)], [0], 20.0), 20.0) == 1  # lost advertisements
    far = 40_000 + 2 * 65536 + 123  # more than 65,536 lost: the counter is searched ahead
    assert kept(a, heard([signed(far)], [0], 30.0), 30.0) == 1
    assert a.last[0] == far
    too_far = far + 10 * 65536  # beyond the re-sync bound: not recognised
    assert kept(a, heard([signed(too_far)], [0], 40.0), 40.0) == 0
    assert a.counts["bad_mac"] == 1


def test_bad_mac_and_unsigned_from_a_keyed_tag_are_clones() -> None:
    a = auth()
    kept(a, heard([signed(1)], [0], 10.0), 10.0)
    assert kept(a, heard([signed(2, key=OTHER)], [0], 11.0, gateways=2), 11.0) == 0
    assert kept(a, heard([body(3)], [0], 12.0), 12.0) == 0
    assert a.counts["bad_mac"] == 2 and a.counts["unauthenticated"] == 1
    spoof = a.take_spoofing()
    assert spoof["reason"].tolist() == [BAD_MAC, BAD_MAC, UNAUTHENTICATED]
    assert spoof["gateway"].tolist() == [0, 1, 0]
    # a forged body with a genuine code copied onto it fails too
    forged = bytearray(signed(4, status=Status.SKIN_CONTACT | Status.TAMPER))
    forged[7] = int(Status.SKIN_CONTACT)  # "strap closed"
    assert kept(a, heard([bytes(forged)], [0], 13.0), 13.0) == 0
    assert a.last[0] == 1


def test_a_new_key_is_pending_until_the_tag_uses_it() -> None:
    """Before the tag's first verified advertisement failures are dropped, not alarmed."""
    a = auth()
    assert kept(a, heard([body(1)], [0], 10.0), 10.0) == 0
    assert kept(a, heard([signed(2, key=OTHER)], [0], 10.5), 10.5) == 0
    assert len(a.take_spoofing()) == 0
    assert kept(a, heard([signed(3)], [0], 11.0), 11.0) == 1
    assert kept(a, heard([body(4)], [0], 12.0), 12.0) == 0
    assert len(a.take_spoofing()) == 1


def test_unkeyed_tags_accepted_unless_the_site_requires_authentication() -> None:
    a = auth()
    assert kept(a, heard([body(1, tag=1)], [1], 10.0, gateways=2), 10.0) == 2
    assert a.counts["unauthenticated_accepted"] == 2
    strict = auth(require_tag_auth=True)
    assert kept(strict, heard([body(1, tag=1)], [1], 10.0), 10.0) == 0
    assert strict.counts["unauthenticated"] == 1
    assert len(strict.take_spoofing()) == 0  # an unkeyed tag: configuration, not an attack


def test_observations_without_a_body_of_keyed_tags() -> None:
    """ESPresense: presence and RSSI only. Dropped for keyed tags unless accept_unverifiable."""
    obs = np.zeros(2, dtype=OBS_DTYPE)
    obs["tag"] = [0, 1]
    obs["t"] = 10.0
    d = Decoded(obs=obs)
    a = auth()
    out = a.filter(d, 10.0)
    assert out.obs["tag"].tolist() == [1]
    assert a.counts["unverifiable"] == 1
    assert auth(accept_unverifiable=True).filter(d, 10.0).obs["tag"].tolist() == [0, 1]


def test_check_only_changes_nothing() -> None:
    a = auth()
    kept(a, heard([signed(1)], [0], 10.0), 10.0)
    before = (a.last.copy(), a.macs, dict(a.counts))
    assert kept(a, heard([signed(2)], [0], 11.0), 11.0, commit=False) == 1
    assert kept(a, heard([signed(0)], [0], 30.0), 30.0, commit=False) == 0
    assert a.last.tolist() == before[0].tolist()
    assert dict(a.counts) == before[2]
    assert len(a.take_spoofing()) == 0
    assert kept(a, heard([signed(2)], [0], 11.0), 11.1) == 1  # the tick commits


def test_mixed_batch_keeps_only_the_genuine_rows() -> None:
    a = auth()
    a.set_key(2, OTHER)
    kept(a, heard([signed(1), signed(1, tag=2, key=OTHER)], [0, 2], 10.0), 10.0)
    d = heard([signed(2), signed(1), body(9, tag=1), signed(5, tag=2, key=KEY)],
              [0, 0, 1, 2], 40.0, gateways=3)  # fmt: skip
    out = a.filter(d, 40.0)
    assert sorted(set(out.obs["tag"].tolist())) == [0, 1]
    assert len(out.obs) == 6
    assert out.obs_body is not None and len(out.obs_body) == 6
    assert (out.obs_body["seq"][out.obs["tag"] == 0] == 2).all()
    report = a.report(["B1", "B2", "B3"], ["G1", "G2", "G3"])
    assert {r["tag"] for r in report} == {"B1", "B3"}
    assert next(r for r in report if r["tag"] == "B3")["bad_mac"] == 3


def test_revoke_and_counter_restore() -> None:
    a = auth()
    a.set_key(0, KEY, counter=500)  # what the store kept: older codes are replays
    assert kept(a, heard([signed(499)], [0], 10.0), 10.0) == 0
    assert a.counts["replay"] == 1
    assert kept(a, heard([signed(501)], [0], 11.0), 11.0) == 1
    assert a.take_counters() == {0: 501}
    assert a.take_counters() == {}
    a.revoke(0)
    assert not a.active
    assert kept(a, heard([body(3)], [0], 12.0), 12.0) == 1


def test_spoofing_rule_one_latching_condition_per_tag() -> None:
    from rtls.alarm import AlarmType
    from rtls.site import load_site
    from rtls.spoofing import SpoofingRule

    site = load_site()
    rule = SpoofingRule(site)
    ids = [t.id for t in site.tags]
    gws = [g.id for g in site.gateways]
    first = rule.update(100.0, np.zeros(0, dtype=SPOOF_DTYPE))
    assert {c.subject for c in first} == set(ids) and not any(c.active for c in first)
    rows = np.zeros(3, dtype=SPOOF_DTYPE)
    rows["tag"] = ids.index("B03")
    rows["gateway"] = [gws.index("G05"), gws.index("G19"), gws.index("G05")]
    rows["rssi"] = [-60.0, -75.0, -58.0]
    rows["reason"] = [REPLAY, REPLAY, BAD_MAC]
    (raised,) = rule.update(101.0, rows)
    assert raised.type is AlarmType.TAG_SPOOFING and raised.active and raised.subject == "B03"
    assert raised.detail["attack"] == "clone and replay"
    assert raised.detail["gateways"] == ["G05", "G19"]
    assert raised.detail["rssi_dbm"] == -58.0
    assert raised.location is not None and raised.location.floor == "L1"
    assert raised.location.x == site.gateways[gws.index("G05")].position[0]
    assert rule.update(120.0, rows[:1])[0].active  # restated while it goes on
    assert rule.update(150.0, np.zeros(0, dtype=SPOOF_DTYPE)) == []
    (cleared,) = rule.update(120.0 + site.security.spoofing_clear_s, rows[:0])
    assert not cleared.active and cleared.subject == "B03"
