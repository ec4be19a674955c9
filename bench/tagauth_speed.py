"""Cost of tag authentication on the ingest path: 10,000 signed tags, 8 gateways each.

The example site's gateways with 10,000 staff tags advertising every 2 s: one 0.25 s tick holds
1,250 advertisements, each heard by 8 native gateways (10,000 records in 8 batches, with the
burst repeats and the late gateway copies of a real ward left out: they only add rows that the
verifier's de-duplication absorbs). Two engines play the same ticks in the same run:

- **baseline**: no key anywhere (``TagAuth`` inactive: today's unauthenticated v1 path);
- **keyed**: every tag has a key and signs; every advertisement is verified.

Printed: the verifier's own time per tick (:meth:`rtls.tagauth.TagAuth.filter`, timed inside
the keyed engine's ingest) and per unique advertisement, and the whole tick (decode, verify,
locate, track, zones) of both engines, best and median over ``--ticks`` ticks after a warm-up.
The share is the verifier's time over the keyed tick. Ends with one JSON line.

    PYTHONPATH=. python bench/tagauth_speed.py [--tags 10000] [--ticks 40]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before NumPy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from bench.simdata import synthetic_site  # noqa: E402
from rtls.advertisement import BODY_DTYPE, PROTOCOL_VERSION, TagKind, tag_address  # noqa: E402
from rtls.batch import encode_batch, make_records, obs_topic  # noqa: E402
from rtls.decode_result import Decoded  # noqa: E402
from rtls.engine import Engine  # noqa: E402
from rtls.site import GatewayFormat, Site  # noqa: E402
from rtls.tagauth import Signer  # noqa: E402

TICK_S = 0.25
INTERVAL_S = 2.0
HEARD_BY = 8
EPOCH = 1.77e9


class TimedFilter:
    """Wraps the engine's ``TagAuth.filter`` to time it."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine.auth.filter
        self.seconds: list[float] = []
        engine.auth.filter = self  # type: ignore[method-assign]

    def __call__(self, decoded: Decoded, now: float, *, commit: bool = True) -> Decoded:
        t0 = time.perf_counter()
        out = self.inner(decoded, now, commit=commit)
        self.seconds.append(time.perf_counter() - t0)
        return out


def tick_messages(site: Site, signers: list[Signer] | None, k: int,
                  rng: np.random.Generator) -> list[tuple[str, bytes, float]]:  # fmt: skip
    """Tick ``k``'s batches: the tags whose turn it is (tag i every INTERVAL_S, phase by i),
    each heard by HEARD_BY native gateways of its floor."""
    n = len(site.tags)
    per_tick = round(INTERVAL_S / TICK_S)
    tags = np.arange(k % per_tick, n, per_tick)
    counter = k // per_tick + 1
    bodies = np.zeros(len(tags), dtype=BODY_DTYPE)
    bodies["version_kind"] = (PROTOCOL_VERSION << 4) | int(TagKind.STAFF_BADGE)
    bodies["serial"] = [site.tags[i].serial for i in tags.tolist()]
    bodies["seq"] = counter
    bodies["battery"] = 90
    bodies["measured_power"] = -59
    bodies["interval"] = int(INTERVAL_S * 10)
    raw = bodies.view(np.uint8).reshape(-1, 20).copy()
    if signers is not None:
        for row, i in enumerate(tags.tolist()):
            raw[row, 12:] = np.frombuffer(signers[i].code(raw[row].tobytes(), counter), np.uint8)
    native = [g for g, gw in enumerate(site.gateways) if gw.format is GatewayFormat.NATIVE]
    heard = np.stack([rng.choice(native, HEARD_BY, replace=False) for _ in tags.tolist()])
    address = np.array([np.frombuffer(tag_address(site.tags[i].serial), np.uint8)
                        for i in tags.tolist()])  # fmt: skip
    t0 = EPOCH + k * TICK_S
    out = []
    for g in np.unique(heard).tolist():
        rows = np.flatnonzero((heard == g).any(axis=1))
        rec = make_records(rng.integers(0, 200_000, len(rows)), address[rows],
                           rng.integers(-90, -50, len(rows)), 37, raw[rows])  # fmt: skip
        gid = site.gateways[g].id
        out.append((obs_topic(gid), encode_batch(gid, k, t0, rec), t0 + TICK_S))
    return out


