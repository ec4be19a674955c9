"""The simulators' MQTT link: one robust publishing connection per simulated device.

Each simulated gateway (and door reader) owns one `MqttLink`, like real hardware owns its MQTT
connection. The link is synchronous for its caller and runs paho-mqtt 2.x's network thread
(``connect_async`` + ``loop_start``) underneath:

- the last will is set before connecting; on every (re)connection the ``online`` status is
  published first, so the retained status is right again after a broker restart;
- paho reconnects forever with bounded exponential backoff (``reconnect_delay_set``);
- `MqttLink.publish` never blocks for long and never raises on a lost connection: while
  disconnected QoS 0 messages are dropped and counted, QoS 1/2 messages wait in a bounded queue
  (oldest dropped and counted when full) and are sent, in order, after the reconnection;
- ``stop(graceful=True)`` announces the offline status then sends DISCONNECT;
  ``stop(graceful=False)`` is a power cut: the TCP connection is torn down without DISCONNECT, so
  the broker publishes the last will (MQTT 3.1.1 §3.1.2.5).

Locking: the link's own lock is a leaf lock. It is never held while calling into paho, so the
caller's thread and paho's network thread (which runs the callbacks) cannot deadlock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateways.formats import Message as Message  # the one message type of the simulators
from rtls.errors import ConfigError, PayloadError, TransportError

__all__ = [
    "LinkPool",
    "LinkStats",
    "Message",
    "MqttLink",
    "PoolStats",
    "Publishable",
    "check_message",
    "tls_context",
]

_LOG = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 268_435_455
"""Largest MQTT payload: the Remaining Length limit (MQTT 3.1.1 §2.2.3), ignoring the header."""

MAX_TOPIC_BYTES = 65_535
"""Largest topic: a UTF-8 string with a 16-bit length prefix (MQTT 3.1.1 §1.5.3)."""


INFLIGHT_WINDOW = 20
"""QoS 1/2 messages sent and not yet acknowledged at any time (paho's default)."""


class Publishable(Protocol):
    """What the link accepts: any message with `Message`'s four fields (read-only is enough),
    e.g. ``gateways.formats.Message``."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A snapshot of one link's counters (counters accumulate over the link's life).

    ``published`` counts messages handed to a connected client (QoS 0 ones can still be lost
    with the TCP connection, as MQTT allows); ``queued`` is the current length of the
    while-disconnected queue; ``reconnects`` counts successful connections after the first one
    of each `MqttLink.start`; ``connect_failures`` counts refused or failed connection attempts.
    """

    connected: bool
    published: int
    dropped_disconnected: int
    dropped_queue_full: int
    reconnects: int
    connect_failures: int
    queued: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """The sum of the counters of a `LinkPool`'s links; ``connected`` counts connected links."""

    links: int
    connected: int
    published: int
    dropped_disconnected: int
    dropped_queue_full: int
    reconnects: int
    connect_failures: int
    queued: int


def check_message(msg: Publishable) -> None:
    """Raise `PayloadError` (reason ``topic``, ``payload``, ``qos`` or ``retain``) if ``msg``
    cannot be published: topics must be non-empty UTF-8 without wildcards or NUL (MQTT 3.1.1
    §4.7.3), payloads bytes, QoS 0, 1 or 2."""
    topic = msg.topic
    if not isinstance(topic, str) or not topic:
        raise PayloadError(f"MQTT topic must be a non-empty str, got {topic!r}", reason="topic")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise PayloadError(
            f"MQTT topic {topic!r} must not contain the wildcards '+', '#' or NUL", reason="topic"
        )
    if len(topic.encode("utf-8", errors="surrogatepass")) > MAX_TOPIC_BYTES:
        raise PayloadError(f"MQTT topic is longer than {MAX_TOPIC_BYTES} bytes", reason="topic")
    if not isinstance(msg.payload, bytes):
        raise PayloadError(
            f"payload for {topic!r} must be bytes, got {type(msg.payload).__name__}",
            reason="payload",
        )
    if len(msg.payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"payload for {topic!r} is larger than {MAX_PAYLOAD_BYTES} bytes", reason="payload"
        )
    if isinstance(msg.qos, bool) or msg.qos not in (0, 1, 2):
        raise PayloadError(f"QoS for {topic!r} must be 0, 1 or 2, got {msg.qos!r}", reason="qos")
    if not isinstance(msg.retain, bool):
        raise PayloadError(f"retain for {topic!r} must be a bool", reason="retain")


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca_file`` (PEM) and checks the broker's host name;
    ConfigError if the file cannot be loaded."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{ca_file}: cannot load the broker's CA certificate: {exc}") from exc


