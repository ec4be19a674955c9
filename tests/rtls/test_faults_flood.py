"""Fault: one gateway floods the broker with garbage.

Real parts: Mosquitto, the whole simulated ward (``rtls simulate``: every gateway publishing as
the hardware does), the engine with its console (ConsoleHarness), WebSocket clients, and a
faulty gateway as a child process publishing garbage on its own topic at 200 times its
budget. The flooding gateway is throttled (counted, shown to technicians); the ward's other
gateways are not throttled at all, its tags are still located and a strap tamper is still
raised within 2 s. The limits themselves (and that a busy gateway is not throttled) are
tested purely in tests/rtls/test_ratelimit.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rtls.advertisement import Status
from rtls.service.broker import MosquittoBroker
from tests.console_harness import PASSWORD, ConsoleHarness, WsClient
from tests.faults import alarm_of

FLOODER = "G05"
FLOOD_S = 12.0
FLOOD_RATE = 5000.0  # messages/s; the site's budget for a native gateway is ~27/s
DGUV_S = 2.0


def _located(c: WsClient, since: float) -> set[str]:
    """Tags with a known position in the positions messages received after ``since``."""
    out: set[str] = set()
    for m in c.messages:
        if m.get("type") != "positions" or m["t"] < since:
            continue
        for row in m["positions"]:
            tag, x = (row[0], row[1]) if isinstance(row, list) else (row["tag"], row["x"])
            if x is not None:
                out.add(tag)
    return out


def test_a_flooding_gateway_is_throttled_and_the_others_are_unaffected(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    port = fresh_mosquitto.port

    async def run(h: ConsoleHarness) -> dict[str, Any]:
        assert h.server is not None
        service = h.server.service
        sam = await WsClient.login(h.ws_url, "security.sam", PASSWORD)
        tom = await WsClient.login(h.ws_url, "tech.tom", PASSWORD)
        with h.ward():
            await sam.drain(8.0)  # the ward is running: positions flow
            before = _located(sam, time.time() - 4.0)
            assert len(before) >= 10, before
            # strap tamper: the simulated badges' own sequence numbers would hide an injected SOS
            sent = h.advertise("B03", Status.TAMPER)
            await sam.wait(alarm_of("tamper", "B03"), timeout=10.0)
            baseline = time.time() - sent
            flood = subprocess.Popen(
                [sys.executable, "-m", "tests.flood_child", str(port), FLOODER, str(FLOOD_S),
                 str(FLOOD_RATE)], stdout=subprocess.PIPE, text=True)  # fmt: skip
            try:
                await sam.drain(4.0)
                throttled = service.limiter.dropped[service.engine.directory.gateway(FLOODER)]
                assert throttled > 1000, "the flood was not throttled"
                during = time.time()
                sent = h.advertise("B04", Status.TAMPER)
                await sam.wait(alarm_of("tamper", "B04"), timeout=10.0)
                latency = time.time() - sent
                await sam.drain(3.0)
                located = _located(sam, during)
            finally:
                out, _ = flood.communicate(timeout=FLOOD_S + 30)
            published = int(out.strip())

            def shows(m: dict[str, Any]) -> bool:
                return m.get("type") == "technical" and any(
                    r["id"] == FLOODER and r["throttled"] > 0 for r in m["gateways"]
                )

            tech = await tom.wait(shows, timeout=10.0)
        await sam.ws.close()
        await tom.ws.close()
        return {"baseline": baseline, "latency": latency, "before": before,
                "located": located, "published": published, "tech": tech,
                "dropped": list(service.limiter.dropped),
                "ids": [*service.engine.directory.gateway_ids,
                        *service.engine.directory.reader_ids, "*"],
                "health": service.health_payload()}  # fmt: skip

    with ConsoleHarness(port, tmp_path) as h:
        r = asyncio.run(run(h))
    print(f"flood: {r['published']} garbage messages, tamper latency {r['latency']:.3f} s "
          f"(before the flood {r['baseline']:.3f} s), {len(r['located'])} tags located during "
          f"it ({len(r['before'])} before)")  # fmt: skip
    assert r["published"] > 20 * FLOOD_S * 27, r["published"]  # it really flooded
    assert r["latency"] < DGUV_S, f"tamper during the flood: {r['latency']:.2f} s " \
        f"(before it: {r['baseline']:.2f} s)"  # fmt: skip
    # the other gateways' tags are still located during the flood
    assert len(r["located"]) >= 0.7 * len(r["before"]), (r["located"], r["before"])
    # only the flooder is throttled: none of the ward's busy gateways
    dropped = dict(zip(r["ids"], r["dropped"], strict=True))
    assert dropped.pop(FLOODER) > 0.9 * r["published"] - 2000
    assert not any(dropped.values()), {k: v for k, v in dropped.items() if v}
    rows = {row["id"]: row for row in r["tech"]["gateways"]}
    assert rows[FLOODER]["throttled"] > 0
    assert all(row["throttled"] == 0 for g, row in rows.items() if g != FLOODER)
    assert b'"rate_limited":{"' + FLOODER.encode() in r["health"]
