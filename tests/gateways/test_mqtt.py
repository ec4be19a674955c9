"""Tests of gateways.mqtt: message checks and queueing without I/O, the link against Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateways.mqtt import LinkPool, Message, MqttLink, check_message
from rtls.errors import ConfigError, PayloadError, TransportError
from rtls.service.broker import MosquittoBroker, find_mosquitto, free_port
from tests import conftest
from tests.broker import (
    MessageCollector,
    Received,
    unique_client_id,
    wait_until,
)


@dataclass(frozen=True)
class OtherMessage:
    """Another module's message type with the same four fields."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


WAIT = 10.0  # generous bound for anything that should happen within a second or two


class LinkFactory:
    """Makes links with short test settings and cuts them all at teardown."""

    def __init__(self) -> None:
        self.made: list[MqttLink] = []

    def __call__(self, port: int, name: str = "gw", **kwargs: Any) -> MqttLink:
        client_id = unique_client_id(name)
        status = f"test/{client_id}/status"
        settings: dict[str, Any] = {
            "will": Message(status, b"offline", qos=1, retain=True),
            "online": Message(status, b"online", qos=1, retain=True),
            "keepalive": 5,
            "reconnect_min_delay": 1,
            "reconnect_max_delay": 1,
        }
        settings.update(kwargs)
        link = MqttLink(client_id, "127.0.0.1", port, **settings)
        self.made.append(link)
        return link


@pytest.fixture
def make_link() -> Iterator[LinkFactory]:
    factory = LinkFactory()
    yield factory
    for link in factory.made:
        link.stop(graceful=False)


def base_of(link: MqttLink) -> str:
    return f"test/{link.client_id}"


def status_of(link: MqttLink) -> str:
    return f"{base_of(link)}/status"


# -- pure: no broker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (OtherMessage("", b"x"), "topic"),
        (OtherMessage("a/+/b", b"x"), "topic"),
        (OtherMessage("a/#", b"x"), "topic"),
        (OtherMessage("a/\x00", b"x"), "topic"),
        (OtherMessage("a/b", "text"), "payload"),  # type: ignore[arg-type]
        (OtherMessage("a/b", b"x", qos=3), "qos"),
        (OtherMessage("a/b", b"x", qos=True), "qos"),
        (OtherMessage("a/b", b"x", retain=1), "retain"),  # type: ignore[arg-type]
    ],
)
def test_check_message_rejects_what_mqtt_cannot_carry(msg: OtherMessage, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        check_message(msg)
    assert info.value.reason == reason


def test_check_message_accepts_valid_messages() -> None:
    for qos in (0, 1, 2):
        check_message(Message("rtls/gw/1/status", b"", qos=qos, retain=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": ""},
        {"host": ""},
        {"port": 0},
        {"port": 70000},
        {"keepalive": -1},
        {"queue_size": 0},
        {"reconnect_min_delay": 0},
        {"reconnect_min_delay": 5, "reconnect_max_delay": 2},
        {"password": "secret"},
    ],
)
def test_link_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "client_id": "gw-1",
        "host": "127.0.0.1",
        "port": 1883,
        "will": None,
        "online": None,
    }
    args.update(kwargs)
    with pytest.raises(ConfigError):
        MqttLink(**args)


def test_link_rejects_an_invalid_will() -> None:
    with pytest.raises(PayloadError, match="wildcards"):
        MqttLink("gw-1", "127.0.0.1", 1883, will=OtherMessage("gw/#", b"offline"), online=None)


def test_publish_while_not_connected_drops_qos0_and_queues_qos1_newest_kept() -> None:
    link = MqttLink("gw-q", "127.0.0.1", 1883, will=None, online=None, queue_size=3)
    assert not link.publish(Message("t/a", b"0", qos=0))
    assert not link.publish(Message("t/a", b"0", qos=0))
    assert all(link.publish(Message("t/b", bytes([i]), qos=1)) for i in range(5))
    stats = link.stats()
    assert not stats.connected
    assert stats.dropped_disconnected == 2
    assert stats.queued == 3
    assert stats.dropped_queue_full == 2
    assert stats.published == 0


def test_link_accepts_any_message_with_the_four_fields() -> None:
    link = MqttLink("gw-o", "127.0.0.1", 1883, will=OtherMessage("s", b"off", 1, True), online=None)
    assert link.publish(OtherMessage("t", b"x", qos=1))
    assert link.stats().queued == 1
    with pytest.raises(PayloadError):
        link.publish(OtherMessage("t/#", b"x"))


def test_publish_rejects_an_invalid_message_even_when_disconnected() -> None:
    link = MqttLink("gw-x", "127.0.0.1", 1883, will=None, online=None)
    with pytest.raises(PayloadError):
        link.publish(OtherMessage("t/+", b"x", qos=1))
    assert link.stats().queued == 0


