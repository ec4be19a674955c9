"""The engine with its alarm desk and console, in a thread of its own, for console tests.

Real parts throughout: the engine service against a real Mosquitto (the fixtures' broker), a real
SQLite store and accounts (argon2), the console server on a free port. Tests talk to it as
clients do (WebSocket, HTTP, a browser) and inject tag advertisements as gateway batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import paho.mqtt.publish as publish
from argon2 import PasswordHasher
from websockets.asyncio.client import ClientConnection, connect

from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
from rtls.batch import encode_batch, make_records, obs_topic
from rtls.errors import RtlsError
from rtls.service.accounts import Accounts
from rtls.service.cli import run_engine
from rtls.service.console import ConsoleConfig, ConsoleServer
from rtls.site import Site, load_site

PASSWORD = "correct horse battery"
USERS = (  # name, role, scopes
    ("nurse.anna", "nurse", ["L1-WARD"]),
    ("nurse.lea", "nurse", ["L2-WARD"]),
    ("security.sam", "security", ["*"]),
    ("tech.tom", "technician", ["*"]),
    ("admin.ada", "admin", ["*"]),
)
CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # tests only


class ConsoleHarness:
    """``with ConsoleHarness(broker_port, tmp_path) as h:`` -> ``h.url``, ``h.ws_url``."""

    def __init__(self, broker_port: int, workdir: Path, *, config: ConsoleConfig | None = None,
                 admit_all: bool = True, site: Site | None = None) -> None:  # fmt: skip
        self.broker_port = broker_port
        self.db = workdir / "alarms.db"
        self.site = site or load_site()
        self.config = config or ConsoleConfig(host="127.0.0.1", port=0)
        self.admit_all = admit_all
        self.server: ConsoleServer | None = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seq = 0

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout=30.0) or self.server is None:
            raise RtlsError(f"console did not start: {self._error!r}")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.service.stop)
        self._thread.join(timeout=15.0)

    async def _users(self) -> None:
        async with await Accounts.open(self.db, hasher=CHEAP) as accounts:
            for name, role, scopes in USERS:
                if await accounts.get(name) is None:
                    await accounts.add(name, role, scopes, PASSWORD, name.split(".")[1].title())

    def _run(self) -> None:
        def ready(server: ConsoleServer) -> None:
            self.server = server
            self._ready.set()

        try:
            self.loop.run_until_complete(self._users())  # its own loop: the caller may run one
            self.loop.run_until_complete(run_engine(
                self.site, "127.0.0.1", self.broker_port, db=self.db, admit_all=self.admit_all,
                console=self.config, console_ready=ready))  # fmt: skip
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "ws"

    def call(self, fn: object) -> None:
        """Run ``fn()`` in the engine's loop (thread-safe)."""
        self.loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]

    def advertise(self, tag_id: str, status: Status = Status.NONE, *, gateway: str = "G01",
                  rssi: int = -60, repeat: int = 2, battery: int = 90) -> float:  # fmt: skip
        """Publish ``repeat`` gateway batches carrying one advertisement of ``tag_id``; returns
        the time of the first publish (the 'breach' time of latency checks)."""
        first = 0.0
        for i in range(repeat):
            t = self.advertise_many([(tag_id, status)], gateway=gateway, rssi=rssi,
                                    battery=battery)  # fmt: skip
            first = t if i == 0 else first
        return first

    def advertise_many(self, tags: list[tuple[str, Status]], *, gateway: str = "G01",
                       rssi: int = -60, battery: int = 90) -> float:  # fmt: skip
        """One gateway batch (one MQTT message, so one engine tick) carrying one advertisement
        of each tag; returns the publish time."""
        by_id = {t.id: t for t in self.site.tags}
        bodies, macs = [], []
        for tag_id, status in tags:
            tag = by_id[tag_id]
            kind = {"infant": TagKind.INFANT, "staff": TagKind.STAFF_BADGE,
                    "mother": TagKind.MOTHER}[tag.kind.value]  # fmt: skip
            self._seq += 1
            adv = Advertisement(kind=kind, serial=tag.serial, seq=self._seq % 256,
                                status=status, battery=battery)  # fmt: skip
            bodies.append(np.frombuffer(encode_body(adv), np.uint8))
            macs.append(list(tag_address(tag.serial)))
        n = len(tags)
        recs = make_records(np.zeros(n, np.int64), np.array(macs, np.uint8),
                            np.full(n, rssi), 37, np.stack(bodies))  # fmt: skip
        self._seq += 1
        frame = encode_batch(gateway, self._seq, time.time(), recs)
        sent = time.time()
        publish.single(obs_topic(gateway), frame, qos=1, hostname="127.0.0.1",
                       port=self.broker_port)  # fmt: skip
        return sent

    def door_read(self, tag_id: str, reader: str = "DR-E2") -> float:
        """A choke-point read of ``tag_id`` by door reader ``reader`` (JSON v1,
        docs/gateway-formats.md); returns the publish time."""
        tag = next(t for t in self.site.tags if t.id == tag_id)
        door = next(r.door for r in self.site.model.door_readers if r.id == reader)
        kind = "staff_badge" if tag.kind.value == "staff" else tag.kind.value
        now = time.time()
        body = {"v": 1, "reader": reader, "door": door, "t": round(now, 6),
                "mac": ":".join(f"{b:02X}" for b in tag_address(tag.serial)),
                "serial": tag.serial, "kind": kind, "rssi": -60}  # fmt: skip
        publish.single(f"rtls/v1/door/{reader}/read", json.dumps(body), qos=1,
                       hostname="127.0.0.1", port=self.broker_port)  # fmt: skip
        return now

    @contextlib.contextmanager
    def ward(self, scenario: str | None = None, duration_s: float = 600.0) -> Iterator[None]:
        """The simulated ward (gateways, tags: mothers and staff walk about; default: the
        simulator's ambient day) publishing to the broker, as a child process (``rtls
        simulate``), until the block ends."""
        which = ["--scenario", scenario] if scenario else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtls.service.cli", "simulate", *which,
             "--broker", f"127.0.0.1:{self.broker_port}", "--duration", str(duration_s)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class WsClient:
    """A logged-in WebSocket console client that keeps every message it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._next = 0

    @classmethod
    async def login(cls, url: str, user: str, password: str) -> WsClient:
        c = cls(await connect(url))
        reply = await c.request(op="login", user=user, password=password)
        assert reply["ok"], reply
        return c

    async def request(self, **req: Any) -> dict[str, Any]:
        self._next += 1
        req["id"] = self._next
        await self.ws.send(json.dumps(req))
        return await self.wait(lambda m: m.get("type") == "reply" and m.get("id") == req["id"])

    async def wait(self, pred: Callable[[dict[str, Any]], bool],
                   timeout: float = 10.0) -> dict[str, Any]:  # fmt: skip
        """The first message (kept or arriving within ``timeout`` s) satisfying ``pred``."""
        for m in self.messages:
            if pred(m):
                return m

        async def loop() -> dict[str, Any]:
            while True:
                m = json.loads(await self.ws.recv())
                self.messages.append(m)
                if pred(m):
                    return m

        return await asyncio.wait_for(loop(), timeout)

    async def drain(self, seconds: float) -> None:
        """Keep receiving for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await self.wait(lambda m: False, seconds)
