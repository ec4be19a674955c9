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
    """Smoothed RSSI of the links of ``n_tags`` tags with ``n_gateways`` gateways.

    ``tau_s``: time constant of the exponential weighting. ``horizon_s``: a link not heard for
    longer is treated as not heard at all (a silent gateway, or a tag that left its range).
    ``slots``: links kept per tag. A tag hears only the gateways near it, so each tag keeps
    ``slots`` (gateway, sums) slots instead of a row over every gateway of the site: memory is
    (N, slots), not (N, G) (at 10,000 tags and 1,000 gateways, 15 MB instead of 400 MB). A link
    new to a full tag takes the slot of the link heard longest ago; one still within the horizon
    lost that way is counted in ``evicted_fresh`` (raise ``slots`` if it grows).
    """

    def __init__(
        self,
        n_tags: int,
        n_gateways: int,
        *,
        tau_s: float = 3.0,
        horizon_s: float = 8.0,
        slots: int = 32,
    ) -> None:
        if tau_s <= 0 or horizon_s <= 0:
            raise ConfigError("window tau_s and horizon_s must be > 0")
        if slots < 1:
            raise ConfigError("window slots must be >= 1")
        self.n_tags, self.n_gateways = n_tags, n_gateways
        self.tau_s, self.horizon_s = tau_s, horizon_s
        self.slots = slots = min(slots, max(n_gateways, 1))
        shape = (n_tags, slots)
        self._gw = np.full(shape, -1, dtype=np.intp)  # gateway of each slot (-1: free)
        self._s = np.zeros(shape)  # decayed sum of rssi, referred to _ref
        self._w = np.zeros(shape)  # decayed weight, referred to _ref
        self._w2 = np.zeros(shape)  # decayed sum of squared weights, referred to _ref
        self._ref = np.zeros(shape)  # time the link's sums are referred to
        self._last = np.full(shape, -np.inf)  # newest observation time per link
        self.changed = np.zeros(n_tags, dtype=bool)  # tags with observations since take_changed
        self._cursor = 0  # take_changed with a limit resumes after the last tag it took
        self.gateway_last = np.full(n_gateways, -np.inf)  # newest observation of any tag
        self.evicted_fresh = 0  # links dropped for a new one while still within the horizon
        self.dropped = 0  # links of a batch beyond ``slots`` new links for one tag

    def add(self, obs: Observations) -> None:
        """Fold in observations (any order, any tags/gateways); indices must be in range."""
        if len(obs) == 0:
            return
        t = obs["t"].astype(np.float64)
        tag = obs["tag"].astype(np.intp)
        link = tag * self.n_gateways + obs["gateway"].astype(np.intp)
        t_ref = float(t.max())
        w = np.exp((t - t_ref) / self.tau_s)  # older packets of this batch count less
        order = np.argsort(link, kind="stable")
        ls = link[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        touched = ls[starts]  # distinct links of this batch, sorted by tag then gateway
        s_add = np.add.reduceat(w[order] * obs["rssi"][order], starts)
        w_add = np.add.reduceat(w[order], starts)
        w2_add = np.add.reduceat(w[order] ** 2, starts)
        newest = np.maximum.reduceat(t[order], starts)
        flat, keep = self._slots_of(touched // self.n_gateways, touched % self.n_gateways, t_ref)
        flat, s_add, w_add, w2_add, newest = (a[keep] for a in (flat, s_add, w_add, w2_add, newest))
        s, wt, w2, ref, last = (
            a.reshape(-1) for a in (self._s, self._w, self._w2, self._ref, self._last)
        )
        decay = np.exp(-np.maximum(t_ref - ref[flat], 0.0) / self.tau_s)
        s[flat] = s[flat] * decay + s_add
        wt[flat] = wt[flat] * decay + w_add
        w2[flat] = w2[flat] * decay * decay + w2_add
        ref[flat] = t_ref
        last[flat] = np.maximum(last[flat], newest)
        self.changed[tag] = True
        np.maximum.at(self.gateway_last, obs["gateway"], t)

    def _slots_of(
        self, tags: NDArray[np.intp], gws: NDArray[np.intp], now: float
    ) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        """Flat slot index (tag * slots + slot) of each distinct link (B,), sorted by tag; new
        links take free or stalest slots (reset), and ``keep`` (B,) is False for links beyond
        ``slots`` new ones of a tag in one batch."""
        hit = self._gw[tags] == gws[:, None]  # (B, L)
        found = hit.any(axis=1)
        slot = hit.argmax(axis=1)
        keep = np.ones(len(tags), dtype=bool)
        new = np.flatnonzero(~found)
        if len(new) == 0:
            return tags * self.slots + slot, keep
        tn = tags[new]
        first = np.r_[True, tn[1:] != tn[:-1]]
        group = np.cumsum(first) - 1  # (M,) row of each new link's tag in `owners`
        rank = np.arange(len(new)) - np.flatnonzero(first)[group]  # its place among them
        owners = tn[first]  # (U,) sorted
        age = self._last[owners].copy()  # (U, L): free (-inf) and stalest slots go first
        old = np.flatnonzero(found)  # links of this batch already held keep their slots
        row = np.searchsorted(owners, tags[old])
        mine = row < len(owners)
        mine[mine] = owners[row[mine]] == tags[old[mine]]
        age[row[mine], slot[old[mine]]] = np.inf
        pick = np.argsort(age, axis=1, kind="stable")  # (U, L)
        ok = rank < self.slots
        chosen = np.zeros(len(new), dtype=np.intp)
        chosen[ok] = pick[group[ok], rank[ok]]
        ok &= age[group, chosen] != np.inf
        self.dropped += int((~ok).sum())
        keep[new[~ok]] = False
        new, chosen = new[ok], chosen[ok]
        r = tags[new]
        stale_before = self._last[r, chosen] < now - self.horizon_s
        self.evicted_fresh += int(((self._gw[r, chosen] >= 0) & ~stale_before).sum())
        self._gw[r, chosen] = gws[new]
        for arr in (self._s, self._w, self._w2):
            arr[r, chosen] = 0.0
        self._ref[r, chosen] = now
        self._last[r, chosen] = -np.inf
        slot[new] = chosen
        return tags * self.slots + slot, keep

    def gateways_up(self, now: float) -> NDArray[np.bool_]:
        """(G,) gateways that heard any tag within the horizon: their silence about a tag means
        something; a gateway heard from by nobody may be down, and its silence must not count."""
        return np.asarray(self.gateway_last >= now - self.horizon_s)

    def take_changed(
        self, among: NDArray[np.bool_] | None = None, limit: int | None = None
    ) -> NDArray[np.intp]:
        """Sorted indices of tags with new observations since they were last taken (their flags
        are cleared); ``among`` (N,) bool: only those tags; ``limit``: at most so many, in
        turn (from the tag after the last one a limited call took, wrapping round), so that
        every tag is taken within a few calls. The others' flags stay."""
        idx = np.flatnonzero(self.changed if among is None else self.changed & among)
        if limit is not None and len(idx) > limit:
            turn = np.roll(idx, -int(np.searchsorted(idx, self._cursor)))[: max(limit, 0)]
            if len(turn):
                self._cursor = int(turn[-1]) + 1
            idx = np.sort(turn)
        self.changed[idx] = False
        return idx

    def snapshot(
        self,
        now: float,
        tags: NDArray[np.intp] | None = None,
        gateways: NDArray[np.intp] | None = None,
    ) -> Snapshot:
        """Smoothed RSSI of ``tags`` (default all) as seen at ``now``, dense (K, G); with
        ``gateways`` (G_b,) sorted indices, only those columns, (K, G_b) (a building's)."""
        idx = np.arange(self.n_tags) if tags is None else np.asarray(tags, dtype=np.intp)
        gw, n_cols = self._columns(idx, gateways)
        s, w, w2, last = self._s[idx], self._w[idx], self._w2[idx], self._last[idx]
        fresh = (gw >= 0) & (last >= now - self.horizon_s) & (w > 0) & (w2 > 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = s / np.where(w > 0, w, 1.0)
            n_eff = w * w / np.where(w2 > 0, w2, 1.0)
            age = np.maximum(now - last, 0.0)
            wgt = n_eff * np.exp(-age / self.tau_s)
        shape = (len(idx), n_cols)
        rssi = np.full(shape, np.nan)
        weight = np.zeros(shape)
        rows, cols = np.nonzero(fresh)
        rssi[rows, gw[rows, cols]] = mean[rows, cols]
        weight[rows, gw[rows, cols]] = wgt[rows, cols]
        newest = last.max(axis=1) if self.slots else np.full(len(idx), -np.inf)
        return Snapshot(idx, rssi, weight, newest)

    def newest(
        self, tags: NDArray[np.intp], gateways: NDArray[np.intp] | None = None
    ) -> NDArray[np.float64]:
        """(K, G) time of the newest observation of each link of ``tags`` (K,) that the window
        holds, dense (-inf: none; links beyond the horizon are still held until evicted); with
        ``gateways`` (G_b,) distinct indices, only those columns, (K, G_b)."""
        idx = np.asarray(tags, dtype=np.intp)
        gw, n_cols = self._columns(idx, gateways)
        out = np.full((len(idx), n_cols), -np.inf)
        rows, cols = np.nonzero(gw >= 0)
        out[rows, gw[rows, cols]] = self._last[idx][rows, cols]
        return out

    def _columns(
        self, idx: NDArray[np.intp], gateways: NDArray[np.intp] | None
    ) -> tuple[NDArray[np.intp], int]:
        """(K, slots) the output column of each slot of tags ``idx`` (-1: free, or a gateway
        not among ``gateways``), and the number of columns (G, or G_b with ``gateways``)."""
        gw = self._gw[idx]
        if gateways is None:
            return gw, self.n_gateways
        column = np.full(self.n_gateways + 1, -1, dtype=np.intp)  # [-1]: a free slot
        column[gateways] = np.arange(len(gateways))
        return column[gw], len(gateways)

    def heard(self, now: float, tags: NDArray[np.intp]) -> NDArray[np.intp]:
        """(K, slots) the gateways that heard each of ``tags`` within the horizon (-1: none)."""
        idx = np.asarray(tags, dtype=np.intp)
        gw = self._gw[idx]
        return np.where(self._last[idx] >= now - self.horizon_s, gw, -1)

    def forget(self, tags: NDArray[np.intp]) -> None:
        """Drop the history of some tags (e.g. after a door read placed them elsewhere)."""
        self._gw[tags] = -1
        self._s[tags] = 0.0
        self._w[tags] = 0.0
        self._w2[tags] = 0.0
        self._last[tags] = -np.inf
