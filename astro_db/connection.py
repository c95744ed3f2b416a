"""The connection manager: one MongoClient per Database, connected with bounded retries.

The client is built and registered by MongoEngine under a per-``Database`` alias (so two
``Database`` objects never share a client or data), with the pool options of the config.
``connect()`` pings the server up to ``connect_attempts`` times with exponential backoff and
jitter (the ``backoff`` library), logging each failure with the masked URL.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any, Sequence

import backoff
import mongoengine
import pymongo
from pymongo import errors as pm_errors
from pymongo.driver_info import DriverInfo

from ._version import __version__
from .config import DatabaseConfig
from .errors import DatabaseConnectionError, NotConnectedError, translate
from .routing import ReadPreference

__all__ = ["Connection"]

log = logging.getLogger(__name__)
_aliases = itertools.count(1)
_embedded_logged = threading.Event()


class Connection:
    """Owns the client of one ``Database``: build, ping with retries, close."""

    def __init__(self, config: DatabaseConfig, listeners: Sequence[Any] = ()) -> None:
        self.config = config
        self.alias = f"astro_db_{next(_aliases)}"
        self._listeners = list(listeners)
        self._client: Any = None
        self._database: Any = None
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Build the client if needed and prove the server answers; idempotent."""
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
                self._database = self._client[self.config.database_name]
        try:
            self._ping_with_retries()
        except Exception:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Close the client and forget it; safe to call twice or before connect()."""
        with self._lock:
            client, self._client, self._database = self._client, None, None
        if client is None:
            return
        try:
            mongoengine.disconnect(alias=self.alias)
        except Exception:  # pragma: no cover - mongoengine already forgot it
            client.close()
        log.info("disconnected from %s", self.config.masked_url)

    def is_connected(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers a ping now (bounded by ``timeout_s``), not a stored flag."""
        client = self._client
        if client is None:
            return False
        try:
            if self.config.is_embedded:
                client.admin.command("ping")
            else:
                with pymongo.timeout(timeout_s):
                    client.admin.command("ping")
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
        if cfg.is_embedded:
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
            options["read_preference"] = ReadPreference.from_config(cfg).to_pymongo()
        log.info("connecting to %s (pool %d-%d)", cfg.masked_url, cfg.min_pool_size, cfg.max_pool_size)
        try:
            return mongoengine.connect(db=cfg.database_name, alias=self.alias, host=cfg.url, **options)
        except Exception as exc:
            raise translate(exc, operation="connect") from exc

    def _build_embedded_client(self) -> Any:
        import mongomock_ng

        cfg = self.config
        if cfg.url is None and not _embedded_logged.is_set():
            _embedded_logged.set()
            log.warning(
                "no MONGODB_URL given: using the embedded in-memory backend (mongomock-ng); "
                "data lives only in this process"
            )
        log.info("using the embedded backend for database %r", cfg.database_name)
        return mongoengine.connect(
            db=cfg.database_name,
            alias=self.alias,
            host=f"mongodb://localhost/{cfg.database_name}",
            mongo_client_class=mongomock_ng.MongoClient,
            tz_aware=True,
            uuidRepresentation="standard",
            _store=mongomock_ng.store.ServerStore(),  # a store of its own, never shared
        )

    def _ping_with_retries(self) -> None:
        cfg = self.config
        attempts = cfg.connect_attempts

        def log_retry(details: dict[str, Any]) -> None:
            exc = details["exception"]
            log.warning(
                "connection attempt %d/%d to %s failed (%s); retrying in %.2fs",
                details["tries"], attempts, cfg.masked_url, type(exc).__name__, details["wait"],
            )

        def log_giveup(details: dict[str, Any]) -> None:
            log.error(
                "connection attempt %d/%d to %s failed (%s); giving up",
                details["tries"], attempts, cfg.masked_url, type(details["exception"]).__name__,
            )

        @backoff.on_exception(
            backoff.expo,
            (pm_errors.ConnectionFailure, pm_errors.ConfigurationError),
            max_tries=attempts,
            base=2,
            factor=cfg.backoff_base_s,
            max_value=cfg.backoff_max_s,
            jitter=backoff.full_jitter if cfg.backoff_jitter else None,
            on_backoff=log_retry,
            on_giveup=log_giveup,
            logger=None,
        )
        def ping() -> None:
            self.client.admin.command("ping")

        try:
            ping()
        except pm_errors.PyMongoError as exc:
            raise DatabaseConnectionError(
                f"could not connect to {cfg.masked_url} after {attempts} attempt(s): "
                f"{translate(exc, operation='connect')}"
            ) from exc
        log.info("connected to %s", cfg.masked_url)
