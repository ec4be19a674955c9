"""``rtls``: the command line of the real-time location and alarm system.

rtls demo                      broker + simulated ward (engine and console as they land)
rtls site check [SITE.toml]    validate a site file and summarise it
rtls simulate ...              the gateway/tag simulator (same as ``rtls-gateways run``)
rtls engine --broker H:P       the engine service: locate, alarms, store (docs/engine.md)
rtls audit verify --db PATH    check the audit trail's hash chain (docs/audit.md)
rtls users add|passwd|disable|enable|list --db PATH   console users (docs/users.md)
rtls keys provision|list|revoke --db PATH   tag keys (docs/tag-auth.md)
rtls broker-config --site SITE --out DIR   Mosquitto accounts, ACL and TLS (docs/mqtt-security.md)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtls.errors import RtlsError
from rtls.site import Site, load_site

if TYPE_CHECKING:
    from rtls.service.alarms import AlarmShell
    from rtls.service.console import ConsoleConfig, ConsoleServer
    from rtls.service.credentials import MqttCredentials
    from rtls.service.engine import EngineService


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


def cmd_locate(args: argparse.Namespace) -> int:
    from rtls.engine import EngineParams
    from rtls.offline import locate_file

    site = load_site(args.site)
    params = EngineParams(tick_s=args.tick, collect_s=args.collect)
    if args.output == "-":
        stats = locate_file(site, Path(args.input), sys.stdout, params)
    else:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                stats = locate_file(site, Path(args.input), out, params)
        except OSError as exc:
            raise RtlsError(f"{args.output}: cannot write: {exc.strerror or exc}") from exc
    skipped = sum(stats.unknown_gateways.values()) + sum(stats.unknown_tags.values())
    print(f"rtls locate: {stats.rows} observations located, {skipped} skipped", file=sys.stderr)
    for name, n in stats.unknown_gateways.most_common(10):
        print(f"  unknown gateway {name!r}: {n} rows", file=sys.stderr)
    for name, n in stats.unknown_tags.most_common(10):
        print(f"  unknown tag {name!r}: {n} rows", file=sys.stderr)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rtls.calibration import fit, update_site_text
    from rtls.directory import Directory
    from rtls.offline import ReadStats, read_file

    site = load_site(args.site)
    assert site.source is not None
    obs = read_file(site, Path(args.input), Directory.from_site(site), ReadStats())
    cal = fit(site, obs)
    print(f"{'gateway':<10}{'refs':>5}{'packets':>9}{'P0 dBm':>9}{'n':>7}{'rms dB':>8}")
    for i, gw in enumerate(site.gateways):
        mark = "" if cal.fitted[i] else "   (kept: too few references)"
        print(
            f"{gw.id:<10}{cal.links[i]:>5}{cal.packets[i]:>9}{cal.p0[i]:>9.1f}{cal.n[i]:>7.2f}"
            f"{cal.residual_db[i]:>8.1f}{mark}"
        )
    text = update_site_text(site.source.read_text(encoding="utf-8"), site, cal)
    target = site.source if args.in_place else Path(args.output) if args.output else None
    if target is None:
        print("(dry run: give --output FILE or --in-place to write the calibrated site)")
        return 0
    load_site_text_check(text, target)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({int(cal.fitted.sum())} of {len(site.gateways)} gateways calibrated)")
    return 0


def load_site_text_check(text: str, target: Path) -> None:
    """Validate the calibrated text before writing it (never write a broken site file)."""
    import tomllib

    from rtls.site import Site

    Site.from_mapping(tomllib.loads(text), source=target, text=text)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 if the audit chain is intact, 1 (naming the first bad record) if not."""
    import json

    from rtls.service.store import verify_database

    key = _read_key(args.key_file) if args.key_file else None
    head = None
    if args.head:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise RtlsError(f"--head must be SEQ:HASH (64 hex digits), got {args.head!r}")
        head = (int(seq), digest.lower())
    result = verify_database(args.db, key=key, head=head)
    if result.ok:
        print(f"rtls audit verify: {args.db}: {result.message}")
        return 0
    print(f"rtls audit verify: {args.db}: TAMPERED: {result.message}")
    if result.record is not None:
        print(json.dumps(result.record, sort_keys=True))
    return 1


