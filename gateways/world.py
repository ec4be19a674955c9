"""The simulated hospital: tags, people, radio, gateways and door readers, stepped by time.

``World(scenario)`` builds everything from the scenario's site; ``step(t)`` advances virtual
time to ``t`` and returns the MQTT messages produced and the devices whose power changed. All
randomness comes from the scenario seed (one child generator per subsystem), so the same
scenario and seed give the same messages, byte for byte (docs/scenarios.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from firmware_sim.accelerometer import Trace, synthesize
from firmware_sim.motion import BADGE_Z, LYING_Z, MotionTable, Positions, Trajectory, walking_speeds
from firmware_sim.tags import (
    MODELS,
    PROXIMITY_RANGE_M,
    InfantBracelet,
    MotherTag,
    StaffBadge,
    TagFirmware,
    Wristband,
)
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from gateways.attacker import Attacker
from gateways.doorreader import DoorReaders
from gateways.formats import Message, door_last_will, door_online, door_reads, gateway_format
from gateways.gateway import SimGateway
from gateways.people import Ward
from gateways.radio import RadioChannel, RadioParams
from gateways.scenario import ATTACKS, Event, Scenario
from gateways.truth import Truth
from rtls.advertisement import BODY_DTYPE, encode_body, tag_address
from rtls.batch import RECORD_DTYPE
from rtls.walls import site_walls

FLOOR_APART_M = 1.0e4  # proximity search: one floor's tags never meet another's
ACCEL_RATE_HZ = 25.0
ACCEL_CHUNK_S = 10.0
# What a badge's accelerometer shows after each scenario action: the transition, then what
# continues until the next action (None: the wearer is up and about; nothing is fed).
POSTURES: dict[str, tuple[tuple[tuple[str, float], ...], str | None]] = {
    "fall": ((), "lying_still"),  # transition chosen by the fall kind
    "lie_down": ((("lying_down", 30.0),), "lying_still"),
    "sit_down": ((("sitting_down", 10.0),), "sitting"),
    "sit_down_hard": ((("sitting_down_hard", 10.0),), "sitting"),
    "bend": ((("bending", 10.0), ("walking", 10.0)), None),
    "get_up": ((("standing_up", 5.0), ("walking", 15.0)), None),
}


@dataclass(frozen=True)
class Source:
    """A device with its own MQTT connection: a gateway or a door reader."""

    id: str
    format: str
    will: Message | None
    online: Message | None


@dataclass(frozen=True)
class Routed:
    """A message from a source; ``observations`` counts the RSSI observations it carries."""

    source: str
    msg: Message
    observations: int = 0


@dataclass(frozen=True)
class PowerChange:
    source: str
    up: bool


@dataclass
class StepOutput:
    messages: list[Routed] = field(default_factory=list)
    power: list[PowerChange] = field(default_factory=list)


@dataclass
class _Feed:
    """Accelerometer samples queued for one badge, and what follows them."""

    trace: Trace
    continuation: str | None
    fed_until: float


class World:
    """A scenario being played. ``radio`` overrides the radio parameters from the site.
    ``keys``: tag id -> 16-byte key of the tags that sign their advertisements (what the
    nurse station's NFC writer gave them, docs/tag-auth.md; later ones: :meth:`provision`)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        radio: RadioParams | None = None,
        epoch: float | None = None,
        truth: Truth | None = None,
        keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self.scenario = scenario
        site = self.site = scenario.site
        self.epoch = scenario.epoch if epoch is None else epoch
        self.duration_s = scenario.info.duration_s
        self.t = 0.0
        self.truth = truth
        seeds = np.random.SeedSequence(scenario.info.seed).spawn(6)
        rng_tags, rng_radio, rng_people, rng_accel, rng_misc, rng_speed = (
            np.random.default_rng(s) for s in seeds
        )
        self._rng_accel = rng_accel
        self._rng_misc = rng_misc
        rules = site.rules
        # -- tags: firmware models, in site order -----------------------------------------------
        self.tag_ids = [t.id for t in site.tags]
        self.firmware: list[TagFirmware] = []
        for tag, child in zip(site.tags, rng_tags.spawn(len(site.tags)), strict=True):
            kr = rules.for_kind(tag.kind.value)
            kwargs: dict[str, object] = {
                "interval_s": site.tag_interval(tag),
                "tx_power": site.tag_power(tag),
                "rng": child,
                "low_battery_pct": kr.low_battery_pct,
                "burst_repeats": kr.burst_repeats,
                "burst_interval_s": kr.burst_interval_s,
            }
            self.firmware.append(MODELS[tag.kind.value](tag.serial, **kwargs))  # type: ignore[arg-type]
        self._fw_by_id = dict(zip(self.tag_ids, self.firmware, strict=True))
        self._next_due = np.array([fw.next_due for fw in self.firmware], dtype=np.float64)
        self._tag_row = {tid: i for i, tid in enumerate(self.tag_ids)}
        self._touched: set[int] = set()
        for tag_id, key in (keys or {}).items():
            self.provision(tag_id, key)
        self._addresses = np.array(
            [np.frombuffer(tag_address(t.serial), dtype=np.uint8) for t in site.tags],
            dtype=np.uint8,
        ).reshape(-1, 6)
        self._tag_floor_rank = {f.id: i for i, f in enumerate(site.floors)}
        # short-range proximity between infant bracelets and mother tags (mismatch check)
        self._bracelets = np.flatnonzero([isinstance(fw, InfantBracelet) for fw in self.firmware])
        self._mothers = np.flatnonzero([isinstance(fw, MotherTag) for fw in self.firmware])
        self._mother_serials = np.array([site.tags[i].serial for i in self._mothers.tolist()],
                                        dtype=np.int64)  # fmt: skip
        self._near: set[tuple[int, int]] = set()  # (bracelet k, mother j) in range
        # -- people and motion -------------------------------------------------------------------
        speeds = walking_speeds(rng_speed, len(site.tags) + len(scenario.actors))
        self.ward = Ward(site, rng_people, ambient=scenario.info.ambient)
        self.motion = MotionTable()
        for i, tag in enumerate(site.tags):
            self.motion.add(tag.id, self.ward.initial_trajectory(tag), transmits=True)
            self.ward.speed[tag.id] = float(speeds[i])
        for actor in scenario.actors:
            floor, xy = self.ward.resolve(actor.start, None, 0.0)
            traj = Trajectory.still(xy, floor, 0.0, z=BADGE_Z)
            self.motion.add(actor.id, traj, transmits=False)
            self.ward.speed[actor.id] = actor.speed
        self.ward.attach(self.motion)
        self._feeds: dict[str, _Feed] = {}
        # -- radio -------------------------------------------------------------------------------
        ga = site.gateway_arrays
        walls = site_walls(site)
        params = radio or RadioParams(
            shadowing_sigma_db=site.radio.shadowing_db,
            floor_loss_db=site.radio.floor_loss_db,
            sensitivity_dbm=site.radio.sensitivity_dbm,
        )
        # the gateway's own calibration relative to the tags' default measured power
        rx_offset = ga.rssi_at_1m - site.radio.rssi_at_1m
        self.radio = RadioChannel(
            ga.xyz, ga.floor, ga.path_loss_exponent, rx_offset, walls, params,
            len(site.tags) + len(scenario.actors), rng_radio,
        )  # fmt: skip
        self._elevation = np.array([f.elevation for f in site.floors])
        # -- gateways and door readers --------------------------------------------------------
        infra = rules.infrastructure
        self.gateways = [
            SimGateway(
                g.id,
                gateway_format(g.format.value),
                self.epoch,
                batch_interval_s=infra.batch_interval_s,
                health_interval_s=infra.health_interval_s,
            )
            for g in site.gateways
        ]
        self._gw_index = {g.id: i for i, g in enumerate(site.gateways)}
        self.readers = list(site.door_readers)
        self._reader_index = {r.id: i for i, r in enumerate(self.readers)}
        rxy = [site.reader_position(r)[:2] for r in self.readers]
        rfloor = [site.floor_index[site.door(r.door).floor] for r in self.readers]
        self.door_readers = DoorReaders(
            np.asarray(rxy, dtype=float).reshape(-1, 2),
            rfloor,
            [r.range_m for r in self.readers],
            len(self.motion),
        )
        self._actor_row = {a.id: len(site.tags) + k for k, a in enumerate(scenario.actors)}
        victims = {self._tag_row[str(e.tag)] for e in scenario.events if e.action in ATTACKS}
        self.attacker: Attacker | None = None  # gateways.attacker: replay / clone actions
        if victims:
            rng = np.random.default_rng(np.random.SeedSequence(scenario.info.seed, spawn_key=(6,)))
            self.attacker = Attacker(victims, rng)
        self._events = list(scenario.events)
        self._next_event = 0
        self._reboots: list[tuple[float, int]] = []
        self._next_truth = 0.0

    # -- sources -------------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        """Every device that owns an MQTT connection, with its last will and online status."""
        out = [
            Source(g.id, g.format.name, g.format.last_will(g.id), g.format.online(g.id, self.epoch))
            for g in self.gateways
        ]
        out += [
            Source(r.id, "reader", door_last_will(r.id), door_online(r.id, self.epoch))
            for r in self.readers
        ]
        return out

    # -- the step --------------------------------------------------------------------------------
    def step(self, t: float) -> StepOutput:
        """Advance to virtual time ``t`` (> current) and return what the devices published."""
        out = StepOutput()
        while self._next_event < len(self._events) and self._events[self._next_event].at_s <= t:
            ev = self._events[self._next_event]
            self._next_event += 1
            self._apply(ev, out)
        while self._reboots and self._reboots[0][0] <= t:
            when, gi = self._reboots.pop(0)
            self._power_gateway(gi, True, out, when)
        self.ward.tick(t)
        pos = self.motion.positions(t)
        self._feed_badges(t)
        self._meet(t, pos)
        self._refresh_due()
        self._transmit(t, pos, out)
        self._read_doors(t, pos, out)
        for gw in self.gateways:
            for msg in gw.step(t):
                out.messages.append(Routed(gw.id, msg, _observation_count(msg, gw)))
        if self.truth is not None:
            while self._next_truth <= t:
                self.truth.positions(self._next_truth, self.motion, self.site)
                self._next_truth += self.scenario.info.truth_interval_s
        self.t = t
        return out

    def _transmit(self, t: float, p: Positions, out: StepOutput) -> None:
        frames_t: list[float] = []
        rows: list[int] = []
        bodies: list[bytes] = []
        power: list[float] = []
        due = np.flatnonzero(self._next_due <= t)
        spy = self.attacker
        for i in due.tolist():
            fw = self.firmware[i]
            frames = fw.due(t)
            self._next_due[i] = fw.next_due
            for f in frames:
                frames_t.append(f.t)
                rows.append(i)
                bodies.append(f.body)
                power.append(f.tx_power)
                if spy is not None and i in spy.victims:
                    spy.capture(i, f)
        senders = list(rows)  # whose address each frame carries (an attacker's: the victim's)
        if spy is not None:
            powers = {v: self.firmware[v].tx_power for v in spy.victims}
            for a in spy.due(t, powers):
                frames_t.append(a.t)
                rows.append(a.device)
                senders.append(a.victim)
                bodies.append(a.body)
                power.append(a.tx_power)
        if not rows:
            return
        r = np.asarray(rows, dtype=np.intp)
        sender = np.asarray(senders, dtype=np.intp)
        xyz = p.xyz[r].copy()
        xyz[:, 2] += self._elevation[p.floor[r]]
        heard = self.radio.hear(r, xyz, p.floor[r], np.asarray(power, dtype=float))
        if len(heard) == 0:
            return
        body = np.frombuffer(b"".join(bodies), dtype=np.uint8).reshape(-1, 20)
        tt = np.asarray(frames_t, dtype=float)
        rec = np.zeros(len(heard), dtype=RECORD_DTYPE)
        rec["address"] = self._addresses[sender[heard.adv]]
        rec["rssi"] = heard.rssi
        rec["channel"] = heard.channel
        rec["body"] = body[heard.adv].view(rec["body"].dtype).reshape(-1)
        order = np.argsort(heard.gateway, kind="stable")
        gws = heard.gateway[order]
        bounds = np.flatnonzero(np.diff(gws)) + 1
        for chunk in np.split(order, bounds):
            gi = int(heard.gateway[chunk[0]])
            self.gateways[gi].hear(tt[heard.adv[chunk]], rec[chunk])

    def _meet(self, t: float, p: Positions) -> None:
        """Tell each infant bracelet which mother tags are within its proximity range
        (``PROXIMITY_RANGE_M``, 3-D, same floor); only bracelets whose set changed are called.
        A mother tag that does not transmit (silent, flat battery) is not heard. Pairs come
        from two k-d trees (the sim-rate bench has thousands of bracelets and mother tags)."""
        b, m = self._bracelets, self._mothers
        if not len(b) or not len(m):
            return
        alive = np.array([not self.firmware[i].silent and self.firmware[i].battery_pct > 0
                          for i in m.tolist()], dtype=bool)  # fmt: skip
        near: set[tuple[int, int]] = set()
        if alive.any():
            live = np.flatnonzero(alive)
            bt, mt = cKDTree(_meet_xyz(p, b)), cKDTree(_meet_xyz(p, m[live]))
            hits = bt.sparse_distance_matrix(mt, PROXIMITY_RANGE_M, output_type="ndarray")
            hits = hits[hits["v"] < PROXIMITY_RANGE_M]
            near = set(zip(hits["i"].tolist(), live[hits["j"]].tolist(), strict=True))
        changed = sorted({k for k, _ in near ^ self._near})
        self._near = near
        for k in changed:
            fw = self.firmware[int(b[k])]
            assert isinstance(fw, InfantBracelet)
            was = fw.mismatch
            js = sorted(j for kk, j in near if kk == k)
            fw.meet([int(self._mother_serials[j]) for j in js], t)
            self._touched.add(int(b[k]))
            if self.truth is not None and fw.mismatch != was:
                event = "bracelet_mismatch" if fw.mismatch else "bracelet_match"
                who = [self.tag_ids[int(m[j])] for j in js]
                self.truth.event(t, event, tag=self.tag_ids[int(b[k])], near=who)

    def _read_doors(self, t: float, p: Positions, out: StepOutput) -> None:
        if not self.readers:
            return
        transmitting = self.motion.transmits.copy()
        n_tags = len(self.firmware)
        alive = np.array([not fw.silent and fw.battery_pct > 0 for fw in self.firmware])
        transmitting[:n_tags] &= alive
        reads = self.door_readers.step(t, p.xyz[:, :2], p.floor, transmitting)
        for ri, ti, d in zip(reads.reader, reads.tag, reads.distance, strict=True):
            reader = self.readers[int(ri)]
            fw = self.firmware[int(ti)]
            rec = np.zeros(1, dtype=RECORD_DTYPE)
            rec["address"][0] = self._addresses[int(ti)]
            rec["rssi"][0] = int(np.clip(round(-45 - 20 * np.log10(max(float(d), 0.1))), -127, 0))
            rec["body"][0] = np.frombuffer(encode_body(fw.advertisement()), dtype=BODY_DTYPE)[0]
            for msg in door_reads(reader.id, reader.door, self.epoch + t, rec):
                out.messages.append(Routed(reader.id, msg, 0))
            if self.truth is not None:
                self.truth.event(t, "door_read", reader=reader.id, door=reader.door,
                                 tag=self.tag_ids[int(ti)])  # fmt: skip

    # -- scenario events ----------------------------------------------------------------------
    def _refresh_due(self) -> None:
        """State changes schedule bursts: re-read the next transmission of touched tags."""
        for i in self._touched:
            self._next_due[i] = self.firmware[i].next_due
        self._touched.clear()

    def _apply(self, ev: Event, out: StepOutput) -> None:
        t = ev.at_s
        for name in (ev.tag, ev.who):
            if name is not None and name in self._tag_row:
                self._touched.add(self._tag_row[name])
        if self.truth is not None:
            self.truth.scenario_event(t, ev)
        a = ev.action
        if a in ("walk", "place", "path", "carry", "put_down"):
            self.ward.move(ev, t)
        elif a in POSTURES:
            self._posture(ev, t)
        elif a in ("sos", "pull_cord", "cancel"):
            badge = self._badge(ev.who)
            {"sos": badge.press_sos, "pull_cord": badge.pull_cord, "cancel": badge.press_cancel}[a](
                t
            )
        elif a in ("tamper", "strap_restore", "skin_contact"):
            fw = self._fw_by_id[str(ev.tag)]
            assert isinstance(fw, Wristband)
            if a == "tamper":
                fw.cut_strap(t)
            elif a == "strap_restore":
                fw.restore_strap(t)
            else:
                fw.set_skin_contact(t, bool(ev.value))
        elif a == "battery":
            self._fw_by_id[str(ev.tag)].set_battery(t, float(ev.percent or 0))
        elif a in ("tag_silent", "tag_resume"):
            self._fw_by_id[str(ev.tag)].set_silent(a == "tag_silent", t)
        elif a == "gateway_power":
            self._power_gateway(self._gw_index[str(ev.gateway)], bool(ev.value), out, t)
        elif a == "gateway_reboot":
            gi = self._gw_index[str(ev.gateway)]
            self._power_gateway(gi, False, out, t)
            self._reboots.append((t + float(ev.duration_s or 0), gi))
            self._reboots.sort()
        elif a in ATTACKS and self.attacker is not None:
            device, victim = self._actor_row[str(ev.who)], self._tag_row[str(ev.tag)]
            every = self.firmware[victim].interval_s
            if a == "replay":
                self.attacker.replay(t, device, victim, ev.duration_s or 30.0, every)
            else:
                self.attacker.clone(t, device, victim, ev.duration_s or 30.0, every,
                                    signed=ev.value is not False)  # fmt: skip
        elif a == "reader_power":
            ri = self._reader_index[str(ev.reader)]
            self.door_readers.set_up(ri, bool(ev.value))
            out.power.append(PowerChange(self.readers[ri].id, bool(ev.value)))

    def downlink(self, tag: str, command: str, t: float, *, mother: int | None = None) -> bool:
        """A downlink from the engine reaches ``tag`` (relayed by the gateways, docs/mqtt.md):
        ``confirm`` (the console received the alarm; the badge may stop its local alarm) or
        ``reset`` (the alarm was resolved) for a staff badge; ``pair`` for an infant bracelet,
        with ``mother`` the paired mother tag's serial (0: not paired). Returns False for an
        unknown tag, a command the tag does not take, or a ``pair`` without a valid serial;
        the change goes out with the tag's next transmission (a burst)."""
        fw = self._fw_by_id.get(tag)
        if command == "pair":
            if not isinstance(fw, InfantBracelet) or not _serial_ok(mother):
                return False
            assert mother is not None
            fw.pair(mother, t)
        elif isinstance(fw, StaffBadge) and command in ("confirm", "reset"):
            (fw.confirm if command == "confirm" else fw.reset)(t)
        else:
            return False  # only badges have a local alarm to stop
        self._touched.add(self._tag_row[tag])
        self._refresh_due()
        return True

    def provision(self, tag: str, key: bytes) -> None:
        """The nurse station's NFC writer gives ``tag`` its key (docs/tag-auth.md)."""
        self._fw_by_id[tag].provision(key)
        self._touched.add(self._tag_row[tag])

    def _power_gateway(self, gi: int, up: bool, out: StepOutput, t: float) -> None:
        gw = self.gateways[gi]
        if gw.up == up:
            return
        gw.power(t, up)
        self.radio.set_gateway_up(np.array([gi]), up)
        out.power.append(PowerChange(gw.id, up))

    def _badge(self, who: str | None) -> StaffBadge:
        fw = self._fw_by_id[str(who)]
        assert isinstance(fw, StaffBadge)
        return fw

    def _posture(self, ev: Event, t: float) -> None:
        who = str(ev.who)
        feed = self._feeds.get(who)
        start = feed.trace.end_pose if feed is not None else None
        segments, continuation = POSTURES[ev.action]
        if ev.action == "fall":
            kind = ev.kind or "forward"
            segments = (
                ((f"fall_{kind}", 20.0),)
                if kind != "recover"
                else (
                    ("fall_recover", 12.0),
                    ("walking", 15.0),
                )
            )
            continuation = None if kind == "recover" else continuation
        trace: Trace | None = None
        t0 = t
        for name, dur in segments:
            part = synthesize(name, self._rng_accel, rate_hz=ACCEL_RATE_HZ, duration_s=dur,
                              t0=t0, start=start)  # fmt: skip
            trace = part if trace is None else trace.concat(part)
            t0, start = part.end_t, part.end_pose
        assert trace is not None
        self._feeds[who] = _Feed(trace, continuation, t)
        lying = ev.action in ("fall", "lie_down") and continuation is not None
        self.ward.hold(who, t, z=LYING_Z if lying else BADGE_Z)

    def _feed_badges(self, t: float) -> None:
        for who, feed in list(self._feeds.items()):
            badge = self._badge(who)
            tr = feed.trace
            while tr.t[-1] < t and feed.continuation is not None:
                nxt = synthesize(
                    feed.continuation, self._rng_accel, rate_hz=ACCEL_RATE_HZ,
                    duration_s=ACCEL_CHUNK_S, t0=tr.end_t,
                    start=tr.end_pose,
                )  # fmt: skip
                tr = _tail(tr, feed.fed_until).concat(nxt)
            feed.trace = tr
            sel = (tr.t > feed.fed_until) & (tr.t <= t)
            if sel.any():
                self._touched.add(self._tag_row[who])
                seen = len(badge.events)
                badge.feed_accelerometer(tr.t[sel], tr.acc[sel])
                feed.fed_until = float(tr.t[sel][-1])
                if self.truth is not None:
                    for e in badge.events[seen:]:
                        self.truth.event(e.t, f"badge_{e.event}", who=who, cause=e.cause)
            if feed.continuation is None and feed.fed_until >= tr.t[-1]:
                del self._feeds[who]


def _meet_xyz(p: Positions, rows: NDArray[np.intp]) -> NDArray[np.float64]:
    """(K, 3) positions for the proximity search: floors set far apart (never in range)."""
    xyz: NDArray[np.float64] = np.array(p.xyz[rows], dtype=np.float64)
    xyz[:, 2] += p.floor[rows] * FLOOR_APART_M
    return xyz


def _serial_ok(serial: object) -> bool:
    return isinstance(serial, int) and not isinstance(serial, bool) and 0 <= serial <= 0xFFFF_FFFF


def _tail(tr: Trace, after: float) -> Trace:
    """The part of ``tr`` after ``after`` (keeps its end pose), or its last sample."""
    keep = tr.t > after
    if not keep.any():
        keep[-1] = True
    return Trace(tr.t[keep], tr.acc[keep], end_t=tr.end_t, end_pose=tr.end_pose)


def _observation_count(msg: Message, gw: SimGateway) -> int:
    if gw.format.name == "native":
        return int.from_bytes(msg.payload[20:22], "little") if msg.topic.endswith("/obs") else 0
    return 1 if "/BTtoMQTT/" in msg.topic or msg.topic.startswith("espresense/devices/") else 0
