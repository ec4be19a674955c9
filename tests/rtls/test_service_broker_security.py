"""A real Mosquitto run with the configuration `rtls broker-config` writes: anonymous and wrong
passwords are refused, a gateway cannot publish as another device nor the engine's topics, the
TLS listener verifies with the generated CA, and the engine and the simulated ward work over
TLS with their own accounts. Also the broker directory's files and re-runs (keep / rotate)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateways.cli import main as gateways_main
from gateways.cli import mqtt_accounts
from gateways.runner import MqttSink, run
from gateways.scenario import scenario_from_mapping
from gateways.world import World
from rtls import topics
from rtls.actuators import command_topic
from rtls.broker_config import ENGINE_USER, BrokerOptions
from rtls.engine import Engine
from rtls.errors import ConfigError
from rtls.service.broker import MosquittoBroker, free_port
from rtls.service.cli import main as rtls_main
from rtls.service.credentials import (
    ENGINE_FILE,
    GATEWAYS_FILE,
    INTEGRATIONS_FILE,
    load_credentials,
    load_device_credentials,
    read_passwords,
    write_broker_dir,
)
from rtls.service.engine import EngineService
from rtls.site import GatewayFormat, load_site
from tests.broker import unique_client_id, wait_until
from tests.conftest import require_mosquitto
from tests.rtls.test_broker_config import device_topics

pytestmark = pytest.mark.broker
SITE = load_site()
HOST = "127.0.0.1"
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87
SECRET_FILES = ("passwd", ENGINE_FILE, GATEWAYS_FILE, INTEGRATIONS_FILE, "ca.key", "server.key")


@dataclass
class Secured:
    broker: MosquittoBroker
    out: Path
    tls_port: int
    local_port: int
    passwords: dict[str, str]

    @property
    def ca(self) -> str:
        return str(self.out / "ca.crt")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Mosquitto started with the generated config: TLS on one free port, plain on another
    (127.0.0.1), accounts for the example site plus a monitor and a reader."""
    binary = require_mosquitto()
    tmp = tmp_path_factory.mktemp("secured")
    tls_port = free_port()
    local_port = free_port()
    while local_port == tls_port:
        local_port = free_port()
    options = BrokerOptions(host=HOST, tls_port=tls_port, bind=HOST, local_port=local_port,
                            readers=("nursecall",), monitors=("tech",))  # fmt: skip
    write_broker_dir(SITE, tmp / "conf", options)
    conf = (tmp / "conf" / "mosquitto.conf").read_text(encoding="utf-8")
    broker = MosquittoBroker(tmp / "broker", binary=binary, port=local_port, config_text=conf)
    broker.start()
    try:
        yield Secured(broker, tmp / "conf", tls_port, local_port, read_passwords(tmp / "conf"))
    finally:
        broker.close()


class Client:
    """A paho MQTT 5 client: connect (reason code or None), QoS 1 publish (PUBACK reason),
    subscribe, and the messages received."""

    def __init__(self, port: int, user: str | None = None, password: str | None = None,
                 ca: str | None = None, context: ssl.SSLContext | None = None,
                 protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5) -> None:  # fmt: skip
        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique_client_id("sec"),
                                  protocol=protocol)  # fmt: skip
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=ca))
        elif context is not None:
            self.client.tls_set_context(context)
        self._cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.subscribed = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, c: paho.Client, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_publish(self, c: paho.Client, u: Any, mid: int, rc: ReasonCode,
                    p: Properties | None) -> None:  # fmt: skip
        with self._cond:
            self.acks[mid] = rc
            self._cond.notify_all()

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def connect(self, timeout: float = 5.0) -> ReasonCode | None:
        """The CONNACK's reason code, None if none came (the loop is stopped on a refusal)."""
        self.client.connect(HOST, self.port, keepalive=10)
        deadline = time.monotonic() + timeout
        while self.connack is None and time.monotonic() < deadline:
            if self.client.loop(0.05) != paho.MQTT_ERR_SUCCESS:  # the broker hung up
                break
        if self.connack is None or self.connack.is_failure:
            self.client.disconnect()
            return self.connack
        self.client.loop_start()  # from here on paho's thread runs the connection
        return self.connack

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> int:
        info = self.client.publish(topic, payload, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.acks, timeout), topic
            return int(self.acks[info.mid].value)

    def subscribe(self, topic_filter: str) -> None:
        self.client.subscribe(topic_filter, qos=1)
        assert self.subscribed.wait(5.0)

    def wait_for(self, payload: bytes, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(p == payload for _, p in self.messages),
                                       timeout)  # fmt: skip

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _user(device: str) -> str:
    return next(f"{p}{device}" for p in ("gw-", "door-") if any(
        d.id == device for d in (SITE.gateways if p == "gw-" else SITE.door_readers)))  # fmt: skip


