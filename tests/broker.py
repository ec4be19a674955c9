"""Test helpers: a real Mosquitto broker on a free port, and a collector of published messages.

Used by the fixtures in ``tests/conftest.py``; see ``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from rtls.errors import TransportError

MOSQUITTO_MISSING = "needs the Debian package 'mosquitto' (apt-get install mosquitto)"
"""The skip message when no broker binary is found (outside CI only; see docs/testing.md)."""

HOST = "127.0.0.1"
_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
_ids = itertools.count(1)


def find_mosquitto() -> str | None:
    """The path of the ``mosquitto`` binary (PATH first, then the usual sbin dirs), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _SEARCH_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the kernel's choice for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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


class MosquittoBroker:
    """A private Mosquitto on 127.0.0.1 (never the system one on 1883).

    The config, log (``log_path``) and console output live in ``workdir``. `start` may be called
    again after `stop` or `kill`: the broker comes back on the SAME port. Persistence is off, so
    a restart loses retained messages and sessions, as a broker replaced by a fresh one would.
    """

    def __init__(
        self,
        workdir: Path,
        binary: str | None = None,
        port: int | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise TransportError(f"no mosquitto binary: {MOSQUITTO_MISSING}")
        self.binary = found
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.console_path = self.workdir / "mosquitto.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def __repr__(self) -> str:
        return f"MosquittoBroker({self.host}:{self.port}, running={self.running})"

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

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to the 'mosquitto' user, which cannot write our log dir.
            lines.insert(0, f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the broker and wait (bounded) until its port accepts connections.

        The first start retries on another free port if the chosen one was taken meanwhile;
        a restart keeps the port. Raises `TransportError` with the broker's log on failure.
        """
        if self.running:
            raise TransportError(f"{self!r} is already running")
        attempts = 5 if (self._starts == 0 and not self._port_fixed) else 1
        for attempt in range(attempts):
            if attempt > 0:
                self.port = free_port()
            self._write_config()
            if self._launch():
                self._starts += 1
                return
        raise TransportError(
            f"mosquitto did not start on {self.host}:{self.port}:\n{self.diagnostics()}"
        )

    def _launch(self) -> bool:
        with self.console_path.open("ab") as console:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, not to it
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        self.kill()
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait for exit (SIGKILL if it takes longer than ``timeout``)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL (a crash: no clean shutdown) and wait for exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self._proc = None

    def close(self) -> None:
        """Stop the broker; the files stay in ``workdir`` for post-mortems."""
        self.stop()

    def diagnostics(self) -> str:
        """The broker's console output and the tail of its log, for failure messages."""
        parts = []
        for path in (self.console_path, self.log_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-40:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no output)"


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
