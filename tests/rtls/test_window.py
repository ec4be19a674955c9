"""The RSSI window: time-weighted means per link, horizon, changed tags."""

from __future__ import annotations

import numpy as np
import pytest

from rtls.errors import ConfigError
from rtls.observations import OBS_DTYPE
from rtls.window import RssiWindow


def _obs(rows: list[tuple[float, int, int, float]]) -> np.ndarray:
    return np.array(rows, dtype=OBS_DTYPE)


def test_mean_of_simultaneous_packets_and_nan_for_unheard() -> None:
    w = RssiWindow(3, 4, tau_s=2.0, horizon_s=5.0)
    w.add(_obs([(10.0, 1, 0, -60.0), (10.0, 1, 0, -70.0), (10.0, 2, 0, -80.0)]))
    snap = w.snapshot(10.0)
    assert snap.rssi[0, 1] == pytest.approx(-65.0)
    assert snap.rssi[0, 2] == pytest.approx(-80.0)
    assert np.isnan(snap.rssi[0, 0])
    assert np.isnan(snap.rssi[1]).all()
    assert snap.weight[0, 1] == pytest.approx(2.0)
    assert snap.last_t[0] == 10.0
    assert snap.last_t[1] == -np.inf


def test_older_packets_weigh_less_across_batches() -> None:
    w = RssiWindow(1, 1, tau_s=2.0, horizon_s=50.0)
    w.add(_obs([(0.0, 0, 0, -80.0)]))
    w.add(_obs([(2.0, 0, 0, -60.0)]))
    a = np.exp(-1.0)  # weight of the first packet seen from t = 2
    expected = (a * -80.0 + -60.0) / (a + 1.0)
    assert w.snapshot(2.0).rssi[0, 0] == pytest.approx(expected)
    # the same two packets in one batch give the same mean
    v = RssiWindow(1, 1, tau_s=2.0, horizon_s=50.0)
    v.add(_obs([(2.0, 0, 0, -60.0), (0.0, 0, 0, -80.0)]))
    assert v.snapshot(2.0).rssi[0, 0] == pytest.approx(expected)


def test_horizon_makes_silent_links_unheard() -> None:
    w = RssiWindow(1, 2, tau_s=1.0, horizon_s=3.0)
    w.add(_obs([(0.0, 0, 0, -70.0), (2.5, 1, 0, -75.0)]))  # (t, gateway, tag, rssi)
    snap = w.snapshot(4.0)
    assert np.isnan(snap.rssi[0, 0])  # last heard 4 s ago > 3 s horizon
    assert snap.rssi[0, 1] == pytest.approx(-75.0)
    assert snap.weight[0, 0] == 0.0


def test_changed_tags_and_forget() -> None:
    w = RssiWindow(4, 2)
    w.add(_obs([(1.0, 0, 2, -70.0), (1.0, 1, 3, -71.0)]))
    assert w.take_changed().tolist() == [2, 3]
    assert w.take_changed().tolist() == []
    w.add(_obs([(1.5, 0, 1, -70.0), (1.5, 1, 3, -71.0)]))
    assert w.take_changed(np.array([False, False, True, True])).tolist() == [3]
    assert w.take_changed().tolist() == [1]  # the others' flags stayed


def test_a_limited_take_goes_round_the_tags_in_turn() -> None:
    w = RssiWindow(10, 2)
    taken: list[int] = []
    for k in range(5):  # every tag heard before each take, three taken at a time
        w.add(_obs([(float(k), 0, i, -70.0) for i in range(10)]))
        got = w.take_changed(limit=3).tolist()
        assert got == sorted(got) and len(got) == 3
        taken += got
    assert taken[:9] == list(range(9)) and taken[9:12] == [0, 1, 9]  # wrapped round, in order
    assert taken[12:] == [2, 3, 4]
    assert w.take_changed(limit=100).tolist() == [0, 1, 5, 6, 7, 8, 9]  # the rest, at once
    w.forget(np.array([2]))
    assert np.isnan(w.snapshot(1.0, np.array([2])).rssi).all()


def test_matches_a_direct_computation_on_random_data() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    obs = np.zeros(n, dtype=OBS_DTYPE)
    obs["t"] = np.sort(rng.uniform(0, 10, n))
    obs["gateway"] = rng.integers(0, 5, n)
    obs["tag"] = rng.integers(0, 7, n)
    obs["rssi"] = rng.normal(-70, 6, n)
    w = RssiWindow(7, 5, tau_s=2.0, horizon_s=100.0)
    for chunk in np.array_split(obs, 13):
        w.add(chunk)
    snap = w.snapshot(10.0)
    for tag, gw in [(0, 0), (3, 4), (6, 2)]:
        sel = (obs["tag"] == tag) & (obs["gateway"] == gw)
        wt = np.exp(-(10.0 - obs["t"][sel]) / 2.0)
        want = (wt * obs["rssi"][sel]).sum() / wt.sum()
        assert snap.rssi[tag, gw] == pytest.approx(want, abs=1e-3)
        # Kish's effective sample size, discounted by the time since the link's last packet
        age = 10.0 - obs["t"][sel].max()
        n_eff = wt.sum() ** 2 / (wt**2).sum() * np.exp(-age / 2.0)
        assert snap.weight[tag, gw] == pytest.approx(n_eff, rel=1e-6)


