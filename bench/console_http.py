"""Reading a running console's HTTP endpoints from a bench (``/health``, ``/metrics``)."""

from __future__ import annotations

import urllib.error
import urllib.request


def fetch(url: str, timeout: float = 10.0) -> bytes:
    """The body at ``url``; a 503 (health while degraded) is still a document, returned."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as exc:
        return exc.read()


def metrics(url: str, timeout: float = 10.0) -> dict[str, float]:
    """The Prometheus samples at ``url`` (``/metrics``) by their full name, labels included,
    e.g. ``rtls_tick_seconds{quantile="0.99"}``."""
    out: dict[str, float] = {}
    for line in fetch(url, timeout).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
