"""``rtls-gateways``: run the simulated ward (tags + gateways + door readers) for technicians.

    rtls-gateways run --broker localhost:1883 --duration 60          # real time, live MQTT
    rtls-gateways run --scenario abduction --fast --out msgs.jsonl   # accelerated, to a file
    rtls-gateways scenarios                                          # list shipped scenarios

See docs/simulators.md.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import gateways.scenarios
from gateways.mqtt import tls_context
from gateways.runner import CountingSink, FileSink, MqttSink, RunStats, Sink, run
from gateways.scenario import Scenario, load_scenario, scenario_from_mapping
from gateways.truth import Truth
from gateways.world import World
from rtls.errors import RtlsError
from rtls.site import load_site

SCENARIO_DIR = Path(gateways.scenarios.__file__).parent


def shipped_scenarios() -> dict[str, Path]:
    """Name -> path of the scenarios shipped with the simulator."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def resolve_scenario(spec: str | None, site: str | None, duration: float | None) -> Scenario:
    """A shipped scenario name, a scenario file, or (None) an ambient ward with no incident."""
    site_obj = load_site(site) if site else None
    if spec is None:
        data = {"scenario": {"name": "Ambient ward", "duration_s": duration or 60.0}}
        return scenario_from_mapping(data, site=site_obj or load_site())
    path = shipped_scenarios().get(spec, Path(spec))
    return load_scenario(path, site=site_obj)


def parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise RtlsError(f"--broker must be HOST:PORT, got {text!r}")
    return host, int(port)


def mqtt_accounts(path: str | None) -> tuple[dict[str, tuple[str, str]], ssl.SSLContext | None]:
    """Each device's (username, password) and the TLS context from ``--mqtt-credentials``
    (gateways-credentials.toml of ``rtls broker-config``); none: ({}, None)."""
    if not path:
        return {}, None
    from rtls.service.credentials import load_device_credentials

    creds = load_device_credentials(path)
    accounts = {dev: (a.username, a.password) for dev, a in creds.accounts.items()}
    return accounts, tls_context(creds.ca_file) if creds.ca_file else None


def tag_keys(specs: Sequence[str] | None) -> dict[str, bytes]:
    """``--tag-key TAG=FILE`` (repeatable): each tag's 16-byte key from the file ``rtls keys
    provision --key-out`` wrote (32 hex digits), as the nurse station's NFC writer gives it to
    the tag (docs/tag-auth.md)."""
    keys: dict[str, bytes] = {}
    for spec in specs or ():
        tag, sep, path = spec.partition("=")
        if not sep or not tag or not path:
            raise RtlsError(f"--tag-key must be TAG=FILE, got {spec!r}")
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise RtlsError(f"--tag-key {tag}: cannot read {path}: {exc}") from exc
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 16:
            raise RtlsError(f"--tag-key {tag}: {path} must hold a 16-byte key as 32 hex digits")
        keys[tag] = key
    return keys


def print_rates(stats: RunStats, out: TextIO = sys.stdout) -> None:
    rates = stats.rates()
    print(f"{'format':<12}{'messages':>10}{'msg/s':>10}{'obs':>10}{'obs/s':>10}", file=out)
    for fmt, r in rates.items():
        print(
            f"{fmt:<12}{int(r['messages']):>10}{r['messages_per_s']:>10.1f}"
            f"{int(r['observations']):>10}{r['observations_per_s']:>10.1f}",
            file=out,
        )


