"""Load for the end-to-end bench: gateway traffic of a group site, its publisher, a bare
subscriber, and the probes (critical events and zone breaches).

Traffic model. Every tag of the group site (bench/e2e_site.py) stands at a point of its floor
(bulk badges: a random point of the ward band of a random floor of their building; the example
ward's tags: their home zone's centre). Each advertisement is heard by the up to ``links``
gateways of the tag's floor whose mean RSSI (the engine's own model: log-distance with the
site's calibration, minus the walls' losses, ``rtls.engine.wall_maps``) is above the
sensitivity, with 4 dB of fading per packet. A *round* is one advertisement of every tag, each
at a random moment of the round; each gateway's records, in the order it heard them, go into
native batches (``rtls.batch``) of at most ``records`` records, and the batches go out in the
order of their last records (a batch is sent when full), so one advertisement's records reach
the broker close together, as from real gateways (a random order of batches spread them over
the whole round: at 100,000 tags, seconds apart).
Payloads are built once; publishing only stamps the sequence number and ``t0`` into the header.

    python -m bench.e2e_load publish --port P --site-spec JSON [--rate R] [--messages M]
    python -m bench.e2e_load subscribe --port P --messages M

Both print one JSON line when done (to the parent bench, bench/e2e.py).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.e2e_site import GATEWAYS_PER_BUILDING, GroupSpec, group_site  # noqa: E402
from rtls.advertisement import BODY_DTYPE, MAC_PREFIX, Status, TagKind  # noqa: E402
from rtls.batch import RECORD_DTYPE, encode_batch, obs_topic  # noqa: E402
from rtls.engine import wall_maps  # noqa: E402
from rtls.locate import Anchors  # noqa: E402
from rtls.site import Site  # noqa: E402
from rtls.site import TagKind as SiteKind  # noqa: E402

FADING_DB = 4.0
_KIND = {SiteKind.INFANT: TagKind.INFANT, SiteKind.MOTHER: TagKind.MOTHER,
         SiteKind.STAFF: TagKind.STAFF_BADGE, SiteKind.REFERENCE: TagKind.REFERENCE}  # fmt: skip
_SEQ = struct.Struct("<I")
_T0 = struct.Struct("<d")


@dataclass(frozen=True)
class Links:
    """Who hears whom: ``gateway`` (N, L) global gateway indices (-1: none), ``mean`` (N, L)
    dBm; ``xy`` (N, 2) and ``floor`` (N,) (site floor index) of each tag."""

    gateway: NDArray[np.int32]
    mean: NDArray[np.float32]
    xy: NDArray[np.float64]
    floor: NDArray[np.intp]


def model_rssi(site: Site, xy: NDArray[np.float64], floor: NDArray[np.intp]) -> NDArray[np.float64]:
    """(K, G) mean RSSI of tags at ``xy`` (K, 2) on ``floor`` (K,) at every gateway of ``site``
    under the engine's model (walls included); -inf for gateways of other floors."""
    a = Anchors.from_site(site)
    z = a.floor_elevation[floor] + 1.0
    d = np.sqrt(((xy[:, None, :] - a.xyz[None, :, :2]) ** 2).sum(axis=2)
                + (a.xyz[None, :, 2] - z[:, None]) ** 2)  # fmt: skip
    mean = a.p0 - 10.0 * a.n * np.log10(np.maximum(d, 1.0))
    walls = wall_maps(site)
    if walls is not None:
        mean = mean - walls.lookup(xy)
    return np.where(a.floor[None, :] == floor[:, None], mean, -np.inf)


def place_tags(site: Site, spec: GroupSpec, seed: int = 1) -> tuple[NDArray[np.float64],
                                                                      NDArray[np.intp]]:
    """Each tag's point (N, 2) and floor index (N,) on the group site (see the module doc)."""
    rng = np.random.default_rng(seed)
    n = len(site.tags)
    xy = np.empty((n, 2))
    floor = np.empty(n, dtype=np.intp)
    zones = {z.id: z for z in site.zones}
    floor_index = {f.id: i for i, f in enumerate(site.floors)}
    bulk = 0
    for i, t in enumerate(site.tags):
        if t.id.startswith("S") and t.id[1:].isdigit():  # bulk badge: a building and a floor
            b = bulk % spec.buildings
            bulk += 1
            floor[i] = 2 * b + int(rng.integers(2))
            xy[i] = rng.uniform((10.0, 2.0), (64.0, 20.0))
        else:
            home = zones[t.home] if t.home is not None else None
            poly = np.asarray(home.polygon if home is not None else [[30, 10], [31, 11]])
            xy[i] = poly.mean(axis=0)
            floor[i] = floor_index[home.floor] if home is not None else 0
    return xy, floor