def test_stop_before_start_is_a_no_op() -> None:
    link = MqttLink("gw-s", "127.0.0.1", 1883, will=None, online=None)
    link.publish(Message("t", b"x", qos=1))
    link.stop()
    link.stop(graceful=False)
    assert link.stats().queued == 1
    assert not link.started


def test_start_twice_raises_and_stop_while_retrying_returns(make_link: LinkFactory) -> None:
    link = make_link(free_port())  # nothing listens there: the link keeps retrying
    link.start()
    with pytest.raises(TransportError, match="already started"):
        link.start()
    link.publish(Message("t", b"x", qos=1))
    link.stop()
    assert not link.started
    stats = link.stats()
    assert not stats.connected
    assert stats.queued == 0
    assert stats.dropped_disconnected == 1  # the queued message went down with the link


def test_pool_rejects_duplicate_client_ids_and_unknown_lookups() -> None:
    a = MqttLink("gw-a", "127.0.0.1", 1883, will=None, online=None)
    pool = LinkPool([a])
    with pytest.raises(ConfigError, match="duplicate"):
        pool.add(MqttLink("gw-a", "127.0.0.1", 1884, will=None, online=None))
    with pytest.raises(ConfigError, match="gw-b"):
        pool["gw-b"]
    assert pool["gw-a"] is a
    assert len(pool) == 1


def test_pool_stats_sum_the_links() -> None:
    links = [MqttLink(f"gw-{i}", "127.0.0.1", 1883, None, None, queue_size=2) for i in range(3)]
    for n, link in enumerate(links):
        for _ in range(n + 1):
            link.publish(Message("t", b"q", qos=1))
            link.publish(Message("t", b"z", qos=0))
    stats = LinkPool(links).stats()
    per_link = [link.stats() for link in links]
    assert stats.links == 3
    assert stats.connected == 0
    assert stats.queued == sum(s.queued for s in per_link) == 1 + 2 + 2
    assert stats.dropped_queue_full == 1
    assert stats.dropped_disconnected == 1 + 2 + 3


# -- against a real broker ---------------------------------------------------------------------


