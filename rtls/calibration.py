"""Per-gateway path-loss calibration from transmitters at known positions.

Each gateway's RSSI at 1 m (P0) and path-loss exponent n are fitted to the log-distance model
``RSSI = P0 - 10 n log10(d)`` (DOMAIN.md) from what it heard of reference tags at surveyed
positions (site tags with a fixed ``position``; a gateway that beacons is handled the same way
with a reference tag at its position); only links within a floor count. With few references
the two parameters are poorly determined, so the fit is regularised towards the site's
defaults (a Gaussian prior, i.e. ridge regression): one 2×2 solve per gateway, all at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rtls.errors import ConfigError
from rtls.observations import Observations
from rtls.site import Site

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Calibration:
    """Fitted values per gateway (G,): ``p0`` dBm at 1 m, ``n``, ``links`` references heard,
    ``packets`` observations used, ``residual_db`` RMS of the per-link residuals (NaN if none),
    ``fitted`` True where at least ``min_links`` references were heard."""

    p0: FloatArray
    n: FloatArray
    links: NDArray[np.int64]
    packets: NDArray[np.int64]
    residual_db: FloatArray
    fitted: NDArray[np.bool_]


def reference_positions(site: Site) -> tuple[NDArray[np.intp], FloatArray, NDArray[np.int64]]:
    """Tag indices (R,) of the site's tags with a fixed ``position``, their absolute positions
    (R, 3) and floor indices (R,)."""
    idx: list[int] = []
    xyz: list[tuple[float, float, float]] = []
    floors: list[int] = []
    for i, tag in enumerate(site.tags):
        if tag.position is None or tag.home is None:
            continue
        floor = site.floor(site.zone(tag.home).floor)
        x, y, z = tag.position
        idx.append(i)
        xyz.append((x, y, z + floor.elevation))
        floors.append(site.floor_index[floor.id])
    return (
        np.asarray(idx, dtype=np.intp),
        np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
        np.asarray(floors, dtype=np.int64),
    )


def fit(
    site: Site,
    obs: Observations,
    *,
    prior_p0_db: float = 6.0,
    prior_n: float = 0.5,
    sigma_db: float = 4.0,
    min_links: int = 2,
    d_min_m: float = 1.0,
    censor_margin_db: float = 10.0,
    min_packet_ratio: float = 0.9,
) -> Calibration:
    """Fit every gateway from ``obs`` (observations of any tags; only reference tags count).

    Per link (gateway, reference tag) the mean RSSI over its packets is one measurement with
    variance ``sigma_db²`` (shadowing does not average out over time). The prior keeps P0 within
    about ``prior_p0_db`` and n within ``prior_n`` of the site's current values (1 σ).
    Links whose mean is within ``censor_margin_db`` of the receivers' sensitivity are left out:
    near the sensitivity only the packets that fading lifted above it are heard, so their mean
    is biased upwards (censoring), which would flatten the fitted slope. For the same reason a
    link that heard fewer than ``min_packet_ratio`` of the packets of that reference's best link
    is left out (the packets it missed were the weak ones).
    """
    ga = site.gateway_arrays
    g = len(site.gateways)
    ref_tags, ref_xyz, ref_floor = reference_positions(site)
    if len(ref_tags) == 0:
        raise ConfigError("the site has no reference tags (tags with a fixed position)")
    row_of = np.full(len(site.tags), -1, dtype=np.intp)
    row_of[ref_tags] = np.arange(len(ref_tags))
    r = row_of[obs["tag"]]
    keep = r >= 0
    r, gw, rssi = r[keep], obs["gateway"][keep].astype(np.intp), obs["rssi"][keep].astype(float)
    link = r * g + gw
    size = len(ref_tags) * g
    packets = np.bincount(link, minlength=size).reshape(len(ref_tags), g)
    total = np.bincount(link, weights=rssi, minlength=size).reshape(len(ref_tags), g)
    with np.errstate(invalid="ignore"):
        mean = total / packets
    # same-floor links only: the model describes propagation on a floor (the locator uses the
    # gateways of the tag's floor); a slab in the path would bias P0 and n
    heard = (packets > 0) & (ref_floor[:, None] == ga.floor[None, :])
    heard &= np.nan_to_num(mean, nan=-np.inf) >= site.radio.sensitivity_dbm + censor_margin_db
    # a link that lost packets the reference's best link got is censored by the sensitivity
    best = packets.max(axis=1, keepdims=True)
    heard &= packets >= min_packet_ratio * best
    d = np.linalg.norm(ref_xyz[:, None, :] - ga.xyz[None, :, :], axis=2)
    x = -10.0 * np.log10(np.maximum(d, d_min_m))  # RSSI = P0 + n * x
    # normal equations per gateway with a Gaussian prior (ridge) around the current values
    a = 1.0 / sigma_db**2
    s1 = (heard * a).sum(axis=0) + 1.0 / prior_p0_db**2
    sx = (heard * a * x).sum(axis=0)
    sxx = (heard * a * x * x).sum(axis=0) + 1.0 / prior_n**2
    y = np.where(heard, mean, 0.0)
    sy = (heard * a * y).sum(axis=0) + ga.rssi_at_1m / prior_p0_db**2
    sxy = (heard * a * x * y).sum(axis=0) + ga.path_loss_exponent / prior_n**2
    det = s1 * sxx - sx * sx
    p0 = (sxx * sy - sx * sxy) / det
    n = (s1 * sxy - sx * sy) / det
    links = heard.sum(axis=0)
    resid = np.where(heard, y - (p0[None, :] + n[None, :] * x), 0.0)
    with np.errstate(invalid="ignore"):
        rms = np.sqrt((resid**2).sum(axis=0) / links)
    fitted = links >= min_links
    p0 = np.where(fitted, p0, ga.rssi_at_1m)
    n = np.where(fitted, n, ga.path_loss_exponent)
    return Calibration(p0, n, links, packets.sum(axis=0), rms, fitted)


def update_site_text(text: str, site: Site, cal: Calibration) -> str:
    """The site file ``text`` with ``rssi_at_1m`` and ``path_loss_exponent`` set for every
    fitted gateway; everything else (comments, order) is kept."""
    blocks = list(re.finditer(r"(?m)^\[\[gateways\]\]\s*$", text))
    if len(blocks) != len(site.gateways):
        raise ConfigError(
            f"found {len(blocks)} [[gateways]] headers but the site has {len(site.gateways)}"
        )
    out, pos = [], 0
    for k, m in enumerate(blocks):
        end = blocks[k + 1].start() if k + 1 < len(blocks) else _section_end(text, m.end())
        body = text[m.end() : end]
        if cal.fitted[k]:
            body = _set_key(body, "rssi_at_1m", f"{cal.p0[k]:.1f}")
            body = _set_key(body, "path_loss_exponent", f"{cal.n[k]:.2f}")
        out.append(text[pos : m.end()])
        out.append(body)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _section_end(text: str, start: int) -> int:
    m = re.compile(r"(?m)^\s*\[").search(text, start)
    return m.start() if m else len(text)


def _set_key(body: str, key: str, value: str) -> str:
    pattern = re.compile(rf"(?m)^{key}\s*=.*$")
    line = f"{key} = {value}  # calibrated"
    if pattern.search(body):
        return pattern.sub(line, body, count=1)
    # insert after the last key = value line of the block
    lines = body.split("\n")
    last = max((i for i, s in enumerate(lines) if re.match(r"^\w+\s*=", s)), default=0)
    lines.insert(last + 1, line)
    return "\n".join(lines)