def test_anonymous_and_wrong_passwords_are_refused(secured: Secured) -> None:
    pw = secured.passwords
    for port, ca in ((secured.local_port, None), (secured.tls_port, secured.ca)):
        for protocol in (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311):
            rc = Client(port, ca=ca, protocol=protocol).connect()
            assert rc is not None and rc.is_failure, f"anonymous accepted on {port}: {rc}"
        assert Client(port, "gw-G01", "wrong", ca=ca).connect().value in (134, 135)
        assert Client(port, "gw-G02", pw["gw-G01"], ca=ca).connect().value in (134, 135)
        assert Client(port, "nobody", pw["gw-G01"], ca=ca).connect().value in (134, 135)
        ok = Client(port, "gw-G01", pw["gw-G01"], ca=ca)
        assert ok.connect() is not None and not ok.connack.is_failure  # type: ignore[union-attr]
        ok.close()


def test_a_device_cannot_publish_as_another_nor_engine_topics(secured: Secured) -> None:
    esp = next(g.id for g in SITE.gateways if g.format is GatewayFormat.ESPRESENSE)
    omg = next(g.id for g in SITE.gateways if g.format is GatewayFormat.OMG)
    devices = ["G01", esp, omg, SITE.door_readers[0].id]
    sent = device_topics()
    forbidden = [topics.alarm_state(7), topics.ALARM_EVENTS, topics.COMMAND, topics.downlink("B01"),
                 command_topic("door", "D-E1"), topics.STATUS, topics.POSITIONS]  # fmt: skip
    engine = Client(secured.local_port, ENGINE_USER, secured.passwords[ENGINE_USER])
    assert not engine.connect().is_failure  # type: ignore[union-attr]
    for f in ("rtls/v1/#", "espresense/#", "home/#"):
        engine.subscribe(f)
    try:
        for attacker in devices:
            user = _user(attacker)
            gw = Client(secured.tls_port, user, secured.passwords[user], ca=secured.ca)
            assert not gw.connect().is_failure  # type: ignore[union-attr]
            stamp = f"from {attacker} {time.monotonic_ns()}".encode()
            victims = [t for d in devices if d != attacker for t in sorted(sent[d])]
            for topic in victims + forbidden:
                assert gw.publish(topic, stamp) == NOT_AUTHORIZED, f"{attacker} -> {topic}"
            own = sorted(sent[attacker])
            for topic in own:  # its own topics, last: they also mark the end of the run
                assert gw.publish(topic, stamp + topic.encode()) == 0, f"{attacker} -> {topic}"
            gw.close()
            for topic in own:
                assert engine.wait_for(stamp + topic.encode()), f"engine missed {topic}"
            leaked = [t for t, p in engine.messages if p == stamp]
            assert leaked == [], f"{attacker}'s forged messages reached the engine: {leaked}"
    finally:
        engine.close()
    log = secured.broker.log_path.read_text(errors="replace")
    assert "Denied PUBLISH" in log  # the broker says why, for the technicians


def test_tls_listener_needs_tls_and_the_generated_ca(secured: Secured) -> None:
    user, pw = "gw-G01", secured.passwords["gw-G01"]
    plain = Client(secured.tls_port, user, pw)  # no TLS on the TLS port
    try:
        rc = plain.connect(timeout=3.0)
    except OSError:
        rc = None
    assert rc is None, "a plain MQTT client was answered on the TLS listener"
    with pytest.raises(ssl.SSLError):  # the system's CAs do not know the generated CA
        Client(secured.tls_port, user, pw, context=ssl.create_default_context()).connect()
    good = Client(secured.tls_port, user, pw, ca=secured.ca)
    assert not good.connect().is_failure  # type: ignore[union-attr]
    assert good.publish("rtls/v1/gw/G01/health", b"tls") < 0x80  # 16: no subscriber, accepted
    good.close()


def _run_engine(service: EngineService) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(service.run(),), daemon=True)
    thread.start()
    return loop, thread