def test_online_status_is_retained_on_connect(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    link = make_link(mosquitto.port)
    link.start()
    assert link.wait_connected(WAIT), link.stats().last_error
    # A subscriber that comes later still learns the status: it is retained.
    with MessageCollector(mosquitto.port, [status_of(link)]) as late:
        status = late.wait_for_topic(status_of(link), b"online")
    assert status.retain
    assert status.qos == 1
    assert link.stats().reconnects == 0


def test_messages_arrive_with_their_qos_and_retain(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    link = make_link(mosquitto.port)
    base = base_of(link)
    sent = [
        Message(f"{base}/batch", b"\x01\x02", qos=0, retain=False),
        Message(f"{base}/batch", b"\x03", qos=1, retain=False),
        Message(f"{base}/config", b"{}", qos=1, retain=True),
    ]
    with MessageCollector(mosquitto.port, [f"{base}/batch", f"{base}/config"]) as sub:
        link.start()
        assert link.wait_connected(WAIT)
        assert all(link.publish(m) for m in sent)
        for m in sent:
            got = sub.wait_for_topic(m.topic, m.payload)
            assert got == Received(m.topic, m.payload, m.retain, m.qos)
    stats = link.stats()
    assert stats.published == len(sent)
    assert stats.dropped_disconnected == stats.dropped_queue_full == 0


def test_power_loss_delivers_the_last_will_and_power_back_announces_online(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    link = make_link(mosquitto.port)
    status = status_of(link)
    with MessageCollector(mosquitto.port, [status]) as sub:
        link.start()
        sub.wait_for_topic(status, b"online")
        link.stop(graceful=False)
        will = sub.wait_for_topic(status, b"offline")
        assert will.retain
        assert not link.connected

        sub.clear()
        link.start()  # the power comes back
        assert link.wait_connected(WAIT)
        assert sub.wait_for_topic(status, b"online").retain
    assert link.stats().reconnects == 0  # a new start is a first connection, not a reconnect


def test_graceful_stop_publishes_offline_instead_of_the_will(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    status = f"test/{unique_client_id('graceful')}/status"
    link = make_link(
        mosquitto.port,
        will=Message(status, b"lost", qos=1, retain=True),
        online=Message(status, b"online", qos=1, retain=True),
        offline=Message(status, b"offline", qos=1, retain=True),
    )
    probe = make_link(mosquitto.port, "probe")
    marker = f"{base_of(probe)}/marker"
    with MessageCollector(mosquitto.port, [status, marker]) as sub:
        link.start()
        probe.start()
        assert link.wait_connected(WAIT)
        assert probe.wait_connected(WAIT)
        link.stop(graceful=True)
        assert not link.started
        assert sub.wait_for_topic(status, b"offline").retain
        # The broker read the DISCONNECT before the link's socket closed, i.e. before stop()
        # returned; a will would have been published then, before this marker.
        assert probe.publish(Message(marker, b"after", qos=1))
        sub.wait_for_topic(marker)
        assert sub.matching(lambda m: m.payload == b"lost") == []


def test_offline_defaults_to_the_will(mosquitto: MosquittoBroker, make_link: LinkFactory) -> None:
    link = make_link(mosquitto.port)
    with MessageCollector(mosquitto.port, [status_of(link)]) as sub:
        link.start()
        sub.wait_for_topic(status_of(link), b"online")
        link.stop()
        assert sub.wait_for_topic(status_of(link), b"offline").retain


def test_full_queue_sends_the_newest_in_order_after_connecting(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    link = make_link(mosquitto.port, queue_size=3)
    topic = f"{base_of(link)}/batch"
    for i in range(1, 6):  # before start(): not connected, so queued; 1 and 2 are pushed out
        assert link.publish(Message(topic, b"%d" % i, qos=1))
    with MessageCollector(mosquitto.port, [topic]) as sub:
        link.start()
        sub.wait_for_topic(topic, b"5")
        assert [m.payload for m in sub.messages] == [b"3", b"4", b"5"]
    stats = link.stats()
    assert stats.dropped_queue_full == 2
    assert stats.published == 3
    assert stats.queued == 0


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_broker_restart_reconnects_and_resends(
    fresh_mosquitto: MosquittoBroker, make_link: LinkFactory, outage: str
) -> None:
    broker = fresh_mosquitto
    link = make_link(broker.port, queue_size=10)
    base = base_of(link)
    link.start()
    assert link.wait_connected(WAIT)

    if outage == "stop":
        broker.stop()
    else:
        broker.kill()  # a crash: SIGKILL, no clean shutdown
    assert wait_until(lambda: not link.connected, WAIT)
    # The simulator keeps running: publishing neither raises nor blocks.
    for i in (1, 2, 3):
        assert link.publish(Message(f"{base}/q/{i}", b"q%d" % i, qos=1, retain=True))
    for i in (1, 2):
        assert not link.publish(Message(f"{base}/z/{i}", b"z%d" % i, qos=0, retain=True))
    during = link.stats()
    assert during.dropped_disconnected == 2
    assert during.queued == 3

    port = broker.port
    broker.start()  # same port; persistence is off, so no retained status survived
    assert broker.port == port
    assert link.wait_connected(WAIT), link.stats().last_error
    # Queued messages were retained, so a subscriber arriving now sees them whatever the race.
    with MessageCollector(broker.port, [f"{base}/#"]) as sub:
        assert sub.wait_for_topic(status_of(link), b"online").retain
        for i in (1, 2, 3):
            got = sub.wait_for_topic(f"{base}/q/{i}")
            assert (got.payload, got.qos, got.retain) == (b"q%d" % i, 1, True)
        assert link.publish(Message(f"{base}/live", b"again", qos=1))
        sub.wait_for_topic(f"{base}/live", b"again")
        assert sub.matching(lambda m: "/z/" in m.topic) == []
    after = link.stats()
    assert after.reconnects == 1
    assert after.queued == 0
    assert after.published == 4
    assert after.dropped_disconnected == 2


def test_link_started_without_a_broker_keeps_retrying_until_one_starts(
    fresh_mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    broker = fresh_mosquitto
    broker.stop()
    link = make_link(broker.port)
    link.start()
    assert wait_until(lambda: link.stats().connect_failures >= 2, WAIT)
    assert not link.connected
    broker.start()
    assert link.wait_connected(WAIT), link.stats().last_error
    with MessageCollector(broker.port, [status_of(link)]) as sub:
        assert sub.wait_for_topic(status_of(link), b"online").retain
    stats = link.stats()
    assert stats.reconnects == 0
    assert stats.last_error is None


def test_pool_starts_counts_and_stops_all_links(
    mosquitto: MosquittoBroker, make_link: LinkFactory
) -> None:
    links = [make_link(mosquitto.port, f"pool{i}") for i in range(3)]
    pool = LinkPool(links)
    statuses = [status_of(link) for link in links]
    with MessageCollector(mosquitto.port, statuses) as sub:
        pool.start_all()
        assert pool.wait_connected(WAIT)
        for link in links:
            assert link.publish(Message(f"{base_of(link)}/x", b"1", qos=1))
        stats = pool.stats()
        assert (stats.links, stats.connected, stats.published) == (3, 3, 3)
        pool.stop_all()
        for topic in statuses:
            sub.wait_for_topic(topic, b"offline")
    assert pool.stats().connected == 0


# -- the broker fixture's skipping rule (tests/conftest.py) ------------------------------------


def test_missing_mosquitto_skips_outside_ci_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conftest, "find_mosquitto", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Debian package 'mosquitto' \(apt-get"):
        conftest.require_mosquitto()


def test_missing_mosquitto_fails_when_ci_is_true(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "find_mosquitto", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Debian package 'mosquitto'"):
        conftest.require_mosquitto()


def test_find_mosquitto_looks_on_path_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_mosquitto() == str(fake)
