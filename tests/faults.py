"""Helpers of the fault tests (tests/rtls/test_faults_*.py) and bench/kill_trials.py: native
batches from a chosen gateway with a chosen clock, a WebSocket console client, coroutines run
in a :class:`tests.console_harness.ConsoleHarness`'s loop, the console's HTTP JSON."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import paho.mqtt.client as paho
import paho.mqtt.publish as publish

from rtls.advertisement import Advertisement, Status, TagKind, encode_body, tag_address
from rtls.batch import encode_batch, make_records, obs_topic
from rtls.site import Site
from tests.broker import MessageCollector, Received

T = TypeVar("T")
KINDS = {"infant": TagKind.INFANT, "staff": TagKind.STAFF_BADGE, "mother": TagKind.MOTHER,
         "reference": TagKind.REFERENCE}  # fmt: skip


def frame(site: Site, tags: list[tuple[str, Status, int]], *, gateway: str, seq: int,
          t0: float, rssi: int = -60) -> bytes:  # fmt: skip
    """One native batch from ``gateway`` (its clock says ``t0``) with one advertisement per
    ``(tag id, status, tag sequence number)``."""
    by_id = {t.id: t for t in site.tags}
    bodies, macs = [], []
    for tag_id, status, tag_seq in tags:
        tag = by_id[tag_id]
        adv = Advertisement(kind=KINDS[tag.kind.value], serial=tag.serial, seq=tag_seq % 65536,
                            status=status, battery=90)  # fmt: skip
        bodies.append(np.frombuffer(encode_body(adv), np.uint8))
        macs.append(list(tag_address(tag.serial)))
    n = len(tags)
    recs = make_records(np.arange(n, dtype=np.int64) * 1000, np.array(macs, np.uint8),
                        np.full(n, rssi), 37, np.stack(bodies))  # fmt: skip
    return encode_batch(gateway, seq, t0, recs)


def send(port: int, gateway: str, payload: bytes, qos: int = 1) -> None:
    """Publish one batch on ``gateway``'s observation topic."""
    publish.single(obs_topic(gateway), payload, qos=qos, hostname="127.0.0.1", port=port)


def in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T],
            timeout: float = 30.0) -> T:  # fmt: skip
    """Run ``coro`` in ``loop`` (another thread's) and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def http_json(url: str) -> dict[str, Any]:
    """GET a JSON document (also from a 503 answer: /health says 'degraded' that way)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    out: dict[str, Any] = json.loads(body)
    return out


def alarm_of(type_: str, subject: str, action: str = "raise") -> Callable[[dict[str, Any]], bool]:
    """Predicate: a console alarm message of that alarm type, subject and action."""

    def pred(m: dict[str, Any]) -> bool:
        if m.get("type") != "alarm":
            return False
        tr = m["transition"]
        return bool(tr["alarm"]["type"] == type_ and tr["alarm"]["subject"] == subject
                    and tr["action"] == action)  # fmt: skip

    return pred


class TimedCollector(MessageCollector):
    """A :class:`tests.broker.MessageCollector` that also notes when each message arrived."""

    def __init__(self, port: int, topics: list[str]) -> None:
        super().__init__(port, topics)
        self._times: list[float] = []

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos))
        with self._cond:
            self._messages.append(received)
            self._times.append(time.time())
            self._cond.notify_all()

    def timed(self) -> list[tuple[float, Received]]:
        """(arrival time, message) of everything received so far, in arrival order."""
        with self._cond:
            return list(zip(self._times, self._messages, strict=True))
