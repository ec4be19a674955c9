"""Test helpers: a real Mosquitto broker on a free port, and a collector of published messages.

Used by the fixtures in ``tests/conftest.py``; see ``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, NamedTuple, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from rtls.errors import TransportError
from rtls.service.broker import HOST

_ids = itertools.count(1)


def unique_client_id(prefix: str) -> str:
    """A client id unique within this test run (two clients with one id kick each other off)."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)


class Received(NamedTuple):
    """One message as a subscriber got it (retain as published: MQTT 5 subscribe option)."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


class MessageCollector:
    """A paho 2.x subscriber that records every message on ``topics`` (topic filters).

    Uses MQTT 5 with *retain as published* and QoS 2 subscriptions, so ``retain`` and ``qos``
    are those the publisher used (retained messages replayed on subscribe have retain=True).
    `start` returns once the broker has acknowledged the subscriptions; after a broker restart
    the collector reconnects and subscribes again by itself. Thread-safe.
    """

    def __init__(
        self,
        port: int,
        topics: Iterable[str],
        host: str = HOST,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        if not self.topics:
            raise ValueError("a MessageCollector needs at least one topic filter")
        self.client_id = client_id or unique_client_id("collector")
        self._messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.reconnect_delay_set(1, 1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raise `TransportError` if not subscribed within ``timeout``."""
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TransportError(
                f"collector {self.client_id} not subscribed on {self.host}:{self.port} "
                f"within {timeout} s"
            )

    def close(self) -> None:
        self._client.disconnect()
        # AttributeError: the loop ended on its own meanwhile (see gateways.mqtt._end_loop).
        with contextlib.suppress(AttributeError):
            self._client.loop_stop()

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        options = SubscribeOptions(qos=2, retainAsPublished=True)
        client.subscribe([(topic, options) for topic in self.topics])

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if not any(rc.is_failure for rc in reason_codes):
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos))
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    @property
    def messages(self) -> list[Received]:
        """A copy of everything received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        """The received messages that satisfy ``predicate``, in arrival order."""
        return [m for m in self.messages if predicate(m)]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        """The first message (already received or arriving within ``timeout`` s) that satisfies
        ``predicate``; AssertionError listing what did arrive if none does."""

        def first() -> Received | None:
            return next((m for m in self._messages if predicate(m)), None)

        with self._cond:
            found = self._cond.wait_for(first, timeout)
            if found is None:
                got = "\n  ".join(repr(m) for m in self._messages[-20:]) or "(nothing)"
                raise AssertionError(
                    f"no matching message within {timeout} s on {self.topics}; got:\n  {got}"
                )
            return found

    def wait_for_topic(
        self, topic: str, payload: bytes | None = None, timeout: float = 10.0
    ) -> Received:
        """Shorthand: the first message on exactly ``topic`` (and with ``payload``, if given)."""
        return self.wait_for(
            lambda m: m.topic == topic and (payload is None or m.payload == payload), timeout
        )
