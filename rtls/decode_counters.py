"""Decoder bookkeeping: counts by reason, unknown tags, per-source last heard, batch duplicates.

One :class:`DecodeCounters` per engine, passed to every decode call (the decoders are otherwise
pure). Times are the engine's receive time unless said otherwise. See ``docs/decoding.md``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import format_mac
from rtls.decode_clock import SourceClocks
from rtls.directory import Directory

MAX_UNKNOWN: Final = 4096  # unknown addresses listed; more are only counted (unknown_overflow)
RECENT_BATCHES: Final = 16  # per gateway, (seq, t0) pairs remembered to drop QoS 1 duplicates
RECENT_READS: Final = 32  # per door reader, (tag, t) pairs remembered to drop duplicates
MAX_GAP: Final = 1 << 16  # a larger jump of the batch sequence is a restart, not lost batches
RECENT_MISSING: Final = 64  # per gateway, missing sequence numbers a late batch may still fill


@dataclass(slots=True)
class UnknownTag:
    """An rtls-looking device heard but not in the site (first/last seen on its own clock)."""

    address: int
    serial: int  # serial of a valid body, 0 if none was seen
    first_seen: float
    last_seen: float
    count: int
    gateway: int  # last gateway that heard it, -1 if only door readers did
    reader: int  # last door reader that read it, -1 if none

    @property
    def mac(self) -> str:
        """The address as ``C0:DE:00:01:23:45``."""
        return format_mac(self.address.to_bytes(6, "big"))


@dataclass(eq=False)
class DecodeCounters:
    """Mutable counters shared by all decode calls of one engine.

    ``rejected`` counts whole messages dropped, by PayloadError reason; ``records`` counts
    per-record problems (docs/decoding.md lists both). ``gateway_last_heard`` (G,) and
    ``reader_last_heard`` (R,) hold the receive time of the last message that proves the source
    alive (NaN: never). ``batches_lost`` (G,) counts gaps in native batch sequence numbers.
    """

    gateway_last_heard: NDArray[np.float64]
    gateway_observations: NDArray[np.int64]
    batches_lost: NDArray[np.int64]
    reader_last_heard: NDArray[np.float64]
    max_unknown: int = MAX_UNKNOWN
    messages: int = 0
    observations: int = 0
    telemetry: int = 0
    reads: int = 0
    statuses: int = 0
    foreign: int = 0  # records/messages of devices that are not rtls tags (phones, sensors)
    unknown_overflow: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    unknown: dict[int, UnknownTag] = field(default_factory=dict)
    last_error: str = ""
    _batches: list[deque[tuple[int, float]]] = field(init=False, repr=False)
    _last_seq: list[int] = field(init=False, repr=False)
    _missing: dict[int, deque[int]] = field(init=False, repr=False)
    _reads: dict[int, deque[tuple[int, float]]] = field(init=False, repr=False)
    # the sources' clocks (rtls.decode_clock): a wrong gateway / reader clock is corrected
    clocks: SourceClocks = field(init=False, repr=False)
    reader_clocks: SourceClocks = field(init=False, repr=False)

    def __post_init__(self) -> None:
        g = len(self.gateway_last_heard)
        self.clocks = SourceClocks(g)
        self.reader_clocks = SourceClocks(len(self.reader_last_heard))
        self._batches = [deque(maxlen=RECENT_BATCHES) for _ in range(g)]
        self._last_seq = [-1] * g
        self._missing = {}
        self._reads = {}

    @classmethod
    def for_directory(cls, directory: Directory, max_unknown: int = MAX_UNKNOWN) -> DecodeCounters:
        """Fresh counters sized for ``directory``'s gateways and readers."""
        g, r = len(directory.gateway_ids), len(directory.reader_ids)
        return cls(
            gateway_last_heard=np.full(g, np.nan),
            gateway_observations=np.zeros(g, dtype=np.int64),
            batches_lost=np.zeros(g, dtype=np.int64),
            reader_last_heard=np.full(r, np.nan),
            max_unknown=max_unknown,
        )

    # -- reading ------------------------------------------------------------------------------
    @property
    def rejected_total(self) -> int:
        """Messages dropped whole."""
        return sum(self.rejected.values())

    def reasons(self) -> Counter[str]:
        """Message and record reasons together."""
        return self.rejected + self.records

    def unknown_tags(self) -> list[UnknownTag]:
        """Unknown tags, most recently seen first (for technicians)."""
        return sorted(self.unknown.values(), key=lambda u: (-u.last_seen, u.address))

    def summary(self) -> dict[str, object]:
        """A JSON-friendly digest for logs and the technicians' console."""
        return {
            "messages": self.messages,
            "rejected": dict(self.rejected),
            "records": dict(self.records),
            "observations": self.observations,
            "telemetry": self.telemetry,
            "reads": self.reads,
            "statuses": self.statuses,
            "foreign": self.foreign,
            "unknown_tags": len(self.unknown),
            "unknown_overflow": self.unknown_overflow,
            "batches_lost": int(self.batches_lost.sum()),
            "clock_corrected": int(self.clocks.corrected.sum())
            + int(self.reader_clocks.corrected.sum()),
        }

    # -- updating (called by the decoders) ----------------------------------------------------
    def reject(self, reason: str, message: str) -> None:
        """Count one message dropped whole."""
        self.rejected[reason] += 1
        self.last_error = f"{reason}: {message}"

    def note(self, reason: str, count: int = 1) -> None:
        """Count ``count`` per-record problems of one kind."""
        if count:
            self.records[reason] += count

    def heard_gateway(self, gateway: int, received_t: float, observations: int = 0) -> None:
        """Gateway ``gateway`` proved alive at ``received_t`` with ``observations`` new rows."""
        self.gateway_last_heard[gateway] = _latest(self.gateway_last_heard[gateway], received_t)
        self.gateway_observations[gateway] += observations
        self.observations += observations

    def heard_reader(self, reader: int, received_t: float) -> None:
        """Door reader ``reader`` proved alive at ``received_t``."""
        self.reader_last_heard[reader] = _latest(self.reader_last_heard[reader], received_t)

    def is_duplicate_batch(self, gateway: int, seq: int, t0: float) -> bool:
        """True if this gateway's batch (seq, t0) was accepted recently (a QoS 1 resend)."""
        return (seq, t0) in self._batches[gateway]

    def accept_batch(self, gateway: int, seq: int, t0: float) -> None:
        """Remember an accepted batch; a forward gap in ``seq`` counts as lost batches, and a
        late batch that fills one of the last ``RECENT_MISSING`` gaps is taken back off (the
        engine service decodes urgent batches ahead of older queued ones)."""
        last = self._last_seq[gateway]
        ahead = (seq - last) % (1 << 32)
        if 0 < ahead < MAX_GAP and last >= 0:
            self.batches_lost[gateway] += ahead - 1
            self._last_seq[gateway] = seq
            if ahead > 1:
                missing = self._missing.setdefault(gateway, deque(maxlen=RECENT_MISSING))
                missing.extend((seq - k) % (1 << 32) for k in range(min(ahead - 1,
                                                                         RECENT_MISSING), 0, -1))
        elif last < 0 or (1 << 32) - ahead >= MAX_GAP:  # first batch, or the gateway restarted
            self._last_seq[gateway] = seq
            self._missing.pop(gateway, None)
        else:  # a late (reordered) or repeated sequence number: keep the newest
            gaps = self._missing.get(gateway)
            if gaps is not None and seq in gaps:
                gaps.remove(seq)
                self.batches_lost[gateway] -= 1
        self._batches[gateway].append((seq, t0))

    def is_duplicate_read(self, reader: int, tag: int, t: float) -> bool:
        """True if door reader ``reader`` already reported ``tag`` at time ``t``."""
        return (tag, t) in self._reads.get(reader, ())

    def accept_read(self, reader: int, tag: int, t: float) -> None:
        """Remember a read for duplicate detection."""
        self._reads.setdefault(reader, deque(maxlen=RECENT_READS)).append((tag, t))

    def add_unknown(self, rows: NDArray[np.void]) -> None:
        """List the sightings ``rows`` (UNKNOWN_DTYPE (U,)); one Python step per address."""
        if not len(rows):
            return
        self.note("unknown_tag", len(rows))
        order = np.lexsort((rows["t"], rows["address"]))
        ordered = rows[order]
        addr = ordered["address"]
        starts = np.flatnonzero(np.r_[True, addr[1:] != addr[:-1]])
        ends = np.r_[starts[1:], len(addr)] - 1
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            first, last = ordered[s], ordered[e]
            key = int(last["address"])
            serials = ordered["serial"][s : e + 1]
            serial = int(serials[serials != 0][-1]) if (serials != 0).any() else 0
            entry = self.unknown.get(key)
            if entry is None:
                if len(self.unknown) >= self.max_unknown:
                    self.unknown_overflow += e - s + 1
                    continue
                entry = UnknownTag(key, serial, float(first["t"]), float(last["t"]), 0, -1, -1)
                self.unknown[key] = entry
            entry.count += e - s + 1
            entry.first_seen = min(entry.first_seen, float(first["t"]))
            entry.last_seen = max(entry.last_seen, float(last["t"]))
            entry.serial = serial or entry.serial
            if int(last["gateway"]) >= 0:
                entry.gateway = int(last["gateway"])
            if int(last["reader"]) >= 0:
                entry.reader = int(last["reader"])


def _latest(old: float, new: float) -> float:
    return new if math.isnan(old) else max(old, new)
