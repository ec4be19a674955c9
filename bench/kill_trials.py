"""SIGKILL of the engine at random moments: no alarm and no acknowledgement lost (issue 7).

    PYTHONPATH=. .venv/bin/python -m bench.kill_trials [--trials 100] [--seed 7] [--json F]

A private Mosquitto and ``rtls engine --commands --admit-all`` as a child process, on ONE SQLite
store for all trials. Each trial:

1. start the engine on the store the previous trials left and wait until it is online; every
   alarm the store holds open must be published again (retained state, the stored state);
2. a driver raises alarms (strap tamper on infant bracelets, SOS on badges, as native gateway
   batches), acknowledges them and resolves them over the MQTT command topic as soon as the
   engine announces them, while a timer SIGKILLs the engine after a seeded random delay;
3. after the kill, from the store file: every alarm whose ``raise`` reached an MQTT subscriber
   before the kill is stored; every command answered ``ok`` before the kill (not ``"saved":
   false``) is stored as that user's transition; no two open alarms share a key; the audit
   chain verifies.

Prints one line per trial and the figures: alarms and answered commands before kills, losses
(must be 0), and the restart time after a kill beside the baseline of the first start on an
empty store (same run). docs/faults.md keeps the figures of the 100-trial run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rtls import topics
from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
from rtls.batch import encode_batch, make_records, obs_topic
from rtls.service.broker import MosquittoBroker
from rtls.service.store import verify_database
from rtls.site import Site, load_site

GATEWAY = "G01"
USERS = ("nurse.anna", "security.sam")
KINDS = {"infant": TagKind.INFANT, "staff": TagKind.STAFF_BADGE}
ONLINE = b'{"state":"online"}'
CLEAR_HOLD_S = 1.0  # the bench site's rules.<kind>.clear_hold_s (example site: 5 s)
HOLD_S = CLEAR_HOLD_S + 1.5  # a resolved tag is raised again only after its condition cleared


class Watch:
    """An MQTT subscriber noting every message with its arrival time (paho thread)."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.lock = threading.Condition()
        self.messages: list[tuple[float, str, bytes]] = []
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"kill-watch-{uuid.uuid4().hex[:8]}")  # fmt: skip
        self._ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10.0):
            raise RuntimeError("kill_trials: the watcher could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload)))
            self.lock.notify_all()

    def since(self, t: float, topic_prefix: str = "") -> list[tuple[float, str, bytes]]:
        with self.lock:
            return [m for m in self.messages if m[0] >= t and m[1].startswith(topic_prefix)]

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.lock:
            return bool(self.lock.wait_for(lambda: pred(), timeout))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Engine:
    """``rtls engine`` as a child process."""

    def __init__(self, site: Path, port: int, db: Path, log: Path) -> None:
        self.args = [sys.executable, "-m", "rtls.service.cli", "engine", "--site", str(site),
                     "--broker", f"127.0.0.1:{port}", "--db", str(db), "--commands",
                     "--admit-all"]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(self.args, stdout=f, stderr=subprocess.STDOUT)

    def kill(self) -> float:
        """SIGKILL; returns the time the signal was sent."""
        assert self.proc is not None
        t = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return t

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Driver:
    """Raises, acknowledges and resolves alarms as fast as the engine answers."""

    def __init__(self, site: Site, port: int, rng: np.random.Generator) -> None:
        self.site = site
        self.rng = rng
        self.client_id = f"kill-{uuid.uuid4().hex[:8]}"
        self.pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                               client_id=f"{self.client_id}-pub")  # fmt: skip
        self.pub.connect("127.0.0.1", port, keepalive=30)
        self.pub.loop_start()
        self.tags = [t for t in site.tags if t.kind.value in KINDS]
        self.tag_seq = {t.id: int(rng.integers(0, 1000)) for t in self.tags}
        self.batch_seq = 0
        self.requests: dict[str, tuple[str, int, str]] = {}  # request id -> (command, alarm, user)
        self.raising: set[str] = set()  # tags with an alarm of ours not yet closed
        self.free_at = {t.id: 0.0 for t in self.tags}  # when a tag's condition has cleared

    @property
    def reply_topic(self) -> str:
        return topics.COMMAND_REPLY.format(client=self.client_id)

    def advertise(self, tag_id: str, status: Status) -> None:
        """One batch from G01 with one advertisement of ``tag_id``."""
        self._batch([tag_id], status)

    def heartbeat(self, tag_ids: list[str]) -> None:
        """One batch with a plain heartbeat of each tag (no alarm flag)."""
        if tag_ids:
            self._batch(tag_ids, Status.NONE)

    def _batch(self, tag_ids: list[str], status: Status) -> None:
        by_id = {t.id: t for t in self.tags}
        bodies, macs = [], []
        for tag_id in tag_ids:
            tag = by_id[tag_id]
            self.tag_seq[tag_id] += 1
            adv = Advertisement(kind=KINDS[tag.kind.value], serial=tag.serial,
                                seq=self.tag_seq[tag_id] % 65536, status=status,
                                battery=90)  # fmt: skip
            bodies.append(np.frombuffer(encode_body(adv), np.uint8))
            macs.append(list(tag_address(tag.serial)))
        n = len(tag_ids)
        recs = make_records(np.arange(n) * 1000, np.array(macs, np.uint8), np.full(n, -60), 37,
                            np.stack(bodies))  # fmt: skip
        self.batch_seq += 1
        self.pub.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, self.batch_seq, time.time(),
                                                          recs), qos=1)  # fmt: skip

    def command(self, name: str, alarm: int, user: str, **args: Any) -> None:
        req = uuid.uuid4().hex
        self.requests[req] = (name, alarm, user)
        body = {"id": req, "client": self.client_id, "user": user, "command": name,
                "args": {"alarm": alarm, **args}}  # fmt: skip
        self.pub.publish(topics.COMMAND, json.dumps(body), qos=1)

    def close(self) -> None:
        self.pub.disconnect()
        self.pub.loop_stop()


