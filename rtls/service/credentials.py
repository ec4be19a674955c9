"""Writes a site's broker directory: Mosquitto config, ACL, password file, credentials, TLS.

:func:`write_broker_dir` is what ``rtls broker-config`` runs. In the output directory:

- ``mosquitto.conf``, ``acl`` (rtls.broker_config), ``passwd`` (Mosquitto ``$7$`` hashes);
- ``engine-credentials.toml``, ``gateways-credentials.toml`` (every gateway and door reader)
  and ``integrations-credentials.toml`` (controller bridge, readers, monitors), mode 0600;
- ``ca.crt`` and ``server.crt`` / ``server.key`` (and ``ca.key`` when the CA is generated here):
  a self-signed CA and a server certificate made with the ``openssl`` command.

Re-running keeps every existing password (``rotate=True``: new ones for all), the CA, and the
server certificate while it still names the host, is signed by the CA and has more than 30
days left. :func:`load_credentials` / :func:`load_device_credentials` read the files back
(engine, simulator). docs/mqtt-security.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from rtls.broker_config import (
    SALT_BYTES,
    Account,
    BrokerOptions,
    ConfPaths,
    Role,
    acl_text,
    hash_matches,
    mosquitto_conf,
    parse_password_file,
    password_line,
    site_accounts,
)
from rtls.errors import ConfigError, RtlsError
from rtls.site import Site

CONF = "mosquitto.conf"
ACL = "acl"
PASSWD = "passwd"
ENGINE_FILE = "engine-credentials.toml"
GATEWAYS_FILE = "gateways-credentials.toml"
INTEGRATIONS_FILE = "integrations-credentials.toml"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest server-certificate life browsers and many clients accept
RENEW_BEFORE_S = 30 * 86400
_DEVICE_ROLES = (Role.GATEWAY, Role.DOOR_READER)


@dataclass(frozen=True, slots=True)
class MqttCredentials:
    """One MQTT account as a client uses it: TLS is on when ``ca_file`` is set."""

    username: str
    password: str
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """The simulator's view of ``gateways-credentials.toml``: device id -> account."""

    accounts: dict[str, MqttCredentials]
    ca_file: str | None = None


@dataclass
class BrokerDir:
    """What :func:`write_broker_dir` did."""

    directory: Path
    accounts: list[Account]
    written: list[Path] = field(default_factory=list)
    new_passwords: list[str] = field(default_factory=list)
    kept_passwords: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    certificate: str = ""


def write_broker_dir(
    site: Site,
    out: Path,
    options: BrokerOptions | None = None,
    *,
    rotate: bool = False,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    install_dir: str | None = None,
) -> BrokerDir:
    """Write (or update) ``out`` for ``site``; see the module docstring.

    ``ca_cert``/``ca_key``: sign the server certificate with this CA (the hospital's) instead
    of generating one; only its certificate is copied. ``install_dir``: where the files will
    be on the broker host (the paths in ``mosquitto.conf``; default: ``out``, absolute).
    ConfigError (naming the entry) for bad input; RtlsError when a file or openssl fails.
    """
    options = options or BrokerOptions()
    accounts = site_accounts(site, options)  # all checks before anything is written
    if (ca_cert is None) != (ca_key is None):
        raise ConfigError("--ca-cert and --ca-key go together")
    out = Path(out).absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtlsError(f"{out}: cannot create the directory: {exc.strerror or exc}") from exc
    result = BrokerDir(out, accounts)
    old = {} if rotate else read_passwords(out)
    passwords: dict[str, str] = {}
    for acc in accounts:
        if acc.username in old:
            passwords[acc.username] = old[acc.username]
            result.kept_passwords.append(acc.username)
        else:
            passwords[acc.username] = secrets.token_urlsafe(24)  # 192 random bits
            result.new_passwords.append(acc.username)
    result.removed = sorted(set(read_passwords(out)) - set(passwords))
    result.certificate = _certificates(out, options.host, site.id, ca_cert, ca_key)
    where = install_dir or str(out)
    paths = ConfPaths(
        password_file=os.path.join(where, PASSWD),
        acl_file=os.path.join(where, ACL),
        ca_file=os.path.join(where, CA_CERT),
        cert_file=os.path.join(where, SERVER_CERT),
        key_file=os.path.join(where, SERVER_KEY),
    )
    ca_file = str(out / CA_CERT)
    broker = f"{options.host}:{options.tls_port}"
    files = {
        CONF: (mosquitto_conf(options, paths, site.id), 0o644),
        ACL: (acl_text(accounts, site.id), 0o644),
        PASSWD: (_password_file(out, accounts, passwords), 0o600),
        ENGINE_FILE: (_engine_file(accounts, passwords, ca_file, broker, site.id), 0o600),
        GATEWAYS_FILE: (_devices_file(accounts, passwords, ca_file, broker, site.id), 0o600),
        INTEGRATIONS_FILE: (_others_file(accounts, passwords, ca_file, broker, site.id), 0o600),
    }
    for name, (text, mode) in files.items():
        _write(out / name, text, mode)
        result.written.append(out / name)
    return result


