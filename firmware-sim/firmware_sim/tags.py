"""Tag firmware models: infant bracelet, mother tag, staff badge, reference tag.

Each model is a pure state machine stepped by time: call :meth:`TagFirmware.due` with the
current time to get the advertisements sent since the last call. A state change (strap cut,
SOS, man-down pre-alarm, ...) increments the sequence counter and sends a burst of repeats so
that one lost packet cannot hide it (docs/advertisement.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from firmware_sim.mandown import Event as ManDownEvent
from firmware_sim.mandown import ManDownConfig, ManDownDetector
from rtls.advertisement import Advertisement, Status, Status2, encode_body
from rtls.advertisement import TagKind as AdvKind
from rtls.errors import RtlsError

# Bluetooth Core Spec vol 6 part B 4.4.2.2.1: each advertising event is delayed by a
# pseudo-random advDelay of 0-10 ms so that colliding advertisers drift apart.
ADV_DELAY_MAX_S = 0.010
# A coin cell tag lasts about two years at a 2 s interval: 1 % per ~300,000 advertisements.
BATTERY_PCT_PER_ADV = 1.0 / 300_000.0
_SEQ = struct.Struct("<H")  # body bytes 5-6 (docs/advertisement.md)


@dataclass(frozen=True)
class Frame:
    """One advertisement on air: time, sender serial, 20-byte body, measured power at 1 m."""

    t: float
    serial: int
    body: bytes
    tx_power: float


class TagFirmware:
    """Heartbeat, sequence counter, bursts on state change, battery. Base of every tag model."""

    kind: AdvKind = AdvKind.REFERENCE

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
        if not 0.1 <= interval_s <= 25.5:
            raise RtlsError(f"tag {serial}: advertising interval {interval_s} s is not in 0.1-25.5")
        self.serial = serial
        self.interval_s = interval_s
        self.tx_power = tx_power
        self.rng = rng
        self.battery_pct = battery_pct
        self.low_battery_pct = low_battery_pct
        self.burst_repeats = burst_repeats
        self.burst_interval_s = burst_interval_s
        self.status = Status(0)
        self.status2 = Status2(0)
        self.seq = int(rng.integers(0, 0x10000))
        self.silent = False
        # first heartbeat at a random phase so tags do not all transmit together
        self._next_heartbeat = start_t + float(rng.uniform(0.0, interval_s))
        self._burst: list[tuple[float, bool]] = []  # (time, is a repeat)
        self._body_key: tuple[int, int, bool, int] | None = None
        self._delays: list[float] = []
        self._body = bytearray(20)

    # -- state changes ---------------------------------------------------------------------
    def _changed(self, now: float) -> None:
        """A state change: new sequence number now, then ``burst_repeats`` repeats."""
        self.seq = (self.seq + 1) & 0xFFFF
        self._burst = [
            (now + k * self.burst_interval_s, k > 0) for k in range(self.burst_repeats + 1)
        ]

    def set_silent(self, silent: bool) -> None:
        """Stop (battery removed, tag destroyed or shielded) or resume transmitting."""
        self.silent = silent

    def set_battery(self, now: float, percent: float) -> None:
        was_low = bool(self.status2 & Status2.LOW_BATTERY)
        self.battery_pct = min(100.0, max(0.0, float(percent)))
        if (self.battery_pct < self.low_battery_pct) != was_low:
            self.status2 ^= Status2.LOW_BATTERY
            self._changed(now)

    # -- transmission ------------------------------------------------------------------------
    def advertisement(self, repeat: bool = False) -> Advertisement:
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
        """Time of the next advertisement (heartbeat or burst frame)."""
        if self._burst:
            return min(self._burst[0][0], self._next_heartbeat)
        return self._next_heartbeat

    def due(self, now: float) -> list[Frame]:
        """Advertisements sent in (last call, now], in time order."""
        if self.next_due > now:
            return []
        frames: list[Frame] = []
        while self._burst and self._burst[0][0] <= now:
            t, repeat = self._burst.pop(0)
            frames.append(self._frame(t, repeat=repeat))
            # a burst replaces the heartbeat that would fall inside it
            self._next_heartbeat = max(self._next_heartbeat, t + self.interval_s)
        while self._next_heartbeat <= now:
            t = self._next_heartbeat
            self.seq = (self.seq + 1) & 0xFFFF
            frames.append(self._frame(t, repeat=False))
            self._next_heartbeat = t + self.interval_s + self._adv_delay()
        if self.silent or self.battery_pct <= 0.0:
            return []
        if len(frames) > 1:
            frames.sort(key=lambda f: f.t)
        level = self.battery_pct - BATTERY_PCT_PER_ADV * len(frames)
        if (level < self.low_battery_pct) != bool(self.status2 & Status2.LOW_BATTERY):
            self.set_battery(now, level)
        else:
            self.battery_pct = level
        return frames

    def _adv_delay(self) -> float:
        """The next advDelay, drawn from the tag's generator in blocks (cheap per frame)."""
        if not self._delays:
            self._delays = (self.rng.uniform(0.0, ADV_DELAY_MAX_S, 64)).tolist()
        return float(self._delays.pop())

    def _frame(self, t: float, repeat: bool) -> Frame:
        # The body only changes with the state; cache it and patch the sequence number in.
        key = (int(self.status), int(self.status2), repeat, round(self.battery_pct))
        if key != self._body_key:
            self._body_key = key
            self._body = bytearray(encode_body(self.advertisement(repeat)))
        _SEQ.pack_into(self._body, 5, self.seq)
        return Frame(t, self.serial, bytes(self._body), self.tx_power)


