"""The site's Mosquitto accounts and ACL (pure): each device may publish exactly what the
simulator's format builders send for it, nothing of another device, never the engine's topics.
The same ACL is checked against a real Mosquitto in test_service_broker_security.py."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest
from paho.mqtt.client import topic_matches_sub

from gateways.formats import (
    FORMATS,
    GatewayHealth,
    door_last_will,
    door_online,
    door_reads,
    omg_observations,
)
from rtls import topics
from rtls.actuators import command_topic, state_topic
from rtls.advertisement import Advertisement, TagKind, encode_body, tag_address
from rtls.batch import make_records
from rtls.broker_config import (
    ACTUATORS_USER,
    ENGINE_USER,
    Access,
    Account,
    BrokerOptions,
    ConfPaths,
    Role,
    acl_text,
    check_username,
    hash_matches,
    mosquitto_conf,
    parse_password_file,
    password_hash,
    password_line,
    site_accounts,
)
from rtls.decode import SUBSCRIPTIONS
from rtls.errors import ConfigError
from rtls.site import EXAMPLE_SITE, GatewayFormat, Site, load_site

SITE = load_site()
T = 1_795_000_000.0
PATHS = ConfPaths("/etc/rtls/passwd", "/etc/rtls/acl", "/etc/rtls/ca.crt",
                  "/etc/rtls/server.crt", "/etc/rtls/server.key")  # fmt: skip
# made by the real `mosquitto_passwd -b file alice secret` (Mosquitto 2.0.11)
MOSQUITTO_LINE = ("alice:$7$101$67JlCJz6Wf28hB6a$5uObzXH+H5Jm8eAF4h6CwVicbfukCB/ZM5O7mhQHxwMdE5bf"
                  "R744SGAJWfU0O/tmshp74ZRV+eleCE5a1mE/bw==")  # fmt: skip


def _records() -> np.ndarray:
    tag = SITE.tags[0]
    body = encode_body(Advertisement(kind=TagKind.INFANT, serial=tag.serial, seq=1))
    address = np.array([list(tag_address(tag.serial))], np.uint8)
    body_arr = np.frombuffer(body, np.uint8).reshape(1, 20)
    return make_records(np.array([0]), address, np.array([-60]), 37, body_arr)


def device_topics() -> dict[str, set[str]]:
    """Every topic the simulator publishes for each device, from its format's builders."""
    recs = _records()
    health = GatewayHealth(uptime_s=5, heard=1, published=1, dropped=0, queue=0)
    out: dict[str, set[str]] = {}
    for gw in SITE.gateways:
        fmt = FORMATS[gw.format.value]
        msgs = [*fmt.observations(gw.id, 1, T, recs), fmt.online(gw.id, T),
                fmt.last_will(gw.id), fmt.health(gw.id, T, health)]  # fmt: skip
        if gw.format is GatewayFormat.OMG:  # HA presence on: a second topic per device
            msgs += omg_observations(gw.id, 1, T, recs, presence=True)
        out[gw.id] = {m.topic for m in msgs}
    for reader in SITE.door_readers:
        msgs = [*door_reads(reader.id, reader.door, T, recs), door_online(reader.id, T),
                door_last_will(reader.id)]  # fmt: skip
        out[reader.id] = {m.topic for m in msgs}
    return out


def may(account: Account, access: Access, topic: str) -> bool:
    """What Mosquitto's acl_file grants: a rule of that access (or readwrite) that matches."""
    return any(
        rule.access in (access, "readwrite") and topic_matches_sub(rule.topic, topic)
        for rule in account.rules
    )


ENGINE_ONLY = [
    topics.alarm_state(12), topics.ALARM_EVENTS, topics.COMMAND,
    topics.COMMAND_REPLY.format(client="console"), topics.downlink("B01"),
    command_topic("door", "D-E1"), command_topic("elevator", "EL1.L1"),
    topics.POSITIONS, topics.STATUS, topics.HEALTH,
]  # fmt: skip