# -- reading back -------------------------------------------------------------------------------
def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RtlsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _account(path: Path, table: object, where: str) -> MqttCredentials:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} is not a table")
    user, password = table.get("username"), table.get("password")
    if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
        raise ConfigError(f"{path}: {where} needs a username and a password")
    return MqttCredentials(user, password)


def _ca(path: Path, data: dict[str, object]) -> str | None:
    ca = data.get("ca_file")
    if ca is None:
        return None
    if not isinstance(ca, str) or not ca:
        raise ConfigError(f"{path}: ca_file must be a path")
    return str((path.parent / ca).absolute()) if not os.path.isabs(ca) else ca


def load_credentials(path: str | Path) -> MqttCredentials:
    """An account file with top-level ``username``, ``password`` and optional ``ca_file``
    (``engine-credentials.toml``); a relative ``ca_file`` is relative to the file."""
    p = Path(path)
    data = _read_toml(p)
    acc = _account(p, data, "the file")
    return MqttCredentials(acc.username, acc.password, _ca(p, data))


def load_device_credentials(path: str | Path) -> DeviceCredentials:
    """``gateways-credentials.toml``: every gateway's and door reader's account by its id."""
    p = Path(path)
    data = _read_toml(p)
    devices = data.get("devices", {})
    if not isinstance(devices, dict):
        raise ConfigError(f"{p}: [devices] is not a table")
    accounts = {str(k): _account(p, v, f"device {k!r}") for k, v in devices.items()}
    return DeviceCredentials(accounts, _ca(p, data))


def read_passwords(out: Path) -> dict[str, str]:
    """``username -> password`` from the credentials files already in ``out`` (none: {})."""
    found: dict[str, str] = {}
    engine = out / ENGINE_FILE
    if engine.exists():
        acc = load_credentials(engine)
        found[acc.username] = acc.password
    for name, key in ((GATEWAYS_FILE, "devices"), (INTEGRATIONS_FILE, "accounts")):
        path = out / name
        if not path.exists():
            continue
        tables = _read_toml(path).get(key, {})
        if isinstance(tables, dict):
            for k, v in tables.items():
                acc = _account(path, v, f"{key} {k!r}")
                found[acc.username] = acc.password
    return found


# -- writing ------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _header(what: str, site_id: str, broker: str, ca_file: str) -> list[str]:
    return [
        f"# {what}, site {site_id!r}; written by 'rtls broker-config'.",
        "# SECRET: keep it mode 0600 and give each device only its own entry. Re-running the",
        "# command keeps these passwords (--rotate makes new ones).",
        f"broker = {_q(broker)}",
        f"ca_file = {_q(ca_file)}",
    ]