@dataclass
class Trial:
    n: int
    kill_after_s: float
    restart_s: float = 0.0  # after the kill: start -> online, every open alarm published again
    raised: int = 0  # alarm raises announced before the kill
    answered: int = 0  # commands answered ok (saved) before the kill
    lost_alarms: list[int] = field(default_factory=list)
    lost_commands: list[str] = field(default_factory=list)
    not_republished: list[int] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)
    audit_ok: bool = True

    @property
    def ok(self) -> bool:
        return not (self.lost_alarms or self.lost_commands or self.not_republished
                    or self.duplicate_keys) and self.audit_ok  # fmt: skip


def _store(db: Path) -> tuple[dict[int, tuple[str, str, bool]], set[tuple[int, str, str]]]:
    """(alarm id -> (key, state, open), {(alarm id, action, actor)}) of a store file."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        alarms = {int(r[0]): (str(r[1]), str(r[2]), bool(r[3]))
                  for r in con.execute("SELECT id, key, state, open FROM alarms")}  # fmt: skip
        trs = {(int(r[0]), str(r[1]), str(r[2]))
               for r in con.execute("SELECT alarm_id, action, actor FROM transitions")}  # fmt: skip
    finally:
        con.close()
    return alarms, trs


def _held(db: Path) -> list[str]:
    """The alarm keys the store holds back (resolved while their condition held)."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'held'").fetchone()
    finally:
        con.close()
    return [str(k) for k in json.loads(row[0])] if row else []


def _start(
    engine: Engine, watch: Watch, db: Path, timeout: float = 60.0
) -> tuple[float, list[int]]:
    """Start the engine and wait until it is online and has published the state of every
    alarm the store holds open. Returns the seconds it took and the open alarms not published
    again (within ``timeout``) with their stored state; RuntimeError if it never came online."""
    t = time.time()
    open_alarms = {a: s for a, (_, s, o) in _store(db)[0].items() if o} if db.exists() else {}
    engine.start()
    seen: dict[int, str] = {}

    def online() -> bool:
        return ONLINE in [p for _, tp, p in watch.since(t, topics.STATUS) if tp == topics.STATUS]

    def ready() -> bool:
        if not online():
            return False
        for _, tp, p in watch.since(t, "rtls/v1/alarms/state/"):
            aid = int(tp.rsplit("/", 1)[1])
            if aid not in seen and p:
                seen[aid] = json.loads(p)["state"]
        return all(seen.get(a) == s for a, s in open_alarms.items())

    watch.wait(ready, timeout)
    if not online():
        raise RuntimeError(f"kill_trials: the engine did not come online within {timeout:g} s; "
                           f"see {engine.log}")  # fmt: skip
    missing = sorted(a for a, s in open_alarms.items() if seen.get(a) != s)
    return time.time() - t, missing


