"""The whole chain in one process, in accelerated time: simulated ward -> engine -> alarm desk.

``run_scenario`` plays a scenario (gateways.world.World) and routes every message a device
publishes straight into :class:`rtls.engine.Engine` as the broker would deliver it (a power cut
delivers the device's last will, a power-up its online status), ticks the engine and the
:class:`rtls.desk.Desk` every ``tick_s`` of virtual time, applies operator commands at given
times and relays the desk's downlinks to the tags (badge confirmations, the bracelets' pairings,
admission included). The same pure code as the live service (rtls.service), minus MQTT and
SQLite: scenario tests and bench/normal_day.py use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateways.radio import RadioParams
from gateways.scenario import Scenario
from gateways.truth import Truth
from gateways.world import World
from rtls.alarm import AlarmType, Transition
from rtls.desk import Desk, DeskOutput
from rtls.engine import Engine, EngineParams, TickResult
from rtls.errors import RtlsError
from rtls.ward import PairDownlink
from rtls.worker import Downlink


@dataclass(frozen=True)
class Order:
    """An operator command at virtual time ``at_s`` (``args`` may name an alarm by
    ``{"alarm_of": (type, subject)}``: the open alarm of that condition at that time)."""

    at_s: float
    name: str
    args: dict[str, Any]
    user: str = "nurse.test"


@dataclass
class PipelineRun:
    """What a run produced; times in ``transitions`` are absolute (``epoch`` + virtual s)."""

    epoch: float
    transitions: list[Transition] = field(default_factory=list)
    outputs: list[DeskOutput] = field(default_factory=list)
    refused: list[tuple[Order, str]] = field(default_factory=list)
    engine: Engine | None = None
    desk: Desk | None = None
    truth: Truth | None = None

    def raised(self, type_: AlarmType | None = None) -> list[tuple[float, AlarmType, str]]:
        """(virtual s, type, subject) of every raise (and re-activation), in order."""
        return [
            (tr.t - self.epoch, tr.alarm.type, tr.alarm.subject)
            for tr in self.transitions
            if tr.action in ("raise", "reactivate") and (type_ is None or tr.alarm.type is type_)
        ]

    def first(self, type_: AlarmType, subject: str) -> float | None:
        """Virtual time of the first raise of ``(type, subject)``, None if never."""
        hits = [t for t, ty, s in self.raised(type_) if s == subject]
        return min(hits) if hits else None


def run_scenario(
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    orders: Sequence[Order] = (),
    admit: bool = True,
    radio: RadioParams | None = None,
    params: EngineParams | None = None,
    world_tick_s: float = 0.05,
    on_tick: Callable[[float, TickResult, DeskOutput], None] | None = None,
    truth: Truth | None = None,
) -> PipelineRun:
    """Play ``scenario`` through the engine and the desk (see the module docstring);
    ``truth`` collects the world's ground truth (positions, door reads, badge events)."""
    world = World(scenario, radio=radio, truth=truth)
    site = scenario.site
    engine = Engine(site, params)
    desk = Desk(site)
    epoch = world.epoch
    run = PipelineRun(epoch, engine=engine, desk=desk, truth=truth)
    if admit:  # the ward's starting state; the pairings reach the simulated bracelets
        for name, args in desk.admission_orders():
            for dl in desk.command(name, args, "admission.test", epoch).downlinks:
                _relay(world, dl, 0.0)
    sources = {s.id: s for s in world.sources()}
    inbox: list[tuple[str, bytes, float]] = [
        (s.online.topic, s.online.payload, epoch) for s in sources.values() if s.online
    ]
    pending = sorted(orders, key=lambda o: o.at_s)
    end = world.duration_s if duration_s is None else duration_s
    tick_every = round(engine.params.tick_s / world_tick_s)
    k = 0
    while True:
        k += 1
        t = round(k * world_tick_s, 9)
        if t > end + 1e-9:
            break
        out = world.step(t)
        now = epoch + t
        for change in out.power:
            src = sources[change.source]
            msg = src.online if change.up else src.will
            if msg is not None:
                inbox.append((msg.topic, msg.payload, now))
        inbox += [(r.msg.topic, r.msg.payload, now) for r in out.messages]
        if k % tick_every:
            continue
        engine.ingest_messages(inbox)
        inbox = []
        result = engine.tick(now)
        step = desk.step(now, result, engine.decoder.counters)
        _collect(run, step, world, t)
        while pending and pending[0].at_s <= t:
            order = pending.pop(0)
            try:
                done = desk.command(order.name, _resolve_args(desk, order), order.user, now)
            except RtlsError as exc:
                run.refused.append((order, str(exc)))
                continue
            _collect(run, done, world, t)
        if on_tick is not None:
            on_tick(t, result, step)
    return run


def _collect(run: PipelineRun, out: DeskOutput, world: World, t: float) -> None:
    run.transitions += out.transitions
    if not out.empty:
        run.outputs.append(out)
    for dl in out.downlinks:
        _relay(world, dl, t)


def _relay(world: World, dl: Downlink | PairDownlink, t: float) -> None:
    """What the gateways do with a downlink: hand it to the tag."""
    mother = dl.serial if isinstance(dl, PairDownlink) else None
    world.downlink(dl.tag, dl.command, t, mother=mother)


def _resolve_args(desk: Desk, order: Order) -> dict[str, Any]:
    args = dict(order.args)
    ref = args.pop("alarm_of", None)
    if ref is not None:
        type_, subject = ref
        a = desk.book.by_key(AlarmType(type_), subject)
        if a is None:
            raise RtlsError(f"no open {type_} alarm of {subject} at {order.at_s} s")
        args["alarm"] = a.id
    return args