def test_effective_packets_of_a_steady_stream() -> None:
    # one packet every 0.5 s for 30 s: the weights form a geometric series of ratio a, and the
    # effective number of packets is (1 + a) / (1 - a), more for a longer time constant
    counts = []
    for tau in (1.0, 3.0):
        w = RssiWindow(1, 1, tau_s=tau, horizon_s=5.0)
        for k in range(61):
            w.add(_obs([(0.5 * k, 0, 0, -70.0 + (k % 3))]))
        a = np.exp(-0.5 / tau)
        counts.append(w.snapshot(30.0).weight[0, 0])
        assert counts[-1] == pytest.approx((1 + a) / (1 - a), rel=1e-3)
        geometric = a ** np.arange(61)
        assert counts[-1] == pytest.approx(geometric.sum() ** 2 / (geometric**2).sum(), rel=1e-6)
        # heard last 1 s ago: the count is discounted by exp(-1 / tau)
        assert w.snapshot(31.0).weight[0, 0] == pytest.approx(counts[-1] * np.exp(-1.0 / tau))
    assert counts[1] > counts[0]


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        RssiWindow(1, 1, tau_s=0)


def test_gateways_up_are_those_heard_within_the_horizon() -> None:
    w = RssiWindow(2, 3, horizon_s=5.0)
    w.add(_obs([(0.0, 0, 0, -70.0), (8.0, 2, 1, -80.0)]))
    assert w.gateways_up(10.0).tolist() == [False, False, True]
    assert w.gateways_up(4.0).tolist() == [True, False, True]


def test_few_slots_per_tag_give_the_same_window_as_one_per_gateway() -> None:
    # a tag walking past 40 gateways, heard by at most 3 at a time: 4 slots suffice
    rng = np.random.default_rng(7)
    few = RssiWindow(2, 40, tau_s=1.0, horizon_s=2.0, slots=4)
    all_ = RssiWindow(2, 40, tau_s=1.0, horizon_s=2.0, slots=40)
    for step in range(60):
        t = 0.5 * step
        near = [(step // 5 + k) % 40 for k in range(3)]  # moves on every 2.5 s
        rows = [(t, g, tag, float(rng.normal(-70, 4))) for tag in (0, 1) for g in near]
        for w in (few, all_):
            w.add(_obs(rows))
        a, b = few.snapshot(t), all_.snapshot(t)
        assert np.array_equal(np.isnan(a.rssi), np.isnan(b.rssi))
        assert np.allclose(np.nan_to_num(a.rssi), np.nan_to_num(b.rssi))
        assert np.allclose(a.weight, b.weight)
    assert few.evicted_fresh == 0 and few.dropped == 0
    assert few._gw.shape == (2, 4)


def test_a_full_tag_gives_up_its_stalest_link_and_counts_it() -> None:
    w = RssiWindow(1, 5, tau_s=1.0, horizon_s=10.0, slots=2)
    w.add(_obs([(0.0, 0, 0, -60.0)]))
    w.add(_obs([(1.0, 1, 0, -70.0)]))
    w.add(_obs([(2.0, 2, 0, -80.0)]))  # evicts gateway 0, heard 2 s ago (within the horizon)
    snap = w.snapshot(2.0)
    assert np.isnan(snap.rssi[0, 0])
    assert snap.rssi[0, 1] == pytest.approx(-70.0) and snap.rssi[0, 2] == pytest.approx(-80.0)
    assert w.evicted_fresh == 1
    w.add(_obs([(3.0, 3, 0, -61.0), (3.0, 4, 0, -62.0), (3.0, 0, 0, -63.0)]))  # 3 new, 2 slots
    assert w.dropped == 1
    assert int((~np.isnan(w.snapshot(3.0).rssi[0])).sum()) == 2


def test_newest_packet_of_each_link_is_kept_per_slot() -> None:
    w = RssiWindow(3, 5, slots=2)
    w.add(_obs([(1.0, 0, 1, -60.0), (2.0, 0, 1, -61.0), (1.5, 3, 1, -70.0)]))
    w.add(_obs([(3.0, 4, 1, -65.0), (0.5, 2, 0, -80.0)]))  # tag 1's third link: stalest goes
    got = w.newest(np.array([1, 0, 2]))
    want = np.full((3, 5), -np.inf)
    want[0, 0], want[0, 4], want[1, 2] = 2.0, 3.0, 0.5  # gateway 3 (1.5 s) was evicted
    assert np.array_equal(got, want)
    some = np.array([4, 0])
    assert np.array_equal(w.newest(np.array([1, 0, 2]), some), want[:, some])