def links_of(site: Site, spec: GroupSpec, links: int = 8, seed: int = 1) -> Links:
    """The ``links`` loudest gateways of each tag (above the sensitivity + 3 dB), computed on
    one building (all buildings are copies) and shifted to each tag's building."""
    xy, floor = place_tags(site, spec, seed)
    one = group_site(GroupSpec(buildings=1, bulk=0, probes=0))
    local_floor = floor % 2
    building = floor // 2
    gw = np.full((len(xy), links), -1, dtype=np.int32)
    mean = np.full((len(xy), links), np.nan, dtype=np.float32)
    sens = site.radio.sensitivity_dbm + 3.0
    for s in range(0, len(xy), 20_000):
        m = model_rssi(one, xy[s : s + 20_000], local_floor[s : s + 20_000])
        order = np.argsort(-m, axis=1)[:, :links]
        top = np.take_along_axis(m, order, axis=1)
        ok = top >= sens
        shift = (building[s : s + 20_000] * GATEWAYS_PER_BUILDING)[:, None]
        gw[s : s + 20_000] = np.where(ok, order + shift, -1)
        mean[s : s + 20_000] = np.where(ok, top, np.nan)
    return Links(gw, mean, xy, floor)


def bodies(site: Site, status: NDArray[np.uint8] | None = None, seq: int = 0) -> NDArray[np.void]:
    """Valid advertisement bodies (N,) of every site tag (battery 90 %, interval 2 s); an
    infant's bracelet is worn (SKIN_CONTACT) besides ``status``, else every baby would raise
    tag_loose once its delay has run."""
    n = len(site.tags)
    out = np.zeros(n, dtype=BODY_DTYPE)
    kinds = np.array([int(_KIND[t.kind]) for t in site.tags], dtype=np.uint8)
    out["version_kind"] = 0x10 | kinds
    out["serial"] = [t.serial for t in site.tags]
    out["seq"] = seq % 65536
    worn = np.where(kinds == int(_KIND[SiteKind.INFANT]), int(Status.SKIN_CONTACT), 0)
    out["status"] = worn | (0 if status is None else status)
    out["battery"] = 90
    out["measured_power"] = -59
    out["interval"] = 20
    return out


def addresses(site: Site) -> NDArray[np.uint8]:
    """(N, 6) display-order BLE addresses of the site's tags (C0:DE + serial)."""
    serial = np.array([t.serial for t in site.tags], dtype=">u4")
    out = np.empty((len(serial), 6), dtype=np.uint8)
    out[:, 0], out[:, 1] = MAC_PREFIX[0], MAC_PREFIX[1]
    out[:, 2:] = serial.view(np.uint8).reshape(-1, 4)
    return out


def records_for(
    tags: NDArray[np.intp], lk: Links, addr: NDArray[np.uint8], body: NDArray[np.void],
    rng: np.random.Generator, span_us: int = 250_000,
) -> tuple[NDArray[np.int32], NDArray[np.void]]:
    """One advertisement of each of ``tags``: the gateway (R,) and record (R,) of every link
    heard, in gateway order."""  # fmt: skip
    g = lk.gateway[tags]
    ok = g >= 0
    rows = np.repeat(tags, ok.sum(axis=1))
    gws = g[ok]
    rssi = lk.mean[tags][ok] + rng.normal(0.0, FADING_DB, len(gws))
    rec = np.zeros(len(gws), dtype=RECORD_DTYPE)
    rec["dt_us"] = rng.integers(0, span_us, len(gws))
    rec["address"] = addr[rows]
    rec["rssi"] = np.clip(np.round(rssi), -127, 20).astype(np.int8)
    rec["channel"] = 37
    rec["body"] = body[rows]
    order = np.argsort(gws, kind="stable")
    return gws[order].astype(np.int32), rec[order]


def batches(
    site: Site, gws: NDArray[np.int32], rec: NDArray[np.void], max_records: int
) -> list[tuple[str, bytearray]]:
    """Native batches (topic, payload) of the records, at most ``max_records`` each; sequence
    number and t0 are stamped when published (:func:`stamp`)."""
    out: list[tuple[str, bytearray]] = []
    cuts = np.flatnonzero(np.r_[True, gws[1:] != gws[:-1], True])
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        gid = site.gateways[int(gws[a])].id
        for s in range(a, b, max_records):
            payload = encode_batch(gid, 0, 0.0, rec[s : min(b, s + max_records)])
            out.append((obs_topic(gid), bytearray(payload)))
    return out


