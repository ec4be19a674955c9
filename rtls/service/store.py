"""The alarm store: SQLite (WAL, ``synchronous=FULL``; rtls.service.database) behind the alarm book.

One :meth:`AlarmStore.commit` writes, in ONE transaction, a batch of alarm transitions (and the
alarms' new rows), the audit records of the operators' acts, ward documents and the book's meta
(next alarm id, held conditions); it returns only once SQLite has committed (fsync'd the WAL),
so the caller announces only what survives a SIGKILL or a power cut (issue 4: "a transition is
committed before it is announced"). :meth:`AlarmStore.load` gives back what
:meth:`rtls.alarm.AlarmBook.restore` needs. :func:`verify_database` checks the audit chain of a
file (``rtls audit verify``). Schema and threat model: docs/audit.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rtls.alarm import SYSTEM, Alarm, AlarmBook, Transition
from rtls.audit import AuditError, AuditRecord, VerifyResult, next_record, verify
from rtls.errors import RtlsError
from rtls.service.database import Database

_LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # PRAGMA user_version of the schema below
BUSY_TIMEOUT_MS = 5000
MODE_PLAIN, MODE_HMAC = "sha256", "hmac-sha256"  # meta "audit_mode"

_SCHEMA = (
    """CREATE TABLE alarms (
        id INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL,
        priority TEXT NOT NULL, state TEXT NOT NULL, open INTEGER NOT NULL,
        raised_t REAL NOT NULL, updated_t REAL NOT NULL, closed_t REAL, data TEXT NOT NULL)""",
    "CREATE INDEX alarms_open ON alarms(open) WHERE open = 1",
    "CREATE INDEX alarms_raised ON alarms(raised_t)",
    "CREATE INDEX alarms_key ON alarms(key)",
    """CREATE TABLE transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alarm_id INTEGER NOT NULL REFERENCES alarms(id), t REAL NOT NULL, action TEXT NOT NULL,
        from_state TEXT, to_state TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX transitions_alarm ON transitions(alarm_id, id)",
    "CREATE TABLE ward_state (key TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, t REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL)""",
    "CREATE INDEX audit_t ON audit(t)",
    # append-only against mistakes; an attacker can drop these (the chain is the real guard)
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# SQLite primary result codes (sqlite3.Error.sqlite_errorname) in plain words.
_HINTS = {
    "SQLITE_FULL": "disk full (or the database reached its size limit)",
    "SQLITE_BUSY": "database locked by another connection (busy timeout expired)",
    "SQLITE_LOCKED": "database table locked",
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_NOTADB": "not an SQLite database",
    "SQLITE_CORRUPT": "database file is corrupt",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_PERM": "permission denied",
    "SQLITE_CONSTRAINT": "constraint violated",
    "SQLITE_NOMEM": "out of memory",
}


class StoreError(RtlsError):
    """The alarm store failed (disk full, database locked, corrupt or newer schema, ...)."""


def _describe(what: str, path: str, exc: BaseException) -> StoreError:
    name = getattr(exc, "sqlite_errorname", None) or ""
    hint = next((h for code, h in _HINTS.items() if name.startswith(code)), None)
    if hint is None and isinstance(exc, ValueError):
        hint = "the store is closed"
    text = f"{what} ({path}): {hint or type(exc).__name__}: {exc}"
    return StoreError(text)


def _json(value: Any) -> str:
    """Canonical JSON the store can always write: what JSON or SQLite's UTF-8 cannot hold (NaN,
    a lone surrogate, an unknown type, nesting too deep) is written as text (:func:`_storable`)
    instead of failing the commit: the store commits in order, so one record it could never
    accept would hold back every later alarm (found by bench/fuzz.py)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)  # fmt: skip
        text.encode("utf-8")
        return text
    except (TypeError, ValueError, UnicodeError, RecursionError):
        return json.dumps(_storable(value), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)  # fmt: skip


_MAX_DEPTH = 32


def _storable(value: Any, depth: int = 0) -> Any:
    """``value`` with everything JSON and UTF-8 can hold kept, the rest as text: non-finite
    floats as ``"nan"`` / ``"inf"``, lone surrogates backslash-escaped, other types by ``str``,
    nesting beyond 32 levels cut."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        return {_storable(str(k)): _storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v, depth + 1) for v in value]
    return _storable(str(value))


def _storable_act(act: Mapping[str, Any]) -> dict[str, Any]:
    """An audit event the chain can always hash: its text fields and detail storable, an empty
    actor, action or subject as ``?``."""
    out = dict(act)
    for key in ("actor", "action", "subject"):
        if key in out:
            out[key] = _storable(str(out[key])) or "?"
    if out.get("detail") is not None:
        out["detail"] = _storable(out["detail"])
    if "t" in out and not (isinstance(out["t"], int | float) and math.isfinite(out["t"])):
        out["t"] = None  # the commit's ``now`` instead
    return out


