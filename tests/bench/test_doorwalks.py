"""Scoring of the door-walk bench (bench/doorwalks.py): grace periods and zone answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench import doorwalks


def _run(true: np.ndarray, true_in: np.ndarray, engine: np.ndarray) -> doorwalks.ZoneRun:
    k, w = true.shape
    t = np.arange(1, k + 1, dtype=np.float64) * 0.25
    xy, floor = np.zeros((k, w, 2)), np.zeros((k, w), dtype=np.int64)
    known = np.ones((k, w), bool)
    return doorwalks.ZoneRun(t, ("a", "b"), true, true_in, engine, known, engine.copy(), known,
                             xy, floor, xy, floor, {}, doorwalks.StageTimes(), {})  # fmt: skip


def test_grace_period_masks_samples_after_each_true_zone_change() -> None:
    true = np.zeros((40, 2), dtype=np.int64)
    true[20:, 0] = 3  # walker 0 changes zone at 5.25 s
    run = _run(true, np.zeros((40, 2, 8), bool), true.copy())
    mask = doorwalks.evaluated(run, grace_s=1.0, warmup_s=2.0)
    assert not mask[run.t < 2.0].any()
    skipped = ~mask[:, 0] & (run.t >= 2.0)
    assert run.t[skipped] == pytest.approx([5.25, 5.5, 5.75, 6.0])
    assert mask[run.t >= 2.0, 1].all()


def test_answers_are_right_coarse_wrong_or_none() -> None:
    """Zones: 0 the ward holding rooms 1 and 2; the tag is in room 1 throughout."""
    k = 20
    true = np.ones((k, 2), dtype=np.int64)
    true_in = np.zeros((k, 2, 3), bool)
    true_in[:, :, [0, 1]] = True
    engine = np.ones((k, 2), dtype=np.int64)
    engine[:5, 0] = 0  # the ward: right but coarse
    engine[5:8, 0] = 2  # the neighbouring room: wrong
    engine[8:10, 0] = -1  # no answer
    mask = np.ones((k, 2), bool)
    mask[:, 1] = False
    s = doorwalks.score(engine, true, true_in, mask)
    assert s.samples == k
    assert (s.room, s.coarse, s.wrong, s.none) == pytest.approx((0.5, 0.25, 0.15, 0.1))
    assert s.not_true == pytest.approx(0.4)  # the earlier metric: coarse counted as wrong
    assert s.room + s.coarse + s.wrong + s.none == pytest.approx(1.0)
