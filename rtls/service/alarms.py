"""The alarm desk's I/O shell: commit to SQLite, then announce on MQTT (docs/mqtt.md).

Every :class:`rtls.desk.DeskOutput` is committed to the :class:`AlarmStore` in one transaction
*before* anything of it is published: alarm events (``rtls/v1/alarms/events``, QoS 1), each open
alarm's retained state (``rtls/v1/alarms/state/<id>``, emptied when it closes), actuator
commands and tag downlinks (badge confirmations, bracelet pairings). While the broker is away
outputs wait in memory (already on disk) and go out, in order, on reconnection, followed by the
full retained state.

If the store fails (disk full, database locked) the output is kept in memory and a background
committer retries it, in order, every ``RETRY_S``; the alarm is still announced, because it must
reach a person. An output waits at most ``COMMIT_WAIT_S`` for its commit; once a commit has failed
or hung that long (``stats.store_failing``) outputs go out at once until the store has caught up.
The error is logged and counted (``stats.store_errors``, ``uncommitted``; docs/faults.md). An
operator command is answered ``ok`` once committed; while the store fails the reply (after at most
``COMMAND_WAIT_S``) also says ``"saved": false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt

from rtls import topics
from rtls.actuators import ActuatorError, parse_state
from rtls.desk import Desk, DeskOutput
from rtls.engine import TickResult
from rtls.errors import RtlsError
from rtls.service.store import AlarmStore, StoreError
from rtls.supervision import HeardLike

_LOG = logging.getLogger(__name__)
MAX_UNANNOUNCED = 100_000
COMMIT_WAIT_S = 1.0  # an output waits this long for its commit, then is announced anyway
COMMAND_WAIT_S = 3.0  # a command's reply waits this long for its commit
RETRY_S = 0.5  # a failed commit is retried this often
ERROR_LOG_S = 30.0  # a failing store is logged again this often


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None: ...


@dataclass
class AlarmStats:
    committed: int = 0
    announced: int = 0
    store_errors: int = 0
    commands: int = 0
    commands_refused: int = 0
    bad_state_reports: int = 0
    store_failing: bool = False  # a commit failed or hung; outputs are announced uncommitted
    uncommitted: int = 0  # outputs waiting for their commit
    store_error: str = ""  # the last store error


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class AlarmShell:
    """Runs a :class:`Desk` against a store and (when connected) a broker."""

    def __init__(self, desk: Desk, store: AlarmStore, *, clock: Callable[[], float]) -> None:
        self.desk = desk
        self.store = store
        self.clock = clock
        self.stats = AlarmStats()
        self._uncommitted: deque[tuple[DeskOutput, float]] = deque()  # with their time
        self._appended = 0  # outputs handed to the committer so far
        self._done = 0  # outputs committed so far (in order)
        self._committer: asyncio.Task[None] | None = None
        self._commits: asyncio.Condition | None = None  # made in the loop
        self._logged_t = -float("inf")
        self._written: dict[str, Any] = {}  # the documents as last committed
        self._unannounced: deque[DeskOutput] = deque(maxlen=MAX_UNANNOUNCED)
        self.site_id = desk.site.model.site.id
        self.on_commit: Callable[[DeskOutput], None] | None = None  # e.g. the demo's printout
        # called with each output once it is committed, before MQTT (e.g. the console server);
        # observers must not block: they queue and return
        self.observers: list[Callable[[DeskOutput], None]] = []
        # called after each accepted operator command, before its commit: returns extra audit
        # events (tag keys at admission, rtls.service.keys.KeyKeeper.after_command)
        self.on_command: Callable[[str, Mapping[str, Any], str, float],
                                  list[dict[str, Any]]] | None = None  # fmt: skip
        # the tick loop and console commands settle concurrently: one at a time, in the order
        # the desk made the outputs (asyncio.Lock is FIFO and the desk call and the acquire
        # happen without a yield in between)
        self.lock = asyncio.Lock()  # also held by readers that must see committed state

    async def restore(self) -> int:
        """Load what the store kept (after a restart); returns the number of open alarms."""
        snap = await self.store.load()
        self.desk.restore(snap.alarms, snap.next_id, snap.held, snap.ward)
        return len(snap.alarms)

    # -- engine side -------------------------------------------------------------------------
    async def after_tick(
        self, pub: Publisher | None, now: float, tick: TickResult | None, heard: HeardLike | None,
        *, documents: bool = True,
    ) -> DeskOutput:  # fmt: skip
        """Step the desk (``documents``: see :meth:`rtls.desk.Desk.step`), commit, announce."""
        out = self.desk.step(now, tick, heard, documents=documents)
        await self.settle(pub, out, now)
        return out

    async def link(self, pub: Publisher | None, now: float, up: bool) -> None:
        """The broker link changed; on ``up`` the waiting outputs and the retained state go
        out."""
        out = self.desk.link(now, up)
        async with self.lock:
            await self._settle(pub if up else None, out, now)
            if up and pub is not None:
                await self._flush(pub)
                for a in self.desk.book.active():
                    await pub.publish(topics.alarm_state(a.id), _dumps(a.as_dict()), qos=1,
                                      retain=True)  # fmt: skip

    async def door_report(self, pub: Publisher | None, topic: str, payload: bytes) -> None:
        """A door / elevator controller's retained state message."""
        now = self.clock()
        try:
            report = parse_state(topic, payload)
            out = self.desk.door_report(report.target, report.state, now)
        except ActuatorError as exc:
            self.stats.bad_state_reports += 1
            _LOG.warning("actuator state report dropped: %s", exc)
            return
        await self.settle(pub, out, now)

    # -- operators ---------------------------------------------------------------------------
    async def command(
        self, pub: Publisher | None, name: str, args: Mapping[str, Any], user: str
    ) -> dict[str, Any]:
        """Run an operator command; returns the reply ``{"ok": true, ...}`` or ``{"ok": false,
        "error": message}``. The reply is given only after the commit."""
        now = self.clock()
        self.stats.commands += 1
        try:
            out = self.desk.command(name, args, user, now)
        except RtlsError as exc:
            self.stats.commands_refused += 1
            return {"ok": False, "error": str(exc)}
        if self.on_command is not None:
            out.events += self.on_command(name, args, user, now)
        async with self.lock:
            n = await self._settle(pub, out, now)
        reply = {"ok": True, **out.reply}
        if not await self.committed(n, COMMAND_WAIT_S):
            reply["saved"] = False
            reply["warning"] = (f"the alarm store is failing ({self.stats.store_error}): done "
                                "and announced, not saved yet; the save is retried")  # fmt: skip
        return reply

    async def mqtt_command(self, pub: Publisher, payload: bytes) -> None:
        """A command on ``rtls/v1/command`` (JSON ``{"id", "client", "user", "command",
        "args"}``); the reply goes to ``rtls/v1/command/reply/<client>``."""
        try:
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            client = str(body.get("client") or "anonymous")
            req_id = body.get("id")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.stats.commands_refused += 1
            _LOG.warning("malformed command dropped: %s", str(exc)[:200])
            return
        args = body.get("args") or {}
        if not isinstance(args, dict):
            reply: dict[str, Any] = {"ok": False, "error": "args must be an object"}
        else:
            reply = await self.command(pub, str(body.get("command", "")), args,
                                       str(body.get("user") or ""))  # fmt: skip
        reply["id"] = req_id
        await pub.publish(topics.COMMAND_REPLY.format(client=client), _dumps(reply), qos=1)

    # -- commit, then announce -------------------------------------------------------------------
    async def settle(self, pub: Publisher | None, out: DeskOutput, now: float) -> None:
        """Commit ``out``, tell the observers, then announce it (if ``pub``)."""
        async with self.lock:
            await self._settle(pub, out, now)

    async def _settle(self, pub: Publisher | None, out: DeskOutput, now: float) -> int:
        """Returns the output's number for :meth:`committed` (0: nothing to commit)."""
        if out.empty:
            return 0
        self._uncommitted.append((out, now))
        self._appended += 1
        n = self._appended
        self.stats.uncommitted = len(self._uncommitted)
        self._kick()
        waited = not self.stats.store_failing
        if waited and not await self.committed(n, COMMIT_WAIT_S) and not self.stats.store_failing:
            # hung rather than failed: a lock held elsewhere, a stalled disk
            self._failing(f"a commit has not returned within {COMMIT_WAIT_S:g} s "
                          "(database locked or disk stalled)")  # fmt: skip
        if self.on_commit is not None:
            self.on_commit(out)
        for observer in self.observers:
            observer(out)
        self._unannounced.append(out)
        if pub is not None:
            await self._flush(pub)
        return n

    async def committed(self, n: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until output number ``n`` is committed; whether it is."""
        if self._done >= n:
            return True
        if self._commits is None:
            self._commits = asyncio.Condition()
        async with self._commits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commits.wait_for(lambda: self._done >= n), timeout)
        return self._done >= n

    def _kick(self) -> None:
        if self._uncommitted and (self._committer is None or self._committer.done()):
            self._committer = asyncio.create_task(self._commit_all())

    async def _commit_all(self) -> None:
        """The committer: commit the waiting outputs in order, retrying every ``RETRY_S``."""
        if self._commits is None:
            self._commits = asyncio.Condition()
        while self._uncommitted:
            out, now = self._uncommitted[0]
            # a document equal to the one last written is not written again (the desk hands
            # over the whole ward at every condition change; it is large on a big site)
            docs = {k: v for k, v in out.documents.items() if self._written.get(k) != v}
            if out.transitions or out.events or docs:
                try:
                    await self.store.commit(out.transitions, book=self.desk.book,
                                            events=out.events, ward=docs or None,
                                            now=now)  # fmt: skip
                except StoreError as exc:
                    self.stats.store_errors += 1
                    self._failing(str(exc))
                    await asyncio.sleep(RETRY_S)
                    continue
                self._written.update(docs)
                self.stats.committed += 1
            self._uncommitted.popleft()
            self.stats.uncommitted = len(self._uncommitted)
            async with self._commits:
                self._done += 1
                self._commits.notify_all()
        if self.stats.store_failing:
            self.stats.store_failing = False
            _LOG.warning("alarm store: recovered; every waiting alarm transition is committed")

    def _failing(self, error: str) -> None:
        new = not self.stats.store_failing or error != self.stats.store_error
        self.stats.store_failing = True
        self.stats.store_error = error
        now = self.clock()
        if new or now - self._logged_t >= ERROR_LOG_S:
            self._logged_t = now
            _LOG.error("alarm store: %s; %d outputs kept in memory and retried every %g s; "
                       "alarms are announced meanwhile", error, len(self._uncommitted),
                       RETRY_S)  # fmt: skip

    async def retry(self, now: float) -> None:
        """Make sure waiting commits are being retried (called every tick; never waits)."""
        self._kick()

    async def flush(self, pub: Publisher) -> None:
        """Publish what waits, oldest first; stops (keeping the rest) if the link drops."""
        async with self.lock:
            await self._flush(pub)

    async def _flush(self, pub: Publisher) -> None:
        while self._unannounced:
            out = self._unannounced[0]
            try:
                await self._announce(pub, out)
            except aiomqtt.MqttError as exc:
                _LOG.warning("announcing alarms failed, kept for the next connection: %s", exc)
                return
            self._unannounced.popleft()
            self.stats.announced += 1

    async def _announce(self, pub: Publisher, out: DeskOutput) -> None:
        """Publish one output's messages (QoS 1) in order, waiting for their acknowledgements
        together: one round trip to the broker per output, not two per alarm (a burst of
        alarms would hold the next critical one back by a round trip each)."""
        msgs: list[tuple[str, bytes, bool]] = []
        for tr in out.transitions:
            msgs.append((topics.ALARM_EVENTS, _dumps(tr.as_dict()), False))
            state = _dumps(tr.alarm.as_dict()) if tr.alarm.open else b""
            msgs.append((topics.alarm_state(tr.alarm_id), state, True))
        msgs += [(cmd.topic, cmd.payload(self.site_id), False) for cmd in out.commands]
        for dl in out.downlinks:
            # a pairing is the bracelet's state: retained, so a gateway that connects later
            # still relays it; confirm / reset are events and never retained (docs/mqtt.md)
            body = dl.as_dict()
            msgs.append((topics.downlink(dl.tag), _dumps(body), body.get("command") == "pair"))
        # gather starts the publishes in this order (each hands its packet to the client
        # before its first wait), so the broker receives them in order
        await asyncio.gather(*(pub.publish(t, p, qos=1, retain=r) for t, p, r in msgs))
