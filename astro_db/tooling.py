"""The operator's side of ``Database``: indexes, health, metrics, explain, the advisor, key
rotation and maintenance.

A mixin, so ``db.health()`` reads as the contract says while ``database.py`` keeps to the
service calls. Each method is authorized by the executor's table (``ops.operation.PERMISSIONS``)
and delegates to ``astro_db.indexes``, ``astro_db.monitoring``, ``security.rotation`` or
``maintenance``, which make their driver calls through the executor's run step.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from .indexes import sync_model_indexes
from .monitoring.topology import describe_topology

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .maintenance import CleanupReport
    from .ops import Executor

__all__ = ["OperatorMixin"]


class OperatorMixin:
    """Index sync, ``health()``, ``metrics()``, ``metrics_registry()``, ``explain()``, ``advise()``,
    ``rotate_keys()``, ``cleanup()``."""

    _executor: Executor

    def _check(self, name: str, model: Any = None) -> None:  # implemented by Database
        raise NotImplementedError

    def sync_indexes(self, *, drop_extra: bool = False) -> list[dict[str, Any]]:
        """Create every index the models declare that the server lacks; report undeclared ones
        (and drop them with ``drop_extra=True``). One dict per model."""
        self._check("sync_indexes")
        ex = self._executor
        database = ex.runtime.gateway
        return [
            ex.call(info, "sync_indexes", partial(sync_model_indexes, database, info, drop_extra=drop_extra)).as_dict()
            for info in ex.runtime.registry
        ]

    def health(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"down", "latency_ms", "pool", "reasons", ...}``; a dead
        server is reported as "down" within ``health_timeout_ms``, never raised."""
        from .monitoring.health import check_health

        self._check("health")
        return check_health(self._executor, timeout_s=timeout_s)

    def metrics(self) -> dict[str, Any]:
        """Per model/operation counts, errors and latency percentiles; pool, heartbeats, slow
        queries, the recent window, the query cache and its bus, retries, the breaker, the
        topology and unreadable envelopes (``crypto``), as a JSON-ready dict."""
        self._check("metrics")
        rt = self._executor.runtime
        figures = rt.monitor.snapshot()
        figures["cache"] = rt.cache.stats()
        figures["retries"] = rt.retry.stats()
        figures["breaker"] = rt.breaker.stats()
        figures["topology"] = describe_topology(rt)
        figures["cache_bus"] = rt.cache.bus_stats()
        figures["crypto"] = rt.crypto.stats()  # {"unreadable": envelopes that did not open}
        return figures

    def metrics_registry(self) -> Any:
        """A ``prometheus_client.CollectorRegistry`` exporting these metrics (``prometheus`` extra)."""
        from .monitoring import prometheus

        self._check("metrics_registry")
        rt = self._executor.runtime
        return prometheus.registry(rt.monitor, rt.cache.stats)

    def explain(self, model: Any, query: Mapping[str, Any] | None = None, *, sort: Any = None) -> dict[str, Any]:
        """The winning plan of ``find(model, query, sort=sort)``: ``index``, ``used_index``,
        ``docs_examined``, ``keys_examined``, ``n_returned``, ``raw`` (``None`` where the server
        does not say; ``notes`` explains)."""
        from .monitoring.explain import explain_find

        self._check("explain")
        return explain_find(self._executor, model, query, sort)

    def advise(self, *, explain: bool = True) -> list[dict[str, Any]]:
        """Read shapes seen by the monitor that scan a whole collection, with the index to add."""
        from .monitoring.advisor import advise

        self._check("advise")
        return advise(self._executor, explain=explain)

    def rotate_keys(self, *, dry_run: bool = False, batch_size: int = 500) -> dict[str, int]:
        """Re-encrypt every value not sealed with the primary key; ``{model: documents}``
        (``security.rotation``). An admin's call."""
        from .security.rotation import ROTATION_ACTOR, rotate

        self._check("rotate_keys")
        ex = self._executor
        rt = ex.runtime
        return rotate(rt.crypto, rt.gateway, rt.registry, lambda fn: ex.call(None, "rotate_key", fn),
                      lambda info, written: ex.after_write(info, written, actor=ROTATION_ACTOR),
                      dry_run=dry_run, batch_size=batch_size)

    def storage_stats(self) -> dict[str, Any]:
        """Documents, data and index sizes per collection, the service's own collections apart
        (``monitoring.storage``; ``astro-db stats``). A monitoring call."""
        from .monitoring.storage import storage_stats

        self._check("storage_stats")
        ex = self._executor
        rt = ex.runtime
        return storage_stats(cast("Database", self), ex.gateway("storage stats"), rt.registry,
                             database=rt.config.database_name, sizes=rt.capabilities.storage_stats)

    def cleanup(self, *, dry_run: bool = False, now: _dt.datetime | None = None) -> CleanupReport:
        """Delete expired insights and the documents of missing or deleted users
        (``maintenance``); ``dry_run`` only counts. An admin's call."""
        from .maintenance import cleanup

        self._check("cleanup")
        ex = self._executor
        return cleanup(_CleanupCalls(cast("Database", self)), ex.gateway("distinct"), ex.runtime.registry,
                       dry_run=dry_run, now=now)

    def reconcile_changes(self) -> dict[str, Any]:
        """Close every gap in the change records (docs/reliability.md); an admin's call. Writes
        the records a failed write left pending (those of writes whose outcome was unknown only
        if they landed), settles the delete intents a crash left unconfirmed (confirmed if the
        document is gone, dropped if not), then rebuilds the record of every document whose
        current revision has none. Returns ``{"pending": <records written>, "intents":
        {"confirmed": n, "dropped": m}, "rebuilt": {model: <records rebuilt>}, "erasures":
        {"finished": n, "scrubbed": m}}``: an erasure a crash interrupted (``erase_user``) is
        finished, and records of erased users written since their erasure are scrubbed. The
        models of the deletes it confirms and of the documents it records are announced to the
        caches (this ``Database``'s, the process's others, every process on the bus) as wholly
        changed: the writer that crashed may have told none of them."""
        from .personal import resume_erasures

        self._check("reconcile_changes")
        ex = self._executor
        changes = ex.runtime.changes
        database = ex.runtime.gateway
        infos = list(ex.runtime.registry)

        def run(fn: Any) -> Any:
            return ex.call(None, "reconcile changes", fn)

        pending = changes.flush(run, database)
        unheard: set[str] = set()  # models a crashed writer changed without a word to any cache
        intents = changes.resolve_intents(run, database, unheard)
        rebuilt = changes.rebuild(run, database, infos) if changes.enabled else {}
        unheard.update(model for model, count in rebuilt.items() if count)
        for model in sorted(unheard):  # dropped here and announced on the bus, as a write of the model is
            ex.runtime.cache.invalidate(model)
        erasures = resume_erasures(cast("Database", self)._trusted(), ex)  # after the records are whole
        return {"pending": pending, "intents": intents, "rebuilt": rebuilt, "erasures": erasures}


class _CleanupCalls:
    """``maintenance.Service`` on a ``Database``: the service calls cleanup makes, through the
    pipeline (authorization, change records, cache invalidation)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def count(self, model: str, query: Mapping[str, Any]) -> int:
        return self._db.count(model, query)

    def delete_many(self, model: str, query: Mapping[str, Any]) -> int:
        return self._db.delete_many(model, query)

    def find_ids(self, model: str, query: Mapping[str, Any]) -> list[Any]:
        return [row["_id"] for row in self._db.find(model, query, projection=["_id"], lean=True)]