def _record_from_row(row: Sequence[Any]) -> AuditRecord:
    """An audit row as a record; a field tampered into the wrong type still gives a record
    (which then fails its hash), so a verifier reports it rather than crashing."""
    seq, t, actor, action, subject, detail, prev, hash_ = row
    try:
        d = json.loads(detail)
    except (TypeError, ValueError):
        d = None
    if not isinstance(d, dict):
        d = {"<undecodable detail>": str(detail)}
    try:
        t = float(t)
    except (TypeError, ValueError):
        t = math.nan
    return AuditRecord(seq if isinstance(seq, int) else -1, t, str(actor), str(action),
                       str(subject), d, str(prev), str(hash_))  # fmt: skip


@dataclass(frozen=True)
class StoredTransition:
    """A row of the transitions table (a :class:`rtls.alarm.Transition` without the alarm)."""

    alarm_id: int
    t: float
    action: str
    from_state: str | None
    to_state: str
    actor: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What :meth:`AlarmStore.load` returns: open alarms, the book's meta, the ward documents."""

    alarms: list[Alarm]
    next_id: int
    held: frozenset[str]
    ward: dict[str, dict[str, Any]] = field(default_factory=dict)

    def restore(self, book: AlarmBook) -> None:
        book.restore(self.alarms, self.next_id, self.held)


def audit_of(tr: Transition) -> dict[str, Any] | None:
    """The audit event of a transition an operator made (None for the system's own)."""
    if tr.actor == SYSTEM:
        return None
    return {"t": tr.t, "actor": tr.actor, "action": f"alarm.{tr.action}",
            "subject": tr.alarm.key,
            "detail": {"alarm_id": tr.alarm_id,
                       "from": tr.from_state.value if tr.from_state else None,
                       "to": tr.to_state.value, **dict(tr.detail)}}  # fmt: skip


