"""Console accounts against a real SQLite file and real argon2 (rtls/service/accounts.py), and
the ``rtls users`` CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from argon2 import PasswordHasher

from rtls.alarm import AlarmBook, AlarmType, Condition
from rtls.service.accounts import WRONG, Accounts, ensure_demo_users
from rtls.service.cli import main as cli_main
from rtls.service.store import AlarmStore, StoreError, verify_database
from rtls.site import load_site
from rtls.users import AuthError, Role, UserError

T = TypeVar("T")
PW = "correct horse battery"


class CountingHasher(PasswordHasher):
    """A real (cheap) argon2 hasher that counts its verifications and how many ran at once."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=8192, parallelism=1)
        self.verified = 0
        self.running = self.most = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.verified += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


async def cheap(path: Path, **kw: object) -> Accounts:
    return await Accounts.open(path, hasher=CountingHasher(), **kw)  # type: ignore[arg-type]


def test_add_verify_and_the_one_failure_message(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"

    async def body() -> None:
        async with await cheap(db) as acc:
            u = await acc.add("nurse.anna", "nurse", ["L1-WARD"], PW, "Anna Martin")
            assert (u.role, u.scopes, u.display) == (
                Role.NURSE,
                frozenset({"L1-WARD"}),
                "Anna Martin",
            )
            assert await acc.verify("nurse.anna", PW) == u
            messages = []
            for name, pw in (("nurse.anna", PW + "x"), ("nobody", PW), ("NOT A NAME", PW)):
                with pytest.raises(AuthError) as err:
                    await acc.verify(name, pw)
                messages.append(str(err.value))
            await acc.disable("nurse.anna")
            with pytest.raises(AuthError) as err:
                await acc.verify("nurse.anna", PW)
            messages.append(str(err.value))
            assert messages == [WRONG] * 4
            assert WRONG == "wrong user name or password"
            back = await acc.enable("nurse.anna")
            assert not back.disabled
            assert await acc.verify("nurse.anna", PW) == back

    run(body)


def test_unknown_users_cost_a_verification_too(tmp_path: Path) -> None:
    async def body() -> None:
        async with await cheap(tmp_path / "a.db") as acc:
            hasher = acc.hasher
            assert isinstance(hasher, CountingHasher)
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)
            with pytest.raises(AuthError):
                await acc.verify("nurse.anna", "wrong password")
            known = hasher.verified
            with pytest.raises(AuthError):
                await acc.verify("nobody.here", "wrong password")
            assert hasher.verified - known == 1  # the dummy hash, like a real user's
            with pytest.raises(AuthError):
                await acc.verify("nurse.anna", "wrong password")
            assert hasher.verified - known == 2

    run(body)


def test_only_an_argon2id_hash_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def body() -> None:
        async with await cheap(db) as acc:
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)

    run(body)
    with sqlite3.connect(db) as con:
        (stored,) = con.execute("SELECT password FROM users").fetchone()
        dump = "\n".join(con.iterdump())
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert PW not in dump


def test_login_rehashes_with_the_current_parameters(tmp_path: Path) -> None:
    db = tmp_path / "a.db"

    async def body() -> None:
        async with await cheap(db) as acc:
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)
        async with await Accounts.open(db, hasher=CountingHasher(time_cost=2)) as acc:
            await acc.verify("nurse.anna", PW)
            with sqlite3.connect(db) as con:
                (stored,) = con.execute("SELECT password FROM users").fetchone()
            assert "$m=8192,t=2,p=1$" in stored
            assert not acc.hasher.check_needs_rehash(stored)
            assert (await acc.verify("nurse.anna", PW)).name == "nurse.anna"

    run(body)


def test_administration_errors(tmp_path: Path) -> None:
    async def body() -> None:
        async with await cheap(tmp_path / "a.db") as acc:
            await acc.add("nurse.anna", Role.NURSE, ["L1-WARD"], PW)
            with pytest.raises(UserError, match=r"'nurse\.anna' already exists"):
                await acc.add("nurse.anna", Role.ADMIN, ["*"], PW)
            with pytest.raises(UserError, match="at least 10 characters"):
                await acc.add("nurse.bea", Role.NURSE, ["*"], "short")
            with pytest.raises(UserError, match=r"unknown ward L9-WARD.*L1-WARD, L2-WARD"):
                await acc.add("nurse.bea", Role.NURSE, ["L9-WARD"], PW,
                              wards=["L1-WARD", "L2-WARD"])  # fmt: skip
            with pytest.raises(UserError, match="unknown role"):
                await acc.add("nurse.bea", "doctor", ["*"], PW)
            for call in (acc.disable, acc.enable):
                with pytest.raises(UserError, match="no such user 'ghost'"):
                    await call("ghost")
            with pytest.raises(UserError, match="no such user"):
                await acc.set_password("ghost", PW)
            assert [u.name for u in await acc.list()] == ["nurse.anna"]
            assert await acc.get("ghost") is None
        with pytest.raises(StoreError, match="closed"):
            await acc.list()

    run(body)


