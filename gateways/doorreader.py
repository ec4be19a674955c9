"""Door choke-point readers: which tags are read at which door, stepped by time.

A reader's low-frequency field covers ``range_m`` around its door; a transmitting tag inside it
is read when it enters and again every ``repeat_s`` while it stays. Pure and vectorised over
tags × readers; the caller publishes the reads (docs/gateway-formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.errors import ConfigError, RtlsError

_TOLERANCE_S = 1e-9


@dataclass(frozen=True)
class Reads:
    """Reads of one step: ``reader`` (M,) and ``tag`` (M,) indices, ``distance`` (M,) metres."""

    reader: NDArray[np.intp]
    tag: NDArray[np.intp]
    distance: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.reader.shape[0])


class DoorReaders:
    """R readers at ``xy`` (R, 2) on ``floor`` (R,) with ``range_m`` (R,), for ``n_tags`` tags."""

    def __init__(
        self,
        xy: ArrayLike,
        floor: ArrayLike,
        range_m: ArrayLike,
        n_tags: int,
        repeat_s: float = 1.0,
    ) -> None:
        self.xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        r = self.xy.shape[0]
        self.floor = np.asarray(floor, dtype=np.int64).reshape(-1)
        range_arr = np.asarray(range_m, dtype=np.float64)
        if self.floor.shape != (r,) or range_arr.size not in (1, r):
            raise ConfigError(f"door readers: {r} positions need {r} floors and ranges")
        self.range_m = np.broadcast_to(range_arr.reshape(-1), (r,)).copy()
        if not (np.isfinite(self.xy).all() and (self.range_m > 0).all()):
            raise ConfigError("door readers need finite positions and a positive range")
        if not repeat_s > 0:
            raise ConfigError("repeat_s must be > 0")
        self.repeat_s = repeat_s
        self.n_tags = n_tags
        self.up = np.ones(r, dtype=bool)
        self._inside = np.zeros((n_tags, r), dtype=bool)
        self._last = np.full((n_tags, r), -np.inf)

    def set_up(self, reader: int, up: bool) -> None:
        """Power a reader on or off (off: it reads nothing)."""
        self.up[reader] = up

    def step(
        self, now: float, tag_xy: ArrayLike, tag_floor: ArrayLike, transmitting: ArrayLike
    ) -> Reads:
        """Reads at time ``now`` for all tags: xy (N, 2), floor (N,), transmitting (N,) bool."""
        xy = np.asarray(tag_xy, dtype=np.float64).reshape(-1, 2)
        fl = np.asarray(tag_floor, dtype=np.int64).reshape(-1)
        tx = np.asarray(transmitting, dtype=bool).reshape(-1)
        if not len(xy) == len(fl) == len(tx) == self.n_tags:
            raise RtlsError(
                f"door readers track {self.n_tags} tags, got {len(xy)} positions, "
                f"{len(fl)} floors and {len(tx)} transmit flags"
            )
        d = np.linalg.norm(xy[:, None, :] - self.xy[None, :, :], axis=2)  # (N, R)
        inside = (d <= self.range_m[None, :]) & (fl[:, None] == self.floor[None, :])
        inside &= tx[:, None] & self.up[None, :]
        # step times are sums of decimal ticks: a repeat a nanosecond short is due
        due = inside & (~self._inside | (now - self._last >= self.repeat_s - _TOLERANCE_S))
        self._inside = inside
        tag, reader = np.nonzero(due)
        self._last[tag, reader] = now
        return Reads(reader, tag, d[tag, reader])
