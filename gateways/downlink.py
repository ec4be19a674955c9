"""Downlinks to the simulated tags: the engine publishes on ``rtls/v1/downlink/<tag>`` (JSON
``{"command": "confirm" | "reset", ...}`` for a badge, ``{"command": "pair", "mother": <serial>,
...}`` for an infant bracelet; docs/mqtt.md); real gateways relay that to the tag, the
simulator's :class:`DownlinkListener` collects it for :meth:`gateways.world.World.downlink`.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rtls.errors import PayloadError
from rtls.topics import DOWNLINK_FILTER, tag_of_downlink

BADGE_COMMANDS = frozenset({"confirm", "reset"})
COMMANDS = BADGE_COMMANDS | {"pair"}
SERIAL_MAX = 0xFFFF_FFFF


@dataclass(frozen=True)
class DownlinkMessage:
    """One parsed downlink: the tag, the command and, for ``pair``, the serial of the mother
    tag the bracelet is paired with (0: not paired)."""

    tag: str
    command: str
    mother: int | None = None


def parse_downlink(topic: str, payload: bytes) -> DownlinkMessage:
    """The downlink message on ``topic``; PayloadError (``bad_topic``, ``bad_json``,
    ``bad_command``, ``bad_mother``) if it is not a valid one."""
    tag = tag_of_downlink(topic)
    if tag is None:
        raise PayloadError(f"not a downlink topic: {topic!r}", reason="bad_topic")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"downlink to {tag}: not JSON", reason="bad_json") from exc
    command = body.get("command") if isinstance(body, dict) else None
    if command not in COMMANDS:
        raise PayloadError(f"downlink to {tag}: unknown command {command!r}", reason="bad_command")
    if command != "pair":
        return DownlinkMessage(tag, str(command))
    assert isinstance(body, dict)
    mother = body.get("mother")
    if isinstance(mother, bool) or not isinstance(mother, int) or not 0 <= mother <= SERIAL_MAX:
        raise PayloadError(
            f"downlink pair to {tag}: mother {mother!r} is not a tag serial (0-{SERIAL_MAX})",
            reason="bad_mother",
        )
    return DownlinkMessage(tag, "pair", mother)


class DownlinkListener:
    """A background MQTT subscriber to every tag's downlink topic (reconnects by itself)."""

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._inbox: list[DownlinkMessage] = []
        self.rejected = 0
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.reconnect_delay_set(1, 5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def take_messages(self) -> list[DownlinkMessage]:
        """Every downlink received since the last take, in order."""
        with self._lock:
            out, self._inbox = self._inbox, []
        return out

    def take(self) -> list[tuple[str, str]]:
        """(tag id, command) of the badge downlinks (confirm, reset) received since the last
        take; pairings need :meth:`take_messages` (they carry the mother's serial) and are
        dropped here."""
        return [(m.tag, m.command) for m in self.take_messages() if m.command in BADGE_COMMANDS]

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(DOWNLINK_FILTER, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            item = parse_downlink(msg.topic, bytes(msg.payload))
        except PayloadError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            self._inbox.append(item)
