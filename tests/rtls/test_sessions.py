"""Console sessions (rtls/sessions.py): pure, with an explicit clock."""

from __future__ import annotations

import hashlib

import pytest

from rtls.errors import ConfigError
from rtls.sessions import EXPIRED, UNKNOWN, AuthError, Sessions, token_key
from rtls.users import Role, User

anna = User("nurse.anna", Role.NURSE, frozenset({"L1-WARD"}))
sam = User("security.sam", Role.SECURITY, frozenset({"*"}))


def test_issue_then_check() -> None:
    s = Sessions(ttl_s=900.0)
    sess = s.issue(anna, 1000.0)
    assert len(sess.token) >= 43  # 32 random bytes, base64url
    assert sess.key == hashlib.sha256(sess.token.encode()).hexdigest() == token_key(sess.token)
    assert (sess.issued_t, sess.login_t, sess.expires_t) == (1000.0, 1000.0, 1900.0)
    got = s.check(sess.token, 1899.0)
    assert got.user == anna
    assert got.token == sess.token
    assert got.expires_t == 1900.0  # checking does not extend
    assert s.issue(anna, 1000.0).token != sess.token


def test_only_the_hash_of_a_token_is_kept() -> None:
    s = Sessions()
    sess = s.issue(anna, 0.0)
    assert sess.token not in repr(vars(s))
    assert sess.key in repr(vars(s))


def test_expired_and_unknown_tokens_are_refused() -> None:
    s = Sessions(ttl_s=60.0)
    sess = s.issue(anna, 0.0)
    with pytest.raises(AuthError, match=f"^{EXPIRED}$"):
        s.check(sess.token, 60.0)
    with pytest.raises(AuthError, match=f"^{EXPIRED}$"):  # still "expired" when asked again
        s.check(sess.token, 61.0)
    with pytest.raises(AuthError, match=f"^{UNKNOWN}$"):
        s.check("not-a-token", 0.0)
    assert EXPIRED == "session expired: log in again"
    assert UNKNOWN == "unknown session: log in again"


def test_refresh_swaps_the_token_and_keeps_the_login_time() -> None:
    s = Sessions(ttl_s=900.0)
    first = s.issue(anna, 0.0)
    second = s.refresh(first.token, 450.0)
    assert second.token != first.token
    assert (second.issued_t, second.login_t, second.expires_t) == (450.0, 0.0, 1350.0)
    # the old token lives on for the grace time only (a reply lost on a dropping link)
    assert s.check(first.token, 451.0).expires_t == 450.0 + s.grace_s
    with pytest.raises(AuthError, match=EXPIRED):
        s.check(first.token, 450.0 + s.grace_s)
    assert s.check(second.token, 1349.0).user == anna
    assert len(s) == 1


def test_logout_ends_the_refreshed_token_and_its_predecessor() -> None:
    s = Sessions(ttl_s=900.0, grace_s=30.0)
    first = s.issue(anna, 0.0)
    second = s.refresh(first.token, 450.0)
    other = s.issue(anna, 451.0)  # the same user on another screen: a login of its own
    assert s.revoke(second.token)
    for token in (first.token, second.token):
        with pytest.raises(AuthError, match=EXPIRED):
            s.check(token, 452.0)
    assert s.check(other.token, 452.0).user == anna


def test_refresh_never_goes_beyond_max_age_from_login() -> None:
    s = Sessions(ttl_s=900.0, max_age_s=2000.0)
    sess = s.issue(anna, 0.0)
    sess = s.refresh(sess.token, 800.0)
    assert sess.expires_t == 1700.0
    sess = s.refresh(sess.token, 1500.0)
    assert sess.expires_t == 2000.0
    with pytest.raises(AuthError, match=EXPIRED):
        s.refresh(sess.token, 2000.0)


def test_refresh_takes_the_account_as_stored_now() -> None:
    s = Sessions()
    sess = s.issue(anna, 0.0)
    moved = User("nurse.anna", Role.NURSE, frozenset({"L2-WARD"}))
    sess = s.refresh(sess.token, 10.0, user=moved)
    assert s.check(sess.token, 11.0).user.scopes == frozenset({"L2-WARD"})
    off = User("nurse.anna", Role.NURSE, frozenset({"L2-WARD"}), disabled=True)
    with pytest.raises(AuthError, match=EXPIRED):
        s.refresh(sess.token, 12.0, user=off)
    with pytest.raises(AuthError, match=EXPIRED):
        s.check(sess.token, 13.0)
    other = s.issue(sam, 0.0)
    with pytest.raises(AuthError, match=r"cannot be refreshed as nurse\.anna"):
        s.refresh(other.token, 1.0, user=anna)


def test_disabled_user_gets_no_session() -> None:
    with pytest.raises(AuthError, match="disabled"):
        Sessions().issue(User("anna", Role.NURSE, frozenset({"*"}), disabled=True), 0.0)


def test_revoke_and_revoke_user() -> None:
    s = Sessions()
    a1, a2, b = s.issue(anna, 0.0), s.issue(anna, 1.0), s.issue(sam, 2.0)
    assert s.revoke(a1.token) is True
    assert s.revoke(a1.token) is False
    with pytest.raises(AuthError, match=EXPIRED):
        s.check(a1.token, 3.0)
    assert [x.key for x in s.of_user("nurse.anna")] == [a2.key]
    assert s.revoke_user("nurse.anna") == 1
    assert s.revoke_user("nurse.anna") == 0
    with pytest.raises(AuthError, match=EXPIRED):
        s.check(a2.token, 3.0)
    assert s.check(b.token, 3.0).user == sam


def test_expire_drops_and_returns_the_expired_sessions() -> None:
    s = Sessions(ttl_s=100.0)
    old, new = s.issue(anna, 0.0), s.issue(sam, 50.0)
    gone = s.expire(120.0)
    assert [(g.key, g.token, g.user.name) for g in gone] == [(old.key, "", "nurse.anna")]
    assert len(s) == 1
    assert s.expire(120.0) == []
    with pytest.raises(AuthError, match=EXPIRED):
        s.check(old.token, 121.0)
    s.expire(300.0)  # new expired at 150; both forgotten after one more ttl
    with pytest.raises(AuthError, match=UNKNOWN):
        s.check(old.token, 300.0)
    with pytest.raises(AuthError, match=UNKNOWN):
        s.check(new.token, 300.0)
    assert len(s) == 0


@pytest.mark.parametrize(("ttl", "max_age"), [(0.0, 10.0), (-1.0, 10.0), (10.0, float("nan"))])
def test_bad_lifetimes_are_refused(ttl: float, max_age: float) -> None:
    with pytest.raises(ConfigError, match="positive number of seconds"):
        Sessions(ttl_s=ttl, max_age_s=max_age)