def cmd_engine(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    site = load_site(args.site)
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise RtlsError(f"--broker must be HOST:PORT, got {args.broker!r}")
    key = _read_key(args.audit_key_file) if args.audit_key_file else None
    console = _console_config(args)
    mqtt = None
    if args.mqtt_credentials:
        from rtls.service.credentials import load_credentials

        mqtt = load_credentials(args.mqtt_credentials)
    print(f"rtls engine: site {site.id!r}, broker {args.broker}, tick {args.tick} s, "
          f"alarm store {args.db}", flush=True)  # fmt: skip
    from rtls.service.engine import SWITCH_INTERVAL_S

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # urgent passes must not wait 5 ms for the GIL

    def on_ready(service: EngineService) -> None:
        """SIGINT (Ctrl-C) and SIGTERM (systemd, docker) stop the engine cleanly (offline
        status published, store closed) whatever the loop is doing when they arrive; the
        start-up heap is frozen (:func:`freeze_heap`)."""
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        freeze_heap()

    try:
        asyncio.run(run_engine(site, host, int(port), tick_s=args.tick, watch_s=args.watch,
                               collect_s=args.collect, db=Path(args.db),
                               audit_key=key, commands=args.commands,
                               admit_all=args.admit_all, console=console,
                               mqtt=mqtt, ready=on_ready))  # fmt: skip
    except KeyboardInterrupt:
        return 0
    return 0


def freeze_heap() -> int:
    """Collect, then move every live object to the collector's permanent generation
    (CPython's ``gc.freeze``); returns how many. For a long-lived process once its start-up
    is done: the site, the engine's arrays, the store and the ward live as long as the process,
    and a full collection, which holds the GIL and so every alarm, then scans only what came
    later (at 2,000 badges a full collection took 30-90 ms before, ~1.5 ms after)."""
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _console_config(args: argparse.Namespace) -> ConsoleConfig | None:
    """``--console HOST:PORT`` (and TLS, session TTL) as a console configuration."""
    from rtls.service.console import ConsoleConfig, load_ssl

    if not args.console:
        return None
    chost, _, cport = args.console.rpartition(":")
    if not chost or not cport.isdigit():
        raise RtlsError(f"--console must be HOST:PORT, got {args.console!r}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise RtlsError("--tls-cert and --tls-key go together")
    tls = load_ssl(args.tls_cert, args.tls_key) if args.tls_cert else None
    return ConsoleConfig(host=chost, port=int(cport), ssl=tls, session_ttl_s=args.session_ttl)


def _read_key(path: str) -> bytes:
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise RtlsError(f"{path}: cannot read the audit key: {exc}") from exc


async def run_engine(
    site: Site, host: str, port: int, *, tick_s: float = 0.25, watch_s: float | None = None,
    collect_s: float | None = None, db: Path, audit_key: bytes | None = None,
    commands: bool = False, admit_all: bool = False,
    ready: Callable[[EngineService], None] | None = None,
    console: ConsoleConfig | None = None,
    console_ready: Callable[[ConsoleServer], Awaitable[None] | None] | None = None,
    mqtt: MqttCredentials | None = None,
) -> None:  # fmt: skip
    """The engine service with its alarm desk and store, until cancelled. Restores the open
    alarms, ward and timers the store kept (after a crash or a restart). ``console``: also
    serve the console (docs/console-api.md), users from the same database (docs/users.md);
    ``console_ready`` is called once it listens. ``mqtt``: the engine's broker account (TLS
    when it names a CA file; docs/mqtt-security.md). ``collect_s``: the badges' collection
    window (None: ``COLLECT_S``; docs/engine.md)."""
    import asyncio
    import time

    from rtls.desk import Desk
    from rtls.engine import Engine, EngineParams
    from rtls.service.alarms import AlarmShell
    from rtls.service.engine import COLLECT_S, TICK_NICE, EngineService
    from rtls.service.heap import tune_heap
    from rtls.service.keys import KeyKeeper, KeyStore, load_keys
    from rtls.service.store import AlarmStore

    tune_heap()  # before the worker threads (docs/performance.md, rtls/service/heap.py)
    collect = COLLECT_S if collect_s is None else collect_s
    engine = Engine(site, EngineParams(tick_s=tick_s, watch_s=watch_s, collect_s=collect))
    async with await AlarmStore.open(db, audit_key=audit_key) as store:
        keys = KeyStore.open(db)  # tag keys (docs/tag-auth.md)
        keeper = KeyKeeper(engine, keys, at_admission=site.security.provision_at_admission)
        if loaded := load_keys(engine, keys):
            print(f"rtls engine: {loaded} tag key(s) loaded", flush=True)
        shell = AlarmShell(Desk(site), store, clock=time.time)
        shell.on_command = keeper.after_command
        restored = await shell.restore()
        if restored:
            print(f"rtls engine: restored {restored} open alarm(s) from {db}", flush=True)
        if admit_all:
            for name, cmd_args in shell.desk.admission_orders():
                reply = await shell.command(None, name, cmd_args, "admission")
                if not reply["ok"]:
                    raise RtlsError(f"--admit-all: {name} {cmd_args}: {reply['error']}")
        service = EngineService(engine, host, port, alarms=shell, commands=commands,
                                tick_nice=TICK_NICE,
                                username=mqtt.username if mqtt else None,
                                password=mqtt.password if mqtt else None,
                                tls_ca_file=mqtt.ca_file if mqtt else None)  # fmt: skip
        service.tick_observers.append(keeper.tick)
        if ready is not None:
            ready(service)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(keys.close)
            stack.callback(keeper.save)
            if console is not None:
                server = await _start_console(stack, service, shell, db, audit_key, console)
                if console_ready is not None:
                    pending = console_ready(server)
                    if pending is not None:
                        await pending
            try:
                await service.run()
            except asyncio.CancelledError:
                service.stop()
                raise


async def _start_console(
    stack: contextlib.AsyncExitStack, service: EngineService, shell: AlarmShell, db: Path,
    audit_key: bytes | None, config: ConsoleConfig,
) -> ConsoleServer:  # fmt: skip
    from rtls.service.accounts import Accounts
    from rtls.service.console import ConsoleServer

    accounts = await stack.enter_async_context(await Accounts.open(db, audit_key=audit_key))
    server = ConsoleServer(service, shell, accounts, config)
    await server.start()
    stack.push_async_callback(server.close)
    print(f"rtls engine: console at {server.url}", flush=True)
    return server


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from gateways.cli import main as gateways_main
    from rtls.service.broker import MosquittoBroker, find_mosquitto

    run = ["run", "--scenario", args.scenario, "--speed", str(args.speed),
           "--duration", str(args.duration)]  # fmt: skip
    console = _demo_console(args.console)
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        with tempfile.TemporaryDirectory(prefix="rtls-demo-") as tmp:
            keys = _demo_keys(Path(tmp))
            with _engine_in_background(host, int(port), Path(tmp), console):
                return gateways_main([*run, *keys, "--broker", args.broker])
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
            f"  mosquitto_sub -p {broker.port} -v -t '#'\n"
            f"  (engine positions: -t rtls/v1/engine/positions)\n",
            flush=True,
        )
        keys = _demo_keys(Path(workdir.name))
        with _engine_in_background(broker.host, broker.port, Path(workdir.name), console):
            return gateways_main([*run, *keys, "--broker", f"{broker.host}:{broker.port}"])


def _demo_keys(workdir: Path) -> list[str]:
    """Every tag of the demo gets a key (docs/tag-auth.md) in the demo's store, as the nurse
    station's NFC writer would give it: the engine loads them at its start, the simulated tags
    sign with them (``--tag-key`` arguments for ``rtls-gateways run``)."""
    import os
    import time

    from rtls.service.keys import KeyStore

    out: list[str] = []
    now = time.time()
    with KeyStore.open(workdir / "alarms.db") as keys:
        for tag in load_site().tags:
            key = keys.provision(tag.id, now=now, actor="demo")
            path = workdir / f"{tag.id}.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key.hex() + "\n")
            out += ["--tag-key", f"{tag.id}={path}"]
    print(f"rtls demo: every tag signs its advertisements ({len(out) // 2} keys, "
          "docs/tag-auth.md)", flush=True)
    return out


def _demo_console(address: str) -> ConsoleConfig | None:
    """The demo's console address (``--console``; ``off``: none). The default port 8080 is
    replaced by a free one when it is taken."""
    import socket

    from rtls.service.console import ConsoleConfig

    if address == "off":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RtlsError(f"--console must be HOST:PORT or off, got {address!r}")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            print(f"rtls demo: {address} is taken; the console takes a free port", flush=True)
            port = "0"
    return ConsoleConfig(host=host, port=int(port))


async def _print_demo_users(server: ConsoleServer) -> None:
    from rtls.service.accounts import ensure_demo_users

    users = await ensure_demo_users(server.accounts, server.site)
    lines = [f"    {name:14s} {role.value:11s} password {password}"
             for name, role, password in users]  # fmt: skip
    print(f"\nrtls demo: console at {server.url}  (French or English, by the browser)\n"
          "  demo users (passwords are new at every start):\n" + "\n".join(lines) + "\n",
          flush=True)  # fmt: skip


@contextlib.contextmanager
def _engine_in_background(
    host: str, port: int, workdir: Path, console: ConsoleConfig | None = None
) -> Iterator[None]:
    """The engine with its alarm desk (store in ``workdir``, every infant admitted and paired)
    and the console (demo users printed) in a thread of its own, printing each alarm change
    and a summary every 10 s."""
    import asyncio
    import threading

    from rtls.desk import DeskOutput
    from rtls.engine import TickResult

    site = load_site()
    db = workdir / "alarms.db"
    last = [0.0]
    holder: list[EngineService] = []

    def summary(result: TickResult) -> None:
        engine = holder[0].engine
        if result.t - last[0] < 10.0 or not engine.observations:
            return
        last[0] = result.t
        est = result.estimate
        heard = est.last_fix_t > -np.inf
        unc = float(np.median(est.uncertainty[est.known])) if est.known.any() else float("nan")
        rejected = sum(engine.decoder.counters.rejected.values())
        auth = engine.auth.counts
        refused = ", ".join(f"{n} {k}" for k, n in sorted(auth.items())
                            if n and k not in ("ok", "unauthenticated_accepted")) or "none"
        print(
            f"  engine: {int(est.known.sum())} of {int(heard.sum())} tags located "
            f"(median uncertainty {unc:.1f} m), {engine.observations} observations, "
            f"{rejected} messages rejected, {auth['ok']} signed observations verified, "
            f"refused: {refused}",
            flush=True,
        )

    def alarms(out: DeskOutput) -> None:
        for tr in out.transitions:
            a = tr.alarm
            where = a.location.zone or a.location.floor or "unknown place"
            print(f"  ALARM {tr.action:11s} #{a.id} {a.type.value} {a.subject} "
                  f"({a.priority.label}, {a.state.value}) at {where}", flush=True)  # fmt: skip

    def ready(service: EngineService) -> None:
        holder.append(service)
        service.on_tick = summary
        if service.alarms is not None:
            service.alarms.on_commit = alarms

    print(f"rtls demo: engine with alarms; store {db} (rtls audit verify --db {db})", flush=True)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_engine(site, host, port, db=db, admit_all=True, ready=ready,
                                       console=console, console_ready=_print_demo_users))
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        if holder:
            loop.call_soon_threadsafe(holder[0].stop)  # a clean stop: offline status, store closed
        else:
            loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)


