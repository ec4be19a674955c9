"""The console load bench's site and load generator (bench/console_load.py, docs/console-load.md).

The site: the example site with its tags replaced by infant tags moving in the wards' south
rooms, every gateway native, no walls, no door readers. The generator, a child process of the
bench (``python -m bench.console_load_gen --port P --site FILE``), simulates the radio
(bench/simdata) and publishes every gateway's native batch every 0.25 s; it prints
``{"start": T}``, injects ``--alarms`` strap tampers over the window a line ``{"window": T0}``
on stdin sets, and ends with the :class:`Load` as one JSON line.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core each, before NumPy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench import simdata  # noqa: E402
from bench.site_toml import to_toml  # noqa: E402
from rtls.advertisement import (  # noqa: E402
    BODY_DTYPE,
    Advertisement,
    Status,
    TagKind,
    encode_body,
    tag_address,
)
from rtls.batch import encode_batch, make_records, obs_topic  # noqa: E402
from rtls.errors import RtlsError  # noqa: E402
from rtls.site import Site, load_site  # noqa: E402
from rtls.topics import POSITIONS  # noqa: E402

STEP_S = 0.25  # a gateway publishes a batch every 0.25 s ([rules.infrastructure] batch_interval_s)
BAND = ((14.0, 1.5), (60.0, 7.5))  # x, y: the wards' south rooms, 3+ m from exits and restricted
SPEED = (0.3, 1.0)  # m/s: a cot pushed, a baby carried
INTERVAL = (1.0, 2.0)  # s between a tag's advertisements
MAX_RUN_S = 900.0  # the generator gives up when no window was set by then
TAIL_S = 3.0  # the generator publishes this long after the window (the last alarms)


class BenchError(RtlsError):
    """The bench could not run (an engine that did not start, a client that could not log in)."""


# -- the site ------------------------------------------------------------------------------------


def site_mapping(n_tags: int, seed: int) -> dict[str, Any]:
    """The example site with ``n_tags`` infant tags (half per floor, homes in the south rooms,
    intervals of 1-2 s), every gateway native, no walls, no door readers."""
    rng = np.random.default_rng(seed)
    d = simdata.example_data()
    d["walls"] = []
    d["door_readers"] = []
    for gw in d["gateways"]:
        gw["format"] = "native"
    floors = [f["id"] for f in d["floors"]]
    y1 = BAND[1][1]
    rooms = {fid: [z["id"] for z in d["zones"] if z["floor"] == fid and z["kind"] == "room"
                   and min(p[1] for p in z["polygon"]) < y1 and max(p[1] for p in z["polygon"])
                   <= 9.0] for fid in floors}  # fmt: skip
    intervals = np.round(rng.uniform(*INTERVAL, n_tags), 1)
    d["tags"] = [
        {"id": f"B{i:04d}", "kind": "infant", "serial": 100_000 + i,
         "home": rooms[floors[i % len(floors)]][(i // len(floors)) % len(rooms[floors[0]])],
         "interval_s": float(intervals[i])}
        for i in range(n_tags)
    ]  # fmt: skip
    return d


def write_site(path: Path, n_tags: int, seed: int) -> Site:
    """Write the bench's site file and check it loads back as the same site."""
    data = site_mapping(n_tags, seed)
    path.write_text(to_toml(data), encoding="utf-8")
    site = load_site(path)
    if len(site.tags) != n_tags or len(site.gateways) != len(data["gateways"]):
        raise BenchError(f"{path}: the written site does not load back as written")
    return site


# -- the load generator (a child process) --------------------------------------------------------