class ReferenceTag(TagFirmware):
    """A fixed tag at a surveyed spot, used for calibration and as a coverage check."""

    kind = AdvKind.REFERENCE


class InfantBracelet(TagFirmware):
    """Infant bracelet: strap circuit (tamper) and skin-contact sensor."""

    kind = AdvKind.INFANT

    def __init__(self, serial: int, **kw: object) -> None:
        super().__init__(serial, **kw)  # type: ignore[arg-type]
        self.status |= Status.SKIN_CONTACT

    def cut_strap(self, now: float) -> None:
        if not self.status & Status.TAMPER:
            self.status |= Status.TAMPER
            self._changed(now)

    def restore_strap(self, now: float) -> None:
        if self.status & Status.TAMPER:
            self.status &= ~Status.TAMPER
            self._changed(now)

    def set_skin_contact(self, now: float, contact: bool) -> None:
        if bool(self.status & Status.SKIN_CONTACT) != contact:
            self.status ^= Status.SKIN_CONTACT
            self._changed(now)


class MotherTag(InfantBracelet):
    """Mother tag: a wristband with a strap circuit like the baby's (pairing is done centrally)."""

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

    def __init__(self, serial: int, *, mandown: ManDownConfig | None = None, **kw: object) -> None:
        super().__init__(serial, **kw)  # type: ignore[arg-type]
        self.detector = ManDownDetector(mandown or ManDownConfig())
        self.events: list[ManDownEvent] = []

    def press_sos(self, now: float) -> None:
        self.status |= Status.SOS
        self.status2 &= ~Status2.CONSOLE_CONFIRMED
        self._changed(now)

    def pull_cord(self, now: float) -> None:
        self.status |= Status.PULL_CORD
        self.status2 &= ~Status2.CONSOLE_CONFIRMED
        self._changed(now)

    def press_cancel(self, now: float) -> None:
        """The wearer presses the button during a pre-alarm: cancels it (no effect otherwise)."""
        if self.status & Status.PRE_ALARM:
            for ev in self.detector.cancel(now):
                self._apply(ev)

    def confirm(self, now: float) -> None:
        """Console confirmation received over the downlink: the local alarm may stop."""
        if not self.status2 & Status2.CONSOLE_CONFIRMED:
            self.status2 |= Status2.CONSOLE_CONFIRMED
            self._changed(now)

    def reset(self, now: float) -> None:
        """Alarm resolved: clear every alarm flag (downlink from the console or on-badge reset)."""
        alarm_bits = (
            Status.SOS | Status.PULL_CORD | Status.PRE_ALARM | Status.MAN_DOWN
            | Status.NO_MOVEMENT | Status.FALL
        )  # fmt: skip
        if self.status & alarm_bits:
            self.status &= ~alarm_bits
            self.status2 &= ~(Status2.CONSOLE_CONFIRMED | Status2.PRE_ALARM_CANCELLED)
            self.detector.reset()
            self._changed(now)

    def feed_accelerometer(self, t: NDArray[np.float64], acc: NDArray[np.float64]) -> None:
        """Raw accelerometer samples (t (N,) s, acc (N, 3) g) through the on-badge detector."""
        for ev in self.detector.feed(t, acc):
            self._apply(ev)

    def _apply(self, ev: ManDownEvent) -> None:
        self.events.append(ev)
        flag = self._MANDOWN_FLAGS[ev.cause]
        if ev.event == "pre_alarm":
            self.status |= Status.PRE_ALARM
            self.status2 &= ~Status2.PRE_ALARM_CANCELLED
        elif ev.event == "alarm":
            self.status &= ~Status.PRE_ALARM
            self.status |= flag
            self.status2 &= ~Status2.CONSOLE_CONFIRMED
        else:  # cancel: by the wearer or because they got up
            self.status &= ~(Status.PRE_ALARM | flag)
            self.status2 |= Status2.PRE_ALARM_CANCELLED
        self._changed(ev.t)


MODELS: dict[str, type[TagFirmware]] = {
    "infant": InfantBracelet,
    "mother": MotherTag,
    "staff": StaffBadge,
    "reference": ReferenceTag,
}