def cmd_broker_config(args: argparse.Namespace) -> int:
    """``rtls broker-config``: write the site's Mosquitto accounts, ACL and TLS files."""
    from rtls.broker_config import BrokerOptions, Role
    from rtls.service.credentials import ENGINE_FILE, GATEWAYS_FILE, write_broker_dir

    site = load_site(args.site)
    options = BrokerOptions(host=args.host, tls_port=args.tls_port, bind=args.bind,
                            local_port=args.local_port, engine_user=args.engine_user,
                            actuators=not args.no_actuators, readers=tuple(args.readers),
                            monitors=tuple(args.monitors))  # fmt: skip
    ca = (Path(args.ca_cert), Path(args.ca_key)) if args.ca_cert or args.ca_key else (None, None)
    if None in ca and ca != (None, None):
        raise RtlsError("--ca-cert and --ca-key go together")
    done = write_broker_dir(site, Path(args.out), options, rotate=args.rotate, ca_cert=ca[0],
                            ca_key=ca[1], install_dir=args.install_dir)  # fmt: skip
    roles = Counter(a.role for a in done.accounts)
    out, broker = done.directory, f"{args.host}:{args.tls_port}"
    print(f"rtls broker-config: site {site.id!r} -> {out}")
    print(f"  accounts   {len(done.accounts)}: " + ", ".join(
        f"{r.value} {roles[r]}" for r in Role if roles[r]))  # fmt: skip
    print(f"  passwords  {len(done.new_passwords)} new, {len(done.kept_passwords)} kept"
          + (f"; removed {', '.join(done.removed)}" if done.removed else ""))  # fmt: skip
    print(f"  TLS        {done.certificate}")
    print("  wrote      " + ", ".join(p.name for p in done.written) + " (credentials and "
          "passwd: mode 0600)")  # fmt: skip
    if args.host == "localhost":
        print("  note       the certificate names localhost only: give --host NAME (the name "
              "the gateways use) for a broker they reach over the network")  # fmt: skip
    print(f"\nStart the broker:  mosquitto -c {out / 'mosquitto.conf'}\n"
          "  (as a service: use --install-dir, copy the files there, give the mosquitto user "
          "read access;\n   after re-running, reload with: kill -HUP <mosquitto pid>)\n"
          f"Engine:     rtls engine --broker {broker} --mqtt-credentials {out / ENGINE_FILE}\n"
          f"Simulator:  rtls-gateways run --broker {broker} "
          f"--mqtt-credentials {out / GATEWAYS_FILE}")  # fmt: skip
    return 0