class Movers:
    """Tags moving in straight lines between random points of :data:`BAND` on their floor
    (tag i on floor i mod F), each at its own speed."""

    def __init__(self, n: int, floors: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.floor = np.arange(n, dtype=np.intp) % floors
        self.xy = self._points(n)
        self.goal = self._points(n)
        self.speed = rng.uniform(*SPEED, n)

    def _points(self, n: int) -> NDArray[np.float64]:
        lo, hi = BAND
        return self.rng.uniform(lo, hi, (n, 2))

    def advance(self, dt: float) -> None:
        d = self.goal - self.xy
        dist = np.hypot(d[:, 0], d[:, 1])
        step = self.speed * dt
        there = dist <= step
        move = ~there
        self.xy[move] += d[move] * (step[move] / dist[move])[:, None]
        self.xy[there] = self.goal[there]
        self.goal[there] = self._points(int(there.sum()))


@dataclass
class Load:
    """What the generator did: per alarm (tag id, wall time of its first publish), counts, the
    engine ticks' times seen on the positions topic (engine time, our receipt time), the
    generator's worst lag behind its 0.25 s schedule."""

    alarms: list[tuple[str, float]] = field(default_factory=list)
    advertisements: int = 0
    records: int = 0
    messages: int = 0
    ticks: list[tuple[float, float]] = field(default_factory=list)
    lag_max_s: float = 0.0


def generate(args: argparse.Namespace) -> None:
    """The ``--generator`` child: print ``{"start": T}`` and publish the load; when a line
    ``{"window": T0}`` arrives on stdin, inject the alarms over ``[T0, T0 + duration]``, stop
    ``TAIL_S`` after it and print the :class:`Load` as JSON."""
    site = load_site(args.site)
    rng = np.random.default_rng(args.seed)
    ch = simdata.channel(site, simdata.RadioSetup(), rng)
    n, gw_ids = len(site.tags), [g.id for g in site.gateways]
    movers = Movers(n, len(site.floors), rng)
    interval = np.array([site.tag_interval(t) for t in site.tags], dtype=np.float64)
    skin = Status.SKIN_CONTACT
    templates = np.frombuffer(b"".join(
        encode_body(Advertisement(kind=TagKind.INFANT, serial=t.serial, status=skin, battery=90,
                                  interval_ms=round(1000 * iv)))
        for t, iv in zip(site.tags, interval, strict=True)), dtype=BODY_DTYPE)  # fmt: skip
    address = np.array([list(tag_address(t.serial)) for t in site.tags], dtype=np.uint8)
    status = np.full(n, int(skin), dtype=np.uint8)
    seq = np.zeros(n, dtype=np.int64)
    next_adv = rng.uniform(0.0, interval)
    spacing = max(args.duration - 3.0, 1.0) / max(args.alarms, 1)
    alarm_tag = rng.choice(n, size=min(args.alarms, n), replace=False)
    batch_seq = [0] * len(gw_ids)
    load = Load()
    window: list[float] = []  # [T0, T1] wall times, once told

    def read_window() -> None:
        line = sys.stdin.readline()
        if line.strip():
            t0 = float(json.loads(line)["window"])
            window.extend((t0, t0 + args.duration))

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received = time.time()
        head = msg.payload[:40]
        try:
            t = float(head[5 : head.index(b",")])  # {"t":1700000000.123,"positions":...
        except ValueError:
            return
        if window and window[0] <= received <= window[1]:
            load.ticks.append((t, received))

    threading.Thread(target=read_window, daemon=True).start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-load-{os.getpid()}")
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.subscribe(POSITIONS, qos=0)
    client.loop_start()
    start = time.time()
    print(json.dumps({"start": start}), flush=True)
    k, injected = 0, 0
    try:
        while not window or start + k * STEP_S <= window[1] + TAIL_S:
            k += 1
            t_hi = k * STEP_S
            if t_hi > MAX_RUN_S:
                raise BenchError(f"no measurement window within {MAX_RUN_S:.0f} s")
            delay = start + t_hi - time.time()
            if delay > 0:
                time.sleep(delay)
            else:
                load.lag_max_s = max(load.lag_max_s, -delay)
            movers.advance(STEP_S)
            fire = next_adv <= t_hi
            times = next_adv.copy()
            next_adv[fire] += interval[fire]
            due = []
            while (window and injected < len(alarm_tag)
                   and window[0] + 1.0 + injected * spacing <= start + t_hi):  # fmt: skip
                tag = int(alarm_tag[injected])
                status[tag] |= int(Status.TAMPER)
                if not fire[tag]:  # the strap's state change is advertised at once
                    fire[tag] = True
                    times[tag] = t_hi
                due.append(tag)
                injected += 1
            tags = np.flatnonzero(fire)
            seq[tags] += 1
            obs = simdata.observe(ch, site, tags, times[tags], movers.xy[tags],
                                  movers.floor[tags])  # fmt: skip
            load.advertisements += len(tags)
            load.records += len(obs)
            first = time.time()
            for tag in due:
                load.alarms.append((site.tags[tag].id, first))
            _publish_round(client, gw_ids, batch_seq, obs, templates, address, status, seq,
                           start + t_hi - STEP_S, t_hi - STEP_S, rng)  # fmt: skip
            load.messages += len(gw_ids)
    finally:
        client.loop_stop()
        client.disconnect()
    print(json.dumps(vars(load)), flush=True)


def _publish_round(
    client: mqtt.Client, gw_ids: Sequence[str], batch_seq: list[int], obs: NDArray[np.void],
    templates: NDArray[np.void], address: NDArray[np.uint8], status: NDArray[np.uint8],
    seq: NDArray[np.int64], wall_lo: float, t_lo: float, rng: np.random.Generator,
) -> None:  # fmt: skip
    """One batch per gateway with what it heard in the last step (empty batches too: a gateway
    publishes on its schedule)."""
    order = np.argsort(obs["gateway"], kind="stable")
    obs = obs[order]
    bounds = np.searchsorted(obs["gateway"], np.arange(len(gw_ids) + 1))
    tag = obs["tag"].astype(np.intp)
    bodies = templates[tag].copy()
    bodies["seq"] = (seq[tag] % 65536).astype(np.uint16)
    bodies["status"] = status[tag]
    dt_us = np.clip((obs["t"] - t_lo) * 1e6, 0, STEP_S * 1e6).astype(np.int64)
    rssi = np.clip(np.round(obs["rssi"]), -128, 127).astype(np.int64)
    channel = rng.choice(np.array([37, 38, 39]), size=len(obs))
    for g, gw in enumerate(gw_ids):
        a, b = int(bounds[g]), int(bounds[g + 1])
        recs = make_records(dt_us[a:b], address[tag[a:b]], rssi[a:b], channel[a:b], bodies[a:b])
        batch_seq[g] += 1
        client.publish(obs_topic(gw), encode_batch(gw, batch_seq[g], wall_lo, recs), qos=1)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="the broker's port (127.0.0.1)")
    ap.add_argument("--site", required=True, help="the bench's site file (write_site)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60.0, help="the window, seconds")
    ap.add_argument("--alarms", type=int, default=60, help="tamper alarms over the window")
    generate(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
