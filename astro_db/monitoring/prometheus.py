"""Prometheus export of a Monitor's figures (needs the ``prometheus`` extra: prometheus_client).

``registry(monitor, cache_stats)`` returns a ``CollectorRegistry`` holding one custom collector
that reads the monitor at scrape time, so nothing is double-counted and nothing registers in
the process-wide default registry (two Databases never collide). Serve it with
``prometheus_client.start_http_server(port, registry=db.metrics_registry())`` or render it with
``generate_latest``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ConfigError
from .histogram import EXPORT_BOUNDS_MS

__all__ = ["registry", "AstroCollector"]

_CACHE_COUNTERS = {"hits", "misses", "evictions", "expirations", "invalidations", "stale_hits", "uncacheable", "full_drops"}


def _require() -> Any:
    try:
        import prometheus_client
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigError("Prometheus metrics need prometheus_client: pip install 'astro_db[prometheus]'") from exc
    return prometheus_client, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily


class AstroCollector:
    """A prometheus_client custom collector over one Monitor (and optionally a cache)."""

    def __init__(self, monitor: Any, cache_stats: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self.monitor = monitor
        self.cache_stats = cache_stats

    def describe(self) -> list[Any]:
        return []  # collected lazily; no fixed description

    def collect(self) -> Iterator[Any]:
        _, Counter, Gauge, Histogram = _require()
        raw = self.monitor.raw()
        levels = [("operation", raw["operations"])]
        if raw["command_monitoring"]:  # without it there is no per-command table: no command series
            levels.append(("command", raw["commands"]))
        for level, table in levels:
            total = Counter(f"astro_db_{level}s", f"astro_db {level}s by model and {level}", labels=["model", level])
            errors = Counter(f"astro_db_{level}_errors", f"failed astro_db {level}s by kind", labels=["model", level, "kind"])
            latency = Histogram(f"astro_db_{level}_latency_seconds", f"astro_db {level} latency", labels=["model", level])
            for (model, name), (count, kinds, hist) in sorted(table.items()):
                total.add_metric([model, name], count)
                for kind, n in sorted(kinds.items()):
                    errors.add_metric([model, name, kind], n)
                latency.add_metric([model, name], _buckets(hist), hist.sum_ms / 1000.0)
            yield from (total, errors, latency)

        pool = raw["pool"]
        yield _gauge(Gauge, "astro_db_pool_connections_checked_out",
                     "pooled connections in use (without command_monitoring: driver calls in flight)", pool["checked_out"])
        yield _gauge(Gauge, "astro_db_pool_max_size", "configured maximum pool size", self.monitor.max_pool_size)
        if raw["command_monitoring"]:  # figures only PyMongo's pool events give (None, unknown, without)
            yield _gauge(Gauge, "astro_db_pool_connections_open", "open pooled connections", pool["open"])
            checkouts = Counter("astro_db_pool_checkouts", "connection check-outs")
            checkouts.add_metric([], pool["checkouts"])
            yield checkouts
            failures = Counter("astro_db_pool_checkout_failures", "failed connection check-outs by reason", labels=["reason"])
            for reason, n in sorted(raw["pool_failures"].items()):
                failures.add_metric([reason], n)
            yield failures
            wait = Histogram("astro_db_pool_wait_seconds", "time to check out a pooled connection")
            wait.add_metric([], _buckets(raw["pool_wait"]), raw["pool_wait"].sum_ms / 1000.0)
            yield wait

        beats = raw["heartbeats"]
        if beats["last_latency_ms"] is not None:
            yield _gauge(Gauge, "astro_db_heartbeat_latency_seconds", "last server heartbeat round trip", beats["last_latency_ms"] / 1000.0)
        hb_fail = Counter("astro_db_heartbeat_failures", "failed server heartbeats")
        hb_fail.add_metric([], beats["failures"])
        yield hb_fail
        slow = Counter("astro_db_slow_queries", "queries slower than slow_query_ms")
        slow.add_metric([], raw["slow_count"])
        yield slow

        stats = self.cache_stats() if self.cache_stats else None
        for key, value in sorted((stats or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if key in _CACHE_COUNTERS:
                    counter = Counter(f"astro_db_cache_{key}", f"query cache {key.replace('_', ' ')}")
                    counter.add_metric([], value)
                    yield counter
                else:
                    yield _gauge(Gauge, f"astro_db_cache_{key}", f"query cache {key.replace('_', ' ')}", value)


def registry(monitor: Any, cache_stats: Callable[[], dict[str, Any] | None] | None = None) -> Any:
    """A new ``CollectorRegistry`` with an ``AstroCollector`` for ``monitor``."""
    prometheus_client, *_ = _require()
    reg = prometheus_client.CollectorRegistry(auto_describe=False)
    reg.register(AstroCollector(monitor, cache_stats))
    return reg


def _buckets(hist: Any) -> list[tuple[str, int]]:
    out = [(repr(bound / 1000.0), n) for bound, n in hist.cumulative(EXPORT_BOUNDS_MS)]
    out.append(("+Inf", hist.count))
    return out


def _gauge(Gauge: Any, name: str, doc: str, value: float) -> Any:
    metric = Gauge(name, doc)
    metric.add_metric([], value)
    return metric
