"""The engine service: MQTT ingest (aiomqtt) around the pure :class:`rtls.engine.Engine`.

One event loop and two worker threads that take turns, never at once: the watched tags'
passes at normal priority, the rest of the tick at ``tick_nice`` (docs/engine.md, "The
service"):

- the receiver (paho's message callback: no aiomqtt message object) only appends the raw
  message to the queue, and, when :func:`rtls.decode_native.is_urgent` says it carries critical
  input (a door read, a batch with a tamper / SOS / man-down... bit), to the urgent queue too;
- the urgent pass decodes urgent messages as soon as they arrive (a decoder of its own) and
  runs the alarm desk on them at once, with the last tick's positions
  (:meth:`rtls.engine.Engine.early`): a critical event waits neither for the tick nor for one
  that is running;
- between ticks the workers decode what has arrived, a slice at a time (``PREDECODE_S``),
  and every ``watch_s`` locates the watched tags (infants and mothers,
  :meth:`rtls.engine.Engine.tick_first`): their zone transitions go to the alarm desk at once;
- the ticker, every ``tick_s``, has the workers decode the rest and run the tick in two
  parts (NumPy releases the GIL for most of it; the loop keeps receiving, running urgent
  passes and serving the console meanwhile): the first is the watched tags' as above, and
  while the worker does the rest the loop hands its zone transitions to the alarm desk, so
  that a baby's zone breach waits neither for the thousands of badges nor for a whole tick;
  then the alarm desk runs on the whole tick and the positions are published
  (``rtls/v1/engine/positions``, JSON).

The broker connection is retried with back-off forever; the engine's state survives
reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np
from numpy.typing import NDArray

from rtls import topics
from rtls.actuators import STATE_FILTER
from rtls.decode import SUBSCRIPTIONS, Decoder
from rtls.decode_native import is_urgent
from rtls.engine import Engine, TickResult
from rtls.errors import TransportError
from rtls.ratelimit import RateLimiter, site_limits, source_index
from rtls.service.alarms import AlarmShell

_LOG = logging.getLogger(__name__)

POSITIONS_TOPIC = topics.POSITIONS
HEALTH_TOPIC = topics.HEALTH
HEALTH_INTERVAL_S = 10.0
STATUS_TOPIC = topics.STATUS
ACTUATOR_STATES = STATE_FILTER
CONTROL_PREFIXES = (topics.COMMAND, STATE_FILTER.split("+")[0])
MAX_QUEUE = 200_000  # messages held between ticks before the oldest are dropped (counted)
MAX_TICK_BYTES = 8 * 1024 * 1024  # payload bytes one tick decodes at most (~260,000 records)
PREDECODE_S = 0.05  # between ticks, the worker decodes what arrived this often ...
PREDECODE_BYTES = 512 * 1024  # ... at most this much payload at a time (a few ms of work)
SWITCH_INTERVAL_S = 0.001  # `rtls engine`: the GIL passes between the loop and the tick thread
# `rtls engine`: the tick thread runs at a nice value this much above the loop's (Linux, per
# thread). On the engine's one core the two threads share the CPU whenever the tick is in
# NumPy without the GIL; the scheduler (CFS weights 1024 : 110) then gives the loop, which
# receives and runs the urgent passes, ~90 % instead of half. The tick still gets every cycle
# the loop does not want: at 200,000 obs/s critical p50 20-22 ms -> 8-10 ms (docs/performance.md).
# The watched tags' passes run in a thread of their own at normal priority.
TICK_NICE = 10
# the live engine's collection window (EngineParams.collect_s, docs/engine.md "Collection
# window"): a badge is located once its advertisement's reports are in, a tick after the first
COLLECT_S = 0.25
PENDING_PUBLISH_WARN = 2_000  # aiomqtt warns above this many QoS 1 publishes unacknowledged
RECONNECT_MAX_S = 2.0  # broker back-off cap: alarms wait at most this after a broker restart
MAX_TOPICS = 100_000  # topic -> rate-limit source cache (cleared when full)
THROTTLE_LOG_S = 30.0  # a throttled source is logged at most this often
# the engine's MQTT socket without Nagle's algorithm: paho leaves it on, and a publish sent
# while the last one is unacknowledged at the TCP level waits for the broker's delayed ACK
# (~40 ms on Linux; RFC 896 with RFC 1122's delayed ACKs): every alarm's announcement, and the
# desk it holds, would wait for it
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass
class ServiceStats:
    """Counters of the service shell (the decoders count their own)."""

    received: int = 0
    dropped_queue_full: int = 0
    rate_limited: int = 0  # messages over their source's budget (rtls.ratelimit), dropped
    ticks: int = 0
    connects: int = 0
    urgent: int = 0  # urgent messages received
    early_passes: int = 0
    early_repeats: int = 0  # early passes whose frames the desk knew already: no desk step
    watch_passes: int = 0  # passes of the watched tags between ticks (Engine.tick_first)
    first_steps: int = 0  # watched tags' passes with zone transitions: a desk step of their own
    predecoded: int = 0  # messages decoded between ticks
    tick_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class PositionsEncoder:
    """``rtls/v1/engine/positions`` JSON of a tick: one formatted string per located tag from
    ids escaped once, no dict and no ``json.dumps`` per row."""

    def __init__(self, engine: Engine) -> None:
        site = engine.site
        self.tags = [json.dumps(t.id) for t in site.tags]
        self.floors = [json.dumps(f.id) for f in site.floors]
        self.zones = [json.dumps(z.id) for z in site.zones]

    def encode(self, result: TickResult, visible: NDArray[np.bool_] | None = None) -> bytes:
        """The tags located this tick (``visible`` (N,): only those; a lone worker's position is
        private outside alarms): tag, known, x, y, floor, zone, uncertainty (null when
        unknown), metres to 2 decimals."""
        est = result.estimate
        located = result.located if visible is None else result.located[visible[result.located]]
        known = est.known[located].tolist()
        xy = np.round(est.xy[located], 2).tolist()
        u = est.uncertainty[located]
        unc = np.where(np.isfinite(u), np.round(u, 2), -1.0).tolist()  # -1: null
        floor = est.floor[located].tolist()
        zone = result.zone[located].tolist()
        tags, floors, zones = self.tags, self.floors, self.zones
        columns = zip(located.tolist(), known, xy, unc, floor, zone, strict=True)
        rows = [
            f'{{"tag":{tags[i]},"known":true,"x":{p[0]!r},"y":{p[1]!r},"floor":{floors[f]},'
            f'"zone":{zones[z] if z >= 0 else "null"},"uncertainty":{u if u >= 0 else "null"}}}'
            if k
            else f'{{"tag":{tags[i]},"known":false,"x":null,"y":null,"floor":null,'
            f'"zone":{zones[z] if z >= 0 else "null"},"uncertainty":null}}'
            for i, k, p, u, f, z in columns
        ]
        return f'{{"t":{round(result.t, 3)!r},"positions":[{",".join(rows)}]}}'.encode()


def positions_payload(
    engine: Engine, result: TickResult, visible: NDArray[np.bool_] | None = None
) -> bytes:
    """JSON of the tags located this tick (see :meth:`PositionsEncoder.encode`); a service
    keeps one encoder instead."""
    return PositionsEncoder(engine).encode(result, visible)


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
        tls_ca_file: str | None = None,
        max_batch: int = 20_000,
        clock: Callable[[], float] = time.time,
        alarms: AlarmShell | None = None,
        commands: bool = False,
        switch_interval_s: float | None = None,
        tick_nice: int = 0,
    ) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.client_id = client_id
        self.username, self.password = username, password
        self.tls_ca_file = tls_ca_file  # TLS to the broker, verified against this CA
        self.max_batch = max_batch
        self._tick_bytes = self._tick_messages = 0  # decoded since the last tick (_decode)
        self.clock = clock
        self.alarms = alarms
        self.commands = commands
        self.switch_interval_s = switch_interval_s
        self.tick_nice = tick_nice  # the tick thread's nice value above the loop's (Linux)
        self.stats = ServiceStats()
        self._queue: deque[tuple[str, bytes, float]] = deque()  # appended here, popped by ticks
        self._urgent: deque[tuple[str, bytes, float]] = deque()
        self._urgent_decoder = Decoder(engine.directory)  # the early passes' own counters
        self._urgent_decoder.counters.clocks = engine.decoder.counters.clocks  # one clock view
        self._urgent_decoder.counters.reader_clocks = engine.decoder.counters.reader_clocks
        self._wake_urgent: asyncio.Event | None = None  # made in run(): needs the loop
        self._desk_lock: asyncio.Lock | None = None  # desk steps one at a time, in order
        self._desk_now = -np.inf  # the desk's clock never goes back (early passes run ahead)
        self._positions = PositionsEncoder(engine)
        self._control: deque[tuple[str, bytes]] = deque()  # commands and actuator states
        # per-gateway budgets from the site (rtls.ratelimit, docs/faults.md); replaceable
        self.limiter = RateLimiter(site_limits(engine.site))
        self._sources: dict[str, int] = {}  # topic -> the limiter's source
        self._throttle_logged: dict[int, float] = {}
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
        self._wake_urgent = asyncio.Event()
        self._desk_lock = asyncio.Lock()
        if self.switch_interval_s is not None:  # process-wide: ``rtls engine`` sets it itself
            sys.setswitchinterval(self.switch_interval_s)
        if self.alarms is not None:
            await self.alarms.link(None, self.clock(), False)  # down until the first connect
        # the engine is called from one of two threads, never from both at once (each call is
        # awaited before the next): the watched tags' passes at normal priority, the rest
        # (decoding ahead, the badges, the tick's end) at ``tick_nice``
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtls-tick",
                                    initializer=_lower_priority,
                                    initargs=(self.tick_nice,))  # fmt: skip
        watch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtls-watch")
        tasks = {asyncio.create_task(self._tick_loop(worker, watch)),
                 asyncio.create_task(self._connect_loop()),
                 asyncio.create_task(self._urgent_loop())}  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            worker.shutdown(wait=True)
            watch.shutdown(wait=True)
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
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def _session(self) -> None:
        will = aiomqtt.Will(STATUS_TOPIC, b'{"state":"offline"}', qos=1, retain=True)
        tls = aiomqtt.TLSParameters(ca_certs=self.tls_ca_file) if self.tls_ca_file else None
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            tls_params=tls,
            will=will,
            keepalive=10,
            socket_options=SOCKET_OPTIONS,
        ) as client:
            # an output's announcements are awaited together (AlarmShell._announce): a burst
            # of alarms is many QoS 1 publishes in flight, not a broker that stopped answering
            client.pending_calls_threshold = PENDING_PUBLISH_WARN
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
        """Receive until the connection ends. Messages go straight from paho's callback to
        :meth:`accept` (aiomqtt's message objects and queue cost more than the rest of the
        receive path); should the paho client not be reachable, through aiomqtt's iterator."""
        raw = getattr(client, "_client", None)
        if raw is not None and hasattr(raw, "on_message"):
            raw.on_message = self._on_paho_message
        async for message in client.messages:  # ends (MqttError) when the connection does
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            self.accept(message.topic.value, data)

    def _on_paho_message(self, _client: object, _userdata: object, message: Any) -> None:
        payload = message.payload
        self.accept(message.topic, payload if isinstance(payload, bytes) else bytes(payload))

    def accept(self, topic: str, data: bytes) -> None:
        """One received message: to the control queue, or to the queue (and, if urgent, to the
        urgent queue as well); never blocks."""
        if topic.startswith(CONTROL_PREFIXES):
            self._control.append((topic, data))
            return
        now = self.clock()
        source = self._sources.get(topic)
        if source is None:
            source = self._source(topic)
        if not self.limiter.allow(source, now, len(data)):
            self._throttled(source, now)
            return
        self.stats.received += 1
        item = (topic, data, now)
        if is_urgent(topic, data):
            self._urgent.append(item)
            self.stats.urgent += 1
            if self._wake_urgent is not None:
                self._wake_urgent.set()
        if len(self._queue) >= MAX_QUEUE:
            self._queue.popleft()
            self.stats.dropped_queue_full += 1
        self._queue.append(item)

    def _source(self, topic: str) -> int:
        if len(self._sources) >= MAX_TOPICS:
            self._sources.clear()
        source = self._sources[topic] = source_index(self.engine.directory, topic)
        return source

    def _throttled(self, source: int, now: float) -> None:
        self.stats.rate_limited += 1
        if now - self._throttle_logged.get(source, -np.inf) >= THROTTLE_LOG_S:
            self._throttle_logged[source] = now
            _LOG.warning("source %s is over its rate limit: %d messages dropped so far "
                         "(docs/faults.md)", self.source_name(source),
                         self.limiter.dropped[source])  # fmt: skip

    def source_name(self, source: int) -> str:
        """The gateway or door reader id of a rate-limit source (``*`` for unknown ones)."""
        d = self.engine.directory
        ids = (*d.gateway_ids, *d.reader_ids)
        return ids[source] if source < len(ids) else "*"

    def rate_limited(self) -> dict[str, int]:
        """Messages dropped per throttled source (only those that were)."""
        return {self.source_name(i): n for i, n in enumerate(self.limiter.dropped) if n}

    # -- the urgent pass and the ticker ----------------------------------------------------------
    async def _urgent_loop(self) -> None:
        assert self._wake_urgent is not None
        while True:
            await self._wake_urgent.wait()
            self._wake_urgent.clear()
            await self.urgent_pass()

    async def urgent_pass(self) -> TickResult | None:
        """Decode the urgent messages received so far and run the alarm desk on them now, with
        the last tick's positions (the engine ingests the same messages with the next tick);
        None when there was nothing to do."""
        if not self._urgent:
            return None
        assert self._desk_lock is not None
        async with self._desk_lock:
            messages = list(self._urgent)
            self._urgent.clear()
            now = max(self.clock(), self._desk_now)
            result = self.engine.early(now, self._urgent_decoder.decode_many(messages))
            self.stats.early_passes += 1
            # only news: a tag repeats its alarm bits in every advertisement until it is
            # reset, and each early pass evaluates every rule (the tick sees the repeats)
            if self.alarms is not None and (len(result.reads) or self.alarms.desk.rules
                                            .flags_changed(result.telemetry).any()):  # fmt: skip
                self._desk_now = now
                await self.alarms.after_tick(self._client, now, result,
                                             self.engine.decoder.counters,
                                             documents=False)  # fmt: skip
            elif self.alarms is not None:
                self.stats.early_repeats += 1
        return result

    async def _tick_loop(self, worker: ThreadPoolExecutor, watch: ThreadPoolExecutor) -> None:
        """Every ``tick / parts`` seconds a pass: decode, the watched tags (their zone changes
        to the desk at once) and ``1 / parts`` of the other tags heard; every ``parts``-th pass
        ends a tick (door reads, telemetry, every tag's zones; the desk, positions)."""
        tick = self.engine.params.tick_s
        parts = max(1, round(tick / self.engine.params.watch_period_s))
        period, share = tick / parts, 1.0 / parts
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        next_health = next_t
        part = 0
        spent = 0.0  # worker seconds of this tick's passes so far
        while True:
            next_t += period
            part = (part + 1) % parts
            await self._decode_ahead(worker, next_t)
            if loop.time() - next_t > tick:  # fell behind: do not try to catch up pass by pass
                next_t = loop.time()
            client = self._client
            try:
                now = self.clock()
                first, seconds = await loop.run_in_executor(watch, self.compute_first, now)
                if part:  # a pass between ticks
                    others = loop.run_in_executor(worker, self.compute_others, now, share)
                    await self._first_step(now, first)  # while the worker does the others
                    spent += seconds + await others
                    self.stats.watch_passes += 1
                    continue
                rest = loop.run_in_executor(worker, self.compute_rest, now, share)
                await self._first_step(now, first)  # while the worker does the rest
                result, more = await rest
                seconds, spent = spent + seconds + more, 0.0
                self._ticked(result, seconds)  # in the loop: its readers are here
                assert self._desk_lock is not None
                async with self._desk_lock:
                    desk_now = self._desk_now = max(now, self._desk_now)
                    if self.alarms is not None:
                        await self.alarms.retry(desk_now)
                        await self.alarms.after_tick(client, desk_now, result,
                                                     self.engine.decoder.counters)  # fmt: skip
                        await self._handle_control(client)
                body = None
                if len(result.located) and (client is not None or self.tick_observers):
                    visible = self.alarms.desk.visible(now) if self.alarms is not None else None
                    body = self._positions.encode(result, visible)
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

    async def _decode_ahead(self, worker: ThreadPoolExecutor, until: float) -> None:
        """Wait for loop time ``until``, decoding what arrives meanwhile every ``PREDECODE_S``."""
        loop = asyncio.get_running_loop()
        while self._queue and until - loop.time() > PREDECODE_S:
            await asyncio.sleep(PREDECODE_S)
            await loop.run_in_executor(worker, self.predecode)
        await asyncio.sleep(max(0.0, until - loop.time()))

    async def _first_step(self, now: float, first: TickResult) -> None:
        """The alarm desk on the zone transitions of a pass of the watched tags, if it has any
        (the documents go with the tick's own step)."""
        tr = first.transitions
        if self.alarms is None or not (len(tr.entered) or len(tr.left)):
            return
        assert self._desk_lock is not None
        async with self._desk_lock:
            desk_now = self._desk_now = max(now, self._desk_now)
            self.stats.first_steps += 1
            await self.alarms.after_tick(self._client, desk_now, first,
                                         self.engine.decoder.counters, documents=False)  # fmt: skip

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
            "rate_limited": self.rate_limited(),
            "tick_ms_p99": round(1000 * tick_percentile(self.stats, 99), 3),
            "unknown_tags": [
                {"mac": u.mac, "serial": u.serial, "count": u.count, "last_seen": u.last_seen}
                for u in c.unknown_tags()[:50]
            ],
        }
        if self.alarms is not None:
            body["alarms"] = vars(self.alarms.stats)
        site = self.engine.site  # tag authentication: counts and the tags with rejections
        body["tag_auth"] = {**self.engine.auth.summary(), "tags": self.engine.auth.report(
            [t.id for t in site.tags], [g.id for g in site.gateways])[:50]}  # fmt: skip
        return json.dumps(body, separators=(",", ":")).encode()

    def process(self, now: float) -> TickResult:
        """Decode what is queued and run one tick (see :meth:`compute`), then count it."""
        result, seconds = self.compute(now)
        self._ticked(result, seconds)
        return result

    def compute(self, now: float) -> tuple[TickResult, float]:
        """Decode what is queued (see :meth:`predecode`) and run one whole tick; returns the
        result and the seconds it took (:meth:`process`; the ticker runs the tick in two parts,
        :meth:`compute_first` and :meth:`compute_rest`)."""
        started = time.perf_counter()
        self._decode(MAX_TICK_BYTES)
        self._tick_bytes = self._tick_messages = 0  # the next tick's budget
        return self.engine.tick(now), time.perf_counter() - started

    def compute_first(self, now: float) -> tuple[TickResult, float]:
        """Decode what is queued and locate the watched tags
        (:meth:`rtls.engine.Engine.tick_first`)."""
        started = time.perf_counter()
        self._decode(MAX_TICK_BYTES)
        return self.engine.tick_first(now), time.perf_counter() - started

    def compute_others(self, now: float, share: float) -> float:
        """Locate ``share`` of the other tags between ticks
        (:meth:`rtls.engine.Engine.advance_others`); returns the seconds it took."""
        started = time.perf_counter()
        self.engine.advance_others(now, share)
        return time.perf_counter() - started

    def compute_rest(self, now: float, share: float = 1.0) -> tuple[TickResult, float]:
        """The last part of a tick (:meth:`rtls.engine.Engine.tick` with ``share``: the whole
        tick's result); the next tick's decoding budget starts."""
        started = time.perf_counter()
        result = self.engine.tick(now, share)
        self._tick_bytes = self._tick_messages = 0
        return result, time.perf_counter() - started

    def predecode(self) -> None:
        """Decode some of what is queued ahead of the tick (at most ``PREDECODE_BYTES`` now),
        so that the tick itself starts from less."""
        self.stats.predecoded += self._decode(PREDECODE_BYTES)

    def _decode(self, limit: int) -> int:
        """Decode and ingest queued messages: at most ``limit`` payload bytes now, and between
        two ticks at most ``max_batch`` messages and ``MAX_TICK_BYTES`` in all (a backlog is
        worked off over the next ticks, memory stays bounded); returns the messages decoded.
        Runs in the tick thread: it touches the engine and the queue's left end only (the loop
        counts the tick: :meth:`_ticked`)."""
        q = self._queue
        batch: list[tuple[str, bytes, float]] = []
        size = 0
        budget = min(limit, MAX_TICK_BYTES - self._tick_bytes)
        room = self.max_batch - self._tick_messages
        while q and len(batch) < room and size < budget:
            item = q.popleft()
            batch.append(item)
            size += len(item[1])
        if batch:
            self.engine.ingest_messages(batch)
        self._tick_bytes += size
        self._tick_messages += len(batch)
        return len(batch)

    def _ticked(self, result: TickResult, seconds: float) -> None:
        self.stats.ticks += 1
        self.stats.tick_seconds.append(seconds)
        if self.on_tick is not None:
            self.on_tick(result)


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: a thread has its own; elsewhere
    it would be the whole process's, so nothing)."""
    if not nice or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a sandbox without setpriority: the tick runs at normal priority
        _LOG.warning("could not lower the tick thread's priority: %s", exc)


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
