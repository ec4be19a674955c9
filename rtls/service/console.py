"""The console server: WebSocket API, web page, health and metrics on one port (websockets).

Contract: docs/console-api.md. Runs in the engine's event loop beside
:class:`rtls.service.engine.EngineService`; it never makes the engine wait:

- alarm transitions are serialised once (after they are committed: the shell calls
  :meth:`ConsoleServer.on_output` between commit and announce) and put in every entitled
  client's :class:`rtls.outbox.Outbox`; positions are offered once per tick (latest only);
- each client has its own writer task, so a slow socket only fills its own outbox, which
  resynchronises it with a fresh snapshot instead of dropping an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rtls.alarm import Alarm, Transition
from rtls.console import (
    PositionRows,
    ReplayBuffer,
    WardMap,
    alarm_document,
    filter_board,
    is_technical,
    site_document,
    technical_document,
    ward_board,
)
from rtls.desk import DeskOutput
from rtls.engine import TickResult
from rtls.errors import RtlsError, TransportError
from rtls.outbox import RESYNC, Outbox
from rtls.service.accounts import Accounts
from rtls.service.alarms import AlarmShell
from rtls.service.engine import EngineService, tick_percentile
from rtls.service.metrics import metrics_text
from rtls.sessions import Session, Sessions
from rtls.users import AuthError, User, refusal, sees

_LOG = logging.getLogger(__name__)

WEB_PACKAGE = "rtls.console_web"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
    ".json": "application/json", ".ico": "image/x-icon", ".wav": "audio/wav",
}  # fmt: skip
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; "
     "img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)  # fmt: skip
CLOSE_POLICY = 1008  # RFC 6455: policy violation (too many failed logins)
CLOSE_SESSION = 4401  # application code: the session expired or was revoked
MAX_FRAME = 64 * 1024  # requests are small; a larger frame closes the connection
MAX_SAFE_INTEGER = 2**53 - 1  # larger integers in a request are a bad request


@dataclass
class ConsoleConfig:
    """``--console HOST:PORT`` and friends (docs/console-api.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    ssl: ssl.SSLContext | None = None
    session_ttl_s: float = 900.0
    outbox_limit: int = 1000
    heartbeat_s: float = 5.0
    technical_s: float = 2.0
    max_login_failures: int = 5
    replay: int = 10_000


@dataclass
class ConsoleStats:
    connections: int = 0
    logins: int = 0
    logins_failed: int = 0
    commands: int = 0
    refused: int = 0
    resyncs: int = 0
    sent: int = 0
    bad_requests: int = 0


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    outbox: Outbox
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    session: Session | None = None
    failures: int = 0

    @property
    def user(self) -> User | None:
        return None if self.session is None else self.session.user

    def push(self, message: bytes) -> None:
        self.outbox.push(message)
        self.wake.set()


def _dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8 encoded once (clients' frames are sent as text from these bytes)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def load_ssl(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context from PEM files (``--tls-cert``, ``--tls-key``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"console TLS: cannot load {cert} / {key}: {exc}") from exc
    return ctx


class ConsoleServer:
    """Serves the console for ``service`` (engine) and ``shell`` (alarm desk)."""

    def __init__(
        self,
        service: EngineService,
        shell: AlarmShell,
        accounts: Accounts,
        config: ConsoleConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.shell = shell
        self.accounts = accounts
        self.config = config or ConsoleConfig()
        self.clock = clock
        self.site = shell.desk.site
        self.wards = WardMap(self.site)
        self.sessions = Sessions(ttl_s=self.config.session_ttl_s)
        self.stats = ConsoleStats()
        self.clients: set[_Client] = set()
        # transitions are numbered from the start time in ms, so a client's ``since`` from an
        # earlier run of the server is older than anything here and gets a snapshot
        self.replay = ReplayBuffer(self.config.replay)
        self._seq = int(clock() * 1000)
        self.replay.last_seq = self._seq
        self._site_json = _dumps(site_document(self.site))
        self._rows = PositionRows(self.site)
        self._latest: dict[int, str] = {}  # tag index -> its last visible fix (row JSON)
        self._board: dict[str, Any] = self._make_board()
        self._board_json: dict[tuple[str | None, ...], bytes] = {}  # by visible wards
        self._board_dirty = False
        self._technical = b"{}"
        self._ingest = (clock(), 0)
        self.ingest_rate = 0.0
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._web = self._load_web()
        shell.observers.append(self.on_output)
        service.tick_observers.append(self.on_tick)

    # -- life ------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise TransportError("the console server is not started")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise TransportError("the console server has no socket")

    @property
    def url(self) -> str:
        scheme = "https" if self.config.ssl is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}/"

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handler, self.config.host, self.config.port, ssl=self.config.ssl,
                process_request=self._http, compression=None, max_size=MAX_FRAME,
                ping_interval=10, ping_timeout=20, server_header="rtls",
            )  # fmt: skip
        except OSError as exc:
            raise TransportError(f"console: cannot listen on {self.config.host}:"
                                 f"{self.config.port}: {exc}") from exc  # fmt: skip
        self._technical = self._make_technical(self.clock())  # a first login sees it at once
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- engine side (never awaits) --------------------------------------------------------------
    def on_output(self, out: DeskOutput) -> None:
        """A committed desk output: number, serialise and queue its transitions; a new ward
        board when the ward changed."""
        for tr in out.transitions:
            self._seq += 1
            doc = alarm_document(tr.alarm, self.wards)
            body = _transition(tr, doc)
            message = _dumps({"type": "alarm", "seq": self._seq, "transition": body})
            ward = doc["ward"]
            self.replay.add(self._seq, ward, message)
            for c in self.clients:
                if c.user is not None and sees(c.user, ward):
                    c.push(message)
        if out.documents:  # the ward may have changed: rebuilt off the tick, if it did
            self._board_dirty = True

    def on_tick(self, now: float, result: TickResult, positions: bytes | None) -> None:
        """Offer this tick's fixes that changed on the plan (0.1 m, zone, uncertainty) to every
        logged-in client as a delta; a client still holding an unsent delta gets the full
        picture instead. Tags no longer visible (a worker whose alarm ended) are dropped and
        listed ``hidden``. (``positions``, the MQTT JSON, is not used: rows are compact.)"""
        visible = self.shell.desk.visible(now)
        gone = [i for i in self._latest if not visible[i]]
        for i in gone:
            del self._latest[i]
        located = result.located[visible[result.located]]
        latest = self._latest
        rows = self._rows.encode(result, located)
        changed = [(i, row) for i, row in rows if latest.get(i) != row]
        if not changed and not gone:
            return
        latest.update(changed)
        hidden = _dumps([self.site.tags[i].id for i in gone])
        delta = self._positions_message(now, False, [row for _, row in changed], hidden)
        full: bytes | None = None
        for c in self.clients:
            if c.session is None:
                continue
            if c.outbox.pending_positions():
                if full is None:
                    full = self._positions_message(now, True, latest.values(), b"[]")
                c.outbox.offer("positions", full)
            else:
                c.outbox.offer("positions", delta)
            c.wake.set()

    @staticmethod
    def _positions_message(now: float, full: bool, rows: Iterable[str], hidden: bytes) -> bytes:
        return b"".join((
            b'{"type":"positions","t":', repr(round(now, 3)).encode(),
            b',"full":true' if full else b',"full":false',
            b',"positions":[', ",".join(rows).encode(), b'],"hidden":', hidden, b"}",
        ))  # fmt: skip

    def _make_board(self) -> dict[str, Any]:
        return ward_board(self.shell.desk.ward, self.site, self.wards,
                          self.shell.desk.rules.battery)  # fmt: skip

    def _refresh_board(self) -> None:
        """Rebuild the board; push it to every client only if it changed."""
        self._board_dirty = False
        board = self._make_board()
        if board == self._board:
            return
        self._board = board
        self._board_json.clear()
        for c in self.clients:
            if c.user is not None:
                c.push(self._board_message(c.user))

    def _board_message(self, user: User) -> bytes:
        """The board as ``user`` may see it, serialised once per set of visible wards."""
        visible = (None, *(w for w in self.wards.wards if sees(user, w)))
        message = self._board_json.get(visible)
        if message is None:
            message = _dumps({"type": "ward", **filter_board(self._board, visible)})
            self._board_json[visible] = message
        return message

    # -- HTTP ------------------------------------------------------------------------------------
    def _load_web(self) -> dict[str, bytes]:
        try:
            root = resources.files(WEB_PACKAGE)
            return {p.name: p.read_bytes() for p in root.iterdir()
                    if p.is_file() and p.name[p.name.rfind("."):] in CONTENT_TYPES}
        except (ModuleNotFoundError, OSError) as exc:
            _LOG.error("console page files not found: %s", exc)
            return {}

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        if path == "/health":
            body, ok = self.health()
            return _response(200 if ok else 503, body, "application/json")
        if path == "/metrics":
            text = metrics_text(self)
            return _response(200, text, "text/plain; version=0.0.4; charset=utf-8")
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        data = self._web.get(name) if (path == "/" or path.startswith("/static/")
                                        or path == "/index.html") else None  # fmt: skip
        if data is None:
            return _response(404, b"not found\n", "text/plain; charset=utf-8")
        suffix = name[name.rfind("."):]
        return _response(200, data, CONTENT_TYPES[suffix])

    def health(self) -> tuple[bytes, bool]:
        tick_p99 = tick_percentile(self.service.stats, 99)
        broker = self.service.connected.is_set()
        store = not self.shell.stats.store_failing
        ok = broker and store and tick_p99 <= self.service.engine.params.tick_s
        return _dumps({
            "status": "ok" if ok else "degraded", "broker": broker, "store": store,
            "tick_ms_p99": round(1000 * tick_p99, 3), "clients": len(self.clients),
            "open_alarms": len(self.shell.desk.book.alarms),
        }), ok  # fmt: skip

    # -- WebSocket -------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        client = _Client(ws, Outbox(self.config.outbox_limit))
        self.clients.add(client)
        self.stats.connections += 1
        writer = asyncio.create_task(self._writer(client))
        try:
            async for raw in ws:
                await self._request(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.stats.resyncs += client.outbox.resyncs

    async def _writer(self, client: _Client) -> None:
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while (message := client.outbox.pop()) is not None:
                    if message == RESYNC:
                        if client.user is None:
                            continue
                        async with self.shell.lock:  # committed state only
                            message = self._snapshot(client.user)
                    await client.ws.send(message, text=True)
                    self.stats.sent += 1
        except ConnectionClosed:
            return

    def _reply(self, client: _Client, req_id: Any, ok: bool, **fields: Any) -> None:
        client.push(_dumps({"type": "reply", "id": req_id, "ok": ok, **fields}))

    async def _request(self, client: _Client, raw: str | bytes) -> None:
        try:
            req = json.loads(raw, parse_float=_finite, parse_constant=_finite, parse_int=_integer)
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                raise ValueError("a request is a JSON object with an 'op'")
            json.dumps(req, ensure_ascii=False).encode()  # a lone surrogate "\ud800" is no text
        except (ValueError, RecursionError) as exc:  # too deeply nested: RecursionError
            self.stats.bad_requests += 1
            client.push(_dumps({"type": "error", "error": f"bad request: {exc}"}))
            return
        op, req_id = req["op"], req.get("id")
        try:
            if op == "ping":
                client.push(b'{"type":"pong"}')
            elif op == "login":
                await self._login(client, req_id, req)
            elif op == "resume":
                await self._resume(client, req_id, req)
            elif client.session is None:
                self._reply(client, req_id, False, error="not authenticated: log in first")
            else:
                self.sessions.check(client.session.token, self.clock())
                await self._authenticated(client, op, req_id, req)
        except AuthError as exc:
            self._reply(client, req_id, False, error=str(exc))
            if client.session is not None:
                client.session = None
                await _close_after_flush(client, CLOSE_SESSION, "session expired")
        except RtlsError as exc:
            self._reply(client, req_id, False, error=str(exc))
        except Exception as exc:  # a bug must not end the console for this client
            _LOG.exception("console request %r failed", op)
            self._reply(client, req_id, False, error=f"internal error: {type(exc).__name__}")

    async def _authenticated(
        self, client: _Client, op: str, req_id: Any, req: Mapping[str, Any]
    ) -> None:
        assert client.session is not None
        user = client.session.user
        if op == "command":
            await self._command(client, user, req_id, req)
        elif op == "refresh":
            # the account as stored now: a changed scope applies, a disabled one ends it
            current = await self.accounts.get(user.name)
            if current is None:  # the account is gone
                self.sessions.revoke(client.session.token)
                raise AuthError("session expired: log in again")
            client.session = self.sessions.refresh(client.session.token, self.clock(),
                                                   user=current)  # fmt: skip
            self._reply(client, req_id, True, token=client.session.token,
                        expires_t=client.session.expires_t)  # fmt: skip
        elif op == "logout":
            self.sessions.revoke(client.session.token)
            await self._audit(user.name, "console.logout", user.name, {})
            self._reply(client, req_id, True)
            client.session = None
            await _close_after_flush(client, 1000, "logged out")
        elif op == "audit":
            await self._audit_view(client, user, req_id, req)
        elif op in ("users", "user_add", "user_disable"):
            await self._users(client, user, op, req_id, req)
        else:
            self._reply(client, req_id, False, error=f"unknown op {op!r}")

    # -- authentication --------------------------------------------------------------------------
    async def _login(self, client: _Client, req_id: Any, req: Mapping[str, Any]) -> None:
        name, password = req.get("user"), req.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            self._reply(client, req_id, False, error="login needs 'user' and 'password'")
            return
        try:
            user = await self.accounts.verify(name, password)
        except AuthError as exc:
            client.failures += 1
            self.stats.logins_failed += 1
            await self._audit(name[:64] or "?", "console.login_failed", name[:64] or "?", {})
            self._reply(client, req_id, False, error=str(exc))
            if client.failures >= self.config.max_login_failures:
                await _close_after_flush(client, CLOSE_POLICY, "too many failed logins")
            return
        session = self.sessions.issue(user, self.clock())
        self.stats.logins += 1
        await self._audit(user.name, "console.login", user.name, {})
        await self._start(client, session, req_id, since=None)

    async def _resume(self, client: _Client, req_id: Any, req: Mapping[str, Any]) -> None:
        token = req.get("token")
        if not isinstance(token, str):
            self._reply(client, req_id, False, error="resume needs a 'token'")
            return
        session = self.sessions.check(token, self.clock())
        since = req.get("since")
        await self._start(client, session, req_id,
                          since=since if isinstance(since, int) else None)  # fmt: skip

    async def _start(
        self, client: _Client, session: Session, req_id: Any, since: int | None
    ) -> None:
        user = session.user
        async with self.shell.lock:  # committed state only; later transitions follow it
            client.session = session
            self._reply(client, req_id, True, token=session.token, expires_t=session.expires_t,
                        user=user.as_dict())  # fmt: skip
            missed = self.replay.since(since) if since is not None else None
            if missed is None:
                client.push(self._snapshot(user))
                return
            for r in missed:
                if sees(user, r.ward):
                    client.push(r.message)
            client.push(self._board_message(user))
            client.outbox.offer("positions", self._positions_message(
                self.clock(), True, self._latest.values(), b"[]"))  # fmt: skip

    def _snapshot(self, user: User) -> bytes:
        alarms = [alarm_document(a, self.wards) for a in self.shell.desk.book.active()]
        board = self._board_message(user)
        parts = [
            b'{"type":"snapshot","seq":', str(self.replay.last_seq).encode(),
            b',"t":', _dumps(round(self.clock(), 3)),
            b',"user":', _dumps(user.as_dict()),
            b',"site":', self._site_json,
            b',"alarms":', _dumps([a for a in alarms if sees(user, a["ward"])]),
            b',"positions":[', ",".join(self._latest.values()).encode(), b"]",
            b',"ward":', board,
        ]
        if refusal(user, "technical") is None:
            parts += [b',"technical":', self._technical]
        parts.append(b"}")
        return b"".join(parts)

    # -- commands --------------------------------------------------------------------------------
    def _place(self, args: Mapping[str, Any]) -> tuple[str | None, bool]:
        """The ward a command acts in and whether it acts on a technical alarm."""
        if "alarm" in args:
            try:
                alarm: Alarm | None = self.shell.desk.book.alarms.get(int(args["alarm"]))
            except (TypeError, ValueError):
                alarm = None
            if alarm is not None:
                return self.wards.of_alarm(alarm), is_technical(alarm)
            return None, False  # the desk answers "no such alarm"
        for key in ("baby", "tag", "target"):
            if isinstance(args.get(key), str):
                return self.wards.of_subject(args[key]), False
        return None, False

    async def _command(
        self, client: _Client, user: User, req_id: Any, req: Mapping[str, Any]
    ) -> None:
        name, args = req.get("command"), req.get("args") or {}
        self.stats.commands += 1
        if not isinstance(name, str) or not isinstance(args, dict):
            self._reply(client, req_id, False, error="a command needs 'command' and 'args' {}")
            return
        ward, technical = self._place(args)
        refused = refusal(user, name, technical=technical, ward=ward)
        if refused is not None:
            self.stats.refused += 1
            await self._audit(user.name, "console.refused", name[:64] or "?",  # never empty
                              {"error": refused, "args": _safe(args)})  # fmt: skip
            self._reply(client, req_id, False, error=refused)
            return
        reply = await self.shell.command(self.service.client, name, args, user.name)
        ok = bool(reply.pop("ok"))
        if not ok:  # refused by the desk (e.g. already acknowledged): audited too
            self.stats.refused += 1
            await self._audit(user.name, "console.refused", name,
                              {"error": reply.get("error"), "args": _safe(args)})  # fmt: skip
        self._reply(client, req_id, ok, **reply)

    async def _audit_view(
        self, client: _Client, user: User, req_id: Any, req: Mapping[str, Any]
    ) -> None:
        refused = refusal(user, "audit")
        if refused is not None:
            self._reply(client, req_id, False, error=refused)
            return
        limit = req.get("limit", 50)
        limit = min(500, max(1, limit if isinstance(limit, int) else 50))
        records = await self.shell.store.audit_latest(limit)
        self._reply(client, req_id, True, records=[
            {"seq": r.seq, "t": r.t, "actor": r.actor, "action": r.action,
             "subject": r.subject, "detail": dict(r.detail)} for r in records])  # fmt: skip

    async def _users(
        self, client: _Client, user: User, op: str, req_id: Any, req: Mapping[str, Any]
    ) -> None:
        refused = refusal(user, op)
        if refused is not None:
            self.stats.refused += 1
            await self._audit(user.name, "console.refused", op, {"error": refused})
            self._reply(client, req_id, False, error=refused)
            return
        if op == "users":
            users = await self.accounts.list()
            self._reply(client, req_id, True, users=[u.as_dict() for u in users])
            return
        name = req.get("name")
        if not isinstance(name, str):
            self._reply(client, req_id, False, error=f"{op} needs a user 'name'")
            return
        if op == "user_disable":
            await self.accounts.disable(name)
            ended = self.sessions.revoke_user(name)
            for c in list(self.clients):
                if c.user is not None and c.user.name == name:
                    c.session = None
                    await c.ws.close(CLOSE_SESSION, "user disabled")
            await self._audit(user.name, "user.disable", name, {"sessions_ended": ended})
            self._reply(client, req_id, True, name=name)
            return
        scopes = req.get("scopes") or []
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            self._reply(client, req_id, False, error="scopes must be a list of ward ids or '*'")
            return
        await self.accounts.add(name, str(req.get("role", "")), scopes,
                                str(req.get("password", "")),
                                str(req.get("display") or name),
                                wards=self.wards.wards)  # fmt: skip
        await self._audit(user.name, "user.add", name,
                          {"role": req.get("role"), "scopes": scopes})  # fmt: skip
        self._reply(client, req_id, True, name=name)

    async def _audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """Append one audit record (committed before the caller replies)."""
        now = self.clock()
        event = {"actor": actor, "action": action, "subject": subject, "detail": detail, "t": now}
        await self.shell.settle(self.service.client, DeskOutput(events=[event]), now)

    # -- periodic --------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        """Every 0.5 s: expired sessions, the ward board, the technical view, heartbeats. A
        failure is logged and the loop goes on (heartbeats must not stop)."""
        loop = asyncio.get_running_loop()
        state = {"beat": loop.time(), "tech": loop.time()}
        while True:
            await asyncio.sleep(0.5)
            try:
                await self._housekeep(loop, state)
            except Exception:
                _LOG.exception("console housekeeping failed; retried in 0.5 s")

    async def _housekeep(self, loop: asyncio.AbstractEventLoop, state: dict[str, float]) -> None:
        next_beat, next_tech = state["beat"], state["tech"]
        now = self.clock()
        for session in self.sessions.expire(now):
            for c in list(self.clients):
                if c.session is not None and c.session.key == session.key:
                    c.session = None
                    await c.ws.close(CLOSE_SESSION, "session expired")
        if self._board_dirty:
            self._refresh_board()
        if loop.time() >= next_tech:
            state["tech"] = loop.time() + self.config.technical_s
            self._refresh_board()  # batteries change without a ward act
            self._technical = self._make_technical(now)
            message = b'{"type":"technical",' + self._technical[1:]
            for c in self.clients:
                if c.user is not None and refusal(c.user, "technical") is None:
                    c.outbox.offer("technical", message)
                    c.wake.set()
        if loop.time() >= next_beat:
            state["beat"] = loop.time() + self.config.heartbeat_s
            beat = _dumps({"type": "heartbeat", "t": round(now, 3),
                           "seq": self.replay.last_seq})  # fmt: skip
            for c in self.clients:
                if c.session is not None:
                    c.outbox.offer("heartbeat", beat)
                    c.wake.set()

    def _make_technical(self, now: float) -> bytes:
        engine = self.service.engine
        counters = engine.decoder.counters
        t0, n0 = self._ingest
        n = engine.observations
        if now > t0:
            self.ingest_rate = (n - n0) / (now - t0)
        self._ingest = (now, n)
        unknown = [{"mac": u.mac, "serial": u.serial, "count": u.count, "last_seen": u.last_seen}
                   for u in counters.unknown_tags()[:50]]  # fmt: skip
        doc = technical_document(
            self.site, now, counters.gateway_last_heard, counters.reader_last_heard,
            counters.summary(), unknown, self.ingest_rate,
            1000 * tick_percentile(self.service.stats, 99),
        )  # fmt: skip
        # faults (docs/faults.md): messages over the source's rate limit, wrong clocks
        dropped = self.service.limiter.dropped
        rows = doc["gateways"] + doc["readers"]
        offsets = [*counters.clocks.offset.tolist(), *counters.reader_clocks.offset.tolist()]
        for i, row in enumerate(rows):
            row["throttled"] = dropped[i] if i < len(dropped) else 0
            row["clock_offset_s"] = round(offsets[i], 1)
        doc["store"] = {"failing": self.shell.stats.store_failing,
                        "uncommitted": self.shell.stats.uncommitted,
                        "errors": self.shell.stats.store_errors}  # fmt: skip
        return _dumps(doc)


async def _close_after_flush(client: _Client, code: int, reason: str) -> None:
    """Close once the client's outbox is sent (the last reply must arrive), within 1 s."""
    for _ in range(20):
        if not len(client.outbox):
            break
        await asyncio.sleep(0.05)
    await client.ws.close(code, reason)


def _transition(tr: Transition, alarm: dict[str, Any]) -> dict[str, Any]:
    d = tr.as_dict()
    d["alarm"] = alarm
    return d


def _finite(text: str) -> float:
    """A JSON number of a request; NaN and infinities (``1e999``) are refused: nothing
    downstream (the audit trail's canonical JSON) can hold them."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _integer(text: str) -> int:
    """A JSON integer of a request, within JavaScript's exact range (|n| < 2**53): larger
    ones are refused (numeric code downstream works with doubles and int64)."""
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise ValueError(f"integer {text[:24]} is out of range")
    return value


def _safe(args: Mapping[str, Any]) -> dict[str, Any]:
    """Command arguments fit for the audit trail (short strings and numbers only; NaN and
    infinities as text: the audit store refuses them)."""
    return {str(k)[:32]: v if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))
            else str(v)[:200] for k, v in list(args.items())[:10]}  # fmt: skip


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       *SECURITY_HEADERS])  # fmt: skip
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "OK")
    return Response(status, reason, headers, body)
