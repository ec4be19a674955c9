"""The engine service: MQTT ingest (aiomqtt) around the pure :class:`rtls.engine.Engine`.

Two coroutines share one event loop: the receiver only appends raw messages to a queue (so the
MQTT client is never starved), and the ticker, every ``tick_s``, drains the queue in bounded
batches through the decoders, runs one engine tick and publishes the positions
(``rtls/v1/engine/positions``, JSON, docs/engine.md). The broker connection is retried with
back-off forever; the engine's state survives reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt
import numpy as np
from numpy.typing import NDArray

from rtls import topics
from rtls.actuators import STATE_FILTER
from rtls.decode import SUBSCRIPTIONS
from rtls.engine import Engine, TickResult
from rtls.errors import TransportError
from rtls.service.alarms import AlarmShell

_LOG = logging.getLogger(__name__)

POSITIONS_TOPIC = topics.POSITIONS
HEALTH_TOPIC = topics.HEALTH
HEALTH_INTERVAL_S = 10.0
STATUS_TOPIC = topics.STATUS
ACTUATOR_STATES = STATE_FILTER
CONTROL_PREFIXES = (topics.COMMAND, STATE_FILTER.split("+")[0])
MAX_QUEUE = 200_000  # messages held between ticks before the oldest are dropped (counted)


@dataclass
class ServiceStats:
    """Counters of the service shell (the decoders count their own)."""

    received: int = 0
    dropped_queue_full: int = 0
    ticks: int = 0
    connects: int = 0
    tick_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


def positions_payload(
    engine: Engine, result: TickResult, visible: NDArray[np.bool_] | None = None
) -> bytes:
    """JSON of the tags located this tick: id, x, y, floor, zone, uncertainty, known.
    ``visible`` (N,): only those tags (a lone worker's position is private outside alarms)."""
    site = engine.site
    est = result.estimate
    unc = est.uncertainty
    rows = []
    located = result.located if visible is None else result.located[visible[result.located]]
    for i in located.tolist():
        known = bool(est.known[i])
        z = int(result.zone[i])
        rows.append(
            {
                "tag": site.tags[i].id,
                "known": known,
                "x": round(float(est.xy[i, 0]), 2) if known else None,
                "y": round(float(est.xy[i, 1]), 2) if known else None,
                "floor": site.floors[int(est.floor[i])].id if known else None,
                "zone": site.zones[z].id if z >= 0 else None,
                "uncertainty": round(float(unc[i]), 2) if known else None,
            }
        )
    return json.dumps({"t": round(result.t, 3), "positions": rows}, separators=(",", ":")).encode()


class EngineService:
    """Runs ``engine`` against the broker at ``host:port`` until :meth:`stop`.

    The tick loop runs whether or not the broker is reachable (timers, escalations and the
    broker-link alarm must not stop with it); the connection loop reconnects with back-off.
    ``alarms``: the alarm desk's shell (rules, alarms, store); ``commands``: also accept
    operator commands on ``rtls/v1/command`` (trusted brokers only, docs/mqtt.md)."""

    def __init__(
        self,
        engine: Engine,
        host: str,
        port: int,
        *,
        client_id: str = "rtls-engine",
        username: str | None = None,
        password: str | None = None,
        max_batch: int = 20_000,
        clock: Callable[[], float] = time.time,
        alarms: AlarmShell | None = None,
        commands: bool = False,
    ) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.client_id = client_id
        self.username, self.password = username, password
        self.max_batch = max_batch
        self.clock = clock
        self.alarms = alarms
        self.commands = commands
        self.stats = ServiceStats()
        self._queue: deque[tuple[str, bytes, float]] = deque()
        self._control: deque[tuple[str, bytes]] = deque()  # commands and actuator states
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.on_tick: Callable[[TickResult], None] | None = None
        # called every tick, broker or not, with (now, result, positions JSON or None): e.g.
        # the console server; observers must not block
        self.tick_observers: list[Callable[[float, TickResult, bytes | None], None]] = []

    @property
    def client(self) -> aiomqtt.Client | None:
        """The connected MQTT client (None while the broker is away)."""
        return self._client

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Tick, connect (and reconnect) until :meth:`stop`; a failure of either loop ends
        the service with that error."""
        if self.alarms is not None:
            await self.alarms.link(None, self.clock(), False)  # down until the first connect
        tasks = {asyncio.create_task(self._tick_loop()), asyncio.create_task(self._connect_loop())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _connect_loop(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self._session()
                delay = 0.5
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                _LOG.warning("MQTT connection to %s:%s lost: %s", self.host, self.port, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)

    async def _session(self) -> None:
        will = aiomqtt.Will(STATUS_TOPIC, b'{"state":"offline"}', qos=1, retain=True)
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            will=will,
            keepalive=10,
        ) as client:
            for sub in SUBSCRIPTIONS:
                await client.subscribe(sub.topic_filter, qos=sub.qos)
            if self.alarms is not None:
                await client.subscribe(ACTUATOR_STATES, qos=1)
            if self.commands:
                await client.subscribe(topics.COMMAND, qos=1)
            await client.publish(STATUS_TOPIC, b'{"state":"online"}', qos=1, retain=True)
            self.stats.connects += 1
            self._client = client
            self.connected.set()
            try:
                if self.alarms is not None:
                    await self.alarms.link(client, self.clock(), True)
                receiver = asyncio.create_task(self._receive(client))
                stopper = asyncio.create_task(self._stopping.wait())
                done, pending = await asyncio.wait(
                    {receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                for task in pending:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self._stopping.is_set():
                    await client.publish(STATUS_TOPIC, b'{"state":"offline"}', qos=1, retain=True)
                for task in done:
                    exc = task.exception()
                    if exc is not None:
                        raise exc
            finally:
                self._client = None
                self.connected.clear()
                if self.alarms is not None:
                    await self.alarms.link(None, self.clock(), False)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            topic = message.topic.value
            if topic.startswith(CONTROL_PREFIXES):
                self._control.append((topic, data))
                continue
            if len(self._queue) >= MAX_QUEUE:
                self._queue.popleft()
                self.stats.dropped_queue_full += 1
            self._queue.append((topic, data, self.clock()))
            self.stats.received += 1

    async def _tick_loop(self) -> None:
        tick = self.engine.params.tick_s
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        next_health = next_t
        while True:
            next_t += tick
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if loop.time() - next_t > tick:  # fell behind: do not try to catch up tick by tick
                next_t = loop.time()
            now = self.clock()
            result = self.process(now)
            client = self._client
            try:
                if self.alarms is not None:
                    await self.alarms.retry(now)
                    await self.alarms.after_tick(client, now, result, self.engine.decoder.counters)
                    await self._handle_control(client)
                body = None
                if len(result.located) and (client is not None or self.tick_observers):
                    visible = self.alarms.desk.visible(now) if self.alarms is not None else None
                    body = positions_payload(self.engine, result, visible)
                for observer in self.tick_observers:
                    observer(now, result, body)
                if client is None:
                    continue
                if body is not None:
                    await client.publish(POSITIONS_TOPIC, body)
                if loop.time() >= next_health:
                    next_health = loop.time() + HEALTH_INTERVAL_S
                    await client.publish(HEALTH_TOPIC, self.health_payload(), retain=True)
            except aiomqtt.MqttError as exc:  # the session notices and reconnects
                _LOG.debug("publish failed during a tick: %s", exc)

    async def _handle_control(self, client: aiomqtt.Client | None) -> None:
        assert self.alarms is not None
        while self._control:
            topic, data = self._control.popleft()
            if topic == topics.COMMAND:
                if client is not None:
                    await self.alarms.mqtt_command(client, data)
            else:
                await self.alarms.door_report(client, topic, data)

    def health_payload(self) -> bytes:
        """Decoder counters, service counters, tick time and the unknown tags (technicians)."""
        c = self.engine.decoder.counters
        body: dict[str, object] = {
            "t": round(self.clock(), 3),
            "decoder": c.summary(),
            "received": self.stats.received,
            "dropped_queue_full": self.stats.dropped_queue_full,
            "tick_ms_p99": round(1000 * tick_percentile(self.stats, 99), 3),
            "unknown_tags": [
                {"mac": u.mac, "serial": u.serial, "count": u.count, "last_seen": u.last_seen}
                for u in c.unknown_tags()[:50]
            ],
        }
        if self.alarms is not None:
            body["alarms"] = vars(self.alarms.stats)
        return json.dumps(body, separators=(",", ":")).encode()

    def process(self, now: float) -> TickResult:
        """Decode what is queued (in bounded batches, yielding nothing in between: this runs
        in the loop between receives) and run one tick."""
        started = time.perf_counter()
        q = self._queue
        n = min(len(q), self.max_batch)
        if n:
            self.engine.ingest_messages([q.popleft() for _ in range(n)])
        result = self.engine.tick(now)
        self.stats.ticks += 1
        self.stats.tick_seconds.append(time.perf_counter() - started)
        if self.on_tick is not None:
            self.on_tick(result)
        return result


def tick_percentile(stats: ServiceStats, q: float) -> float:
    """Percentile ``q`` (0-100) of the recent tick durations in seconds (0 if none)."""
    if not stats.tick_seconds:
        return 0.0
    return float(np.percentile(np.asarray(stats.tick_seconds), q))


async def serve(engine: Engine, host: str, port: int, **kwargs: object) -> None:
    """Run the service until cancelled (Ctrl-C)."""
    service = EngineService(engine, host, port, **kwargs)  # type: ignore[arg-type]
    try:
        await service.run()
    except asyncio.CancelledError:
        service.stop()
        raise
    except OSError as exc:
        raise TransportError(f"engine service: {exc}") from exc
