"""Per-source rate limits of the engine's ingest: two token buckets (messages and bytes) per
gateway and door reader, with limits derived from the site file.

A gateway that floods the broker (a firmware fault publishing garbage in a loop, a hostile
device) must not starve the others: the engine service asks :meth:`RateLimiter.allow` for every
received message, before it is queued for decoding, and drops (and counts) what is over the
source's budget. Pure: the caller passes ``now``; no clock is read here.

Sources are numbered as :func:`source_index` maps topics: gateways ``0..G-1`` (native id,
ESPresense room slug or OpenMQTTGateway name, as the decoders resolve them), door readers
``G..G+R-1``, and one shared bucket ``G+R`` for every topic naming no site device (unknown ids
cannot grow memory). The limits (:func:`site_limits`, docs/faults.md) follow from the site:
what every tag of the site sends (``sum(1 / interval)`` advertisements per second, as if one
gateway heard them all) in the gateway's format, times :data:`HEADROOM`, plus the gateway's
batch, status and health messages; the bucket holds :data:`BACKLOG_S` seconds of that (at
least :data:`BACKLOG_MSGS` messages), so a gateway flushing what it queued during a broker
outage is not throttled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rtls.batch import MAX_RECORDS
from rtls.directory import Directory
from rtls.errors import ConfigError
from rtls.site import GatewayFormat, Site

HEADROOM = 4.0
"""Limit = HEADROOM x the most a legitimate source sends (bursts on state changes, jitter)."""
MIN_MSGS_PER_S = 10.0
"""Added to every message rate (status, health, a reboot's reconnect burst)."""
BACKLOG_S = 60.0
"""A bucket holds this many seconds of its rate: a backlog flushed after an outage passes."""
BACKLOG_MSGS = 1000.0
"""...and at least this many messages (the gateway simulator queues up to 1,000 while away)."""
JSON_MESSAGE_BYTES = 1024.0
"""Budgeted size of one JSON message (ESPresense, OpenMQTTGateway, status, health, door read)."""
NATIVE_MESSAGE_BYTES = 16.0 * 1024
"""Budgeted size of one native batch (500 records; the largest, 2,000 records, is 64 KB)."""
MIN_BURST_BYTES = 4.0 * 1024 * 1024
FOREIGN_MSGS_PER_S = 100.0
"""ESPresense and OpenMQTTGateway forward other BLE devices too (phones, watches): budgeted."""
READER_MSGS_PER_S = 20.0
"""A door reader reads the tags passing its door: a few per second at most."""


@dataclass(frozen=True)
class Limit:
    """One source's budget: sustained rates and bucket sizes (burst)."""

    msgs_per_s: float
    burst_msgs: float
    bytes_per_s: float
    burst_bytes: float

    def __post_init__(self) -> None:
        for name in ("msgs_per_s", "burst_msgs", "bytes_per_s", "burst_bytes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"rate limit {name} = {value!r} must be a positive number")


class RateLimiter:
    """Token buckets for sources ``0..len(limits)-1``; each starts full.

    :meth:`allow` costs a few list operations (it runs once per received message).
    ``passed[i]`` / ``dropped[i]`` / ``dropped_bytes[i]`` count per source."""

    def __init__(self, limits: Sequence[Limit]) -> None:
        if not limits:
            raise ConfigError("a rate limiter needs at least one source")
        self.limits = tuple(limits)
        n = len(self.limits)
        self._msgs = [lim.burst_msgs for lim in self.limits]
        self._bytes = [lim.burst_bytes for lim in self.limits]
        self._last = [-math.inf] * n
        self.passed = [0] * n
        self.dropped = [0] * n
        self.dropped_bytes = [0] * n

    def __len__(self) -> int:
        return len(self.limits)

    def allow(self, source: int, now: float, size: int) -> bool:
        """Take one message of ``size`` bytes from ``source``'s buckets at ``now``; False (and
        counted) when either bucket lacks it. Time going backwards refills nothing."""
        lim = self.limits[source]
        last = self._last[source]
        msgs, nbytes = self._msgs[source], self._bytes[source]
        if now > last:
            dt = now - last
            msgs = min(lim.burst_msgs, msgs + dt * lim.msgs_per_s)
            nbytes = min(lim.burst_bytes, nbytes + dt * lim.bytes_per_s)
            self._last[source] = now
        if msgs < 1.0 or nbytes < size:
            self._msgs[source], self._bytes[source] = msgs, nbytes
            self.dropped[source] += 1
            self.dropped_bytes[source] += size
            return False
        self._msgs[source], self._bytes[source] = msgs - 1.0, nbytes - size
        self.passed[source] += 1
        return True

    def total_dropped(self) -> int:
        return sum(self.dropped)


def site_limits(site: Site) -> list[Limit]:
    """The budgets of a site's sources, in :func:`source_index` order (gateways, door readers,
    the shared bucket of unknown sources). See the module docstring and docs/faults.md."""
    adv = sum(1.0 / site.tag_interval(t) for t in site.tags)  # advertisements/s, whole site
    infra = site.rules.infrastructure
    base = 2.0 / infra.health_interval_s  # status and health
    out: list[Limit] = []
    for g in site.model.gateways:
        if g.format == GatewayFormat.NATIVE:  # batches of up to MAX_RECORDS records
            msgs = 1.0 / infra.batch_interval_s + adv / MAX_RECORDS + base
            out.append(_limit(msgs, NATIVE_MESSAGE_BYTES))
        else:  # one JSON message per advertisement heard
            out.append(_limit(adv + FOREIGN_MSGS_PER_S + base, JSON_MESSAGE_BYTES))
    reader = _limit(READER_MSGS_PER_S, JSON_MESSAGE_BYTES)
    out.extend(reader for _ in site.model.door_readers)
    out.append(_limit(0.0, JSON_MESSAGE_BYTES))  # every unknown source together: the floor
    return out


def _limit(msgs: float, message_bytes: float) -> Limit:
    rate = HEADROOM * msgs + MIN_MSGS_PER_S
    byte_rate = rate * message_bytes
    return Limit(rate, max(BACKLOG_S * rate, BACKLOG_MSGS), byte_rate,
                 max(BACKLOG_S * byte_rate, MIN_BURST_BYTES))  # fmt: skip


def source_index(directory: Directory, topic: str) -> int:
    """The bucket of a message's topic: its gateway's index, ``G + reader`` for a door reader,
    ``G + R`` (shared) for anything naming no site device. The topic, not the payload, names
    the source: with the generated broker ACL a gateway can publish only its own topics."""
    n_gw = len(directory.gateway_ids)
    other = n_gw + len(directory.reader_ids)
    levels = topic.split("/", 4)
    first = levels[0]
    found = -1
    if first == "rtls" and len(levels) >= 4 and levels[1] == "v1":
        if levels[2] == "gw":
            found = directory.gateway(levels[3])
        elif levels[2] == "door":
            r = directory.reader(levels[3])
            found = n_gw + r if r >= 0 else -1
    elif first == "espresense" and len(levels) >= 3:
        room = levels[3] if levels[1] == "devices" and len(levels) >= 4 else levels[2]
        found = directory.espresense_gateway(room)
    elif first == "home" and len(levels) >= 2:
        found = directory.omg_gateway(levels[1])
    return found if found >= 0 else other
