"""Gateway calibration from reference tags: recovers the radio's true P0 and n."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from gateways.radio import RadioParams
from gateways.recording import record
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.calibration import fit, update_site_text
from rtls.errors import ConfigError
from rtls.site import EXAMPLE_SITE, Site, load_site

TEXT = EXAMPLE_SITE.read_text(encoding="utf-8")


def _with_references(data: dict, rng: np.random.Generator) -> dict:
    """Add reference tags at the centres of rooms and corridors of both floors."""
    zones = [z for z in data["zones"] if z["kind"] in ("room", "corridor")]
    serial = 900_000
    for z in zones:
        poly = np.asarray(z["polygon"], dtype=float)
        for _ in range(2):
            lo, hi = poly.min(axis=0) + 0.8, poly.max(axis=0) - 0.8
            x, y = rng.uniform(lo, hi)
            serial += 1
            data["tags"].append(
                {"id": f"R{serial}", "kind": "reference", "serial": serial, "home": z["id"],
                 "position": [float(x), float(y), 1.0]}
            )  # fmt: skip
    return data


@pytest.fixture(scope="module")
def setup() -> tuple[Site, Site, np.ndarray, np.ndarray]:
    """A nominal site and the 'true' one the radio uses. Walls are removed: with walls the
    log-distance parameters that fit best are effective values, not the radio's own."""
    rng = np.random.default_rng(8)
    nominal = _with_references(tomllib.loads(TEXT), np.random.default_rng(1))
    true = _with_references(tomllib.loads(TEXT), np.random.default_rng(1))
    for data in (nominal, true):
        data["walls"] = []
    p0 = rng.uniform(-64, -54, len(true["gateways"]))
    n = rng.uniform(2.1, 2.9, len(true["gateways"]))
    for gw, a, b in zip(true["gateways"], p0, n, strict=True):
        gw["rssi_at_1m"], gw["path_loss_exponent"] = float(a), float(b)
    nominal_site, true_site = Site.from_mapping(nominal), Site.from_mapping(true)
    return nominal_site, true_site, p0, n


def test_fit_recovers_the_true_calibration(
    setup: tuple[Site, Site, np.ndarray, np.ndarray],
) -> None:
    nominal, true, p0, n = setup
    sc = scenario_from_mapping(
        {"scenario": {"name": "cal", "duration_s": 120, "ambient": False, "seed": 2}}, site=true
    )
    # little shadowing, so that the estimator's consistency is what is tested
    obs = record(World(sc, radio=RadioParams(shadowing_sigma_db=1.0)), 120.0, site=nominal)
    cal = fit(nominal, obs)
    assert cal.fitted.mean() > 0.9
    # what matters to the locator: the predicted mean RSSI over the distances it ranges
    x = -10 * np.log10(np.linspace(3.0, 15.0, 13))[:, None]
    truth = p0 + n * x
    ga = nominal.gateway_arrays
    err_nominal = np.abs(ga.rssi_at_1m + ga.path_loss_exponent * x - truth)[:, cal.fitted]
    err_calibrated = np.abs(cal.p0 + cal.n * x - truth)[:, cal.fitted]
    assert np.median(err_calibrated) < 0.4 * np.median(err_nominal)
    assert np.median(np.abs(cal.n - n)[cal.fitted]) < 0.25
    assert np.nanmedian(cal.residual_db) < 6.0


def test_with_walls_the_calibrated_model_predicts_better() -> None:
    """On the example site (walls included) calibration lowers the error of predicted RSSI on
    references it did not see. Only a little: walls between rooms are outside the log-distance
    model, and no choice of P0 and n removes them."""
    data = _with_references(tomllib.loads(TEXT), np.random.default_rng(3))
    site = Site.from_mapping(data)
    sc = scenario_from_mapping(
        {"scenario": {"name": "cal", "duration_s": 90, "ambient": False, "seed": 5}}, site=site
    )
    obs = record(World(sc), 90.0)
    refs = np.array([i for i, t in enumerate(site.tags) if t.position is not None])
    train = np.isin(obs["tag"], refs[::2])
    cal = fit(site, obs[train])
    test = obs[np.isin(obs["tag"], refs[1::2])]
    from rtls.calibration import reference_positions

    idx, xyz, _ = reference_positions(site)
    pos = dict(zip(idx.tolist(), xyz, strict=True))
    ga = site.gateway_arrays
    d = np.array(
        [
            np.linalg.norm(pos[int(t)] - ga.xyz[g])
            for t, g in zip(test["tag"], test["gateway"], strict=True)
        ]
    )
    x = -10 * np.log10(np.maximum(d, 1.0))
    g = test["gateway"]
    nominal = ga.rssi_at_1m[g] + ga.path_loss_exponent[g] * x
    calibrated = cal.p0[g] + cal.n[g] * x
    err_nominal = np.sqrt(np.mean((test["rssi"] - nominal) ** 2))
    err_calibrated = np.sqrt(np.mean((test["rssi"] - calibrated) ** 2))
    assert err_calibrated < err_nominal


def test_site_text_is_updated_in_place(setup: tuple[Site, Site, np.ndarray, np.ndarray]) -> None:
    site = load_site()
    g = len(site.gateways)
    cal_p0 = np.linspace(-62, -55, g)
    cal_n = np.linspace(2.0, 3.0, g)
    from rtls.calibration import Calibration

    cal = Calibration(
        cal_p0, cal_n, np.full(g, 5), np.full(g, 50), np.zeros(g), np.arange(g) % 2 == 0
    )
    text = update_site_text(TEXT, site, cal)
    assert "# Example site" in text  # comments kept
    new = Site.from_mapping(tomllib.loads(text))
    ga = new.gateway_arrays
    assert np.allclose(ga.rssi_at_1m[::2], np.round(cal_p0[::2], 1))
    assert np.allclose(ga.path_loss_exponent[::2], np.round(cal_n[::2], 2))
    assert np.allclose(ga.rssi_at_1m[1::2], site.gateway_arrays.rssi_at_1m[1::2])


def test_no_reference_tags_is_an_error() -> None:
    data = tomllib.loads(TEXT)
    data["tags"] = [t for t in data["tags"] if t["kind"] != "reference"]
    site = Site.from_mapping(data)
    with pytest.raises(ConfigError, match="no reference tags"):
        fit(
            site,
            np.zeros(0, dtype=[("t", "<f8"), ("gateway", "<i4"), ("tag", "<i4"), ("rssi", "<f4")]),
        )