def cmd_run(args: argparse.Namespace) -> int:
    scenario = resolve_scenario(args.scenario, args.site, args.duration)
    if args.seed is not None:
        scenario = Scenario(
            scenario.info.model_copy(update={"seed": args.seed}),
            scenario.actors,
            scenario.events,
            scenario.site,
            scenario.source,
        )
    truth = Truth(args.truth, keep=False) if args.truth else None
    epoch = args.epoch
    if epoch is None and args.broker and not args.fast and not args.out:
        epoch = time.time()  # live against a broker: timestamps are the wall clock
    keys = tag_keys(args.tag_key)
    unknown = sorted(set(keys) - {t.id for t in scenario.site.tags})
    if unknown:
        raise RtlsError(f"--tag-key: {', '.join(unknown)} not in the site")
    world = World(scenario, truth=truth, epoch=epoch, keys=keys)
    sink: Sink
    if args.out:
        sink = FileSink(args.out)
    elif args.broker:
        host, port = parse_broker(args.broker)
        accounts, tls = mqtt_accounts(args.mqtt_credentials)
        sink = MqttSink(host, port, username=args.username, password=args.password,
                        accounts=accounts, tls=tls)  # fmt: skip
    else:
        sink = CountingSink()
    speed = None if args.fast else args.speed
    duration = args.duration or scenario.info.duration_s
    where = args.out or args.broker or "nowhere (counting only)"
    print(
        f"rtls-gateways: scenario {scenario.info.name!r} on site {scenario.site.id!r}: "
        f"{len(world.gateways)} gateways, {len(world.readers)} door readers, "
        f"{len(world.firmware)} tags; {duration:g} s "
        f"{'accelerated' if speed is None else f'at {speed:g}x real time'} -> {where}",
        flush=True,
    )
    last = [0.0]

    def progress(t: float, stats: RunStats) -> None:
        if args.report_every and t - last[0] >= args.report_every:
            last[0] = t
            total = sum(stats.messages.values())
            print(f"  t={t:7.1f} s  messages={total}", flush=True)

    try:
        stats = run(world, sink, duration, speed=speed, tick_s=args.tick, on_tick=progress)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if truth is not None:
            truth.close()
    print_rates(stats)
    summary = {
        "scenario": scenario.info.name,
        "sim_s": stats.sim_s,
        "wall_s": round(stats.wall_s, 3),
        "formats": stats.rates(),
    }
    if isinstance(sink, MqttSink):
        s = sink.pool.stats()
        summary["mqtt"] = {
            "published": s.published,
            "dropped_disconnected": s.dropped_disconnected,
            "reconnects": s.reconnects,
        }
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtls-gateways", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the simulated ward")
    r.add_argument("--scenario", help="shipped scenario name or scenario file (default: ambient)")
    r.add_argument("--site", help="site file (default: the scenario's, else the example site)")
    r.add_argument("--broker", help="MQTT broker HOST:PORT (publish live)")
    r.add_argument("--username")
    r.add_argument("--password")
    r.add_argument("--mqtt-credentials", help="each device's own account and the broker's CA "
                   "(gateways-credentials.toml of rtls broker-config)")  # fmt: skip
    r.add_argument("--tag-key", action="append", metavar="TAG=FILE",
                   help="the tag signs its advertisements with the key in FILE (rtls keys "
                   "provision --key-out); repeatable")  # fmt: skip
    r.add_argument("--out", help="write messages to this JSON-lines file instead of MQTT")
    r.add_argument("--truth", help="write ground truth (positions, events) as JSON lines")
    r.add_argument("--duration", type=float, help="virtual seconds (default: the scenario's)")
    r.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")
    r.add_argument("--fast", action="store_true", help="as fast as possible (virtual clock)")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--epoch", type=float, help="Unix time of t=0 (default: scenario start)")
    r.add_argument("--tick", type=float, default=0.05, help="virtual step in seconds")
    r.add_argument("--report-every", type=float, default=10.0, help="progress every N s")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("scenarios", help="list the shipped scenarios")
    s.set_defaults(func=lambda a: _list_scenarios())
    return p


def _list_scenarios() -> int:
    for name, path in shipped_scenarios().items():
        sc = load_scenario(path)
        print(f"{name:<20} {sc.info.duration_s:>6g} s  {sc.info.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RtlsError as exc:
        print(f"rtls-gateways: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
