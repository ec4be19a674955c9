"""Fuzzing bench: the gateway decoders, the advertisement body codec and the console's request
handler fed random and mutated inputs (issue 7, part 4).

Targets (shares of ``--inputs``, interleaved in chunks so both halves of the run see the same
mix):

- ``decode`` (55 %): :func:`rtls.decode.decode` on one message of any gateway format and topic
  (after :func:`rtls.decode_native.is_urgent`, which the engine runs on every message first);
- ``decode_many`` (13 %): groups of messages through :func:`rtls.decode.decode_many` and the
  vectorised :func:`rtls.decode_native.decode_native_batches` it uses;
- ``body`` (15 %): :func:`rtls.advertisement.decode_body`, ``decode_bodies``,
  ``parse_manufacturer_data``, ``parse_adv_data``;
- ``console`` (15 %): ``ConsoleServer._request`` in-process (logged in and not);
- ``console_ws`` (2 %): the same requests over real WebSocket connections to the real server.

Inputs (bench/fuzz_inputs.py): seeded mutations of the golden messages, bodies and valid
console requests, native batches generated with random records, and pure random bytes. The
engine and console run in this process's event loop against a private Mosquitto
(bench/fuzz_console.py). Outcomes: ``accepted``, a typed error by reason (``PayloadError``
reasons; console reply errors), or a failure: any other exception, an ``internal error``
reply, an undocumented reason, an implausible decoded row. A failure prints the input as hex;
the exit status is then 1. Memory: resident set size and tracemalloc's traced memory sampled
after every chunk; growth over the first and the second half of the run. After the fuzz, a
normal login and commands must still work.

    python -m bench.fuzz                       # 1,000,000 inputs (several minutes)
    python -m bench.fuzz --inputs 5000 --seed 7 --json fuzz.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import secrets
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.fuzz_console import InProcess, WsFeeder, final_check, prepare, repair
from bench.fuzz_inputs import (
    Mutator,
    Seed,
    body_seeds,
    console_seeds,
    decoder_seeds,
    fuzz_directory,
)
from rtls.advertisement import (
    BODY_REASONS,
    decode_bodies,
    decode_body,
    parse_adv_data,
    parse_manufacturer_data,
)
from rtls.decode import MESSAGE_REASONS, DecodeCounters, Decoded, decode, decode_many
from rtls.decode_native import decode_native_batches, is_urgent
from rtls.decode_result import RSSI_MAX, RSSI_MIN
from rtls.errors import PayloadError
from rtls.service.broker import MosquittoBroker
from rtls.service.cli import run_engine
from rtls.service.console import ConsoleConfig, ConsoleServer
from rtls.site import load_site

SHARES = {"decode": 0.55, "decode_many": 0.13, "body": 0.15, "console": 0.15, "console_ws": 0.02}
CHUNK = 500
BATCH_REASONS = ("truncated", "bad_magic", "bad_flags", "bad_header", "bad_gateway_id",
                 "length_mismatch")  # fmt: skip
DECODE_REASONS = frozenset(MESSAGE_REASONS) - {"internal_error"} | set(BATCH_REASONS)
BODY_CODEC_REASONS = frozenset(BODY_REASONS[1:]) | {"truncated", "too_long", "length_mismatch",
                                                    "foreign_company", "not_rtls"}  # fmt: skip
RX = 1_700_000_000.0
ODD_TIMES = (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300)
MAX_FAILURES_KEPT = 20


@dataclass
class Tally:
    """Inputs and outcomes per target; failures with their input."""

    inputs: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_count: int = 0

    def add(self, target: str, outcome: str, failure: str | None = None, raw: bytes = b"",
            topic: str | None = None) -> None:  # fmt: skip
        self.inputs[target] += 1
        self.outcomes.setdefault(target, Counter())[outcome] += 1
        if failure is None:
            return
        self.failure_count += 1
        shown = raw[:2048].hex()
        print(f"FAILURE [{target}] {failure}\n  topic {topic!r}\n  input ({len(raw)} bytes) "
              f"hex: {shown}{'…' if len(raw) > 2048 else ''}", flush=True)  # fmt: skip
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append({"target": target, "failure": failure, "topic": topic,
                                  "length": len(raw), "hex": raw[:65536].hex()})  # fmt: skip


def rss_kb() -> tuple[int, int]:
    """(resident, peak resident) kB of this process."""
    rss = hwm = 0
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            rss = int(row.split()[1])
        elif row.startswith("VmHWM:"):
            hwm = int(row.split()[1])
    return rss, hwm


def _sane(out: Decoded, n_tags: int, n_gateways: int, n_readers: int) -> str | None:
    """Why a decoded result is implausible (a decoder let garbage through), or None."""
    obs = out.obs
    if len(obs):
        if not np.isfinite(obs["t"]).all() or not np.isfinite(obs["rssi"]).all():
            return "an observation with a non-finite time or RSSI"
        if ((obs["rssi"] < RSSI_MIN) | (obs["rssi"] > RSSI_MAX)).any():
            return "an observation RSSI outside the accepted range"
        if ((obs["tag"] < 0) | (obs["tag"] >= n_tags)).any():
            return "an observation of a tag index outside the directory"
        if ((obs["gateway"] < 0) | (obs["gateway"] >= n_gateways)).any():
            return "an observation of a gateway index outside the directory"
    if len(out.reads) and ((out.reads["reader"] < 0) | (out.reads["reader"] >= n_readers)).any():
        return "a door read of a reader index outside the directory"
    if len(out.telemetry) and ((out.telemetry["tag"] < 0) | (out.telemetry["tag"] >= n_tags)).any():
        return "telemetry of a tag index outside the directory"
    return None


class Fuzzer:
    """One fuzz run: inputs, targets and the tally (see the module doc)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.mut = Mutator(self.rng)
        self.directory, self.gateways, self.serials = fuzz_directory()
        self.counters = DecodeCounters.for_directory(self.directory)
        self.sizes = (len(self.directory.tag_ids), len(self.directory.gateway_ids),
                      len(self.directory.reader_ids))  # fmt: skip
        self.seeds = decoder_seeds()
        self.pools: dict[str, list[bytes]] = {}
        for s in self.seeds:
            self.pools.setdefault(s.topic.split("/")[0], []).append(s.payload)
        self.bodies = body_seeds()
        self.requests = console_seeds()
        self.names = [*self.gateways, "door-r1", "maternity-east", "C0DE00012345"]
        self.tally = Tally()
        self.seconds: dict[str, float] = dict.fromkeys(SHARES, 0.0)
        self.store_stats: Any = None  # the alarm shell's stats, once the engine runs
        self.store_seen = 0
        self.rx = RX

    # -- inputs ---------------------------------------------------------------------------------
    def message(self) -> tuple[str, bytes, float]:
        """One MQTT message (topic, payload, receive time)."""
        r = self.rng
        seed: Seed = r.choice(self.seeds)
        topic = seed.topic if r.random() < 0.85 else self.mut.topic(seed.topic, self.names)
        native = seed.topic.endswith("/obs")
        payload = seed.payload
        if native and len(payload) >= 12 and r.random() < 0.9:  # a fresh sequence number
            payload = payload[:8] + r.getrandbits(32).to_bytes(4, "little") + payload[12:]
        k = r.random()
        if k < 0.05:
            payload = self.mut.random_bytes()
        elif k < 0.10:
            topic = "rtls/v1/gw/" + r.choice(self.gateways) + "/obs"
            payload = self.mut.generated_batch(self.gateways, self.serials)
        elif k < 0.97:
            pool = self.pools[seed.topic.split("/")[0]]
            payload = self.mut.mutate(payload, pool, native=native)
        self.rx += 0.01
        rx = r.choice(ODD_TIMES) if r.random() < 0.005 else self.rx
        return topic, payload, rx

    def request(self) -> bytes:
        r = self.rng
        if r.random() < 0.03:
            return self.mut.random_bytes()
        seed = r.choice(self.requests)
        return seed if r.random() < 0.03 else self.mut.mutate(seed, self.requests)

    # -- targets --------------------------------------------------------------------------------
    def decode_one(self) -> None:
        topic, payload, rx = self.message()
        try:
            is_urgent(topic, payload)
        except Exception as exc:
            self.tally.add("decode", "exception", f"is_urgent: {type(exc).__name__}: {exc}",
                           payload, topic)  # fmt: skip
            return
        try:
            out = decode(topic, payload, self.directory, self.counters, rx)
        except PayloadError as exc:
            bad = None if exc.reason in DECODE_REASONS else f"undocumented reason {exc.reason!r}"
            self.tally.add("decode", f"error: {exc.reason}", bad, payload, topic)
            return
        except Exception as exc:
            self.tally.add("decode", "exception", f"{type(exc).__name__}: {exc}", payload, topic)
            return
        self.tally.add("decode", "accepted", _sane(out, *self.sizes), payload, topic)

    def decode_group(self) -> int:
        group = [self.message() for _ in range(self.rng.randint(1, 64))]
        natives = [(p, rx) for t, p, rx in group if t.startswith("rtls/v1/gw/")
                   and t.endswith("/obs") and t.count("/") == 4 and math.isfinite(rx)
                   and len(p) <= 256 * 1024]  # fmt: skip
        if natives:
            try:  # decode_many falls back to one at a time on an exception: call it directly
                decode_native_batches([p for p, _ in natives], self.directory, self.counters,
                                      [rx for _, rx in natives])  # fmt: skip
            except Exception as exc:
                raw = b"".join(p for p, _ in natives)
                self.tally.add(
                    "decode_many",
                    "exception",
                    f"decode_native_batches: {type(exc).__name__}: {exc}",
                    raw,
                )
        before = Counter(self.counters.rejected)
        try:
            out = decode_many(group, self.directory, self.counters)
        except Exception as exc:
            raw = b"".join(p for _, p, _ in group)
            self.tally.add("decode_many", "exception", f"{type(exc).__name__}: {exc}", raw)
            return len(group)
        delta = Counter(self.counters.rejected) - before
        for reason, n in delta.items():
            bad = None if reason in DECODE_REASONS else f"reason {reason!r} (a decoder bug)"
            for _ in range(n):
                self.tally.add("decode_many", f"error: {reason}", bad,
                               b"".join(p for _, p, _ in group))  # fmt: skip
        for _ in range(len(group) - delta.total()):
            self.tally.add("decode_many", "accepted")
        insane = _sane(out, *self.sizes)
        if insane:
            self.tally.add("decode_many", "implausible", insane, b"".join(p for _, p, _ in group))
        return len(group)

    def body_one(self) -> None:
        r = self.rng
        seed = r.choice(self.bodies)
        data = self.mut.random_bytes() if r.random() < 0.05 else self.mut.byte_mutation(
            seed, self.bodies)  # fmt: skip
        fn = r.randrange(4)
        name = ("decode_body", "decode_bodies", "parse_manufacturer_data", "parse_adv_data")[fn]
        try:
            if fn == 0:
                decode_body(data)
            elif fn == 1:
                decode_bodies(data * r.randint(1, 3), strict=r.random() < 0.5)
            elif fn == 2:
                parse_manufacturer_data(data)
            else:
                parse_adv_data(data)
        except PayloadError as exc:
            bad = None if exc.reason in BODY_CODEC_REASONS else f"undocumented {exc.reason!r}"
            self.tally.add("body", f"error: {exc.reason}", bad, data, name)
            return
        except Exception as exc:
            self.tally.add("body", "exception", f"{name}: {type(exc).__name__}: {exc}", data,
                           name)  # fmt: skip
            return
        self.tally.add("body", "accepted")

    def _stored(self, failure: str | None) -> str | None:
        """``failure``, or a store refusal since the last check (a request whose audit record
        the store cannot take blocks every later commit)."""
        errors = self.store_stats.store_errors if self.store_stats is not None else 0
        if errors != self.store_seen:
            self.store_seen = errors
            return failure or "the alarm store refused a commit after this request (see the log)"
        return failure

    async def console_one(self, inproc: InProcess) -> None:
        raw = self.request()
        logged_in = self.rng.random() < 0.7
        outcome, failure = await inproc.feed(raw, logged_in, binary=self.rng.random() < 0.1)
        failure = self._stored(failure)
        self.tally.add("console", outcome, failure, raw, "logged in" if logged_in else "anonymous")

    async def ws_one(self, ws: WsFeeder) -> None:
        raw = self.request()
        logged_in = self.rng.random() < 0.7
        k = self.rng.random()
        mode = "binary" if k < 0.1 else "raw_text" if k < 0.12 else "text"
        outcome, failure = await ws.feed(raw, logged_in, mode)
        failure = self._stored(failure)
        self.tally.add("console_ws", outcome, failure, raw,
                       f"{mode}, {'logged in' if logged_in else 'anonymous'}")  # fmt: skip


