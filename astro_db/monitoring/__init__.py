"""Monitoring: the run step's figures and PyMongo listeners -> metrics, the slow-query log, health, explain and the advisor.

    monitor.py     Monitor: per model/operation counts, errors, latency; calls in flight; pool; heartbeats
    listeners.py   the PyMongo ServerHeartbeatListener; CommandListener / ConnectionPoolListener
                   only with ``command_monitoring=True``
    histogram.py   bounded latency histogram and per-second rate window
    shapes.py      masking of values: query and command shapes
    health.py      check_health(): ok / degraded / down with reasons
    explain.py     explain_filter(), parse_plan(): the winning plan across server kinds
    advisor.py     advise(): seen query shapes that scan a collection, and the index to add
    storage.py     storage_stats(): counts and sizes per collection
    prometheus.py  a prometheus_client collector and registry
    tracing.py     OpenTelemetry spans, one per operation (the ``tracing`` extra)

``Database`` exposes these as ``db.metrics()``, ``db.metrics_registry()``, ``db.health()``,
``db.explain()`` and ``db.advise()``.
"""

from __future__ import annotations

from .monitor import CLIENT_ERRORS, Monitor

__all__ = ["Monitor", "CLIENT_ERRORS"]
