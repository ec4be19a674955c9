"""Record a simulation as engine observations (for offline locate, calibration and benches).

The simulator's messages go through the engine's own decoders (``rtls.decode``), so what is
recorded is exactly what a live engine would have seen.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gateways.world import World
from rtls.decode import Decoder
from rtls.directory import Directory
from rtls.observations import Observations, concat
from rtls.site import Site


def record(
    world: World, duration_s: float, site: Site | None = None, tick_s: float = 0.05
) -> Observations:
    """Play ``world`` for ``duration_s`` virtual seconds; return the decoded observations
    (decoded against ``site``, default the world's own) sorted by time."""
    decoder = Decoder(Directory.from_site(site or world.site))
    parts = []
    k = round(world.t / tick_s)
    while world.t < duration_s:
        k += 1
        t = min(round(k * tick_s, 9), duration_s)
        for routed in world.step(t).messages:
            decoded = decoder.decode_safely(routed.msg.topic, routed.msg.payload, world.epoch + t)
            if len(decoded.obs):
                parts.append(decoded.obs)
    obs = concat(parts)
    return obs[np.argsort(obs["t"], kind="stable")]


def write_csv(obs: Observations, site: Site, path: str | Path) -> None:
    """Write observations as ``t,gateway,tag,rssi`` rows with the site's ids."""
    gw = [g.id for g in site.gateways]
    tags = [t.id for t in site.tags]
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("t", "gateway", "tag", "rssi"))
        for t, g, tag, rssi in zip(
            obs["t"].tolist(), obs["gateway"].tolist(), obs["tag"].tolist(),
            obs["rssi"].tolist(), strict=True,
        ):  # fmt: skip
            out.writerow((f"{t:.6f}", gw[g], tags[tag], f"{rssi:.0f}"))
