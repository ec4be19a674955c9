"""Tag keys: one secret per tag in the alarm store's SQLite file, and their use by the engine.

The ``tag_keys`` table lives beside the alarm store's tables (same file, WAL). A key is made
with :func:`secrets.token_bytes` when a tag is provisioned (``rtls keys provision``, or the
ward's admission when ``[security] provision_at_admission``), handed to the tag by the nurse
station's NFC writer (docs/tag-auth.md) and to the running engine, and never logged, listed or
sent to a console. The table also keeps the last counter the engine accepted from each tag, so
that a restarted engine still refuses old codes. Plain ``sqlite3``: every call is one short
statement (the CLI, the engine's start, an admission, a counter save every few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rtls.service.store import BUSY_TIMEOUT_MS, SCHEMA_VERSION, AlarmStore, StoreError
from rtls.tagauth import KEY_SIZE

if TYPE_CHECKING:
    from rtls.engine import Engine

_LOG = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS tag_keys (
    tag TEXT PRIMARY KEY, key BLOB NOT NULL, counter INTEGER NOT NULL DEFAULT -1,
    created_t REAL NOT NULL, created_by TEXT NOT NULL)"""
SAVE_EVERY_S = 10.0  # the engine writes accepted counters at most this often


@dataclass(frozen=True)
class KeyInfo:
    """A provisioned tag, without its key: what ``rtls keys list`` shows."""

    tag: str
    created_t: float
    created_by: str
    counter: int  # last counter the engine accepted (-1: none yet)


class KeyStore:
    """The ``tag_keys`` table of one alarm store file. ``KeyStore.open(path)``."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db: sqlite3.Connection | None = db
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, audit_key: bytes | None = None) -> KeyStore:
        """Open the keys of the alarm store at ``path``, creating the store (``audit_key``,
        docs/audit.md) when the file is new; needs no running event loop in that case."""
        p = str(path)
        if not Path(p).exists() or _version(p) == 0:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(_create_store(p, audit_key))
            else:
                raise StoreError(f"{p}: open the alarm store before its keys")
        try:
            db = sqlite3.connect(p, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the tag keys ({p}): {exc}") from exc
        keys = cls(db, p)
        try:
            with keys._errors("cannot open the tag keys"):
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{p}: schema version {version} is newer than this rtls")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return keys

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the tag keys of {self.path} are closed")
        return self._db

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
            raise StoreError(f"{what} ({self.path}): {code}: {exc}") from exc

    # -- keys --------------------------------------------------------------------------------
    def provision(self, tag: str, *, now: float, actor: str) -> bytes:
        """A fresh random key for ``tag`` (replacing any older one; its counter restarts)."""
        key = secrets.token_bytes(KEY_SIZE)
        with self._errors(f"cannot store the key of {tag!r}"):
            self.db.execute("INSERT OR REPLACE INTO tag_keys VALUES (?, ?, -1, ?, ?)",
                            (tag, key, now, actor))  # fmt: skip
        return key

    def revoke(self, tag: str) -> bool:
        """Delete ``tag``'s key; False if it had none."""
        with self._errors(f"cannot revoke the key of {tag!r}"):
            cur = self.db.execute("DELETE FROM tag_keys WHERE tag = ?", (tag,))
        return cur.rowcount > 0

    def list(self) -> list[KeyInfo]:
        """Every provisioned tag, by tag id (never the keys)."""
        with self._errors("cannot list the tag keys"):
            rows = self.db.execute(
                "SELECT tag, created_t, created_by, counter FROM tag_keys ORDER BY tag"
            ).fetchall()
        return [KeyInfo(str(t), float(c), str(b), int(n)) for t, c, b, n in rows]

    def has(self, tag: str) -> bool:
        with self._errors("cannot read the tag keys"):
            row = self.db.execute("SELECT 1 FROM tag_keys WHERE tag = ?", (tag,)).fetchone()
        return row is not None

    def keys(self) -> dict[str, tuple[bytes, int]]:
        """tag -> (key, last accepted counter): what the engine loads at start."""
        with self._errors("cannot read the tag keys"):
            rows = self.db.execute("SELECT tag, key, counter FROM tag_keys").fetchall()
        return {str(t): (bytes(k), int(c)) for t, k, c in rows}

    def save_counters(self, counters: Mapping[str, int]) -> None:
        """Persist accepted counters (never lowering one)."""
        if not counters:
            return
        with self._errors("cannot save the tag counters"):
            self.db.executemany("UPDATE tag_keys SET counter = MAX(counter, ?) WHERE tag = ?",
                                [(c, t) for t, c in counters.items()])  # fmt: skip


def _version(path: str) -> int:
    try:
        db = sqlite3.connect(path)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from exc


async def _create_store(path: str, audit_key: bytes | None) -> None:
    store = await AlarmStore.open(path, audit_key=audit_key)
    await store.close()


# -- the engine's side ---------------------------------------------------------------------------
def load_keys(engine: Engine, keys: KeyStore) -> int:
    """Give the engine every stored key with its last counter; returns how many. Keys of tags
    that are no longer in the site are skipped (logged by tag id)."""
    index = {t.id: i for i, t in enumerate(engine.site.tags)}
    loaded = 0
    for tag, (key, counter) in keys.keys().items():
        if tag not in index:
            _LOG.warning("tag key of %r skipped: no such tag in the site", tag)
            continue
        engine.auth.set_key(index[tag], key, counter)
        loaded += 1
    return loaded