def test_set_password(tmp_path: Path) -> None:
    async def body() -> None:
        async with await cheap(tmp_path / "a.db") as acc:
            await acc.add("tech.tom", Role.TECHNICIAN, ["*"], PW)
            await acc.set_password("tech.tom", "another long password")
            with pytest.raises(AuthError):
                await acc.verify("tech.tom", PW)
            assert (await acc.verify("tech.tom", "another long password")).role is Role.TECHNICIAN

    run(body)


def test_accounts_and_the_alarm_store_share_the_file(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"

    async def body() -> None:
        acc = await cheap(db)  # first: creates the alarm store, then the users table
        async with await AlarmStore.open(db) as store, acc:
            book = AlarmBook()
            trs = book.apply([Condition(AlarmType.EXIT, "B03", True, 0.0)], 0.0)
            await store.commit(trs, book=book)
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)
            await store.commit(book.acknowledge(trs[0].alarm_id, "nurse.anna", 5.0), book=book)
            assert (await acc.verify("nurse.anna", PW)).name == "nurse.anna"
            assert len(await store.audit_between(0.0, 10.0)) == 1
        async with await AlarmStore.open(db) as store:  # reopened: store and users intact
            assert len((await store.load()).alarms) == 1
        async with await cheap(db) as acc:
            assert [u.name for u in await acc.list()] == ["nurse.anna"]

    run(body)
    assert verify_database(db).ok
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_file_with_a_key_is_a_keyed_store(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"

    async def body() -> None:
        async with await cheap(db, audit_key=b"site-secret"):
            pass
        with pytest.raises(StoreError, match="keyed"):
            await AlarmStore.open(db)
        async with await AlarmStore.open(db, audit_key=b"site-secret"):
            pass
        async with await cheap(db) as acc:  # an existing store: accounts need no key
            await acc.add("admin.ada", Role.ADMIN, ["*"], PW)

    run(body)


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE stuff (x)")

    async def body() -> None:
        with pytest.raises(StoreError, match="not an rtls alarm store"):
            await cheap(db)

    run(body)
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert tables == {"stuff"}


def test_hashing_does_not_block_the_event_loop(tmp_path: Path) -> None:
    async def body() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        hasher = PasswordHasher(time_cost=4, memory_cost=32768, parallelism=1)
        async with await Accounts.open(tmp_path / "a.db", hasher=hasher) as acc:
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            before = ticks
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)
            await acc.verify("nurse.anna", PW)
            done = True
            await task
        return ticks - before

    assert run(body) > 2  # the loop ran other tasks while argon2 worked in a thread


def test_logins_hash_one_at_a_time_by_default(tmp_path: Path) -> None:
    async def body() -> int:
        async with await cheap(tmp_path / "a.db") as acc:
            await acc.add("nurse.anna", Role.NURSE, ["*"], PW)
            users = await asyncio.gather(*(acc.verify("nurse.anna", PW) for _ in range(8)))
            assert {u.name for u in users} == {"nurse.anna"}
            hasher = acc.hasher
            assert isinstance(hasher, CountingHasher)
            return hasher.most

    assert run(body) == 1


def test_demo_users(tmp_path: Path) -> None:
    site = load_site()

    async def body() -> None:
        async with await cheap(tmp_path / "a.db") as acc:
            first = await ensure_demo_users(acc, site)
            assert [(n, r) for n, r, _ in first] == [
                ("nurse.anna", Role.NURSE), ("security.sam", Role.SECURITY),
                ("tech.tom", Role.TECHNICIAN), ("admin.ada", Role.ADMIN)]  # fmt: skip
            assert len({pw for _, _, pw in first}) == 4
            for name, _, pw in first:
                assert len(pw) >= 10
                assert (await acc.verify(name, pw)).name == name
            anna = await acc.get("nurse.anna")
            assert anna is not None
            assert anna.scopes == {"L1-WARD"}
            await acc.disable("admin.ada")
            again = await ensure_demo_users(acc, site)  # a rerun: new passwords, enabled
            with pytest.raises(AuthError):
                await acc.verify("nurse.anna", first[0][2])
            assert (await acc.verify("admin.ada", again[3][2])).name == "admin.ada"

    run(body)


