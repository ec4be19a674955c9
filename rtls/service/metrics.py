"""Prometheus metrics of the engine, the alarm desk and the console (``GET /metrics``).

A custom collector reads the live counters at scrape time (prometheus-client's text format), so
nothing on the hot path updates metric objects. Names and labels: docs/console-api.md.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rtls.service.engine import tick_percentile

if TYPE_CHECKING:
    from rtls.service.console import ConsoleServer


class _Collector(Collector):
    def __init__(self, console: ConsoleServer) -> None:
        self.console = console

    def collect(self) -> Iterator[Metric]:
        c = self.console
        service, shell = c.service, c.shell
        counters = service.engine.decoder.counters
        yield CounterMetricFamily("rtls_messages_received", "MQTT messages queued for decoding",
                                  value=service.stats.received)  # fmt: skip
        yield CounterMetricFamily("rtls_observations", "RSSI observations decoded",
                                  value=service.engine.observations)  # fmt: skip
        yield GaugeMetricFamily("rtls_ingest_rate", "Observations per second (recent)",
                                value=c.ingest_rate)  # fmt: skip
        errors = CounterMetricFamily("rtls_decode_errors", "Messages or records dropped",
                                     labels=["reason"])  # fmt: skip
        # copies first: the tick thread may add a reason meanwhile (dict.copy holds the GIL)
        for reason, n in sorted((counters.rejected.copy() + counters.records.copy()).items()):
            errors.add_metric([reason], n)
        yield errors
        yield CounterMetricFamily("rtls_ticks", "Engine ticks", value=service.stats.ticks)
        yield CounterMetricFamily("rtls_messages_predecoded", "Messages decoded ahead, while "
                                  "waiting for a pass", value=service.stats.predecoded)  # fmt: skip
        passes = CounterMetricFamily("rtls_passes", "Passes of the watched tags between ticks, "
                                     "and desk steps run on their zone changes and on urgent "
                                     "input", labels=["kind"])  # fmt: skip
        st = service.stats
        for kind, n in (("watch", st.watch_passes), ("watch_desk_step", st.first_steps),
                        ("urgent", st.early_passes), ("urgent_repeat", st.early_repeats)):
            passes.add_metric([kind], n)
        yield passes
        tick = GaugeMetricFamily("rtls_tick_seconds", "Recent tick durations (last 1000)",
                                 labels=["quantile"])  # fmt: skip
        for q in (50, 99):
            tick.add_metric([f"0.{q}"], tick_percentile(service.stats, q))
        yield tick
        states = Counter((a.type.value, a.state.value) for a in shell.desk.book.alarms.values())
        alarms = GaugeMetricFamily("rtls_alarms", "Open alarms", labels=["type", "state"])
        for (type_, state), n in sorted(states.items()):
            alarms.add_metric([type_, state], n)
        yield alarms
        yield GaugeMetricFamily("rtls_console_clients", "Connected console clients",
                                value=len(c.clients))  # fmt: skip
        yield CounterMetricFamily("rtls_console_resyncs", "Clients resynchronised by snapshot",
                                  value=c.stats.resyncs + sum(cl.outbox.resyncs
                                                              for cl in c.clients))  # fmt: skip
        yield CounterMetricFamily("rtls_store_errors", "Failed alarm store commits",
                                  value=shell.stats.store_errors)  # fmt: skip
        yield GaugeMetricFamily("rtls_broker_connected", "1 while the MQTT link is up",
                                value=int(service.connected.is_set()))  # fmt: skip
        limited = CounterMetricFamily("rtls_rate_limited", "Messages dropped over a gateway's "
                                      "or door reader's rate limit", labels=["source"])  # fmt: skip
        for source, n in sorted(service.rate_limited().items()):
            limited.add_metric([source], n)
        yield limited
        auth = CounterMetricFamily("rtls_tag_auth", "Observations by tag authentication verdict",
                                   labels=["verdict"])  # fmt: skip
        for verdict, n in sorted(service.engine.auth.counts.copy().items()):
            auth.add_metric([verdict], n)
        yield auth
        yield GaugeMetricFamily("rtls_gc_frozen_objects", "Objects moved out of the garbage "
                                "collector's reach at start-up (rtls engine)",
                                value=gc.get_freeze_count())  # fmt: skip


def metrics_text(console: ConsoleServer) -> bytes:
    """The Prometheus exposition of ``console``'s process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(console))
    return generate_latest(registry)
