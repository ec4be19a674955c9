"""Soak bench: the real system at hospital load for an hour (issue 7, part 5). Targets: the
engine's resident memory grows less than 5 % from the end of the warm-up to the end, and
critical-event latency does not drift (the last window's p50 / p99 like the first's).

What runs (the end-to-end bench's machinery, bench/e2e_probe.py, bench/e2e_load.py): a private
Mosquitto; the engine as a child process (``rtls engine --console --admit-all``: alarms, store,
console) pinned to one core; on the other core the load generator and this process. The site
(bench/e2e_site.py) is ``--buildings`` copies of the example building (40 gateways, 4 door
readers each: 5 make 200 gateways) with ``--tags`` staff badges besides the example ward and the
probe tags. Every tag advertises once per ``--interval`` s, heard by up to 8 gateways of its
floor under the engine's radio model (native batches of at most ``--records`` records); the
keep-alive sends the ward's and probe tags' advertisements, every gateway's health and every
door reader's status. Every ``--probe-every`` s one critical event, in turn: a strap tamper
(infant), an SOS (staff badge), a door-reader exit (infant), each on a fresh probe tag. A
security user's WebSocket console client timestamps each alarm's raise, acknowledges it, and
once the condition is gone (the probe tag's status bit is cleared after the raise) resolves it
(outcome ``test``), as staff would: open alarms stay bounded.

Every ``--sample`` s: the engine's resident memory (/proc/PID/status), CPU time, and its
metrics (ticks, messages received, observations). Per ``--window`` s: latency p50 / p99 / max
of the probes published in it, memory, tick p99. Figures: RSS growth from the end of the
warm-up (``--warmup`` s) to the end, and its least-squares slope; latency of the first and last
windows after the warm-up; ticks; messages lost (published by the load generator and the
prober minus received by the engine, after a drain).

    python -m bench.soak                         # one hour (do not run it on a shared machine
                                                 # while others measure)
    python -m bench.soak --duration 240 --warmup 60 --window 30     # a 4-minute run
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.e2e import _broker, _engine, _publisher  # noqa: E402
from bench.e2e_load import links_of  # noqa: E402
from bench.e2e_probe import (  # noqa: E402
    PASSWORD,
    USER,
    ConsoleClient,
    ConsoleLog,
    Probe,
    Prober,
    latency_of,
    pin,
)
from bench.e2e_site import GroupSpec, group_site, write_group_site  # noqa: E402
from rtls.advertisement import Status  # noqa: E402

TARGET_RSS_GROWTH = 0.05
EXIT_READERS = ("DR-E1", "DR-E2")
KINDS = ("tamper", "sos", "door_exit")


class CountingProber(Prober):
    """The e2e prober, counting the MQTT messages it publishes (for the lost-message count)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.published = 0
        super().__init__(*args, **kwargs)

    def _publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> float:
        self.published += 1
        return super()._publish(topic, payload, qos, retain)

    def _send(self, batches: list[tuple[str, bytearray, int]]) -> float:
        self.published += len(batches)
        return super()._send(batches)


@dataclass
class Handled(ConsoleLog):
    """What the soak's console client did: raises seen (first receipt by (type, subject)),
    acknowledgements and resolutions, refusals, messages by type."""

    raised_types: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    resolved: int = 0
    unresolved: int = 0
    refused: dict[str, int] = field(default_factory=dict)