def _broker_config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("broker-config", help="Mosquitto accounts, ACL and TLS for a site "
                       "(docs/mqtt-security.md)")  # fmt: skip
    b.add_argument("--site", help="site TOML (default: the shipped example)")
    b.add_argument("--out", required=True, help="directory to write (re-run: passwords kept)")
    b.add_argument("--host", default="localhost", help="the broker's name for its clients "
                   "(in the server certificate; default localhost)")  # fmt: skip
    b.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (8883)")
    b.add_argument("--bind", help="address the TLS listener binds (default: every interface)")
    b.add_argument("--local-port", type=int, help="also a plain listener on 127.0.0.1:PORT")
    b.add_argument("--rotate", action="store_true", help="new passwords for every account")
    b.add_argument("--ca-cert", help="sign the server certificate with this CA (PEM) ...")
    b.add_argument("--ca-key", help="... and its key (else a CA is generated in --out)")
    b.add_argument("--install-dir", help="where the files will be on the broker host (the "
                   "paths in mosquitto.conf; default: --out)")  # fmt: skip
    b.add_argument("--engine-user", default="rtls-engine", help="the engine's username")
    b.add_argument("--reader", dest="readers", action="append", default=[],
                   help="a read-only integration account (alarms, engine status); "
                   "repeatable")  # fmt: skip
    b.add_argument("--monitor", dest="monitors", action="append", default=[],
                   help="a read-only technician account (every topic); "
                   "repeatable")  # fmt: skip
    b.add_argument("--no-actuators", action="store_true",
                   help="no account for the door/lift controller bridge")  # fmt: skip
    b.set_defaults(func=cmd_broker_config)


