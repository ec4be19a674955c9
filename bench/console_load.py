"""The console under load: WebSocket clients beside thousands of moving infant tags.

Targets (issue 5, Show): with 50 console clients logged in and 2,000 moving tags, every client
gets every alarm (missing pairs: 0) with a p99 delivery time of at most 1 s (the console's
"within 1 s of the breach"), and the engine's throughput with the clients is within 10 % of the
same run without them: engine CPU per 1,000 observations at most 1.10 times the baseline's, and
at least 1/1.10 of the baseline's ticks run (a late tick decodes a bigger batch, which makes the
CPU figure look better than it is).

Method (docs/console-load.md). Two runs with the same offered load and seed, each with its own
private Mosquitto (:class:`rtls.service.broker.MosquittoBroker`), a copy of one store (every
baby admitted by ``--admit-all`` once, the users added with the engine's argon2 parameters) and
the engine with its console as a separate process (``python -m rtls.service.cli engine
--console ... --admit-all``): first with no console client (the baseline), then with
``--clients`` WebSocket clients (websockets, asyncio, in this process), all logging in at once
under load, every one site-wide, reading and parsing every message. The site is the example
site (its 40 gateways, all publishing the native format, and its zones; no walls, no door
readers) with its tags replaced by ``--tags`` infant tags, moving at 0.3-1.0 m/s between random
points of the wards' south band of rooms (away from exits and restricted zones: the injected
tampers are the only alarms).

A load generator (a child process, bench/console_load_gen.py) simulates the radio
(bench/simdata.channel: log-distance, 4 dB shadowing, 3 % loss) and publishes native batches
(rtls.batch), every gateway every 0.25 s, each tag advertising every 1-2 s. The window starts
``--warmup`` s after the load and at least 10 s after the last login; the generator injects
``--alarms`` strap tampers evenly over it, each on its own tag (TAMPER in its advertisements
from then on), stamped with the wall time just before the first batch carrying it is
published. Every client records when the
``alarm`` message raising it arrives (or a snapshot carrying it, after a resynchronisation):
delivery time = receipt - publish, over every (alarm, client) pair.

Engine figures over the window: CPU seconds of the engine process (/proc/PID/stat, user +
system) per 1,000 observations decoded (``rtls_observations_total``), 1000 / that (the rate one
core would sustain), ticks run (``rtls_ticks_total``), the interval between ticks seen on
``rtls/v1/engine/positions`` (the event loop's cadence, which the console shares) and
``rtls_tick_seconds`` (decode + locate, last 1000 ticks). Beside them: this process's CPU (a
saturated client process would inflate delivery times) and the machine's load average.
``--profile FILE`` samples the engine with py-spy over the window of the run with clients.

    python -m bench.console_load [--clients 50] [--tags 2000] [--duration 60] [--alarms 60]
    python -m bench.console_load --quick      # smoke test: 3 clients, 100 tags, a few seconds

Needs Debian's ``mosquitto``. Ends with one JSON line of figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core each, before NumPy loads its BLAS

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO, Any  # noqa: E402

import numpy as np  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, WebSocketException  # noqa: E402

from bench.console_http import fetch, metrics  # noqa: E402
from bench.console_load_gen import MAX_RUN_S, TAIL_S, BenchError, Load, write_site  # noqa: E402
from rtls.service.accounts import Accounts  # noqa: E402
from rtls.service.broker import MosquittoBroker, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_S = 1.0
TARGET_RATIO = 1.10
ROLES = ("nurse", "nurse", "security", "technician", "admin")  # cycled; every user scoped '*'
PASSWORD = "bench password 1234"
READY_TIMEOUT_S = 300.0
SETTLE_S = 10.0  # between the last login and the window (at most --warmup)


# -- the engine process --------------------------------------------------------------------------


class EngineProcess:
    """``rtls engine --console`` as a child process; its CPU time and metrics."""

    def __init__(self, site: Path, broker_port: int, db: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        cmd = [sys.executable, "-m", "rtls.service.cli", "engine", "--site", str(site),
               "--broker", f"127.0.0.1:{broker_port}", "--db", str(db),
               "--console", f"127.0.0.1:{self.port}", "--admit-all"]  # fmt: skip
        self._log_file: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait until /health answers with the broker connected; returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise BenchError(f"the engine exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                health = json.loads(self._get("health"))
            except (OSError, ValueError):
                health = {}
            if health.get("broker"):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise BenchError(f"the engine was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def _get(self, path: str) -> bytes:
        return fetch(self.url + path, timeout=10)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the engine process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks_per_s

    def metrics(self) -> dict[str, float]:
        """The /metrics samples without labels, plus ``rtls_tick_seconds`` quantiles as
        ``rtls_tick_seconds{quantile="0.99"}``."""
        return metrics(self.url + "metrics", timeout=10)

    def log_tail(self, n: int = 30) -> str:
        self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


# -- console clients -----------------------------------------------------------------------------


@dataclass
class ClientLog:
    """What one client received: the first receipt time of each tamper raise (tag -> wall
    time), those that came in a snapshot, message counts by type, bytes."""

    user: str
    snapshot_t: float = 0.0  # when the login's snapshot arrived
    tampers: dict[str, float] = field(default_factory=dict)
    via_snapshot: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)  # bytes by message type
    error: str | None = None


async def _client(url: str, log: ClientLog, ready: asyncio.Event) -> None:
    """Log in as ``log.user`` and read every message (parsed, as a page would) until closed."""
    ws: ClientConnection
    try:
        async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
            await ws.send(json.dumps({"op": "login", "id": 1, "user": log.user,
                                      "password": PASSWORD}))  # fmt: skip
            async for raw in ws:
                received = time.time()
                m = json.loads(raw)
                kind = m.get("type")
                log.counts[kind] += 1
                log.sizes[kind] += len(raw)
                if kind == "alarm":
                    tr = m["transition"]
                    alarm = tr["alarm"]
                    if alarm["type"] == "tamper" and tr["action"] == "raise":
                        log.tampers.setdefault(alarm["subject"], received)
                elif kind == "snapshot":
                    log.snapshot_t = log.snapshot_t or received
                    for alarm in m["alarms"]:
                        if alarm["type"] == "tamper" and alarm["subject"] not in log.tampers:
                            log.tampers[alarm["subject"]] = received
                            log.via_snapshot.add(alarm["subject"])
                    ready.set()
                elif kind == "reply" and m.get("id") == 1 and not m["ok"]:
                    log.error = f"login refused: {m.get('error')}"
                    ready.set()
                    return
    except (ConnectionClosed, WebSocketException, OSError) as exc:
        if log.error is None:
            log.error = f"{type(exc).__name__}: {exc}"
        ready.set()


# -- one run -------------------------------------------------------------------------------------


@dataclass
class RunFigures:
    clients: int
    ready_s: float = 0.0
    login_s: float = 0.0
    window_s: float = 0.0
    observations: float = 0.0
    ticks: float = 0.0
    engine_cpu_s: float = 0.0
    tick_p99_ms: float = 0.0
    tick_p50_ms: float = 0.0
    interval_p99_ms: float = 0.0
    interval_max_ms: float = 0.0
    bench_cpu_s: float = 0.0
    loadavg: float = 0.0  # the machine's 1-minute load average at the window's end
    resyncs: float = 0.0
    load: Load = field(default_factory=Load)
    logs: list[ClientLog] = field(default_factory=list)

    @property
    def obs_rate(self) -> float:
        return self.observations / self.window_s if self.window_s else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return 1000.0 * self.engine_cpu_s / self.observations if self.observations else 0.0


async def _add_users(db: Path, n: int) -> None:
    """``n`` users scoped to the whole site, hashed with the engine's own argon2 parameters
    (a cheaper hash would be rehashed at the first login: the same cost, plus a write)."""
    async with await Accounts.open(db, hasher=PasswordHasher()) as accounts:
        for i in range(n):
            await accounts.add(user_name(i), ROLES[i % len(ROLES)], ["*"], PASSWORD,
                               f"Bench {i}")  # fmt: skip


def user_name(i: int) -> str:
    return f"bench.u{i:02d}"


def prepare_store(site_path: Path, workdir: Path, users: int) -> tuple[Path, float]:
    """A store with every baby admitted (``--admit-all``: one committed command each) and
    ``users`` console users, made once and copied for each run; returns it and the seconds
    the engine took to be ready (the admissions)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "alarms.db"
    with MosquittoBroker(workdir / "mosquitto") as broker:
        engine = EngineProcess(site_path, broker.port, db, workdir / "engine.log")
        try:
            ready_s = engine.wait_ready()
        finally:
            engine.stop()
    asyncio.run(_add_users(db, users))
    return db, ready_s


