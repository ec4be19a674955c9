"""The console server end to end: real Mosquitto, real SQLite + argon2 accounts, the engine and
console in one process, real WebSocket clients (websockets) and HTTP (urllib)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtls.advertisement import Status
from rtls.service.broker import MosquittoBroker
from rtls.service.console import ConsoleConfig, load_ssl
from rtls.service.store import verify_database
from tests.broker import wait_until
from tests.console_harness import PASSWORD, ConsoleHarness, WsClient


@pytest.fixture
def console(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[ConsoleHarness]:
    with ConsoleHarness(fresh_mosquitto.port, tmp_path) as h:
        yield h


Client = WsClient  # a WebSocket console client that keeps every message it receives


async def _login(url: str, user: str, password: str = PASSWORD) -> tuple[Client, dict[str, Any]]:
    ws = await connect(url)
    c = Client(ws)
    reply = await c.request(op="login", user=user, password=password)
    return c, reply


def _alarm(type_: str, subject: str) -> Callable[[dict[str, Any]], bool]:
    def pred(m: dict[str, Any]) -> bool:
        if m.get("type") != "alarm":
            return False
        a = m["transition"]["alarm"]
        return bool(a["type"] == type_ and a["subject"] == subject)

    return pred


def test_login_snapshot_alarm_acknowledge_resolve_audited(console: ConsoleHarness) -> None:
    async def run() -> None:
        c, reply = await _login(console.ws_url, "nurse.anna")
        assert reply["ok"], reply
        assert reply["user"]["role"] == "nurse" and "acknowledge" in reply["user"]["permissions"]
        snap = await c.wait(lambda m: m["type"] == "snapshot")
        assert {f["id"] for f in snap["site"]["floors"]} == {"L1", "L2"}
        assert snap["site"]["wards"] and snap["ward"]["babies"], "babies admitted, on the board"
        assert "technical" not in snap  # a nurse has no technician view
        console.advertise("B03", Status.TAMPER)
        raised = await c.wait(_alarm("tamper", "B03"))
        alarm = raised["transition"]["alarm"]
        assert alarm["priority"] == "high" and alarm["state"] == "active_unacknowledged"
        assert alarm["ward"] == "L1-WARD"
        ack = await c.request(op="command", command="acknowledge", args={"alarm": alarm["id"]})
        assert ack["ok"], ack
        acked = await c.wait(lambda m: m.get("type") == "alarm"
                             and m["transition"]["action"] == "acknowledge")  # fmt: skip
        assert acked["transition"]["actor"] == "nurse.anna"
        assert acked["seq"] > raised["seq"]
        bad = await c.request(op="command", command="resolve",
                              args={"alarm": alarm["id"], "outcome": "genuine"})  # fmt: skip
        assert not bad["ok"] and "comment" in bad["error"]  # latching: a comment is required
        ok = await c.request(op="command", command="resolve", args={
            "alarm": alarm["id"], "outcome": "test", "comment": "strap test"})  # fmt: skip
        assert ok["ok"], ok
        audit = await c.request(op="audit", limit=50)
        assert audit["ok"]
        acts = {(r["actor"], r["action"]) for r in audit["records"]}
        assert ("nurse.anna", "console.login") in acts
        assert ("nurse.anna", "alarm.acknowledge") in acts
        assert ("nurse.anna", "alarm.resolve") in acts
        await c.ws.close()

    asyncio.run(run())
    assert verify_database(console.db).ok


def test_positions_are_compact_rows_of_tags_on_the_plan(console: ConsoleHarness) -> None:
    floors = {f.id for f in console.site.floors}
    tags = {t.id for t in console.site.tags}

    async def run() -> None:
        c, reply = await _login(console.ws_url, "security.sam")
        assert reply["ok"], reply
        await c.wait(lambda m: m["type"] == "snapshot")
        msg = await c.wait(lambda m: m["type"] == "positions" and any(
            r[1] is not None for r in m["positions"]), timeout=30.0)  # fmt: skip
        for row in msg["positions"]:
            assert len(row) == 6 and row[0] in tags
            if row[1] is None:  # position unknown: nothing to draw
                assert row[2] is None and row[3] is None and row[5] is None
            else:
                assert isinstance(row[2], float) and row[3] in floors and row[5] > 0
                assert row[1] == round(row[1], 1) and row[2] == round(row[2], 1)  # 0.1 m
        await c.ws.close()

    with console.ward():  # the simulated ward: mothers and staff walk about
        asyncio.run(run())


def test_refusals_wrong_password_no_token_role_and_scope(console: ConsoleHarness) -> None:
    async def run() -> None:
        c, reply = await _login(console.ws_url, "nurse.anna", "wrong password!!")
        assert not reply["ok"] and reply["error"] == "wrong user name or password"
        _, unknown = await _login(console.ws_url, "nobody.here", "wrong password!!")
        assert unknown["error"] == reply["error"]  # no hint whether the name exists
        # nothing but login before authentication
        cmd = await c.request(op="command", command="code_pink", args={"reason": "x"})
        assert not cmd["ok"] and "not authenticated" in cmd["error"]
        bad_token = await c.request(op="resume", token="forged", since=0)
        assert not bad_token["ok"]
        # five failures close the connection
        for _ in range(4):
            await c.request(op="login", user="nurse.anna", password="still wrong!!")
        with pytest.raises(ConnectionClosed):
            await c.request(op="ping")
        # a nurse may not run an admin op nor end a Code Pink; nor act outside her ward
        n, _ = await _login(console.ws_url, "nurse.anna")
        admin_op = await n.request(op="user_add", name="eve.x", role="admin", scopes=["*"],
                                   password="0123456789ab")  # fmt: skip
        assert not admin_op["ok"] and admin_op["error"].startswith("not allowed")
        end = await n.request(op="command", command="end_code_pink", args={"reason": "x"})
        assert not end["ok"] and "nurse may not end_code_pink" in end["error"]
        lea, _ = await _login(console.ws_url, "nurse.lea")  # the L2 ward's nurse
        other_ward = await lea.request(op="command", command="return", args={"baby": "B03"})
        assert not other_ward["ok"] and "scope" in other_ward["error"], other_ward
        unknown_cmd = await n.request(op="command", command="self_destruct", args={})
        assert not unknown_cmd["ok"]
        garbage = await n.request(op="command", command="acknowledge", args={"alarm": "x"})
        assert not garbage["ok"] and garbage["error"]
        await n.ws.send("not json")
        err = await n.wait(lambda m: m.get("type") == "error")
        assert "bad request" in err["error"]
        # the admin may
        a, _ = await _login(console.ws_url, "admin.ada")
        added = await a.request(op="user_add", name="nurse.eve", role="nurse",
                                scopes=["L1-WARD"], password="0123456789ab")  # fmt: skip
        assert added["ok"], added
        audit = await a.request(op="audit", limit=100)
        refused = [r for r in audit["records"] if r["action"] == "console.refused"]
        assert {r["subject"] for r in refused} >= {"user_add", "end_code_pink", "return"}
        assert any(r["action"] == "console.login_failed" for r in audit["records"])

    asyncio.run(run())


def test_scope_filters_alarms_and_resume_replays_missed(console: ConsoleHarness) -> None:
    async def run() -> None:
        l1, _ = await _login(console.ws_url, "nurse.anna")
        l2, reply = await _login(console.ws_url, "nurse.lea")
        token = reply["token"]
        await l2.wait(lambda m: m["type"] == "snapshot")
        console.advertise("B03", Status.TAMPER)  # an L1 baby
        raised = await l1.wait(_alarm("tamper", "B03"))
        await asyncio.sleep(0.5)
        assert not any(_alarm("tamper", "B03")(m) for m in l2.messages)  # not her ward
        last_seq = raised["seq"]
        await l1.ws.close()
        # while anna is away, the alarm is acknowledged by security
        s, _ = await _login(console.ws_url, "security.sam")
        ack = await s.request(op="command", command="acknowledge",
                              args={"alarm": raised["transition"]["alarm"]["id"]})  # fmt: skip
        assert ack["ok"]
        # lea's token resumes on a new connection (a reconnect)
        again = Client(await connect(console.ws_url))
        res = await again.request(op="resume", token=token, since=0)
        assert res["ok"], res
        await again.wait(lambda m: m["type"] == "snapshot")
        # anna resumes from her last seq: she gets the missed acknowledgement, no snapshot
        _, r2 = await _login(console.ws_url, "nurse.anna")
        back = Client(await connect(console.ws_url))
        res = await back.request(op="resume", token=r2["token"], since=last_seq)
        assert res["ok"]
        missed = await back.wait(lambda m: m.get("type") == "alarm")
        assert missed["transition"]["action"] == "acknowledge"
        assert missed["transition"]["actor"] == "security.sam"
        assert not any(m["type"] == "snapshot" for m in back.messages)

    asyncio.run(run())


def test_slow_client_is_resynchronised_and_never_blocks_others(console: ConsoleHarness) -> None:
    """A client whose outbox overflows gets a fresh snapshot carrying every open alarm, and
    the others get each alarm as it comes."""
    server = console.server
    assert server is not None
    tags = {"B03": Status.TAMPER, "W01": Status.SOS, "W02": Status.PULL_CORD,
            "B05": Status.TAMPER, "B07": Status.TAMPER}  # fmt: skip

    async def run() -> None:
        slow, _ = await _login(console.ws_url, "security.sam")
        fast, _ = await _login(console.ws_url, "admin.ada")
        await slow.wait(lambda m: m["type"] == "snapshot")
        await fast.wait(lambda m: m["type"] == "snapshot")
        slow_client = next(c for c in server.clients
                           if c.user is not None and c.user.name == "security.sam")  # fmt: skip
        slow_client.outbox.limit = 3  # five alarms in one tick cannot fit
        for _ in range(2):  # one batch = one tick = one desk output with every alarm
            console.advertise_many(list(tags.items()))
        for tag in tags:
            await fast.wait(lambda m, tag=tag: m.get("type") == "alarm"  # type: ignore[misc]
                            and m["transition"]["alarm"]["subject"] == tag)  # fmt: skip
        assert sum(m["type"] == "snapshot" for m in fast.messages) == 1, "fast: no resync"
        snap = await slow.wait(lambda m: m["type"] == "snapshot" and len(m["alarms"]) >= 5)
        assert {a["subject"] for a in snap["alarms"]} >= set(tags)
        assert slow_client.outbox.resyncs >= 1

    asyncio.run(run())


def test_http_page_health_metrics_and_404(console: ConsoleHarness) -> None:
    def get(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(console.url + path, timeout=10) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    status, ctype, body = get("")
    assert status == 200 and ctype.startswith("text/html") and "<html" in body.lower()
    status, _, body = get("health")
    health = json.loads(body)
    assert status in (200, 503) and health["status"] in ("ok", "degraded")
    assert health["broker"] is (status == 200) or health["tick_ms_p99"] > 250
    status, ctype, body = get("metrics")
    assert status == 200 and ctype.startswith("text/plain")
    for name in ("rtls_observations_total", "rtls_ticks_total", "rtls_console_clients",
                 "rtls_tick_seconds", "rtls_broker_connected", "rtls_rate_limited_total",
                 "rtls_tag_auth_total", "rtls_messages_predecoded_total"):  # fmt: skip
        assert name in body, name

    def passes(kind: str) -> float:
        m = re.search(r'^rtls_passes_total\{kind="' + kind + r'"\} (\S+)$', get("metrics")[2], re.M)
        assert m is not None, kind
        return float(m.group(1))

    for kind in ("watch_desk_step", "urgent", "urgent_repeat"):
        assert passes(kind) >= 0
    assert wait_until(lambda: passes("watch") >= 1, timeout=3)  # the infants between ticks
    assert get("static/../../../etc/passwd")[0] == 404
    assert get("nothing-here")[0] == 404


def test_tls_serves_https_and_wss(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """With a certificate configured the same port speaks only TLS: HTTPS and wss://."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no openssl: this test needs the Debian package 'openssl'")
        pytest.skip("needs the Debian package 'openssl' (to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    config = ConsoleConfig(host="127.0.0.1", port=0, ssl=load_ssl(str(cert), str(key)))
    with ConsoleHarness(fresh_mosquitto.port, tmp_path, config=config) as h:
        assert h.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            with urllib.request.urlopen(h.url + "health", context=trust, timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:  # 503 while degraded: still an answer over TLS
            body = exc.read()
        assert json.loads(body)["status"] in ("ok", "degraded")
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP: no answer
            urllib.request.urlopen(h.url.replace("https", "http", 1) + "health", timeout=5)

        async def run() -> None:
            ws = await connect(h.ws_url, ssl=trust)
            c = Client(ws)
            reply = await c.request(op="login", user="tech.tom", password=PASSWORD)
            assert reply["ok"]
            snap = await c.wait(lambda m: m["type"] == "snapshot")
            assert "technical" in snap and snap["technical"]["gateways"]
            await ws.close()

        asyncio.run(run())


def test_malformed_requests_are_refused_and_never_stall_the_store(console: ConsoleHarness) -> None:
    """Fuzzing findings (bench/fuzz.py, docs/fuzzing.md): a too deeply nested frame ended the
    connection (RecursionError escaped the handler); an integer beyond int64 made the desk's
    number check raise TypeError (an internal error); NaN, 1e999 and lone surrogates reached the
    audit trail, and a refused command without a name and a login with an empty user name were
    audited with an empty subject: the store refused each such record, which then blocked every
    later commit."""

    async def run() -> None:
        c, reply = await _login(console.ws_url, "admin.ada")
        assert reply["ok"], reply
        await c.wait(lambda m: m["type"] == "snapshot")
        frames = ('{"op": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}",
                  '{"op": "command", "command": "admit", "args": {"baby": 1e999}}',
                  '{"op": "command", "command": "admit", "args": {"baby": NaN}}',
                  '{"op": "command", "command": "admit", "args": {"baby": "\\ud800"}}',
                  '{"op": "command", "command": "sign_out", "args": {"baby": "B01", "escort": '
                  '"M01", "duration_s": 345876451382054092800, "reason": "imaging"}}')  # fmt: skip
        for frame in frames:
            c.messages.clear()
            await c.ws.send(frame)
            err = await c.wait(lambda m: m["type"] in ("error", "reply", "pong"))
            assert err["type"] == "error" and err["error"].startswith("bad request"), err
        nameless = await c.request(op="command", command="", args={"target": "E1"})
        assert not nameless["ok"] and "unknown command" in nameless["error"]
        other, empty = await _login(console.ws_url, "", "wrong password!!")
        assert not empty["ok"]  # audited with the subject "?" (an empty one is refused)
        await other.ws.close()
        pink = await c.request(op="command", command="code_pink", args={"reason": "drill"})
        assert pink["ok"], pink  # committed: the store is not stuck on a refused record
        audit = await c.request(op="audit", limit=20)
        acts = {(r["action"], r["subject"]) for r in audit["records"]}
        assert ("console.refused", "?") in acts and ("console.login_failed", "?") in acts
        assert any(action.startswith("ward.") or "pink" in action for action, _ in acts), acts
        await c.ws.close()

    asyncio.run(run())
    assert console.server is not None and console.server.shell.stats.store_errors == 0
    assert verify_database(console.db).ok
