"""The alarm service end to end: a real Mosquitto, a real SQLite file, the engine as a separate
process (``rtls engine``) that is SIGKILLed during active alarms and restarted."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.publish as publish
import pytest

from bench.kill_trials import Engine
from rtls import topics
from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
from rtls.batch import encode_batch, make_records, obs_topic
from rtls.service.broker import MosquittoBroker
from rtls.service.store import verify_database
from rtls.site import load_site
from tests.broker import MessageCollector, wait_until

SITE = load_site()
ESCALATE_S = 8.0  # the test site's high-priority chain: security after 8 s


def _site_file(tmp: Path) -> Path:
    """The example site with a short escalation chain (so the test sees a timer fire)."""
    src = Path(SITE.source) if SITE.source else None
    assert src is not None
    text = src.read_text() + (
        '\n[[rules.alarms.escalation.high]]\ngroup = "ward_nurses"\nafter_s = 0\n'
        f'\n[[rules.alarms.escalation.high]]\ngroup = "security"\nafter_s = {ESCALATE_S}\n'
    )
    out = tmp / "site.toml"
    out.write_text(text)
    return out


def _frame(tag_id: str, status: Status, seq: int) -> bytes:
    """One native batch from gateway G01 carrying one advertisement of ``tag_id``."""
    tag = next(t for t in SITE.tags if t.id == tag_id)
    kind = {"infant": TagKind.INFANT, "staff": TagKind.STAFF_BADGE}[tag.kind.value]
    adv = Advertisement(kind=kind, serial=tag.serial, seq=seq, status=status, battery=90)
    body = np.frombuffer(encode_body(adv), np.uint8)
    recs = make_records(np.array([0]), np.array([list(tag_address(tag.serial))], np.uint8),
                        np.array([-60]), 37, body.reshape(1, 20))  # fmt: skip
    return encode_batch("G01", seq, time.time(), recs)


class Console:
    """A stand-in operator client on the command topic (the WebSocket console is issue 5)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = f"test-{uuid.uuid4().hex[:8]}"
        self.replies = MessageCollector(port, [topics.COMMAND_REPLY.format(client=self.client)])

    def send(self, command: str, user: str, **args: Any) -> dict[str, Any]:
        req = uuid.uuid4().hex
        body = {"id": req, "client": self.client, "user": user, "command": command, "args": args}
        publish.single(topics.COMMAND, json.dumps(body), qos=1, hostname="127.0.0.1",
                       port=self.port)  # fmt: skip

        def answered() -> list[Any]:
            return [m for m in self.replies.matching(lambda m: True)
                    if json.loads(m.payload).get("id") == req]  # fmt: skip

        assert wait_until(lambda: bool(answered()), timeout=15.0), f"no reply to {command}"
        reply: dict[str, Any] = json.loads(answered()[0].payload)
        return reply


@pytest.fixture
def setup(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[Engine, Console]]:
    eng = Engine(_site_file(tmp_path), fresh_mosquitto.port, tmp_path / "alarms.db",
                 tmp_path / "engine.log")  # fmt: skip
    console = Console(fresh_mosquitto.port)
    console.replies.start()
    try:
        yield eng, console
    finally:
        eng.stop()
        console.replies.close()


def _states(col: MessageCollector) -> dict[int, dict[str, Any]]:
    """Latest retained state per alarm id (empty payload: closed)."""
    out: dict[int, dict[str, Any]] = {}
    for m in col.matching(lambda m: m.topic.startswith("rtls/v1/alarms/state/")):
        aid = int(m.topic.rsplit("/", 1)[1])
        out[aid] = json.loads(m.payload) if m.payload else {}
    return out


