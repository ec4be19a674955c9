"""Batched locator: exact recovery, efficiency against the Cramér–Rao bound, floor choice,
unknown rules, weights, and agreement with scipy's least squares on the same cost."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.special import log_ndtr

from gateways.radio import RadioChannel, RadioParams
from rtls.bounds import crlb_rmse
from rtls.errors import ConfigError
from rtls.locate import (
    Anchors,
    Fix,
    LocateError,
    Locator,
    LocatorParams,
    choose_floor,
    link_variance,
    locate,
)
from rtls.site import load_site
from rtls.solver import (
    AXX,
    AXY,
    AYY,
    COST,
    FIT,
    GX,
    GY,
    HXX,
    HXY,
    HYY,
    ROWS,
    Box,
    Censored,
    Solver,
)

P0, N_EXP, SIGMA = -59.0, 2.5, 4.0
CEILING, TAG_Z = 2.8, 1.0
ROOM = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])


def room_anchors(bounds: tuple[float, float, float, float] = (0.0, 0.0, 10.0, 10.0)) -> Anchors:
    xyz = np.c_[ROOM, np.full(4, CEILING)]
    return Anchors(xyz, np.zeros(4, dtype=int), P0, N_EXP, [0.0], [bounds])


def grid_anchors(p0: np.ndarray | float = P0, n: np.ndarray | float = N_EXP) -> Anchors:
    """Twelve ceiling gateways on a 10 m grid over a 30 m × 20 m floor."""
    gxy = np.array([[x, y] for x in (0.0, 10.0, 20.0, 30.0) for y in (0.0, 10.0, 20.0)])
    xyz = np.c_[gxy, np.full(len(gxy), CEILING)]
    return Anchors(xyz, np.zeros(len(gxy), dtype=int), p0, n, [0.0], [(0.0, 0.0, 30.0, 20.0)])


def model_rssi(anchors: Anchors, xy: np.ndarray, floor: np.ndarray | int = 0) -> np.ndarray:
    """Exact log-distance RSSI (N, G), no noise; other floors' gateways are not heard."""
    fl = np.broadcast_to(np.asarray(floor), (xy.shape[0],))
    z = anchors.floor_elevation[fl] + TAG_Z
    d = np.sqrt(
        ((xy[:, None, :] - anchors.xyz[None, :, :2]) ** 2).sum(axis=2)
        + (z[:, None] - anchors.xyz[None, :, 2]) ** 2
    )
    rssi = anchors.p0 - 10.0 * anchors.n * np.log10(np.maximum(d, 1.0))
    return np.where(anchors.floor[None, :] == fl[:, None], rssi, np.nan)


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


# -- exact model ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["room", "grid", "grid-calibrated"])
def test_exact_rssi_gives_the_true_positions(layout: str) -> None:
    rng = np.random.default_rng(0)
    if layout == "room":
        anchors = room_anchors()
        xy = rng.uniform(0.5, 9.5, (500, 2))
    else:
        p0 = rng.uniform(-65, -55, 12) if layout == "grid-calibrated" else P0
        n = rng.uniform(2.0, 3.0, 12) if layout == "grid-calibrated" else N_EXP
        anchors = grid_anchors(p0, n)
        xy = rng.uniform(0.5, [29.5, 19.5], (500, 2))
    fix = locate(model_rssi(anchors, xy), anchors)
    err = np.linalg.norm(fix.xy - xy, axis=1)
    assert err.max() < 0.01
    assert fix.known.all()
    assert (fix.floor == 0).all()
    assert (fix.n_used == anchors.n_gateways).all()
    assert (fix.residual_rms < 1e-3).all()


def test_initial_guess_from_previous_fix_is_used_on_the_same_floor() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(1)
    xy = rng.uniform(1, [29, 19], (200, 2))
    rssi = model_rssi(anchors, xy)
    zero_iter = Locator(anchors, LocatorParams(iterations=0))
    cold = zero_iter.locate(rssi)
    warm = zero_iter.locate(rssi, initial_xy=xy, initial_floor=np.zeros(200, dtype=int))
    assert np.abs(warm.xy - xy).max() < 1e-9  # started (and stayed) at the truth
    assert np.abs(cold.xy - xy).max() > 0.1  # the centroid alone is not the answer
    other_floor = zero_iter.locate(rssi, initial_xy=xy, initial_floor=np.ones(200, dtype=int))
    np.testing.assert_allclose(other_floor.xy, cold.xy)  # previous fix on another floor: ignored


