"""A site's Mosquitto configuration: accounts, ACL and ``mosquitto.conf`` text (pure).

:func:`site_accounts` lists one account per gateway and door reader (each may publish only
under its own topics, read only what it needs), the engine's account, the door/lift controller
bridge and any read-only integration accounts; :func:`acl_text`, :func:`mosquitto_conf` and
:func:`password_line` render the files Mosquitto 2.x reads. No I/O and no randomness: the
caller (``rtls.service.credentials``) chooses passwords and salts and writes the files.
docs/mqtt-security.md shows the ACL table.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from rtls import topics
from rtls.actuators import PREFIX as ACTUATOR_PREFIX
from rtls.directory import room_slug
from rtls.errors import ConfigError
from rtls.site import GatewayFormat, Site

Access = Literal["read", "write", "readwrite"]

ENGINE_USER: Final = "rtls-engine"
ACTUATORS_USER: Final = "rtls-actuators"
GATEWAY_PREFIX: Final = "gw-"
READER_PREFIX: Final = "door-"
PBKDF2_ITERATIONS: Final = 101  # Mosquitto's default; passwords are random 128-bit tokens
SALT_BYTES: Final = 12  # what mosquitto_passwd uses

_USERNAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_HASH_RE: Final = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


class Role(StrEnum):
    """What an account is for (docs/mqtt-security.md, "Accounts")."""

    ENGINE = "engine"
    GATEWAY = "gateway"
    DOOR_READER = "door_reader"
    ACTUATORS = "actuators"
    READER = "reader"  # read-only integration: alarms and engine status
    MONITOR = "monitor"  # read-only technician account: every topic


@dataclass(frozen=True, slots=True)
class Rule:
    """One ACL line: ``topic <access> <topic filter>``."""

    access: Access
    topic: str


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account: its username, role, the site entry it belongs to (``gateway G01``,
    ``engine``, ...), its ACL rules (everything else is denied) and, for a gateway or door
    reader, the device's id in the site file."""

    username: str
    role: Role
    entry: str
    rules: tuple[Rule, ...]
    device: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """How the broker listens and which extra accounts exist.

    ``host``: the name clients use to reach the broker (it goes in the server certificate);
    ``tls_port``/``bind``: the TLS listener (``bind`` None: every interface); ``local_port``:
    a plain listener on 127.0.0.1 only (None: no plain listener); ``readers``/``monitors``:
    usernames of read-only integration / technician accounts; ``actuators``: generate the
    door/lift controller bridge's account."""

    host: str = "localhost"
    tls_port: int = 8883
    bind: str | None = None
    local_port: int | None = None
    engine_user: str = ENGINE_USER
    actuators: bool = True
    readers: tuple[str, ...] = ()
    monitors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfPaths:
    """Where the broker will find the generated files (absolute paths on the broker host)."""

    password_file: str
    acl_file: str
    ca_file: str
    cert_file: str
    key_file: str
    extra: tuple[str, ...] = field(default=())


def check_username(name: object, entry: str) -> str:
    """``name`` if it can be an MQTT username in a Mosquitto password and ACL file, else
    ConfigError naming ``entry``: 1-128 characters of ``A-Z a-z 0-9 _ . @ -``, starting with
    a letter or digit (no ``+ # /`` wildcard or level characters, no ``:`` or spaces)."""
    if not isinstance(name, str) or not _USERNAME_RE.match(name):
        raise ConfigError(
            f"{entry}: {name!r} is not a valid MQTT username (1-128 characters of "
            "A-Z a-z 0-9 _ . @ -, starting with a letter or digit; no '+', '#', '/', ':' "
            "or spaces)"
        )
    return name