def cmd_users(args: argparse.Namespace) -> int:
    """``rtls users add|passwd|disable|enable|list``: console accounts (docs/users.md); every
    change is written to the store's audit trail as ``cli:<login name>``."""
    import asyncio

    return asyncio.run(_users(args))


async def _users(args: argparse.Namespace) -> int:
    import getpass
    import time

    from rtls.service.accounts import Accounts
    from rtls.service.store import AlarmStore
    from rtls.users import User, UserError, check_name, check_scopes, parse_role, ward_ids

    what, db = args.users_command, Path(args.db)
    if what != "add" and not db.is_file():
        raise RtlsError(f"{db}: no such database file")
    key = _read_key(args.audit_key_file) if args.audit_key_file else None
    if what == "list":
        async with await Accounts.open(db, audit_key=key) as accounts:
            users = await accounts.list()
        rows = [("name", "role", "scopes", "disabled", "display")] + [
            (u.name, u.role.value, ",".join(sorted(u.scopes)), "yes" if u.disabled else "no",
             u.display) for u in users]  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
        return 0
    wards: tuple[str, ...] = ()
    check_name(args.name)
    if what == "add":  # everything checked before a password is asked for
        wards = ward_ids(load_site(args.site))
        if not args.scopes:
            raise RtlsError(f"--scope is required: a ward ({', '.join(wards) or 'none'}) or '*' "
                            "for the whole site")  # fmt: skip
        parse_role(args.role)
        check_scopes(args.scopes, wards)
    try:
        login = getpass.getuser()
    except (OSError, KeyError, ImportError):
        login = "unknown"
    async with await Accounts.open(db, audit_key=key) as accounts:
        exists = await accounts.get(args.name) is not None
        if exists != (what != "add"):
            raise UserError(f"user {args.name!r} already exists" if exists
                            else f"no such user {args.name!r}")  # fmt: skip
        password = _users_password(args) if what in ("add", "passwd") else ""
        user: User
        detail: dict[str, object] = {}
        if what == "add":
            user = await accounts.add(args.name, args.role, args.scopes, password,
                                      args.display or "", wards=wards)  # fmt: skip
            detail = {"role": user.role.value, "scopes": sorted(user.scopes),
                      "display": user.display}  # fmt: skip
        elif what == "passwd":
            user = await accounts.set_password(args.name, password)
        elif what == "disable":
            user = await accounts.disable(args.name)
        else:
            user = await accounts.enable(args.name)
    event = {"actor": f"cli:{login}", "action": f"user.{what}", "subject": user.name,
             "detail": detail, "t": time.time()}  # fmt: skip
    try:
        async with await AlarmStore.open(db, audit_key=key) as store:
            await store.commit(events=[event])
    except RtlsError as exc:
        raise RtlsError(f"user {user.name!r}: {what} done, but NOT audited: {exc}") from exc
    print(f"rtls users: {what} {user.name} ({user.role.value}, "
          f"{','.join(sorted(user.scopes))}{', disabled' if user.disabled else ''}); audited")
    return 0