class AlarmStore:
    """The alarms' SQLite file. Open with ``await AlarmStore.open(path)`` (or ``async with``)."""

    def __init__(self, db: Database, path: str, key: bytes | None) -> None:
        self._db: Database | None = db
        self.path = path
        self._key = key
        self._head: AuditRecord | None = None
        self._lock = asyncio.Lock()

    # -- life --------------------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | Path, audit_key: bytes | None = None) -> AlarmStore:
        """Open (creating if needed) the store at ``path``. ``audit_key``: the site's secret for
        an HMAC-chained audit trail (a store created with a key must always be opened with it)."""
        p = str(path)
        try:
            db = await Database.connect(p)
        except (sqlite3.Error, OSError) as exc:
            raise _describe("cannot open the alarm store", p, exc) from exc
        store = cls(db, p, audit_key)
        try:
            await store._setup()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                await db.close()
            except sqlite3.Error as exc:
                raise _describe("cannot close the alarm store", self.path, exc) from exc

    async def __aenter__(self) -> AlarmStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.close()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise StoreError(f"the alarm store {self.path} is closed")
        return self._db

    @property
    def head(self) -> AuditRecord | None:
        """The last audit record committed: publish ``(seq, hash)`` elsewhere (docs/audit.md)."""
        return self._head

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, ValueError) as exc:
            raise _describe(what, self.path, exc) from exc

    async def _setup(self) -> None:
        db = self.db
        with self._errors("cannot open the alarm store"):
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            rows = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            mode = str(next(iter(rows))[0]).lower()
            if mode != "wal" and self.path != ":memory:":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("BEGIN IMMEDIATE")
            try:
                await self._schema()
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            rows = await db.execute_fetchall(
                "SELECT seq, t, actor, action, subject, detail, prev, hash FROM audit "
                "ORDER BY seq DESC LIMIT 1"
            )
        head = [_record_from_row(tuple(r)) for r in rows]
        self._head = head[0] if head else None
        if self._head is not None and self._head.expected_hash(self._key) != self._head.hash:
            # Keep the alarms running; `rtls audit verify` says what is wrong.
            _LOG.error("%s: the last audit record (seq %d) does not verify: tampered or wrong "
                       "audit key; run rtls audit verify", self.path, self._head.seq)  # fmt: skip

    async def _schema(self) -> None:
        db = self.db
        version = int(next(iter(await db.execute_fetchall("PRAGMA user_version")))[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this rtls supports "
                f"({SCHEMA_VERSION}); upgrade rtls or use another database"
            )
        if version == 0:
            tables = await db.execute_fetchall("SELECT name FROM sqlite_master")
            if list(tables):
                raise StoreError(f"{self.path}: not an rtls alarm store (tables but no version)")
            for statement in _SCHEMA:
                await db.execute(statement)
            mode = MODE_HMAC if self._key is not None else MODE_PLAIN
            await db.execute("INSERT INTO meta VALUES ('audit_mode', ?)", (_json(mode),))
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key='audit_mode'"))
        mode = json.loads(rows[0][0]) if rows else MODE_PLAIN
        if mode == MODE_HMAC and self._key is None:
            raise StoreError(f"{self.path}: the audit trail is keyed (HMAC): open it with the "
                             "site's audit key")  # fmt: skip
        if mode == MODE_PLAIN and self._key is not None:
            raise StoreError(f"{self.path}: the audit trail is not keyed; it was created "
                             "without an audit key")  # fmt: skip

    # -- writing -----------------------------------------------------------------------------------
    async def commit(
        self, transitions: Sequence[Transition] = (), *, book: AlarmBook | None = None,
        events: Sequence[Mapping[str, Any]] = (),
        ward: Mapping[str, Mapping[str, Any]] | None = None, now: float | None = None,
    ) -> list[AuditRecord]:  # fmt: skip
        """Commit one batch in one transaction and return the audit records it appended.

        ``transitions`` (in order) and the alarms' new rows; an audit record for every
        transition whose actor is not ``system`` and for every extra ``events`` entry (a dict
        with actor, action, subject, optional detail and t, else ``now``); ``ward`` documents
        (key -> JSON dict, each written whole); ``book``'s next id and held conditions. Returns
        only after the commit; on failure nothing of the batch is written (StoreError)."""
        alarm_rows, tr_rows = [], []
        acts: list[Mapping[str, Any]] = []
        try:
            for tr in transitions:
                a = tr.alarm
                alarm_rows.append((a.id, a.key, a.type.value, a.subject, a.priority.label,
                                   a.state.value, int(a.open), a.raised_t, a.updated_t,
                                   a.closed_t, _json(a.as_dict())))  # fmt: skip
                tr_rows.append((tr.alarm_id, tr.t, tr.action,
                                tr.from_state.value if tr.from_state else None,
                                tr.to_state.value, tr.actor, _json(dict(tr.detail))))  # fmt: skip
                act = audit_of(tr)
                if act is not None:
                    acts.append(act)
            acts.extend(events)
            acts = [_storable_act(e) for e in acts]
            ward_rows = [(k, _json(dict(v))) for k, v in (ward or {}).items()]
            meta_rows = [] if book is None else [
                ("next_id", _json(book.next_id)), ("held", _json(sorted(book.held)))
            ]  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise StoreError(f"commit ({self.path}): batch is not JSON-able: {exc}") from exc
        async with self._lock:
            records = self._chain(acts, now)
            audit_rows = [(r.seq, r.t, r.actor, r.action, r.subject, _json(dict(r.detail)),
                           r.prev, r.hash) for r in records]  # fmt: skip

            def write(conn: sqlite3.Connection) -> None:  # one transaction, one hand-over
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT INTO alarms VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) "
                        "DO UPDATE SET key=excluded.key, type=excluded.type, "
                        "subject=excluded.subject, priority=excluded.priority, "
                        "state=excluded.state, open=excluded.open, "
                        "raised_t=excluded.raised_t, updated_t=excluded.updated_t, "
                        "closed_t=excluded.closed_t, data=excluded.data", alarm_rows)  # fmt: skip
                    conn.executemany(
                        "INSERT INTO transitions (alarm_id, t, action, from_state, to_state, "
                        "actor, detail) VALUES (?,?,?,?,?,?,?)", tr_rows)  # fmt: skip
                    conn.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", audit_rows)
                    conn.executemany("INSERT OR REPLACE INTO ward_state VALUES (?,?)",
                                     ward_rows)  # fmt: skip
                    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", meta_rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise

            db = self.db
            with self._errors("commit failed, nothing of the batch was written"):
                await db.run(write)
            if records:
                self._head = records[-1]
        return records

    def _chain(self, acts: Sequence[Mapping[str, Any]], now: float | None) -> list[AuditRecord]:
        out: list[AuditRecord] = []
        prev = self._head
        for e in acts:
            t = e.get("t") if e.get("t") is not None else now
            missing = {"actor", "action", "subject"} - set(e)
            if missing or t is None:
                why = f"missing {sorted(missing)}" if missing else "no t and no now="
                raise StoreError(f"audit event {dict(e)!r}: {why}")
            try:
                prev = next_record(prev, t, e["actor"], e["action"], e["subject"],
                                   e.get("detail"), self._key)  # fmt: skip
            except AuditError as exc:
                raise StoreError(f"audit event {dict(e)!r}: {exc}") from exc
            out.append(prev)
        return out

    # -- reading -----------------------------------------------------------------------------------
    async def load(self) -> Snapshot:
        """Open alarms, next id, held conditions and ward documents (after a restart)."""
        db = self.db
        with self._errors("cannot load the alarm store"):
            alarms = await db.execute_fetchall("SELECT data FROM alarms WHERE open = 1 "
                                               "ORDER BY id")  # fmt: skip
            meta: dict[str, str] = {
                str(k): str(v) for k, v in await db.execute_fetchall("SELECT key, value FROM meta")
            }
            ward = await db.execute_fetchall("SELECT key, doc FROM ward_state ORDER BY key")
        return Snapshot(
            alarms=[Alarm.from_dict(json.loads(r[0])) for r in alarms],
            next_id=int(json.loads(meta.get("next_id", "1"))),
            held=frozenset(json.loads(meta.get("held", "[]"))),
            ward={str(k): json.loads(v) for k, v in ward},
        )

    async def alarms_between(self, t0: float, t1: float) -> list[Alarm]:
        """Alarms (closed ones too) open at some time in ``[t0, t1]``, oldest first."""
        with self._errors("cannot read alarm history"):
            rows = await self.db.execute_fetchall(
                "SELECT data FROM alarms WHERE raised_t <= ? AND (closed_t IS NULL OR "
                "closed_t >= ?) ORDER BY raised_t, id", (t1, t0))  # fmt: skip
        return [Alarm.from_dict(json.loads(r[0])) for r in rows]

    async def transitions_of(self, alarm_id: int) -> list[StoredTransition]:
        """Every transition of one alarm, in the order they were committed."""
        with self._errors("cannot read transitions"):
            rows = await self.db.execute_fetchall(
                "SELECT alarm_id, t, action, from_state, to_state, actor, detail FROM "
                "transitions WHERE alarm_id = ? ORDER BY id", (alarm_id,))  # fmt: skip
        return [StoredTransition(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))
                for r in rows]  # fmt: skip

    async def audit_between(self, t0: float, t1: float) -> list[AuditRecord]:
        """Audit records with ``t0 <= t <= t1``, in chain order."""
        with self._errors("cannot read the audit trail"):
            rows = await self.db.execute_fetchall(
                "SELECT seq, t, actor, action, subject, detail, prev, hash FROM audit "
                "WHERE t BETWEEN ? AND ? ORDER BY seq", (t0, t1))  # fmt: skip
        return [_record_from_row(tuple(r)) for r in rows]

    async def audit_latest(self, limit: int) -> list[AuditRecord]:
        """The ``limit`` newest audit records, oldest first (the console's audit view)."""
        with self._errors("cannot read the audit trail"):
            rows = await self.db.execute_fetchall(
                "SELECT seq, t, actor, action, subject, detail, prev, hash FROM audit "
                "ORDER BY seq DESC LIMIT ?", (max(0, int(limit)),))  # fmt: skip
        return [_record_from_row(tuple(r)) for r in reversed(list(rows))]