class KeyKeeper:
    """The running engine's key chores: provisioning at admission (when the site asks for it)
    and saving the accepted counters every ``SAVE_EVERY_S`` (:meth:`tick`, a tick observer)."""

    def __init__(self, engine: Engine, keys: KeyStore, *, at_admission: bool) -> None:
        self.engine = engine
        self.keys = keys
        self.at_admission = at_admission
        self._index = {t.id: i for i, t in enumerate(engine.site.tags)}
        self._ids = [t.id for t in engine.site.tags]
        self._saved_t = -float("inf")

    def after_command(
        self, name: str, args: Mapping[str, Any], user: str, now: float
    ) -> list[dict[str, Any]]:
        """A ward command went through: ``admit`` gives the baby's bracelet a fresh key,
        ``pair`` gives the mother tag one if it has none, ``discharge`` revokes the bracelet's.
        Returns the audit events (no key in them)."""
        if not self.at_admission:
            return []
        acts: list[tuple[str, str]] = []
        if name == "admit":
            acts.append(("provision", str(args.get("baby", ""))))
        elif name == "pair" and not self.keys.has(str(args.get("mother", ""))):
            acts.append(("provision", str(args.get("mother", ""))))
        elif name == "discharge":
            acts.append(("revoke", str(args.get("baby", ""))))
        events = []
        for act, tag in acts:
            i = self._index.get(tag.strip())
            if i is None:
                continue
            if act == "provision":
                key = self.keys.provision(tag.strip(), now=now, actor=user)
                self.engine.auth.set_key(i, key)
            else:
                self.keys.revoke(tag.strip())
                self.engine.auth.revoke(i)
            events.append({"actor": user, "action": f"tag_key.{act}", "subject": tag.strip(),
                           "detail": {"command": name}, "t": now})  # fmt: skip
        return events

    def tick(self, now: float, *_: object) -> None:
        """Save the counters accepted since the last save, at most every SAVE_EVERY_S."""
        if now - self._saved_t < SAVE_EVERY_S:
            return
        self._saved_t = now
        self.save()

    def save(self) -> None:
        counters = self.engine.auth.take_counters()
        try:
            self.keys.save_counters({self._ids[i]: c for i, c in counters.items()})
        except StoreError as exc:  # kept in memory; the next save writes the newer values
            _LOG.error("tag counters not saved: %s", exc)


# -- ``rtls keys`` -------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    """``rtls keys provision|list|revoke`` on the ``rtls`` command line's subparsers."""
    k = sub.add_parser("keys", help="tag keys (docs/tag-auth.md)")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", required=True, help="the alarm store's SQLite file")
    common.add_argument("--audit-key-file", help="the site's audit key (HMAC-chained trails)")
    kp = ksub.add_parser("provision", parents=[common], help="a fresh key for a tag")
    kp.add_argument("tag", help="tag id of the site")
    kp.add_argument("--site", help="site TOML (default: the shipped example)")
    kp.add_argument("--key-out", required=True,
                    help="write the key (32 hex digits) to this new file, mode 0600, for the "
                    "provisioning station's NFC writer")  # fmt: skip
    kr = ksub.add_parser("revoke", parents=[common], help="delete a tag's key")
    kr.add_argument("tag")
    ksub.add_parser("list", parents=[common], help="provisioned tags (never the keys)")
    k.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    """Provision, revoke or list tag keys; provision and revoke are audited as
    ``cli:<login>``. A running engine loads keys at its start (docs/tag-auth.md)."""
    import getpass
    import os
    import time

    from rtls.errors import RtlsError
    from rtls.site import load_site

    db = Path(args.db)
    if args.keys_command != "provision" and not db.is_file():
        raise RtlsError(f"{db}: no such database file")
    audit_key = None
    if args.audit_key_file:
        try:
            audit_key = Path(args.audit_key_file).read_bytes().strip()
        except OSError as exc:
            raise RtlsError(f"{args.audit_key_file}: cannot read the audit key: {exc}") from exc
    with KeyStore.open(db, audit_key=audit_key) as keys:
        if args.keys_command == "list":
            rows = [("tag", "provisioned", "by", "counter")] + [
                (k.tag, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(k.created_t)),
                 k.created_by, str(k.counter)) for k in keys.list()]  # fmt: skip
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
            return 0
        try:
            login = f"cli:{getpass.getuser()}"
        except (OSError, KeyError, ImportError):
            login = "cli:unknown"
        now = time.time()
        if args.keys_command == "provision":
            if args.tag not in {t.id for t in load_site(args.site).tags}:
                raise RtlsError(f"tag {args.tag!r} is not in the site")
            try:
                fd = os.open(args.key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                raise RtlsError(f"{args.key_out}: cannot create: {exc.strerror or exc}") from exc
            key = keys.provision(args.tag, now=now, actor=login)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key.hex() + "\n")
        elif not keys.revoke(args.tag):
            raise RtlsError(f"tag {args.tag!r} has no key")
    event = {"actor": login, "action": f"tag_key.{args.keys_command}", "subject": args.tag,
             "detail": {}, "t": now}  # fmt: skip
    asyncio.run(_audit(str(db), audit_key, event))
    print(f"rtls keys: {args.keys_command} {args.tag}; audited (a running engine loads keys "
          "at its start)")  # fmt: skip
    return 0


async def _audit(path: str, audit_key: bytes | None, event: dict[str, Any]) -> None:
    async with await AlarmStore.open(path, audit_key=audit_key) as store:
        await store.commit(events=[event])
