"""Shared fixtures: a real Mosquitto broker for service tests (see docs/testing.md).

Skipping rule (a project rule): outside CI a broker test may skip only with a message naming the
missing system package; with ``CI=true`` a missing broker fails the test instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtls.service.broker import MOSQUITTO_MISSING, MosquittoBroker, find_mosquitto

BROKER_FIXTURES = frozenset({"mosquitto", "fresh_mosquitto"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker: needs a real Mosquitto broker (Debian package mosquitto)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses a broker fixture gets the ``broker`` marker (``-m "not broker"``)."""
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_mosquitto() -> str:
    """The mosquitto binary; otherwise skip (outside CI) or fail (CI=true) the test."""
    binary = find_mosquitto()
    if binary is None:
        if in_ci():
            pytest.fail(
                f"CI=true and no mosquitto binary: this test {MOSQUITTO_MISSING}", pytrace=False
            )
        pytest.skip(MOSQUITTO_MISSING)
    return binary


def _started(workdir: Path) -> MosquittoBroker:
    broker = MosquittoBroker(workdir, binary=require_mosquitto())
    broker.start()  # a binary that is there but cannot start is a failure, never a skip
    return broker


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One broker for the whole session. Do not stop it: use ``fresh_mosquitto`` for that."""
    broker = _started(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.close()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker of the test's own, free to `stop`, `kill` and `start` again on the same port."""
    broker = _started(tmp_path / "mosquitto")
    yield broker
    broker.close()


CHROMIUM_MISSING = "needs the Debian package 'chromium' (apt-get install chromium)"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [  # headless in a sandbox-less container, no calls home (docs/testing.md)
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


def require_chromium() -> str:
    """Debian's chromium; otherwise skip (outside CI) or fail (CI=true) the test."""
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    if in_ci():
        pytest.fail(f"CI=true and no chromium binary: this test {CHROMIUM_MISSING}",
                    pytrace=False)  # fmt: skip
    pytest.skip(CHROMIUM_MISSING)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright (a ``playwright.sync_api.Browser``).

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is started, and later tests call ``asyncio.run``."""
    from playwright.sync_api import sync_playwright

    path = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the browser tests save their screenshots (``$RTLS_SCREENSHOTS``, default
    ``build/screenshots``; CI may keep them as artefacts)."""
    out = Path(os.environ.get("RTLS_SCREENSHOTS", "build/screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out