def _drive(driver: Driver, watch: Watch, engine: Engine, db: Path, kill_after: float) -> float:
    """Heartbeats of every idle tag (so conditions clear), raises, acknowledgements and
    resolutions, also of what earlier trials left open, until the kill; returns its time."""
    start = time.time()
    kill_at = start + kill_after
    alarms, _ = _store(db)
    driver.raising.clear()  # what is raising is what the store holds open
    for aid, (key, state, is_open) in alarms.items():
        subject = key.split(":")[-1]
        if not is_open or subject not in driver.tag_seq:
            continue
        driver.raising.add(subject)
        if state in ("active_unacknowledged", "cleared_unacknowledged"):
            driver.command("acknowledge", aid, USERS[aid % 2])
        else:
            _resolve(driver, aid, subject)
    for key in _held(db):  # resolved while the condition held: free once it cleared
        subject = key.split(":")[-1]
        if subject in driver.free_at:
            driver.free_at[subject] = max(driver.free_at[subject], start + HOLD_S)
    next_raise = next_beat = start
    seen = 0
    while time.time() < kill_at:
        now = time.time()
        if now >= next_beat:
            driver.heartbeat([t for t in driver.tag_seq if t not in driver.raising])
            next_beat = now + 1.0
        if now >= next_raise:
            free = [t for t, at in driver.free_at.items()
                    if at <= now and t not in driver.raising]  # fmt: skip
            if free:
                tag = free[int(driver.rng.integers(len(free)))]
                status = Status.SOS if tag.startswith("W") else Status.TAMPER
                driver.advertise(tag, status)
                driver.advertise(tag, status)
                driver.raising.add(tag)
            next_raise = now + float(driver.rng.uniform(0.05, 0.25))
        events = watch.since(start, topics.ALARM_EVENTS)
        for _, _, payload in events[seen:]:
            ev = json.loads(payload)
            aid, subject, action = int(ev["alarm_id"]), ev["alarm"]["subject"], ev["action"]
            if subject not in driver.tag_seq:
                continue
            if action in ("raise", "reactivate"):
                driver.command("acknowledge", aid, USERS[aid % 2])
            elif action in ("acknowledge", "clear"):
                _resolve(driver, aid, subject)
            elif action in ("resolve", "close"):
                driver.raising.discard(subject)
                driver.free_at[subject] = now + HOLD_S
        seen = len(events)
        time.sleep(0.01)
    return engine.kill()


def _resolve(driver: Driver, aid: int, subject: str) -> None:
    driver.advertise(subject, Status.NONE)  # strap restored, badge reset
    driver.command("resolve", aid, USERS[aid % 2], outcome="test", comment="kill trial")


def bench_site(workdir: Path) -> Path:
    """The example site with conditions clearing after ``CLEAR_HOLD_S`` (so a resolved tag can
    raise again within a trial of a few seconds), written to ``workdir``."""
    src = load_site().source
    assert src is not None
    text = Path(src).read_text()
    for kind in ("infant", "mother", "staff"):
        text = text.replace(f"[rules.{kind}]\n", f"[rules.{kind}]\nclear_hold_s = {CLEAR_HOLD_S}\n")
    out = workdir / "site.toml"
    out.write_text(text)
    return out