def _check_port(port: object, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{what} must be a port 1..65535, got {port!r}")
    return port


def _gateway_rules(gateway_id: str, fmt: GatewayFormat) -> tuple[Rule, ...]:
    read_downlinks = Rule("read", topics.DOWNLINK_FILTER)  # gateways relay downlinks to tags
    if fmt is GatewayFormat.NATIVE:
        return (Rule("write", f"rtls/v1/gw/{gateway_id}/#"), read_downlinks)
    if fmt is GatewayFormat.ESPRESENSE:
        room = room_slug(gateway_id)
        return (
            Rule("readwrite", f"espresense/rooms/{room}/#"),  # status, telemetry, its settings
            Rule("write", f"espresense/devices/+/{room}"),
            Rule("read", "espresense/rooms/*/+/set"),  # the firmware's "every node" settings
            Rule("read", "espresense/settings/+/config"),
            read_downlinks,
        )
    return (  # OpenMQTTGateway: its own base topic (commands included) and its presence topic
        Rule("readwrite", f"home/{gateway_id}/#"),
        Rule("write", f"home/presence/{gateway_id}"),
        read_downlinks,
    )


def _fixed_accounts(options: BrokerOptions) -> list[Account]:
    out = [
        Account(
            check_username(options.engine_user, "engine account"),
            Role.ENGINE,
            "engine",
            (
                Rule("readwrite", "rtls/v1/#"),
                Rule("read", "espresense/#"),
                Rule("read", "home/#"),
                Rule("read", "$SYS/#"),
            ),
        )
    ]
    if options.actuators:
        out.append(
            Account(
                ACTUATORS_USER,
                Role.ACTUATORS,
                "door/lift controller bridge",
                (
                    Rule("read", f"{ACTUATOR_PREFIX}/+/+/set"),
                    Rule("write", f"{ACTUATOR_PREFIX}/+/+/state"),
                ),
            )
        )
    for name in options.readers:
        out.append(
            Account(
                check_username(name, f"reader account {name!r}"),
                Role.READER,
                f"reader {name}",
                (
                    Rule("read", "rtls/v1/alarms/#"),
                    Rule("read", topics.STATUS),
                    Rule("read", topics.HEALTH),
                ),
            )
        )
    for name in options.monitors:
        out.append(
            Account(
                check_username(name, f"monitor account {name!r}"),
                Role.MONITOR,
                f"monitor {name}",
                (Rule("read", "#"), Rule("read", "$SYS/#")),
            )
        )
    return out


def site_accounts(site: Site, options: BrokerOptions | None = None) -> list[Account]:
    """Every account of ``site``'s broker, in a stable order: fixed accounts, then gateways
    (``gw-<id>``) and door readers (``door-<id>``) in site-file order. ConfigError names the
    entry when an id cannot be a username, two accounts would share a name, two ESPresense
    gateways share a room slug, or an OpenMQTTGateway is called ``presence``."""
    options = options or BrokerOptions()
    out = _fixed_accounts(options)
    rooms: dict[str, str] = {}
    for gw in site.gateways:
        entry = f"gateway {gw.id!r} ({gw.format.value})"
        name = check_username(GATEWAY_PREFIX + gw.id, entry)
        if gw.format is GatewayFormat.ESPRESENSE:
            try:
                room = room_slug(gw.id)
            except ConfigError as exc:
                raise ConfigError(f"{entry}: {exc}") from exc
            if room in rooms:
                raise ConfigError(
                    f"{entry}: ESPresense room {room!r} is also gateway {rooms[room]!r}'s: "
                    "each would publish the other's topics"
                )
            rooms[room] = gw.id
        if gw.format is GatewayFormat.OMG and gw.id == "presence":
            raise ConfigError(f"{entry}: 'home/presence' is OpenMQTTGateway's presence topic")
        out.append(Account(name, Role.GATEWAY, entry, _gateway_rules(gw.id, gw.format), gw.id))
    for reader in site.door_readers:
        entry = f"door reader {reader.id!r}"
        name = check_username(READER_PREFIX + reader.id, entry)
        rules = (Rule("write", f"rtls/v1/door/{reader.id}/#"),)
        out.append(Account(name, Role.DOOR_READER, entry, rules, reader.id))
    seen: dict[str, str] = {}
    for acc in out:
        if acc.username in seen:
            raise ConfigError(
                f"{acc.entry}: username {acc.username!r} is also the {seen[acc.username]}'s"
            )
        seen[acc.username] = acc.entry
    return out


def acl_text(accounts: Iterable[Account], site_id: str = "") -> str:
    """Mosquitto's ``acl_file``: one ``user`` block per account; no rule before the first
    block, so anonymous clients (refused anyway) and unknown users may do nothing."""
    lines = [
        f"# Mosquitto ACL for site {site_id!r}, generated by 'rtls broker-config'.",
        "# Everything not granted here is denied. Re-run the command instead of editing.",
    ]
    for acc in accounts:
        lines += ["", f"# {acc.entry} ({acc.role.value})", f"user {acc.username}"]
        lines += [f"topic {rule.access} {rule.topic}" for rule in acc.rules]
    return "\n".join(lines) + "\n"


def mosquitto_conf(options: BrokerOptions, paths: ConfPaths, site_id: str = "") -> str:
    """``mosquitto.conf`` text: no anonymous access, password file and ACL for every
    listener, a TLS listener (TLS 1.2 or later) and, if ``options.local_port``, a plain
    listener bound to 127.0.0.1 (same accounts and ACL)."""
    tls_port = _check_port(options.tls_port, "the TLS port")
    bind = f" {options.bind}" if options.bind else ""
    lines = [
        f"# Mosquitto configuration for site {site_id!r}, generated by 'rtls broker-config'.",
        "# Run:  mosquitto -c <this file>   (or include it from /etc/mosquitto/conf.d/).",
        "per_listener_settings false",
        "# no Nagle delay on client sockets: with it a QoS 1 acknowledgement can wait for a",
        "# delayed TCP ACK (~40 ms), and alarms are announced one round trip after another",
        "set_tcp_nodelay true",
        "allow_anonymous false",
        f"password_file {paths.password_file}",
        f"acl_file {paths.acl_file}",
        "",
        f"listener {tls_port}{bind}",
        f"cafile {paths.ca_file}",
        f"certfile {paths.cert_file}",
        f"keyfile {paths.key_file}",
        "tls_version tlsv1.2",
        "require_certificate false",
    ]
    if options.local_port is not None:
        local = _check_port(options.local_port, "the local port")
        if local == tls_port:
            raise ConfigError(f"the local port and the TLS port are both {local}")
        lines += ["", "# plain MQTT for processes on this host only", f"listener {local} 127.0.0.1"]
    lines += list(paths.extra)
    return "\n".join(lines) + "\n"


def password_hash(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's ``$7$`` hash: PBKDF2-HMAC-SHA512 (64 bytes), base64 salt and digest."""
    if not password:
        raise ConfigError("an MQTT password must not be empty")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def password_line(
    username: str, password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """One line of Mosquitto's ``password_file`` (no newline)."""
    name = check_username(username, "password file")
    return f"{name}:{password_hash(password, salt, iterations)}"


def hash_matches(hashed: str, password: str) -> bool:
    """Whether a ``$7$`` hash (as in a password file) was made from ``password``."""
    m = _HASH_RE.match(hashed.strip())
    if m is None or not password:
        return False
    try:
        salt = base64.b64decode(m.group(2), validate=True)
    except ValueError:
        return False
    return password_hash(password, salt, int(m.group(1))) == hashed.strip()


def parse_password_file(text: str) -> dict[str, str]:
    """``username -> hash`` of a Mosquitto password file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            user, _, hashed = line.partition(":")
            out[user] = hashed
    return out


def usernames(accounts: Sequence[Account], role: Role) -> list[str]:
    """The usernames of ``accounts`` with ``role``, in order."""
    return [a.username for a in accounts if a.role is role]
