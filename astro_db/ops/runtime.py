"""Runtime: what every view of one ``Database`` shares.

A ``Database`` and the actor views made from it (``as_actor``) share one ``Runtime``: the
config, the connection, the retry policy and circuit breaker, the query cache, the monitor,
field encryption, read routing, the write hooks (cache invalidation) and the change log (the
audit trail and journal records, ``astro_db.changes``).
It holds state only; the executor's steps (``astro_db.ops.steps``) act on it.
"""

from __future__ import annotations

import datetime as _dt
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..backends.capabilities import capabilities
from ..cache import QueryCache
from ..cache.bus import server_identity
from ..cache.store import redis_namespace
from ..changes import ChangeLog
from ..config import DatabaseConfig, resolve
from ..driver.connection import Connection
from ..driver.gateway import Collection, Gateway
from ..driver.retry import BreakerHeartbeats, CircuitBreaker, RetryPolicy
from ..driver.routing import ReadRouter
from ..driver.timeouts import NOT_STARTED, Bound
from ..errors import EncryptionError
from ..events import WriteEvent
from ..monitoring import Monitor, tracing
from ..registry import ModelInfo, ModelRegistry
from ..security.crypto import FieldCrypto
from ..security.masking import install_log_masking
from ..security.vault import Run
from .pages import PageTokens
from .steps import run

if TYPE_CHECKING:
    from ..query.walker import Walker

__all__ = ["Runtime", "make_config", "utcnow"]

T = TypeVar("T")


class Runtime:
    """The shared state and policies of one Database."""

    def __init__(self, config: DatabaseConfig, registry: ModelRegistry, listeners: Any = ()) -> None:
        self.config = config
        self.capabilities = capabilities(config)  # what the backend can do (backends.capabilities)
        self.registry = registry
        self.listeners: list[Any] = list(listeners)
        self.hooks: list[Callable[[WriteEvent], None]] = []
        identity = server_identity(config)  # which data the cache holds (one process's caches of it share invalidations)
        self.cache = QueryCache.from_config(config.cache, registry, identity=identity,
                                            namespace=redis_namespace(config, identity),
                                            shared_data=self.capabilities.shared_data,
                                            encryption_key=config.encryption.encryption_key)
        self.router = ReadRouter(config.topology)  # read_preference= on reads (astro_db.driver.routing)
        self.hooks.append(self.cache.on_write)
        self.crypto = FieldCrypto.from_config(config, registry)  # its key vault attached (__setattr__)
        self.changes = ChangeLog(audit=config.change_records.audit, journal=config.change_records.journal)  # not skippable per call
        install_log_masking()
        self.monitor = Monitor(config.health, registry, max_pool_size=config.pool.max_pool_size)
        if config.health.monitoring and self.capabilities.driver_events:  # per-call ones only when asked
            self.listeners.extend(self.monitor.listeners(commands=config.health.command_monitoring))
        self.listeners.extend(tracing.listeners(config))  # which server a traced operation reached (with an SDK)
        self.breaker = CircuitBreaker(config.retry.breaker_threshold, config.retry.breaker_cooldown_s)
        if self.capabilities.driver_events:  # the server seen answering again ends the breaker's cool-down
            self.listeners.append(BreakerHeartbeats(self.breaker))
        self.connection = Connection(config, self.listeners)
        if self.capabilities.network:
            self.breaker.watch(_weak_ping(self))  # held weakly: a dropped Database stops the looking
        self.retry = RetryPolicy(config.retry)
        # server selection's own bound, for the run step (the embedded backend selects nothing)
        self.selection_s: float | None = (config.timeouts.server_selection_timeout_ms / 1000.0
                                          if self.capabilities.network else None)
        # the budget a call of the service opens when it gives no ``timeout_ms=``: one ``Bound`` of
        # ``operation_timeout_ms`` not started yet, which the call's first driver call starts (``timeouts.enter``)
        ms = config.timeouts.operation_timeout_ms
        self.call_budget: Bound | None = Bound(ms, NOT_STARTED, "operation_timeout_ms") if ms else None
        self.one_command_writes = config.change_records.one_command_writes and self.capabilities.bulk_write
        self.bulk_write: bool | None = None  # does the server have bulkWrite? (ops.bulk; asked on first use)
        self.indexes_ensured = False
        # (collection, key fields) of the upsert keys a unique index on the server was seen to
        # ensure (``WriteRunner.require_unique``: one listIndexes per model and key, then kept)
        self.unique_keys: set[tuple[str, frozenset[str]]] = set()
        self.page_tokens = PageTokens.from_config(config)  # db.page's tokens (ops.pages)
        # the compile step's kept work (ops.steps.compile), held here so that it, and the field
        # encryption keys its keys hold, goes with this runtime: the trusted app's walks, and per
        # by-id filter shape whether its compiled form is the walk's answer
        self.trusted_walks: dict[Any, Walker] = {}
        self.by_id_shapes: dict[Any, bool] = {}
        self._gateway: tuple[Any, Gateway | None] = (None, None)

    # ``crypto``: field encryption (``security.crypto``), a plain attribute read by every call's
    # compile, seal and open steps (no property call); setting it attaches its key vault to this
    # Runtime's client (the vault is a collection of the same connection) and to the run step,
    # which every call the vault sends passes: ``__setattr__``.
    crypto: FieldCrypto

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "crypto" and value.vault is not None:
            value.vault.attach(_weak_vault(self, value.vault.namespace), _weak_run(self))
        object.__setattr__(self, name, value)

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
        """The model's collection handle (``driver.gateway``), built once per connection. Every
        call asks for one: while the gateway is the current connection's and holds the handle,
        it is one look (no ``gateway`` property, no ``Connection.database`` property, no
        ``Gateway.__getitem__``); otherwise those build or refuse it, as before."""
        built = self._gateway
        gateway = built[1]
        if gateway is None or built[0] is not self.connection.current:
            gateway = self.gateway  # connects the gateway to this connection (or raises NotConnectedError)
        coll = gateway.collections.get(info.collection)
        return coll if coll is not None else gateway[info.collection]