def test_sigkill_during_active_alarms_loses_nothing(
    setup: tuple[Engine, Console], fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    eng, console = setup
    port = fresh_mosquitto.port
    watch = MessageCollector(port, [topics.ALARM_STATE_FILTER, topics.ALARM_EVENTS,
                                    topics.STATUS, topics.DOWNLINK_FILTER])  # fmt: skip
    watch.start()
    try:
        eng.start()
        status = lambda: watch.matching(lambda m: m.topic == topics.STATUS)  # noqa: E731
        online = lambda: any(m.payload == b'{"state":"online"}' for m in status())  # noqa: E731
        assert wait_until(online, timeout=30.0), eng.log.read_text()
        # a strap cut on B03 and an SOS on W01, each as a burst from gateway G01
        for seq in (1, 1, 2):
            publish.single(obs_topic("G01"), _frame("B03", Status.TAMPER, seq), qos=1,
                           hostname="127.0.0.1", port=port)  # fmt: skip
            publish.single(obs_topic("G01"), _frame("W01", Status.SOS, seq), qos=1,
                           hostname="127.0.0.1", port=port)  # fmt: skip
        two = lambda: {a.get("type") for a in _states(watch).values()} >= {"tamper", "sos"}  # noqa: E731
        assert wait_until(two, timeout=15.0), eng.log.read_text()
        alarms = {a["type"]: a for a in _states(watch).values() if a}
        tamper, sos = alarms["tamper"], alarms["sos"]
        assert sos["next_escalation_t"] == pytest.approx(sos["activated_t"] + ESCALATE_S)
        # a nurse acknowledges the tamper alarm; the SOS stays unacknowledged (its timer runs)
        reply = console.send("acknowledge", "nurse.anna", alarm=tamper["id"])
        assert reply["ok"], reply
        refused = console.send("acknowledge", "nurse.anna", alarm=9999)
        assert not refused["ok"] and "no open alarm" in refused["error"]
        assert not console.send(
            "resolve", "nurse.anna", alarm=tamper["id"], outcome="genuine", comment=""
        )["ok"]  # fmt: skip (latching: a comment is required)
        seen_ids = set(_states(watch))
        eng.kill()  # SIGKILL: no clean shutdown of anything
        killed_at = time.time()
        assert killed_at < sos["next_escalation_t"], "the test is too slow to kill before the timer"

        db = tmp_path / "alarms.db"
        check = verify_database(db)
        assert check.ok, check.message
        import sqlite3

        with sqlite3.connect(db) as conn:
            stored = {int(r[0]) for r in conn.execute("SELECT id FROM alarms")}
            actors = [r[0] for r in conn.execute("SELECT actor FROM audit")]
        assert seen_ids <= stored  # everything announced had been committed first
        assert "nurse.anna" in actors

        eng.start()  # restart on the same store
        escalated = lambda: [  # noqa: E731
            json.loads(m.payload)
            for m in watch.matching(lambda m: m.topic == topics.ALARM_EVENTS)
            if json.loads(m.payload)["action"] == "escalate"
            and json.loads(m.payload)["alarm_id"] == sos["id"]
        ]
        assert wait_until(lambda: bool(escalated()), timeout=30.0), eng.log.read_text()
        ev = escalated()[0]
        assert ev["t"] == pytest.approx(sos["activated_t"] + ESCALATE_S)  # the timer, intact
        assert ev["detail"]["group"] == "security"
        # the acknowledgement survived: acknowledging again is refused; the SOS still needs one
        again = console.send("acknowledge", "nurse.bob", alarm=tamper["id"])
        assert not again["ok"] and "already acknowledged" in again["error"]
        ack = console.send("acknowledge", "security.sam", alarm=sos["id"])
        assert ack["ok"], ack
        # acknowledging the SOS confirms it to the badge over the downlink
        assert wait_until(lambda: bool(watch.matching(
            lambda m: m.topic == topics.downlink("W01")
            and json.loads(m.payload)["command"] == "confirm")), timeout=10.0)  # fmt: skip
        resolved = console.send("resolve", "security.sam", alarm=sos["id"], outcome="test",
                                comment="drill")  # fmt: skip
        assert resolved["ok"], resolved
        assert wait_until(lambda: _states(watch).get(sos["id"]) == {}, timeout=10.0)
    finally:
        watch.close()
    eng.stop()
    check = verify_database(tmp_path / "alarms.db")
    assert check.ok, check.message
