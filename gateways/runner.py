"""Plays a :class:`gateways.world.World` in real or accelerated time into a sink.

The world is stepped on a fixed virtual tick, so what it produces depends only on the scenario
and its seed; the clock only decides *when* messages leave. Sinks: MQTT (one connection per
gateway and door reader, like the hardware), a JSON-lines file, or a counter.
"""

from __future__ import annotations

import json
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from gateways.downlink import DownlinkListener, DownlinkMessage
from gateways.formats import Message
from gateways.mqtt import LinkPool, MqttLink
from gateways.world import Source, World
from rtls.errors import RtlsError, TransportError


class Sink(Protocol):
    """Where messages go."""

    def open(self, sources: list[Source]) -> None: ...
    def publish(self, source: Source, msg: Message) -> None: ...
    def power(self, source: Source, up: bool, t: float) -> None: ...
    def close(self) -> None: ...


@dataclass
class RunStats:
    """What a run produced: messages and observations per format, virtual and wall time."""

    messages: Counter[str] = field(default_factory=Counter)
    observations: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    sim_s: float = 0.0
    wall_s: float = 0.0

    def rates(self) -> dict[str, dict[str, float]]:
        """Per format: messages/s and observations/s of wall time."""
        wall = max(self.wall_s, 1e-9)
        return {
            fmt: {
                "messages_per_s": self.messages[fmt] / wall,
                "observations_per_s": self.observations[fmt] / wall,
                "messages": float(self.messages[fmt]),
                "observations": float(self.observations[fmt]),
            }
            for fmt in sorted(self.messages)
        }


class CountingSink:
    """Discards messages (benchmarks, dry runs)."""

    def open(self, sources: list[Source]) -> None:
        pass

    def publish(self, source: Source, msg: Message) -> None:
        pass

    def power(self, source: Source, up: bool, t: float) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink:
    """Writes every message as a JSON line: ``{"t", "source", "topic", "payload_hex", ...}``.

    Power changes are written as ``{"t", "source", "power": "on"|"off"}`` lines (over MQTT they
    become the broker's last-will messages). Same scenario and seed, same file, byte for byte.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None
        self.now = 0.0

    def open(self, sources: list[Source]) -> None:
        try:
            self._fh = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise RtlsError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        for s in sources:
            if s.online is not None:
                self.publish(s, s.online)

    def _write(self, obj: dict[str, object]) -> None:
        assert self._fh is not None, "FileSink.open() first"
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def publish(self, source: Source, msg: Message) -> None:
        self._write(
            {
                "t": round(self.now, 6),
                "source": source.id,
                "topic": msg.topic,
                "qos": msg.qos,
                "retain": msg.retain,
                "payload_hex": msg.payload.hex(),
            }
        )

    def power(self, source: Source, up: bool, t: float) -> None:
        self._write({"t": round(t, 6), "source": source.id, "power": "on" if up else "off"})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class MqttSink:
    """One MQTT connection per gateway / door reader, with its last will and online status.

    ``accounts``: device id -> (username, password), each device logging in with its own
    account (rtls broker-config); the downlink listener uses the first gateway's. ``tls``: a
    context verifying the broker's certificate."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        client_prefix: str = "rtls-sim",
        reconnect_max_delay: int = 5,
        connect_timeout_s: float = 15.0,
        accounts: Mapping[str, tuple[str, str]] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.accounts, self.tls = dict(accounts or {}), tls
        self.client_prefix = client_prefix
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout_s = connect_timeout_s
        self.pool = LinkPool()
        self.downlinks: DownlinkListener | None = None

    def open(self, sources: list[Source]) -> None:
        relay = next((s.id for s in sources if s.format != "reader" and s.id in self.accounts), "")
        user, password = self.accounts.get(relay, (self.username, self.password))
        self.downlinks = DownlinkListener(
            f"{self.client_prefix}-downlink", self.host, self.port,
            username=user, password=password, tls=self.tls,
        )  # fmt: skip
        self.downlinks.start()
        for s in sources:
            user, password = self.accounts.get(s.id, (self.username, self.password))
            self.pool.add(
                MqttLink(
                    f"{self.client_prefix}-{s.id}",
                    self.host,
                    self.port,
                    will=s.will,
                    online=s.online,
                    username=user,
                    password=password,
                    tls=self.tls,
                    keepalive=10,
                    reconnect_max_delay=self.reconnect_max_delay,
                )
            )
        self.pool.start_all()
        # like real gateways after boot: connect first, then publish (nothing dropped at start)
        if not self.pool.wait_connected(self.connect_timeout_s):
            raise TransportError(
                f"the simulated devices could not connect to {self.host}:{self.port} within "
                f"{self.connect_timeout_s:g} s"
            )

    def wait_connected(self, timeout: float) -> bool:
        return self.pool.wait_connected(timeout)

    def publish(self, source: Source, msg: Message) -> None:
        self.pool[f"{self.client_prefix}-{source.id}"].publish(msg)

    def power(self, source: Source, up: bool, t: float) -> None:
        link = self.pool[f"{self.client_prefix}-{source.id}"]
        if up:
            link.start()
        else:
            link.stop(graceful=False)  # a power cut: the broker sends the last will

    def take_downlinks(self) -> list[DownlinkMessage]:
        """Downlinks (confirm, reset, pair) received since the last call."""
        return self.downlinks.take_messages() if self.downlinks is not None else []

    def close(self) -> None:
        if self.downlinks is not None:
            self.downlinks.stop()
        self.pool.stop_all(graceful=True)


def run(
    world: World,
    sink: Sink,
    duration_s: float | None = None,
    *,
    speed: float | None = None,
    tick_s: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[float, RunStats], None] | None = None,
) -> RunStats:
    """Play ``world`` for ``duration_s`` virtual seconds (default: the scenario's duration).

    ``speed``: None = as fast as possible (accelerated, virtual clock); 1.0 = real time;
    k = k times real time. ``tick_s`` is the virtual step. Returns per-format counts.
    """
    if tick_s <= 0:
        raise RtlsError("tick_s must be > 0")
    if speed is not None and speed <= 0:
        raise RtlsError("speed must be > 0 (or None for as fast as possible)")
    end = world.duration_s if duration_s is None else duration_s
    stats = RunStats()
    sources = {s.id: s for s in world.sources()}
    sink.open(list(sources.values()))
    start = clock()
    try:
        k = round(world.t / tick_s)
        while world.t < end:
            k += 1
            t = min(round(k * tick_s, 9), end)  # no drift from repeated float additions
            take = getattr(sink, "take_downlinks", None)
            for dl in take() if take is not None else ():
                world.downlink(dl.tag, dl.command, t, mother=dl.mother)
            out = world.step(t)
            if isinstance(sink, FileSink):
                sink.now = t
            for change in out.power:
                sink.power(sources[change.source], change.up, t)
            for routed in out.messages:
                src = sources[routed.source]
                sink.publish(src, routed.msg)
                stats.messages[src.format] += 1
                stats.observations[src.format] += routed.observations
                stats.bytes[src.format] += len(routed.msg.payload)
            stats.sim_s = t
            if on_tick is not None:
                on_tick(t, stats)
            if speed is not None:
                ahead = t / speed - (clock() - start)
                if ahead > 0:
                    sleep(ahead)
    finally:
        stats.wall_s = clock() - start
        sink.close()
    return stats
