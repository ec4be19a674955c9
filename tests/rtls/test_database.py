"""One SQLite connection in a thread of its own (rtls.service.database), on a real file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from rtls.service.database import Database


def test_calls_run_in_one_thread_and_a_whole_transaction_in_one_call(tmp_path: Path) -> None:
    async def main() -> None:
        db = await Database.connect(str(tmp_path / "t.db"))
        await db.execute("CREATE TABLE t (a INTEGER, b TEXT)")
        await db.executemany("INSERT INTO t VALUES (?, ?)", [(1, "x"), (2, "y")])
        assert await db.execute_fetchall("SELECT a, b FROM t ORDER BY a") == [(1, "x"), (2, "y")]
        names: set[str] = set()

        def write(conn: sqlite3.Connection) -> int:
            names.add(threading.current_thread().name)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t VALUES (?, ?)", [(3, "z"), (4, "w")])
            conn.execute("COMMIT")
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

        assert await db.run(write) == 4
        assert await db.run(lambda conn: threading.current_thread().name) in names
        assert names != {threading.current_thread().name}  # not the loop's thread

        def fails(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO t VALUES (5, 'v')")
                conn.execute("INSERT INTO nowhere VALUES (1)")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise

        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            await db.run(fails)
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(4,)]  # nothing of it
        with pytest.raises(sqlite3.OperationalError):
            await db.execute("SELEC nonsense")
        await db.close()
        await db.close()  # again: nothing
        with pytest.raises(ValueError, match="no active connection"):
            await db.execute("SELECT 1")

    asyncio.run(main())
    # the file holds what was committed
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (4,)
    conn.close()


def test_a_file_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(Database.connect(str(tmp_path / "no" / "such" / "dir" / "t.db")))