def run_trials(n: int, seed: int, workdir: Path, *, port: int | None = None,
               kill_max_s: float = 4.0, log: bool = True) -> tuple[list[Trial], float]:  # fmt: skip
    """``n`` kill trials in ``workdir`` (store, engine log; a private broker unless ``port``
    names one); see the module doc. Returns the trials and the first start's seconds (on an
    empty store: the baseline of the restart times)."""
    if port is None:
        with MosquittoBroker(workdir / "mosquitto") as broker:
            return run_trials(n, seed, workdir, port=broker.port, kill_max_s=kill_max_s,
                              log=log)  # fmt: skip
    site_path = bench_site(workdir)
    site = load_site(site_path)
    rng = np.random.default_rng(seed)
    db = workdir / "alarms.db"
    trials: list[Trial] = []
    watch = Watch(port, [topics.ALARM_EVENTS, topics.ALARM_STATE_FILTER, topics.STATUS,
                         topics.COMMAND_REPLY.format(client="+")])  # fmt: skip
    driver = Driver(site, port, rng)
    engine = Engine(site_path, port, db, workdir / "engine.log")
    try:
        first, _ = _start(engine, watch, db)
        for k in range(n):
            kill_after = float(rng.uniform(0.1, kill_max_s))
            trial = Trial(k + 1, kill_after)
            began = time.time()
            killed = _drive(driver, watch, engine, db, kill_after)
            _check(trial, driver, watch, db, began, killed)
            trial.restart_s, trial.not_republished = _start(engine, watch, db)
            trials.append(trial)
            if log:
                print(f"trial {trial.n:3d}: kill after {kill_after:.2f} s, "
                      f"{trial.raised} raised, {trial.answered} commands ok, "
                      f"restart {trial.restart_s:.2f} s: "
                      f"{'ok' if trial.ok else 'LOST ' + str(trial)}",
                      flush=True)  # fmt: skip
    finally:
        engine.stop()
        driver.close()
        watch.close()
    return trials, first


def _check(
    trial: Trial, driver: Driver, watch: Watch, db: Path, began: float, killed: float
) -> None:
    """What this trial saw announced / answered before the kill, against the store."""
    before = [m for m in watch.since(began) if m[0] < killed]
    raised = {int(json.loads(p)["alarm_id"]) for _, tp, p in before
              if tp == topics.ALARM_EVENTS and json.loads(p)["action"] == "raise"}  # fmt: skip
    answered = []
    for _, tp, p in before:
        if tp != driver.reply_topic:
            continue
        reply = json.loads(p)
        req = driver.requests.get(str(reply.get("id")))
        if req is not None and reply.get("ok") and reply.get("saved", True):
            answered.append((reply["id"], *req))
    alarms, trs = _store(db)
    trial.raised = len(raised)
    trial.answered = len(answered)
    trial.lost_alarms = sorted(a for a in raised if a not in alarms)
    trial.lost_commands = [f"{name} {aid} by {user}" for _, name, aid, user in answered
                           if (aid, name, user) not in trs]  # fmt: skip
    keys = [key for key, _, is_open in alarms.values() if is_open]
    trial.duplicate_keys = sorted({k for k in keys if keys.count(k) > 1})
    trial.audit_ok = verify_database(db).ok


def summary(trials: list[Trial], baseline_s: float) -> dict[str, Any]:
    restarts = np.array([t.restart_s for t in trials] or [0.0])
    return {
        "trials": len(trials),
        "failed_trials": sum(not t.ok for t in trials),
        "alarms_raised_before_kills": sum(t.raised for t in trials),
        "commands_ok_before_kills": sum(t.answered for t in trials),
        "alarms_lost": sum(len(t.lost_alarms) for t in trials),
        "commands_lost": sum(len(t.lost_commands) for t in trials),
        "not_republished": sum(len(t.not_republished) for t in trials),
        "kill_after_s": [
            round(min(t.kill_after_s for t in trials), 2),
            round(max(t.kill_after_s for t in trials), 2),
        ],
        "restart_s_p50": round(float(np.median(restarts)), 2),
        "restart_s_max": round(float(restarts.max()), 2),
        "baseline_first_start_s": round(baseline_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kill-max", type=float, default=4.0, help="kill within this many s")
    ap.add_argument("--json", type=Path, help="write the trials and the summary here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtls-kill-") as tmp:
        trials, first = run_trials(args.trials, args.seed, Path(tmp), kill_max_s=args.kill_max)
    out = summary(trials, first)
    print(
        f"{out['trials']} trials, {out['failed_trials']} failed: "
        f"{out['alarms_raised_before_kills']} alarms raised and "
        f"{out['commands_ok_before_kills']} commands answered ok before the kills; "
        f"lost: {out['alarms_lost']} alarms, {out['commands_lost']} commands"
    )
    print(
        f"restart after a kill (online, open alarms published again): p50 "
        f"{out['restart_s_p50']} s, max {out['restart_s_max']} s; baseline, first start on "
        f"an empty store: {out['baseline_first_start_s']} s"
    )
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps({"summary": out, "trials": [asdict(t) for t in trials]},
                                        indent=1))  # fmt: skip
    return 0 if out["failed_trials"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
