"""An attacker with a BLE radio: replays captured tag advertisements, or clones a tag's identity.

The world (gateways.world) shows the attacker every frame its victims send (:meth:`capture`: a
sniffer that heard them all, the worst case) and plays the scenario's ``replay`` and ``clone``
actions (docs/scenarios.md) from the position of the actor who carries the device:

- ``replay``: re-broadcast the victim's captured advertisements, oldest first, one every
  victim interval, from wherever the actor is now (another spot, a later time);
- ``clone``: advertise as the victim (its address, serial and last state) with a sequence
  number just ahead of the victim's, signed with a key of the attacker's own (``value`` true,
  the default) or not signed at all (``value`` false).

The engine must reject both and raise ``tag_spoofing`` (docs/tag-auth.md). Pure: no I/O; the
clone's wrong key comes from the world's seeded generator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from firmware_sim.tags import Frame

from rtls.advertisement import BODY_SIZE, SIGNED_SIZE
from rtls.tagauth import KEY_SIZE, Signer

CAPTURE_MAX = 4096  # frames kept per victim


@dataclass(frozen=True)
class AttackFrame:
    """One frame the attacker sends: time, the device's radio row, the victim's tag row (its
    address), the 20-byte body and the transmit power (dBm at 1 m)."""

    t: float
    device: int
    victim: int
    body: bytes
    tx_power: float


@dataclass
class _Play:
    kind: str  # "replay" or "clone"
    device: int
    victim: int
    until: float
    interval_s: float
    next_t: float
    frames: deque[Frame]  # replay: what is left to send
    signer: Signer | None = None  # clone: the attacker's own key (None: unsigned)
    template: bytes = b""
    seq: int = 0


class Attacker:
    """Captures the victims' frames and plays replays and clones (several may run at once)."""

    def __init__(self, victims: set[int], rng: np.random.Generator) -> None:
        self.victims = set(victims)
        self.rng = rng
        self.captured: dict[int, deque[Frame]] = {v: deque(maxlen=CAPTURE_MAX) for v in victims}
        self._plays: list[_Play] = []
        self.sent = 0

    def capture(self, victim: int, frame: Frame) -> None:
        """A frame the victim sent (the world calls this for every victim frame)."""
        buf = self.captured.get(victim)
        if buf is not None:
            buf.append(frame)

    def replay(self, t: float, device: int, victim: int, duration_s: float,
               interval_s: float) -> None:  # fmt: skip
        """Re-broadcast what was captured of ``victim`` before ``t``, for ``duration_s``."""
        frames = deque(f for f in self.captured.get(victim, ()) if f.t < t)
        self._plays.append(_Play("replay", device, victim, t + duration_s, interval_s, t, frames))

    def clone(self, t: float, device: int, victim: int, duration_s: float, interval_s: float,
              *, signed: bool = True) -> None:  # fmt: skip
        """Advertise as ``victim`` for ``duration_s``: its last captured body with a sequence
        number ahead of it, signed with a random key (``signed``) or not at all."""
        last = self.captured.get(victim)
        if not last:
            return  # nothing to copy: the attacker never heard the victim
        body = last[-1].body
        seq = (int.from_bytes(body[5:7], "little") + 1) & 0xFFFF
        signer = Signer(self.rng.bytes(KEY_SIZE)) if signed else None
        self._plays.append(_Play("clone", device, victim, t + duration_s, interval_s, t,
                                 deque(), signer, body, seq))  # fmt: skip

    def due(self, t: float, tx_power: dict[int, float]) -> list[AttackFrame]:
        """Frames sent up to ``t``; ``tx_power`` per victim row (what the victim's body says)."""
        out: list[AttackFrame] = []
        for play in self._plays:
            while play.next_t <= min(t, play.until):
                body = self._next_body(play)
                if body is not None:
                    out.append(AttackFrame(play.next_t, play.device, play.victim, body,
                                           tx_power.get(play.victim, -59.0)))  # fmt: skip
                play.next_t += play.interval_s
        self._plays = [p for p in self._plays if p.next_t <= p.until and (
            p.kind == "clone" or p.frames)]  # fmt: skip
        self.sent += len(out)
        return out

    def _next_body(self, play: _Play) -> bytes | None:
        if play.kind == "replay":
            return play.frames.popleft().body if play.frames else None
        body = bytearray(play.template)
        body[5:7] = play.seq.to_bytes(2, "little")
        body[8] &= ~0x08 & 0xFF  # not a burst repeat
        if play.signer is not None:
            body[SIGNED_SIZE:BODY_SIZE] = play.signer.code(bytes(body), play.seq)
        else:
            body[SIGNED_SIZE:BODY_SIZE] = bytes(BODY_SIZE - SIGNED_SIZE)
        play.seq = (play.seq + 1) & 0xFFFF
        return bytes(body)
