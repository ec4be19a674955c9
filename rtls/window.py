"""The RSSI window: per (tag, gateway) link, a time-weighted mean of the last few seconds.

Averaging in dB over a few packets removes most of the fast fading (independent per packet)
while keeping up with a walking tag; the shadowing of a link is what remains, and that is what
the locator's model expects (log-normal, DOMAIN.md). Each link keeps an exponentially decayed
sum S, weight W and squared weight W2 with time constant ``tau_s``; a batch of observations is
folded in with a sort and ``reduceat`` over flat link indices, so there is no Python loop per
observation. The window is short (engine default 1.5 s): it averages the fading of a few
packets; smoothing a moving tag over time is the tracker's job (docs/locator.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rtls.errors import ConfigError
from rtls.observations import Observations

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Snapshot:
    """The window of some tags at ``now``: ``rssi`` (K, G) dBm, NaN where not heard within the
    horizon; ``weight`` (K, G) effective number of packets behind each mean, ``W² / W2`` (Kish's
    effective sample size of a weighted mean), discounted by ``exp(-age / tau_s)`` with ``age``
    the time since the link was last heard (0 where NaN)."""

    tags: NDArray[np.intp]
    rssi: FloatArray
    weight: FloatArray
    last_t: FloatArray  # (K,) newest observation of each tag (-inf if none)


class RssiWindow:
    """Smoothed RSSI of ``n_tags`` × ``n_gateways`` links.

    ``tau_s``: time constant of the exponential weighting. ``horizon_s``: a link not heard for
    longer is treated as not heard at all (a silent gateway, or a tag that left its range).
    """

    def __init__(
        self, n_tags: int, n_gateways: int, *, tau_s: float = 3.0, horizon_s: float = 8.0
    ) -> None:
        if tau_s <= 0 or horizon_s <= 0:
            raise ConfigError("window tau_s and horizon_s must be > 0")
        self.n_tags, self.n_gateways = n_tags, n_gateways
        self.tau_s, self.horizon_s = tau_s, horizon_s
        shape = (n_tags, n_gateways)
        self._s = np.zeros(shape)  # decayed sum of rssi, referred to _ref
        self._w = np.zeros(shape)  # decayed weight, referred to _ref
        self._w2 = np.zeros(shape)  # decayed sum of squared weights, referred to _ref
        self._ref = np.zeros(shape)  # time the link's sums are referred to
        self._last = np.full(shape, -np.inf)  # newest observation time per link
        self.changed = np.zeros(n_tags, dtype=bool)  # tags with observations since take_changed
        self.gateway_last = np.full(n_gateways, -np.inf)  # newest observation of any tag

    def add(self, obs: Observations) -> None:
        """Fold in observations (any order, any tags/gateways); indices must be in range."""
        if len(obs) == 0:
            return
        t = obs["t"].astype(np.float64)
        link = obs["tag"].astype(np.intp) * self.n_gateways + obs["gateway"].astype(np.intp)
        t_ref = float(t.max())
        w = np.exp((t - t_ref) / self.tau_s)  # older packets of this batch count less
        order = np.argsort(link, kind="stable")
        ls = link[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        touched = ls[starts]  # distinct links of this batch
        s_add = np.add.reduceat(w[order] * obs["rssi"][order], starts)
        w_add = np.add.reduceat(w[order], starts)
        w2_add = np.add.reduceat(w[order] ** 2, starts)
        newest = np.maximum.reduceat(t[order], starts)
        s, wt, w2, ref, last = (
            a.reshape(-1) for a in (self._s, self._w, self._w2, self._ref, self._last)
        )
        decay = np.exp(-np.maximum(t_ref - ref[touched], 0.0) / self.tau_s)
        s[touched] = s[touched] * decay + s_add
        wt[touched] = wt[touched] * decay + w_add
        w2[touched] = w2[touched] * decay * decay + w2_add
        ref[touched] = t_ref
        last[touched] = np.maximum(last[touched], newest)
        self.changed[obs["tag"]] = True
        np.maximum.at(self.gateway_last, obs["gateway"], t)

    def gateways_up(self, now: float) -> NDArray[np.bool_]:
        """(G,) gateways that heard any tag within the horizon: their silence about a tag means
        something; a gateway heard from by nobody may be down, and its silence must not count."""
        return np.asarray(self.gateway_last >= now - self.horizon_s)

    def take_changed(self) -> NDArray[np.intp]:
        """Indices of tags with new observations since the last call (and clears the flags)."""
        idx = np.flatnonzero(self.changed)
        self.changed[idx] = False
        return idx

    def snapshot(self, now: float, tags: NDArray[np.intp] | None = None) -> Snapshot:
        """Smoothed RSSI of ``tags`` (default all) as seen at ``now``."""
        idx = np.arange(self.n_tags) if tags is None else np.asarray(tags, dtype=np.intp)
        s, w, w2, last = self._s[idx], self._w[idx], self._w2[idx], self._last[idx]
        fresh = (last >= now - self.horizon_s) & (w > 0) & (w2 > 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rssi = np.where(fresh, s / np.where(w > 0, w, 1.0), np.nan)
            n_eff = w * w / np.where(w2 > 0, w2, 1.0)
            age = np.maximum(now - last, 0.0)
            weight = np.where(fresh, n_eff * np.exp(-age / self.tau_s), 0.0)
        newest = last.max(axis=1) if self.n_gateways else np.full(len(idx), -np.inf)
        return Snapshot(idx, rssi, weight, newest)

    def forget(self, tags: NDArray[np.intp]) -> None:
        """Drop the history of some tags (e.g. after a door read placed them elsewhere)."""
        self._s[tags] = 0.0
        self._w[tags] = 0.0
        self._w2[tags] = 0.0
        self._last[tags] = -np.inf
