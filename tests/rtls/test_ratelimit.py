"""Per-source token buckets of the engine's ingest (rtls.ratelimit): pure, no clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.e2e_site import GroupSpec, group_site
from rtls.batch import RECORD_SIZE
from rtls.directory import Directory, room_slug
from rtls.errors import ConfigError
from rtls.ratelimit import (
    BACKLOG_MSGS,
    HEADROOM,
    Limit,
    RateLimiter,
    site_limits,
    source_index,
)
from rtls.site import GatewayFormat, load_site

SITE = load_site()


def test_bucket_passes_the_burst_then_the_rate() -> None:
    lim = RateLimiter([Limit(msgs_per_s=10, burst_msgs=5, bytes_per_s=1e9, burst_bytes=1e9)])
    passed = [lim.allow(0, 100.0, 10) for _ in range(8)]
    assert passed == [True] * 5 + [False] * 3
    assert (lim.passed[0], lim.dropped[0], lim.dropped_bytes[0]) == (5, 3, 30)
    # 0.25 s later: 2.5 tokens back, two messages pass
    assert [lim.allow(0, 100.25, 10) for _ in range(3)] == [True, True, False]
    # a long pause refills to the burst, never beyond
    assert sum(lim.allow(0, 1000.0, 10) for _ in range(20)) == 5


def test_bytes_bucket_throttles_huge_payloads() -> None:
    lim = RateLimiter([Limit(msgs_per_s=1000, burst_msgs=1000, bytes_per_s=1000,
                             burst_bytes=4000)])  # fmt: skip
    assert lim.allow(0, 0.0, 3000)
    assert not lim.allow(0, 0.0, 3000)  # 1,000 bytes left
    assert lim.allow(0, 0.0, 500)
    assert lim.allow(0, 2.5, 3000)  # 500 + 2,500 refilled


def test_time_going_back_refills_nothing() -> None:
    lim = RateLimiter([Limit(1, 1, 1e9, 1e9)])
    assert lim.allow(0, 50.0, 1)
    assert not lim.allow(0, 10.0, 1)  # the clock stepped back 40 s: no tokens from that
    assert not lim.allow(0, 50.5, 1)  # half a token
    assert lim.allow(0, 51.0, 1)


def test_sources_are_independent() -> None:
    lim = RateLimiter([Limit(1, 2, 1e9, 1e9), Limit(1, 2, 1e9, 1e9)])
    assert [lim.allow(0, 0.0, 1) for _ in range(4)] == [True, True, False, False]
    assert [lim.allow(1, 0.0, 1) for _ in range(2)] == [True, True]
    assert lim.dropped == [2, 0] and lim.total_dropped() == 2


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_limits_must_be_positive(bad: float) -> None:
    with pytest.raises(ConfigError, match="must be a positive number"):
        Limit(bad, 1, 1, 1)
    with pytest.raises(ConfigError, match="at least one source"):
        RateLimiter([])


def test_topics_map_to_their_source() -> None:
    d = Directory.from_site(SITE)
    n_gw, n_rd = len(d.gateway_ids), len(d.reader_ids)
    g = SITE.model.gateways[0].id
    assert source_index(d, f"rtls/v1/gw/{g}/obs") == d.gateway(g)
    assert source_index(d, f"rtls/v1/gw/{g}/health") == d.gateway(g)
    reader = SITE.model.door_readers[1].id
    assert source_index(d, f"rtls/v1/door/{reader}/read") == n_gw + d.reader(reader)
    esp = next(x for x in SITE.model.gateways if x.format == GatewayFormat.ESPRESENSE)
    room = room_slug(esp.id)
    assert source_index(d, f"espresense/devices/abc/{room}") == d.espresense_gateway(room)
    assert source_index(d, f"espresense/rooms/{room}/status") == d.espresense_gateway(room)
    omg = next(x for x in SITE.model.gateways if x.format == GatewayFormat.OMG)
    assert source_index(d, f"home/{omg.id}/BTtoMQTT/AABB") == d.omg_gateway(omg.id)
    for unknown in ("rtls/v1/gw/NOPE/obs", "rtls/v1/door/NOPE/read", "junk", "espresense/x",
                    "home", "", "rtls/v1/gw"):  # fmt: skip
        assert source_index(d, unknown) == n_gw + n_rd  # one shared bucket


def test_site_limits_follow_the_site() -> None:
    limits = site_limits(SITE)
    d = Directory.from_site(SITE)
    assert len(limits) == len(d.gateway_ids) + len(d.reader_ids) + 1
    infra = SITE.rules.infrastructure
    native = next(i for i, g in enumerate(SITE.model.gateways) if g.format == "native")
    esp = next(i for i, g in enumerate(SITE.model.gateways) if g.format == "espresense")
    # a native gateway sends a batch every batch_interval_s: the limit is HEADROOM times that
    assert limits[native].msgs_per_s >= HEADROOM / infra.batch_interval_s
    # a JSON gateway sends one message per advertisement: every tag of the site at its rate
    adv = sum(1 / SITE.tag_interval(t) for t in SITE.tags)
    assert limits[esp].msgs_per_s >= HEADROOM * adv
    for lim in limits:
        assert lim.burst_msgs >= BACKLOG_MSGS  # a queued backlog after an outage passes
    # more tags, higher limits
    big = site_limits(group_site(GroupSpec(buildings=1, bulk=2000)))
    assert big[esp].msgs_per_s > limits[esp].msgs_per_s


def test_a_busy_native_gateway_is_not_throttled() -> None:
    """One gateway hearing every tag of a 560-tag site (bursts included) for ten minutes:
    batches every batch_interval_s, as the site says its gateways publish, plus health."""
    site = group_site(GroupSpec(buildings=1, bulk=500))
    limits = site_limits(site)
    lim = RateLimiter(limits)
    infra = site.rules.infrastructure
    rng = np.random.default_rng(7)
    adv = sum(1 / site.tag_interval(t) for t in site.tags)
    t = 0.0
    while t < 600.0:
        t += infra.batch_interval_s * rng.uniform(0.8, 1.2)  # jittered batches
        records = rng.poisson(2 * adv * infra.batch_interval_s)  # every tag, twice (bursts)
        assert lim.allow(0, t, 24 + records * RECORD_SIZE), f"throttled at t={t:.2f}"
    assert lim.dropped[0] == 0


def test_a_flood_is_held_to_the_limit() -> None:
    limits = site_limits(SITE)
    lim = RateLimiter(limits)
    flood = 0
    for k in range(200_000):  # 20,000 messages/s for 10 s from gateway 0
        flood += lim.allow(0, k / 20_000, 300)
    expected = limits[0].burst_msgs + 10 * limits[0].msgs_per_s
    assert flood == pytest.approx(expected, abs=2)
    assert lim.dropped[0] == 200_000 - flood
    assert lim.dropped[1] == 0 and lim.allow(1, 10.0, 300)
