"""``rtls``: the command line of the real-time location and alarm system.

rtls demo                      broker + simulated ward (engine and console as they land)
rtls site check [SITE.toml]    validate a site file and summarise it
rtls simulate ...              the gateway/tag simulator (same as ``rtls-gateways run``)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rtls.errors import RtlsError
from rtls.site import load_site


def cmd_site_check(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    kinds = Counter(t.kind.value for t in site.tags)
    formats = Counter(g.format.value for g in site.gateways)
    zones = Counter(z.kind.value for z in site.zones)
    print(f"{site.source}: site {site.id!r} ({site.name}) is valid")
    print(f"  floors      {', '.join(f'{f.id} ({f.name})' for f in site.floors)}")
    print(
        f"  gateways    {len(site.gateways)}: " + ", ".join(f"{k} {v}" for k, v in formats.items())
    )
    print(
        f"  readers     {len(site.door_readers)}; doors {len(site.doors)}; "
        f"walls {len(site.model.walls)}"
    )
    print(f"  zones       {len(site.zones)}: " + ", ".join(f"{k} {v}" for k, v in zones.items()))
    print(f"  tags        {len(site.tags)}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from gateways.cli import main as gateways_main
    from rtls.service.broker import MosquittoBroker, find_mosquitto

    run = ["run", "--scenario", args.scenario, "--speed", str(args.speed)]
    if args.duration:
        run += ["--duration", str(args.duration)]
    if args.broker:
        return gateways_main([*run, "--broker", args.broker])
    if find_mosquitto() is None:
        print(
            "rtls demo: no MQTT broker found (install Debian's 'mosquitto' or pass --broker); "
            "running the simulated ward without a broker",
            file=sys.stderr,
        )
        return gateways_main(run)
    workdir = tempfile.TemporaryDirectory(prefix="rtls-demo-")
    with workdir, MosquittoBroker(Path(workdir.name)) as broker:
        print(
            f"rtls demo: private Mosquitto on 127.0.0.1:{broker.port}; watch it with\n"
            f"  mosquitto_sub -p {broker.port} -v -t '#'\n",
            flush=True,
        )
        return gateways_main([*run, "--broker", f"127.0.0.1:{broker.port}"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtls", description="Real-time location and alarm system")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo: broker and simulated ward")
    d.add_argument("--broker", help="use this MQTT broker HOST:PORT instead of a private one")
    d.add_argument("--scenario", default="ward_incidents", help="shipped scenario or file")
    d.add_argument("--speed", type=float, default=1.0, help="times real time")
    d.add_argument("--duration", type=float, help="virtual seconds (default: the scenario's)")
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("site", help="site files")
    ssub = s.add_subparsers(dest="site_command", required=True)
    c = ssub.add_parser("check", help="validate a site file")
    c.add_argument("site", nargs="?", help="site TOML (default: the shipped example)")
    c.set_defaults(func=cmd_site_check)
    sub.add_parser("simulate", help="the simulator: same options as rtls-gateways run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        from gateways.cli import main as gateways_main

        return gateways_main(["run", *argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RtlsError as exc:
        print(f"rtls: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