# -- the CLI ---------------------------------------------------------------------------------------
def audit_rows(db: Path) -> list[tuple[str, str, str, dict[str, object]]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT actor, action, subject, detail FROM audit ORDER BY seq")
        return [(a, b, c, json.loads(d)) for a, b, c, d in rows]


def test_cli_add_list_disable_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "alarms.db"
    pw_file = tmp_path / "pw"
    pw_file.write_text(PW + "\n", encoding="utf-8")
    base = ["--db", str(db)]
    add_zoe = ["users", "add", "nurse.zoe", "--role", "nurse", "--scope", "L1-WARD",
               "--display", "Zoé R.", "--password-file", str(pw_file), *base]  # fmt: skip
    assert cli_main(add_zoe) == 0
    monkeypatch.setenv("RTLS_PASSWORD", "env password 123")
    assert cli_main(["users", "add", "security.sam", "--role", "security", "--scope", "*",
                     *base]) == 0  # fmt: skip
    monkeypatch.delenv("RTLS_PASSWORD")
    capsys.readouterr()

    assert cli_main(["users", "add", "nurse.bad", "--role", "nurse", "--scope", "L9-WARD",
                     "--password-file", str(pw_file), *base]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "unknown ward L9-WARD" in err
    assert "L1-WARD, L2-WARD" in err
    assert cli_main(["users", "add", "nurse.bad", "--role", "nurse",
                     "--password-file", str(pw_file), *base]) == 2  # fmt: skip
    assert "--scope is required" in capsys.readouterr().err

    assert cli_main(["users", "disable", "nurse.zoe", *base]) == 0
    assert "disable nurse.zoe (nurse, L1-WARD, disabled); audited" in capsys.readouterr().out
    assert cli_main(["users", "list", *base]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "role", "scopes", "disabled", "display"]
    assert lines[1].split() == ["nurse.zoe", "nurse", "L1-WARD", "yes", "Zoé", "R."]
    assert lines[2].split() == ["security.sam", "security", "*", "no", "security.sam"]
    assert "argon2" not in out

    async def logins() -> None:
        async with await Accounts.open(db) as acc:
            with pytest.raises(AuthError):
                await acc.verify("nurse.zoe", PW)
            assert (await acc.verify("security.sam", "env password 123")).name == "security.sam"

    run(logins)

    rows = audit_rows(db)
    assert [(b, c) for _, b, c, _ in rows] == [
        ("user.add", "nurse.zoe"),
        ("user.add", "security.sam"),
        ("user.disable", "nurse.zoe"),
    ]
    assert all(a.startswith("cli:") for a, _, _, _ in rows)
    assert rows[0][3] == {"role": "nurse", "scopes": ["L1-WARD"], "display": "Zoé R."}
    assert PW not in json.dumps(rows) and "env password" not in json.dumps(rows)
    assert cli_main(["audit", "verify", "--db", str(db)]) == 0
    assert "3 records intact" in capsys.readouterr().out


def test_cli_passwd_enable_and_typed_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "alarms.db"
    base = ["--db", str(db)]
    typed = iter([PW, PW, "new long password", "a different one"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    assert cli_main(["users", "add", "tech.tom", "--role", "technician", "--scope", "*",
                     *base]) == 0  # fmt: skip
    # checked before any prompt: the typed passwords below are still unread
    assert cli_main(["users", "add", "tech.tom", "--role", "admin", "--scope", "*", *base]) == 2
    assert "'tech.tom' already exists" in capsys.readouterr().err
    assert cli_main(["users", "add", "tech.two", "--role", "boss", "--scope", "*", *base]) == 2
    assert "unknown role 'boss'" in capsys.readouterr().err
    assert cli_main(["users", "passwd", "tech.tom", *base]) == 2  # the two differ
    assert "differ" in capsys.readouterr().err
    assert cli_main(["users", "enable", "ghost", *base]) == 2
    assert "no such user 'ghost'" in capsys.readouterr().err
    assert cli_main(["users", "list", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database file" in capsys.readouterr().err
    monkeypatch.setenv("RTLS_PASSWORD", "new long password")
    assert cli_main(["users", "passwd", "tech.tom", *base]) == 0

    async def login() -> None:
        async with await Accounts.open(db) as acc:
            assert (await acc.verify("tech.tom", "new long password")).role is Role.TECHNICIAN

    run(login)
    assert [(b, c) for _, b, c, _ in audit_rows(db)] == [
        ("user.add", "tech.tom"),
        ("user.passwd", "tech.tom"),
    ]
    assert verify_database(db).ok