def _users_password(args: argparse.Namespace) -> str:
    """The new password: ``--password-file`` (first line), env RTLS_PASSWORD, or typed twice."""
    import getpass
    import os

    from rtls.users import check_password

    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise RtlsError(f"{args.password_file}: cannot read: {exc.strerror or exc}") from exc
        return check_password(text.splitlines()[0] if text else "")
    if os.environ.get("RTLS_PASSWORD"):
        return check_password(os.environ["RTLS_PASSWORD"])
    try:
        first = check_password(getpass.getpass(f"new password for {args.name}: "))
        again = getpass.getpass("again: ")
    except EOFError as exc:
        raise RtlsError("no password given (type it, or use --password-file / RTLS_PASSWORD)"
                        ) from exc  # fmt: skip
    if first != again:
        raise RtlsError("the two passwords differ; nothing changed")
    return first


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtls", description="Real-time location and alarm system")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo: broker and simulated ward")
    d.add_argument("--broker", help="use this MQTT broker HOST:PORT instead of a private one")
    d.add_argument("--scenario", default="ward_incidents", help="shipped scenario or file")
    d.add_argument("--speed", type=float, default=1.0, help="times real time")
    d.add_argument("--duration", type=float, default=86_400.0,
                   help="virtual seconds (default: a day; the incidents come in the first "
                   "minutes, then the ward goes on; Ctrl-C ends it)")
    d.add_argument("--console", default="127.0.0.1:8080",
                   help="serve the console on HOST:PORT ('off': none)")  # fmt: skip
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("site", help="site files")
    ssub = s.add_subparsers(dest="site_command", required=True)
    c = ssub.add_parser("check", help="validate a site file")
    c.add_argument("site", nargs="?", help="site TOML (default: the shipped example)")
    c.set_defaults(func=cmd_site_check)
    sub.add_parser("simulate", help="the simulator: same options as rtls-gateways run")
    loc = sub.add_parser("locate", help="locate recorded observations offline (docs/locator.md)")
    loc.add_argument("--site", help="site TOML (default: the shipped example)")
    loc.add_argument("--input", required=True, help="CSV rows t,gateway,tag,rssi")
    loc.add_argument("--output", required=True, help="CSV rows t,tag,x,y,z,floor,zone,uncertainty")
    loc.add_argument("--tick", type=float, default=0.25, help="engine tick in seconds")
    loc.add_argument("--collect", type=float, default=0.0,
                     help="badges' collection window in seconds (0: at once, the default "
                          "here; the live engine's is 0.25; docs/engine.md)")  # fmt: skip
    loc.set_defaults(func=cmd_locate)
    eng = sub.add_parser("engine", help="run the location engine against a broker")
    eng.add_argument("--broker", required=True, help="MQTT broker HOST:PORT")
    eng.add_argument("--site", help="site TOML (default: the shipped example)")
    eng.add_argument("--tick", type=float, default=0.25, help="tick in seconds (<= 0.25)")
    eng.add_argument("--watch", type=float, default=None,
                     help="infant and mother tags located every so many seconds, also between "
                          "ticks (default: half the tick; docs/engine.md)")  # fmt: skip
    eng.add_argument("--collect", type=float, default=None,
                     help="badges are located this long after their first report, with "
                          "all gateways' (default 0.25 s; 0: at once; docs/engine.md)")  # fmt: skip
    eng.add_argument("--db", default="rtls-alarms.db", help="the alarm store (SQLite file)")
    eng.add_argument("--audit-key-file", help="the site's secret for an HMAC-chained audit")
    eng.add_argument(
        "--commands",
        action="store_true",
        help="accept operator commands on rtls/v1/command (trusted broker only)",
    )
    eng.add_argument(
        "--admit-all",
        action="store_true",
        help="admit every infant tag and pair it by home room (demo, tests)",
    )
    eng.add_argument("--console", help="serve the console on HOST:PORT (docs/console-api.md)")
    eng.add_argument("--tls-cert", help="PEM certificate: serve the console over HTTPS/WSS")
    eng.add_argument("--tls-key", help="PEM private key of --tls-cert")
    eng.add_argument("--session-ttl", type=float, default=900.0,
                     help="console session lifetime in seconds (renewed by the page)")  # fmt: skip
    eng.add_argument("--mqtt-credentials", help="the engine's broker account file "
                     "(engine-credentials.toml of rtls broker-config; TLS with its "
                     "ca_file)")  # fmt: skip
    eng.set_defaults(func=cmd_engine)
    _broker_config_parser(sub)
    cal = sub.add_parser("calibrate", help="fit gateways' P0 and n from reference tags")
    cal.add_argument("--site", help="site TOML (default: the shipped example)")
    cal.add_argument("--input", required=True, help="CSV rows t,gateway,tag,rssi")
    where = cal.add_mutually_exclusive_group()
    where.add_argument("--output", help="write the calibrated site here")
    where.add_argument("--in-place", action="store_true", help="update the site file itself")
    cal.set_defaults(func=cmd_calibrate)
    aud = sub.add_parser("audit", help="the audit trail (docs/audit.md)")
    asub = aud.add_subparsers(dest="audit_command", required=True)
    av = asub.add_parser("verify", help="check the hash chain of an alarm store")
    av.add_argument("--db", required=True, help="the alarm store's SQLite file")
    av.add_argument("--key-file", help="the site's audit key (HMAC-chained trails)")
    av.add_argument("--head", help="an anchored head SEQ:HASH the chain must contain")
    av.set_defaults(func=cmd_audit_verify)
    us = sub.add_parser("users", help="console users (docs/users.md)")
    usub = us.add_subparsers(dest="users_command", required=True)
    ucommon = argparse.ArgumentParser(add_help=False)
    ucommon.add_argument("--db", required=True, help="the alarm store's SQLite file")
    ucommon.add_argument("--audit-key-file", help="the site's audit key (HMAC-chained trails)")
    upass = argparse.ArgumentParser(add_help=False)
    upass.add_argument("--password-file", help="read the password from this file's first line "
                       "(else env RTLS_PASSWORD, else typed twice)")  # fmt: skip
    ua = usub.add_parser("add", parents=[ucommon, upass], help="create a user")
    ua.add_argument("name", help="login name: a-z, 0-9, '.', '_', '-' (2 to 32)")
    ua.add_argument("--role", required=True, help="nurse, security, technician or admin")
    ua.add_argument("--scope", dest="scopes", action="append", default=[],
                    help="a ward (secure_perimeter zone id), repeatable; '*': the whole site")
    ua.add_argument("--display", help="the name shown in the console")
    ua.add_argument("--site", help="site TOML whose wards scopes name (default: the example)")
    up = usub.add_parser("passwd", parents=[ucommon, upass], help="set a user's password")
    up.add_argument("name")
    for verb, text in (("disable", "refuse a user's logins"), ("enable", "allow them again")):
        usub.add_parser(verb, parents=[ucommon], help=text).add_argument("name")
    usub.add_parser("list", parents=[ucommon], help="the users (never their hashes)")
    us.set_defaults(func=cmd_users)
    from rtls.service.keys import add_parser as add_keys_parser

    add_keys_parser(sub)
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
