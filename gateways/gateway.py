"""A simulated gateway: buffers what it hears, publishes a batch every interval, reports health.

Pure and stepped by time; the messages it returns are published by the runner's sink. Power
loss drops the buffer (as real hardware loses its RAM); the sink turns the power change into a
lost MQTT connection so the broker publishes the gateway's last will.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gateways.formats import GatewayFormat, GatewayHealth, Message
from rtls.batch import MAX_RECORDS


@dataclass
class GatewayStats:
    """Counters a gateway reports in its health messages."""

    heard: int = 0
    published_records: int = 0
    batches: int = 0
    lost_power_records: int = 0
    boots: int = 1


@dataclass
class SimGateway:
    """One gateway. ``epoch`` is the Unix time of simulation t = 0 (timestamps on the wire)."""

    id: str
    format: GatewayFormat
    epoch: float
    batch_interval_s: float = 0.25
    health_interval_s: float = 10.0
    up: bool = True
    seq: int = 0
    stats: GatewayStats = field(default_factory=GatewayStats)
    _t: list[NDArray[np.float64]] = field(default_factory=list)
    _rec: list[NDArray[np.void]] = field(default_factory=list)
    _next_flush: float = 0.0
    _next_health: float = 0.0
    _boot_t: float = 0.0

    def hear(self, t: NDArray[np.float64], records: NDArray[np.void]) -> None:
        """Buffer heard advertisements: absolute sim times t (M,), records (M,) RECORD_DTYPE."""
        if not self.up or len(t) == 0:
            return
        self._t.append(t)
        self._rec.append(records)
        self.stats.heard += len(t)

    def power(self, now: float, up: bool) -> None:
        """Power on or off; off loses the buffer, on boots with a new uptime."""
        if up == self.up:
            return
        self.up = up
        if not up:
            self.stats.lost_power_records += sum(len(t) for t in self._t)
            self._t.clear()
            self._rec.clear()
        else:
            self.stats.boots += 1
            self._boot_t = now
            self._next_flush = now + self.batch_interval_s
            self._next_health = now

    def step(self, now: float) -> list[Message]:
        """Messages due at ``now``: the batch (if its interval elapsed) and health."""
        out: list[Message] = []
        if not self.up:
            return out
        if now >= self._next_flush:
            out.extend(self._flush(now))
            self._next_flush = now + self.batch_interval_s
        if now >= self._next_health:
            out.append(self.format.health(self.id, self.epoch + now, self.health(now)))
            self._next_health = now + self.health_interval_s
        return out

    def health(self, now: float) -> GatewayHealth:
        s = self.stats
        return GatewayHealth(
            uptime_s=round(now - self._boot_t, 1),
            heard=s.heard,
            published=s.published_records,
            dropped=s.lost_power_records,
            queue=sum(len(t) for t in self._t),
        )

    def _flush(self, now: float) -> list[Message]:
        if not self._t:
            return []
        t = np.concatenate(self._t)
        rec = np.concatenate(self._rec)
        self._t.clear()
        self._rec.clear()
        order = np.argsort(t, kind="stable")
        t, rec = t[order], rec[order]
        out: list[Message] = []
        for start in range(0, len(t), MAX_RECORDS):
            tt = t[start : start + MAX_RECORDS]
            chunk = rec[start : start + MAX_RECORDS].copy()
            t0 = float(np.floor(tt[0] * 1000.0) / 1000.0)  # gateway clock, millisecond tick
            chunk["dt_us"] = np.rint((tt - t0) * 1e6).astype(np.uint32)
            out.extend(self.format.observations(self.id, self.seq, self.epoch + t0, chunk))
            self.seq = (self.seq + 1) & 0xFFFF_FFFF
            self.stats.batches += 1
            self.stats.published_records += len(chunk)
        return out
