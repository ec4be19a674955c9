"""Accelerated generation rate of the simulator in the native batch format.

Target (issue 2): at least 200,000 observations/s on one core, so that the engine's load tests
can be fed. The example site is scaled up with extra tags (all gateways publishing the native
format) and played as fast as possible into a counting sink. Baseline, measured in the same
run: a straightforward per-observation Python generator (distance, path loss, noise and
struct.pack for every link) on the same tags and gateways.

    python bench/sim_rate.py [--tags 3000] [--seconds 20]

Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import time
import tomllib

import numpy as np

from gateways.runner import CountingSink, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls.site import EXAMPLE_SITE, Site

TARGET = 200_000.0


def scaled_site(n_extra: int, seed: int = 1) -> Site:
    data = tomllib.loads(EXAMPLE_SITE.read_text(encoding="utf-8"))
    for gw in data["gateways"]:
        gw["format"] = "native"
    rooms = [z["id"] for z in data["zones"] if z["kind"] in ("room", "corridor")]
    rng = np.random.default_rng(seed)
    for k in range(n_extra):
        kind = ("infant", "mother", "staff")[k % 3]
        data["tags"].append(
            {"id": f"X{k:05d}", "kind": kind, "serial": 500_000 + k,
             "home": rooms[int(rng.integers(len(rooms)))], "interval_s": 1.0}
        )  # fmt: skip
    return Site.from_mapping(data)


def naive_rate(site: Site, n_adv: int, seed: int = 2) -> float:
    """Observations/s of a per-link pure-Python generator (the baseline)."""
    rng = np.random.default_rng(seed)
    gws = site.gateway_arrays.xyz.tolist()
    tags = rng.uniform([0, 0, 0.5], [72, 22, 1.5], size=(n_adv, 3)).tolist()
    pack = struct.Struct("<I6sbB20s").pack
    noise = rng.normal(0, 4, size=n_adv * len(gws)).tolist()
    out = []
    k = 0
    t0 = time.perf_counter()
    for i, (x, y, z) in enumerate(tags):
        for gx, gy, gz in gws:
            d = max(math.dist((x, y, z), (gx, gy, gz)), 1.0)
            p = -59 - 25 * math.log10(d) + noise[k]
            k += 1
            if p >= -95:
                out.append(pack(i * 1000, b"\xc0\xde\x00\x00\x00\x01", int(p), 37, bytes(20)))
    dt = time.perf_counter() - t0
    return len(out) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=3000, help="extra tags added to the example")
    ap.add_argument("--seconds", type=float, default=20.0, help="virtual seconds to simulate")
    args = ap.parse_args()
    site = scaled_site(args.tags)
    data = {"scenario": {"name": "bench", "duration_s": args.seconds, "ambient": False}}
    scenario = scenario_from_mapping(data, site=site)
    world = World(scenario)
    world.step(1.0)  # warm-up: first heartbeats, caches
    stats = run(world, CountingSink(), args.seconds, tick_s=0.25)
    obs = stats.observations["native"]
    rate = obs / stats.wall_s
    base = naive_rate(site, 2000)
    print(f"tags {len(site.tags)}, gateways {len(site.gateways)}, {args.seconds:g} s simulated")
    print(f"{'':28}{'obs/s':>14}")
    print(f"{'simulator (native batches)':28}{rate:>14,.0f}")
    print(f"{'baseline: per-link Python':28}{base:>14,.0f}")
    print(f"{'speed-up over baseline':28}{rate / base:>14.1f}x")
    print(f"{'target':28}{TARGET:>14,.0f}   {'PASS' if rate >= TARGET else 'MISS'}")
    print(json.dumps({
        "bench": "sim_rate", "observations": obs, "wall_s": round(stats.wall_s, 3),
        "sim_s": args.seconds, "obs_per_s": round(rate), "baseline_obs_per_s": round(base),
        "speedup": round(rate / base, 2), "target_obs_per_s": TARGET, "pass": rate >= TARGET,
        "messages": stats.messages["native"], "tags": len(site.tags),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
