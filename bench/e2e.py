"""End-to-end performance of the latency-critical loop: throughput, critical-event latency and
scale, through a real Mosquitto and a real WebSocket console client.

Targets (issue 6):

1. Throughput: RSSI observations per second through the whole engine (MQTT -> decode ->
   locate -> zones -> rules), native batches, at least 500,000/s sustained on one core and at
   least 50 % of a bare aiomqtt subscriber's rate on the same messages in the same run; no
   message lost by the engine.
2. Latency from the gateway's publish to the console client's receipt: strap tamper, SOS and
   door-reader exit, p99 <= 20 ms with 200,000 observations/s of background load (also
   measured at 0 and 50,000/s); zone breach (first beacon placing the tag in the exit zone ->
   console, the dwell set to 0) p99 <= one tick + 20 ms.
3. Scale: time per observation flat within 1.3x at 1,000, 10,000 and 100,000 tags; resident
   memory <= 150 MB at 10,000 tags and 1,000 gateways.

Method (docs/performance.md). The site is a hospital group of ``--buildings`` copies of the
example building (bench/e2e_site.py: 40 gateways, 4 door readers and 56 zones each; 25 copies
make 1,000 gateways) with ``--tags`` staff badges besides the example ward. Each part starts a
private Mosquitto (deep queues: a slow QoS 1 subscriber loses nothing at the broker) and the
engine as a child process, ``rtls engine --console --admit-all``, pinned to one core
(``--engine-core``); the load generator, the broker, the console client and this process run
on the other (``--other-core``). Traffic (bench/e2e_load.py): every tag advertises from a fixed
point, heard by up to 8 gateways of its floor under the engine's own radio model plus 4 dB of
fading, in native batches of at most ``--records`` records per gateway.

1. The same flood of ``--messages`` batches goes to a bare aiomqtt subscriber (on topics the
   engine does not subscribe to; same core as the engine) and to the engine, alternately,
   ``--repeats`` times. Rate = observations / (last processed - first published); the engine
   has processed a message when ``rtls_observations_total`` (GET /metrics) has counted it.
2. Background load at each ``--levels`` rate; ``--samples`` probes of each kind: a batch with
   the TAMPER bit of an admitted probe infant, one with the SOS bit of a probe badge, a door
   read of a probe infant at an exit reader, and zone breaches (advertisements of a probe infant
   from inside an exit zone every second until its exit alarm comes). A security user's
   console client records when each alarm's ``raise`` arrives.
3. For each ``--scale`` tag count, the same offered load (``--scale-rate`` observations/s, so
   the more tags the rarer each one's advertisements), ``--window`` s measured after
   ``--warmup``: engine CPU seconds (/proc/PID/stat) per observation processed, resident and
   peak memory (/proc/PID/status).

    python -m bench.e2e                 # the full run on one building (~10 minutes)
    python -m bench.e2e --quick         # smoke test: small site, small load, about a minute
    python -m bench.e2e --parts latency --levels 0,200000 --samples 50
    python -m bench.e2e --parts scale --scale 10000 --scale-buildings 25   # 1,000 gateways

The defaults are one building (the whole group of 25 buildings takes minutes and gigabytes per
engine start today: docs/performance.md).

Prints a table (each figure beside its target and same-run baseline), writes ``--json`` and
``--png``, and ends with one JSON line of figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.e2e_load import links_at, links_of  # noqa: E402
from bench.e2e_probe import (  # noqa: E402
    BenchBroker,
    BenchError,
    ConsoleClient,
    Engine,
    Probe,
    Prober,
    Proc,
    add_user,
    latency_of,
    pin,
)
from bench.e2e_site import GroupSpec, group_site, write_group_site  # noqa: E402
from rtls.advertisement import Status  # noqa: E402

TARGET_RATE = 500_000.0
TARGET_BARE_SHARE = 0.5
TARGET_P99_S = 0.020
TICK_S = 0.25
TARGET_FLAT = 1.3
TARGET_MB = 150.0
EXIT_POINT = (9.5, 11.0)  # inside exit zone E1 (building 0, floor L1)
EXIT_READERS = ("DR-E1", "DR-E2")  # building 0, floor L1


def _publisher(port: int, spec: GroupSpec, args: argparse.Namespace, work: Path, name: str,
               extra: Sequence[str]) -> Proc:  # fmt: skip
    cmd = [sys.executable, "-m", "bench.e2e_load", "publish", "--port", str(port),
           "--site-spec", json.dumps(asdict(spec)), "--records", str(args.records), *extra]
    return Proc(cmd, work / f"{name}.log", args.other_core, stdin="--control" in extra)


def _broker(work: Path, args: argparse.Namespace) -> BenchBroker:
    broker = BenchBroker(work)
    broker.start()
    if broker.pid is not None:
        pin(broker.pid, args.other_core)
    return broker


def _engine(site_path: Path, port: int, work: Path, args: argparse.Namespace) -> Engine:
    db = work / "alarms.db"
    asyncio.run(add_user(db))
    engine = Engine(site_path, port, db, work / "engine.log", args.engine_core)
    engine.ready_s = engine.wait_ready()  # type: ignore[attr-defined]
    return engine


def _wait_processed(engine: Engine, target: float, timeout_s: float, poll_s: float) -> float:
    """Poll until the engine has counted ``target`` observations; returns that time (NaN on a
    stall: no progress for ``timeout_s``)."""
    last, last_change = -1.0, time.monotonic()
    while True:
        n = engine.observations()
        now = time.time()
        if n >= target:
            return now
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > timeout_s:
            return float("nan")
        time.sleep(poll_s)


# -- part 1: throughput -----------------------------------------------------------------------


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec = GroupSpec(buildings=args.buildings, bulk=args.tags, probes=0)
    site_path = write_group_site(spec, work / "site.toml")
    site = group_site(spec)
    broker = _broker(work / "broker", args)
    engine = _engine(site_path, broker.port, work, args)
    prober = Prober(site, links_of(site, spec), broker.port, ward=False)  # gateways' health
    runs: list[dict[str, Any]] = []
    try:
        for k in range(args.repeats):
            sub = Proc([sys.executable, "-m", "bench.e2e_load", "subscribe", "--port",
                        str(broker.port), "--messages", str(args.messages)],
                       work / f"bare{k}.log", args.engine_core)  # fmt: skip
            sub.line()
            pub = _publisher(broker.port, spec, args, work, f"pub-bare{k}",
                             ["--bare", "--messages", str(args.messages)])  # fmt: skip
            pub.line()
            sent = pub.line()
            got = sub.line()
            pub.stop()
            sub.stop()
            bare_s = got["t_last"] - sent["t_first"]
            before = engine.observations()
            cpu0 = engine.cpu_s()
            pub = _publisher(broker.port, spec, args, work, f"pub-engine{k}",
                             ["--messages", str(args.messages)])  # fmt: skip
            pub.line()
            sent_e = pub.line()
            done = _wait_processed(engine, before + sent_e["observations"], 30.0, 0.05)
            pub.stop()
            m = engine.metrics()
            cpu = engine.cpu_s() - cpu0
            engine_s = done - sent_e["t_first"]
            run = {
                "observations": sent_e["observations"], "messages": sent_e["messages"],
                "publisher_rate": sent_e["rate"], "bare_messages": got["messages"],
                "bare_rate": sent["observations"] / bare_s,
                "engine_rate": sent_e["observations"] / engine_s,
                "engine_processed": m.get("rtls_observations_total", 0.0) - before,
                "engine_cpu_rate": sent_e["observations"] / max(cpu, 1e-9),
                "tick_p99_ms": 1000 * m.get('rtls_tick_seconds{quantile="0.99"}', 0.0),
            }  # fmt: skip
            run["lost"] = sent_e["observations"] - run["engine_processed"]
            run["bare_lost"] = args.messages - got["messages"]
            runs.append(run)
            print(f"  throughput run {k + 1}: engine {run['engine_rate']:,.0f} obs/s, bare "
                  f"{run['bare_rate']:,.0f} obs/s, lost {run['lost']:.0f}", flush=True)
        m = engine.metrics()
        rejected = {k: v for k, v in m.items() if k.startswith("rtls_decode_errors_total")}
        rss, hwm = engine.memory_mb()
    finally:
        prober.close()
        engine.stop()
        broker.close()

    def med(key: str) -> float:
        return float(np.median([r[key] for r in runs]))

    out = {"site": asdict(spec), "gateways": len(site.gateways), "tags": len(site.tags),
           "records_per_batch": args.records, "runs": runs,
           "engine_rate": med("engine_rate"), "bare_rate": med("bare_rate"),
           "engine_cpu_rate": med("engine_cpu_rate"), "publisher_rate": med("publisher_rate"),
           "lost": sum(r["lost"] for r in runs), "bare_lost": sum(r["bare_lost"] for r in runs),
           "decode_errors": rejected, "engine_rss_mb": rss, "engine_peak_mb": hwm,
           "engine_ready_s": getattr(engine, "ready_s", None)}  # fmt: skip
    out["share_of_bare"] = out["engine_rate"] / out["bare_rate"]
    return out


# -- part 2: latency --------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    a = 1000.0 * np.asarray(values)
    return {"n": len(values), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}  # fmt: skip


def latency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n = args.samples
    levels = args.levels
    spec = GroupSpec(buildings=args.buildings, bulk=args.tags, probes=3 * n * len(levels))
    site_path = write_group_site(spec, work / "site.toml")
    site = group_site(spec)
    index = {t.id: i for i, t in enumerate(site.tags)}
    infants = [t.id for t in site.tags if t.id.startswith("P-I")]
    staff = [t.id for t in site.tags if t.id.startswith("P-S")]
    breach_tags = np.array([index[i] for i in infants[2 * n * len(levels):]], dtype=np.intp)
    at_exit = links_at(site, spec, breach_tags, EXIT_POINT, 0)
    broker = _broker(work / "broker", args)
    engine = _engine(site_path, broker.port, work, args)
    prober = Prober(site, links_of(site, spec), broker.port)
    pub = _publisher(broker.port, spec, args, work, "background",
                     ["--control", "--rate", "0", "--exclude-probes"])  # fmt: skip
    pub.line()
    results: dict[str, Any] = {"site": asdict(spec), "gateways": len(site.gateways),
                               "levels": {}}  # fmt: skip
    try:
        with ConsoleClient(engine.url) as client:
            received = client.log.raised
            for li, level in enumerate(levels):
                pub.send(f"rate {level}")
                time.sleep(args.settle)
                obs0, cpu0, t0 = engine.observations(), engine.cpu_s(), time.time()
                probes: list[Probe] = []
                breaches: list[Probe] = []
                mine = slice(li * n, (li + 1) * n)
                bt = infants[2 * n * len(levels):][mine]

                def breach_all(tags: list[str] = bt, out: list[Probe] = breaches) -> None:
                    for tag in tags:
                        out.append(prober.breach(tag, at_exit, received))

                runner = threading.Thread(target=breach_all, daemon=True)
                runner.start()
                for k in range(n):
                    i = li * n + k
                    probes.append(prober.status(infants[i], Status.TAMPER, "tamper", "tamper"))
                    time.sleep(args.gap)
                    probes.append(prober.status(staff[i], Status.SOS, "sos", "sos"))
                    time.sleep(args.gap)
                    probes.append(prober.door_exit(infants[n * len(levels) + i],
                                                   EXIT_READERS[k % 2]))  # fmt: skip
                    time.sleep(args.gap)
                runner.join()
                deadline = time.time() + 5.0
                while time.time() < deadline and any(
                    (p.alarm, p.subject) not in received for p in probes
                ):
                    time.sleep(0.05)
                m = engine.metrics()
                span = time.time() - t0
                row: dict[str, Any] = {
                    "offered_rate": level,
                    "engine_rate": (m.get("rtls_observations_total", 0.0) - obs0) / span,
                    "engine_cpu_share": (engine.cpu_s() - cpu0) / span,
                    "tick_p99_ms": 1000 * m.get('rtls_tick_seconds{quantile="0.99"}', 0.0),
                }
                for kind in ("tamper", "sos", "door_exit"):
                    lat = [latency_of(p, received) for p in probes if p.kind == kind]
                    row[kind] = _stats([v for v in lat if v is not None])
                    row[kind]["missing"] = sum(v is None for v in lat)
                row["samples"] = [
                    [round(p.t - t0, 3), p.kind, None if (v := latency_of(p, received)) is None
                     else round(1000 * v, 2)] for p in [*probes, *breaches]
                ]  # (seconds into the level, kind, ms): where the tail comes from
                crit = [latency_of(p, received) for p in probes]
                row["critical"] = _stats([v for v in crit if v is not None])
                row["critical"]["missing"] = sum(v is None for v in crit)
                lat_b = [latency_of(p, received) for p in breaches]
                row["zone_breach"] = _stats([v for v in lat_b if v is not None])
                row["zone_breach"]["missing"] = sum(v is None for v in lat_b)
                row["zone_breach"]["steps"] = [len(p.steps) for p in breaches]
                results["levels"][str(level)] = row
                c, b = row["critical"], row["zone_breach"]
                print(f"  latency at {level:,} obs/s (engine {row['engine_rate']:,.0f}): "
                      f"critical p50 {c['p50_ms']:.1f} p99 {c['p99_ms']:.1f} max "
                      f"{c['max_ms']:.1f} ms, missing {c['missing']}; breach p99 "
                      f"{b['p99_ms']:.0f} ms, missing {b['missing']}", flush=True)
            results["console_messages"] = dict(client.log.counts)
            results["console_bytes"] = client.log.bytes
    finally:
        with contextlib.suppress(OSError):
            pub.send("stop")
        pub.stop()
        prober.close()
        engine.stop()
        broker.close()
    return results


# -- part 3: scale ----------------------------------------------------------------------------


def scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = []
    rate = float(args.scale_rate)
    for n in args.scale:
        spec = GroupSpec(buildings=args.scale_buildings, bulk=n, probes=0)
        sub = work / f"scale-{n}"
        sub.mkdir(parents=True, exist_ok=True)
        site_path = write_group_site(spec, sub / "site.toml")
        site = group_site(spec)
        lk = links_of(site, spec)
        broker = _broker(sub / "broker", args)
        t_ready = time.monotonic()
        try:
            engine = _engine(site_path, broker.port, sub, args)
        except BenchError as exc:
            broker.close()
            rows.append({"tags": len(site.tags), "error": str(exc)[:500]})
            continue
        ready_s = time.monotonic() - t_ready
        idle_mb = engine.memory_mb()[0]
        prober = Prober(site, lk, broker.port)
        pub = _publisher(broker.port, spec, args, sub, "load", ["--rate", f"{rate:.1f}",
                                                                 "--rounds", "2"])
        try:
            pub.line()
            time.sleep(args.warmup)
            obs0, cpu0, t0 = engine.observations(), engine.cpu_s(), time.time()
            time.sleep(args.window)
            obs1, cpu1, t1 = engine.observations(), engine.cpu_s(), time.time()
            rss, hwm = engine.memory_mb()
            m = engine.metrics()
        finally:
            pub.stop()
            prober.close()
            engine.stop()
            broker.close()
        done = obs1 - obs0
        rows.append({
            "tags": len(site.tags), "gateways": len(site.gateways), "zones": len(site.zones),
            "offered_rate": rate, "engine_rate": done / (t1 - t0),
            "us_per_observation": 1e6 * (cpu1 - cpu0) / max(done, 1.0),
            "cpu_share": (cpu1 - cpu0) / (t1 - t0), "rss_mb": rss, "peak_mb": hwm,
            "idle_rss_mb": idle_mb, "ready_s": ready_s,
            "tick_p99_ms": 1000 * m.get('rtls_tick_seconds{quantile="0.99"}', 0.0),
        })  # fmt: skip
        r = rows[-1]
        print(f"  scale {r['tags']:,} tags: {r['us_per_observation']:.2f} us/obs at "
              f"{r['engine_rate']:,.0f} obs/s (offered {rate:,.0f}), RSS {rss:.0f} MB "
              f"(peak {hwm:.0f}), ready in {ready_s:.0f} s", flush=True)
    return {"buildings": args.scale_buildings, "rate": rate, "rows": rows}


# -- report -----------------------------------------------------------------------------------


def verdicts(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target or baseline, met) rows of the table."""
    rows: list[tuple[str, str, str, bool | None]] = []
    tp = fig.get("throughput")
    if tp:
        rows.append(("engine throughput", f"{tp['engine_rate']:,.0f} obs/s",
                     f">= {TARGET_RATE:,.0f}", tp["engine_rate"] >= TARGET_RATE))
        rows.append(("bare aiomqtt subscriber", f"{tp['bare_rate']:,.0f} obs/s",
                     "(same run, same messages)", None))
        rows.append(("engine / bare", f"{tp['share_of_bare']:.0%}",
                     f">= {TARGET_BARE_SHARE:.0%}", tp["share_of_bare"] >= TARGET_BARE_SHARE))
        rows.append(("messages lost by the engine", f"{tp['lost']:.0f}", "0", tp["lost"] == 0))
    lat = fig.get("latency")
    if lat:
        for level, row in lat["levels"].items():
            for kind in ("tamper", "sos", "door_exit"):
                s = row[kind]
                top = float(level) >= 200_000
                rows.append((f"{kind} @ {float(level):,.0f} obs/s",
                             f"p50 {s['p50_ms']:.1f} / p99 {s['p99_ms']:.1f} / max "
                             f"{s['max_ms']:.1f} ms ({s['n']}, {s['missing']} missing)",
                             f"p99 <= {TARGET_P99_S * 1000:.0f} ms" if top else "",
                             (s["p99_ms"] <= TARGET_P99_S * 1000 and not s["missing"])
                             if top else None))  # fmt: skip
            b = row["zone_breach"]
            limit = (TICK_S + TARGET_P99_S) * 1000
            rows.append((f"zone breach @ {float(level):,.0f} obs/s",
                         f"p50 {b['p50_ms']:.0f} / p99 {b['p99_ms']:.0f} / max "
                         f"{b['max_ms']:.0f} ms ({b['n']}, {b['missing']} missing)",
                         f"p99 <= {limit:.0f} ms",
                         b["p99_ms"] <= limit and not b["missing"]))  # fmt: skip
    sc = fig.get("scale")
    if sc:
        ok_rows = [r for r in sc["rows"] if "error" not in r]
        for r in sc["rows"]:
            if "error" in r:
                rows.append((f"scale {r['tags']:,} tags", "FAILED", r["error"][:60], False))
                continue
            rows.append((f"time per observation, {r['tags']:,} tags",
                         f"{r['us_per_observation']:.2f} us ({r['engine_rate']:,.0f} of "
                         f"{r['offered_rate']:,.0f} obs/s)", "", None))  # fmt: skip
            target = 9_000 <= r["tags"] <= 11_000 and r["gateways"] >= 1_000
            rows.append((f"resident memory, {r['tags']:,} tags, {r['gateways']} gateways",
                         f"{r['rss_mb']:.0f} MB (peak {r['peak_mb']:.0f})",
                         f"<= {TARGET_MB:.0f} MB" if target else "",
                         r["peak_mb"] <= TARGET_MB if target else None))  # fmt: skip
        if len(ok_rows) >= 2:
            per = [r["us_per_observation"] for r in ok_rows]
            spread = max(per) / min(per)
            rows.append(("time per observation, max / min", f"{spread:.2f}x",
                         f"<= {TARGET_FLAT}x", spread <= TARGET_FLAT and
                         len(ok_rows) == len(sc["rows"])))  # fmt: skip
    return rows


