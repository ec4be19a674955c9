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
