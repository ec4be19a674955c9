"""A private Mosquitto broker on a free local port, as a child process.

Used by ``rtls demo`` (when no broker is configured) and by the test fixtures. It never touches
the machine's own broker on 1883: each instance has its own configuration, log and port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from rtls.errors import TransportError

MOSQUITTO_MISSING = "needs the Debian package 'mosquitto' (apt-get install mosquitto)"
"""The skip message when no broker binary is found (outside CI only; see docs/testing.md)."""

HOST = "127.0.0.1"
# no Nagle delay on the broker's client sockets: with it, a PUBACK can wait for a delayed TCP
# ACK (~40 ms on Linux), so QoS 1 announcements one after another take ~40 ms each
NODELAY = "set_tcp_nodelay true"
_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


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


class MosquittoBroker:
    """A private Mosquitto on 127.0.0.1 (never the system one on 1883).

    The config, log (``log_path``) and console output live in ``workdir``. `start` may be called
    again after `stop` or `kill`: the broker comes back on the SAME port. Persistence is off, so
    a restart loses retained messages and sessions, as a broker replaced by a fresh one would.
    ``config_text`` (e.g. rtls.broker_config's, listeners included) replaces the default
    anonymous listener; ``port`` must then be the port of one of its listeners.
    """

    def __init__(
        self,
        workdir: Path,
        binary: str | None = None,
        port: int | None = None,
        start_timeout: float = 10.0,
        config_text: str | None = None,
    ) -> None:
        if config_text is not None and port is None:
            raise TransportError("a MosquittoBroker with its own config_text needs its port")
        self.config_text = config_text
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
        ]
        if self.config_text is not None:
            lines = [self.config_text.rstrip("\n")]
        lines += [
            NODELAY,
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