def print_table(rows: list[tuple[str, str, str, bool | None]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"  {name:<{w0}}  {value:<{w1}}  {target:<{w2}}  {mark}")


def plot(fig: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("throughput", "latency", "scale") if fig.get(p)]
    f, axes = plt.subplots(1, max(1, len(parts)), figsize=(5.5 * max(1, len(parts)), 4.2))
    axes = np.atleast_1d(axes)
    for ax, part in zip(axes, parts, strict=False):
        if part == "throughput":
            tp = fig["throughput"]
            vals = [tp["bare_rate"], tp["engine_rate"], TARGET_RATE]
            ax.bar(["bare subscriber", "engine", "target"], vals,
                   color=["#999", "#3a7", "#fff"], edgecolor="k")  # fmt: skip
            ax.set_ylabel("observations / s")
            ax.set_title(f"Throughput ({tp['gateways']} gateways, {tp['tags']:,} tags)")
        elif part == "latency":
            lat = fig["latency"]["levels"]
            x = np.arange(len(lat))
            for j, kind in enumerate(("tamper", "sos", "door_exit")):
                p99 = [row[kind]["p99_ms"] for row in lat.values()]
                p50 = [row[kind]["p50_ms"] for row in lat.values()]
                ax.bar(x + (j - 1) * 0.25, p99, 0.25, label=f"{kind} p99", alpha=0.8)
                ax.plot(x + (j - 1) * 0.25, p50, "k_", markersize=12)
            ax.axhline(TARGET_P99_S * 1000, color="r", ls="--", label="target p99")
            ax.set_xticks(x, [f"{float(k):,.0f}" for k in lat])
            ax.set_xlabel("background observations / s")
            ax.set_ylabel("publish -> console (ms); - = p50")
            ax.set_title("Critical-event latency")
            ax.legend(fontsize=8)
        else:
            rows = [r for r in fig["scale"]["rows"] if "error" not in r]
            tags = [r["tags"] for r in rows]
            ax.plot(tags, [r["us_per_observation"] for r in rows], "o-", label="us / obs")
            ax.set_xscale("log")
            ax.set_xlabel("tags")
            ax.set_ylabel("engine CPU us per observation")
            ax2 = ax.twinx()
            ax2.plot(tags, [r["peak_mb"] for r in rows], "s--", color="#c50", label="peak MB")
            ax2.axhline(TARGET_MB, color="#c50", ls=":")
            ax2.set_ylabel("peak resident MB")
            ax.set_title(f"Scale ({fig['scale']['buildings'] * 40} gateways)")
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small site and load")
    ap.add_argument("--parts", default="throughput,latency,scale")
    ap.add_argument("--buildings", type=int, default=1, help="site copies (40 gateways each)")
    ap.add_argument("--tags", type=int, default=2000, help="staff badges besides the ward")
    ap.add_argument("--records", type=int, default=500, help="records per batch at most")
    ap.add_argument("--messages", type=int, default=3000, help="batches per throughput run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", default="0,50000,200000", help="background obs/s")
    ap.add_argument("--samples", type=int, default=20, help="probes of each kind per level")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between probes")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds at a level first")
    ap.add_argument("--scale", default="1000,10000,100000", help="tag counts")
    ap.add_argument("--scale-buildings", type=int, default=1)
    ap.add_argument("--scale-rate", type=float, default=100_000, help="offered obs/s (scale)")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--engine-core", type=int, default=0)
    ap.add_argument("--other-core", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("e2e.json"))
    ap.add_argument("--png", type=Path, default=Path("e2e.png"))
    ap.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.buildings, args.tags, args.messages, args.repeats = 1, 300, 400, 1
        args.levels, args.samples, args.settle = "0,20000", 3, 2.0
        args.scale, args.scale_buildings, args.warmup, args.window = "300,1000", 1, 3.0, 3.0
        args.scale_rate = 10_000
    args.levels = [int(float(v)) for v in str(args.levels).split(",") if v]
    args.scale = [int(float(v)) for v in str(args.scale).split(",") if v]
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if os.cpu_count() == 1:
        args.engine_core = args.other_core = None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    pin(os.getpid(), args.other_core)
    fig: dict[str, Any] = {"bench": "e2e", "quick": args.quick,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="rtls-e2e-") as tmp:
        work = args.workdir or Path(tmp)
        for part, fn in (("throughput", throughput), ("latency", latency), ("scale", scale)):
            if part in args.parts:
                print(f"{part}:", flush=True)
                d = work / part
                d.mkdir(parents=True, exist_ok=True)
                fig[part] = fn(args, d)
    rows = verdicts(fig)
    fig["table"] = [{"figure": r[0], "value": r[1], "target": r[2], "met": r[3]} for r in rows]
    print("\nend-to-end, engine on one core:")
    print_table(rows)
    args.json.write_text(json.dumps(fig, indent=1, default=float) + "\n")
    plot(fig, args.png)
    print(f"wrote {args.json} and {args.png}")
    print(json.dumps({"bench": "e2e", "targets_met": all(r[3] is not False for r in rows),
                      **{r[0]: r[1] for r in rows}}))  # fmt: skip
    return fig


if __name__ == "__main__":
    main()