def test_engine_and_simulated_ward_over_tls_with_their_accounts(secured: Secured) -> None:
    engine = Engine(SITE)
    creds = load_credentials(secured.out / ENGINE_FILE)
    assert creds.username == ENGINE_USER and creds.ca_file == secured.ca
    service = EngineService(engine, HOST, secured.tls_port, client_id="eng-tls",
                            username=creds.username, password=creds.password,
                            tls_ca_file=creds.ca_file)  # fmt: skip
    loop, thread = _run_engine(service)
    try:
        assert wait_until(service.connected.is_set, 10.0), secured.broker.diagnostics()
        accounts, tls = mqtt_accounts(str(secured.out / GATEWAYS_FILE))
        assert tls is not None and set(accounts) == set(device_topics())
        data = {"scenario": {"name": "t", "duration_s": 6, "seed": 3, "ambient": False}}
        world = World(scenario_from_mapping(data, site=SITE), epoch=time.time())
        sink = MqttSink(HOST, secured.tls_port, client_prefix="simtls", accounts=accounts, tls=tls)
        run(world, sink, speed=3.0)
        counters = engine.decoder.counters
        heard = lambda: bool(np.isfinite(counters.gateway_last_heard).all())  # noqa: E731
        assert wait_until(heard, 5.0), "gateways the engine never heard: " + ", ".join(
            g.id for g, t in zip(SITE.gateways, counters.gateway_last_heard, strict=True)
            if not np.isfinite(t))  # fmt: skip
    finally:
        loop.call_soon_threadsafe(service.stop)
        thread.join(timeout=15)
    assert counters.observations > 0 and counters.rejected_total == 0
    for fmt in GatewayFormat:  # every format's observations came through its account's ACL
        ids = [i for i, g in enumerate(SITE.gateways) if g.format is fmt]
        assert counters.gateway_observations[ids].sum() > 0, fmt
    log = secured.broker.log_path.read_text(errors="replace")
    denied = [
        ln for ln in log.splitlines() if "Denied" in ln and ("simtls" in ln or "eng-tls" in ln)
    ]
    assert denied == [], denied[:5]
    assert "as simtls-downlink (p2, c1, k10, u'gw-G01')" in log  # the relay: a gateway account
    assert "as eng-tls" in log


