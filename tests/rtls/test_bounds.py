"""Cramér–Rao bound: DOMAIN.md's example, closed forms, a numerical Fisher matrix, masks."""

from __future__ import annotations

import numpy as np
import pytest

from rtls.bounds import BoundError, crlb_covariance, crlb_rmse, fisher_information

SIGMA, N_EXP = 4.0, 2.5
B = 10.0 * N_EXP / (SIGMA * np.log(10.0))  # Patwari's b
CORNERS = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 0.0], [0.0, 10.0, 0.0]])


def test_domain_example_four_corners_of_a_10_m_room() -> None:
    bound = crlb_rmse([[5.0, 5.0]], CORNERS, N_EXP, SIGMA)
    assert bound[0] == pytest.approx(2.6, abs=0.05)  # DOMAIN.md: "about 2.6 m"
    # closed form: F = 2 b² / d² I  ->  sqrt(trace F⁻¹) = d / b
    assert bound[0] == pytest.approx(np.hypot(5.0, 5.0) / B, rel=1e-12)


def test_ceiling_height_enters_through_3d_distance_and_horizontal_projection() -> None:
    ceiling = CORNERS + np.array([0.0, 0.0, 2.8])
    bound = crlb_rmse([[5.0, 5.0]], ceiling, N_EXP, SIGMA, height=1.0)
    h, v = np.hypot(5.0, 5.0), 1.8
    d3_sq = h * h + v * v
    # F = b² Σ u_h u_hᵀ / d² with |u_h| = h / d: F = 2 b² h² / d⁴ I -> d² / (b h)
    assert bound[0] == pytest.approx(d3_sq / (B * h), rel=1e-12)
    assert bound[0] > crlb_rmse([[5.0, 5.0]], CORNERS, N_EXP, SIGMA)[0]
    # (N, 3) positions give the same as (N, 2) with the height
    same = crlb_rmse([[5.0, 5.0, 1.0]], ceiling, N_EXP, SIGMA)
    assert same[0] == pytest.approx(bound[0], rel=1e-12)


def test_fisher_matches_numerical_gradient_of_the_mean_rssi() -> None:
    rng = np.random.default_rng(0)
    gw = np.c_[rng.uniform(0, 30, (6, 2)), rng.uniform(2.5, 3.0, 6)]
    n = rng.uniform(1.8, 3.0, 6)
    sigma = rng.uniform(3.0, 6.0, 6)
    pos = rng.uniform(0, 30, (5, 2))
    fisher = fisher_information(pos, gw, n, sigma, height=1.2)

    def mean_rssi(p: np.ndarray) -> np.ndarray:
        d = np.sqrt(((p[:2] - gw[:, :2]) ** 2).sum(axis=1) + (1.2 - gw[:, 2]) ** 2)
        return np.asarray(-59.0 - 10.0 * n * np.log10(d))

    eps = 1e-6
    ex, ey = np.array([eps, 0.0]), np.array([0.0, eps])
    for i, p in enumerate(pos):
        grad = np.stack(
            [
                (mean_rssi(p + ex) - mean_rssi(p - ex)) / (2 * eps),
                (mean_rssi(p + ey) - mean_rssi(p - ey)) / (2 * eps),
            ],
            axis=1,
        )  # (G, 2)
        reference = (grad / sigma[:, None] ** 2).T @ grad
        np.testing.assert_allclose(fisher[i], reference, rtol=1e-6)


def test_vectorised_over_positions_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    gw = np.c_[rng.uniform(0, 40, (8, 2)), np.full(8, 2.8)]
    pos = rng.uniform(0, 40, (50, 2))
    heard = rng.random((50, 8)) < 0.8
    many = crlb_rmse(pos, gw, N_EXP, SIGMA, heard=heard, height=1.0)
    one = [crlb_rmse(pos[i : i + 1], gw[heard[i]], N_EXP, SIGMA, height=1.0)[0] for i in range(50)]
    np.testing.assert_allclose(many, one, rtol=1e-12)


def test_fewer_gateways_never_lower_the_bound() -> None:
    rng = np.random.default_rng(2)
    gw = np.c_[rng.uniform(0, 20, (6, 2)), np.full(6, 2.8)]
    pos = rng.uniform(0, 20, (200, 2))
    full = crlb_rmse(pos, gw, N_EXP, SIGMA, height=1.0)
    heard = np.ones((200, 6), dtype=bool)
    heard[:, 0] = False
    fewer = crlb_rmse(pos, gw, N_EXP, SIGMA, heard=heard, height=1.0)
    assert (fewer >= full * (1 - 1e-12)).all()
    assert (fewer > full).any()


def test_unidentifiable_positions_have_an_infinite_bound() -> None:
    line = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    bounds = crlb_rmse([[5.0, 0.0], [5.0, 3.0]], line, N_EXP, SIGMA)
    assert np.isinf(bounds[0])  # on the line of the gateways: no cross-line information
    assert np.isfinite(bounds[1])
    one = crlb_rmse([[5.0, 5.0]], CORNERS, N_EXP, SIGMA, heard=[[True, False, False, False]])
    assert np.isinf(one[0])
    above = crlb_rmse([[5.0, 5.0]], [[5.0, 5.0, 2.8], [0.0, 0.0, 2.8]], N_EXP, SIGMA)
    assert np.isinf(above[0])  # straight overhead tells nothing about x, y


def test_links_inside_d_min_carry_no_information() -> None:
    gw = np.vstack([CORNERS, [[5.5, 5.0, 0.0]]])
    near = crlb_rmse([[5.0, 5.0]], gw, N_EXP, SIGMA, d_min=1.0)
    without = crlb_rmse([[5.0, 5.0]], CORNERS, N_EXP, SIGMA)
    assert near[0] == pytest.approx(without[0], rel=1e-12)
    assert crlb_rmse([[5.0, 5.0]], gw, N_EXP, SIGMA)[0] < without[0]


def test_covariance_is_the_inverse_of_the_fisher_matrix() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(size=(20, 2, 2))
    fisher = m @ m.transpose(0, 2, 1) + 0.1 * np.eye(2)
    np.testing.assert_allclose(crlb_covariance(fisher), np.linalg.inv(fisher), rtol=1e-9)


@pytest.mark.parametrize(
    ("positions", "gateways", "kwargs", "match"),
    [
        ([[1.0, 2.0, 3.0, 4.0]], CORNERS, {}, "positions"),
        ([[1.0, 2.0]], CORNERS[:, :2], {}, "gateway_xyz"),
        ([[np.nan, 2.0]], CORNERS, {}, "finite"),
        ([[1.0, 2.0]], CORNERS, {"sigma_db": 0.0}, "sigma_db"),
        ([[1.0, 2.0]], CORNERS, {"path_loss_exponent": [2.0, 2.0]}, "path_loss_exponent"),
        ([[1.0, 2.0]], CORNERS, {"heard": [[True, False]]}, "heard"),
    ],
)
def test_bad_input_names_the_argument(
    positions: list[list[float]], gateways: np.ndarray, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"path_loss_exponent": N_EXP, "sigma_db": SIGMA}
    args.update(kwargs)
    with pytest.raises(BoundError, match=match):
        crlb_rmse(positions, gateways, **args)  # type: ignore[arg-type]