def test_every_device_has_one_account_and_usernames_are_unique() -> None:
    accounts = site_accounts(SITE)
    devices = [a.device for a in accounts if a.device is not None]
    assert devices == [g.id for g in SITE.gateways] + [r.id for r in SITE.door_readers]
    assert len({a.username for a in accounts}) == len(accounts)
    roles = [a.role for a in accounts]
    assert roles.count(Role.ENGINE) == 1 and roles.count(Role.ACTUATORS) == 1
    assert roles.count(Role.GATEWAY) == len(SITE.gateways)
    assert roles.count(Role.DOOR_READER) == len(SITE.door_readers)


def test_a_device_publishes_all_its_own_topics_and_none_of_another() -> None:
    by_device = {a.device: a for a in site_accounts(SITE) if a.device is not None}
    sent = device_topics()
    assert {g.format for g in SITE.gateways} == set(GatewayFormat)  # every format is covered
    for device, account in by_device.items():
        for topic in sent[device]:
            assert may(account, "write", topic), f"{device} may not publish its {topic}"
        for other, others_topics in sent.items():
            if other != device:
                stolen = [t for t in others_topics if may(account, "write", t)]
                assert not stolen, f"{device} may publish {other}'s {stolen}"


def test_no_device_writes_alarms_commands_downlinks_actuators_or_engine_topics() -> None:
    for account in site_accounts(SITE, BrokerOptions(readers=("nursecall",), monitors=("t",))):
        if account.role is Role.ENGINE:
            assert all(may(account, "write", t) for t in ENGINE_ONLY)
            continue
        granted = [t for t in ENGINE_ONLY if may(account, "write", t)]
        assert not granted, f"{account.entry} may publish {granted}"
        assert not may(account, "write", state_topic("door", "D-E1")) or (
            account.role is Role.ACTUATORS
        )


def test_what_each_role_may_read() -> None:
    accounts = site_accounts(SITE, BrokerOptions(readers=("nursecall",), monitors=("tech",)))
    sent = device_topics()
    every_device_topic = set().union(*sent.values())
    for account in accounts:
        reads_downlinks = may(account, "read", topics.downlink("B01"))
        if account.role is Role.GATEWAY:
            assert reads_downlinks  # gateways relay downlinks to the tags
            assert not may(account, "read", topics.alarm_state(1))
        elif account.role is Role.DOOR_READER:
            assert not account.rules or all(r.access == "write" for r in account.rules)
        elif account.role is Role.ENGINE:
            assert all(may(account, "read", t) for t in every_device_topic)
            assert may(account, "read", state_topic("door", "D-E1"))
            assert may(account, "read", topics.COMMAND)
        elif account.role is Role.ACTUATORS:
            assert may(account, "read", command_topic("door", "D-E1"))
            assert may(account, "write", state_topic("elevator", "EL1.L1"))
            assert not reads_downlinks and not may(account, "read", topics.alarm_state(1))
        elif account.role is Role.READER:
            assert all(r.access == "read" for r in account.rules)
            assert may(account, "read", topics.alarm_state(3))
            assert may(account, "read", topics.ALARM_EVENTS)
            assert not may(account, "read", topics.POSITIONS)  # staff positions are private
            assert not reads_downlinks
        else:
            assert account.role is Role.MONITOR
            assert all(r.access == "read" for r in account.rules)
            assert all(may(account, "read", t) for t in every_device_topic | set(ENGINE_ONLY))


def test_the_engine_may_subscribe_to_what_it_subscribes_to() -> None:
    engine = next(a for a in site_accounts(SITE) if a.role is Role.ENGINE)
    assert engine.username == ENGINE_USER
    for sub in SUBSCRIPTIONS:
        example = sub.topic_filter.replace("+", "x")
        assert may(engine, "read", example), sub


def _parse_acl(text: str) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    user = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            user = rest
            out[user] = set()
        else:
            assert word == "topic" and user is not None, f"rule outside a user block: {line}"
            access, _, topic = rest.partition(" ")
            out[user].add((access, topic))
    return out


def test_acl_text_has_exactly_the_accounts_rules() -> None:
    accounts = site_accounts(SITE, BrokerOptions(readers=("nursecall",)))
    parsed = _parse_acl(acl_text(accounts, SITE.id))
    assert parsed == {a.username: {(r.access, r.topic) for r in a.rules} for a in accounts}
    assert "pattern" not in acl_text(accounts)


