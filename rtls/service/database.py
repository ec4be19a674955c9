"""One SQLite connection in a thread of its own, for asyncio code.

Every call runs in that thread and is awaited: ``execute``, ``executemany`` and
``execute_fetchall`` as in aiosqlite, and :meth:`Database.run`, which runs a whole function
of the connection (a transaction of several statements) in *one* hand-over. That is the
point of this class: each hand-over between the event loop and a thread needs the GIL twice,
and while the engine's tick thread runs NumPy code a hand-over costs up to a switch interval
each way. A commit of five statements through aiosqlite took 7 hand-overs, 10-20 ms at
200,000 obs/s; as one :meth:`run` it takes one (docs/performance.md).

sqlite3's own errors pass through unchanged (callers wrap them); a call on a closed database
raises ``ValueError``, as aiosqlite does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Database:
    """A sqlite3 connection (autocommit: ``isolation_level=None``) owned by one thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtls-sqlite")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def connect(cls, path: str) -> Database:
        """Open ``path`` (creating it if needed); sqlite3.Error or OSError if it cannot be."""
        db = cls(path)
        try:
            db._conn = await db._call(sqlite3.connect, path, isolation_level=None)
        except BaseException:
            db._pool.shutdown(wait=False)
            raise
        return db

    async def close(self) -> None:
        """Close the connection and stop the thread (again: nothing)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._call(conn.close)
            finally:
                self._pool.shutdown(wait=False)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in the database's thread; its result."""
        conn = self._connection()
        return await self._call(fn, conn)

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        conn = self._connection()
        await self._call(lambda: conn.execute(sql, parameters).close())

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        conn = self._connection()
        await self._call(lambda: conn.executemany(sql, rows).close())

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        conn = self._connection()
        return await self._call(lambda: conn.execute(sql, parameters).fetchall())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
