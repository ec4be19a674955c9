"""Fault: the alarm store fails (database locked by another process, disk full).

Real parts: Mosquitto, the engine with its SQLite store and console server (ConsoleHarness),
WebSocket console clients, an MQTT subscriber. "Database locked": another connection holds an
EXCLUSIVE transaction on the file. "Disk full": SQLite's ``max_page_count`` on the engine's own
connection (SQLite then fails writes with SQLITE_FULL exactly as on a full disk; a real small
filesystem needs root). Shown each time: a clear logged error, /health degraded, the metrics
counter and the technician view; the alarm still reaches the console and MQTT within DGUV's 2 s;
an acknowledgement is answered ``saved: false`` rather than a plain ok; once the fault clears
every write lands, in order, and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from rtls import topics
from rtls.advertisement import Status
from rtls.service.broker import MosquittoBroker
from rtls.service.store import verify_database
from tests.broker import MessageCollector, wait_until
from tests.console_harness import PASSWORD, ConsoleHarness, WsClient
from tests.faults import alarm_of, http_json, in_loop

DGUV_S = 2.0  # DOMAIN.md: an SOS is confirmed within 2 s


def _raised_on_mqtt(col: MessageCollector, type_: str, subject: str) -> dict[str, Any]:
    def pred(m: Any) -> bool:
        ev = json.loads(m.payload)
        return bool(ev["action"] == "raise" and ev["alarm"]["type"] == type_
                    and ev["alarm"]["subject"] == subject)  # fmt: skip

    return dict(json.loads(col.wait_for(pred, timeout=10.0).payload))


def _transitions(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT alarm_id, action, actor FROM transitions ORDER BY id")
        return [(int(a), str(b), str(c)) for a, b, c in rows]


def _metric(url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url + "metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name} in:\n{text}")


async def _raise(
    h: ConsoleHarness, c: WsClient, tag: str, status: Status
) -> tuple[dict[str, Any], float]:
    """Raise an alarm on ``tag``; the console's alarm and its latency from the publish."""
    type_ = "sos" if status == Status.SOS else "tamper"
    sent = h.advertise(tag, status)
    m = await c.wait(alarm_of(type_, tag), timeout=10.0)
    return m["transition"]["alarm"], time.time() - sent