def _weak_vault(runtime: Runtime, namespace: str) -> Callable[[], Any]:
    """The key vault collection of ``runtime``'s client, without keeping ``runtime`` alive."""
    ref = weakref.ref(runtime)
    db, _, coll = namespace.partition(".")

    def vault() -> Any:
        rt = ref()
        if rt is None:
            raise EncryptionError("the Database of this key vault is gone")
        return rt.gateway.sibling(db)[coll]

    return vault


def _weak_run(runtime: Runtime) -> Run:
    """The run step (``steps.run.call``: breaker, time budget, retries, translation, metrics) as
    the key vault's function, an operation of no model outside any transaction (the key vault is
    not written in one), without keeping ``runtime`` alive."""
    ref = weakref.ref(runtime)

    def run_call(operation: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        rt = ref()
        if rt is None:
            raise EncryptionError("the Database of this key vault is gone")
        return run.call(rt, None, operation, fn, retry=retry)

    return run_call


def _weak_ping(runtime: Runtime) -> Callable[[], bool | None]:
    """``runtime.server_answers`` without keeping ``runtime`` alive (None once it is gone)."""
    ref = weakref.ref(runtime)

    def ping() -> bool | None:
        alive = ref()
        return None if alive is None else alive.server_answers()

    return ping


def utcnow() -> _dt.datetime:
    """Now in UTC, truncated to milliseconds (what BSON dates keep): the whole milliseconds of
    the system clock as one float of seconds, whose error (under 0.25 µs until 2106) rounds away
    to the exact millisecond (a third of ``datetime.now`` and a ``replace``)."""
    return _from_timestamp(_time_ns() // 1_000_000 / 1000, _dt.timezone.utc)


_from_timestamp = _dt.datetime.fromtimestamp
_time_ns = time.time_ns


def make_config(config: Any, overrides: Mapping[str, Any]) -> DatabaseConfig:
    """A ``DatabaseConfig`` from what ``Database()`` was given (a URL, a config, a dict or None)
    and its keywords, under the one precedence rule (``astro_db.config.resolve``)."""
    return resolve(config, overrides)
