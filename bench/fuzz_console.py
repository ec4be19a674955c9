"""The fuzzing bench's console side: the real engine and :class:`ConsoleServer` (real Mosquitto,
real SQLite store and accounts) in the bench's event loop, fed two ways:

- :class:`WsFeeder`: real WebSocket connections (websockets client), logged in or not, one
  frame at a time, each answered before the next (the server as it really runs, including the
  frame size limit, UTF-8 validation and connection closes);
- :class:`InProcess`: the bulk, straight into ``ConsoleServer._request`` (the same code the
  connection handler runs for each frame) with a client whose socket and outbox are stand-ins
  that record what the server sends instead of writing it to a network.

Each input gets one outcome: ``accepted`` (an ``ok`` reply or a pong), ``reply: <error>`` (the
error with numbers and quoted parts blanked), ``bad_request`` (an ``error`` message),
``closed: <code>`` (the server closed the connection). A failure is an exception escaping the
request handler, an ``internal error`` reply, a close with 1011 (the handler crashed), or no
answer within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rtls.outbox import Latest, Outbox
from rtls.service.console import MAX_FRAME, ConsoleServer, _Client
from rtls.users import User

PASSWORD = "fuzz horse battery staple"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # bench only
#: name, role, scopes: the accounts the fuzz logs in with (never named by the corpus)
ACCOUNTS = (
    ("fuzz.admin", "admin", ["*"]),
    ("fuzz.nurse", "nurse", ["L1-WARD"]),
    ("fuzz.security", "security", ["*"]),
    ("fuzz.tech", "technician", ["*"]),
    ("victim.vic", "nurse", ["L2-WARD"]),  # the corpus disables this one
)
FINAL_USER = "final.check"  # logs in after the fuzz: the server must still answer
UNSOLICITED = frozenset({"snapshot", "positions", "ward", "technical", "heartbeat", "alarm"})
_NUM = re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

Outcome = tuple[str, str | None]  # (outcome, failure or None)


def normalise(error: str) -> str:
    """An error message as a reason: numbers and quoted parts blanked, at most 60 characters."""
    text = _QUOTED.sub("'…'", _NUM.sub("N", error.split("; known:")[0]))
    return text[:60]


def classify(messages: list[bytes | str]) -> Outcome:
    """The outcome of one request from what the server sent in answer (in order)."""
    for raw in messages:
        try:
            msg = json.loads(raw)
        except ValueError:
            return "garbled", f"the server sent a frame that is not JSON: {raw[:200]!r}"
        kind = msg.get("type")
        if kind in UNSOLICITED:
            continue
        if kind == "pong" or (kind == "reply" and msg.get("ok") is True):
            return "accepted", None
        if kind == "reply":
            error = str(msg.get("error"))
            if error.startswith("internal error"):
                return "internal_error", f"reply {error!r}"
            return f"reply: {normalise(error)}", None
        if kind == "error":
            return "bad_request", None
        return f"other: {kind}", f"unexpected message type {kind!r}"
    return "no_answer", None


async def prepare(server: ConsoleServer) -> dict[str, User]:
    """Cheap argon2 for the accounts (every login of an unknown name and every ``user_add``
    would otherwise cost a full hash: the fuzz would measure argon2) and the fuzz accounts."""
    server.accounts.hasher = CHEAP
    users: dict[str, User] = {}
    for name, role, scopes in (*ACCOUNTS, (FINAL_USER, "admin", ["*"])):
        if await server.accounts.get(name) is None:
            await server.accounts.add(name, role, scopes, PASSWORD, name, wards=server.wards.wards)
        user = await server.accounts.get(name)
        assert user is not None
        users[name] = user
    return users


async def repair(server: ConsoleServer) -> None:
    """Enable fuzz accounts a fuzzed ``user_disable`` may have disabled (a corpus request can
    be mutated into naming one), so logins keep working."""
    for name, _, _ in ACCOUNTS:
        user = await server.accounts.get(name)
        if user is not None and user.disabled:
            await server.accounts.enable(name)


class _Sink(Outbox):
    """An outbox that records reliable messages instead of queueing them (the writer task and
    the socket are not there); latest-only ones (positions, heartbeats) are dropped."""

    def __init__(self) -> None:
        super().__init__(limit=1000)
        self.sent: list[bytes] = []

    def push(self, message: bytes) -> bool:
        self.sent.append(message)
        return True

    def offer(self, kind: Latest, message: bytes) -> None:
        return None

    def __len__(self) -> int:
        return 0


@dataclass
class _Socket:
    """Stands for the client's WebSocket: records a close."""

    closed: int | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = code


