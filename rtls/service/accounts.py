"""Console accounts: users and their argon2id password hashes in the alarm store's SQLite file.

The ``users`` table lives next to the alarm store's tables (rtls/service/store.py) in the same
file, opened in WAL mode so the engine's store and the CLI can both use it. Opening a file that
is not yet an alarm store creates the store first (``AlarmStore.open``), so either may come
first. Passwords are hashed with argon2-cffi's :class:`~argon2.PasswordHasher` (argon2id, RFC
9106 low-memory profile by default) in a worker thread (``asyncio.to_thread``): the event loop
never waits for a hash. Policy (roles, scopes, permissions) is in rtls/users.py; docs/users.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiosqlite
from argon2 import PasswordHasher
from argon2.exceptions import HashingError, InvalidHashError, VerificationError

from rtls.service.store import BUSY_TIMEOUT_MS, SCHEMA_VERSION, AlarmStore, StoreError
from rtls.users import (
    MAX_PASSWORD,
    AuthError,
    Role,
    User,
    UserError,
    check_name,
    check_password,
    check_scopes,
    parse_role,
    ward_ids,
)

if TYPE_CHECKING:
    from rtls.site import Site

_LOG = logging.getLogger(__name__)

WRONG = "wrong user name or password"  # the one answer to every failed login

_SCHEMA = """CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, display TEXT NOT NULL, role TEXT NOT NULL, scopes TEXT NOT NULL,
    password TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created_t REAL NOT NULL, updated_t REAL NOT NULL)"""
_COLUMNS = "name, display, role, scopes, disabled"

# The demo's users: name, role, scopes (None: the site's first ward), display.
DEMO_USERS: tuple[tuple[str, Role, tuple[str, ...] | None, str], ...] = (
    ("nurse.anna", Role.NURSE, None, "Anna (nurse)"),
    ("security.sam", Role.SECURITY, ("*",), "Sam (security)"),
    ("tech.tom", Role.TECHNICIAN, ("*",), "Tom (technician)"),
    ("admin.ada", Role.ADMIN, ("*",), "Ada (admin)"),
)


def _store_error(what: str, path: str, exc: BaseException) -> StoreError:
    code = getattr(exc, "sqlite_errorname", None)
    if code is None and isinstance(exc, ValueError):
        code = "the accounts are closed"
    return StoreError(f"{what} ({path}): {code or type(exc).__name__}: {exc}")


def _user(row: Sequence[Any]) -> User:
    name, display, role, scopes, disabled = row
    try:
        return User(name=name, role=role, scopes=frozenset(json.loads(scopes)), display=display,
                    disabled=bool(disabled))  # fmt: skip
    except (UserError, TypeError, ValueError) as exc:
        raise StoreError(f"users table: the row of {name!r} is invalid: {exc}") from exc


class Accounts:
    """The users of one site. Open with ``await Accounts.open(path)`` (or ``async with``)."""

    def __init__(self, db: aiosqlite.Connection, path: str, hasher: PasswordHasher,
                 clock: Callable[[], float], hash_slots: int = 1) -> None:  # fmt: skip
        self._db: aiosqlite.Connection | None = db
        self.path = path
        self.hasher = hasher
        self._clock = clock
        self._slots = asyncio.Semaphore(max(1, hash_slots))  # argon2 runs at most this many
        self._dummy = ""  # a hash verified for unknown users, so their timing matches (lazy)
        self._dummy_lock = asyncio.Lock()  # simultaneous first logins make it once

    @classmethod
    async def open(
        cls, path: str | Path, *, hasher: PasswordHasher | None = None,
        audit_key: bytes | None = None, clock: Callable[[], float] = time.time,
        hash_slots: int = 1,
    ) -> Accounts:  # fmt: skip
        """Open the accounts of the alarm store at ``path``, creating the store (with
        ``audit_key``, see docs/audit.md) if the file is new, and the ``users`` table if missing.
        ``hasher``: argon2 parameters (default: argon2-cffi's RFC 9106 low-memory profile).
        ``hash_slots``: how many hashes or verifications may run at once (the others wait), so
        a burst of logins leaves the engine its CPU."""
        p = str(path)
        try:
            db = await aiosqlite.connect(p, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise _store_error("cannot open the accounts", p, exc) from exc
        accounts = cls(db, p, hasher or PasswordHasher(), clock, hash_slots)
        try:
            await accounts._setup(audit_key)
        except BaseException:
            await db.close()
            raise
        return accounts

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with self._errors("cannot close the accounts"):
                await db.close()

    async def __aenter__(self) -> Accounts:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"the accounts of {self.path} are closed")
        return self._db

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, ValueError) as exc:
            raise _store_error(what, self.path, exc) from exc

    async def _setup(self, audit_key: bytes | None) -> None:
        db = self.db
        with self._errors("cannot open the accounts"):
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = int(next(iter(await db.execute_fetchall("PRAGMA user_version")))[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this rtls "
                             f"supports ({SCHEMA_VERSION})")  # fmt: skip
        if version == 0 and self.path != ":memory:":
            # A new file: make it an alarm store first (the store refuses a file with tables but
            # no version, so the users table must not come first). It checks "not a store" too.
            store = await AlarmStore.open(self.path, audit_key=audit_key)
            await store.close()
        with self._errors("cannot open the accounts"):
            rows = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            mode = str(next(iter(rows))[0]).lower()
            if mode != "wal" and self.path != ":memory:":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute(_SCHEMA)

    # -- hashing (in a worker thread) ------------------------------------------------------------
    async def _hash(self, password: str) -> str:
        try:
            async with self._slots:
                return await asyncio.to_thread(self.hasher.hash, password)
        except HashingError as exc:
            raise UserError(f"cannot hash the password: {exc}") from exc

    async def _verify(self, hash_: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._matches, hash_, password)

    def _matches(self, hash_: str, password: str) -> bool:
        try:
            return self.hasher.verify(hash_, password)
        except (VerificationError, InvalidHashError) as exc:  # mismatch, or a corrupt hash
            if isinstance(exc, InvalidHashError):
                _LOG.error("%s: a stored password hash is not a valid argon2 hash", self.path)
            return False

    # -- login ------------------------------------------------------------------------------------
    async def verify(self, name: str, password: str) -> User:
        """The user if ``password`` is theirs and the account is enabled; else AuthError
        "wrong user name or password", the same for an unknown name, a disabled account and a
        wrong password (an unknown name costs one verification too). Rehashes the password when the
        stored hash has other parameters than the hasher's."""
        if not self._dummy:  # before any lookup, whatever the name: the first login pays it
            async with self._dummy_lock:
                if not self._dummy:
                    self._dummy = await self._hash(secrets.token_urlsafe(16))
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise AuthError(WRONG)
        row = None
        if isinstance(name, str) and len(name) <= 64:
            with self._errors("cannot read the users"):
                rows = await self.db.execute_fetchall(
                    f"SELECT {_COLUMNS}, password FROM users WHERE name = ?", (name,))  # fmt: skip
            row = next(iter(rows), None)
        if row is None:
            await self._verify(self._dummy, password)
            raise AuthError(WRONG)
        user, stored = _user(tuple(row)[:5]), str(row[5])
        ok = await self._verify(stored, password)
        if not ok or user.disabled:
            raise AuthError(WRONG)
        if self.hasher.check_needs_rehash(stored):
            fresh = await self._hash(password)
            with self._errors("cannot store the rehashed password"):
                await self.db.execute("UPDATE users SET password = ? WHERE name = ? AND "
                                      "password = ?", (fresh, name, stored))  # fmt: skip
        return user

    # -- administration ---------------------------------------------------------------------------
    async def add(
        self, name: str, role: Role | str, scopes: Iterable[str], password: str,
        display: str = "", *, wards: Collection[str] | None = None,
    ) -> User:  # fmt: skip
        """Create a user (UserError if invalid or already there). ``wards``: the site's ward
        ids, to refuse a scope naming an unknown ward."""
        user = User(name=check_name(name), role=parse_role(role),
                    scopes=check_scopes(scopes, wards), display=display)  # fmt: skip
        hash_ = await self._hash(check_password(password))
        now = self._clock()
        try:
            await self.db.execute(
                "INSERT INTO users (name, display, role, scopes, password, disabled, created_t, "
                "updated_t) VALUES (?,?,?,?,?,0,?,?)",
                (user.name, user.display, user.role.value, json.dumps(sorted(user.scopes)),
                 hash_, now, now))  # fmt: skip
        except sqlite3.IntegrityError as exc:
            raise UserError(f"user {user.name!r} already exists") from exc
        except (sqlite3.Error, ValueError) as exc:
            raise _store_error(f"cannot add user {user.name!r}", self.path, exc) from exc
        return user

    async def set_password(self, name: str, password: str) -> User:
        """Replace the password of ``name`` (UserError if unknown or the password is invalid)."""
        hash_ = await self._hash(check_password(password))
        return await self._update(name, "password = ?", (hash_,))

    async def disable(self, name: str) -> User:
        """Refuse every login of ``name`` from now on (end their sessions too: Sessions)."""
        return await self._update(name, "disabled = 1", ())

    async def enable(self, name: str) -> User:
        return await self._update(name, "disabled = 0", ())

    async def _update(self, name: str, assignment: str, values: tuple[Any, ...]) -> User:
        with self._errors(f"cannot update user {name!r}"):
            rows = await self.db.execute_fetchall(
                f"UPDATE users SET {assignment}, updated_t = ? WHERE name = ? "
                f"RETURNING {_COLUMNS}", (*values, self._clock(), name))  # fmt: skip
        row = next(iter(rows), None)
        if row is None:
            raise UserError(f"no such user {name!r}")
        return _user(tuple(row))

    # -- reading ----------------------------------------------------------------------------------
    async def get(self, name: str) -> User | None:
        """The user ``name`` as stored now, or None."""
        with self._errors("cannot read the users"):
            rows = await self.db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,))  # fmt: skip
        row = next(iter(rows), None)
        return None if row is None else _user(tuple(row))

    async def list(self) -> list[User]:
        """Every user, by name."""
        with self._errors("cannot read the users"):
            rows = await self.db.execute_fetchall(f"SELECT {_COLUMNS} FROM users ORDER BY name")
        return [_user(tuple(r)) for r in rows]


async def ensure_demo_users(accounts: Accounts, site: Site) -> list[tuple[str, Role, str]]:
    """Create (or reset, enabled, with a new password) one demo user per role and return their
    ``(name, role, password)``, passwords fresh from :mod:`secrets`, for the demo to print. The
    nurse's scope is the site's ward ``L1-WARD`` (else its first ward, else the whole site)."""
    wards = ward_ids(site)
    nurse_ward = "L1-WARD" if "L1-WARD" in wards else (wards[0] if wards else "*")
    out: list[tuple[str, Role, str]] = []
    for name, role, scopes, display in DEMO_USERS:
        password = secrets.token_urlsafe(12)
        if await accounts.get(name) is None:
            await accounts.add(name, role, scopes or (nurse_ward,), password, display)
        else:
            await accounts.set_password(name, password)
            await accounts.enable(name)
        out.append((name, role, password))
    return out
