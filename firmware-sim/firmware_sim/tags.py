"""Tag firmware models: infant bracelet, mother tag, staff badge, reference tag.

Each model is a pure state machine stepped by time: call :meth:`TagFirmware.due` with the
current time to get the advertisements sent since the last call. A state change (strap cut,
SOS, man-down pre-alarm, low battery, ...) increments the sequence counter, is sent at once and
then repeated ``burst_repeats`` times ``burst_interval_s`` apart with the same sequence number
and ``BURST_REPEAT`` set, so that one lost packet cannot hide it (docs/advertisement.md). The
heartbeat resumes ``interval_s`` after the last repeat: no heartbeat falls inside a burst.

A state change at time ``now`` first sends, with the old state, every frame due before ``now``;
a change dated before the last :meth:`~TagFirmware.due` call takes effect at that call's time
(a tag cannot transmit in the past).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from firmware_sim.mandown import Event as ManDownEvent
from firmware_sim.mandown import ManDownConfig, ManDownDetector
from rtls.advertisement import Advertisement, Status, Status2, encode_body
from rtls.advertisement import TagKind as AdvKind
from rtls.errors import RtlsError
from rtls.tagauth import Signer

# Bluetooth Core Spec vol 6 part B 4.4.2.2.1: each advertising event is delayed by a
# pseudo-random advDelay of 0-10 ms so that colliding advertisers drift apart.
ADV_DELAY_MAX_S = 0.010
# A coin cell tag lasts about two years at a 2 s interval: 1 % per ~300,000 advertisements.
BATTERY_PCT_PER_ADV = 1.0 / 300_000.0
# Short-range proximity of the infant bracelet to mother tags (mismatch check): a mother
# holding the baby, not one standing at the cot (docs/advertisement.md, MISMATCH).
PROXIMITY_RANGE_M = 0.5
_SEQ = struct.Struct("<H")  # body bytes 5-6 (docs/advertisement.md)
# Alarm flags of a staff badge: what the console confirms and a reset clears.
_BADGE_ALARMS = (
    Status.SOS | Status.PULL_CORD | Status.PRE_ALARM | Status.MAN_DOWN
    | Status.NO_MOVEMENT | Status.FALL
)  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """One advertisement on air: time, sender serial, 20-byte body, measured power at 1 m."""

    t: float
    serial: int
    body: bytes
    tx_power: float


class TagFirmware:
    """Heartbeat, sequence counter, bursts on state change, battery. Base of every tag model.

    ``rng`` draws the initial sequence number, the phase of the first heartbeat (uniform in
    ``[start_t, start_t + interval_s)``) and the advDelay added to every heartbeat interval.
    """

    kind: ClassVar[AdvKind] = AdvKind.REFERENCE
    initial_status: ClassVar[Status] = Status.NONE

    def __init__(
        self,
        serial: int,
        *,
        interval_s: float,
        tx_power: float = -59.0,
        rng: np.random.Generator,
        start_t: float = 0.0,
        battery_pct: float = 100.0,
        low_battery_pct: int = 20,
        burst_repeats: int = 3,
        burst_interval_s: float = 0.1,
    ) -> None:
        for ok, what in (
            (0.1 <= interval_s <= 25.5, f"advertising interval {interval_s} s is not in 0.1-25.5"),
            (0.0 <= battery_pct <= 100.0, f"battery {battery_pct} % is not in 0-100"),
            (0 <= low_battery_pct <= 100, f"low_battery_pct {low_battery_pct} is not in 0-100"),
            (burst_repeats >= 0, f"burst_repeats {burst_repeats} is negative"),
            (burst_interval_s > 0.0, f"burst_interval_s {burst_interval_s} is not positive"),
        ):  # fmt: skip
            if not ok:
                raise RtlsError(f"tag {serial}: {what}")
        self.serial = serial
        self.interval_s = interval_s
        self.tx_power = tx_power
        self.rng = rng
        self.battery_pct = float(battery_pct)
        self.low_battery_pct = low_battery_pct
        self.burst_repeats = burst_repeats
        self.burst_interval_s = burst_interval_s
        self.status = self.initial_status
        self.status2 = Status2.NONE
        if self.battery_pct < low_battery_pct:
            self.status2 |= Status2.LOW_BATTERY
        self.seq = int(rng.integers(0, 0x10000))
        self.epoch = 0  # high 16 bits of the 32-bit counter (kept in flash on a real tag)
        self.signer: Signer | None = None  # the key, once provisioned (docs/tag-auth.md)
        self.silent = False
        # first heartbeat at a random phase so tags do not all transmit together
        self._next_heartbeat = start_t + float(rng.uniform(0.0, interval_s))
        self._repeats: list[float] = []  # times of the burst repeats still to send
        self._pending: list[Frame] = []  # sent, not yet returned by due()
        self._clock = start_t  # every frame up to here has been sent
        self._delays: list[float] = []
        self._body_key: tuple[Status, Status2, bool, int] | None = None
        self._low = False  # battery below the threshold at the last frame
        self._body = bytearray(20)

    # -- state changes ---------------------------------------------------------------------
    def _update(
        self,
        now: float,
        status: Status | None = None,
        status2: Status2 | None = None,
        *,
        force: bool = False,
    ) -> None:
        """Enter a new state at ``now``: new sequence number, sent at once, then the burst.

        Nothing happens when the state does not change, unless ``force`` (a button pressed
        again is sent again).
        """
        status = self.status if status is None else status
        status2 = self.status2 if status2 is None else status2
        if not force and status == self.status and status2 == self.status2:
            return
        now = max(now, self._clock)
        self._advance(now, inclusive=False)  # what was due before goes out with the old state
        self.status, self.status2 = status, status2
        self._start_burst(now)
        self._send(now, repeat=False)

    def set_silent(self, silent: bool, now: float | None = None) -> None:
        """Stop (battery removed, tag destroyed or shielded) or resume transmitting.

        With ``now``, frames due before ``now`` are sent (or not) as before the change; without
        it the change applies to everything the next :meth:`due` returns.
        """
        if now is not None:
            self._advance(max(now, self._clock), inclusive=False)
        self.silent = silent

    def set_battery(self, now: float, percent: float) -> None:
        """Set the battery level (clamped to 0-100); crossing the threshold is a state change."""
        self._advance(max(now, self._clock), inclusive=False)
        self.battery_pct = min(100.0, max(0.0, float(percent)))
        low = self.battery_pct < self.low_battery_pct
        flag = Status2.LOW_BATTERY
        self._update(now, status2=self.status2 | flag if low else self.status2 & ~flag)

    def provision(self, key: bytes) -> None:
        """Receive a key (the nurse station's NFC writer, docs/tag-auth.md): from now on every
        advertisement is signed, and the 32-bit counter restarts at 0 under the new key."""
        self.signer = Signer(key)
        self.seq = self.epoch = 0
        self._body_key = None

    @property
    def counter(self) -> int:
        """The 32-bit counter whose low 16 bits are the advertised sequence number."""
        return (self.epoch << 16) | self.seq

    def _next_seq(self) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        if self.seq == 0:
            self.epoch = (self.epoch + 1) & 0xFFFF

    # -- transmission ------------------------------------------------------------------------
    def advertisement(self, repeat: bool = False) -> Advertisement:
        """The advertisement the tag would send now (``repeat``: as a burst repeat)."""
        status2 = self.status2 | Status2.BURST_REPEAT if repeat else self.status2
        return Advertisement(
            kind=self.kind,
            serial=self.serial,
            seq=self.seq,
            status=self.status,
            status2=status2,
            battery=round(self.battery_pct),
            measured_power=round(self.tx_power),
            interval_ms=round(self.interval_s * 10) * 100,
        )

    @property
    def next_due(self) -> float:
        """Time of the next advertisement :meth:`due` will return (heartbeat or burst frame).

        A silent tag still runs its timers: its next "advertisement" is sent to nobody.
        """
        if self._pending:
            return self._pending[0].t
        return self._repeats[0] if self._repeats else self._next_heartbeat

    def due(self, now: float) -> list[Frame]:
        """Advertisements sent in (last call, now], in time order."""
        self._advance(now, inclusive=True)
        k = bisect.bisect_right(self._pending, now, key=lambda f: f.t)
        frames, self._pending = self._pending[:k], self._pending[k:]
        return frames

    def _advance(self, until: float, *, inclusive: bool) -> None:
        """Send every frame due before ``until`` (or at it, if ``inclusive``) into the pending
        list. A burst's repeats always come before the next heartbeat (see _start_burst)."""
        while True:
            t = self._repeats[0] if self._repeats else self._next_heartbeat
            if t > until or (t == until and not inclusive):
                break
            if self._repeats:
                self._repeats.pop(0)
                self._send(t, repeat=True)
            else:
                self._next_heartbeat = t + self.interval_s + self._adv_delay()
                self._send(t, repeat=False)
        self._clock = max(self._clock, until)

    def _start_burst(self, t: float) -> None:
        """Schedule the repeats of a change sent at ``t``; the heartbeat resumes after them."""
        step, n = self.burst_interval_s, self.burst_repeats
        self._repeats = [t + k * step for k in range(1, n + 1)]
        self._next_heartbeat = t + n * step + self.interval_s + self._adv_delay()

    def _send(self, t: float, *, repeat: bool) -> None:
        """Transmit one frame at ``t``: a heartbeat or a change (new sequence number) or a
        repeat. The battery drains per frame; the frame whose drain crosses the low-battery
        threshold carries the new flag and opens a burst of its own."""
        if not repeat:
            self._next_seq()
        if self.silent or self.battery_pct <= 0.0:
            return
        self.battery_pct = max(0.0, self.battery_pct - BATTERY_PCT_PER_ADV)
        low = self.battery_pct < self.low_battery_pct
        if low != self._low and low != bool(self.status2 & Status2.LOW_BATTERY):
            self.status2 ^= Status2.LOW_BATTERY
            if repeat:
                self._next_seq()
                repeat = False
            self._start_burst(t)
        self._low = low
        self._pending.append(self._frame(t, repeat))

    def _adv_delay(self) -> float:
        """The next advDelay, drawn from the tag's generator in blocks (cheap per frame)."""
        if not self._delays:
            self._delays = self.rng.uniform(0.0, ADV_DELAY_MAX_S, 64).tolist()
        return float(self._delays.pop())

    def _frame(self, t: float, repeat: bool) -> Frame:
        # The body only changes with the state; cache it and patch the sequence number in.
        key = (self.status, self.status2, repeat, round(self.battery_pct))
        if key != self._body_key:
            self._body_key = key
            self._body = bytearray(encode_body(self.advertisement(repeat)))
        _SEQ.pack_into(self._body, 5, self.seq)
        if self.signer is not None:
            self._body[12:] = self.signer.code(self._body, self.counter)
        return Frame(t, self.serial, bytes(self._body), self.tx_power)


class ReferenceTag(TagFirmware):
    """A fixed tag at a surveyed spot, used for calibration and as a coverage check."""

    kind = AdvKind.REFERENCE


class Wristband(TagFirmware):
    """A wristband or bracelet: strap circuit (tamper) and skin-contact sensor (contact at
    start). Base of the infant bracelet and the mother tag."""

    initial_status = Status.SKIN_CONTACT

    def cut_strap(self, now: float) -> None:
        self._update(now, self.status | Status.TAMPER)

    def restore_strap(self, now: float) -> None:
        self._update(now, self.status & ~Status.TAMPER)

    def set_skin_contact(self, now: float, contact: bool) -> None:
        skin = Status.SKIN_CONTACT
        self._update(now, self.status | skin if contact else self.status & ~skin)


class InfantBracelet(Wristband):
    """Infant bracelet: a wristband that also checks the mother tags within its short-range
    proximity (< ~0.5 m) against the mother tag it is paired with.

    The pairing arrives by downlink (:meth:`pair`; serial 0 = not paired). The world reports
    which mother tags are within range (:meth:`meet`); while one of them is not the paired
    mother the bracelet advertises ``Status2.MISMATCH`` (docs/advertisement.md). Setting and
    clearing the flag are state changes (new sequence number, burst). An unpaired bracelet
    has nothing to compare with and never sets it.
    """

    kind = AdvKind.INFANT

    def __init__(self, serial: int, **kw: Any) -> None:
        super().__init__(serial, **kw)
        self.paired_mother = 0  # serial of the paired mother tag; 0: not paired
        self.near: frozenset[int] = frozenset()  # mother tags in range at the last meet()

    @property
    def mismatch(self) -> bool:
        """True while a mother tag other than the paired one is in range (and it is paired)."""
        return self.paired_mother != 0 and any(m != self.paired_mother for m in self.near)

    def pair(self, mother_serial: int, now: float) -> None:
        """Store the paired mother tag's serial (downlink ``pair``); 0 unpairs (discharge)."""
        if isinstance(mother_serial, bool) or not 0 <= int(mother_serial) <= 0xFFFF_FFFF:
            raise RtlsError(f"tag {self.serial}: mother serial {mother_serial!r} is not a u32")
        self.paired_mother = int(mother_serial)
        self._check(now)

    def meet(self, mother_serial: int | Iterable[int] | None, now: float) -> None:
        """The mother tags within proximity range now: one serial, several, or None."""
        if mother_serial is None:
            near: frozenset[int] = frozenset()
        elif isinstance(mother_serial, int):
            near = frozenset((mother_serial,))
        else:
            near = frozenset(int(m) for m in mother_serial)
        self.near = near
        self._check(now)

    def _check(self, now: float) -> None:
        flag = Status2.MISMATCH
        self._update(now, status2=self.status2 | flag if self.mismatch else self.status2 & ~flag)


class MotherTag(Wristband):
    """Mother tag: a wristband like the baby's; the baby's bracelet does the pairing check."""

    kind = AdvKind.MOTHER


class StaffBadge(TagFirmware):
    """Lone-worker badge: SOS button, pull-cord, on-badge man-down / no-movement / fall.

    The wearer cancels a pre-alarm with the button; the console's confirmation arrives by
    downlink (:meth:`confirm`) and lets the badge stop its local alarm (DOMAIN.md).
    """

    kind = AdvKind.STAFF_BADGE
    _MANDOWN_FLAGS: ClassVar[dict[str, Status]] = {
        "fall": Status.FALL,
        "tilt": Status.MAN_DOWN,
        "no_movement": Status.NO_MOVEMENT,
    }

    def __init__(self, serial: int, *, mandown: ManDownConfig | None = None, **kw: Any) -> None:
        super().__init__(serial, **kw)
        self.detector = ManDownDetector(mandown or ManDownConfig())
        self.events: list[ManDownEvent] = []

    def press_sos(self, now: float) -> None:
        """SOS: sent at once, no pre-alarm; pressed again, sent again; awaits confirmation."""
        status2 = self.status2 & ~Status2.CONSOLE_CONFIRMED
        self._update(now, self.status | Status.SOS, status2, force=True)

    def pull_cord(self, now: float) -> None:
        """Pull-cord pulled: like SOS."""
        status2 = self.status2 & ~Status2.CONSOLE_CONFIRMED
        self._update(now, self.status | Status.PULL_CORD, status2, force=True)

    def press_cancel(self, now: float) -> None:
        """The wearer presses the button during a pre-alarm: cancels it (no effect otherwise)."""
        for ev in self.detector.cancel(now):
            self._apply(ev)

    def confirm(self, now: float) -> None:
        """Console confirmation received over the downlink: the local alarm may stop.

        Ignored when no alarm or pre-alarm is active (nothing to confirm).
        """
        if self.status & _BADGE_ALARMS:
            self._update(now, status2=self.status2 | Status2.CONSOLE_CONFIRMED)

    def reset(self, now: float) -> None:
        """Alarm resolved: clear every alarm flag and the confirmed / cancelled marks (downlink
        from the console or on-badge reset); the detector starts monitoring afresh."""
        if self.status & _BADGE_ALARMS:
            self.detector.reset()
        status2 = self.status2 & ~(Status2.CONSOLE_CONFIRMED | Status2.PRE_ALARM_CANCELLED)
        self._update(now, self.status & ~_BADGE_ALARMS, status2)

    def feed_accelerometer(self, t: NDArray[np.float64], acc: NDArray[np.float64]) -> None:
        """Raw accelerometer samples (t (N,) s, acc (N, 3) g) through the on-badge detector."""
        for ev in self.detector.feed(t, acc):
            self._apply(ev)

    def _apply(self, ev: ManDownEvent) -> None:
        self.events.append(ev)
        flag = self._MANDOWN_FLAGS[ev.cause]
        status, status2 = self.status, self.status2
        if ev.event == "pre_alarm":
            status |= Status.PRE_ALARM
            status2 &= ~Status2.PRE_ALARM_CANCELLED
        elif ev.event == "alarm":
            status = (status & ~Status.PRE_ALARM) | flag
            status2 &= ~Status2.CONSOLE_CONFIRMED
        else:  # cancel: by the wearer or because they got up
            status &= ~(Status.PRE_ALARM | flag)
            status2 |= Status2.PRE_ALARM_CANCELLED
        self._update(ev.t, status, status2)


MODELS: dict[str, type[TagFirmware]] = {
    "infant": InfantBracelet,
    "mother": MotherTag,
    "staff": StaffBadge,
    "reference": ReferenceTag,
}
