"""The alarm store against a real SQLite file: round trip, atomicity, tampering, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rtls.alarm import AlarmBook, AlarmState, AlarmType, Condition, Transition
from rtls.audit import Problem
from rtls.service.cli import main as cli_main
from rtls.service.store import SCHEMA_VERSION, AlarmStore, StoreError, verify_database

ROOT = Path(__file__).resolve().parents[2]
KEY = b"per-site-secret"


def cond(type_: AlarmType, subject: str, active: bool, t: float) -> Condition:
    return Condition(type_, subject, active, t)


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def tamper(path: Path, *sql: str) -> None:
    """What an attacker with write access does: drop the append-only triggers, then edit."""
    con = sqlite3.connect(path)
    try:
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("DROP TRIGGER audit_no_delete")
        for s in sql:
            con.execute(s)
        con.commit()
    finally:
        con.close()


async def ward_day(store: AlarmStore, book: AlarmBook) -> dict[str, int]:
    """A short ward scenario through the real book, committing after every step."""
    ids: dict[str, int] = {}

    async def step(trs: list[Transition], **kw: Any) -> None:
        await store.commit(trs, book=book, **kw)

    trs = book.apply([cond(AlarmType.EXIT, "B03", True, 0.0),
                      cond(AlarmType.TAG_LOOSE, "B04", True, 0.0)], 0.0)  # fmt: skip
    ids["exit"], ids["loose"] = trs[0].alarm_id, trs[1].alarm_id
    await step(trs)
    await step(book.tick(31.0))  # the exit escalates to security
    await step(book.acknowledge(ids["exit"], "nurse.anna", 40.0))
    await step(book.apply([cond(AlarmType.EXIT, "B03", False, 50.0)], 50.0))
    await step(book.resolve(ids["exit"], "sec.bob", "genuine", "baby returned", 60.0))
    trs = book.apply([cond(AlarmType.SOS, "W1", True, 61.0)], 61.0)
    ids["sos"] = trs[0].alarm_id
    trs += book.acknowledge(ids["sos"], "nurse.carl", 62.0)
    trs += book.resolve(ids["sos"], "nurse.carl", "false", "pressed by mistake", 63.0)
    await step(trs)  # resolved while the button still holds: held
    sign_out = {"actor": "nurse.anna", "action": "ward.sign_out", "subject": "B05",
                "detail": {"escort": "M05", "until": 3665.0}}  # fmt: skip
    ward = {"ward": {"babies": {"B05": {"signed_out": True}}}, "workers": {"W1": {"on": 1}}}
    await step([], events=[sign_out], ward=ward, now=65.0)
    trs = book.apply([cond(AlarmType.MAN_DOWN, "W2", True, 70.0)], 70.0)
    ids["man_down"] = trs[0].alarm_id
    await step(trs)
    return ids


def test_round_trip_restores_the_book(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"
    book = AlarmBook()

    async def first() -> dict[str, int]:
        async with await AlarmStore.open(db) as store:
            ids = await ward_day(store, book)
            head = store.head
        assert head is not None
        assert verify_database(db).head_hash == head.hash
        return ids

    ids = asyncio.run(first())

    async def second() -> None:
        async with await AlarmStore.open(db) as store:
            snap = await store.load()
            restored = AlarmBook()
            snap.restore(restored)
            assert {a.id: a.as_dict() for a in restored.active()} == {
                a.id: a.as_dict() for a in book.active()}  # fmt: skip
            assert {a.id for a in restored.active()} == {ids["loose"], ids["man_down"]}
            assert restored.next_id == book.next_id
            assert restored.held == book.held == frozenset({"sos:W1"})
            assert snap.ward["ward"]["babies"]["B05"]["signed_out"] is True
            assert set(snap.ward) == {"ward", "workers"}
            # the escalation timers resume from their absolute times
            later_a = [t.as_dict() for t in book.tick(400.0)]
            later_b = [t.as_dict() for t in restored.tick(400.0)]
            assert later_a == later_b
            assert any(t["action"] == "escalate" for t in later_b)
            # queries for the console
            trs = await store.transitions_of(ids["exit"])
            assert [(t.action, t.actor) for t in trs] == [
                ("raise", "system"), ("escalate", "system"), ("acknowledge", "nurse.anna"),
                ("clear", "system"), ("resolve", "sec.bob")]  # fmt: skip
            assert trs[-1].to_state == AlarmState.CLOSED.value
            assert trs[-1].detail == {"outcome": "genuine", "comment": "baby returned"}
            assert trs[1].detail == {"step": 1, "group": "security"}
            history = {a.id: a for a in await store.alarms_between(0.0, 1000.0)}
            assert set(history) == set(ids.values())
            assert history[ids["exit"]].state is AlarmState.CLOSED
            assert history[ids["exit"]].closed_by == "sec.bob"
            assert set(a.id for a in await store.alarms_between(65.0, 1000.0)) == {
                ids["loose"], ids["man_down"]}  # fmt: skip
            audit = await store.audit_between(0.0, 1000.0)
            assert [(r.actor, r.action) for r in audit] == [
                ("nurse.anna", "alarm.acknowledge"), ("sec.bob", "alarm.resolve"),
                ("nurse.carl", "alarm.acknowledge"), ("nurse.carl", "alarm.resolve"),
                ("nurse.anna", "ward.sign_out")]  # fmt: skip
            assert audit[1].subject == "exit:B03"
            assert audit[1].detail["comment"] == "baby returned"
            assert [r.seq for r in await store.audit_between(61.5, 64.0)] == [3, 4]
            assert store.head == audit[-1]

    asyncio.run(second())
    assert verify_database(db).ok


def test_wal_and_full_sync(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def go() -> int:
        async with await AlarmStore.open(db) as store:
            rows = list(await store.db.execute_fetchall("PRAGMA synchronous"))
            return int(rows[0][0])

    assert asyncio.run(go()) == 2  # FULL
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_failed_commit_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    book = AlarmBook()

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            await ward_day(store, book)
            before = {t: count(db, t) for t in ("alarms", "transitions", "audit", "ward_state")}
            head = store.head
            # the batch fails at its ward document, after its alarms, transitions and audit rows
            with sqlite3.connect(db) as con:
                con.execute(
                    "CREATE TRIGGER boom BEFORE INSERT ON ward_state WHEN NEW.key = 'boom' "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            trs = book.apply([cond(AlarmType.CODE_PINK, "ward", True, 80.0)], 80.0)
            trs += book.acknowledge(trs[0].alarm_id, "nurse.dan", 81.0)
            with pytest.raises(StoreError, match="nothing of the batch was written") as err:
                await store.commit(trs, book=book, ward={"boom": {}}, now=81.0)
            assert isinstance(err.value.__cause__, sqlite3.Error)
            assert "injected failure" in str(err.value)
            assert {t: count(db, t) for t in before} == before
            assert store.head == head
            # the same batch commits once the cause is gone, chained on the same head
            with sqlite3.connect(db) as con:
                con.execute("DROP TRIGGER boom")
            added = await store.commit(trs, book=book, ward={"boom": {}}, now=81.0)
            assert head is not None and added[0].prev == head.hash
            assert added[0].seq == head.seq + 1
            snap = await store.load()
            assert trs[0].alarm_id in {a.id for a in snap.alarms}

    asyncio.run(go())
    assert verify_database(db).ok


def test_disk_full_is_named(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            rows = list(await store.db.execute_fetchall("PRAGMA page_count"))
            await store.db.execute(f"PRAGMA max_page_count = {int(rows[0][0])}")
            big = {"ward": {"blob": "x" * 200_000}}
            with pytest.raises(StoreError, match="disk full"):
                await store.commit([], ward=big, now=1.0)
            assert store.head is None

    asyncio.run(go())
    assert count(db, "ward_state") == 0


def test_bad_events_and_closed_store(tmp_path: Path) -> None:
    async def go() -> None:
        store = await AlarmStore.open(tmp_path / "a.db")
        with pytest.raises(StoreError, match="no t"):
            await store.commit([], events=[{"actor": "u", "action": "a", "subject": "s"}])
        with pytest.raises(StoreError, match="missing"):
            await store.commit([], events=[{"actor": "u", "t": 1.0}])
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.commit([], ward={"w": {}})

    asyncio.run(go())
    assert count(tmp_path / "a.db", "audit") == 0


def test_concurrent_commits_keep_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            await asyncio.gather(*(
                store.commit([], events=[{"actor": f"u{i}", "action": "login", "subject": "c"}],
                             now=float(i)) for i in range(12)))  # fmt: skip

    asyncio.run(go())
    res = verify_database(db)
    assert (res.ok, res.count, res.head_seq) == (True, 12, 12)


def test_schema_versions_and_foreign_files(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def create() -> None:
        store = await AlarmStore.open(db)
        await store.close()

    asyncio.run(create())
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this rtls supports"):
        asyncio.run(AlarmStore.open(db))
    with pytest.raises(StoreError, match="newer"):
        verify_database(db)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not an rtls alarm store"):
        asyncio.run(AlarmStore.open(other))
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="not an SQLite database") as err:
        asyncio.run(AlarmStore.open(junk))
    assert isinstance(err.value.__cause__, sqlite3.Error)


def test_tampering_is_found(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            await ward_day(store, AlarmBook())

    asyncio.run(go())
    ok = verify_database(db)
    assert (ok.ok, ok.count) == (True, 5)
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET actor = 'x' WHERE seq = 2")
    anchored = (ok.head_seq, ok.head_hash)

    edited = tmp_path / "edited.db"
    edited.write_bytes(db.read_bytes())
    tamper(edited, "UPDATE audit SET detail = replace(detail, 'baby returned', 'nothing') "
                   "WHERE seq = 2")  # fmt: skip
    res = verify_database(edited)
    assert (res.ok, res.problem, res.bad_seq) == (False, Problem.HASH_MISMATCH, 2)

    deleted = tmp_path / "deleted.db"
    deleted.write_bytes(db.read_bytes())
    tamper(deleted, "DELETE FROM audit WHERE seq = 3")
    res = verify_database(deleted)
    assert (res.problem, res.bad_seq) == (Problem.SEQ_GAP, 4)

    garbled = tmp_path / "garbled.db"
    garbled.write_bytes(db.read_bytes())
    tamper(garbled, "UPDATE audit SET t = 'yesterday', detail = '{oops' WHERE seq = 1")
    res = verify_database(garbled)
    assert (res.problem, res.bad_seq) == (Problem.HASH_MISMATCH, 1)

    cut = tmp_path / "cut.db"
    cut.write_bytes(db.read_bytes())
    tamper(cut, "DELETE FROM audit WHERE seq >= 4")
    assert verify_database(cut).ok  # a cut tail needs the anchored head ...
    res = verify_database(cut, head=anchored)
    assert res.problem is Problem.HEAD_MISSING  # ... which finds it

    # the command line: 0 intact, 1 with the first bad record, 2 on an error
    head_arg = f"{anchored[0]}:{anchored[1]}"
    assert cli_main(["audit", "verify", "--db", str(db), "--head", head_arg]) == 0
    assert cli_main(["audit", "verify", "--db", str(edited)]) == 1
    assert cli_main(["audit", "verify", "--db", str(cut), "--head", head_arg]) == 1
    assert cli_main(["audit", "verify", "--db", str(tmp_path / "missing.db")]) == 2
    assert cli_main(["audit", "verify", "--db", str(db), "--head", "3:abc"]) == 2


def test_cli_output_names_the_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "a.db"

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            await ward_day(store, AlarmBook())

    asyncio.run(go())
    tamper(db, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    assert cli_main(["audit", "verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "record seq 3" in out and "hash mismatch" in out and "mallory" in out


def test_keyed_audit_trail(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(KEY + b"\n")

    async def go() -> None:
        async with await AlarmStore.open(db, audit_key=KEY) as store:
            await ward_day(store, AlarmBook())

    asyncio.run(go())
    assert verify_database(db, key=KEY).ok
    assert verify_database(db, key=b"wrong").bad_seq == 1
    with pytest.raises(StoreError, match="keyed"):
        verify_database(db)
    with pytest.raises(StoreError, match="keyed"):
        asyncio.run(AlarmStore.open(db))
    assert cli_main(["audit", "verify", "--db", str(db), "--key-file", str(key_file)]) == 0
    assert cli_main(["audit", "verify", "--db", str(db)]) == 2
    # an attacker who rewrites the whole trail as a plain SHA-256 chain is still found
    plain = tmp_path / "plain.db"

    async def forge() -> None:
        async with await AlarmStore.open(plain) as store:
            await ward_day(store, AlarmBook())

    asyncio.run(forge())
    with sqlite3.connect(plain) as con:
        con.execute("UPDATE meta SET value = '\"hmac-sha256\"' WHERE key = 'audit_mode'")
    assert verify_database(plain, key=KEY).problem is Problem.HASH_MISMATCH


def test_sigkill_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("store_child.py")), str(db), "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    printed: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while len(printed) < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            printed.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)  # in the middle of the stream of commits
        rest, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err
    printed += [int(x) for x in rest.split()]
    assert len(printed) >= 40, err
    res = verify_database(db)  # before anyone reopens the store: WAL as the kill left it
    assert res.ok, res.message
    with sqlite3.connect(db) as con:
        stored = {r[0] for r in con.execute("SELECT id FROM alarms")}
        acked = {r[0] for r in con.execute(
            "SELECT id FROM alarms WHERE state = 'active_acknowledged'")}  # fmt: skip
    assert set(printed) <= stored
    assert set(printed) <= acked
    assert len(stored) - len(printed) in (0, 1)  # at most the commit whose print was cut
    assert res.count == 2 * len(stored)  # an acknowledgement and a sign-out per alarm

    async def resume() -> None:
        async with await AlarmStore.open(db) as store:
            snap = await store.load()
            book = AlarmBook()
            snap.restore(book)
            assert {a.id for a in book.active()} == stored
            assert book.next_id == max(stored) + 1
            assert snap.ward["ward"]["last"] == max(stored)
            trs = book.apply([cond(AlarmType.SOS, "after", True, 9e5)], 9e5)
            trs += book.acknowledge(trs[0].alarm_id, "nurse9", 9e5 + 1)
            await store.commit(trs, book=book)

    asyncio.run(resume())
    res = verify_database(db)
    assert (res.ok, res.count) == (True, 2 * len(stored) + 1)


def test_what_json_or_utf8_cannot_hold_is_stored_as_text_never_blocking_the_store(
    tmp_path: Path,
) -> None:
    """The store commits in order: a record it could never write would hold back every later
    alarm (bench/fuzz.py found NaN, lone surrogates and empty names reaching it)."""
    db = tmp_path / "a.db"
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    poison = [
        {"actor": "nurse.x", "action": "console.refused", "subject": "\ud800", "t": 1.0,
         "detail": {"args": {"duration_s": float("nan"), "n": float("inf")}}},
        {"actor": "", "action": "console.refused", "subject": "", "t": 2.0,
         "detail": {"deep": deep, "obj": object()}},
        {"actor": "nurse.x", "action": "a", "subject": "s", "t": float("nan")},
    ]

    async def go() -> None:
        async with await AlarmStore.open(db) as store:
            records = await store.commit([], events=poison, ward={"w": {"x": object()}},
                                         now=3.0)  # fmt: skip
            assert len(records) == 3
            assert records[0].subject == "\\ud800" and records[1].subject == "?"
            assert records[0].detail["args"]["duration_s"] == "nan"
            assert records[2].t == 3.0  # a non-finite time: the commit's
            later = await store.commit([], events=[
                {"actor": "nurse.x", "action": "alarm.acknowledge", "subject": "7", "t": 4.0}])
            assert len(later) == 1  # the store goes on

    asyncio.run(go())
    assert count(db, "audit") == 4
    assert verify_database(db).ok
