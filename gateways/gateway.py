"""A simulated gateway: buffers what it hears, publishes a batch every interval, reports health.

Pure and stepped by time; the messages it returns are published by the runner's sink. Batches
and health messages keep to a fixed schedule from boot (a step that falls between two ticks
publishes at the first step after the tick, and the next tick is not moved). Power loss drops
the buffer (as real hardware loses its RAM); the sink turns the power change into a lost MQTT
connection so the broker publishes the gateway's last will.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gateways.formats import GatewayFormat, GatewayHealth, Message
from rtls.batch import MAX_RECORDS
from rtls.errors import ConfigError

# Step times are sums and products of decimal ticks: a tick this close counts as reached.
_TICK_TOLERANCE = 1e-9


@dataclass
class GatewayStats:
    """Lifetime counters of a simulated gateway, across power cycles.

    Health messages report, as real gateways do, the part since the last boot.
    """

    heard: int = 0
    published_records: int = 0
    batches: int = 0
    lost_power_records: int = 0
    boots: int = 1


@dataclass
class SimGateway:
    """One gateway, booted at t = 0 (see :meth:`power`). ``epoch`` is the Unix time of
    simulation t = 0 (timestamps on the wire). ``seq`` is the next batch's sequence number."""

    id: str
    format: GatewayFormat
    epoch: float
    batch_interval_s: float = 0.25
    health_interval_s: float = 10.0
    up: bool = True
    seq: int = 0
    stats: GatewayStats = field(default_factory=GatewayStats)
    _t: list[NDArray[np.float64]] = field(default_factory=list, init=False, repr=False)
    _rec: list[NDArray[np.void]] = field(default_factory=list, init=False, repr=False)
    _boot_t: float = field(default=0.0, init=False, repr=False)
    _at_boot: GatewayStats = field(default_factory=GatewayStats, init=False, repr=False)
    _next_flush: float = field(default=0.0, init=False, repr=False)
    _next_health: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.batch_interval_s > 0.0 and self.health_interval_s > 0.0):
            raise ConfigError(f"gateway {self.id}: batch and health intervals must be > 0")
        self._at_boot = dataclasses.replace(self.stats)
        self._next_flush = self.batch_interval_s

    def hear(self, t: NDArray[np.float64], records: NDArray[np.void]) -> None:
        """Buffer heard advertisements: absolute sim times t (M,), records (M,) RECORD_DTYPE."""
        if not self.up or len(t) == 0:
            return
        self._t.append(t)
        self._rec.append(records)
        self.stats.heard += len(t)

    def power(self, now: float, up: bool) -> None:
        """Power on or off; off loses the buffer, on boots: uptime and health counters restart,
        health is published at once and the first batch one interval later."""
        if up == self.up:
            return
        self.up = up
        if not up:
            self.stats.lost_power_records += self.queued
            self._t.clear()
            self._rec.clear()
        else:
            self.stats.boots += 1
            self._at_boot = dataclasses.replace(self.stats)
            self._boot_t = now
            self._next_flush = now + self.batch_interval_s
            self._next_health = now

    @property
    def queued(self) -> int:
        """Observations buffered, waiting for the next batch."""
        return sum(len(t) for t in self._t)

    def step(self, now: float) -> list[Message]:
        """Messages due at ``now``: the batch (if its tick came) and health; none while off."""
        if not self.up:
            return []
        out: list[Message] = []
        if now >= self._next_flush - _TICK_TOLERANCE:
            out.extend(self._flush())
            self._next_flush = self._next_tick(self.batch_interval_s, now)
        if now >= self._next_health - _TICK_TOLERANCE:
            out.append(self.format.health(self.id, self.epoch + now, self.health(now)))
            self._next_health = self._next_tick(self.health_interval_s, now)
        return out

    def health(self, now: float) -> GatewayHealth:
        """Health counters since the last boot (docs/gateway-formats.md)."""
        s, b = self.stats, self._at_boot
        return GatewayHealth(
            uptime_s=round(now - self._boot_t, 1),
            heard=s.heard - b.heard,
            published=s.published_records - b.published_records,
            dropped=s.lost_power_records - b.lost_power_records,
            queue=self.queued,
        )

    def _next_tick(self, period: float, now: float) -> float:
        """The first tick ``boot + k * period`` after ``now``."""
        k = math.floor((now - self._boot_t) / period + _TICK_TOLERANCE) + 1
        return self._boot_t + k * period

    def _flush(self) -> list[Message]:
        """The buffer as batches of at most MAX_RECORDS, records in time order."""
        if not self._t:
            return []
        t = np.concatenate(self._t)
        rec = np.concatenate(self._rec)
        self._t.clear()
        self._rec.clear()
        order = np.argsort(t, kind="stable")
        t, rec = t[order], rec[order]  # copies: ours to write dt_us into
        out: list[Message] = []
        for start in range(0, len(t), MAX_RECORDS):
            tt = t[start : start + MAX_RECORDS]
            chunk = rec[start : start + MAX_RECORDS]
            t0 = math.floor(tt[0] * 1000.0) / 1000.0  # gateway clock, millisecond tick
            chunk["dt_us"] = np.rint((tt - t0) * 1e6).astype(np.uint32)
            out.extend(self.format.observations(self.id, self.seq, self.epoch + t0, chunk))
            self.seq = (self.seq + 1) & 0xFFFF_FFFF
            self.stats.batches += 1
            self.stats.published_records += len(chunk)
        return out
