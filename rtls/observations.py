"""Observation arrays: what every decoder produces and the window consumes.

One row per advertisement heard by one gateway: ``t`` (Unix s, gateway clock), ``gateway``
(index into ``site.gateways``), ``tag`` (index into ``site.tags``), ``rssi`` (dBm).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

OBS_DTYPE: Final = np.dtype([("t", "<f8"), ("gateway", "<i4"), ("tag", "<i4"), ("rssi", "<f4")])

Observations = NDArray[np.void]


def empty(n: int = 0) -> Observations:
    """A zeroed observation array of length ``n``."""
    return np.zeros(n, dtype=OBS_DTYPE)


def concat(parts: list[Observations]) -> Observations:
    """Concatenate observation arrays (an empty list gives an empty array)."""
    if not parts:
        return empty()
    return np.concatenate(parts)
