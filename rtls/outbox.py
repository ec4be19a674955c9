"""One console client's outgoing messages: flow control without ever losing an alarm.

Pure data structure (no I/O); :mod:`rtls.service.console` drains it into the WebSocket
(docs/console-api.md, "Flow control").

- **Reliable** messages (alarm transitions, replies, ward updates, snapshots) queue in order up
  to ``limit``. When one more would not fit, the client has stopped reading: the queue is emptied
  and the outbox asks for a **resync** — the sender then sends a fresh snapshot, which carries
  every open alarm, so nothing is silently missed.
- **Latest-only** messages (positions, technical view, heartbeat) keep one slot per kind; a new
  one replaces the one still waiting (a slow client gets the newest positions, not a backlog).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

RESYNC: Final = b"resync"
"""What :meth:`Outbox.pop` returns when the client must be sent a fresh snapshot."""

Latest = Literal["positions", "technical", "heartbeat"]
_ORDER: Final[tuple[Latest, ...]] = ("positions", "technical", "heartbeat")


@dataclass
class Outbox:
    """Messages (serialised and UTF-8 encoded once for all clients) waiting for one client."""

    limit: int = 1000
    reliable: deque[bytes] = field(default_factory=deque)
    latest: dict[Latest, bytes] = field(default_factory=dict)
    resync: bool = False
    resyncs: int = 0

    def push(self, message: bytes) -> bool:
        """Queue a reliable message; False when the queue overflowed (resync requested: the
        queue was emptied, the snapshot replaces it)."""
        if self.resync:
            return False  # the coming snapshot supersedes it
        if len(self.reliable) >= self.limit:
            self.reliable.clear()
            self.latest.pop("positions", None)
            self.resync = True
            self.resyncs += 1
            return False
        self.reliable.append(message)
        return True

    def offer(self, kind: Latest, message: bytes) -> None:
        """Set the newest message of a latest-only ``kind`` (replacing an unsent one)."""
        self.latest[kind] = message

    def pending_positions(self) -> bool:
        return "positions" in self.latest

    def pop(self) -> bytes | None:
        """The next frame to send: :data:`RESYNC`, else reliable messages in order, else the
        latest-only ones (positions first); None when empty."""
        if self.resync:
            self.resync = False
            return RESYNC
        if self.reliable:
            return self.reliable.popleft()
        for kind in _ORDER:
            message = self.latest.pop(kind, None)
            if message is not None:
                return message
        return None

    def __len__(self) -> int:
        return len(self.reliable) + len(self.latest) + int(self.resync)