def run(engine: Engine, ticks: list[list[tuple[str, bytes, float]]],
        warm: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:  # fmt: skip
    """Seconds per tick (ingest + tick) after ``warm`` ticks, and the filter's in each."""
    timer = TimedFilter(engine)
    spent = []
    for k, messages in enumerate(ticks):
        if k == warm:
            timer.seconds.clear()
        t0 = time.perf_counter()
        engine.ingest_messages(messages)
        engine.tick(messages[0][2])
        if k >= warm:
            spent.append(time.perf_counter() - t0)
    return np.array(spent), np.array(timer.seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=10_000)
    ap.add_argument("--ticks", type=int, default=40)
    ap.add_argument("--warm", type=int, default=8, help="ticks before timing (tracks start)")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    floor = rng.integers(0, 2, args.tags)
    site = synthetic_site(floor, INTERVAL_S)
    keys = [rng.bytes(16) for _ in range(args.tags)]
    signers = [Signer(k) for k in keys]
    total = args.warm + args.ticks
    plain = [tick_messages(site, None, k, np.random.default_rng(k)) for k in range(total)]
    signed = [tick_messages(site, signers, k, np.random.default_rng(k)) for k in range(total)]
    baseline = Engine(site)
    keyed = Engine(site)
    for i, key in enumerate(keys):
        keyed.auth.set_key(i, key)
    base_s, _ = run(baseline, plain, args.warm)
    keyed_s, verify_s = run(keyed, signed, args.warm)
    counts = dict(keyed.auth.counts)
    assert counts.get("ok", 0) > 0 and not counts.get("bad_mac") and not counts.get("replay")
    unique = args.tags * args.ticks * TICK_S / INTERVAL_S
    per_tick = float(np.median(verify_s)) if len(verify_s) else 0.0
    figures: dict[str, Any] = {
        "tags": args.tags, "gateways_per_advertisement": HEARD_BY,
        "advertisements_per_tick": unique / args.ticks,
        "verify_us_per_advertisement": 1e6 * per_tick / (unique / args.ticks),
        "verify_us_per_advertisement_best": 1e6 * float(verify_s.min()) / (unique / args.ticks),
        "verify_ms_per_tick": 1e3 * per_tick,
        "baseline_tick_ms_best": 1e3 * float(base_s.min()),
        "baseline_tick_ms_median": 1e3 * float(np.median(base_s)),
        "keyed_tick_ms_best": 1e3 * float(keyed_s.min()),
        "keyed_tick_ms_median": 1e3 * float(np.median(keyed_s)),
        "verify_share_of_keyed_tick": per_tick / float(np.median(keyed_s)),
        "verify_share_of_tick_budget": per_tick / TICK_S,
        "macs_per_advertisement": keyed.auth.macs / (unique * total / args.ticks),
    }  # fmt: skip
    print(
        f"{args.tags} tags, every {INTERVAL_S:g} s, each advertisement heard by {HEARD_BY} "
        f"gateways: {figures['advertisements_per_tick']:.0f} advertisements "
        f"({figures['advertisements_per_tick'] * HEARD_BY:.0f} records) per {TICK_S} s tick"
    )
    print(
        f"  verification      {figures['verify_us_per_advertisement']:6.2f} µs per unique "
        f"advertisement median ({figures['verify_us_per_advertisement_best']:.2f} best), "
        f"{figures['verify_ms_per_tick']:.2f} ms per tick "
        f"({figures['macs_per_advertisement']:.2f} MAC per advertisement)"
    )
    print(
        f"  tick, baseline    {figures['baseline_tick_ms_median']:6.1f} ms median "
        f"({figures['baseline_tick_ms_best']:.1f} best)  no keys (v1, unauthenticated)"
    )
    print(
        f"  tick, keyed       {figures['keyed_tick_ms_median']:6.1f} ms median "
        f"({figures['keyed_tick_ms_best']:.1f} best)  every tag signed and verified"
    )
    print(
        f"  verification is {100 * figures['verify_share_of_keyed_tick']:.1f} % of the keyed "
        f"tick, {100 * figures['verify_share_of_tick_budget']:.1f} % of the {TICK_S} s budget"
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                      for k, v in figures.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
