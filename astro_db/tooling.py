"""The operator's side of ``Database``: indexes, health, metrics, explain and the advisor.

A mixin, so ``db.health()`` reads as the contract says while ``database.py`` keeps to the
service calls; every method here delegates to ``astro_db.indexes`` or ``astro_db.monitoring``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import query as q
from .indexes import sync_model_indexes
from .monitoring.topology import describe_topology

__all__ = ["OperatorMixin"]


class OperatorMixin:
    """Index sync, ``health()``, ``metrics()``, ``metrics_registry()``, ``explain()``, ``advise()``."""

    _rt: Any

    def sync_indexes(self, *, drop_extra: bool = False) -> list[dict[str, Any]]:
        """Create every index the models declare that the server lacks; report undeclared ones
        (and drop them with ``drop_extra=True``). One dict per model."""
        database = self._rt.connection.database
        return [sync_model_indexes(database, info, drop_extra=drop_extra).as_dict() for info in self._rt.registry]

    def health(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"down", "latency_ms", "pool", "reasons", ...}``; a dead
        server is reported as "down" within ``health_timeout_ms``, never raised."""
        from .monitoring.health import check_health

        return check_health(self, timeout_s=timeout_s)

    def metrics(self) -> dict[str, Any]:
        """Per model/operation counts, errors and latency percentiles; pool, heartbeats, slow
        queries, the recent window and the query cache, as a JSON-ready dict."""
        figures = self._rt.monitor.snapshot()
        cache = getattr(self._rt, "cache", None)
        figures["cache"] = cache.stats() if cache is not None and hasattr(cache, "stats") else None
        figures["cache_bus"] = cache.bus_stats() if cache is not None and hasattr(cache, "bus_stats") else None
        figures["retries"] = self._rt.retry.stats()
        figures["breaker"] = self._rt.breaker.stats()
        figures["topology"] = describe_topology(self._rt)
        return figures

    def metrics_registry(self) -> Any:
        """A ``prometheus_client.CollectorRegistry`` exporting these metrics (``prometheus`` extra)."""
        from .monitoring import prometheus

        cache = getattr(self._rt, "cache", None)
        return prometheus.registry(self._rt.monitor, cache.stats if cache is not None and hasattr(cache, "stats") else None)

    def explain(self, model: Any, query: Mapping[str, Any] | None = None, *, sort: Any = None) -> dict[str, Any]:
        """The winning plan of ``find(model, query, sort=sort)``: ``index``, ``used_index``,
        ``docs_examined``, ``keys_examined``, ``n_returned``, ``raw`` (``None`` where the server
        does not say; ``notes`` explains)."""
        from .monitoring.explain import explain_filter

        info = self._model(model)
        filt = self._scope(info, self._guard(info, "find"), q.compile_filter(info.cls, query))
        return explain_filter(self, info, filt, q.compile_sort(info.cls, sort))

    def advise(self, *, explain: bool = True) -> list[dict[str, Any]]:
        """Read shapes seen by the monitor that scan a whole collection, with the index to add."""
        from .monitoring.advisor import advise

        return advise(self, explain=explain)