def stamp(payload: bytearray, seq: int, t0: float) -> bytearray:
    """Set a batch's sequence number and t0 in place (header offsets 8 and 12)."""
    _SEQ.pack_into(payload, 8, seq & 0xFFFF_FFFF)
    _T0.pack_into(payload, 12, t0)
    return payload


def record_count(payload: bytes | bytearray) -> int:
    return int.from_bytes(payload[20:22], "little")


@dataclass(frozen=True)
class Rounds:
    """Prebuilt rounds of traffic: ``messages[k]`` the batches of round k."""

    messages: list[list[tuple[str, bytearray]]]
    observations: int  # per round


def build_rounds(spec: GroupSpec, n_rounds: int, max_records: int, seed: int = 1,
                 links: int = 8, exclude_probes: bool = False) -> Rounds:  # fmt: skip
    """``n_rounds`` rounds of every tag of the group site (``exclude_probes``: but the probe
    tags ``P-…``, which the prober drives), shuffled batch order."""
    site = group_site(spec)
    lk = links_of(site, spec, links, seed)
    addr = addresses(site)
    rng = np.random.default_rng(seed + 1)
    every = np.array([i for i, t in enumerate(site.tags)
                      if not (exclude_probes and t.id.startswith("P-"))], dtype=np.intp)
    rounds = []
    obs = 0
    for k in range(n_rounds):
        # each tag advertises at a random moment of the round; a gateway's records are in the
        # order it heard them and each batch goes out when its last record is in, so the
        # records of one advertisement reach the broker close together, as from real gateways
        moment = rng.random(len(every))
        order = np.argsort(moment)
        gws, rec = records_for(every[order], lk, addr, bodies(site, seq=k), rng)
        obs = len(rec)
        cuts = _batch_cuts(gws, max_records)
        heard = np.repeat(np.arange(len(every)), (lk.gateway[every[order]] >= 0).sum(axis=1))
        heard = heard[np.argsort(_gateway_of(lk, every[order]), kind="stable")]
        out_at = [int(heard[b - 1]) for b in cuts[1:]]  # rank of each batch's last record
        msgs = batches(site, gws, rec, max_records)
        rounds.append([msgs[i] for i in np.argsort(out_at, kind="stable").tolist()])
    return Rounds(rounds, obs)


def _gateway_of(lk: Links, tags: NDArray[np.intp]) -> NDArray[np.int32]:
    """The gateway of every record :func:`records_for` makes for ``tags``, in tag order."""
    g = lk.gateway[tags]
    return g[g >= 0]


def _batch_cuts(gws: NDArray[np.int32], max_records: int) -> list[int]:
    """Record index of each batch's start, and the end, as :func:`batches` cuts them."""
    cuts = np.flatnonzero(np.r_[True, gws[1:] != gws[:-1], True])
    out: list[int] = []
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        out += list(range(a, b, max_records))
    return [*out, len(gws)]


# -- publisher -------------------------------------------------------------------------------


