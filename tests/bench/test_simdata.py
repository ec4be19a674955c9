"""Simulation helpers of the accuracy bench (bench/simdata.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import simdata
from rtls.engine import EngineParams


def test_schedule_lists_every_advertisement_once_in_time_order() -> None:
    phase = np.array([0.0, 0.3, 1.9])
    tags, times = simdata.schedule(phase, 2.0, 0.0, 6.0)
    assert (np.diff(times) >= 0).all()
    for i, p in enumerate(phase):
        expected = [p + 2.0 * k for k in range(4) if 0.0 < p + 2.0 * k <= 6.0]
        assert times[tags == i] == pytest.approx(expected)
    # consecutive intervals cover each advertisement exactly once
    a, _ = simdata.schedule(phase, 2.0, 0.0, 3.1)
    b, _ = simdata.schedule(phase, 2.0, 3.1, 6.0)
    assert len(a) + len(b) == len(tags)


def test_bound_uses_only_the_tags_floor() -> None:
    site = simdata.synthetic_site(np.array([0, 1]), 2.0)
    xy = np.array([[30.0, 11.0], [30.0, 11.0]])
    crb = simdata.bound(site, xy, np.array([0, 1]), 4.0)
    assert np.isfinite(crb).all() and (crb > 0).all()
    # the two floors have the same gateway layout: the same bound
    assert crb[0] == pytest.approx(crb[1], rel=1e-6)
    # a larger shadowing sigma gives a proportionally larger bound
    assert simdata.bound(site, xy, np.array([0, 1]), 8.0) == pytest.approx(2 * crb)


def test_static_tags_are_located_near_their_positions() -> None:
    site0 = simdata.synthetic_site(np.zeros(1, dtype=np.intp), 0.5)
    xy = np.array([[20.0, 11.0], [40.0, 4.0], [30.0, 18.0]])
    floor = np.array([0, 1, 0])
    site = simdata.synthetic_site(floor, 0.5)
    assert len(site.tags) == 3 and len(site0.tags) == 1
    run = simdata.run_static(
        site, xy, floor, simdata.RadioSetup(sigma_db=1.0), interval_s=0.5, duration_s=3.0, seed=3
    )
    assert (run.fix_floor == floor).all()
    assert np.hypot(*(run.fix_xy - xy).T).max() < 3.0
    assert np.isfinite(run.rssi).sum(axis=1).min() >= 3


def test_walks_hold_the_latest_fix_and_report_the_tracked_uncertainty() -> None:
    base = simdata.synthetic_site(np.zeros(1, dtype=np.intp), 2.0, walls=True)
    walks = simdata.random_walks(base, simdata.nav_grids(base), 4, 20.0,
                                 np.random.default_rng(2))  # fmt: skip
    site = simdata.synthetic_site(walks.floor, 2.0, walls=True)  # walls: the walkable area
    run = simdata.run_walks(site, walks, simdata.RadioSetup(sigma_db=1.0), interval_s=2.0,
                            duration_s=20.0, warmup_s=0.0, seed=3,
                            params=EngineParams(wall_model=False))  # fmt: skip
    k, n = run.tracked_known.shape
    assert run.held.shape == (k, n, 2) and run.tracked_uncertainty.shape == (k, n)
    for i in range(k):
        for tag in range(n):
            mine = np.flatnonzero((run.fix_tag == tag) & (run.fix_t <= run.t[i]) & run.fix_known)
            if mine.size == 0:
                assert np.isnan(run.held[i, tag]).all()
            else:
                np.testing.assert_array_equal(run.held[i, tag], run.fix_xy[mine[-1]])
    unc = run.tracked_uncertainty[run.tracked_known]
    assert np.isfinite(unc).all() and (unc > 0).all()
    # σ 1 dB: positions within a few metres, and the uncertainty of the same order
    err = np.hypot(*(run.tracked - run.truth).transpose(2, 0, 1))[run.tracked_known]
    assert np.sqrt(np.mean(err**2)) < 3.0
    assert 0.2 < np.sqrt(np.mean(unc**2)) < 5.0
