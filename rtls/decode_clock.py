"""Source clocks: notice a gateway (or door reader) whose clock is wrong and bring its times onto
the engine's clock.

Observation times come from the gateway's clock (docs/decoding.md). A gateway whose clock is
minutes or hours off would make its observations stale (behind: dropped by the window, the tag
looks silent) or fresh for hours (ahead: a tag that left is still "heard" where it was). For
every accepted message the decoder gives :meth:`SourceClocks.correct` the newest time the
message carries on the source's clock and the engine's receive time; ``d = received - t`` is
the transit delay plus the clock's error:

- ``|d| <= TOLERANCE_S``: the clock is trusted (times kept exactly as sent).
- ``d < -TOLERANCE_S`` (the message is from the future): the clock is ahead; corrected at once.
- ``d > TOLERANCE_S``: late or behind. A backlog flushed after a broker outage is late and
  must keep its real (old) times, so a clock is called behind only once no message of the
  source has been within tolerance for ``CONFIRM_S`` seconds of receiving.

A wrong clock's offset is the lower envelope of ``d`` (a delay is never negative and some
messages arrive fast): the minimum, allowed to rise by ``RELAX`` s per s so that it follows a
drifting clock. Corrected times are ``t + offset``: the receive time less the message's own
extra delay. One message within tolerance ends the correction. Pure: times are arguments.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

TOLERANCE_S = 2.0
"""Clock error accepted as is (NTP keeps gateways within milliseconds; transit adds < 1 s)."""
CONFIRM_S = 10.0
"""A source whose messages are all late for this long has a clock that is behind."""
RELAX = 0.01
"""How fast (s per s) the offset estimate may rise to follow a clock drifting backwards."""


class SourceClocks:
    """Clock state of ``n`` sources (gateways or door readers).

    ``offset`` (n,): seconds added to the source's times now (0.0 while its clock is trusted);
    ``corrected`` (n,): messages whose times were shifted; ``error`` (n,): the last ``d``
    seen (receive time minus the source's time, s; NaN: never heard) for technicians."""

    def __init__(self, n: int) -> None:
        self.offset = np.zeros(n)
        self.corrected = np.zeros(n, dtype=np.int64)
        self.error = np.full(n, np.nan)
        self._low = [math.inf] * n  # the offset estimate (lower envelope of d)
        self._low_t = [0.0] * n  # receive time of that estimate
        self._late_since = [math.inf] * n  # start of the current run of late messages

    def correct(self, source: int, t: float, received_t: float) -> float:
        """The shift (s) to add to the times of one message of ``source`` whose newest time on
        the source's clock is ``t``, received at ``received_t`` (both finite)."""
        d = received_t - t
        if not math.isfinite(d):
            return 0.0
        self.error[source] = d
        if -TOLERANCE_S <= d <= TOLERANCE_S:
            self._late_since[source] = math.inf
            self._low[source] = math.inf
            self.offset[source] = 0.0
            return 0.0
        low = self._low[source]
        if math.isfinite(low):  # the envelope may rise slowly (a clock drifting backwards)
            low += RELAX * max(0.0, received_t - self._low_t[source])
        if d <= low:
            low = d
        self._low[source], self._low_t[source] = low, received_t
        if d > 0:  # late: a backlog, or a clock that is behind
            since = min(self._late_since[source], received_t)
            self._late_since[source] = since
            if received_t - since < CONFIRM_S:
                return float(self.offset[source])
        self.offset[source] = low
        self.corrected[source] += 1
        return low

    def skewed(self) -> NDArray[np.intp]:
        """Indices of the sources whose times are being corrected now."""
        return np.flatnonzero(self.offset != 0.0)