@dataclass
class InProcess:
    """Feeds ``ConsoleServer._request`` directly; ``users`` from :func:`prepare`."""

    server: ConsoleServer
    users: dict[str, User]
    pick: Callable[[int], int]
    clients: dict[bool, _Client] = field(default_factory=dict)

    def _client(self, logged_in: bool) -> _Client:
        c = self.clients.get(logged_in)
        if c is not None and c.ws.closed is None and (c.session is not None) == logged_in:  # type: ignore[attr-defined]
            return c
        c = _Client(_Socket(), _Sink())  # type: ignore[arg-type]
        if logged_in:
            name = ACCOUNTS[self.pick(len(ACCOUNTS) - 1)][0]
            c.session = self.server.sessions.issue(self.users[name], self.server.clock())
        self.clients[logged_in] = c
        return c

    async def feed(self, raw: bytes, logged_in: bool, binary: bool) -> Outcome:
        client = self._client(logged_in)
        sink: _Sink = client.outbox  # type: ignore[assignment]
        sink.sent.clear()
        frame: bytes | str = raw[:MAX_FRAME]  # the server refuses larger frames before this
        if not binary:  # a text frame must be UTF-8: a client can send others only as binary
            with contextlib.suppress(UnicodeDecodeError):
                frame = frame.decode()  # type: ignore[union-attr]
        try:
            await self.server._request(client, frame)
        except Exception as exc:
            return "exception", f"{type(exc).__name__}: {exc}"
        outcome = classify(list(sink.sent))
        closed = client.ws.closed  # type: ignore[attr-defined]
        if closed is not None and outcome[1] is None:
            return f"closed: {closed}", None
        return outcome


class WsFeeder:
    """Real WebSocket connections to the console: one logged in (as a rotating fuzz account),
    one not; reconnects after the server closes one."""

    def __init__(self, url: str, pick: Callable[[int], int]) -> None:
        self.url = url
        self.pick = pick
        self.conns: dict[bool, ClientConnection] = {}
        self.connects = 0

    async def _conn(self, logged_in: bool) -> ClientConnection:
        ws = self.conns.get(logged_in)
        if ws is not None:
            return ws
        ws = await connect(self.url, max_size=None, compression=None, open_timeout=30)
        self.connects += 1
        if logged_in:
            name = ACCOUNTS[self.pick(len(ACCOUNTS) - 1)][0]
            await ws.send(json.dumps({"op": "login", "id": 0, "user": name,
                                      "password": PASSWORD}))  # fmt: skip
            outcome, _ = await _answer(ws)
            if outcome != "accepted":
                await ws.close()
                raise RuntimeError(f"fuzz account {name} cannot log in: {outcome}")
        self.conns[logged_in] = ws
        return ws

    async def feed(self, raw: bytes, logged_in: bool, mode: str) -> Outcome:
        """``mode``: ``text`` (a valid text frame; invalid UTF-8 goes as binary), ``binary``, or
        ``raw_text`` (the bytes as a text frame even if they are not UTF-8: a protocol error)."""
        ws = await self._conn(logged_in)
        try:
            if mode == "binary":
                await ws.send(raw)
            elif mode == "raw_text":
                await ws.send(raw, text=True)
            else:
                try:
                    await ws.send(raw.decode())
                except UnicodeDecodeError:
                    await ws.send(raw)
            return await _answer(ws)
        except ConnectionClosed as exc:
            self.conns.pop(logged_in, None)
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == 1011:
                return "closed: 1011", f"the server's handler failed: {exc}"
            return f"closed: {code}", None
        except TimeoutError:
            self.conns.pop(logged_in, None)
            await ws.close()
            return "timeout", "no answer within 10 s"

    async def close(self) -> None:
        for ws in self.conns.values():
            await ws.close()
        self.conns.clear()


async def _answer(ws: ClientConnection, timeout_s: float = 10.0) -> Outcome:
    """Receive until the answer to the last request (unsolicited messages skipped)."""

    async def loop() -> Outcome:
        while True:
            raw = await ws.recv()
            outcome = classify([raw])
            if outcome[0] != "no_answer":
                return outcome

    return await asyncio.wait_for(loop(), timeout_s)


async def final_check(url: str) -> dict[str, Any]:
    """After the fuzz: a normal login and commands must still work (``ok`` for each)."""
    steps: dict[str, Any] = {}
    async with connect(url, max_size=None, open_timeout=30) as ws:

        async def ask(**req: Any) -> Outcome:
            await ws.send(json.dumps(req))
            return await _answer(ws)

        steps["login"] = (await ask(op="login", id=1, user=FINAL_USER, password=PASSWORD))[0]
        steps["ping"] = (await ask(op="ping", id=2))[0]
        await ask(op="command", id=3, command="end_code_pink", args={"reason": "reset"})
        steps["code_pink"] = (await ask(op="command", id=4, command="code_pink",
                                        args={"reason": "fuzz check"}))[0]  # fmt: skip
        steps["end_code_pink"] = (await ask(op="command", id=5, command="end_code_pink",
                                            args={"reason": "fuzz check"}))[0]  # fmt: skip
    steps["ok"] = all(v == "accepted" for k, v in steps.items())
    return steps
