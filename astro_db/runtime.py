"""Runtime: what every view of one ``Database`` shares, and how one driver call is run.

A ``Database`` and the actor views made from it (``as_actor``) share one ``Runtime``: the
config, the connection, the retry policy and circuit breaker, the query cache, the monitor,
field encryption, read routing, the write hooks (cache invalidation) and the change log (the
audit trail and journal records, ``astro_db.changes``).
``Runtime.run`` is the single path of every driver call: breaker check, time bound, retries
(never inside a transaction), translation of the failure, and the monitor's figures.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from . import timeouts
from .cache import QueryCache, cache_key
from .changes import ChangeLog
from .config import DatabaseConfig
from .connection import Connection
from .errors import AstroDBError, ConfigError
from .events import WriteEvent
from .monitoring import Monitor
from .registry import ModelInfo, ModelRegistry
from .retry import CircuitBreaker, RetryPolicy
from .routing import ReadRouter
from .security.crypto import FieldCrypto
from .security.masking import install_log_masking
from .stale import fetch_or_stale

__all__ = ["Runtime", "make_config", "utcnow"]

T = TypeVar("T")
_WRITE_OPERATIONS = frozenset({"create", "create_many", "update", "update_many", "delete", "delete_many"})


class Runtime:
    """The shared state and policies of one Database."""

    def __init__(self, config: DatabaseConfig, registry: ModelRegistry, listeners: Any = ()) -> None:
        self.config = config
        self.registry = registry
        self.listeners: list[Any] = list(listeners)
        self.hooks: list[Callable[[WriteEvent], None]] = []
        self.cache = QueryCache.from_config(config, registry)
        self.router = ReadRouter(config)  # read_preference= on reads (astro_db.routing)
        self.hooks.append(self.cache.on_write)
        self.crypto = FieldCrypto.from_config(config, registry)
        self.changes = ChangeLog(audit=config.audit, journal=config.journal)  # not skippable per call
        install_log_masking()
        self.monitor = Monitor(config, registry)
        if config.monitoring and not config.is_embedded:  # mongomock-ng publishes no driver events
            self.listeners.extend(self.monitor.listeners())
        self.connection = Connection(config, self.listeners)
        self.retry = RetryPolicy(config)
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
        self.indexes_ensured = False
        self.collections: tuple[Any, dict[str, Any]] = (None, {})

    # --- one driver call ---------------------------------------------------------------------

    def run(self, info: ModelInfo | None, operation: str, fn: Callable[[], T], transaction: Any = None, *,
            retry: bool = True, query: tuple[Any, Any] | None = None) -> T:
        """Run one driver call: breaker check, retries (never inside a transaction), translation;
        the monitor records its latency and error kind (and a read's ``query`` shape: filter, sort)."""
        name = f"{operation} on {info.name}" if info else operation
        model = info.name if info else None
        if query is not None:
            self.monitor.note_query(model, operation, *query)
        started = time.perf_counter()
        try:
            self.breaker.before_call()
            bound = timeouts.current_bound(self.config.operation_timeout_ms)
            try:
                with timeouts.under(bound, name):
                    result = self.retry.call(fn, operation=name, retry=retry and transaction is None,
                                             deadline=bound.deadline if bound else None)
            except AstroDBError:
                self.breaker.release_probe()
                raise
            except Exception as exc:
                self.breaker.record_failure(exc)
                if info is not None and operation in _WRITE_OPERATIONS:
                    self.cache.invalidate(info.name)  # the write may have landed before it failed
                raise timeouts.final_error(exc, bound, operation=operation, model=model) from exc
            except BaseException:
                self.breaker.release_probe()
                raise
        except AstroDBError as exc:
            self.monitor.record_operation(model, operation, time.perf_counter() - started, type(exc).__name__)
            raise
        self.breaker.record_success()
        self.monitor.record_operation(model, operation, time.perf_counter() - started)
        return result

    def emit(self, event: WriteEvent) -> None:
        """Tell every write hook about a successful write."""
        for hook in self.hooks:
            hook(event)

    # --- collections and reads ---------------------------------------------------------------

    def coll(self, info: ModelInfo) -> Any:
        """The model's PyMongo collection, built once per connection (building one costs ~12 µs)."""
        database = self.connection.database
        built = self.collections
        if built[0] is not database:
            built = self.collections = (database, {})
        coll = built[1].get(info.collection)
        if coll is None:
            coll = built[1][info.collection] = database[info.collection]
        return coll

    def read_coll(self, info: ModelInfo, read_preference: Any, transaction: Any) -> tuple[Any, str]:
        """The model's collection routed by ``read_preference`` (``astro_db.routing``; a
        ``TransactionError`` for a non-primary one inside a transaction) and its cache-key part."""
        return self.router.route(self.coll(info), read_preference, transaction)

    def cached(self, info: ModelInfo, kind: str, filt: dict, options: Any, cache: bool | None,
               transaction: Any, fetch: Callable[[], T], stale_ok: bool = False, route: str | None = None) -> T:
        """``fetch()`` through the query cache when the call or the model asks for it (never
        inside a transaction, which must read its own uncommitted writes); with ``stale_ok``
        the answer is remembered, and stands in (marked) while the server is unavailable."""
        store = self.cache
        if transaction is not None:
            return fetch()
        use_cache = store.wanted(info.name, cache)
        if stale_ok and store.enabled:
            return fetch_or_stale(store, cache_key(info.name, kind, filt, options, route), fetch, use_cache=use_cache)
        if not use_cache:
            return fetch()
        return store.get_or_fetch(cache_key(info.name, kind, filt, options, route), fetch)


def utcnow() -> _dt.datetime:
    """Now in UTC, truncated to milliseconds (what BSON dates keep)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_config(config: Any, overrides: Mapping[str, Any]) -> DatabaseConfig:
    """A ``DatabaseConfig`` from what ``Database()`` was given: a URL, a config, a dict or None."""
    if config is None:
        return DatabaseConfig.from_env(**overrides)
    if isinstance(config, str):
        return DatabaseConfig(url=config).replace(**overrides) if overrides else DatabaseConfig(url=config)
    if isinstance(config, DatabaseConfig):
        return config.replace(**overrides) if overrides else config
    if isinstance(config, Mapping):
        cfg = DatabaseConfig.from_dict(config)
        return cfg.replace(**overrides) if overrides else cfg
    raise ConfigError(f"Database() takes a URL, a DatabaseConfig or a dict, got {type(config).__name__}")