class StaffConsole(ConsoleClient):
    """A security user's console in a thread of its own (the end-to-end bench's client): records
    each alarm raise, acknowledges it, calls ``on_raise(type, subject)`` (the prober clears the
    tag's status bit: the strap is mended, the button released) and resolves it once its
    condition is gone."""

    log: Handled

    def __init__(self, url: str, on_raise: Any, resolve_after_s: float = 3.0,
                 tries: int = 20) -> None:  # fmt: skip
        super().__init__(url)
        self.on_raise = on_raise
        self.resolve_after_s = resolve_after_s
        self.tries = tries
        self.log = Handled()
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ws: Any = None  # the connection, once open

    async def _client(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, max_size=None, compression=None) as ws:
            self.ws = ws
            login = asyncio.ensure_future(self._ask("login", user=USER, password=PASSWORD))
            tasks: set[asyncio.Task[None]] = set()
            # renew the session at half-life, as the page does: a 15 min token outlives no soak
            refresher = asyncio.create_task(self._refresh(login))
            tasks.add(refresher)
            try:
                await self._read(ws, tasks)
            finally:  # the bench ends: alarms still being handled are left as they are
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if login.done() and not login.result().get("ok"):
                self.log.error = str(login.result())

    async def _refresh(self, login: asyncio.Future[dict[str, Any]]) -> None:
        reply = await login
        while reply.get("ok"):
            left = float(reply["expires_t"]) - time.time()
            await asyncio.sleep(max(1.0, left / 2))
            reply = await self._ask("refresh")
        self.log.error = f"session refresh refused: {reply}"

    async def _read(self, ws: Any, tasks: set[asyncio.Task[None]]) -> None:
        async for frame in ws:
            now = time.time()
            msg = json.loads(frame)
            kind = str(msg.get("type"))
            self.log.counts[kind] = self.log.counts.get(kind, 0) + 1
            if kind == "reply" and msg.get("id") in self._waiting:
                self._waiting.pop(msg["id"]).set_result(msg)
            elif kind == "snapshot":
                self._ready.set()
            elif kind == "alarm" and msg["transition"]["action"] in ("raise", "reactivate"):
                a = msg["transition"]["alarm"]
                self.log.raised.setdefault((a["type"], a["subject"]), now)
                self.log.raised_types[a["type"]] = self.log.raised_types.get(a["type"], 0) + 1
                task = asyncio.create_task(self._handle(a["id"], a["type"], a["subject"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        req_id = self._next_id
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[req_id] = fut
        await self.ws.send(json.dumps({"op": op, "id": req_id, **fields}))
        reply = await asyncio.wait_for(fut, 30.0)
        if not reply.get("ok") and op == "login":
            self.log.error = str(reply)
            self._ready.set()
        return reply

    def _refused(self, reply: dict[str, Any]) -> None:
        key = str(reply.get("error", "?")).split(" ", 3)[-1][:60]
        self.log.refused[key] = self.log.refused.get(key, 0) + 1

    async def _handle(self, alarm_id: int, type_: str, subject: str) -> None:
        reply = await self._command("acknowledge", alarm=alarm_id)
        if reply.get("ok"):
            self.log.acked += 1
        else:
            self._refused(reply)
        self.on_raise(type_, subject)
        for _ in range(self.tries):
            await asyncio.sleep(self.resolve_after_s)
            reply = await self._command("resolve", alarm=alarm_id, outcome="test",
                                        comment="soak bench probe")  # fmt: skip
            if reply.get("ok"):
                self.log.resolved += 1
                return
            if "already" in str(reply.get("error")) or "closed" in str(reply.get("error")):
                return  # a non-latching alarm closed by itself
        self._refused(reply)
        self.log.unresolved += 1

    async def _command(self, name: str, **args: Any) -> dict[str, Any]:
        try:
            return await self._ask("command", command=name, args=args)
        except (TimeoutError, OSError) as exc:
            return {"ok": False, "error": f"no reply: {exc!r}"}


# -- the run ----------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    a = 1000.0 * np.asarray(values)
    return {"n": len(values), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}  # fmt: skip


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cycles = math.ceil(args.duration / (len(KINDS) * args.probe_every)) + 2
    spec = GroupSpec(buildings=args.buildings, bulk=args.tags, probes=2 * cycles)
    site_path = write_group_site(spec, work / "site.toml")
    site = group_site(spec)
    index = {t.id: i for i, t in enumerate(site.tags)}
    infants = [t.id for t in site.tags if t.id.startswith("P-I")]
    staff = [t.id for t in site.tags if t.id.startswith("P-S")]
    broker = _broker(work / "broker", args)
    t_start = time.monotonic()
    engine = _engine(site_path, broker.port, work, args)
    ready_s = time.monotonic() - t_start
    prober = CountingProber(site, links_of(site, spec), broker.port)
    pub = _publisher(broker.port, spec, args, work, "load",
                     ["--control", "--rate", "0", "--exclude-probes"])  # fmt: skip
    per_round = int(pub.line()["obs_per_round"])
    rate = per_round / args.interval
    samples: list[dict[str, float]] = []
    probes: list[Probe] = []

    def on_raise(type_: str, subject: str) -> None:
        i = index.get(subject)
        if i is not None:
            prober.held[i] = 0  # the strap is mended, the button released

    try:
        with StaffConsole(engine.url, on_raise) as console:
            received = console.log.raised
            pub.send(f"rate {rate:.1f}")
            t0 = time.time()
            cpu0 = engine.cpu_s()
            next_probe, next_sample, k = t0 + 1.0, t0, 0
            while (now := time.time()) < t0 + args.duration:
                if now >= next_sample:
                    next_sample += args.sample
                    rss, hwm = engine.memory_mb()
                    m = engine.metrics()
                    samples.append({
                        "t": now - t0, "rss_mb": rss, "peak_mb": hwm,
                        "cpu_s": engine.cpu_s() - cpu0,
                        "ticks": m.get("rtls_ticks_total", 0.0),
                        "messages": m.get("rtls_messages_received_total", 0.0),
                        "observations": m.get("rtls_observations_total", 0.0),
                        "tick_p99_ms": 1000 * m.get('rtls_tick_seconds{quantile="0.99"}', 0.0),
                        "open_alarms": sum(v for key, v in m.items()
                                           if key.startswith("rtls_alarms{")),
                    })  # fmt: skip
                if now >= next_probe:
                    next_probe += args.probe_every
                    kind, c = KINDS[k % 3], k // 3
                    if kind == "tamper":
                        probes.append(prober.status(infants[2 * c], Status.TAMPER, kind, kind))
                    elif kind == "sos":
                        probes.append(prober.status(staff[c], Status.SOS, kind, kind))
                    else:
                        probes.append(prober.door_exit(infants[2 * c + 1], EXIT_READERS[c % 2]))
                    k += 1
                time.sleep(max(0.0, min(next_probe, next_sample) - time.time()))
            t_end = time.time()
            pub.send("stop")
            sent = pub.line()
            deadline = time.time() + 10.0  # the last alarms and messages drain
            while time.time() < deadline and any((p.alarm, p.subject) not in received
                                                 for p in probes):  # fmt: skip
                time.sleep(0.1)
            expected = sent["messages"] + prober.published
            got = _drain(engine, expected, 30.0)
            m = engine.metrics()
            handled = asdict(console.log)
            handled.pop("raised")
    finally:
        with contextlib.suppress(OSError):
            pub.send("stop")
        pub.stop()
        prober.close()
        engine.stop()
        broker.close()
    return figures(args, spec, site, samples, probes, received, t0, t_end, ready_s, rate,
                   per_round, sent, expected, got, m, handled)  # fmt: skip


def _drain(engine: Any, expected: float, timeout_s: float) -> float:
    """Wait until the engine has received ``expected`` messages or stops making progress."""
    last, since = -1.0, time.monotonic()
    while True:
        got = float(engine.metrics().get("rtls_messages_received_total", 0.0))
        if got >= expected:
            return got
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > timeout_s:
            return got
        time.sleep(0.5)


def figures(args: argparse.Namespace, spec: GroupSpec, site: Any,
            samples: list[dict[str, float]], probes: list[Probe],
            received: dict[tuple[str, str], float], t0: float, t_end: float, ready_s: float,
            rate: float, per_round: int, sent: dict[str, Any], expected: float, got: float,
            m: dict[str, float], handled: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The figures and the per-window table (see the module doc)."""
    duration = t_end - t0
    windows: list[dict[str, Any]] = []
    edges = np.arange(0.0, duration + 1e-9, args.window)
    if duration - edges[-1] >= args.window / 2 or len(edges) < 2:
        edges = np.append(edges, duration)
    else:  # a short last piece joins the last window
        edges[-1] = duration
    for a, b in itertools.pairwise(edges.tolist()):
        mine = [p for p in probes if a <= p.t - t0 < b]
        lat = [v for p in mine if (v := latency_of(p, received)) is not None]
        ss = [s for s in samples if a <= s["t"] < b] or samples[-1:]
        windows.append({
            "start_s": float(a), "end_s": float(b), "latency": _stats(lat),
            "missing": len(mine) - len(lat),
            "rss_mb": float(np.median([s["rss_mb"] for s in ss])),
            "tick_p99_ms": max(s["tick_p99_ms"] for s in ss),
            "open_alarms": ss[-1]["open_alarms"],
        })  # fmt: skip
    after = [w for w in windows if w["start_s"] >= args.warmup - 1e-6] or windows[-1:]
    post = [s for s in samples if s["t"] >= args.warmup]
    warm = post[0] if post else samples[-1]
    rss_warm, rss_end = warm["rss_mb"], samples[-1]["rss_mb"]
    slope = (float(np.polyfit([s["t"] for s in post], [s["rss_mb"] for s in post], 1)[0])
             if len(post) >= 3 else math.nan)  # fmt: skip
    lat_all = [(p.t - t0, v) for p in probes if (v := latency_of(p, received)) is not None]
    lat_post = [(t, v) for t, v in lat_all if t >= args.warmup]
    lat_slope = (float(np.polyfit([t for t, _ in lat_post], [v for _, v in lat_post], 1)[0])
                 if len(lat_post) >= 3 else math.nan)  # fmt: skip
    first, last = after[0], after[-1]
    cpu = samples[-1]["cpu_s"] if samples else math.nan
    out: dict[str, Any] = {
        "bench": "soak", "duration_s": duration, "warmup_s": args.warmup, "window_s": args.window,
        "site": asdict(spec), "gateways": len(site.gateways), "readers": len(site.door_readers),
        "tags": len(site.tags), "interval_s": args.interval, "offered_obs_per_s": rate,
        "obs_per_round": per_round, "engine_ready_s": ready_s,
        "rss_warm_mb": rss_warm, "rss_end_mb": rss_end,
        "rss_growth": (rss_end - rss_warm) / rss_warm if rss_warm else math.nan,
        "rss_slope_mb_per_h": slope * 3600.0, "peak_mb": samples[-1]["peak_mb"],
        "latency_first": first["latency"], "latency_last": last["latency"],
        "latency_slope_ms_per_h": lat_slope * 1000.0 * 3600.0,
        "probes": len(probes), "missing": sum(w["missing"] for w in windows),
        "ticks": m.get("rtls_ticks_total", 0.0), "ticks_per_s": m.get("rtls_ticks_total", 0.0)
        / max(duration, 1e-9),
        "tick_p99_ms_max": max((w["tick_p99_ms"] for w in windows), default=math.nan),
        "engine_cpu_share": cpu / max(duration, 1e-9),
        "messages_published": expected, "messages_received": got, "lost": expected - got,
        "observations_published": sent.get("observations"),
        "observations_processed": m.get("rtls_observations_total", 0.0),
        "decode_errors": {k: v for k, v in m.items() if k.startswith("rtls_decode_errors")},
        "console": handled, "windows": windows, "samples": samples,
        "latency_samples": [[round(t, 2), round(1000 * v, 2)] for t, v in lat_all],
    }  # fmt: skip
    return out


def verdicts(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    f, last = fig["latency_first"], fig["latency_last"]
    return [
        ("site", f"{fig['gateways']} gateways, {fig['readers']} door readers, {fig['tags']:,} "
         f"tags, one advertisement each per {fig['interval_s']:g} s", "", None),
        ("offered load", f"{fig['offered_obs_per_s']:,.0f} obs/s", "", None),
        ("resident memory, end of warm-up -> end",
         f"{fig['rss_warm_mb']:.1f} -> {fig['rss_end_mb']:.1f} MB ({fig['rss_growth']:+.1%}; "
         f"slope {fig['rss_slope_mb_per_h']:+.1f} MB/h)", f"< {TARGET_RSS_GROWTH:.0%}",
         fig["rss_growth"] < TARGET_RSS_GROWTH),
        ("critical latency, first window", f"p50 {f['p50_ms']:.1f} / p99 {f['p99_ms']:.1f} / "
         f"max {f['max_ms']:.1f} ms ({f['n']})", "(baseline, same run)", None),
        ("critical latency, last window", f"p50 {last['p50_ms']:.1f} / p99 "
         f"{last['p99_ms']:.1f} / max {last['max_ms']:.1f} ms ({last['n']})",
         "no drift: p99 <= 2x first + 20 ms", drift_ok(fig)),
        ("latency trend after warm-up", f"{fig['latency_slope_ms_per_h']:+.1f} ms/h", "", None),
        ("probes without an alarm", f"{fig['missing']} of {fig['probes']}", "0",
         fig["missing"] == 0),
        ("ticks", f"{fig['ticks']:,.0f} ({fig['ticks_per_s']:.2f}/s), worst window p99 "
         f"{fig['tick_p99_ms_max']:.0f} ms", "", None),
        ("messages lost", f"{fig['lost']:,.0f} of {fig['messages_published']:,.0f}", "0",
         fig["lost"] <= 0),
        ("engine CPU", f"{fig['engine_cpu_share']:.0%} of a core", "", None),
    ]  # fmt: skip


def drift_ok(fig: dict[str, Any]) -> bool | None:
    """No drift: the last window's p99 within twice the first's plus 20 ms (the machine is
    shared: single windows of a few probes are noisy)."""
    f, last = fig["latency_first"], fig["latency_last"]
    if not f["n"] or not last["n"]:
        return None
    return bool(last["p99_ms"] <= 2.0 * f["p99_ms"] + 20.0)


def print_table(rows: list[tuple[str, str, str, bool | None]]) -> None:
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"  {name:<{w0}}  {value:<{w1}}  {target}  {mark}")


def plot(fig: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    s = fig["samples"]
    minutes = [x["t"] / 60 for x in s]
    ax1.plot(minutes, [x["rss_mb"] for x in s], label="engine RSS")
    ax1.axhline(fig["rss_warm_mb"] * (1 + TARGET_RSS_GROWTH), color="r", ls=":",
                label="end of warm-up + 5 %")  # fmt: skip
    ax1.axvline(fig["warmup_s"] / 60, color="#888", ls="--", label="end of warm-up")
    ax1.set_ylabel("resident MB")
    ax1.legend(fontsize=8)
    ax1.set_title(f"Soak: {fig['gateways']} gateways, {fig['tags']:,} tags, "
                  f"{fig['offered_obs_per_s']:,.0f} obs/s")  # fmt: skip
    lat = np.array(fig["latency_samples"] or [[0.0, math.nan]])
    ax2.plot(lat[:, 0] / 60, lat[:, 1], ".", ms=3, alpha=0.5, label="probe latency")
    w = fig["windows"]
    mid = [(x["start_s"] + x["end_s"]) / 120 for x in w]
    ax2.plot(mid, [x["latency"]["p50_ms"] for x in w], "k-", label="window p50")
    ax2.plot(mid, [x["latency"]["p99_ms"] for x in w], "r-", label="window p99")
    ax2.set_xlabel("minutes")
    ax2.set_ylabel("publish -> console (ms)")
    ax2.set_yscale("log")
    ax2.legend(fontsize=8)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=300.0, help="seconds before the baseline")
    ap.add_argument("--window", type=float, default=300.0, help="seconds per window")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--buildings", type=int, default=5, help="40 gateways each")
    ap.add_argument("--tags", type=int, default=3000, help="staff badges besides the ward")
    ap.add_argument("--interval", type=float, default=2.0, help="s between a tag's adverts")
    ap.add_argument("--records", type=int, default=125, help="records per batch at most")
    ap.add_argument("--probe-every", type=float, default=10.0, help="s between critical events")
    ap.add_argument("--engine-core", type=int, default=0)
    ap.add_argument("--other-core", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("soak.json"))
    ap.add_argument("--png", type=Path, default=Path("soak.png"))
    ap.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.warmup >= args.duration:
        ap.error("--warmup must be shorter than --duration")
    if os.cpu_count() == 1:
        args.engine_core = args.other_core = None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    pin(os.getpid(), args.other_core)
    with tempfile.TemporaryDirectory(prefix="rtls-soak-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fig = soak(args, work)
    fig["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = verdicts(fig)
    fig["table"] = [{"figure": r[0], "value": r[1], "target": r[2], "met": r[3]} for r in rows]
    print(f"\nsoak, {fig['duration_s']:.0f} s (warm-up {fig['warmup_s']:.0f} s, windows of "
          f"{fig['window_s']:.0f} s):")  # fmt: skip
    print_table(rows)
    args.json.write_text(json.dumps(fig, indent=1, default=float) + "\n")
    plot(fig, args.png)
    print(f"wrote {args.json} and {args.png}")
    return fig


if __name__ == "__main__":
    sys.exit(0 if all(r["met"] is not False for r in main()["table"]) else 1)
