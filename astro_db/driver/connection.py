"""The connection manager: one MongoClient per Database, connected with bounded retries.

The client is built and registered by MongoEngine under a per-``Database`` alias (so two
``Database`` objects never share a client or data), with the pool options of the config.
``connect()`` pings the server up to ``connect_attempts`` times with exponential backoff and
jitter (the ``backoff`` library), all attempts sharing one budget (``connect_budget_ms``), and
logs each failure at WARNING with the masked URL (shown on stderr even with no logging set up).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import backoff
import mongoengine
import pymongo
from pymongo import errors as pm_errors
from pymongo.driver_info import DriverInfo

from .._version import __version__
from ..backends.capabilities import capabilities

if TYPE_CHECKING:  # pragma: no cover
    from .gateway import PyMongoDatabase
from ..config import DatabaseConfig, RetryConfig
from ..errors import DatabaseConnectionError, EmbeddedDatabaseWarning, NotConnectedError, scrub, translate
from . import gateway
from .routing import ReadPreference

__all__ = ["Connection", "summarise", "EMBEDDED_NOTICE"]

log = logging.getLogger(__name__)
_aliases = itertools.count(1)


EMBEDDED_NOTICE = (
    "no URL and no MONGODB_URL: astro_db is using the embedded in-memory backend (mongomock-ng); "
    "every write is lost when this process exits. Pass a mongodb:// URL (or set MONGODB_URL), or "
    "'mongomock://localhost/NAME' to choose the embedded backend on purpose"
)


class Connection:
    """Owns the client of one ``Database``: build, ping with retries, close."""

    def __init__(self, config: DatabaseConfig, listeners: Sequence[Any] = ()) -> None:
        if capabilities(config).test_double:
            from ..backends import embedded

            embedded.require()  # ConfigError naming the 'embedded' extra without mongomock-ng
        self.config = config
        self.alias = f"astro_db_{next(_aliases)}"
        self._listeners = list(listeners)
        self._client: Any = None
        self._database: PyMongoDatabase | None = None
        #: the database object while connected, else None: ``database`` without its property call
        #: or its error (``Runtime.coll`` compares it with the one its gateway was built for)
        self.current: PyMongoDatabase | None = None
        self._lock = threading.Lock()
        # injectable so tests can drive the connect budget without waiting
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep

    # --- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Build the client if needed and prove the server answers; idempotent."""
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
                self._database = self.current = gateway.database_of(self._client, self.config.database_name)
        try:
            self._ping_with_retries()
        except Exception:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Close the client and forget it; safe to call twice or before connect()."""
        with self._lock:
            client, self._client, self._database = self._client, None, None
            self.current = None
        if client is None:
            return
        gateway.disconnect(self.alias, client)
        log.info("disconnected from %s", self.config.masked_url)

    def is_connected(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers a ping now (bounded by ``timeout_s``), not a stored flag."""
        client = self._client
        if client is None:
            return False
        try:
            if not capabilities(self.config).network:
                gateway.ping(client)
            else:
                with pymongo.timeout(timeout_s):
                    gateway.ping(client)
            return True
        except Exception:
            return False

    @property
    def client(self) -> Any:
        if self._client is None:
            raise NotConnectedError("not connected: call db.connect() (or use 'with Database(...) as db')")
        return self._client

    @property
    def database(self) -> Any:
        """The PyMongo ``Database`` object (mongomock-ng's for the embedded backend)."""
        if self._database is None:
            raise NotConnectedError("not connected: call db.connect() (or use 'with Database(...) as db')")
        return self._database

    @property
    def connected(self) -> bool:
        """Whether a client exists (cheap; ``is_connected()`` asks the server)."""
        return self._client is not None

    # --- internals ---------------------------------------------------------------------------

    def _build_client(self) -> Any:
        cfg = self.config
        if not capabilities(cfg).network:
            return self._build_embedded_client()
        options = cfg.client_options()
        if self._listeners:
            options["event_listeners"] = self._listeners
        # MongoEngine hands out an existing client when another alias has identical settings;
        # a per-Database driver tag keeps every Database on its own client and pool.
        options["driver"] = DriverInfo("astro_db", __version__, self.alias)
        if "readPreference" in options:
            # MongoEngine passes MongoClient a read_preference argument of its own (primary), which
            # beats the readPreference option: hand it ours, tags and staleness included, as that.
            for key in ("readPreference", "readPreferenceTags", "maxStalenessSeconds"):
                options.pop(key, None)
            options["read_preference"] = ReadPreference.from_config(cfg.topology).to_pymongo()
        log.info("connecting to %s (pool %d-%d)", cfg.masked_url, cfg.pool.min_pool_size, cfg.pool.max_pool_size)
        if cfg.timeouts.socket_timeout_ms is None and cfg.timeouts.operation_timeout_ms is None:
            log.warning("no bound on a reply from %s: socket_timeout_ms and operation_timeout_ms are both None, "
                        "so a call waits for a server that stops answering until the connection drops; "
                        "set either (docs/reliability.md)", cfg.masked_url)
        try:
            return mongoengine.connect(db=cfg.database_name, alias=self.alias, host=cfg.client_url, **options)
        except Exception as exc:
            raise translate(exc, operation="connect") from exc

    def _build_embedded_client(self) -> Any:
        from ..backends import embedded

        cfg = self.config
        if cfg.url is None:
            warnings.warn(EMBEDDED_NOTICE, EmbeddedDatabaseWarning, stacklevel=_outside_package())
        log.info("using the embedded backend for database %r", cfg.database_name)
        return embedded.connect(cfg.database_name, self.alias)

    def _ping_with_retries(self) -> None:
        """Ping up to ``connect_attempts`` times, all within ``connect_budget_ms``.

        Each attempt gets a fair share of what is left of the budget (never more than
        ``server_selection_timeout_ms``), so with the defaults (30 s budget, 3 attempts) a dead
        server is reported after about 30 s with a warning every 10 s, not after 3 x 30 s.
        """
        cfg, retry = self.config, self.config.retry
        attempts = retry.connect_attempts
        started = self.clock()
        deadline = started + retry.connect_budget_ms / 1000
        waits = _waits(retry)
        last: pm_errors.PyMongoError | None = None
        made = 0
        for made in range(1, attempts + 1):
            left = deadline - self.clock()
            share = min(cfg.timeouts.server_selection_timeout_ms / 1000, left / (attempts - made + 1))
            try:
                self._ping(max(share, 0.001))
                log.info("connected to %s", cfg.masked_url)
                return
            except pm_errors.PyMongoError as exc:
                last = exc
                if not isinstance(exc, _RETRIED):
                    break
                wait = next(waits)
                if made == attempts or self.clock() + wait >= deadline:
                    log.warning("connection attempt %d/%d to %s failed (%s); giving up",
                                made, attempts, cfg.masked_url, summarise(exc))
                    break
                log.warning("connection attempt %d/%d to %s failed (%s); retrying in %.2f s",
                            made, attempts, cfg.masked_url, summarise(exc), wait)
                self.sleep(wait)
        assert last is not None
        elapsed = self.clock() - started
        raise DatabaseConnectionError(
            f"could not reach MongoDB at {cfg.masked_url} after {made} attempt{'s' if made > 1 else ''} "
            f"in {elapsed:.1f} s (last error: {summarise(last)}); check that the server is running "
            "and the URL/credentials/TLS settings"
        ) from last

    def _ping(self, timeout_s: float) -> None:
        """One ping, its server selection bounded by ``timeout_s`` (PyMongo's client-side timeout)."""
        if not capabilities(self.config).network:
            gateway.ping(self.client)
            return
        with pymongo.timeout(timeout_s):
            gateway.ping(self.client)


_RETRIED = (pm_errors.ConnectionFailure, pm_errors.ConfigurationError)
_NOISE = re.compile(r" \(configured timeouts:|, Timeout: |, Topology Description: ")


def _outside_package() -> int:
    """The ``stacklevel`` of the first frame outside astro_db, so a warning names the user's line."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # astro_db/
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _waits(cfg: RetryConfig) -> Iterator[float]:
    """The waits between connection attempts: ``backoff.expo``, jittered when configured."""
    gen = backoff.expo(base=2, factor=cfg.backoff_base_s, max_value=cfg.backoff_max_s)
    next(gen)  # backoff's generators are primed with one send(None)
    for value in gen:
        yield backoff.full_jitter(value) if cfg.backoff_jitter else value


def summarise(exc: BaseException) -> str:
    """One short line for a driver error: the first clause of its message, secrets scrubbed.

    PyMongo's server-selection message runs on into the timeouts and the whole topology; the
    line stops before those, and before any parenthesis it would leave open."""
    text = _NOISE.split(scrub(str(exc)).splitlines()[0] if str(exc) else "", maxsplit=1)[0].strip()
    text = text[:200]
    while text.count("(") > text.count(")"):
        text = text[: text.rindex("(")].rstrip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
