"""Tag authentication end to end: keys in the store, the engine against a real Mosquitto, the
simulated ward with signed tags and an attacker replaying and cloning, alarms committed."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateways.runner import MqttSink, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls import topics
from rtls.desk import Desk
from rtls.engine import Engine
from rtls.service.alarms import AlarmShell
from rtls.service.broker import MosquittoBroker
from rtls.service.cli import run_engine
from rtls.service.engine import EngineService
from rtls.service.keys import KeyKeeper, KeyStore, load_keys
from rtls.service.store import AlarmStore
from rtls.site import Site, TagKind, load_site
from tests.broker import MessageCollector, unique_client_id, wait_until

ATTACK_AT = 12.0
DURATION = 26.0
SCENARIO: dict[str, Any] = {
    "scenario": {"name": "tag attacks", "site": "example", "seed": 11, "duration_s": DURATION},
    "actors": [{"id": "mallory", "start": {"zone": "R110"}}],
    "events": [
        {"at_s": 5, "action": "tamper", "tag": "B07", "note": "a genuine burst (signed)"},
        {"at_s": ATTACK_AT, "action": "replay", "who": "mallory", "tag": "B03",
         "duration_s": 12},
        {"at_s": ATTACK_AT + 2, "action": "clone", "who": "mallory", "tag": "B05",
         "duration_s": 10, "note": "signed with the attacker's own key"},
        {"at_s": ATTACK_AT + 2, "action": "clone", "who": "mallory", "tag": "M03",
         "duration_s": 10, "value": False, "note": "not signed"},
    ],
}  # fmt: skip


class EngineThread:
    """``run_engine`` (store, desk, keys, service) in a thread of its own."""

    def __init__(self, site: Site, port: int, db: Path) -> None:
        self.service: EngineService | None = None
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None

        def ready(service: EngineService) -> None:
            self.service = service

        def main() -> None:
            try:
                self.loop.run_until_complete(run_engine(site, "127.0.0.1", port, db=db,
                                                        admit_all=True, ready=ready))  # fmt: skip
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=main, daemon=True)

    def __enter__(self) -> EngineThread:
        self.thread.start()
        ok = wait_until(lambda: self.service is not None and self.service.connected.is_set(),
                        30.0)  # fmt: skip
        assert ok, f"engine did not connect: {self.error!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.service is not None:
            self.loop.call_soon_threadsafe(self.service.stop)
        self.thread.join(timeout=20.0)
        assert not self.thread.is_alive()


def _raised(events: list[dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    return {e["alarm"]["subject"]: e["alarm"] for e in events
            if e["action"] == "raise" and e["alarm"]["type"] == type_}  # fmt: skip


def test_replayed_and_cloned_tags_raise_tag_spoofing(mosquitto: MosquittoBroker,
                                                      tmp_path: Path) -> None:  # fmt: skip
    site = load_site()
    db = tmp_path / "alarms.db"
    keyed = [t.id for t in site.tags if t.kind is not TagKind.REFERENCE]
    with KeyStore.open(db) as store:  # what `rtls keys provision` does, then NFC to the tags
        keys = {tag: store.provision(tag, now=time.time(), actor="test") for tag in keyed}
    sc = scenario_from_mapping(SCENARIO)
    watch = [topics.ALARM_EVENTS, topics.POSITIONS]
    engine = EngineThread(site, mosquitto.port, db)
    with MessageCollector(mosquitto.port, watch) as sub, engine as e:
        assert e.service is not None
        auth = e.service.engine.auth
        assert int(auth.keyed.sum()) == len(keyed)
        kept = _watch_kept(e.service.engine, site, "B03")
        epoch = time.time()
        world = World(sc, keys=keys, epoch=epoch)
        sink = MqttSink("127.0.0.1", mosquitto.port, client_prefix=unique_client_id("sim"))
        run(world, sink, speed=1.0)
        ids = [t.id for t in site.tags]
        wait_until(lambda: {"B03", "B05", "M03"} <= _spoofed(sub), 10.0)
        time.sleep(1.0)
        counts = dict(auth.counts)
        b03, genuine = ids.index("B03"), world.firmware[ids.index("B03")].counter
        assert genuine - 1 <= auth.last[b03] <= genuine  # its own newest, whatever was replayed
        report = {r["tag"]: r for r in auth.report(ids, [g.id for g in site.gateways])}
    events = [json.loads(m.payload) for m in sub.matching(lambda m: m.topic == topics.ALARM_EVENTS)]
    spoofing = _raised(events, "tag_spoofing")
    assert set(spoofing) == {"B03", "B05", "M03"}, spoofing  # no false alarm for anyone else
    assert spoofing["B03"]["detail"]["attack"] == "replay"
    assert spoofing["B05"]["detail"]["attack"] == "clone"
    assert spoofing["B05"]["detail"]["reasons"] == ["bad_mac"]
    assert spoofing["M03"]["detail"]["reasons"] == ["unauthenticated"]
    for alarm in spoofing.values():
        assert alarm["priority"] == "high" and alarm["latching"]
        assert alarm["location"]["floor"] == "L1" and alarm["detail"]["gateways"]
        assert alarm["raised_t"] >= epoch + ATTACK_AT - 1.0
    assert "B07" in _raised(events, "tamper")  # the genuine signed burst went through
    assert counts["replay"] > 0 and counts["bad_mac"] > 0 and counts["unauthenticated"] > 0
    assert counts["ok"] > 1000
    assert report["B03"]["replay"] > 0 and report["B05"]["bad_mac"] > 0

    # B03 was located from its own advertisements only: what the engine kept of it during the
    # replay (which sends its oldest advertisements again) is all newer than anything before
    rows = np.array(kept, dtype=float).reshape(-1, 2)  # (receive time, sequence)
    rows[:, 0] -= epoch
    old = rows[rows[:, 0] < ATTACK_AT, 1]
    new = rows[rows[:, 0] >= ATTACK_AT + 1.0, 1]
    assert len(old) and len(new)
    assert new.min() >= old.max()  # (a late copy of the newest may still come in its window)
    track = _track(sub, "B03", epoch)
    before = track[track[:, 0] < ATTACK_AT]
    during = track[track[:, 0] >= ATTACK_AT + 1.0]
    assert len(before) >= 3 and len(during) >= 4  # and it was located every few seconds

    # committed: the alarms are in the store, the counters were saved at the engine's end
    stored = asyncio.run(_stored(db))
    assert {a.subject for a in stored if a.type.value == "tag_spoofing"} == {"B03", "B05", "M03"}
    with KeyStore.open(db) as store:
        saved = {k.tag: k.counter for k in store.list()}
    assert saved["B03"] >= 0 and saved["B07"] >= 0


def _watch_kept(engine: Engine, site: Site, tag: str) -> list[tuple[float, int]]:
    """Record (receive time, sequence) of what the engine keeps of ``tag`` after tag
    authentication (the tick thread's :meth:`Engine.ingest`)."""
    i = [t.id for t in site.tags].index(tag)
    out: list[tuple[float, int]] = []
    inner = engine.ingest

    def ingest(decoded: Any, now: float | None = None) -> Any:
        kept = inner(decoded, now)
        if kept.obs_body is not None and now is not None:
            mine = kept.obs["tag"] == i
            out.extend((now, int(s)) for s in kept.obs_body["seq"][mine].tolist())
        return kept

    engine.ingest = ingest  # type: ignore[method-assign]
    return out


def _spoofed(sub: MessageCollector) -> set[str]:
    return {json.loads(m.payload)["alarm"]["subject"] for m in sub.messages
            if m.topic == topics.ALARM_EVENTS and b'"tag_spoofing"' in m.payload}  # fmt: skip


def _track(sub: MessageCollector, tag: str, epoch: float) -> np.ndarray:
    """(t since the scenario start, x, y) of each known position of ``tag`` published."""
    rows = []
    for m in sub.matching(lambda m: m.topic == topics.POSITIONS):
        body = json.loads(m.payload)
        for p in body["positions"]:
            if p["tag"] == tag and p["known"] and p["floor"] == "L1":
                rows.append((body["t"] - epoch, p["x"], p["y"]))
    return np.array(rows, dtype=float).reshape(-1, 3)


async def _stored(db: Path) -> list[Any]:
    async with await AlarmStore.open(db) as store:
        return await store.alarms_between(0.0, math.inf)


def test_admission_provisions_a_key_and_discharge_revokes_it(tmp_path: Path) -> None:
    """``[security] provision_at_admission``: admit gives the bracelet a fresh key (stored,
    given to the engine, audited without the key); discharge revokes it."""
    site = load_site()
    site = Site(site.model.model_copy(update={"security": site.security.model_copy(
        update={"provision_at_admission": True})}))  # fmt: skip
    db = tmp_path / "alarms.db"

    async def scenario() -> tuple[list[Any], bool, bool]:
        engine = Engine(site)
        async with await AlarmStore.open(db) as store:
            keys = KeyStore.open(db)
            keeper = KeyKeeper(engine, keys, at_admission=True)
            shell = AlarmShell(Desk(site), store, clock=time.time)
            shell.on_command = keeper.after_command
            b01 = [t.id for t in site.tags].index("B01")
            assert (await shell.command(None, "admit", {"baby": "B01"}, "nurse.anna"))["ok"]
            assert (await shell.command(None, "pair", {"baby": "B01", "mother": "M01"},
                                        "nurse.anna"))["ok"]  # fmt: skip
            keyed = bool(engine.auth.keyed[b01])
            stored = set(keys.keys())
            assert stored == {"B01", "M01"}
            # a restarted engine loads the same keys
            again = Engine(site)
            assert load_keys(again, keys) == 2 and bool(again.auth.keyed[b01])
            assert (await shell.command(None, "discharge", {"baby": "B01"}, "nurse.anna"))["ok"]
            revoked = not engine.auth.keyed[b01] and not keys.has("B01")
            keys.close()
            audit = await store.audit_latest(20)
        return audit, keyed, revoked

    audit, keyed, revoked = asyncio.run(scenario())
    assert keyed and revoked
    acts = [(r.action, r.subject, r.actor) for r in audit if r.action.startswith("tag_key.")]
    assert ("tag_key.provision", "B01", "nurse.anna") in acts
    assert ("tag_key.provision", "M01", "nurse.anna") in acts
    assert ("tag_key.revoke", "B01", "nurse.anna") in acts
    text = " ".join(json.dumps(dict(r.detail)) for r in audit)
    with KeyStore.open(db) as ks:
        for key, _ in ks.keys().values():
            assert key.hex() not in text


def test_keys_command_line(tmp_path: Path, capsys: Any) -> None:
    """``rtls keys provision|list|revoke``: the key only in its 0600 file, audited."""
    from rtls.service.cli import main

    db, out = tmp_path / "alarms.db", tmp_path / "b01.key"
    assert main(["keys", "provision", "B01", "--db", str(db), "--key-out", str(out)]) == 0
    key = bytes.fromhex(out.read_text().strip())
    assert len(key) == 16 and out.stat().st_mode & 0o777 == 0o600
    assert main(["keys", "provision", "B01", "--db", str(db), "--key-out", str(out)]) == 2
    assert main(["keys", "provision", "NOPE", "--db", str(db), "--key-out", str(out) + "2"]) == 2
    capsys.readouterr()
    assert main(["keys", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "B01" in listing and key.hex() not in listing
    with KeyStore.open(db) as store:
        assert store.keys()["B01"] == (key, -1)
    assert main(["keys", "revoke", "B01", "--db", str(db)]) == 0
    assert main(["keys", "revoke", "B01", "--db", str(db)]) == 2
    audit = asyncio.run(_audit(db))
    assert [(r.action, r.subject) for r in audit] == [("tag_key.provision", "B01"),
                                                      ("tag_key.revoke", "B01")]  # fmt: skip
    assert all(key.hex() not in json.dumps(dict(r.detail)) for r in audit)


async def _audit(db: Path) -> list[Any]:
    async with await AlarmStore.open(db) as store:
        return sorted(await store.audit_latest(10), key=lambda r: r.seq)