def _engine_file(
    accounts: list[Account], passwords: dict[str, str], ca: str, broker: str, site_id: str
) -> str:
    engine = next(a for a in accounts if a.role is Role.ENGINE)
    lines = _header("The rtls engine's MQTT account", site_id, broker, ca)
    lines += [f"# rtls engine --broker {broker} --mqtt-credentials <this file>",
              f"username = {_q(engine.username)}",
              f"password = {_q(passwords[engine.username])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _devices_file(
    accounts: list[Account], passwords: dict[str, str], ca: str, broker: str, site_id: str
) -> str:
    lines = _header("Gateways' and door readers' MQTT accounts", site_id, broker, ca)
    lines.append(f"# rtls-gateways run --broker {broker} --mqtt-credentials <this file>")
    for acc in accounts:
        if acc.device is not None:
            lines += ["", f"[devices.{_q(acc.device)}]", f"kind = {_q(acc.role.value)}",
                      f"username = {_q(acc.username)}",
                      f"password = {_q(passwords[acc.username])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _others_file(
    accounts: list[Account], passwords: dict[str, str], ca: str, broker: str, site_id: str
) -> str:
    lines = _header("Integration accounts", site_id, broker, ca)
    for acc in accounts:
        if acc.role not in _DEVICE_ROLES and acc.role is not Role.ENGINE:
            lines += ["", f"[accounts.{_q(acc.username)}]", f"role = {_q(acc.role.value)}",
                      f"username = {_q(acc.username)}",
                      f"password = {_q(passwords[acc.username])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _password_file(out: Path, accounts: list[Account], passwords: dict[str, str]) -> str:
    """Hash lines; an existing line whose hash still matches the password is kept as is."""
    try:
        old = parse_password_file((out / PASSWD).read_text(encoding="utf-8"))
    except OSError:
        old = {}
    lines = []
    for acc in accounts:
        pw = passwords[acc.username]
        kept = old.get(acc.username)
        if kept is not None and hash_matches(kept, pw):
            lines.append(f"{acc.username}:{kept}")
        else:
            lines.append(password_line(acc.username, pw, secrets.token_bytes(SALT_BYTES)))
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    """Atomic write with ``mode`` from the start (a secret is never readable by others)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask; an old file kept its own
        os.replace(tmp, path)
    except OSError as exc:
        raise RtlsError(f"{path}: cannot write: {exc.strerror or exc}") from exc


# -- certificates -------------------------------------------------------------------------------
def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("openssl")
    if binary is None:
        raise RtlsError("no 'openssl' command: it needs the Debian package 'openssl'")
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RtlsError(f"openssl {args[0]}: {exc}") from exc


def _must(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise RtlsError(f"openssl could not {what}: {proc.stderr.strip()[-500:]}")


def _san(host: str) -> str:
    names = ["DNS:localhost", "IP:127.0.0.1"]
    try:
        ip_address(host)
        names.append(f"IP:{host}")
    except ValueError:
        names.append(f"DNS:{host}")
    return ",".join(dict.fromkeys(names))


def _server_ok(out: Path, host: str) -> bool:
    crt, key, ca = out / SERVER_CERT, out / SERVER_KEY, out / CA_CERT
    if not (crt.exists() and key.exists() and ca.exists()):
        return False
    try:
        ip_address(host)
        check = ["-checkip", host]
    except ValueError:
        check = ["-checkhost", host]
    named = _openssl("x509", "-in", str(crt), "-noout", *check)
    if named.returncode != 0 or "does match" not in named.stdout:
        return False
    fresh = _openssl("x509", "-in", str(crt), "-noout", "-checkend", str(RENEW_BEFORE_S))
    signed = _openssl("verify", "-CAfile", str(ca), str(crt))
    return fresh.returncode == 0 and signed.returncode == 0


def _certificates(
    out: Path, host: str, site_id: str, ca_cert: Path | None, ca_key: Path | None
) -> str:
    """Make what is missing; return what was done, for the report."""
    done = []
    if ca_cert is not None and ca_key is not None:
        try:
            given = Path(ca_cert).read_bytes()
        except OSError as exc:
            raise RtlsError(f"{ca_cert}: cannot read the CA: {exc.strerror or exc}") from exc
        if not (out / CA_CERT).exists() or (out / CA_CERT).read_bytes() != given:
            _write(out / CA_CERT, given.decode("ascii", errors="replace"), 0o644)
            (out / SERVER_CERT).unlink(missing_ok=True)
            done.append(f"copied the CA certificate {ca_cert}")
        signer_key = Path(ca_key)
    else:
        signer_key = out / CA_KEY
        if not (out / CA_CERT).exists() or not signer_key.exists():
            _must(_openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", str(signer_key), "-out", str(out / CA_CERT),
                           "-days", str(CA_DAYS), "-subj", f"/CN=rtls {site_id} MQTT CA",
                           "-addext", "basicConstraints=critical,CA:TRUE",
                           "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
                  "make the CA")  # fmt: skip
            os.chmod(signer_key, 0o600)
            (out / SERVER_CERT).unlink(missing_ok=True)
            done.append("generated a CA (ca.crt, ca.key)")
    if _server_ok(out, host):
        return "; ".join(done) or "kept the CA and the server certificate"
    with tempfile.TemporaryDirectory(prefix="rtls-cert-") as tmp:
        csr, ext = Path(tmp) / "server.csr", Path(tmp) / "ext.cnf"
        ext.write_text(f"subjectAltName={_san(host)}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")  # fmt: skip
        key_tmp = Path(tmp) / "server.key"
        _must(_openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                       "-nodes", "-keyout", str(key_tmp), "-out", str(csr),
                       "-subj", f"/CN={host}"), "make the server key")  # fmt: skip
        _must(_openssl("x509", "-req", "-in", str(csr), "-CA", str(out / CA_CERT),
                       "-CAkey", str(signer_key), "-set_serial", f"0x{secrets.token_hex(16)}",
                       "-days", str(SERVER_DAYS), "-extfile", str(ext),
                       "-out", str(Path(tmp) / "server.crt")),
              "sign the server certificate (is the CA key the CA certificate's?)")  # fmt: skip
        _write(out / SERVER_KEY, key_tmp.read_text(encoding="ascii"), 0o600)
        _write(out / SERVER_CERT, (Path(tmp) / "server.crt").read_text(encoding="ascii"), 0o644)
    done.append(f"made a server certificate for {host} ({SERVER_DAYS} days)")
    return "; ".join(done)