def connect(port: int, client_id: str) -> mqtt.Client:
    """A paho client with its network thread running, connected to 127.0.0.1:``port``."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    return c


class _Control:
    """Rate changes read from stdin (``rate R`` lines; ``stop`` or end of input stops)."""

    def __init__(self, rate: float, listen: bool) -> None:
        self.rate = rate
        self.stopped = False
        self.changed = threading.Event()
        if listen:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            word, _, value = line.strip().partition(" ")
            if word == "rate":
                self.rate = float(value)
                self.changed.set()
            elif word == "stop":
                break
        self.stopped = True
        self.changed.set()


def publish(args: argparse.Namespace) -> dict[str, float]:
    """Publish prebuilt rounds: ``--messages`` of them as fast as possible, or until told to
    stop at ``--rate`` observations/s (``--control``: rate changes on stdin). ``--bare``:
    on ``e2e-bare/...`` topics (the bare subscriber's; the engine does not see them). Prints
    a JSON summary."""
    spec = GroupSpec(**json.loads(args.site_spec))
    rounds = build_rounds(spec, args.rounds, args.records, seed=args.seed,
                          exclude_probes=args.exclude_probes)  # fmt: skip
    if args.bare:
        rounds = Rounds([[("e2e-bare/" + t.split("/", 1)[1], p) for t, p in r]
                         for r in rounds.messages], rounds.observations)  # fmt: skip
    client = connect(args.port, f"e2e-load-{os.getpid()}")
    control = _Control(args.rate, args.control)
    seqs: dict[str, int] = {}
    sent = obs = 0
    print(json.dumps({"ready": True, "obs_per_round": rounds.observations}), flush=True)
    t_first = anchor_t = time.time()
    anchor_obs = 0
    infos: list[mqtt.MQTTMessageInfo] = []
    k = 0
    limit = args.messages or 1 << 62
    while sent < limit and not control.stopped:
        for topic, payload in rounds.messages[k % len(rounds.messages)]:
            if control.changed.is_set():
                control.changed.clear()
                anchor_t, anchor_obs = time.time(), obs
            while control.rate == 0 and not control.stopped:
                control.changed.wait(0.1)
                anchor_t, anchor_obs = time.time(), obs
            if control.stopped:
                break
            if control.rate > 0:  # pace: observations published since the anchor at the rate
                delay = anchor_t + (obs - anchor_obs) / control.rate - time.time()
                if delay > 0.002:
                    time.sleep(delay)
            seq = seqs.get(topic, 0) + 1
            seqs[topic] = seq
            info = client.publish(topic, bytes(stamp(payload, seq, time.time())), qos=1)
            if len(infos) < 64:
                infos.append(info)
            else:
                infos[sent % 64] = info
            sent += 1
            obs += record_count(payload)
            if sent >= limit:
                break
        k += 1
    t_last = time.time()
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()
    out = {"messages": sent, "observations": obs, "t_first": t_first, "t_last": t_last,
           "rate": obs / max(t_last - t_first, 1e-9)}  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


# -- the bare subscriber ---------------------------------------------------------------------


async def _subscribe(port: int, expect: int, timeout_s: float) -> dict[str, float]:
    import aiomqtt

    n = size = 0
    t_first = t_last = 0.0
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"e2e-bare-{os.getpid()}") as c:
        await c.subscribe("e2e-bare/v1/gw/+/obs", qos=1)
        print(json.dumps({"ready": True}), flush=True)
        deadline = time.monotonic() + timeout_s
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + timeout_s):
            async for message in c.messages:
                payload = message.payload
                n += 1
                size += len(payload)
                t_last = time.time()
                if n == 1:
                    t_first = t_last
                if n >= expect or time.monotonic() > deadline:
                    break
    return {"messages": n, "bytes": size, "t_first": t_first, "t_last": t_last}


def subscribe(args: argparse.Namespace) -> dict[str, float]:
    """Receive ``--messages`` native batches and nothing else; print when they came."""
    try:
        out = asyncio.run(_subscribe(args.port, args.messages, args.timeout))
    except TimeoutError:
        out = {"messages": -1.0}
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--site-spec", required=True, help="GroupSpec as JSON")
    p.add_argument("--records", type=int, default=125)
    p.add_argument("--rounds", type=int, default=4, help="distinct rounds prebuilt")
    p.add_argument("--messages", type=int, default=0, help="stop after this many (0: no limit)")
    p.add_argument("--rate", type=float, default=-1.0, help="observations/s (-1: flat out)")
    p.add_argument("--control", action="store_true", help="read 'rate R' / 'stop' on stdin")
    p.add_argument("--bare", action="store_true", help="publish on e2e-bare/... topics")
    p.add_argument("--exclude-probes", action="store_true", help="leave out the probe tags")
    p.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("subscribe")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--messages", type=int, required=True)
    s.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args(argv)
    (publish if args.command == "publish" else subscribe)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())




def links_at(site: Site, spec: GroupSpec, tags: NDArray[np.intp], xy: tuple[float, float],
             floor: int, links: int = 8) -> Links:  # fmt: skip
    """The site's links with ``tags`` moved to point ``xy`` of building 0's floor ``floor``."""
    base = links_of(site, spec, links)
    one = group_site(GroupSpec(buildings=1, bulk=0, probes=0))
    m = model_rssi(one, np.array([xy], dtype=np.float64), np.array([floor]))[0]
    order = np.argsort(-m)[:links]
    ok = m[order] >= site.radio.sensitivity_dbm + 3.0
    gw, mean = base.gateway.copy(), base.mean.copy()
    gw[tags] = np.where(ok, order, -1)
    mean[tags] = np.where(ok, m[order], np.nan)
    return Links(gw, mean, base.xy, base.floor)
