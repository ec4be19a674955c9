"""Tests of the simulated radio channel (gateways/radio.py)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pytest

from gateways.radio import (
    ADV_CHANNELS,
    FloorWalls,
    Heard,
    RadioChannel,
    RadioError,
    RadioParams,
    WallLossMaps,
    fading_db,
    fading_mean_db,
    mean_rssi,
)
from rtls.errors import ConfigError, RtlsError
from rtls.geometry import segment_distance
from rtls.walls import wall_loss_raster

QUIET = RadioParams(
    shadowing_sigma_db=0.0, fading=False, loss_probability=0.0, sensitivity_dbm=-127.0
)
RAYLEIGH_DB_STD = 10.0 / math.log(10.0) * math.pi / math.sqrt(6.0)  # std of 10 log10 Exp(1)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _square_gateways(side: float = 30.0, z: float = 3.0) -> np.ndarray:
    return np.array([[0.0, 0.0, z], [side, 0.0, z], [0.0, side, z], [side, side, z]])


def _channel(
    params: RadioParams,
    n_tags: int,
    seed: int = 1,
    gateways: np.ndarray | None = None,
    **kwargs: Any,
) -> RadioChannel:
    gw = _square_gateways() if gateways is None else gateways
    floors = kwargs.pop("gateway_floor", np.zeros(gw.shape[0], dtype=int))
    n = kwargs.pop("gateway_n", 2.5)
    offset = kwargs.pop("gateway_rx_offset", 0.0)
    walls = kwargs.pop("walls", None)
    return RadioChannel(
        gw, floors, n, offset, walls, params, n_tags, np.random.default_rng(seed), **kwargs
    )


def _tags_in_square(rng: np.random.Generator, count: int, side: float = 30.0) -> np.ndarray:
    return np.column_stack([rng.uniform(0.0, side, (count, 2)), np.full(count, 1.0)])


def _dense(heard: Heard, a: int, g: int) -> np.ndarray:
    """Heard RSSI as an (A, G) float array, NaN where nothing was heard."""
    out = np.full((a, g), np.nan)
    out[heard.adv, heard.gateway] = heard.rssi
    return out


# --- parameters and pure functions -------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        {"shadowing_sigma_db": -1.0},
        {"shadowing_corr_m": 0.0},
        {"rician_k": -0.5},
        {"loss_probability": 1.0},
        {"loss_probability": float("nan")},
        {"sensitivity_dbm": -200.0},
        {"floor_loss_db": -3.0},
        {"d_min_m": 0.0},
        {"raster_resolution_m": float("inf")},
        {"raster_interpolation": "cubic"},
    ],
)
def test_params_reject_out_of_range_values(field: dict[str, Any]) -> None:
    name = next(iter(field))
    with pytest.raises(ConfigError, match=name):
        RadioParams(**field)


def test_mean_rssi_follows_log_distance_floor_and_wall_terms() -> None:
    gw = np.array([[0.0, 0.0, 3.0]])
    tags = np.array([[6.0, 8.0, 3.0], [6.0, 8.0, 3.0], [0.2, 0.0, 3.0], [6.0, 8.0, 3.0]])
    floors = np.array([0, 2, 0, 0])
    walls = np.array([[0.0], [0.0], [0.0], [4.5]])
    got = mean_rssi(
        tags, floors, -59.0, gw, [0], [2.0], [3.0], walls, floor_loss_db=12.0, d_min_m=1.0
    )
    at_10m = -59.0 + 3.0 - 10.0 * 2.0 * math.log10(10.0)
    expected = [at_10m, at_10m - 2 * 12.0, -59.0 + 3.0, at_10m - 4.5]  # d < d_min clamps
    np.testing.assert_allclose(got[:, 0], expected, atol=1e-9)


def test_fading_is_zero_mean_in_db_with_rayleigh_spread() -> None:
    rng = np.random.default_rng(7)
    x = fading_db(rng, 0.0, (200_000,))
    assert abs(x.mean()) < 0.06
    assert x.std() == pytest.approx(RAYLEIGH_DB_STD, rel=0.02)


def test_rician_fading_narrows_with_k() -> None:
    rng = np.random.default_rng(8)
    stds = [fading_db(rng, k, (100_000,)).std() for k in (0.0, 5.0, 100.0)]
    means = [fading_db(rng, k, (100_000,)).mean() for k in (2.0, 100.0)]
    assert stds[0] > stds[1] > stds[2]
    k = 100.0  # delta method: var|h|² = (2K + 1) / (K + 1)², dB std = 10/ln10 * that std
    assert stds[2] == pytest.approx(10 / math.log(10) * math.sqrt(2 * k + 1) / (k + 1), rel=0.1)
    assert max(abs(m) for m in means) < 0.05
    assert fading_mean_db(1e-7) == pytest.approx(fading_mean_db(0.0), abs=1e-5)


# --- path loss and shadowing -------------------------------------------------------------------


@pytest.mark.parametrize("fading", [False, True])
def test_fit_recovers_exponent_and_intercept(fading: bool) -> None:
    n = np.array([1.8, 2.5, 3.0, 2.2])
    offset = np.array([0.0, -4.0, 2.0, 1.5])
    params = RadioParams(fading=fading, loss_probability=0.0, sensitivity_dbm=-127.0)
    count = 8000  # slope SE ≈ 0.035, intercept SE ≈ 0.5 dB with fading on
    ch = _channel(params, count, seed=3, gateway_n=n, gateway_rx_offset=offset)
    tags = _tags_in_square(np.random.default_rng(4), count)
    heard = ch.hear(np.arange(count), tags, 0, -59.0)
    d = np.linalg.norm(tags[heard.adv] - ch.gateway_xyz[heard.gateway], axis=1)
    for g in range(4):
        sel = heard.gateway == g
        slope, intercept = np.polyfit(10 * np.log10(d[sel]), heard.rssi[sel].astype(float), 1)
        assert -slope == pytest.approx(n[g], abs=0.15)
        assert intercept == pytest.approx(-59.0 + offset[g], abs=2.0)


def test_shadowing_spread_matches_sigma() -> None:
    params = RadioParams(
        shadowing_sigma_db=6.0, fading=False, loss_probability=0.0, sensitivity_dbm=-127.0
    )
    count = 2000
    ch = _channel(params, count, seed=5)
    tags = _tags_in_square(np.random.default_rng(6), count)
    got = _dense(ch.hear(np.arange(count), tags, 0, -59.0), count, 4)
    residual = got - ch.mean_rssi(tags, 0, -59.0)
    assert not np.isnan(residual).any()
    assert abs(residual.mean()) < 0.3
    assert residual.std() == pytest.approx(math.sqrt(36.0 + 1 / 12), rel=0.05)  # + rounding


def test_static_tag_keeps_its_shadowing() -> None:
    params = RadioParams(fading=False, loss_probability=0.0, sensitivity_dbm=-127.0)
    count = 300
    ch = _channel(params, count, seed=9)
    tags = _tags_in_square(np.random.default_rng(10), count)
    first = _dense(ch.hear(np.arange(count), tags, 0, -59.0), count, 4)
    second = _dense(ch.hear(np.arange(count), tags, 0, -59.0), count, 4)
    np.testing.assert_array_equal(first, second)
    # The same static tag twice within one batch: identical too.
    twice = np.r_[np.arange(count), np.arange(count)]
    both = _dense(ch.hear(twice, np.r_[tags, tags], 0, -59.0), 2 * count, 4)
    np.testing.assert_array_equal(both[:count], both[count:])
    np.testing.assert_array_equal(both[:count], first)


def _link_correlation(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.corrcoef(before.ravel(), after.ravel())[0, 1])


@pytest.mark.parametrize(("moved", "expected"), [(3.0, math.exp(-1.0)), (60.0, 0.0)])
def test_shadowing_decorrelates_with_distance_moved(moved: float, expected: float) -> None:
    params = RadioParams(shadowing_corr_m=3.0)
    count = 1000
    ch = _channel(params, count, seed=11)
    tags = _tags_in_square(np.random.default_rng(12), count)
    ch.hear(np.arange(count), tags, 0, -59.0)
    before = ch.shadowing_db()
    ch.hear(np.arange(count), tags + np.array([moved, 0.0, 0.0]), 0, -59.0)
    after = ch.shadowing_db()
    assert _link_correlation(before, after) == pytest.approx(expected, abs=0.07)
    assert np.nanstd(after) == pytest.approx(4.0, rel=0.05)  # stationary: sigma is kept


def test_repeated_tag_in_one_batch_evolves_in_order() -> None:
    count = 1000
    ch = _channel(RadioParams(), count, seed=13)
    tags = _tags_in_square(np.random.default_rng(14), count)
    ch.hear(np.arange(count), tags, 0, -59.0)
    start = ch.shadowing_db()
    far = tags + np.array([60.0, 0.0, 0.0])
    ch.hear(np.r_[np.arange(count), np.arange(count)], np.r_[far, far], 0, -59.0)
    assert abs(_link_correlation(start, ch.shadowing_db())) < 0.07


def test_reset_shadowing_draws_fresh_values() -> None:
    count = 1000
    ch = _channel(RadioParams(), count, seed=15)
    tags = _tags_in_square(np.random.default_rng(16), count)
    ch.hear(np.arange(count), tags, 0, -59.0)
    before = ch.shadowing_db()
    ch.reset_shadowing(np.arange(10))
    assert np.isnan(ch.shadowing_db()[:10]).all()
    ch.reset_shadowing()
    ch.hear(np.arange(count), tags, 0, -59.0)
    assert abs(_link_correlation(before, ch.shadowing_db())) < 0.07


# --- walls and floors --------------------------------------------------------------------------


def test_wall_lowers_mean_rssi_by_its_loss() -> None:
    gw = np.array([[0.0, 0.0, 3.0]])
    walls = {
        0: FloorWalls(
            np.array([[5.0, -40.0, 5.0, 40.0]]), np.array([7.0]), bounds=(-10.0, -30.0, 30.0, 30.0)
        )
    }
    rng = np.random.default_rng(17)
    behind = np.c_[rng.uniform(5.6, 29.0, 200), rng.uniform(-29.0, 29.0, 200), np.ones(200)]
    front = np.c_[rng.uniform(-9.0, 4.4, 200), behind[:, 1:]]
    xyz = np.r_[behind, front]
    with_wall = _channel(QUIET, 400, gateways=gw, walls=walls)
    without = _channel(QUIET, 400, gateways=gw)
    drop = without.mean_rssi(xyz, 0, -59.0) - with_wall.mean_rssi(xyz, 0, -59.0)
    np.testing.assert_allclose(drop[:200], 7.0, atol=1e-4)
    np.testing.assert_allclose(drop[200:], 0.0, atol=1e-4)
    heard_drop = _dense(without.hear(np.arange(400), xyz, 0, -59.0), 400, 1) - _dense(
        with_wall.hear(np.arange(400), xyz, 0, -59.0), 400, 1
    )
    np.testing.assert_array_equal(heard_drop[:200], 7.0)
    np.testing.assert_array_equal(heard_drop[200:], 0.0)


def _random_walls(rng: np.random.Generator, count: int, side: float) -> FloorWalls:
    start = rng.uniform(0.0, side, (count, 2))
    angle = rng.uniform(0.0, np.pi, count)
    length = rng.uniform(1.0, 12.0, count)
    end = start + length[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    return FloorWalls(np.c_[start, end], rng.uniform(2.0, 12.0, count))


def test_raster_cells_equal_exact_crossings() -> None:
    rng = np.random.default_rng(18)
    fw = _random_walls(rng, 40, 30.0)
    gw = np.c_[rng.uniform(0.0, 30.0, (3, 2)), np.full(3, 3.0)]
    maps = WallLossMaps(gw, [0, 0, 0], {0: fw}, 0.5)
    for g in range(3):
        grid = maps.raster(g)
        ny, nx = grid.shape
        origin = maps.grids[0].origin
        xs = origin[0] + (np.arange(nx) + 0.5) * 0.5
        ys = origin[1] + (np.arange(ny) + 0.5) * 0.5
        cells = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        exact = maps.exact(cells)[:, g].reshape(ny, nx)
        assert exact.max() > 0
        np.testing.assert_allclose(grid, exact, atol=1e-3)
        direct = wall_loss_raster(gw[g, :2], fw.segments, fw.loss_db, origin, (nx, ny), 0.5)
        np.testing.assert_allclose(direct, exact, atol=1e-9)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_raster_lookup_agrees_with_exact_away_from_walls_and_shadow_edges(
    interpolation: Literal["nearest", "bilinear"],
) -> None:
    rng = np.random.default_rng(19)
    fw = _random_walls(rng, 25, 30.0)
    gw = np.array([[12.3, 14.1, 3.0], [3.7, 25.2, 3.0]])
    maps = WallLossMaps(gw, [0, 0], {0: fw}, 0.5, interpolation)
    pts = rng.uniform(0.0, 30.0, (4000, 2))
    looked_up = maps.lookup(pts)
    exact = maps.exact(pts)
    for g in range(2):
        ends = np.r_[fw.segments[:, :2], fw.segments[:, 2:]]
        away = ends - gw[g, :2]
        rays = np.c_[ends, ends + 1e3 * away / np.linalg.norm(away, axis=1, keepdims=True)]
        clear = (segment_distance(pts, np.r_[fw.segments, rays]) > 0.75).all(axis=1)
        assert clear.sum() > 500
        np.testing.assert_allclose(looked_up[clear, g], exact[clear, g], atol=1e-3)


def test_floor_loss_counts_floors_crossed_plus_gateway_floor_walls() -> None:
    gw = np.array([[0.0, 0.0, 3.0]])
    walls = {
        0: FloorWalls(np.array([[5.0, -40.0, 5.0, 40.0]]), np.array([6.0])),
        1: FloorWalls(np.array([[2.0, -40.0, 2.0, 40.0]]), np.array([30.0])),
    }
    params = RadioParams(floor_loss_db=14.0)
    ch = _channel(params, 1, gateways=gw, walls=walls)
    # Same 3-D distance (5 m) to the gateway; the upper tags are on floors 1 and 2.
    xyz = np.array([[4.0, 0.0, 0.0], [4.0, 0.0, 6.0], [0.0, 4.0, 6.0], [4.0, 0.0, 0.0]])
    got = ch.mean_rssi(xyz, [0, 1, 1, 2], -59.0)[:, 0]
    np.testing.assert_allclose(got[0] - got[1:], [14.0, 14.0, 28.0], atol=1e-4)
    # Cross-floor: the gateway floor's wall at the tag's (x, y) counts, the tag floor's does not.
    behind = ch.mean_rssi(np.array([[8.0, 0.0, 6.0], [8.0, 0.0, 0.0]]), [1, 0], -59.0)[:, 0]
    plain = mean_rssi(
        np.array([[8.0, 0.0, 6.0]]), [1], -59.0, gw, [0], [2.5], [0.0], floor_loss_db=14.0
    )
    assert behind[0] == pytest.approx(plain[0, 0] - 6.0, abs=1e-4)


# --- what is heard -----------------------------------------------------------------------------


def _ring(count: int, radius: float, z: float = 3.0) -> np.ndarray:
    angle = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle), np.full(count, z)])


@pytest.mark.parametrize("loss", [0.0, 0.25])
def test_sensitivity_and_loss_give_expected_heard_fraction(loss: float) -> None:
    gw = np.array([[0.0, 0.0, 3.0]])
    params = RadioParams(fading=False, loss_probability=loss, sensitivity_dbm=-95.0)
    count = 6000
    ch = _channel(params, count, seed=20, gateways=gw, gateway_n=2.0)
    radius = 10 ** ((-59.0 + 93.0) / 20.0)  # mean RSSI -93 dBm: 2 dB over sensitivity
    heard = ch.hear(np.arange(count), _ring(count, radius), 0, -59.0)
    expected = (1.0 - loss) * _phi(2.0 / 4.0)
    assert len(heard) / count == pytest.approx(expected, abs=0.03)
    assert heard.rssi.min() >= -95


def test_without_randomness_sensitivity_is_a_sharp_threshold() -> None:
    gw = np.array([[0.0, 0.0, 3.0]])
    params = RadioParams(shadowing_sigma_db=0.0, fading=False, loss_probability=0.0)
    ch = _channel(params, 200, gateways=gw, gateway_n=2.0)
    radii = np.r_[np.full(100, 40.0), np.full(100, 70.0)]  # -91 dBm and -95.9 dBm
    xyz = np.c_[radii, np.zeros(200), np.full(200, 3.0)]
    heard = ch.hear(np.arange(200), xyz, 0, -59.0)
    np.testing.assert_array_equal(heard.adv, np.arange(100))


def test_powered_off_gateways_hear_nothing() -> None:
    params = RadioParams(loss_probability=0.0, sensitivity_dbm=-127.0)
    count = 200
    ch = _channel(params, count, seed=21)
    tags = _tags_in_square(np.random.default_rng(22), count)
    ch.set_gateway_up([1], False)
    heard = ch.hear(np.arange(count), tags, 0, -59.0, gateway_up=np.array([1, 1, 0, 1], bool))
    assert set(heard.gateway.tolist()) == {0, 3}
    ch.set_gateway_up(np.ones(4, bool), True)
    assert set(ch.hear(np.arange(count), tags, 0, -59.0).gateway.tolist()) == {0, 1, 2, 3}
    ch.set_gateway_up(np.ones(4, bool), False)
    assert len(ch.hear(np.arange(count), tags, 0, -59.0)) == 0


def test_outputs_are_typed_ordered_and_clipped() -> None:
    count = 3000
    ch = _channel(RadioParams(), count, seed=23)
    tags = _tags_in_square(np.random.default_rng(24), count)
    tags[0] = ch.gateway_xyz[0]
    heard = ch.hear(np.arange(count), tags, 0, np.r_[30.0, np.full(count - 1, -59.0)])
    assert heard.rssi.dtype == np.int8
    assert heard.channel.dtype == np.uint8
    assert heard.rssi.min() >= -95
    assert heard.rssi.max() == 20  # the +30 dBm tag on top of a gateway is clipped
    key = heard.adv * 4 + heard.gateway
    assert (np.diff(key) > 0).all()
    share = np.bincount(heard.channel, minlength=40)[ADV_CHANNELS] / len(heard)
    assert share.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(share, 1 / 3, atol=0.02)


def test_same_seed_same_output_other_seed_differs() -> None:
    count = 500
    tags = _tags_in_square(np.random.default_rng(25), count)
    runs = []
    for seed in (1, 1, 2):
        ch = _channel(RadioParams(), count, seed=seed)
        runs.append([ch.hear(np.arange(count), tags + 0.1 * i, 0, -59.0) for i in range(3)])
    for a, b in zip(runs[0], runs[1], strict=True):
        for name in ("adv", "gateway", "rssi", "channel"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not all(
        len(a) == len(c) and np.array_equal(a.rssi, c.rssi)
        for a, c in zip(runs[0], runs[2], strict=True)
    )


def test_shared_wall_maps_give_the_same_mean() -> None:
    rng = np.random.default_rng(26)
    walls = {0: _random_walls(rng, 10, 30.0)}
    gw = _square_gateways()
    maps = WallLossMaps(gw, np.zeros(4, int), walls, 0.5)
    own = _channel(QUIET, 1, walls=walls)
    shared = _channel(QUIET, 1, wall_maps=maps)
    tags = _tags_in_square(rng, 50)
    np.testing.assert_array_equal(own.mean_rssi(tags, 0, -59.0), shared.mean_rssi(tags, 0, -59.0))
    with pytest.raises(ConfigError, match="wall_maps"):
        _channel(QUIET, 1, gateways=gw + 1.0, wall_maps=maps)


# --- validation --------------------------------------------------------------------------------


def _good_hear_args() -> dict[str, Any]:
    return {
        "tag_index": np.array([0, 1]),
        "tag_xyz": np.array([[1.0, 2.0, 1.0], [3.0, 4.0, 1.0]]),
        "tag_floor": np.array([0, 0]),
        "tx_power_1m": np.array([-59.0, -59.0]),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tag_xyz": np.zeros((2, 2))}, "tag_xyz"),
        ({"tag_xyz": np.array([[1.0, np.nan, 1.0], [3.0, 4.0, 1.0]])}, "NaN"),
        ({"tag_index": np.array([0, 5])}, "tag indices"),
        ({"tag_index": np.array([0.0, 1.0])}, "tag indices"),
        ({"tag_index": np.array([0, 1, 1])}, "tag_index"),
        ({"tag_floor": np.array([0.5, 0.0])}, "tag_floor"),
        ({"tag_floor": np.array([0, 0, 0])}, "tag_floor"),
        ({"tx_power_1m": np.array([-59.0, np.inf])}, "tx_power_1m"),
        ({"gateway_up": np.array([True, False])}, "gateway_up"),
    ],
)
def test_hear_rejects_bad_input(change: dict[str, Any], message: str) -> None:
    ch = _channel(RadioParams(), 3)
    args = _good_hear_args() | change
    with pytest.raises(RadioError, match=message) as info:
        ch.hear(**args)
    assert isinstance(info.value, RtlsError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateways": np.array([[0.0, np.nan, 3.0]])}, "gateway_xyz"),
        ({"gateway_n": [2.0, 2.0, 0.0, 2.0]}, "gateway_n"),
        ({"gateway_rx_offset": [0.0, 1.0]}, "gateway_rx_offset"),
        ({"gateway_floor": [0, 0, 0.5, 0]}, "gateway_floor"),
        ({"walls": {0: "not walls"}}, "FloorWalls"),
    ],
)
def test_channel_rejects_bad_configuration(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _channel(RadioParams(), 3, **change)


def test_floor_walls_validate_shapes_and_values() -> None:
    with pytest.raises(ConfigError, match="shape"):
        FloorWalls(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ConfigError, match="loss_db"):
        FloorWalls(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ConfigError, match="finite"):
        FloorWalls(np.array([[0.0, 0.0, 1.0, np.nan]]), np.array([3.0]))
    with pytest.raises(ConfigError, match="bounds"):
        FloorWalls(np.zeros((1, 4)), np.ones(1), bounds=(0.0, 0.0, -1.0, 5.0))