def huber(r: np.ndarray, scale: float) -> np.ndarray:
    """Huber's ρ of residuals r with threshold ``scale``: r² inside, 2 scale |r| - scale² out."""
    return np.asarray(r * r - np.maximum(np.abs(r) - scale, 0.0) ** 2)


@pytest.mark.parametrize("robust_k", [None, 2.0, 1.5])
def test_agrees_with_scipy_least_squares_on_the_same_cost(robust_k: float | None) -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(2)
    xy = rng.uniform(3, [27, 17], (40, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((40, 12))
    rssi[rng.random((40, 12)) < 0.2] = np.nan
    rssi[:, 4] += 15.0 * (rng.random(40) < 0.5)  # some outliers for Huber to tame
    params = LocatorParams(iterations=20, robust_k=robust_k, censored=False)
    fix = Locator(anchors, params).locate(rssi)
    g = anchors.xyz
    # scipy's cost is ½ Σ ρ((r / f_scale)²) f_scale², its "huber" ρ with f_scale = k σ is ours
    scale = np.inf if robust_k is None else robust_k * SIGMA
    loss = "linear" if robust_k is None else "huber"
    for i in range(40):
        heard = np.isfinite(rssi[i])

        def residual(p: np.ndarray, i: int = i, heard: np.ndarray = heard) -> np.ndarray:
            d = np.sqrt(((p - g[heard, :2]) ** 2).sum(axis=1) + (TAG_Z - g[heard, 2]) ** 2)
            return np.asarray(rssi[i, heard] - (P0 - 10 * N_EXP * np.log10(d)))

        ref = least_squares(
            residual, fix.xy[i], bounds=([0, 0], [30, 20]), loss=loss,
            f_scale=1.0 if robust_k is None else scale,
        )  # fmt: skip
        cost_ours = float(np.sum(huber(residual(fix.xy[i]), scale)))
        assert cost_ours <= 2 * ref.cost * (1 + 1e-5) + 1e-6
        np.testing.assert_allclose(fix.xy[i], ref.x, atol=0.02)  # flat valleys: 1 cm apart
        np.testing.assert_allclose(fix.residual_rms[i] ** 2 * heard.sum(), cost_ours, rtol=1e-3)


def test_one_wild_link_moves_a_robust_fix_less() -> None:
    """A still tag with one link 18 dB (4.5 σ) above the model (a wall the model misses, about
    the issue-4 baby B14's case): the Gaussian fix follows that link, Huber's (k = 2) has the
    link's pull bounded at k σ / 18 dB of it, so moves about half as far."""
    anchors = grid_anchors()
    xy = np.array([[14.0, 8.0]])
    clean = model_rssi(anchors, xy)
    wild = clean.copy()
    gw = int(np.argsort(np.hypot(*(anchors.xyz[:, :2] - xy).T))[3])  # fourth-nearest gateway
    wild[0, gw] += 18.0
    move = {}
    for k in (None, 2.0):
        loc = Locator(anchors, LocatorParams(robust_k=k, censored=False, iterations=20))
        assert np.hypot(*(loc.locate(clean).xy[0] - xy[0])) < 1e-3
        fix = loc.locate(wild)
        move[k] = float(np.hypot(*(fix.xy[0] - xy[0])))
    assert move[None] > 1.5  # the squares follow the wild link
    assert move[2.0] < 0.6 * move[None]  # Huber's bounded influence: 8 of 18 dB's pull


def test_solver_gradient_and_hessians_match_finite_differences() -> None:
    rng = np.random.default_rng(12)
    g, n_tags = 6, 5
    gxy = rng.uniform(0, 20, (g, 2))
    n = rng.uniform(2.0, 3.0, g)
    rel = rng.uniform(-40, -20, (g, n_tags)).astype(np.float32)
    w = rng.uniform(0.02, 0.1, (g, n_tags)).astype(np.float32)
    dz2 = np.full((g, 1), 1.8**2, dtype=np.float32)
    solver = Solver(rel, w, dz2, gxy, n, 1.0, np.empty((6, g, n_tags), dtype=np.float32))
    p = rng.uniform(3, 17, (2, n_tags))

    def cost(q: np.ndarray) -> np.ndarray:
        d2 = (q[0][None, :] - gxy[:, 0:1]) ** 2 + (q[1][None, :] - gxy[:, 1:2]) ** 2 + 1.8**2
        r = rel.astype(float) + (5.0 * n / np.log(10.0))[:, None] * np.log(d2)
        return np.asarray((w * r * r).sum(axis=0))

    state = np.empty((ROWS, n_tags))
    solver.evaluate(p, state, newton=True)
    np.testing.assert_allclose(state[COST], cost(p), rtol=1e-5)
    eps = 1e-3
    e = [np.array([[eps], [0.0]]), np.array([[0.0], [eps]])]
    grad = [(cost(p + ei) - cost(p - ei)) / (2 * eps) for ei in e]  # of Σ w r² = 2 JᵀWr
    np.testing.assert_allclose(state[GX], grad[0] / 2, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(state[GY], grad[1] / 2, rtol=2e-3, atol=1e-4)
    hess = [
        [(cost(p + ei + ej) - cost(p + ei - ej) - cost(p - ei + ej) + cost(p - ei - ej))
         / (4 * eps * eps) / 2 for ej in e]
        for ei in e
    ]  # fmt: skip
    np.testing.assert_allclose(state[HXX], hess[0][0], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(state[HXY], hess[0][1], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(state[HYY], hess[1][1], rtol=1e-2, atol=1e-3)
    assert (state[AXX] > 0).all() and (state[AXX] * state[AYY] >= state[AXY] ** 2).all()
    solver.evaluate(p, state, newton=False)  # Gauss–Newton: H is A
    np.testing.assert_array_equal(state[HXX], state[AXX])
    np.testing.assert_array_equal(state[HXY], state[AXY])
    # a full solve lands where the gradient vanishes
    best = solver.solve(p, Box.of(np.array([-50.0, -50.0, 70.0, 70.0])), 30, 5.0,
                        np.empty((2, ROWS, n_tags)))  # fmt: skip
    assert np.abs(best[GX : GY + 1]).max() < 1e-3 * np.abs(state[GX : GY + 1]).max()


# -- efficiency: RMSE against the Cramér–Rao bound --------------------------------------------


def test_rmse_close_to_the_bound_in_a_four_gateway_room() -> None:
    rng = np.random.default_rng(3)
    anchors = room_anchors()
    xy = rng.uniform(0, 10, (3000, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((3000, 4))
    fix = locate(rssi, anchors)
    err = np.linalg.norm(fix.xy - xy, axis=1)
    crb = crlb_rmse(xy, anchors.xyz, N_EXP, SIGMA, height=TAG_Z)
    ratio = rms(err) / rms(crb)
    # measured 0.78-0.80 (seeds 0-2): the room's walls bound the estimate, which beats the
    # unbiased bound; with the bounds far away the plain ML estimate measures 1.0-1.03
    assert ratio <= 1.15


def test_rmse_close_to_the_bound_on_the_example_site_with_radio_shadowing() -> None:
    site = load_site()
    anchors = Anchors.from_site(site)
    ga = site.gateway_arrays
    rng = np.random.default_rng(4)
    n_tags = 2000
    # static tags on the ground floor, inside the area the gateways surround
    xy = rng.uniform([4.0, 4.5], [62.0, 17.5], (n_tags, 2))
    radio = RadioChannel(
        ga.xyz,
        ga.floor,
        ga.path_loss_exponent,
        ga.rssi_at_1m - P0,
        None,
        RadioParams(shadowing_sigma_db=SIGMA, fading=False, loss_probability=0.0),
        n_tags,
        rng,
    )
    heard = radio.hear(
        np.arange(n_tags), np.c_[xy, np.full(n_tags, TAG_Z)], np.zeros(n_tags), np.full(n_tags, P0)
    )
    rssi = np.full((n_tags, len(ga.ids)), np.nan)
    rssi[heard.adv, heard.gateway] = heard.rssi
    fix = locate(rssi, anchors)
    assert (fix.floor == 0).mean() > 0.995
    used = np.isfinite(rssi) & (ga.floor[None, :] == 0)
    crb = crlb_rmse(xy, ga.xyz, ga.path_loss_exponent, SIGMA, heard=used, height=TAG_Z)
    err = np.linalg.norm(fix.xy - xy, axis=1)
    ratio = rms(err) / rms(crb)
    # measured 1.08 here (sensitivity -95 dBm censors the far links; 1.11 with the heard links
    # only); the whole floor, outside the gateways' hull too: see docs/locator.md
    assert ratio <= 1.2
    assert fix.known.mean() > 0.95


def test_covariance_is_roughly_calibrated_where_coverage_is_good() -> None:
    rng = np.random.default_rng(5)
    anchors = grid_anchors()
    xy = rng.uniform([5, 5], [25, 15], (3000, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((3000, 12))
    fix = locate(rssi, anchors)
    e = fix.xy - xy
    nees = np.einsum("ni,nij,nj->n", e, np.linalg.inv(fix.covariance), e)
    # a calibrated 2-D error has chi-square(2) NEES: median 1.39, 0.3 % beyond 11.62; measured
    # median 1.3 and 3 % beyond (RSSI position errors have heavier tails than a Gaussian)
    assert 1.0 < np.median(nees) < 2.0
    assert np.mean(nees > 11.62) < 0.05


# -- unknown rules ----------------------------------------------------------------------------


def test_fewer_than_three_gateways_is_unknown() -> None:
    anchors = grid_anchors()
    xy = np.array([[5.0, 5.0], [15.0, 12.0], [22.0, 8.0]])
    rssi = model_rssi(anchors, xy)
    keep = np.argsort(-rssi, axis=1)  # strongest first
    for row, n_heard in enumerate((2, 3, 1)):
        rssi[row, keep[row, n_heard:]] = np.nan
    fix = locate(rssi, anchors)
    assert fix.n_used.tolist() == [2, 3, 1]
    assert fix.known.tolist() == [False, True, False]
    assert np.linalg.norm(fix.xy[1] - xy[1]) < 0.01


def test_nothing_heard_is_unknown_with_no_floor() -> None:
    anchors = grid_anchors()
    fix = locate(np.full((2, 12), np.nan), anchors)
    assert not fix.known.any()
    assert fix.floor.tolist() == [-1, -1]
    assert fix.n_used.tolist() == [0, 0]
    assert np.isnan(fix.residual_rms).all()


def test_a_site_without_gateways_locates_nothing() -> None:
    anchors = Anchors(np.zeros((0, 3)), np.zeros(0, int), P0, N_EXP, [0.0], [(0, 0, 10, 10)])
    fix = locate(np.zeros((3, 0)), anchors)
    assert not fix.known.any()
    assert fix.floor.tolist() == [-1, -1, -1]


def test_ill_conditioned_geometry_is_unknown() -> None:
    gxy = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    anchors = Anchors(
        np.c_[gxy, np.full(4, 1.0)], np.zeros(4, int), P0, N_EXP, [0.0], [(0, -5, 30, 5)]
    )
    xy = np.array([[12.0, 0.0]])  # on the gateways' line, at their height: no cross-line info
    fix = locate(model_rssi(anchors, xy), anchors)
    assert not fix.known[0]


def test_large_uncertainty_is_unknown() -> None:
    anchors = grid_anchors()
    xy = np.array([[15.0, 10.0]])
    rssi = model_rssi(anchors, xy)
    strict = locate(rssi, anchors, LocatorParams(max_uncertainty_m=0.01))
    loose = locate(rssi, anchors)
    assert loose.known[0]
    assert not strict.known[0]
    assert loose.uncertainty[0] > 0.01


def test_residuals_that_do_not_fit_the_model_are_unknown() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(6)
    xy = rng.uniform(5, 15, (100, 2))
    rssi = model_rssi(anchors, xy) + rng.choice([-25.0, 25.0], size=(100, 12))
    fix = locate(rssi, anchors)
    assert (fix.residual_rms > 12.0).mean() > 0.9
    assert not fix.known[fix.residual_rms > 12.0].any()


# -- robustness, weights ----------------------------------------------------------------------


def test_silent_gateway_is_just_a_missing_column() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(7)
    xy = rng.uniform(1, [29, 19], (300, 2))
    rssi = model_rssi(anchors, xy)
    rssi[:, 4] = np.nan  # gateway 4 went silent
    fix = locate(rssi, anchors)
    assert (fix.n_used == 11).all()
    assert np.linalg.norm(fix.xy - xy, axis=1).max() < 0.01
    assert fix.known.all()


def test_variances_down_weight_a_corrupted_link() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(8)
    xy = rng.uniform(5, [25, 15], (200, 2))
    rssi = model_rssi(anchors, xy)
    nearest = np.argmax(rssi, axis=1)
    rows = np.arange(200)
    rssi[rows, nearest] -= 20.0  # a body between the tag and its nearest gateway
    variances = np.full((200, 12), SIGMA**2)
    variances[rows, nearest] = 1e4
    plain = locate(rssi, anchors)
    weighted = locate(rssi, anchors, variances=variances)
    by_weight = np.ones((200, 12))
    by_weight[rows, nearest] = 0.0  # weight 0 drops the link
    dropped = locate(rssi, anchors, weights=by_weight)

    def err(f: Fix) -> np.ndarray:
        return np.asarray(np.linalg.norm(f.xy - xy, axis=1))

    assert np.median(err(plain)) > 1.0
    assert np.median(err(weighted)) < 0.1
    assert err(dropped).max() < 0.01
    assert (dropped.n_used == 11).all()


def test_link_variance_adds_averaged_fading_to_shadowing() -> None:
    v = link_variance([[1.0, 4.0, 0.0]], sigma_db=4.0, fading_db=5.57)
    np.testing.assert_allclose(v[0, :2], [16.0 + 5.57**2, 16.0 + 5.57**2 / 4])
    assert np.isinf(v[0, 2])
    anchors = grid_anchors()
    xy = np.array([[12.0, 7.0]])
    rssi = model_rssi(anchors, xy)
    weight = np.full((1, 12), 3.0)
    weight[0, :3] = 0.0
    fix = locate(rssi, anchors, variances=link_variance(weight))
    assert fix.n_used[0] == 9
    assert np.linalg.norm(fix.xy[0] - xy[0]) < 0.01


def test_tag_offset_corrects_a_louder_tag() -> None:
    anchors = grid_anchors()
    xy = np.array([[8.0, 6.0], [21.0, 13.0]])
    rssi = model_rssi(anchors, xy) + np.array([[6.0], [-3.0]])  # tags louder / quieter
    fix = locate(rssi, anchors, tag_offset_db=[6.0, -3.0])
    assert np.linalg.norm(fix.xy - xy, axis=1).max() < 0.01
    off = locate(rssi, anchors)
    assert np.linalg.norm(off.xy - xy, axis=1).min() > 0.1


def test_fixes_stay_inside_the_floor_bounds() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(9)
    xy = rng.uniform(0, [30, 20], (2000, 2))
    rssi = model_rssi(anchors, xy) + 12.0 * rng.standard_normal((2000, 12))
    fix = locate(rssi, anchors)
    assert np.isfinite(fix.xy).all()
    assert (fix.xy >= [0, 0]).all() and (fix.xy <= [30, 20]).all()


def test_reused_locator_gives_the_same_answer_for_any_batch_size() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(10)
    xy = rng.uniform(0, [30, 20], (500, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((500, 12))
    loc = Locator(anchors)
    whole = loc.locate(rssi)
    small = loc.locate(rssi[:7])
    again = loc.locate(rssi)
    np.testing.assert_allclose(whole.xy[:7], small.xy, atol=1e-5)  # float32 sums, other order
    np.testing.assert_array_equal(whole.xy, again.xy)
    np.testing.assert_array_equal(whole.covariance, again.covariance)
    empty = loc.locate(np.zeros((0, 12)))
    assert empty.xy.shape == (0, 2) and len(empty) == 0


# -- floors -----------------------------------------------------------------------------------


def two_floor_anchors() -> Anchors:
    g = grid_anchors()
    xyz = np.vstack([g.xyz, g.xyz + np.array([0.0, 0.0, 4.0])])
    floor = np.r_[np.zeros(12, int), np.ones(12, int)]
    bounds = np.vstack([g.floor_bounds, g.floor_bounds])
    return Anchors(xyz, floor, P0, N_EXP, [0.0, 4.0], bounds)


def test_floor_choice_ignores_weak_links_through_the_slab() -> None:
    anchors = two_floor_anchors()
    rng = np.random.default_rng(11)
    xy = rng.uniform(1, [29, 19], (400, 2))
    floor = rng.integers(0, 2, 400)
    own = model_rssi(anchors, xy, floor)
    through = model_rssi(anchors, xy, 1 - floor) - 15.0  # other floor's gateways, 15 dB down
    through[through < -95.0] = np.nan  # below the gateways' sensitivity
    rssi = np.where(np.isnan(own), through, own)
    fix = locate(rssi, anchors)
    np.testing.assert_array_equal(fix.floor, floor)
    assert np.linalg.norm(fix.xy - xy, axis=1).max() < 0.01
    assert (fix.n_used == 12).all()  # only the chosen floor's gateways are used
    np.testing.assert_array_equal(choose_floor(rssi, anchors), floor)


def test_floor_hysteresis_keeps_the_previous_floor_when_close() -> None:
    anchors = two_floor_anchors()
    xy = np.array([[15.0, 10.0]] * 3)
    upper = model_rssi(anchors, xy, 1)
    lower = model_rssi(anchors, xy, 0)
    # floor 1 louder by 3 dB (a stairwell), then by 10 dB
    rssi = np.where(np.isnan(lower), upper, lower - 3.0)
    rssi[2] = np.where(np.isnan(lower[2]), upper[2], lower[2] - 10.0)
    prev = np.array([0, -1, 0])
    floors = choose_floor(rssi, anchors, previous=prev, switch_db=6.0)
    assert floors.tolist() == [0, 1, 1]
    fix = locate(rssi, anchors, initial_floor=prev)
    assert fix.floor.tolist() == [0, 1, 1]


def test_too_few_gateways_on_the_loudest_floor_is_unknown_not_another_floor() -> None:
    anchors = two_floor_anchors()
    xy = np.array([[15.0, 10.0]])
    own = model_rssi(anchors, xy, 0)
    keep = np.argsort(-np.nan_to_num(own[0], nan=-999))[:2]
    rssi = np.full((1, 24), np.nan)
    rssi[0, keep] = own[0, keep]
    rssi[0, 12:15] = -90.0  # three weak links from the floor above
    fix = locate(rssi, anchors)
    assert fix.floor[0] == 0
    assert not fix.known[0]


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_raises_locate_errors_that_name_the_argument() -> None:
    anchors = grid_anchors()
    good = model_rssi(anchors, np.array([[5.0, 5.0]]))
    with pytest.raises(LocateError, match="rssi"):
        locate(np.zeros((1, 5)), anchors)
    with pytest.raises(LocateError, match="infinity"):
        locate(np.where(np.arange(12) == 0, np.inf, good), anchors)
    with pytest.raises(LocateError, match="variances"):
        locate(good, anchors, variances=-np.ones((1, 12)))
    with pytest.raises(LocateError, match="variances"):
        locate(good, anchors, variances=np.ones((2, 12)))
    with pytest.raises(LocateError, match="weights"):
        locate(good, anchors, weights=-np.ones((1, 12)))
    with pytest.raises(LocateError, match="tag_offset_db"):
        locate(good, anchors, tag_offset_db=[1.0, 2.0])
    with pytest.raises(LocateError, match="initial_xy"):
        locate(good, anchors, initial_xy=np.zeros((1, 3)))
    with pytest.raises(LocateError, match="floor"):
        locate(good, anchors, initial_floor=[0.5])


def test_bad_configuration_raises_config_errors() -> None:
    with pytest.raises(ConfigError, match="sigma_db"):
        LocatorParams(sigma_db=0.0)
    with pytest.raises(ConfigError, match="min_gateways"):
        LocatorParams(min_gateways=1)
    with pytest.raises(ConfigError, match="xyz"):
        Anchors(np.zeros((3, 2)), [0, 0, 0], P0, N_EXP, [0.0], [(0, 0, 1, 1)])
    with pytest.raises(ConfigError, match="floor"):
        Anchors(np.zeros((3, 3)), [0, 0, 2], P0, N_EXP, [0.0], [(0, 0, 1, 1)])
    with pytest.raises(ConfigError, match="floor_bounds"):
        Anchors(np.zeros((3, 3)), [0, 0, 0], P0, N_EXP, [0.0], [(0, 0, -1, 1)])
    with pytest.raises(ConfigError, match="exponents"):
        Anchors(np.zeros((3, 3)), [0, 0, 0], P0, -1.0, [0.0], [(0, 0, 1, 1)])


def test_anchors_from_the_example_site() -> None:
    site = load_site()
    anchors = Anchors.from_site(site)
    ga = site.gateway_arrays
    np.testing.assert_array_equal(anchors.xyz, ga.xyz)
    np.testing.assert_array_equal(anchors.floor, ga.floor)
    assert anchors.n_floors == len(site.floors)
    outline = np.asarray(site.floors[0].outline)
    np.testing.assert_array_equal(anchors.floor_bounds[0, :2], outline.min(axis=0))
    np.testing.assert_array_equal(anchors.floor_bounds[0, 2:], outline.max(axis=0))
    assert anchors.sensitivity_dbm is not None
    np.testing.assert_array_equal(anchors.sensitivity_dbm, site.radio.sensitivity_dbm)


# -- silent gateways as censored readings ------------------------------------------------------


def sensitive(anchors: Anchors, sensitivity: float) -> Anchors:
    """The same anchors with a receiver sensitivity."""
    a = anchors
    return Anchors(a.xyz, a.floor, a.p0, a.n, a.floor_elevation, a.floor_bounds, sensitivity)


@pytest.mark.parametrize("outage", [0.0, 0.01])
def test_censored_term_gradient_and_hessians_match_finite_differences(outage: float) -> None:
    rng = np.random.default_rng(21)
    g, n_tags, sigma = 7, 6, 4.0
    gxy = rng.uniform(0, 20, (g, 2))
    n = rng.uniform(2.0, 3.0, g)
    silent = rng.random((g, n_tags)) < 0.5
    silent[0] = True  # every tag has silent links, and heard ones
    silent[1] = False
    # heard links: RSSI - P0; silent ones: the sensitivity - P0, from far below to well above
    # (z from about -4 to +5: with an outage, some links are where the cost saturates)
    rel = np.where(silent, rng.uniform(-50, -15, (g, n_tags)), rng.uniform(-40, -20, (g, n_tags)))
    rel = rel.astype(np.float32)
    w = np.where(silent, 0.0, rng.uniform(0.02, 0.1, (g, n_tags))).astype(np.float32)
    dz2 = np.full((g, 1), 1.8**2, dtype=np.float32)
    gi, ni = np.nonzero(silent)
    curvature = np.empty((g, n_tags), dtype=np.float32)
    censored = Censored(gi, ni, sigma, curvature, outage)
    work = np.empty((6, g, n_tags), dtype=np.float32)
    solver = Solver(rel, w, dz2, gxy, n, 1.0, work, censored)
    p = rng.uniform(3, 17, (2, n_tags))

    def cost(q: np.ndarray) -> np.ndarray:
        d2 = (q[0][None, :] - gxy[:, 0:1]) ** 2 + (q[1][None, :] - gxy[:, 1:2]) ** 2 + 1.8**2
        r = rel.astype(float) + (5.0 * n / np.log(10.0))[:, None] * np.log(d2)
        fit = (w * r * r).sum(axis=0)
        log_p = np.log(outage + (1.0 - outage) * np.exp(log_ndtr(r / sigma)))
        return np.asarray(fit - 2.0 * np.where(silent, log_p, 0.0).sum(axis=0))

    state = np.empty((ROWS, n_tags))
    solver.evaluate(p, state, newton=True)
    np.testing.assert_allclose(state[COST], cost(p), rtol=1e-5)
    assert (state[FIT] < state[COST]).all()  # the censored part is positive
    eps = 1e-3
    e = [np.array([[eps], [0.0]]), np.array([[0.0], [eps]])]
    grad = [(cost(p + ei) - cost(p - ei)) / (2 * eps) for ei in e]
    np.testing.assert_allclose(state[GX], grad[0] / 2, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(state[GY], grad[1] / 2, rtol=2e-3, atol=1e-4)
    hess = [
        [(cost(p + ei + ej) - cost(p + ei - ej) - cost(p - ei + ej) + cost(p - ei - ej))
         / (4 * eps * eps) / 2 for ej in e]
        for ei in e
    ]  # fmt: skip
    np.testing.assert_allclose(state[HXX], hess[0][0], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(state[HXY], hess[0][1], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(state[HYY], hess[1][1], rtol=1e-2, atol=1e-3)
    # the Gauss–Newton matrix stays positive semi-definite with the censored curvature
    assert (state[AXX] > 0).all() and (state[AXX] * state[AYY] >= state[AXY] ** 2).all()
    best = solver.solve(p, Box.of(np.array([-50.0, -50.0, 70.0, 70.0])), 30, 5.0,
                        np.empty((2, ROWS, n_tags)))  # fmt: skip
    assert np.abs(best[GX : GY + 1]).max() < 1e-3 * np.abs(state[GX : GY + 1]).max()


def test_censoring_brings_the_rmse_closer_to_the_bound_when_weak_links_are_lost() -> None:
    rng = np.random.default_rng(22)
    sensitivity = -90.0  # the mean reaches it at 17 m: 40 % of the links are lost
    anchors = sensitive(grid_anchors(), sensitivity)
    n_tags = 2000
    xy = rng.uniform(0, [30, 20], (n_tags, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((n_tags, 12))
    rssi[rssi < sensitivity] = np.nan
    assert 0.2 < np.isnan(rssi).mean() < 0.8
    censored = locate(rssi, anchors)
    plain = locate(rssi, anchors, LocatorParams(censored=False))
    crb = crlb_rmse(xy, anchors.xyz, N_EXP, SIGMA, height=TAG_Z)
    both = censored.known & plain.known
    assert both.mean() > 0.95
    ratio = {
        name: rms(np.linalg.norm(fix.xy - xy, axis=1)[both]) / rms(crb[both])
        for name, fix in (("censored", censored), ("plain", plain))
    }
    # measured: censored 1.02, heard links only 1.12 (the bound counts all 12 links as heard)
    assert ratio["censored"] < 0.95 * ratio["plain"]


def test_censoring_changes_nothing_when_every_link_is_heard() -> None:
    rng = np.random.default_rng(23)
    anchors = grid_anchors()
    xy = rng.uniform(0, [30, 20], (500, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((500, 12))
    plain = locate(rssi, anchors)
    censored = locate(rssi, sensitive(anchors, -200.0))
    assert censored.n_used.min() == 12
    for name in ("xy", "covariance", "residual_rms", "known", "n_used", "floor"):
        np.testing.assert_array_equal(getattr(censored, name), getattr(plain, name))


def test_a_gateway_that_is_down_is_not_counted_as_silent() -> None:
    anchors = sensitive(grid_anchors(), -95.0)
    rng = np.random.default_rng(7)
    xy = rng.uniform(1, [29, 19], (300, 2))
    rssi = model_rssi(anchors, xy)
    rssi[:, 4] = np.nan  # gateway 4 is down
    up = np.ones(12, dtype=bool)
    up[4] = False
    for fix in (
        locate(rssi, anchors, gateway_up=up),
        locate(rssi, anchors, silent_links=np.broadcast_to(up, rssi.shape)),
        locate(rssi, anchors, LocatorParams(censored=False)),
    ):
        assert (fix.n_used == 11).all()
        assert np.linalg.norm(fix.xy - xy, axis=1).max() < 0.01
    # counted as silent, the gateway that should have heard the tag pushes the fixes away
    wrong = locate(rssi, anchors)
    assert np.linalg.norm(wrong.xy - xy, axis=1).max() > 0.5


def test_sensitivity_can_be_given_per_call_and_offsets_move_the_threshold() -> None:
    anchors = grid_anchors()
    rng = np.random.default_rng(24)
    xy = rng.uniform(0, [30, 20], (400, 2))
    rssi = model_rssi(anchors, xy) + SIGMA * rng.standard_normal((400, 12))
    rssi[rssi < -85.0] = np.nan
    a = locate(rssi, sensitive(anchors, -85.0))
    b = locate(rssi, anchors, sensitivity_dbm=np.full(12, -85.0))
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.array_equal(a.xy, locate(rssi, anchors).xy)
    # a tag 3 dB louder than calibrated, and its threshold: the same as the quieter tag
    off = np.full(400, 3.0)
    c = locate(rssi + 3.0, anchors, tag_offset_db=off, sensitivity_dbm=-82.0)
    np.testing.assert_allclose(c.xy, a.xy, atol=1e-3)
    # a known 5 dB wall on every link: RSSI and sensitivity are corrected alike
    walls = np.full((400, 12), 5.0)
    d = locate(rssi - 5.0, anchors, link_offset_db=walls, sensitivity_dbm=-90.0)
    np.testing.assert_allclose(d.xy, a.xy, atol=1e-3)


def test_bad_censoring_input_raises_locate_errors() -> None:
    anchors = sensitive(grid_anchors(), -95.0)
    good = model_rssi(anchors, np.array([[5.0, 5.0]]))
    with pytest.raises(LocateError, match="gateway_up"):
        locate(good, anchors, gateway_up=np.ones(11, dtype=bool))
    with pytest.raises(LocateError, match="silent_links"):
        locate(good, anchors, silent_links=np.ones((1, 12), dtype=float))
    with pytest.raises(LocateError, match="sensitivity_dbm"):
        locate(good, anchors, sensitivity_dbm=np.zeros(3))
    with pytest.raises(ConfigError, match="sensitivity_dbm"):
        sensitive(grid_anchors(), float("nan"))