class MqttLink:
    """One device's MQTT publishing connection, reconnecting by itself.

    ``will`` is registered as the last will (the broker publishes it if the link dies without
    DISCONNECT); ``online`` is published on every connection (make it retained); ``offline``,
    which defaults to ``will``, is what a graceful `stop` publishes. ``tls`` is a ready
    `ssl.SSLContext`. Reconnect delays are whole seconds (paho's API): the first retry waits
    ``reconnect_min_delay``, each further one doubles up to ``reconnect_max_delay``.
    ``queue_size`` bounds the while-disconnected queue; paho's own queue of unacknowledged
    QoS 1/2 messages holds at most ``queue_size + INFLIGHT_WINDOW + 2``. Invalid settings
    raise `ConfigError`. Thread-safe.
    """

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        will: Publishable | None,
        online: Publishable | None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 30,
        *,
        offline: Publishable | None = None,
        queue_size: int = 1000,
        reconnect_min_delay: int = 1,
        reconnect_max_delay: int = 30,
        stop_timeout: float = 2.0,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(f"MQTT client id must be a non-empty str, got {client_id!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"MQTT link {client_id!r}: host must be a non-empty str")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"MQTT link {client_id!r}: port must be 1..65535, got {port!r}")
        if not 0 <= keepalive <= 65535:
            raise ConfigError(f"MQTT link {client_id!r}: keepalive must be 0..65535 s")
        if queue_size < 1:
            raise ConfigError(f"MQTT link {client_id!r}: queue_size must be at least 1")
        if not 1 <= reconnect_min_delay <= reconnect_max_delay:
            raise ConfigError(
                f"MQTT link {client_id!r}: reconnect delays must satisfy "
                f"1 <= min ({reconnect_min_delay}) <= max ({reconnect_max_delay})"
            )
        if stop_timeout < 0:
            raise ConfigError(f"MQTT link {client_id!r}: stop_timeout must be >= 0")
        if password is not None and username is None:
            raise ConfigError(f"MQTT link {client_id!r}: a password needs a username")
        for status in (will, online, offline):
            if status is not None:
                check_message(status)
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self._will = will
        self._online = online
        self._offline = offline if offline is not None else will
        self._username = username
        self._password = password
        self._tls = tls
        self._queue_size = queue_size
        self._min_delay = reconnect_min_delay
        self._max_delay = reconnect_max_delay
        self._stop_timeout = stop_timeout

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._client: paho.Client | None = None
        self._cutting: paho.Client | None = None  # the client whose power is being cut
        self._queue: deque[Publishable] = deque()
        self._connected = False
        self._connections = 0  # successful connections since the last start()
        self._published = 0
        self._dropped_disconnected = 0
        self._dropped_queue_full = 0
        self._reconnects = 0
        self._connect_failures = 0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"MqttLink({self.client_id!r}, {self.host!r}, {self.port})"

    @property
    def connected(self) -> bool:
        """True once connected and the queue is flushed; False while (re)connecting."""
        with self._lock:
            return self._connected

    @property
    def started(self) -> bool:
        """True between `start` and `stop`."""
        with self._lock:
            return self._client is not None

    def stats(self) -> LinkStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return LinkStats(
                connected=self._connected,
                published=self._published,
                dropped_disconnected=self._dropped_disconnected,
                dropped_queue_full=self._dropped_queue_full,
                reconnects=self._reconnects,
                connect_failures=self._connect_failures,
                queued=len(self._queue),
                last_error=self._last_error,
            )

    def start(self) -> None:
        """Start connecting in the background and return at once.

        Raises `TransportError` if the link is already started or paho rejects the settings.
        A link may be started again after `stop` (a power cycle); counters carry over.
        """
        with self._lock:
            if self._client is not None:
                raise TransportError(f"MQTT link {self.client_id!r} is already started")
        client = self._make_client()
        with self._lock:
            if self._client is not None:
                raise TransportError(f"MQTT link {self.client_id!r} is already started")
            self._client = client
            self._connections = 0
        try:
            client.connect_async(self.host, self.port, keepalive=self.keepalive)
            rc = client.loop_start()
        except (ValueError, OSError) as exc:
            with self._lock:
                self._client = None
            raise TransportError(
                f"MQTT link {self.client_id!r} cannot start towards {self.host}:{self.port}: {exc}"
            ) from exc
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._client = None
            raise TransportError(
                f"MQTT link {self.client_id!r}: paho refused to start its loop ({rc.name})"
            )

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until connected; return whether it is."""
        with self._changed:
            return self._changed.wait_for(lambda: self._connected, timeout)

    def publish(self, msg: Publishable) -> bool:
        """Publish ``msg``; return True if it was sent or queued for sending, False if dropped.

        Never raises on a lost connection and never blocks for long. While disconnected (or
        not started) QoS 0 messages are dropped (``dropped_disconnected``) and QoS 1/2 ones are
        queued, the oldest being dropped (``dropped_queue_full``) when the queue is full.
        Raises `PayloadError` if ``msg`` itself is invalid.
        """
        check_message(msg)
        with self._lock:
            client = self._client
            if client is None or not self._connected:
                return self._hold(msg)
        return self._hand_over(client, msg)

    def stop(self, graceful: bool = True) -> None:
        """Stop the link; a no-op if it is not started. Messages still queued are dropped.

        ``graceful=True``: publish the offline status (if connected), waiting at most
        ``stop_timeout`` for it, then send DISCONNECT, so the broker discards the will.
        ``graceful=False``: simulate a power cut: the TCP connection is shut down without
        DISCONNECT, so the broker publishes the last will; messages paho still holds are lost.
        Returns at once, or within about a second if paho is waiting to reconnect.
        """
        with self._changed:
            client = self._client
            if client is None:
                return
            was_connected = self._connected
            self._client = None  # from here on, callbacks from this client are ignored
            self._connected = False
            self._dropped_disconnected += len(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        if graceful:
            self._shut_down(client, was_connected)
        else:
            self._cut_power(client)

    # -- inside ------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        try:
            client = paho.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                clean_session=True,
                protocol=MQTTProtocolVersion.MQTTv311,
            )
            # A callback that raised would end paho's network thread: never let it. (paho's own
            # logger is left off: it logs every retry during an outage as an error.)
            client.suppress_exceptions = True
            client.reconnect_delay_set(self._min_delay, self._max_delay)
            client.max_inflight_messages_set(INFLIGHT_WINDOW)
            # paho's queue also holds the in-flight window and the online status being sent
            # when the while-disconnected queue is flushed into it.
            client.max_queued_messages_set(self._queue_size + INFLIGHT_WINDOW + 2)
            if self._username is not None:
                client.username_pw_set(self._username, self._password)
            if self._tls is not None:
                client.tls_set_context(self._tls)
            if self._will is not None:
                w = self._will
                client.will_set(w.topic, w.payload, w.qos, w.retain)
        except (ValueError, TypeError) as exc:
            raise TransportError(f"MQTT link {self.client_id!r}: invalid setting: {exc}") from exc
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        return client

    def _hold(self, msg: Publishable) -> bool:
        """Drop or queue ``msg`` while disconnected. The caller holds the lock."""
        if msg.qos == 0:
            self._dropped_disconnected += 1
            return False
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self._dropped_queue_full += 1
        self._queue.append(msg)
        return True

    def _hand_over(self, client: paho.Client, msg: Publishable) -> bool:
        """Give ``msg`` to paho (without holding the lock) and count the outcome."""
        try:
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        except (ValueError, TypeError) as exc:  # check_message() ran, so this is paho's doing
            raise TransportError(f"paho rejected a message for {msg.topic!r}: {exc}") from exc
        rc = info.rc
        with self._lock:
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._published += 1
                return True
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN and msg.qos > 0:
                # The connection dropped under us: paho keeps QoS>0 messages and resends them
                # after the reconnection.
                self._published += 1
                return True
            if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                self._dropped_queue_full += 1
                return False
            self._dropped_disconnected += 1
            if rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
                self._last_error = f"publish failed: {paho.error_string(rc)}"
            return False

    def _send_status(
        self, client: paho.Client, msg: Publishable | None
    ) -> paho.MQTTMessageInfo | None:
        if msg is None:
            return None
        try:
            return client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        except (ValueError, TypeError) as exc:
            raise TransportError(f"paho rejected the status for {msg.topic!r}: {exc}") from exc

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """paho network thread: announce online, flush the queue in order, then go live."""
        try:
            self._connected_now(client, reason_code)
        except Exception:  # the last line of defence for paho's network thread
            _LOG.exception("MQTT link %s: error while going online", self.client_id)

    def _connected_now(self, client: paho.Client, reason_code: ReasonCode) -> None:
        if reason_code.is_failure:
            with self._lock:
                if client is not self._client:
                    return
                self._connect_failures += 1
                self._last_error = f"broker refused the connection: {reason_code}"
            _LOG.warning(
                "MQTT link %s: broker refused the connection: %s", self.client_id, reason_code
            )
            return
        with self._lock:
            if client is not self._client:
                return
        self._send_status(client, self._online)
        while True:
            with self._changed:
                if client is not self._client:
                    return
                if not self._queue:
                    if self._connections > 0:
                        self._reconnects += 1
                        _LOG.info(
                            "MQTT link %s reconnected to %s:%d",
                            self.client_id,
                            self.host,
                            self.port,
                        )
                    self._connections += 1
                    self._connected = True
                    self._last_error = None
                    self._changed.notify_all()
                    return
                msg = self._queue.popleft()
            self._hand_over(client, msg)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = False
        with self._changed:
            cutting = client is self._cutting
            if client is self._client:
                was_connected = self._connected
                self._connected = False
                if reason_code.is_failure:
                    self._last_error = f"connection lost: {reason_code}"
                self._changed.notify_all()
        if cutting:
            # The loop saw the power cut before disconnect() could mark it wanted: end the loop
            # now rather than after a reconnect delay (called from paho's own thread,
            # loop_stop() only sets the flag and does not join).
            client.loop_stop()
        if was_connected:
            _LOG.info(
                "MQTT link %s lost its connection (%s); retrying", self.client_id, reason_code
            )

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        with self._lock:
            if client is not self._client:
                return
            self._connect_failures += 1
            self._last_error = f"cannot connect to {self.host}:{self.port}"

    def _shut_down(self, client: paho.Client, was_connected: bool) -> None:
        if was_connected:
            info = self._send_status(client, self._offline)
            if info is not None:
                # Raised when the connection is already gone: nothing left to announce.
                with contextlib.suppress(ValueError, RuntimeError):
                    info.wait_for_publish(self._stop_timeout)
        client.disconnect()
        _end_loop(client)

    def _cut_power(self, client: paho.Client) -> None:
        # Shut the socket first, so the DISCONNECT that disconnect() queues can never leave:
        # the broker sees the TCP connection close without DISCONNECT and publishes the will.
        # disconnect() is still needed so paho's loop ends instead of reconnecting.
        with self._lock:
            self._cutting = client
        try:
            _shut_socket(client)
            client.disconnect()
            _end_loop(client)
            # A reconnection racing with the cut may have opened a new socket: cut it too.
            _shut_socket(client)
        finally:
            with self._lock:
                self._cutting = None


def _shut_socket(client: paho.Client) -> None:
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket too: a raw shutdown, no close_notify
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _end_loop(client: paho.Client) -> None:
    # paho's loop_stop() checks its thread reference and then joins it; a loop that ends on
    # its own in between (it just handled our DISCONNECT) clears the reference, which makes
    # loop_stop() fail with AttributeError although there is nothing left to join.
    with contextlib.suppress(AttributeError):
        client.loop_stop()


class LinkPool:
    """Many links (one per simulated device), started, stopped and counted together."""

    def __init__(self, links: Iterable[MqttLink] = ()) -> None:
        self._links: dict[str, MqttLink] = {}
        for link in links:
            self.add(link)

    def add(self, link: MqttLink) -> None:
        """Add ``link``; `ConfigError` if its client id is taken (two clients with one id
        would keep kicking each other off the broker)."""
        if link.client_id in self._links:
            raise ConfigError(f"duplicate MQTT client id {link.client_id!r} in the link pool")
        self._links[link.client_id] = link

    def __len__(self) -> int:
        return len(self._links)

    def __iter__(self) -> Iterator[MqttLink]:
        return iter(list(self._links.values()))

    def __getitem__(self, client_id: str) -> MqttLink:
        try:
            return self._links[client_id]
        except KeyError:
            raise ConfigError(f"no MQTT link with client id {client_id!r}") from None

    def start_all(self) -> None:
        """Start every link not yet started; on failure stop those it started and re-raise."""
        started: list[MqttLink] = []
        try:
            for link in self._links.values():
                if not link.started:
                    link.start()
                    started.append(link)
        except TransportError:
            for link in started:
                link.stop(graceful=False)
            raise

    def stop_all(self, graceful: bool = True) -> None:
        """Stop every link (see `MqttLink.stop`)."""
        for link in self._links.values():
            link.stop(graceful=graceful)

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds in total until every link is connected."""
        deadline = time.monotonic() + timeout
        for link in self._links.values():
            if not link.wait_connected(max(0.0, deadline - time.monotonic())):
                return False
        return all(link.connected for link in self._links.values())

    def stats(self) -> PoolStats:
        """The counters summed over all links."""
        snaps = [link.stats() for link in self._links.values()]
        return PoolStats(
            links=len(snaps),
            connected=sum(s.connected for s in snaps),
            published=sum(s.published for s in snaps),
            dropped_disconnected=sum(s.dropped_disconnected for s in snaps),
            dropped_queue_full=sum(s.dropped_queue_full for s in snaps),
            reconnects=sum(s.reconnects for s in snaps),
            connect_failures=sum(s.connect_failures for s in snaps),
            queued=sum(s.queued for s in snaps),
        )
