"""Wall-loss maps (COST 231 multi-wall): lookups at tag positions (pure)."""

from __future__ import annotations

import numpy as np

from rtls.engine import wall_maps
from rtls.site import load_site

SITE = load_site()


def test_lookup_without_a_position_is_no_loss_not_an_error() -> None:
    """A tag whose estimate is NaN (e.g. lost after the engine stalled) gets 0 dB; the other
    rows are what they would be alone (this once crashed the engine with an IndexError)."""
    maps = wall_maps(SITE)
    assert maps is not None
    xy = np.array([[20.0, 5.0], [np.nan, np.nan], [40.0, 15.0], [np.inf, 3.0]])
    out = maps.lookup(xy)
    assert out.shape == (4, len(SITE.model.gateways))
    assert np.all(out[[1, 3]] == 0.0)
    np.testing.assert_array_equal(out[[0, 2]], maps.lookup(xy[[0, 2]]))
    assert out[0].max() > 0.0  # a point behind walls does see some loss


def test_lookup_of_some_gateways_is_those_columns_of_the_full_lookup() -> None:
    """A building's gateways only (any order): the same values, read from their floors'
    rasters alone; no gateway at all gives no columns."""
    maps = wall_maps(SITE)
    assert maps is not None
    rng = np.random.default_rng(4)
    xy = np.vstack([rng.uniform([0.0, 0.0], [70.0, 22.0], size=(50, 2)), [[np.nan, 1.0]]])
    full = maps.lookup(xy)
    some = rng.permutation(len(SITE.model.gateways))[:7]
    np.testing.assert_array_equal(maps.lookup(xy, gateways=some), full[:, some])
    assert maps.lookup(xy, np.float32, gateways=some).dtype == np.float32
    assert maps.lookup(xy, gateways=[]).shape == (len(xy), 0)
