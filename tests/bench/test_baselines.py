"""Baseline locators of the accuracy bench (bench/baselines.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines import least_squares_fix, weighted_centroid, window_means

GW = np.array([[0.0, 0.0, 2.5], [10.0, 0.0, 2.5], [10.0, 10.0, 2.5], [0.0, 10.0, 2.5]])


def model_rssi(xy: np.ndarray, z: float, p0: float = -59.0, n: float = 2.5) -> np.ndarray:
    d = np.sqrt(((xy[:, None, :] - GW[None, :, :2]) ** 2).sum(-1) + (z - GW[None, :, 2]) ** 2)
    return np.asarray(p0 - 10 * n * np.log10(d))


def test_weighted_centroid_of_a_symmetric_square_is_its_centre() -> None:
    xy, floor = weighted_centroid(model_rssi(np.array([[5.0, 5.0]]), 1.0), GW, -59.0, 2.5)
    assert xy[0] == pytest.approx([5.0, 5.0])
    assert floor[0] == 0


def test_weighted_centroid_leans_to_the_louder_gateways_and_skips_other_floors() -> None:
    rssi = model_rssi(np.array([[2.0, 3.0]]), 1.0)
    xy, _ = weighted_centroid(rssi, GW, -59.0, 2.5)
    assert xy[0, 0] < 5.0 and xy[0, 1] < 5.0
    # a weak gateway on another floor is ignored; nothing heard gives NaN and floor -1
    gw2 = np.vstack([GW, [[50.0, 50.0, 6.5]]])
    rssi2 = np.hstack([rssi, [[-90.0]]])
    xy2, floor2 = weighted_centroid(rssi2, gw2, -59.0, 2.5, gateway_floor=[0, 0, 0, 0, 1])
    assert xy2[0] == pytest.approx(xy[0]) and floor2[0] == 0
    none, fl = weighted_centroid(np.full((1, 4), np.nan), GW, -59.0, 2.5)
    assert np.isnan(none).all() and fl[0] == -1


def test_least_squares_recovers_a_noise_free_position() -> None:
    truth = np.array([[3.0, 7.0]])
    xy = least_squares_fix(
        model_rssi(truth, 1.0)[0], GW, -59.0, 2.5, tag_z=1.0, bounds=(0.0, 0.0, 10.0, 10.0)
    )
    assert xy == pytest.approx(truth[0], abs=1e-3)


def test_least_squares_needs_three_gateways() -> None:
    rssi = model_rssi(np.array([[3.0, 7.0]]), 1.0)[0]
    rssi[:2] = np.nan
    xy = least_squares_fix(rssi, GW, -59.0, 2.5, tag_z=1.0, bounds=(0.0, 0.0, 10.0, 10.0))
    assert np.isnan(xy).all()


def test_window_means_average_each_gateway_per_window() -> None:
    t = np.array([100.0, 100.2, 100.9, 101.5, 103.1])
    gw = np.array([0, 0, 1, 1, 0])
    rssi = np.array([-60.0, -70.0, -80.0, -81.0, -50.0])
    centres, means = window_means(t, gw, rssi, 2, 1.0)
    assert centres == pytest.approx([100.5, 101.5, 103.5])  # the empty window is left out
    assert means[0] == pytest.approx([-65.0, -80.0])
    assert np.isnan(means[1, 0]) and means[1, 1] == -81.0
    assert means[2, 0] == -50.0 and np.isnan(means[2, 1])