def test_database_locked_alarm_still_announced_then_written(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rtls.service.alarms")
    port = fresh_mosquitto.port
    with (ConsoleHarness(port, tmp_path) as h,
          MessageCollector(port, [topics.ALARM_EVENTS]) as mqtt):  # fmt: skip
        shell = h.server.shell if h.server is not None else None
        assert shell is not None

        async def run() -> int:
            sam = await WsClient.login(h.ws_url, "security.sam", PASSWORD)
            tom = await WsClient.login(h.ws_url, "tech.tom", PASSWORD)
            await sam.wait(lambda m: m.get("type") == "snapshot")
            hog = sqlite3.connect(h.db, timeout=0, isolation_level=None)
            hog.execute("BEGIN EXCLUSIVE")  # another process holds the database
            try:
                sos, latency = await _raise(h, sam, "W01", Status.SOS)
                assert latency < DGUV_S, f"SOS reached the console after {latency:.2f} s"
                ev = await asyncio.to_thread(_raised_on_mqtt, mqtt, "sos", "W01")
                assert ev["alarm_id"] == sos["id"]
                ack = await sam.request(op="command", command="acknowledge",
                                        args={"alarm": sos["id"]})  # fmt: skip
                assert ack["ok"] and ack["saved"] is False, ack  # done, announced, not saved
                assert "alarm store is failing" in ack["warning"]
                # while it lasts: a second alarm goes out at once (no wait for the store)
                tamper, latency = await _raise(h, sam, "B03", Status.TAMPER)
                assert latency < DGUV_S
                # the busy timeout (5 s) expires: the error is named, counted, shown
                assert await asyncio.to_thread(
                    wait_until, lambda: shell.stats.store_errors > 0, 15.0
                )
                health = http_json(h.url + "health")
                assert health["store"] is False and health["status"] == "degraded", health
                assert _metric(h.url, "rtls_store_errors") >= 1
                tech = await tom.wait(lambda m: m.get("type") == "technical"
                                      and m["store"]["failing"], timeout=10.0)  # fmt: skip
                assert tech["store"]["uncommitted"] >= 2
                assert sos["id"] not in {a for a, _, _ in _transitions_readonly(h.db)}
            finally:
                hog.execute("ROLLBACK")
                hog.close()
            # the lock is gone: the waiting writes land by themselves, in order
            assert await asyncio.to_thread(wait_until, lambda: not shell.stats.store_failing, 15.0)
            assert http_json(h.url + "health")["store"] is True
            await sam.ws.close()
            await tom.ws.close()
            return int(tamper["id"])

        tamper_id = asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("database locked by another connection" in e for e in errors), errors
    assert any("recovered" in r.getMessage() for r in caplog.records)
    trs = _transitions(h.db)
    sos_rows = [(a, act, who) for a, act, who in trs if act in ("raise", "acknowledge")]
    sos_id = next(a for a, act, _ in sos_rows if act == "acknowledge")
    order = [(a, act, who) for a, act, who in sos_rows if a in (sos_id, tamper_id)]
    assert order == [(sos_id, "raise", "system"), (sos_id, "acknowledge", "security.sam"),
                     (tamper_id, "raise", "system")]  # fmt: skip
    check = verify_database(h.db)
    assert check.ok, check.message


def _transitions_readonly(db: Path) -> list[tuple[int, str, str]]:
    """Committed transitions, read past the writer's lock (WAL readers are not blocked)."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=0)
    try:
        rows = con.execute("SELECT alarm_id, action, actor FROM transitions ORDER BY id")
        return [(int(a), str(b), str(c)) for a, b, c in rows]
    finally:
        con.close()


def test_disk_full_alarm_still_announced_then_written_in_order(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rtls.service.alarms")
    port = fresh_mosquitto.port
    with (ConsoleHarness(port, tmp_path) as h,
          MessageCollector(port, [topics.ALARM_EVENTS]) as mqtt):  # fmt: skip
        shell = h.server.shell if h.server is not None else None
        assert shell is not None

        async def limit(pages: int | None) -> None:
            db = shell.store.db
            if pages is None:
                rows = list(await db.execute_fetchall("PRAGMA page_count"))
                pages = int(rows[0][0])
            await db.execute(f"PRAGMA max_page_count = {pages}")

        async def run() -> list[int]:
            sam = await WsClient.login(h.ws_url, "security.sam", PASSWORD)
            await sam.wait(lambda m: m.get("type") == "snapshot")
            in_loop(h.loop, limit(None))  # the disk is full from now on
            raised: list[int] = []
            babies = [t.id for t in h.site.tags if t.kind.value == "infant"]
            for baby in babies:  # alarms until a commit needs a page the disk does not have
                alarm, latency = await _raise(h, sam, baby, Status.TAMPER)
                raised.append(int(alarm["id"]))
                assert latency < DGUV_S
                if shell.stats.store_errors:
                    break
            assert shell.stats.store_errors, "no commit failed: the database never grew"
            assert shell.stats.store_failing
            sos, latency = await _raise(h, sam, "W02", Status.SOS)
            assert latency < DGUV_S, f"SOS reached the console after {latency:.2f} s"
            raised.append(int(sos["id"]))
            ev = await asyncio.to_thread(_raised_on_mqtt, mqtt, "sos", "W02")
            assert ev["alarm_id"] == sos["id"]
            ack = await sam.request(op="command", command="acknowledge", args={"alarm": sos["id"]})
            assert ack["ok"] and ack["saved"] is False and "disk full" in ack["warning"], ack
            health = http_json(h.url + "health")
            assert health["store"] is False and health["status"] == "degraded"
            assert _metric(h.url, "rtls_store_errors") >= 1
            in_loop(h.loop, limit(1 << 30))  # space freed
            assert await asyncio.to_thread(wait_until, lambda: not shell.stats.store_failing, 15.0)
            assert shell.stats.uncommitted == 0
            await sam.ws.close()
            return raised

        raised = asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("disk full" in e for e in errors), errors
    trs = _transitions(h.db)
    # every alarm is stored, raised in the order it was announced, the acknowledgement after
    assert [a for a, act, _ in trs if act == "raise" and a in raised] == raised
    acks = [(a, who) for a, act, who in trs if act == "acknowledge"]
    assert acks == [(raised[-1], "security.sam")]
    assert trs.index((raised[-1], "acknowledge", "security.sam")) > trs.index(
        (raised[-1], "raise", "system")
    )
    check = verify_database(h.db)
    assert check.ok, check.message
