"""Runtime: what every view of one ``Database`` shares.

A ``Database`` and the actor views made from it (``as_actor``) share one ``Runtime``: the
config, the connection, the retry policy and circuit breaker, the query cache, the monitor,
field encryption, read routing, the write hooks (cache invalidation) and the change log (the
audit trail and journal records, ``astro_db.changes``).
It holds state only; the executor's steps (``astro_db.ops.steps``) act on it.
"""

from __future__ import annotations

import datetime as _dt
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ..backends.capabilities import capabilities
from ..cache import QueryCache
from ..changes import ChangeLog
from ..config import DatabaseConfig
from ..driver.connection import Connection
from ..driver.gateway import Collection, Gateway
from ..driver.retry import BreakerHeartbeats, CircuitBreaker, RetryPolicy
from ..driver.routing import ReadRouter
from ..errors import ConfigError
from ..events import WriteEvent
from ..monitoring import Monitor, tracing
from ..registry import ModelInfo, ModelRegistry
from ..security.crypto import FieldCrypto
from ..security.masking import install_log_masking
from .pages import PageTokens

__all__ = ["Runtime", "make_config", "utcnow"]


class Runtime:
    """The shared state and policies of one Database."""

    def __init__(self, config: DatabaseConfig, registry: ModelRegistry, listeners: Any = ()) -> None:
        self.config = config
        self.capabilities = capabilities(config)  # what the backend can do (backends.capabilities)
        self.registry = registry
        self.listeners: list[Any] = list(listeners)
        self.hooks: list[Callable[[WriteEvent], None]] = []
        self.cache = QueryCache.from_config(config, registry)
        self.router = ReadRouter(config)  # read_preference= on reads (astro_db.driver.routing)
        self.hooks.append(self.cache.on_write)
        self.crypto = FieldCrypto.from_config(config, registry)
        self.changes = ChangeLog(audit=config.audit, journal=config.journal)  # not skippable per call
        install_log_masking()
        self.monitor = Monitor(config, registry)
        if config.monitoring and self.capabilities.driver_events:
            self.listeners.extend(self.monitor.listeners())
        self.listeners.extend(tracing.listeners(config))  # which server a traced operation reached
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
        if self.capabilities.driver_events:  # the server seen answering again ends the breaker's cool-down
            self.listeners.append(BreakerHeartbeats(self.breaker))
        self.connection = Connection(config, self.listeners)
        if self.capabilities.network:
            self.breaker.watch(_weak_ping(self))  # held weakly: a dropped Database stops the looking
        self.retry = RetryPolicy(config)
        self.one_command_writes = config.one_command_writes and self.capabilities.bulk_write
        self.bulk_write: bool | None = None  # does the server have bulkWrite? (ops.bulk; asked on first use)
        self.indexes_ensured = False
        self.page_tokens = PageTokens.from_config(config)  # db.page's tokens (ops.pages)
        self._gateway: tuple[Any, Gateway | None] = (None, None)

    def server_answers(self) -> bool | None:
        """The breaker's cheap look at the server while it is open: a ping bounded by its probe
        interval (True: it answered); None once the Database is disconnected (stop looking)."""
        if not self.connection.connected:
            return None
        return self.connection.is_connected(timeout_s=self.breaker.probe_interval_s)

    # --- collections and reads ---------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        """The gateway to this connection's database (``driver.gateway``), built once per connection:
        the only holder of the driver's database and collection objects."""
        database = self.connection.database
        built = self._gateway
        if built[0] is not database or built[1] is None:
            built = self._gateway = (database, Gateway(database))
        return built[1]  # type: ignore[return-value]

    def coll(self, info: ModelInfo) -> Collection:
        """The model's collection handle (``driver.gateway``), built once per connection."""
        return self.gateway[info.collection]


def _weak_ping(runtime: Runtime) -> Callable[[], bool | None]:
    """``runtime.server_answers`` without keeping ``runtime`` alive (None once it is gone)."""
    ref = weakref.ref(runtime)

    def ping() -> bool | None:
        alive = ref()
        return None if alive is None else alive.server_answers()

    return ping


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
