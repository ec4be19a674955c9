"""Simulation helpers of the accuracy bench (bench/simdata.py, bench/doorwalks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import doorwalks, simdata


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


def test_grace_period_masks_samples_after_each_true_zone_change() -> None:
    t = np.arange(1, 41, dtype=np.float64) * 0.25  # 10 s
    true = np.zeros((40, 2), dtype=np.int64)
    true[20:, 0] = 3  # walker 0 changes zone at 5.25 s
    xy, floor = np.zeros((40, 2, 2)), np.zeros((40, 2), dtype=np.int64)
    run = doorwalks.ZoneRun(t, ("a", "b"), true, true.copy(), np.ones((40, 2), bool),
                            true.copy(), np.ones((40, 2), bool), xy, floor, xy, floor)  # fmt: skip
    mask = doorwalks.evaluated(run, grace_s=1.0, warmup_s=2.0)
    assert not mask[t < 2.0].any()
    skipped = ~mask[:, 0] & (t >= 2.0)
    assert t[skipped] == pytest.approx([5.25, 5.5, 5.75, 6.0])
    assert mask[t >= 2.0, 1].all()
    engine = true.copy()
    engine[30:, 0] = 7
    known = np.ones((40, 2), bool)
    known[35:, 1] = False
    s = doorwalks.score(engine, known, true, mask)
    assert s.samples == int(mask.sum())
    assert s.wrong == pytest.approx(10 / mask.sum())
    assert s.unknown == pytest.approx(5 / mask.sum())