def verify_database(
    path: str | Path, key: bytes | None = None, head: tuple[int, str] | None = None
) -> VerifyResult:
    """Verify the audit chain of the store at ``path`` (read-only, synchronous: for the CLI).

    ``key``: the site's audit key if the trail is keyed (always give it on a keyed site: a
    chain re-hashed without a key then fails). ``head``: an anchored ``(seq, hash)``."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"{p}: no such database file")
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _describe("cannot open the database", str(p), exc) from exc
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            raise StoreError(f"{p}: not an rtls alarm store (no schema version)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{p}: schema version {version} is newer than this rtls supports "
                             f"({SCHEMA_VERSION})")  # fmt: skip
        row = con.execute("SELECT value FROM meta WHERE key='audit_mode'").fetchone()
        if key is None and row is not None and json.loads(row[0]) == MODE_HMAC:
            raise StoreError(f"{p}: the audit trail is keyed (HMAC): give the site's audit key")
        cur = con.execute("SELECT seq, t, actor, action, subject, detail, prev, hash FROM audit "
                          "ORDER BY seq")  # fmt: skip
        records: Iterable[AuditRecord] = (_record_from_row(r) for r in cur)
        return verify(records, key, head)
    except sqlite3.Error as exc:
        raise _describe("cannot read the audit trail", str(p), exc) from exc
    finally:
        con.close()