def test_mosquitto_conf_refuses_anonymous_and_listens_with_tls() -> None:
    text = mosquitto_conf(BrokerOptions(tls_port=8883), PATHS, "example")
    lines = text.splitlines()
    assert "allow_anonymous false" in lines and "per_listener_settings false" in lines
    assert "set_tcp_nodelay true" in lines  # no Nagle delay on QoS 1 acknowledgements
    assert "allow_anonymous true" not in text
    assert [ln for ln in lines if ln.startswith("listener")] == ["listener 8883"]
    for line in ("password_file /etc/rtls/passwd", "acl_file /etc/rtls/acl",
                 "cafile /etc/rtls/ca.crt", "certfile /etc/rtls/server.crt",
                 "keyfile /etc/rtls/server.key", "tls_version tlsv1.2"):  # fmt: skip
        assert line in lines
    local = mosquitto_conf(BrokerOptions(tls_port=8883, bind="10.0.0.5", local_port=1884), PATHS)
    listeners = [ln for ln in local.splitlines() if ln.startswith("listener")]
    assert listeners == ["listener 8883 10.0.0.5", "listener 1884 127.0.0.1"]
    with pytest.raises(ConfigError, match="both 1884"):
        mosquitto_conf(BrokerOptions(tls_port=1884, local_port=1884), PATHS)
    with pytest.raises(ConfigError, match="TLS port"):
        mosquitto_conf(BrokerOptions(tls_port=70000), PATHS)


@pytest.mark.parametrize("name", ["", "a/b", "gw+1", "#", "a:b", "two words", "-lead", "é"])
def test_a_bad_username_is_refused_naming_the_entry(name: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"reader account {name!r}")):
        site_accounts(SITE, BrokerOptions(readers=(name,)))
    with pytest.raises(ConfigError, match="engine account"):
        site_accounts(SITE, BrokerOptions(engine_user=name))
    assert check_username("gw-G01.east_2@ward", "x") == "gw-G01.east_2@ward"


def test_two_accounts_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gateway 'G01' \(native\): username 'gw-G01'"):
        site_accounts(SITE, BrokerOptions(engine_user="gw-G01"))
    with pytest.raises(ConfigError, match="rtls-actuators"):
        site_accounts(SITE, BrokerOptions(readers=(ACTUATORS_USER,)))


def _site_with(old: str, new: str) -> Site:
    text = EXAMPLE_SITE.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    return Site.from_mapping(tomllib.loads(text), text=text)


def test_espresense_room_and_omg_presence_collisions_are_refused() -> None:
    esp = [g.id for g in SITE.gateways if g.format is GatewayFormat.ESPRESENSE]
    omg = [g.id for g in SITE.gateways if g.format is GatewayFormat.OMG]
    # "g12" and "G12" are one ESPresense room slug: each node could publish the other's topics
    twin = _site_with(f'id = "{esp[1]}"', f'id = "{esp[0].lower()}"')
    with pytest.raises(ConfigError, match=f"gateway '{esp[0].lower()}' \\(espresense\\)"):
        site_accounts(twin)
    presence = _site_with(f'id = "{omg[0]}"', 'id = "presence"')
    with pytest.raises(ConfigError, match=r"gateway 'presence' \(omg\).*presence topic"):
        site_accounts(presence)


def test_password_hash_is_mosquittos_pbkdf2_format() -> None:
    user, _, hashed = MOSQUITTO_LINE.partition(":")
    assert hash_matches(hashed, "secret")
    assert not hash_matches(hashed, "Secret") and not hash_matches("garbage", "secret")
    salt = bytes(range(12))
    mine = password_line("gw-G01", "pw", salt)
    assert re.fullmatch(r"gw-G01:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", mine)
    assert hash_matches(mine.partition(":")[2], "pw")
    assert password_hash("pw", salt) != password_hash("pw", bytes(12))  # the salt counts
    assert parse_password_file(f"# c\n\n{MOSQUITTO_LINE}\n{mine}\n") == {
        user: hashed,
        "gw-G01": mine.partition(":")[2],
    }
    with pytest.raises(ConfigError, match="empty"):
        password_hash("", salt)