def run_once(
    args: argparse.Namespace, site_path: Path, store: Path, workdir: Path, clients: int
) -> RunFigures:
    """One run: broker, engine + console on a copy of ``store``, the load generator and
    ``clients`` clients."""
    fig = RunFigures(clients)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "alarms.db"
    for suffix in ("", "-wal", "-shm"):
        src = store.with_name(store.name + suffix)
        if src.exists():
            shutil.copyfile(src, db.with_name(db.name + suffix))
    with MosquittoBroker(workdir / "mosquitto") as broker:
        engine = EngineProcess(site_path, broker.port, db, workdir / "engine.log")
        gen: subprocess.Popen[str] | None = None
        try:
            fig.ready_s = engine.wait_ready()
            gen = subprocess.Popen(
                [sys.executable, "-m", "bench.console_load_gen",
                 "--port", str(broker.port), "--site", str(site_path), "--seed", str(args.seed),
                 "--duration", str(args.duration), "--alarms", str(args.alarms)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
            assert gen.stdout is not None and gen.stdin is not None
            start = float(json.loads(gen.stdout.readline() or "{}").get("start", 0.0))
            if not start:
                raise BenchError("the load generator did not start")
            asyncio.run(_drive(engine, fig, gen.stdin, start, args))
            out, _ = gen.communicate(timeout=MAX_RUN_S)
            if gen.returncode:
                raise BenchError(f"the load generator failed ({gen.returncode})")
            fig.load = Load(**json.loads(out.strip().splitlines()[-1]))
        finally:
            if gen is not None and gen.poll() is None:
                gen.kill()
                gen.wait()
            engine.stop()
    ticks = np.array([t for t, _ in sorted(fig.load.ticks)])
    if len(ticks) > 2:
        gaps = 1000 * np.diff(ticks)
        fig.interval_p99_ms = float(np.percentile(gaps, 99))
        fig.interval_max_ms = float(gaps.max())
    return fig


async def _drive(
    engine: EngineProcess, fig: RunFigures, gen_stdin: IO[str], start: float,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """Log the clients in (all at once, under load); start the window ``--warmup`` after the
    load started and at least SETTLE_S after the last login (telling the generator); sample
    the engine over it; wait for the last alarms; close the clients."""
    ws_url = engine.url.replace("http", "ws", 1) + "ws"
    fig.logs = [ClientLog(user_name(i)) for i in range(fig.clients)]
    readies = [asyncio.Event() for _ in fig.logs]
    tasks = [asyncio.create_task(_client(ws_url, log, ev))
             for log, ev in zip(fig.logs, readies, strict=True)]  # fmt: skip
    t_connect = time.time()
    await asyncio.gather(*(ev.wait() for ev in readies))
    errors = [f"{log.user}: {log.error}" for log in fig.logs if log.error]
    if errors:
        raise BenchError("clients failed: " + "; ".join(errors[:5]))
    if fig.logs:
        fig.login_s = max(log.snapshot_t for log in fig.logs) - t_connect
    settle = min(SETTLE_S, args.warmup) if fig.logs else 0.5
    window0 = max(start + args.warmup, time.time() + settle)
    window1 = window0 + args.duration
    gen_stdin.write(json.dumps({"window": window0}) + "\n")
    gen_stdin.flush()
    await asyncio.sleep(window0 - time.time())
    spy = _profile(engine, args.profile, args.duration) if args.profile and fig.logs else None
    cpu0, m0, self0 = engine.cpu_s(), await asyncio.to_thread(engine.metrics), _self_cpu()
    t0 = time.time()
    await asyncio.sleep(window1 - time.time())
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    cpu1, m1, self1 = engine.cpu_s(), await asyncio.to_thread(engine.metrics), _self_cpu()
    fig.window_s = time.time() - t0
    fig.engine_cpu_s = cpu1 - cpu0
    fig.bench_cpu_s = self1 - self0
    fig.observations = m1["rtls_observations_total"] - m0["rtls_observations_total"]
    fig.ticks = m1["rtls_ticks_total"] - m0["rtls_ticks_total"]
    fig.loadavg = os.getloadavg()[0]
    fig.tick_p50_ms = 1000 * m1['rtls_tick_seconds{quantile="0.50"}']
    fig.tick_p99_ms = 1000 * m1['rtls_tick_seconds{quantile="0.99"}']
    fig.resyncs = m1["rtls_console_resyncs_total"]
    await asyncio.sleep(TAIL_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _profile(engine: EngineProcess, out: str, duration_s: float) -> subprocess.Popen[bytes]:
    """py-spy sampling the engine process for ``duration_s``, without pausing it."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(engine.proc.pid), "--duration",
                             str(max(1, int(duration_s))), "--rate", "100", "--format", "raw",
                             "--nonblocking", "--output", out], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Delivery times (s) over every (alarm, client) pair received; pairs missing."""

    times: NDArray[np.float64]
    pairs: int
    missing: int
    via_snapshot: int


def delivery(fig: RunFigures) -> Delivery:
    times, missing, snap = [], 0, 0
    for tag, sent in fig.load.alarms:
        for log in fig.logs:
            got = log.tampers.get(tag)
            if got is None:
                missing += 1
                continue
            times.append(got - sent)
            snap += tag in log.via_snapshot
    return Delivery(np.array(times), len(fig.load.alarms) * len(fig.logs), missing, snap)


def _median_run(runs: Sequence[RunFigures]) -> RunFigures:
    """The run whose CPU per 1,000 observations is the median (the lower one of an even
    count): the table's column."""
    return sorted(runs, key=lambda r: r.cpu_per_1000)[(len(runs) - 1) // 2]


def report(
    bases: Sequence[RunFigures], loads: Sequence[RunFigures], args: argparse.Namespace,
    admit_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Print the table and return the figures (the JSON line). ``bases[i]`` and ``loads[i]``
    ran back to back (the i-th repeat): the ratios are the medians of the repeats' own ratios,
    delivery is over every run with clients."""
    base, load = _median_run(bases), _median_run(loads)
    parts = [delivery(run) for run in loads]
    d = Delivery(np.concatenate([p.times for p in parts]), sum(p.pairs for p in parts),
                 sum(p.missing for p in parts), sum(p.via_snapshot for p in parts))  # fmt: skip
    p50, p99 = (float(np.percentile(d.times, q)) if len(d.times) else float("nan")
                for q in (50, 99))  # fmt: skip
    worst = float(d.times.max()) if len(d.times) else float("nan")
    ratios = [lo.cpu_per_1000 / b.cpu_per_1000 if b.cpu_per_1000 else float("nan")
              for b, lo in zip(bases, loads, strict=True)]  # fmt: skip
    tick_ratios = [lo.ticks / b.ticks if b.ticks else float("nan")
                   for b, lo in zip(bases, loads, strict=True)]  # fmt: skip
    ratio, tick_ratio = float(np.median(ratios)), float(np.median(tick_ratios))
    n_tags = args.tags
    if len(ratios) > 1:
        print("  repeats (baseline, then with clients, back to back): CPU per 1000 obs ratio "
              + ", ".join(f"{r:.3f}" for r in ratios) + "; ticks ratio "
              + ", ".join(f"{r:.3f}" for r in tick_ratios))  # fmt: skip
    print(f"console under load: {n_tags} moving infant tags, {len(load.load.alarms)} tamper "
          f"alarms, {args.duration:.0f} s window (after the warm-up and the logins)")  # fmt: skip
    rows = [
        ("console clients", f"{base.clients}", f"{load.clients}", ""),
        ("observations / s", f"{base.obs_rate:,.0f}", f"{load.obs_rate:,.0f}", ""),
        ("engine ticks in the window", f"{base.ticks:.0f}", f"{load.ticks:.0f}",
         f"{tick_ratio:.3f}"),
        ("engine CPU s / 1000 obs", f"{base.cpu_per_1000:.4f}", f"{load.cpu_per_1000:.4f}",
         f"{ratio:.3f}"),
        ("engine CPU (cores)", f"{base.engine_cpu_s / base.window_s:.2f}",
         f"{load.engine_cpu_s / load.window_s:.2f}", ""),
        ("obs / s one core sustains", f"{1000 / base.cpu_per_1000:,.0f}",
         f"{1000 / load.cpu_per_1000:,.0f}", f"{1 / ratio:.3f}"),
        ("tick p50 / p99 ms (last 1000)", f"{base.tick_p50_ms:.1f} / {base.tick_p99_ms:.1f}",
         f"{load.tick_p50_ms:.1f} / {load.tick_p99_ms:.1f}", ""),
        ("tick interval p99 / max ms", f"{base.interval_p99_ms:.0f} / {base.interval_max_ms:.0f}",
         f"{load.interval_p99_ms:.0f} / {load.interval_max_ms:.0f}", ""),
        ("bench process CPU (cores)", f"{base.bench_cpu_s / base.window_s:.2f}",
         f"{load.bench_cpu_s / load.window_s:.2f}", ""),
        ("machine load average", f"{base.loadavg:.1f}", f"{load.loadavg:.1f}", ""),
    ]  # fmt: skip
    print(f"  {'':<30}{'baseline':>16}{'with clients':>16}{'ratio':>8}")
    for name, a, b, r in rows:
        print(f"  {name:<30}{a:>16}{b:>16}{r:>8}")
    msgs = sum((log.counts for log in load.logs), Counter())
    sizes = sum((log.sizes for log in load.logs), Counter())
    print(f"  clients received {sum(msgs.values()):,} messages, "
          f"{sum(sizes.values()) / 1e6:,.0f} MB: " + ", ".join(
              f"{k} {msgs[k]:,} ({v / 1e6:,.1f} MB)" for k, v in sizes.most_common()))  # fmt: skip
    print(f"  alarm delivery over {d.pairs} (alarm, client) pairs: p50 {1000 * p50:.0f} ms, "
          f"p99 {1000 * p99:.0f} ms, max {1000 * worst:.0f} ms (target p99 <= "
          f"{1000 * TARGET_P99_S:.0f} ms); missing {d.missing}; via a resync snapshot "
          f"{d.via_snapshot}; resyncs {load.resyncs:.0f}")  # fmt: skip
    print(f"  engine throughput with / without clients: CPU per 1000 obs {ratio:.3f} (target <= "
          f"{TARGET_RATIO}), ticks {tick_ratio:.3f} (target >= {1 / TARGET_RATIO:.3f}: a late "
          "tick decodes a bigger batch, which flatters the CPU figure)")  # fmt: skip
    lag = 1000 * max(base.load.lag_max_s, load.load.lag_max_s)
    print(f"  {load.clients} clients logged in at once, all snapshots received after "
          f"{load.login_s:.1f} s; engine ready after {admit_s:.1f} s admitting {n_tags} babies, "
          f"{base.ready_s:.1f} s / {load.ready_s:.1f} s restoring them; load generator at "
          f"most {lag:.0f} ms behind its schedule")  # fmt: skip
    ok = (d.missing == 0 and d.pairs > 0 and p99 <= TARGET_P99_S and ratio <= TARGET_RATIO
          and tick_ratio >= 1 / TARGET_RATIO)  # fmt: skip
    print("  targets met" if ok else "  TARGETS NOT MET")
    return {
        "bench": "console_load",
        "tags": n_tags,
        "clients": load.clients,
        "alarms": len(load.load.alarms),
        "duration_s": args.duration,
        "obs_per_s": round(load.obs_rate, 1),
        "obs_per_s_baseline": round(base.obs_rate, 1),
        "delivery_p50_ms": round(1000 * p50, 1),
        "delivery_p99_ms": round(1000 * p99, 1),
        "delivery_max_ms": round(1000 * worst, 1),
        "pairs": d.pairs,
        "missing": d.missing,
        "via_snapshot": d.via_snapshot,
        "resyncs": int(load.resyncs),
        "login_s": round(load.login_s, 2),
        "cpu_per_1000_obs": round(load.cpu_per_1000, 5),
        "cpu_per_1000_obs_baseline": round(base.cpu_per_1000, 5),
        "cpu_ratio": round(ratio, 4),
        "cpu_ratios": [round(r, 4) for r in ratios],
        "repeats": len(ratios),
        "ticks": int(load.ticks),
        "ticks_baseline": int(base.ticks),
        "loadavg": round(max(base.loadavg, load.loadavg), 2),
        "tick_p99_ms": round(load.tick_p99_ms, 2),
        "tick_p99_ms_baseline": round(base.tick_p99_ms, 2),
        "tick_interval_p99_ms": round(load.interval_p99_ms, 1),
        "tick_interval_p99_ms_baseline": round(base.interval_p99_ms, 1),
        "client_messages": sum(msgs.values()),
        "client_mb": round(sum(sizes.values()) / 1e6, 1),
        "targets_met": ok,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--tags", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=60.0, help="measured window, seconds")
    ap.add_argument("--warmup", type=float, default=30.0, help="load before the window, seconds")
    ap.add_argument("--alarms", type=int, default=60, help="tamper alarms over the window")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3,
                    help="pairs of runs (baseline, with clients), back to back; medians")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 clients, 100 tags, 6 s window, 5 alarms, 1 repeat")
    ap.add_argument("--keep", help="keep the run's files (logs, stores) in this directory")
    ap.add_argument("--profile", metavar="FILE",
                    help="py-spy the engine over the window of the run with clients (raw "
                         "collapsed stacks to FILE; needs py-spy: pip install py-spy)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.tags, args.duration, args.warmup, args.alarms = 3, 100, 6.0, 4.0, 5
        args.repeats = 1
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.alarms > args.tags:
        ap.error("--alarms needs as many tags (one tamper per tag)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the bench; returns the figures."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtls-console-load-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        site_path = work / "site.toml"
        write_site(site_path, args.tags, args.seed)
        store, admit_s = prepare_store(site_path, work / "admission", args.clients)
        bases, loads = [], []
        for i in range(args.repeats):  # interleaved: the machine's drift hits both alike
            bases.append(run_once(args, site_path, store, work / f"baseline-{i}", 0))
            loads.append(run_once(args, site_path, store, work / f"clients-{i}", args.clients))
        figures = report(bases, loads, args, admit_s)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
