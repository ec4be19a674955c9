"""Console sessions: short-lived bearer tokens after a login (issue 5; docs/users.md). Pure.

:meth:`Sessions.issue` gives a random token (``secrets.token_urlsafe(32)``) valid ``ttl_s``;
:meth:`Sessions.refresh` swaps it for a new one (the old one is revoked), never beyond
``max_age_s`` after the login. Only the SHA-256 of each token is kept: a dump of the table does
not give usable tokens. Every method takes ``now`` (the caller's clock, seconds); nothing here
reads the wall clock.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

from rtls.errors import ConfigError
from rtls.users import AuthError, User

__all__ = ["EXPIRED", "UNKNOWN", "AuthError", "Session", "Sessions", "token_key"]

EXPIRED = "session expired: log in again"
UNKNOWN = "unknown session: log in again"


def token_key(token: str) -> str:
    """The key a token is stored under: its hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    """One login. ``token`` is the bearer token when the session comes from :meth:`issue`,
    :meth:`check` or :meth:`refresh`, and ``""`` in what :meth:`Sessions.expire` returns (the
    tokens are not kept): match those on ``key``, the token's SHA-256."""

    token: str
    key: str
    user: User
    issued_t: float  # when this token was issued (login or refresh)
    login_t: float  # when the user logged in (max_age_s counts from here)
    expires_t: float


@dataclass(frozen=True)
class _Entry:
    user: User
    issued_t: float
    login_t: float
    expires_t: float

    def session(self, token: str, key: str) -> Session:
        return Session(token, key, self.user, self.issued_t, self.login_t, self.expires_t)


class Sessions:
    """The live sessions of one console. ``ttl_s``: a token's life (refresh renews it);
    ``max_age_s``: a login's life, whatever the refreshes."""

    def __init__(
        self, ttl_s: float = 900.0, max_age_s: float = 12 * 3600.0, grace_s: float = 30.0
    ) -> None:
        for name, v in (("ttl_s", ttl_s), ("max_age_s", max_age_s), ("grace_s", grace_s)):
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {v!r}")
        self.ttl_s = float(ttl_s)
        self.max_age_s = float(max_age_s)
        # a refreshed token stays valid this long: the client may not have got the new one
        # (a link lost between the refresh and its reply) and resumes with the old one
        self.grace_s = float(grace_s)
        self._live: dict[str, _Entry] = {}
        # ended (revoked or expired) key -> until when it is still answered "session expired"
        self._ended: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._live)

    def issue(self, user: User, now: float) -> Session:
        """A new session for ``user`` (just authenticated) logging in at ``now``."""
        return self._new(user, now, login_t=now)

    def check(self, token: str, now: float) -> Session:
        """The session of ``token``; AuthError if it expired, was revoked or never existed.
        Does not extend it."""
        key = token_key(token)
        entry = self._live.get(key)
        if entry is None:
            raise AuthError(EXPIRED if key in self._ended else UNKNOWN)
        if now >= entry.expires_t:
            self._end(key)
            raise AuthError(EXPIRED)
        return entry.session(token, key)

    def refresh(self, token: str, now: float, user: User | None = None) -> Session:
        """A new token for the session of ``token``, valid ``ttl_s`` more but never beyond
        ``max_age_s`` after the login; the old token stays valid ``grace_s`` more (a client
        whose link dropped before the reply resumes with it, then refreshes again). ``user``:
        the account as stored now (role, scopes or display changed); a disabled one ends the
        session (AuthError)."""
        old = self.check(token, now)
        if user is not None and user.name != old.user.name:
            raise AuthError(f"{old.user.name}'s session cannot be refreshed as {user.name}")
        if user is not None and user.disabled:
            self._end_login(old)
            raise AuthError(EXPIRED)
        entry = self._live[old.key]
        self._live[old.key] = _Entry(entry.user, entry.issued_t, entry.login_t,
                                     min(entry.expires_t, now + self.grace_s))  # fmt: skip
        return self._new(user or old.user, now, login_t=old.login_t)

    def revoke(self, token: str) -> bool:
        """End the session of ``token`` (logout), with the tokens it was refreshed from that
        are still in their grace time. False if there was none."""
        key = token_key(token)
        entry = self._live.get(key)
        if entry is None:
            return False
        self._end_login(entry.session("", key))
        return True

    def _end_login(self, session: Session) -> None:
        """End every token of one login (same user, same login time)."""
        for k in [k for k, e in self._live.items()
                  if e.user.name == session.user.name and e.login_t == session.login_t]:
            self._end(k)  # fmt: skip

    def revoke_user(self, name: str) -> int:
        """End every session of user ``name`` (disabled, password changed); how many ended."""
        keys = [k for k, e in self._live.items() if e.user.name == name]
        for k in keys:
            self._end(k)
        return len(keys)

    def expire(self, now: float) -> list[Session]:
        """Drop the sessions expired at ``now`` and return them (token ``""``, see Session)."""
        gone = [(k, e) for k, e in self._live.items() if now >= e.expires_t]
        for k, _ in gone:
            self._end(k)
        self._ended = {k: t for k, t in self._ended.items() if now < t}
        return [e.session("", k) for k, e in gone]

    def of_user(self, name: str) -> list[Session]:
        """The live sessions of user ``name`` (token ``""``), e.g. to close their connections."""
        return [e.session("", k) for k, e in self._live.items() if e.user.name == name]

    # -- internals -------------------------------------------------------------------------------
    def _new(self, user: User, now: float, login_t: float) -> Session:
        if user.disabled:
            raise AuthError(f"{user.name}'s account is disabled")
        token = secrets.token_urlsafe(32)
        key = token_key(token)
        entry = _Entry(user, now, login_t, min(now + self.ttl_s, login_t + self.max_age_s))
        self._live[key] = entry
        return entry.session(token, key)

    def _end(self, key: str) -> bool:
        """Drop a live session; its token is answered "session expired" (not "unknown") for
        ``ttl_s`` after its natural expiry, then forgotten by :meth:`expire`."""
        entry = self._live.pop(key, None)
        if entry is None:
            return False
        self._ended[key] = entry.expires_t + self.ttl_s
        return True