# -- the run ----------------------------------------------------------------------------------


def plan(total: int, rng: random.Random) -> list[tuple[str, int]]:
    """Chunks (target, inputs) in a seeded random order, ``total`` inputs in all."""
    chunks: list[tuple[str, int]] = []
    for target, share in SHARES.items():
        n = round(total * share)
        chunks += [(target, min(CHUNK, n - i)) for i in range(0, n, CHUNK)]
    rng.shuffle(chunks)
    return chunks


async def _fuzz(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    fz = Fuzzer(args.seed)
    broker, host = None, "127.0.0.1"
    if args.broker:
        host, _, port_text = args.broker.rpartition(":")
        port = int(port_text)
    else:
        broker = MosquittoBroker(work / "broker")
        broker.start()
        port = broker.port
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[ConsoleServer] = loop.create_future()
    console = ConsoleConfig(host="127.0.0.1", port=0)
    engine = asyncio.create_task(run_engine(load_site(), host, port, db=work / "alarms.db",
                                            admit_all=True, console=console,
                                            console_ready=ready.set_result))  # fmt: skip
    try:
        server = await asyncio.wait_for(asyncio.shield(ready), 60.0)
        users = await prepare(server)
        ws_url = server.url.replace("http", "ws", 1) + "ws"
        inproc = InProcess(server, users, fz.rng.randrange)
        ws = WsFeeder(ws_url, fz.rng.randrange)
        chunks = plan(args.inputs, fz.rng)
        total = sum(n for _, n in chunks)
        tracemalloc.start()
        t0 = time.perf_counter()
        samples = [(0, 0.0, *rss_kb(), tracemalloc.get_traced_memory()[0])]
        done, next_print = 0, 0.0
        middle: tracemalloc.Snapshot | None = None
        fz.store_stats = server.shell.stats
        fz.store_seen = server.shell.stats.store_errors
        for target, n in chunks:
            started = time.perf_counter()
            if target == "decode":  # the engine shares this loop: yield every 50 inputs
                for i in range(n):
                    fz.decode_one()
                    if i % 50 == 49:
                        await asyncio.sleep(0)
            elif target == "decode_many":
                k = 0
                while k < n:
                    k += fz.decode_group()
                    await asyncio.sleep(0)
            elif target == "body":
                for _ in range(n):
                    fz.body_one()
            elif target == "console":
                await repair(server)
                for _ in range(n):
                    await fz.console_one(inproc)
            else:
                await repair(server)
                for _ in range(n):
                    await fz.ws_one(ws)
                # an idle connection nobody reads stops answering pings once its receive
                # buffer is full (positions, heartbeats), and the server drops it (1011)
                await ws.close()
            await asyncio.sleep(0)  # the engine's own tasks
            fz.seconds[target] += time.perf_counter() - started
            if (failure := fz._stored(None)) is not None:  # the store refused a commit
                fz.tally.add(target, "store_error", failure)
            done = sum(fz.tally.inputs.values())
            if middle is None and done >= total / 2:  # where the second half's growth is
                middle = tracemalloc.take_snapshot()
            elapsed = time.perf_counter() - t0
            samples.append((done, elapsed, *rss_kb(), tracemalloc.get_traced_memory()[0]))
            if elapsed >= next_print:
                next_print = elapsed + 10.0
                print(f"  {done:,} / {total:,} inputs, {elapsed:.0f} s, RSS "
                      f"{samples[-1][2] / 1024:.0f} MB, failures {fz.tally.failure_count}",
                      flush=True)  # fmt: skip
        elapsed = time.perf_counter() - t0
        traced_peak = tracemalloc.get_traced_memory()[1]
        growth = _top_growth(middle, tracemalloc.take_snapshot()) if middle else []
        tracemalloc.stop()
        await ws.close()
        check = await final_check(ws_url)
        console_stats = vars(server.stats).copy()
    finally:
        if ready.done() and not ready.cancelled() and ready.exception() is None:
            ready.result().service.stop()
        else:
            engine.cancel()
        try:
            await asyncio.wait_for(engine, 30.0)
        except (asyncio.CancelledError, TimeoutError, Exception) as exc:  # reported, not raised
            print(f"engine ended with {type(exc).__name__}: {exc}", file=sys.stderr)
        if broker is not None:
            broker.close()
    fig = report(fz, samples, elapsed, traced_peak, check, console_stats, ws.connects, args)
    fig["traced_growth_second_half"] = growth
    return fig


def _top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[str]:
    """The source lines whose retained memory grew most between two snapshots."""
    stats = after.compare_to(before, "lineno")
    return [f"{st.size_diff / 1024:+.0f} KiB ({st.count_diff:+d} blocks) "
            f"{st.traceback[0].filename.split('/work/main/')[-1]}:{st.traceback[0].lineno}"
            for st in stats[:8]]  # fmt: skip


def _growth(samples: list[tuple[int, float, int, int, int]], col: int) -> dict[str, float]:
    """Start / middle / end / growth of one memory column (kB or bytes) by inputs done."""
    mid = min(range(len(samples)), key=lambda i: abs(samples[i][0] - samples[-1][0] / 2))
    first, middle, last = samples[1][col], samples[mid][col], samples[-1][col]  # after chunk 1
    return {"start": first, "middle": middle, "end": last, "first_half": middle - first,
            "second_half": last - middle}  # fmt: skip


def report(fz: Fuzzer, samples: list[tuple[int, float, int, int, int]], elapsed: float,
           traced_peak: int, check: dict[str, Any], console_stats: dict[str, Any],
           ws_connects: int, args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    t = fz.tally
    rss = _growth(samples, 2)
    traced = _growth(samples, 4)
    out: dict[str, Any] = {
        "bench": "fuzz", "seed": args.seed, "inputs": sum(t.inputs.values()),
        "seconds": elapsed, "inputs_per_s": sum(t.inputs.values()) / max(elapsed, 1e-9),
        "targets": {k: {"inputs": t.inputs[k], "seconds": fz.seconds[k],
                        "outcomes": dict(t.outcomes.get(k, {}))} for k in SHARES},
        "failures": t.failure_count, "failure_inputs": t.failures,
        "rss_kb": {**rss, "peak": samples[-1][3]},
        "traced_bytes": {**traced, "peak": traced_peak},
        "decode_counters": {"rejected": dict(fz.counters.rejected),
                            "records": dict(fz.counters.records)},
        "console_stats": console_stats, "ws_connections": ws_connects, "final_check": check,
        "samples": [list(s) for s in samples],
    }  # fmt: skip
    out["ok"] = t.failure_count == 0 and bool(check.get("ok"))
    return out


def print_table(fig: dict[str, Any]) -> None:
    print(f"\nfuzz, seed {fig['seed']}: {fig['inputs']:,} inputs in {fig['seconds']:.0f} s "
          f"({fig['inputs_per_s']:,.0f}/s)")  # fmt: skip
    print(f"  {'target':<12} {'inputs':>9} {'accepted':>9} {'typed errors':>13} "
          f"{'failures':>9}  top reasons")  # fmt: skip
    for name, row in fig["targets"].items():
        oc = Counter(row["outcomes"])
        acc = oc.get("accepted", 0)
        fails = sum(
            v
            for k, v in oc.items()
            if k
            in ("exception", "internal_error", "timeout", "implausible", "closed: 1011", "garbled")
        )
        errors = row["inputs"] - acc - fails
        top = ", ".join(f"{k} {v:,}" for k, v in oc.most_common() if k != "accepted")[:400]
        print(f"  {name:<12} {row['inputs']:>9,} {acc:>9,} {errors:>13,} {fails:>9,}  {top}")
    r, m = fig["rss_kb"], fig["traced_bytes"]
    print(f"  resident memory: start {r['start'] / 1024:.1f} MB, end {r['end'] / 1024:.1f} MB, "
          f"peak {r['peak'] / 1024:.1f} MB; growth first half {r['first_half'] / 1024:+.1f} MB, "
          f"second half {r['second_half'] / 1024:+.1f} MB")  # fmt: skip
    print(
        f"  tracemalloc: start {m['start'] / 2**20:.1f} MB, end {m['end'] / 2**20:.1f} MB, "
        f"peak {m['peak'] / 2**20:.1f} MB; growth first half "
        f"{m['first_half'] / 2**20:+.2f} MB, second half {m['second_half'] / 2**20:+.2f} MB"
    )
    for line in fig.get("traced_growth_second_half", [])[:5]:
        print(f"    second half, grew most: {line}")
    print(f"  after the fuzz: {fig['final_check']}")
    print(f"  failures: {fig['failures']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs in all")
    ap.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--broker", default=None, help="HOST:PORT of a running Mosquitto "
                    "(default: start a private one)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = secrets.randbits(32)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    print(f"fuzz: seed {args.seed}, {args.inputs:,} inputs", flush=True)
    with tempfile.TemporaryDirectory(prefix="rtls-fuzz-") as tmp:
        fig = asyncio.run(_fuzz(args, Path(tmp)))
    print_table(fig)
    if args.json is not None:
        args.json.write_text(json.dumps(fig, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return fig


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