def test_rtls_engine_and_simulator_commands_with_credentials_files(
    secured: Secured, tmp_path: Path
) -> None:
    monitor = Client(secured.local_port, "tech", secured.passwords["tech"])
    assert not monitor.connect().is_failure  # type: ignore[union-attr]
    monitor.subscribe(topics.POSITIONS)
    monitor.subscribe(topics.STATUS)
    broker = f"{HOST}:{secured.tls_port}"
    cmd = [
        sys.executable,
        "-m",
        "rtls.service.cli",
        "engine",
        "--broker",
        broker,
        "--mqtt-credentials",
        str(secured.out / ENGINE_FILE),
        "--db",
        str(tmp_path / "a.db"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        online = (topics.STATUS, b'{"state":"online"}')
        assert wait_until(lambda: online in monitor.messages, 20.0), "rtls engine not online"
        code = gateways_main(["run", "--broker", broker, "--duration", "6", "--speed", "3",
                              "--mqtt-credentials", str(secured.out / GATEWAYS_FILE),
                              "--report-every", "0"])  # fmt: skip
        assert code == 0
        positions = lambda: [m for m in monitor.messages if m[0] == topics.POSITIONS]  # noqa: E731
        assert wait_until(lambda: bool(positions()), 10.0), "no positions from the engine"
    finally:
        monitor.close()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # never leave an engine behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    text = out.decode(errors="replace").lower()
    for trouble in ("not authori", "refused", "ssl", "certificate"):
        assert trouble not in text, text
    log = secured.broker.log_path.read_text(errors="replace")
    assert "as rtls-engine (p2, c1, k10, u'rtls-engine')" in log


def test_rerun_and_reload_adds_an_account_and_keeps_the_others(secured: Secured) -> None:
    """What a technician does when a device is added: re-run, then SIGHUP the broker."""
    newcomer = "nurse-call-2"
    assert Client(secured.local_port, newcomer, "x").connect().value in (134, 135)  # type: ignore[union-attr]
    options = BrokerOptions(host=HOST, tls_port=secured.tls_port, bind=HOST,
                            local_port=secured.local_port, readers=("nursecall", newcomer),
                            monitors=("tech",))  # fmt: skip
    done = write_broker_dir(SITE, secured.out, options)
    assert done.new_passwords == [newcomer] and done.removed == []
    assert secured.broker.pid is not None
    os.kill(secured.broker.pid, signal.SIGHUP)
    passwords = read_passwords(secured.out)
    joined = Client(secured.tls_port, newcomer, passwords[newcomer], ca=secured.ca)
    assert wait_until(lambda: _accepted(joined), 5.0), secured.broker.diagnostics()
    joined.close()
    old = Client(secured.tls_port, "gw-G01", secured.passwords["gw-G01"], ca=secured.ca)
    assert not old.connect().is_failure  # type: ignore[union-attr]
    old.close()


def _accepted(client: Client) -> bool:
    client.connack = None
    rc = client.connect(timeout=2.0)
    return rc is not None and not rc.is_failure


# -- the broker directory (no broker needed) ----------------------------------------------------
def test_broker_dir_files_modes_and_reruns(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    first = write_broker_dir(SITE, out, BrokerOptions(host="mqtt.ward.example"))
    assert len(first.new_passwords) == len(first.accounts) and not first.kept_passwords
    for name in SECRET_FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    devices = load_device_credentials(out / GATEWAYS_FILE)
    assert set(devices.accounts) == {g.id for g in SITE.gateways} | {
        r.id for r in SITE.door_readers}  # fmt: skip
    assert devices.accounts["G01"].username == "gw-G01" and devices.ca_file == str(out / "ca.crt")
    san = subprocess.run(["openssl", "x509", "-in", str(out / "server.crt"), "-noout",
                          "-checkhost", "mqtt.ward.example"],
                         capture_output=True, text=True)  # fmt: skip
    assert "does match" in san.stdout
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"),
                             str(out / "server.crt")], capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    before = read_passwords(out)
    files = {n: (out / n).read_bytes() for n in ("passwd", "ca.crt", "server.crt", "acl")}
    again = write_broker_dir(SITE, out, BrokerOptions(host="mqtt.ward.example"))
    assert not again.new_passwords and read_passwords(out) == before
    assert {n: (out / n).read_bytes() for n in files} == files  # nothing changed at all
    assert "kept" in again.certificate
    moved = write_broker_dir(SITE, out, BrokerOptions(host="mqtt2.ward.example"))
    assert (out / "ca.crt").read_bytes() == files["ca.crt"]  # the gateways' CA stays
    assert (out / "server.crt").read_bytes() != files["server.crt"]
    assert "mqtt2.ward.example" in moved.certificate
    rotated = write_broker_dir(SITE, out, BrokerOptions(host="mqtt2.ward.example"), rotate=True)
    after = read_passwords(out)
    assert len(rotated.new_passwords) == len(before)
    assert all(after[u] != before[u] for u in before)


def test_the_hospitals_ca_signs_the_server_certificate(tmp_path: Path) -> None:
    ca_crt, ca_key = tmp_path / "hospital-ca.crt", tmp_path / "hospital-ca.key"
    made = subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key),
                           "-out", str(ca_crt), "-days", "30", "-subj", "/CN=Hospital CA"],
                          capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp_path / "broker"
    done = write_broker_dir(SITE, out, BrokerOptions(host="10.1.2.3"), ca_cert=ca_crt,
                            ca_key=ca_key)  # fmt: skip
    assert "copied the CA certificate" in done.certificate
    assert (out / "ca.crt").read_bytes() == ca_crt.read_bytes() and not (out / "ca.key").exists()
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_crt), str(out / "server.crt")],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    ip = subprocess.run(["openssl", "x509", "-in", str(out / "server.crt"), "-noout",
                         "-checkip", "10.1.2.3"], capture_output=True, text=True)  # fmt: skip
    assert "does match" in ip.stdout
    with pytest.raises(ConfigError, match="go together"):
        write_broker_dir(SITE, out, ca_cert=ca_crt)


def test_broker_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert rtls_main(["broker-config", "--out", str(out), "--host", "127.0.0.1",
                      "--reader", "nursecall"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert f"mosquitto -c {out / 'mosquitto.conf'}" in text
    assert f"--mqtt-credentials {out / ENGINE_FILE}" in text
    integrations = (out / INTEGRATIONS_FILE).read_text(encoding="utf-8")
    assert '[accounts."nursecall"]' in integrations and 'role = "reader"' in integrations
    assert rtls_main(["broker-config", "--out", str(out), "--reader", "bad/name"]) == 2
    err = capsys.readouterr().err
    assert "reader account 'bad/name'" in err and "'/'" in err
    assert rtls_main(["broker-config", "--out", str(out), "--site", str(tmp_path / "no.toml")]) == 2
    assert "no.toml" in capsys.readouterr().err
    assert read_passwords(out)["nursecall"]  # a failed run changed nothing


def test_a_damaged_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / ENGINE_FILE
    bad.write_text('username = "rtls-engine"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="needs a username and a password"):
        load_credentials(bad)
    bad.write_text("username = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_credentials(bad)
