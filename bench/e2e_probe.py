"""The end-to-end bench's instruments: the engine process, the broker, a WebSocket console
client that timestamps every alarm it receives, and the probes (strap tamper, SOS, door-reader
exit, zone breach) with the keep-alive that stands for the ward's own traffic.

Clocks: every time here is ``time.time()`` of one machine, so a probe's publish time and the
console client's receipt time compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
from argon2 import PasswordHasher
from numpy.typing import NDArray

from bench.console_http import fetch, metrics
from bench.e2e_load import Links, addresses, bodies, connect, records_for, stamp
from rtls.advertisement import Status
from rtls.batch import encode_batch, obs_topic
from rtls.service.accounts import Accounts
from rtls.service.broker import MosquittoBroker, free_port
from rtls.site import Site

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench horse battery staple"
USER = "bench.security"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # bench only
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The bench could not run (a process died, a timeout)."""


def pin(pid: int, core: int | None) -> None:
    """Pin process ``pid`` to one core (no-op when ``core`` is None or unavailable)."""
    if core is not None and core < (os.cpu_count() or 1):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


class BenchBroker(MosquittoBroker):
    """A private Mosquitto with queues deep enough for a flood: a QoS 1 subscriber that falls
    behind must not lose messages at the broker (its default queue holds 1,000)."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a") as f:
            f.write("max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
                    "log_type error\n")  # fmt: skip


class Proc:
    """A child process with its log, CPU time and resident memory."""

    def __init__(self, cmd: Sequence[str], log: Path, core: int | None,
                 env: dict[str, str] | None = None, stdin: bool = False) -> None:  # fmt: skip
        self.log = log
        self._log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        pin(self.proc.pid, core)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, timeout_s: float = 600.0) -> dict[str, Any]:
        """The next JSON line the child prints (BenchError if it dies first)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw = self.proc.stdout.readline()
            if raw:
                try:
                    out: dict[str, Any] = json.loads(raw)
                    return out
                except ValueError:
                    continue
            if self.proc.poll() is not None:
                raise BenchError(f"{self.proc.args!r} exited: {self.tail()}")
        raise BenchError(f"no answer from {self.proc.args!r} in {timeout_s} s")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_mb(self) -> tuple[float, float]:
        """(resident, peak resident) MB."""
        rss = hwm = 0.0
        for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                rss = int(row.split()[1]) / 1024
            elif row.startswith("VmHWM:"):
                hwm = int(row.split()[1]) / 1024
        return rss, hwm

    def tail(self, n: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Engine(Proc):
    """``rtls engine --console --admit-all`` pinned to ``core``."""

    def __init__(self, site_path: Path, broker_port: int, db: Path, log: Path,
                 core: int | None) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "-m", "rtls.service.cli", "engine", "--site", str(site_path),
               "--broker", f"127.0.0.1:{broker_port}", "--db", str(db),
               "--console", f"127.0.0.1:{self.port}", "--admit-all"]  # fmt: skip
        env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        super().__init__(cmd, log, core, env)

    def wait_ready(self, timeout_s: float = 900.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise BenchError(f"the engine exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if json.loads(self._get("health")).get("broker"):
                    return time.monotonic() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise BenchError(f"the engine was not ready in {timeout_s} s:\n{self.tail()}")

    def _get(self, path: str) -> bytes:
        return fetch(self.url + path, timeout=30)

    def metrics(self) -> dict[str, float]:
        return metrics(self.url + "metrics", timeout=30)

    def observations(self) -> float:
        return self.metrics().get("rtls_observations_total", 0.0)


async def add_user(db: Path) -> None:
    async with await Accounts.open(db, hasher=CHEAP) as accounts:
        if await accounts.get(USER) is None:
            await accounts.add(USER, "security", ["*"], PASSWORD, "Bench")


# -- the console client --------------------------------------------------------------------


@dataclass
class ConsoleLog:
    """First receipt time of each alarm raise, by (type, subject); message counts."""

    raised: dict[tuple[str, str], float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    error: str | None = None


class ConsoleClient:
    """A logged-in WebSocket client in a thread of its own; ``log`` fills as alarms arrive."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "ws"
        self.log = ConsoleLog()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(60.0):
            raise BenchError(f"console client: no snapshot ({self.log.error})")
        if self.log.error:
            raise BenchError(f"console client: {self.log.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10.0)

    def _run(self) -> None:
        self._task = self._loop.create_task(self._client())
        try:
            self._loop.run_until_complete(self._task)
        except (asyncio.CancelledError, Exception) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.log.error = repr(exc)
            self._ready.set()

    async def _client(self) -> None:
        from websockets.asyncio.client import connect

        log = self.log
        async with connect(self.url, max_size=None, compression=None) as ws:
            await ws.send(json.dumps({"op": "login", "id": 1, "user": USER,
                                      "password": PASSWORD}))  # fmt: skip
            async for frame in ws:
                now = time.time()
                data = frame if isinstance(frame, bytes) else frame.encode()
                log.bytes += len(data)
                kind = data[9:24].split(b'"', 1)[0].decode()  # {"type":"<kind>"
                log.counts[kind] = log.counts.get(kind, 0) + 1
                if kind == "alarm":
                    tr = json.loads(data)["transition"]
                    if tr["action"] in ("raise", "reactivate"):
                        key = (tr["alarm"]["type"], tr["alarm"]["subject"])
                        log.raised.setdefault(key, now)
                elif kind == "snapshot":
                    self._ready.set()
                elif kind == "reply" and b'"ok":false' in data:
                    log.error = data.decode()[:300]
                    self._ready.set()


# -- probes ---------------------------------------------------------------------------------


@dataclass
class Probe:
    """A critical event or breach injected at ``t`` (publish time), expecting an alarm of
    ``alarm`` type for ``subject``; ``steps``: a breach's step publish times."""

    kind: str
    subject: str
    alarm: str
    t: float
    steps: list[float] = field(default_factory=list)


class Prober:
    """Publishes the probes and the keep-alive (building 0's ward tags and the probe tags at
    their homes, every ``keepalive_s``; health of every gateway and status of every door reader
    every 10 s) on a paho client of its own."""

    def __init__(self, site: Site, links: Links, port: int, keepalive_s: float = 2.0,
                 ward: bool = True) -> None:  # fmt: skip
        self.site = site
        self.links = links
        self.index = {t.id: i for i, t in enumerate(site.tags)}
        self.addr = addresses(site)
        self.client = connect(port, f"e2e-probe-{os.getpid()}")
        self.keepalive_s = keepalive_s
        self.rng = np.random.default_rng(7)
        self.seq = 0
        self._lock = threading.Lock()
        self._gw_seq: dict[int, int] = {}
        keep = [i for i, t in enumerate(site.tags) if not (t.id[0] == "S" and t.id[1:].isdigit())]
        self.keep = set(keep) if ward else set()
        # a probe's status stays set in its tag's later advertisements, as on a real tag (a cut
        # strap stays cut): a keep-alive must not contradict the probe within a tick
        self.held = np.zeros(len(site.tags), dtype=np.uint8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keepalive, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.client.loop_stop()
        self.client.disconnect()

    def _publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> float:
        with self._lock:
            t = time.time()
            self.client.publish(topic, payload, qos=qos, retain=retain)
        return t

    def _batches(self, tags: NDArray[np.intp], status: int | NDArray[np.uint8] = 0,
                 links: Links | None = None) -> list[tuple[str, bytearray, int]]:  # fmt: skip
        st = np.zeros(len(self.site.tags), dtype=np.uint8)
        st[tags] = status
        self.seq += 1
        body = bodies(self.site, st, self.seq)
        gws, rec = records_for(tags, links or self.links, self.addr, body, self.rng, span_us=1000)
        out = []
        cuts = np.flatnonzero(np.r_[True, gws[1:] != gws[:-1], True])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            g = int(gws[a])
            gid = self.site.gateways[g].id
            out.append((obs_topic(gid), bytearray(encode_batch(gid, 0, 0.0, rec[a:b])), g))
        return out

    def _send(self, batches: list[tuple[str, bytearray, int]]) -> float:
        first = 0.0
        with self._lock:
            for i, (topic, payload, g) in enumerate(batches):
                seq = self._gw_seq.get(g, 1_000_000) + 1
                self._gw_seq[g] = seq
                t = time.time()
                self.client.publish(topic, bytes(stamp(payload, seq, t)), qos=1)
                first = t if i == 0 else first
        return first

    def _keepalive(self) -> None:
        next_health = 0.0
        while not self._stop.is_set():
            tags = np.array(sorted(self.keep), dtype=np.intp)
            if len(tags):
                self._send(self._batches(tags, self.held[tags]))
            if time.time() >= next_health:
                next_health = time.time() + 10.0
                for g in self.site.gateways:
                    self._publish(f"rtls/v1/gw/{g.id}/health", json.dumps(
                        {"v": 1, "gateway": g.id, "t": time.time(), "uptime_s": 100.0}).encode(),
                        qos=0)  # fmt: skip
                for r in self.site.door_readers:
                    self._publish(f"rtls/v1/door/{r.id}/status", json.dumps(
                        {"v": 1, "reader": r.id, "state": "online", "t": time.time()}).encode(),
                        retain=True)  # fmt: skip
            self._stop.wait(self.keepalive_s)

    # -- the probes -------------------------------------------------------------------------
    def status(self, tag_id: str, flag: Status, kind: str, alarm: str) -> Probe:
        """One advertisement of ``tag_id`` with ``flag`` set, heard by its gateways."""
        i = self.index[tag_id]
        self.held[i] |= int(flag)
        t = self._send(self._batches(np.array([i]), int(self.held[i])))
        return Probe(kind, tag_id, alarm, t)

    def door_exit(self, tag_id: str, reader: str) -> Probe:
        """A choke-point read of ``tag_id`` by exit door reader ``reader``."""
        tag = self.site.tags[self.index[tag_id]]
        door = next(r.door for r in self.site.door_readers if r.id == reader)
        mac = ":".join(f"{b:02X}" for b in self.addr[self.index[tag_id]])
        body = {"v": 1, "reader": reader, "door": door, "t": time.time(), "mac": mac,
                "serial": tag.serial, "kind": "infant", "rssi": -60}  # fmt: skip
        t = self._publish(f"rtls/v1/door/{reader}/read", json.dumps(body).encode())
        return Probe("door_exit", tag_id, "exit", t)

    def breach(self, tag_id: str, at: Links, received: dict[tuple[str, str], float],
               step_s: float = 1.0, max_steps: int = 12) -> Probe:
        """Advertisements of ``tag_id`` from the exit-zone point of ``at`` every ``step_s``
        until its exit alarm arrives (``received`` is the console log); the tag leaves the
        keep-alive first."""
        i = self.index[tag_id]
        self.keep.discard(i)
        probe = Probe("zone_breach", tag_id, "exit", 0.0)
        for _ in range(max_steps):
            probe.steps.append(self._send(self._batches(np.array([i]), links=at)))
            probe.t = probe.t or probe.steps[0]
            deadline = time.time() + step_s
            while time.time() < deadline:
                if ("exit", tag_id) in received:
                    return probe
                time.sleep(0.01)
        return probe


def latency_of(probe: Probe, received: dict[tuple[str, str], float]) -> float | None:
    """Seconds from the publish that caused the alarm to its receipt (None: never came). For a
    breach, the cause is the last step published before the alarm arrived."""
    got = received.get((probe.alarm, probe.subject))
    if got is None:
        return None
    if probe.steps:
        before = [s for s in probe.steps if s <= got]
        return got - before[-1] if before else None
    return got - probe.t
