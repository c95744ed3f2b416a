"""DatabaseConfig: the settings of one ``Database``, validated once at construction.

The settings are grouped by concern into small frozen value objects, each validating itself
when it is made: ``PoolConfig``, ``TimeoutConfig``, ``RetryConfig`` (retries, backoff, the
circuit breaker), ``TlsAuthConfig``, ``TopologyConfig`` (read routing, write concern),
``HealthConfig`` (monitoring, tracing, health thresholds), ``CacheConfig``, ``EncryptionConfig``
and ``ChangeRecordsConfig``. ``DatabaseConfig`` is composed of them (``config.pool``,
``config.cache``, ...) plus the few settings of no one concern (``url``, ``database``, ...);
each consumer is handed the one object it needs. The flat names stay the configuration's
vocabulary: ``DatabaseConfig(max_pool_size=50)``, ``config.max_pool_size``, the seed's dict and
``ASTRO_DB_MAX_POOL_SIZE`` all spell the same setting.

Defaults are the original service's: a pool of 10 to 100 connections, 30 s server-selection and
socket timeouts, 3 connection attempts with exponential backoff; the seed's 30 s is one budget
per call (``operation_timeout_ms``), retries and server selection included. ``from_dict`` takes the seed's
shape (``{"url": ..., "options": {"maxPoolSize": 50, ...}}``) or flat snake_case keys;
``from_env`` reads ``MONGODB_URL`` and ``ASTRO_DB_*``; ``resolve`` is the one place that
decides between explicit settings, the environment and the defaults (docs/configuration.md,
"Precedence"). Passwords and keys never appear in ``repr``/``str``: use ``masked_url`` wherever
a URL is shown.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar, overload
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigError
from .urls import mask_url, unescaped_userinfo, userinfo_of

__all__ = [
    "DatabaseConfig", "PoolConfig", "TimeoutConfig", "RetryConfig", "TlsAuthConfig", "TopologyConfig",
    "HealthConfig", "CacheConfig", "EncryptionConfig", "ChangeRecordsConfig", "resolve", "mask_url", "EMBEDDED_URL",
]

EMBEDDED_URL = "mongomock://localhost/astro"
_SCHEMES = ("mongodb", "mongodb+srv", "mongomock")
_READ_PREFERENCES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
_DEPRECATED_OPTIONS = ("useNewUrlParser", "useUnifiedTopology", "use_new_url_parser", "use_unified_topology")
_SECRET_FIELDS = ("password", "encryption_key", "encryption_keys", "cache_secret", "token_secret", "backup_secret",
                  "kms_providers")
_URL_FIELDS = ("url", "cache_bus", "cache_store")  # shown with their password masked
_CACHE_BUS_SCHEMES = ("redis", "rediss", "unix")
_DEFAULT_BUDGET_MS = 30_000  # operation_timeout_ms's default: the seed's 30 s, per call
_PYMONGO_MAX_MS = 1_000_000_000  # PyMongo's timeouts: "greater than 0 and less than one billion" (ms)
# the timeouts PyMongo reads 0 (or None) of as "no timeout": None here, whatever the spelling
_NONE_WHEN_ZERO = {"socket_timeout_ms": "socket timeout", "connect_timeout_ms": "connect timeout"}
_URL_LEAST = {"min_pool_size": 0}  # a URL pool size or timeout's least value (else 1: _url_number)
ENV_PREFIX = "ASTRO_DB_"
URL_ENV = "MONGODB_URL"

# camelCase (Node / PyMongo URI option) spellings that are not a plain camel-to-snake mapping.
_ALIASES = {
    "url": "url",
    "uri": "url",
    "maxPoolSize": "max_pool_size",
    "minPoolSize": "min_pool_size",
    "serverSelectionTimeoutMS": "server_selection_timeout_ms",
    "socketTimeoutMS": "socket_timeout_ms",
    "connectTimeoutMS": "connect_timeout_ms",
    "waitQueueTimeoutMS": "wait_queue_timeout_ms",
    "maxIdleTimeMS": "max_idle_time_ms",
    "timeoutMS": "operation_timeout_ms",
    "tlsCAFile": "tls_ca_file",
    "tlsCertificateKeyFile": "tls_certificate_key_file",
    "tlsAllowInvalidCertificates": "tls_allow_invalid_certificates",
    "ssl": "tls",
    "authSource": "auth_source",
    "authMechanism": "auth_mechanism",
    "replicaSet": "replica_set",
    "readPreference": "read_preference",
    "readPreferenceTags": "read_preference_tags",
    "maxStalenessSeconds": "max_staleness_s",
    "w": "write_concern",
    "writeConcern": "write_concern",
    "appName": "app_name",
    "retryWrites": "retry_writes",
    "retryReads": "retry_reads",
    "dbName": "database",
}


def _snake(name: str) -> str:
    if name in _ALIASES:
        return _ALIASES[name]
    name = re.sub(r"MS$", "_ms", name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# --- validation by declared type ------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The declared type of each field of a config class, resolved (not its string form)."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def _members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union type (``int | None`` -> ``(int, NoneType)``), else ``(tp,)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _conforms(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the declared type ``tp`` (a bool is no int; an int is a float;
    a list is taken for a tuple)."""
    for member in _members(tp):
        origin = typing.get_origin(member)
        if member is type(None):
            if value is None:
                return True
        elif origin is tuple:
            item = typing.get_args(member)[0]
            if isinstance(value, (tuple, list)) and all(_conforms(v, item) for v in value):
                return True
        elif origin in (dict, Mapping):
            if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
                return True
        elif member is bool:
            if isinstance(value, bool):
                return True
        elif member is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif member is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif isinstance(value, member):
            return True
    return False


def _type_name(tp: Any) -> str:
    """``tp`` as a message shows it, ``None`` left out (``'int | None'`` -> ``'int'``)."""
    names = [m.__name__ if isinstance(m, type) and not typing.get_args(m) else str(m)
             for m in _members(tp) if m is not type(None)]
    return " | ".join(names)


def _check_types(obj: Any) -> None:
    """Every field of the dataclass ``obj`` against its declared type (lists become tuples)."""
    hints = _hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        tp = hints[f.name]
        if value is None:
            if type(None) not in _members(tp):
                raise ConfigError(f"'{f.name}' must not be None", key=f.name)
            continue
        if not _conforms(value, tp):
            raise ConfigError(
                f"'{f.name}' must be {_type_name(tp)}, got {type(value).__name__} {_show(f.name, value)}", key=f.name)
        if isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))


class _Section:
    """Base of the per-concern value objects: each field is checked against its declared type,
    then the object's own rules (``_check``); secrets show as ``***`` and URLs masked."""

    def __post_init__(self) -> None:
        _check_types(self)
        self._check()

    def _check(self) -> None:
        """The section's range and consistency rules (a ``ConfigError`` naming the key)."""

    def _need(self, cond: bool, key: str, rule: str) -> None:
        if not cond:
            raise ConfigError(f"'{key}' {rule}, got {_show(key, getattr(self, key))}", key=key)

    def __repr__(self) -> str:
        shown = [f"{f.name}={_shown(f.name, getattr(self, f.name))}" for f in fields(self)  # type: ignore[arg-type]
                 if getattr(self, f.name) != f.default]
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class PoolConfig(_Section):
    """The connection pool: its bounds, how long a caller waits for a connection, idle time."""

    min_pool_size: int = 10
    max_pool_size: int = 100
    wait_queue_timeout_ms: int = 30_000
    max_idle_time_ms: int | None = None

    def _check(self) -> None:
        need = self._need
        need(self.max_pool_size >= 1, "max_pool_size", "must be at least 1")
        need(self.max_pool_size <= 10_000, "max_pool_size", "must be at most 10000")
        need(self.min_pool_size >= 0, "min_pool_size", "must be 0 or more")
        need(self.min_pool_size <= self.max_pool_size, "min_pool_size", f"must not exceed max_pool_size ({self.max_pool_size})")
        need(self.wait_queue_timeout_ms > 0, "wait_queue_timeout_ms", "must be a positive number of milliseconds")
        need(self.max_idle_time_ms is None or self.max_idle_time_ms > 0, "max_idle_time_ms", "must be positive when set")


@dataclass(frozen=True, repr=False)
class TimeoutConfig(_Section):
    """Per-socket bounds and the budget of every call (``operation_timeout_ms``; None: unbounded)."""

    server_selection_timeout_ms: int = 30_000
    # None (or 0, PyMongo's spelling, read as None): no socket / connect timeout, as PyMongo reads
    # them; a call is then bounded by its budget alone (operation_timeout_ms, timeout_ms=)
    socket_timeout_ms: int | None = 30_000
    connect_timeout_ms: int | None = 10_000
    # one budget per call, retries, waits and server selection included (None: unbounded)
    operation_timeout_ms: int | None = _DEFAULT_BUDGET_MS

    def _check(self) -> None:
        self._need(self.server_selection_timeout_ms > 0, "server_selection_timeout_ms",
                   "must be a positive number of milliseconds")
        for key in _NONE_WHEN_ZERO:
            if getattr(self, key) == 0:  # PyMongo's 0: no timeout, one spelling of it here (None)
                object.__setattr__(self, key, None)
            value = getattr(self, key)
            self._need(value is None or 0 < value < _PYMONGO_MAX_MS, key,
                       f"must be 1 to {_PYMONGO_MAX_MS - 1} milliseconds, or 0 / None for no {_NONE_WHEN_ZERO[key]}")
        self._need(self.operation_timeout_ms is None or self.operation_timeout_ms > 0, "operation_timeout_ms",
                   "must be positive when set")


@dataclass(frozen=True, repr=False)
class RetryConfig(_Section):
    """Connecting (attempts and their budget), retrying operations, the backoff curve and the
    circuit breaker."""

    connect_attempts: int = 3
    connect_budget_ms: int = 30_000  # the whole connect(), all attempts and waits included
    retry_attempts: int = 3
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    backoff_jitter: bool = True
    retry_writes: bool = True
    retry_reads: bool = True
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0

    def _check(self) -> None:
        need = self._need
        need(1 <= self.connect_attempts <= 20, "connect_attempts", "must be 1-20")
        need(1 <= self.connect_budget_ms <= 3_600_000, "connect_budget_ms", "must be 1-3600000 milliseconds")
        need(1 <= self.retry_attempts <= 20, "retry_attempts", "must be 1-20")
        need(self.backoff_base_s > 0, "backoff_base_s", "must be positive")
        need(self.backoff_max_s >= self.backoff_base_s, "backoff_max_s", "must be at least backoff_base_s")
        need(self.breaker_threshold >= 1, "breaker_threshold", "must be at least 1")
        need(self.breaker_cooldown_s > 0, "breaker_cooldown_s", "must be positive")


@dataclass(frozen=True, repr=False)
class TlsAuthConfig(_Section):
    """TLS and credentials, passed through to the driver; the password is never shown."""

    tls: bool = False
    tls_ca_file: str | None = None
    tls_certificate_key_file: str | None = None
    tls_allow_invalid_certificates: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_source: str | None = None
    auth_mechanism: str | None = None


@dataclass(frozen=True, repr=False)
class TopologyConfig(_Section):
    """Default read routing and write concern, the replica set, the name shown in server logs."""

    replica_set: str | None = None
    read_preference: str = "primary"
    read_preference_tags: tuple[dict[str, str], ...] = ()
    max_staleness_s: int | None = None
    write_concern: str | int = "majority"
    app_name: str = "astro_db"

    def _check(self) -> None:
        need = self._need
        need(self.read_preference in _READ_PREFERENCES, "read_preference", f"must be one of {', '.join(_READ_PREFERENCES)}")
        need(
            self.max_staleness_s is None or self.max_staleness_s >= 90, "max_staleness_s", "must be at least 90 seconds (MongoDB's minimum)"
        )
        need(self.read_preference != "primary" or self.max_staleness_s is None, "max_staleness_s",
             "needs a read_preference other than 'primary' (the primary is never stale)")
        need(self.read_preference != "primary" or not self.read_preference_tags, "read_preference_tags",
             "needs a read_preference other than 'primary' (tags choose among secondaries)")
        need(all(isinstance(k, str) and isinstance(v, str) for t in self.read_preference_tags for k, v in t.items()),
             "read_preference_tags", "must be a list of {name: value} dicts of strings")
        if isinstance(self.write_concern, int):
            need(self.write_concern >= 0, "write_concern", "must be 'majority', a tag name or a number >= 0")


@dataclass(frozen=True, repr=False)
class HealthConfig(_Section):
    """Monitoring, tracing and what ``db.health()`` judges by (docs/monitoring.md)."""

    slow_query_ms: float = 100.0
    monitoring: bool = True  # the monitor's figures; on a server, PyMongo's heartbeat listener
    # PyMongo's per-call command and connection-pool listeners (per-command table, CMAP pool
    # figures); off by default: PyMongo's event publishing costs every call 20-40 µs
    command_monitoring: bool = False
    tracing: bool = True  # OpenTelemetry spans per operation, when opentelemetry-api is installed
    health_timeout_ms: int = 2000  # bound of the ping db.health() sends
    health_latency_ms: float = 500.0  # a slower ping makes health "degraded"
    health_pool_saturation: float = 0.9  # checked-out / max_pool_size at which health degrades
    health_error_rate: float = 0.05  # share of failed operations in the window that degrades
    health_slow_rate: float = 0.1  # share of slow operations in the window that degrades
    health_window_s: int = 60  # the recent window those rates cover
    health_min_operations: int = 20  # fewer operations in the window: rates are not judged

    def _check(self) -> None:
        need = self._need
        need(self.slow_query_ms >= 0, "slow_query_ms", "must be 0 or more")
        need(1 <= self.health_timeout_ms <= 60_000, "health_timeout_ms", "must be 1-60000")
        need(self.health_latency_ms > 0, "health_latency_ms", "must be positive")
        for key in ("health_pool_saturation", "health_error_rate", "health_slow_rate"):
            need(0 < getattr(self, key) <= 1, key, "must be a fraction in (0, 1]")
        need(1 <= self.health_window_s <= 3600, "health_window_s", "must be 1-3600")
        need(self.health_min_operations >= 1, "health_min_operations", "must be at least 1")


@dataclass(frozen=True, repr=False)
class CacheConfig(_Section):
    """The query cache: lifetime and bounds, the models cached by default, the invalidation bus,
    the shared result store and the key of its MACs (docs/caching.md)."""

    cache_ttl_s: float = 60.0
    cache_max_entries: int = 1024
    cache_max_documents: int = 100_000
    cache_models: tuple[str, ...] = ()
    cache_stale_s: float = 3600.0  # how long past its TTL a cached read stays available to stale_ok reads
    cache_bus: str = "local"  # invalidation bus: "local", "redis://..." or "changestream" (docs/caching.md)
    cache_store: str | None = None  # "redis://...": results shared by every process (needs a Redis cache_bus)
    # the key of the MAC every shared-store entry carries (docs/caching.md); default: derived from encryption_key
    cache_secret: str | None = field(default=None, repr=False)

    def _check(self) -> None:
        need = self._need
        need(self.cache_ttl_s >= 0, "cache_ttl_s", "must be 0 or more")
        need(0 <= self.cache_stale_s <= 7 * 86400, "cache_stale_s", "must be 0-604800 seconds")
        need(1 <= self.cache_max_entries <= 1_000_000, "cache_max_entries", "must be 1-1000000")
        need(1 <= self.cache_max_documents <= 100_000_000, "cache_max_documents", "must be 1-100000000")
        need(self.cache_bus in ("local", "changestream") or (urlsplit(self.cache_bus).scheme in _CACHE_BUS_SCHEMES
             and bool(urlsplit(self.cache_bus).netloc or urlsplit(self.cache_bus).path)), "cache_bus",
             "must be 'local', 'changestream' or a redis://, rediss:// or unix:// URL")
        need(self.cache_bus in ("local", "changestream") or _redis_port_ok(self.cache_bus), "cache_bus",
             "names a port that is not a number from 1 to 65535")
        need(self.cache_store is None or _redis_port_ok(self.cache_store), "cache_store",
             "names a port that is not a number from 1 to 65535")
        need(self.cache_store is None or (urlsplit(self.cache_store).scheme in _CACHE_BUS_SCHEMES
             and bool(urlsplit(self.cache_store).netloc or urlsplit(self.cache_store).path)), "cache_store",
             "must be a redis://, rediss:// or unix:// URL")
        need(self.cache_store is None or _redis_target(self.cache_store) == _redis_target(self.cache_bus), "cache_store",
             "must be on the same Redis server and database as cache_bus='redis://...' (its entries are checked "
             "against the write generations the Redis bus advances there)")
        need(self.cache_secret is None or len(self.cache_secret) >= 32, "cache_secret",
             "must be at least 32 characters of random text (astro-db new-key makes one)")


@dataclass(frozen=True, repr=False)
class EncryptionConfig(_Section):
    """Field encryption: the key, older keys (decrypt only), and the plaintext opt-out."""

    encryption_key: str | None = field(default=None, repr=False)
    encryption_keys: str | None = field(default=None, repr=False)  # old keys, comma-separated, decrypt only
    # field level encryption (docs/security.md): where the data keys live, the KMS providers that
    # wrap them (default: "local:<key id>" derived from encryption_key / encryption_keys) and the
    # master key new data keys are created under ({"provider": "aws", "region": ..., "key": ...})
    key_vault_namespace: str = "encryption.__keyVault"
    kms_providers: Mapping[str, Any] | None = field(default=None, repr=False)
    kms_master_key: Mapping[str, Any] | None = None
    # without a key, may a sensitive field be written and queried in plaintext? None: only on the
    # embedded (development) backend; on a server it is an EncryptionError (docs/security.md)
    allow_plaintext_sensitive: bool | None = None

    def _check(self) -> None:
        for key in ("encryption_key", "encryption_keys"):
            for text in (getattr(self, key) or "").split(","):
                self._need(
                    not getattr(self, key) or _is_aes256_key(text), key,
                    "must be base64 of 32 random bytes (comma-separated for encryption_keys)",
                )
        self._need(bool(re.fullmatch(r"[^/\\. \"$*<>:|?]{1,63}\.[^$\x00]{1,200}", self.key_vault_namespace)),
                   "key_vault_namespace", "must be '<database>.<collection>' (MongoDB's convention: encryption.__keyVault)")
        self._need(self.kms_master_key is None or isinstance(self.kms_master_key.get("provider"), str), "kms_master_key",
                   "must name its provider: {\"provider\": \"aws\", \"region\": ..., \"key\": ...}")


@dataclass(frozen=True, repr=False)
class ChangeRecordsConfig(_Section):
    """The change records every write leaves: the audit trail, the journal, their TTL, and
    whether a create and its records go in one command."""

    audit: bool = True
    audit_retention_days: int | None = 365
    journal: bool = True  # change journal for incremental backups and point-in-time restore
    # a create and its change records in one bulkWrite command, where the server has it (MongoDB 8.0+)
    one_command_writes: bool = True

    def _check(self) -> None:
        self._need(self.audit_retention_days is None or self.audit_retention_days >= 1, "audit_retention_days",
                   "must be at least 1")


# The sections of a DatabaseConfig: its attribute name -> the value object's class.
SECTIONS: dict[str, type[_Section]] = {
    "pool": PoolConfig,
    "timeouts": TimeoutConfig,
    "retry": RetryConfig,
    "tls_auth": TlsAuthConfig,
    "topology": TopologyConfig,
    "health": HealthConfig,
    "cache": CacheConfig,
    "encryption": EncryptionConfig,
    "change_records": ChangeRecordsConfig,
}
# flat setting name -> the section holding it
_SECTION_OF: dict[str, str] = {f.name: attr for attr, cls in SECTIONS.items() for f in fields(cls)}  # type: ignore[arg-type]

_T = TypeVar("_T")


class _Flat(Generic[_T]):
    """``config.max_pool_size``: a flat setting read through its section (``config.pool``).

    Its type is what the checkers see; at run time each ``DatabaseConfig`` also keeps the value
    in its own ``__dict__`` (set once, after validation), which a non-data descriptor yields to."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.section = _SECTION_OF[name]

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Flat[_T]: ...
    @overload
    def __get__(self, obj: DatabaseConfig, owner: type | None = None) -> _T: ...

    def __get__(self, obj: DatabaseConfig | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.section), self.name)


@dataclass(frozen=True, init=False, repr=False)
class DatabaseConfig:
    """Everything a ``Database`` needs to connect and behave; see docs/configuration.md.

    Made of one value object per concern (``pool``, ``timeouts``, ``retry``, ``tls_auth``,
    ``topology``, ``health``, ``cache``, ``encryption``, ``change_records``) and the settings
    of no one concern below. Built from flat keys (``DatabaseConfig(max_pool_size=50)``), from
    whole sections (``DatabaseConfig(pool=PoolConfig(max_pool_size=50))``) or both (the flat
    keys then apply over the section given); every flat name reads back
    (``config.max_pool_size`` is ``config.pool.max_pool_size``)."""

    url: str | None = None
    database: str | None = None
    ensure_indexes: bool = True
    check_references: bool = False  # refuse a userId naming no User (one more read per write)
    # the MAC key of page tokens (db.page; docs/reading.md); default: cache_secret, else encryption_key
    token_secret: str | None = field(default=None, repr=False)
    # the MAC key of backup sets (astro_db.backup; docs/backup.md, "Authenticated sets"): sets are
    # signed when taken and refused unsigned or altered when read
    backup_secret: str | None = field(default=None, repr=False)
    pool: PoolConfig = field(default_factory=PoolConfig)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    tls_auth: TlsAuthConfig = field(default_factory=TlsAuthConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    change_records: ChangeRecordsConfig = field(default_factory=ChangeRecordsConfig)
    _given: ClassVar[frozenset[str]] = frozenset()  # per instance: the flat keys given by name
    _mirrored: ClassVar[frozenset[str]] = frozenset()  # per instance: PyMongo's options the URL set, read too

    # flat reads (the configuration's vocabulary; each is its section's field)
    min_pool_size = _Flat[int]()
    max_pool_size = _Flat[int]()
    wait_queue_timeout_ms = _Flat[int]()
    max_idle_time_ms = _Flat[int | None]()
    server_selection_timeout_ms = _Flat[int]()
    socket_timeout_ms = _Flat[int | None]()
    connect_timeout_ms = _Flat[int | None]()
    operation_timeout_ms = _Flat[int | None]()
    connect_attempts = _Flat[int]()
    connect_budget_ms = _Flat[int]()
    retry_attempts = _Flat[int]()
    backoff_base_s = _Flat[float]()
    backoff_max_s = _Flat[float]()
    backoff_jitter = _Flat[bool]()
    retry_writes = _Flat[bool]()
    retry_reads = _Flat[bool]()
    breaker_threshold = _Flat[int]()
    breaker_cooldown_s = _Flat[float]()
    tls = _Flat[bool]()
    tls_ca_file = _Flat[str | None]()
    tls_certificate_key_file = _Flat[str | None]()
    tls_allow_invalid_certificates = _Flat[bool]()
    username = _Flat[str | None]()
    password = _Flat[str | None]()
    auth_source = _Flat[str | None]()
    auth_mechanism = _Flat[str | None]()
    replica_set = _Flat[str | None]()
    read_preference = _Flat[str]()
    read_preference_tags = _Flat[tuple[dict[str, str], ...]]()
    max_staleness_s = _Flat[int | None]()
    write_concern = _Flat[str | int]()
    app_name = _Flat[str]()
    slow_query_ms = _Flat[float]()
    monitoring = _Flat[bool]()
    command_monitoring = _Flat[bool]()
    tracing = _Flat[bool]()
    health_timeout_ms = _Flat[int]()
    health_latency_ms = _Flat[float]()
    health_pool_saturation = _Flat[float]()
    health_error_rate = _Flat[float]()
    health_slow_rate = _Flat[float]()
    health_window_s = _Flat[int]()
    health_min_operations = _Flat[int]()
    cache_ttl_s = _Flat[float]()
    cache_max_entries = _Flat[int]()
    cache_max_documents = _Flat[int]()
    cache_models = _Flat[tuple[str, ...]]()
    cache_stale_s = _Flat[float]()
    cache_bus = _Flat[str]()
    cache_store = _Flat[str | None]()
    cache_secret = _Flat[str | None]()
    encryption_key = _Flat[str | None]()
    encryption_keys = _Flat[str | None]()
    key_vault_namespace = _Flat[str]()
    kms_providers = _Flat[Mapping[str, Any] | None]()
    kms_master_key = _Flat[Mapping[str, Any] | None]()
    allow_plaintext_sensitive = _Flat[bool | None]()
    audit = _Flat[bool]()
    audit_retention_days = _Flat[int | None]()
    journal = _Flat[bool]()
    one_command_writes = _Flat[bool]()

    def __init__(self, url: str | None = None, database: str | None = None, *, ensure_indexes: bool = True,
                 check_references: bool = False, token_secret: str | None = None, backup_secret: str | None = None,
                 pool: PoolConfig | None = None,
                 timeouts: TimeoutConfig | None = None, retry: RetryConfig | None = None,
                 tls_auth: TlsAuthConfig | None = None, topology: TopologyConfig | None = None,
                 health: HealthConfig | None = None, cache: CacheConfig | None = None,
                 encryption: EncryptionConfig | None = None, change_records: ChangeRecordsConfig | None = None,
                 **settings: Any) -> None:
        """``settings``: flat keys (``max_pool_size=50``), applied over the section they belong to."""
        given: dict[str, Any] = {"pool": pool, "timeouts": timeouts, "retry": retry, "tls_auth": tls_auth,
                                 "topology": topology, "health": health, "cache": cache, "encryption": encryption,
                                 "change_records": change_records}
        flat: dict[str, dict[str, Any]] = {}
        for key, value in settings.items():
            if key not in _SECTION_OF:
                raise ConfigError(f"unknown configuration key '{key}'", key=key)
            flat.setdefault(_SECTION_OF[key], {})[key] = value
        put = object.__setattr__
        put(self, "url", url)
        put(self, "database", database)
        put(self, "ensure_indexes", ensure_indexes)
        put(self, "check_references", check_references)
        put(self, "token_secret", token_secret)
        put(self, "backup_secret", backup_secret)
        put(self, "_given", frozenset(settings))  # flat keys set by name: explicit even at their default
        for attr, cls in SECTIONS.items():
            section, changes = given[attr], flat.get(attr)
            if section is not None and not isinstance(section, cls):
                raise ConfigError(f"'{attr}' must be a {cls.__name__}, got {type(section).__name__}", key=attr)
            if section is None:
                section = cls(**changes) if changes else _default(cls)
            elif changes:
                section = dataclasses.replace(section, **changes)  # type: ignore[type-var]
            put(self, attr, section)
        self.__post_init__()

    def __post_init__(self) -> None:
        _check_types(self)
        if self.url is not None:
            self._check_url(self.url)
            self._apply_url_options(self.url)  # before the rules below, which may read them
            _check_types(self)
            self.database_name  # noqa: B018 - raises ConfigError when there is none
        need = self._need
        need(self.token_secret is None or len(self.token_secret) >= 32, "token_secret",
             "must be at least 32 characters of random text (astro-db new-key makes one)")
        need(self.backup_secret is None or len(self.backup_secret) >= 32, "backup_secret",
             "must be at least 32 characters of random text (astro-db new-key makes one)")
        need(self.cache.cache_store is None or bool(self.cache.cache_secret or self.encryption.encryption_key),
             "cache_secret",
             "is needed with cache_store: every entry in the shared Redis carries a MAC under a key only the app "
             "holds (set cache_secret / ASTRO_DB_CACHE_SECRET, e.g. from astro-db new-key, or encryption_key)")
        need(
            self.database is None or bool(re.fullmatch(r"[^/\\. \"$*<>:|?]{1,63}", self.database)),
            "database", "is not a valid MongoDB database name",
        )
        for name, attr in _SECTION_OF.items():  # flat reads as fast as a field's (the _Flat is the fallback)
            object.__setattr__(self, name, getattr(getattr(self, attr), name))

    def _need(self, cond: bool, key: str, rule: str) -> None:
        if not cond:
            raise ConfigError(f"'{key}' {rule}, got {_show(key, getattr(self, key))}", key=key)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatabaseConfig:
        """Build from the seed's ``{"url", "options": {...}}`` shape or flat keys (camel or snake).
        Only what ``data`` says: the environment is not read (``Database(dict)`` reads it, see
        ``resolve``)."""
        return cls(**cls._normalise_keys(_flatten(data)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DatabaseConfig:
        """Build from ``MONGODB_URL`` and ``ASTRO_DB_<FIELD>`` variables, under ``overrides``
        (the precedence rule of ``resolve``)."""
        return resolve(None, overrides, environ)

    @classmethod
    def _normalise_keys(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in _DEPRECATED_OPTIONS:
                warnings.warn(
                    f"'{key}' is a legacy Node driver option with no effect in PyMongo; remove it",
                    DeprecationWarning,
                    stacklevel=4,
                )
                continue
            name = key if key in _FLAT_NAMES else _snake(key)
            if name not in _FLAT_NAMES:
                raise ConfigError(f"unknown configuration key '{key}'", key=key)
            out[name] = value
        return out

    @classmethod
    def option_names(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """The field names a mapping of options sets, in any spelling ``from_dict`` takes
        (``serverSelectionTimeoutMS`` and ``server_selection_timeout_ms`` alike)."""
        return frozenset(key if key in _FLAT_NAMES else _snake(key) for key in options if key not in _DEPRECATED_OPTIONS)

    @classmethod
    def env_names(cls, environ: Mapping[str, str] | None = None) -> frozenset[str]:
        """The field names ``from_env`` would take from ``ASTRO_DB_<FIELD>`` variables."""
        env = os.environ if environ is None else environ
        return frozenset(name for name in _FLAT_NAMES if env.get(ENV_PREFIX + name.upper()))

    def url_settings(self) -> frozenset[str]:
        """The field names the URL's query sets itself (``?serverSelectionTimeoutMS=500``)."""
        return _url_option_names(self.url)

    def settings(self) -> dict[str, Any]:
        """Every setting by its flat name (``{"url": ..., "max_pool_size": 100, ...}``)."""
        return {name: getattr(self, name) for name in _FLAT_NAMES}

    def replace(self, **changes: Any) -> DatabaseConfig:
        """A copy with ``changes`` applied (and validated): flat keys in any spelling
        ``from_dict`` takes, or whole sections (``pool=PoolConfig(...)``)."""
        sections = {key: changes.pop(key) for key in list(changes) if key in SECTIONS}
        current: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        # still set by name in the copy, unless their section is replaced whole
        given = {name: getattr(self, name) for name in self._given if _SECTION_OF[name] not in sections}
        return DatabaseConfig(**{**current, **given, **sections, **self._normalise_keys(changes)})

    def is_explicit(self, name: str) -> bool:
        """Whether setting ``name`` was chosen rather than left at its default: given by name
        (``max_pool_size=100`` counts, though 100 is the default) or of another value."""
        return name in self._given or (name not in self._mirrored and getattr(self, name) != _FLAT_DEFAULTS.get(name))

    # --- derived values ----------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return urlsplit(self.url or EMBEDDED_URL).scheme

    @property
    def is_embedded(self) -> bool:
        """True when this config selects the in-process mongomock-ng backend."""
        return self.url is None or self.scheme == "mongomock"

    @property
    def client_url(self) -> str | None:
        """The URL PyMongo is given: ``url`` without the options astro_db reads itself
        (``?commandMonitoring=true``, ...), which PyMongo does not know; ``None`` without one."""
        return None if self.url is None else _without_own_options(self.url)

    @property
    def masked_url(self) -> str:
        """``client_url`` with its secrets masked: what connecting and its log lines show."""
        return mask_url(self.client_url or EMBEDDED_URL)

    @property
    def database_name(self) -> str:
        """The database to use: ``database`` if set, else the URL's path."""
        if self.database:
            return self.database
        url = self.url or EMBEDDED_URL
        userinfo = userinfo_of(url)
        path = urlsplit(url.replace(userinfo + "@", "", 1) if userinfo else url).path.lstrip("/")
        if not path:
            raise ConfigError(
                f"no database name: put it in the URL ({self.masked_url.rstrip('/')}/astro) "
                "or set 'database'",
                key="database",
            )
        return unquote(path)

    def client_options(self) -> dict[str, Any]:
        """Keyword options for ``MongoClient`` (pool, timeouts, TLS, auth, topology).

        ``operation_timeout_ms`` is not one of them: the run step puts every call under
        ``pymongo.timeout`` for what is left of it, so cursors and streams opened outside the
        service (backups, change streams) are not cut at 30 s."""
        pool, times, retry, auth, topo = self.pool, self.timeouts, self.retry, self.tls_auth, self.topology
        opts: dict[str, Any] = {
            "minPoolSize": pool.min_pool_size,
            "maxPoolSize": pool.max_pool_size,
            "serverSelectionTimeoutMS": times.server_selection_timeout_ms,
            "socketTimeoutMS": times.socket_timeout_ms,
            "connectTimeoutMS": times.connect_timeout_ms,
            "waitQueueTimeoutMS": pool.wait_queue_timeout_ms,
            "retryWrites": retry.retry_writes,
            "retryReads": retry.retry_reads,
            "appname": topo.app_name,
            "readPreference": topo.read_preference,
            "w": topo.write_concern,
            "tz_aware": True,
            "uuidRepresentation": "standard",
        }
        optional = {
            "maxIdleTimeMS": pool.max_idle_time_ms,
            "replicaSet": topo.replica_set,
            "authSource": auth.auth_source,
            "authMechanism": auth.auth_mechanism,
            "username": auth.username,
            "password": auth.password,
            "maxStalenessSeconds": topo.max_staleness_s,
            "tlsCAFile": auth.tls_ca_file,
            "tlsCertificateKeyFile": auth.tls_certificate_key_file,
        }
        opts.update({k: v for k, v in optional.items() if v is not None})
        if topo.read_preference_tags:
            opts["readPreferenceTags"] = [",".join(f"{k}:{v}" for k, v in t.items()) for t in topo.read_preference_tags]
        if auth.tls:
            opts["tls"] = True
            if auth.tls_allow_invalid_certificates:
                opts["tlsAllowInvalidCertificates"] = True
        return self._defer_to_url(opts)

    def _defer_to_url(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Drop the options the URL sets itself that were not chosen (``is_explicit``): PyMongo
        lets keywords override the URL, so ``?serverSelectionTimeoutMS=500`` would otherwise lose
        to our 30 s default."""
        in_url = {key.lower() for key in parse_qs(urlsplit(self.url or "").query)}
        if not in_url:
            return opts
        by_option = {k.lower(): v for k, v in _ALIASES.items()} | {"appname": "app_name"}
        for key in [k for k in opts if k.lower() in in_url]:
            name = by_option.get(key.lower())
            if name is None or not self.is_explicit(name):
                del opts[key]
        if "maxPoolSize" not in opts and not self.is_explicit("min_pool_size"):
            opts.pop("minPoolSize", None)  # the URL's pool may be smaller than our default minimum
        return opts

    def __repr__(self) -> str:
        shown = [f"{name}={_shown(name, value)}" for name, value in self.settings().items()
                 if value != _FLAT_DEFAULTS[name]]
        return f"DatabaseConfig({', '.join(shown)})"

    __str__ = __repr__

    # --- validation --------------------------------------------------------------------------

    def _apply_url_options(self, url: str) -> None:
        """The settings the URL's query gives, where none was chosen (``is_explicit``): a
        ``timeoutMS`` is the per-call budget (the run step's ``pymongo.timeout`` would otherwise
        override the client's), and every astro_db-only option (``?commandMonitoring=true``,
        ``?slow_query_ms=50``) is read here by its declared type; ``client_url`` leaves the
        latter out of what PyMongo is given. PyMongo's pool sizes and timeouts (``_MIRRORED``)
        stay PyMongo's to read, and their value is the setting's too (health's pool saturation,
        the run step's server selection bound). A secret setting in the URL is refused."""
        changes: dict[str, dict[str, Any]] = {}
        mirrored: set[str] = set()
        for key, raw in _query_options(url):
            low = key.lower()
            if low == "timeoutms":
                name = "operation_timeout_ms"
                try:
                    number = float(raw)
                except ValueError:
                    raise ConfigError(f"timeoutMS in {mask_url(url)} must be a number of milliseconds", key="url") from None
                value: Any = int(number) if number > 0 else None
            elif low in _MIRRORED:  # PyMongo's, and read by astro_db too: what PyMongo reads, or a ConfigError
                name = _MIRRORED[low]
                value = _url_number(key, raw, name)
                if name not in self._given and getattr(self, name) == value:
                    mirrored.add(name)  # already the URL's (a copy made by replace()): still the URL's
            else:
                found = _own_url_option(low)
                if found is None:
                    continue  # PyMongo's option (or unknown to both): PyMongo reads it
                name = found
                if name in _SECRET_FIELDS:
                    raise ConfigError(
                        f"'{key}' must not be given in the URL: a URL is shown and logged; "
                        f"set {name} as a keyword or ASTRO_DB_{name.upper()}", key=name)
                value = _parse_env(name, raw, flat_types()[name], source=f"{key}={_show(name, raw)} in the URL")
            if not self.is_explicit(name):
                changes.setdefault(_SECTION_OF.get(name, ""), {})[name] = value
        pool = changes.get("pool", {})
        if "max_pool_size" in pool and "min_pool_size" not in pool and not self.is_explicit("min_pool_size"):
            pool["min_pool_size"] = 0  # what PyMongo keeps then: client_options leaves the minimum to it
        mirrored.update(name for values in changes.values() for name in values if name in _MIRRORED.values())
        object.__setattr__(self, "_mirrored", frozenset(mirrored))  # still the URL's: PyMongo reads them there
        for attr, values in changes.items():
            if attr:
                object.__setattr__(self, attr, dataclasses.replace(getattr(self, attr), **values))
            else:
                for name, value in values.items():
                    object.__setattr__(self, name, value)

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ConfigError(
                f"unsupported URL scheme '{parts.scheme}' in {mask_url(url)}: use mongodb://, mongodb+srv:// or mongomock://",
                key="url",
            )
        if unescaped_userinfo(url):
            raise ConfigError(
                f"the user name or password in {mask_url(url)} holds an unescaped ':', '/', '?', '#', "
                "'[', ']', '@' or '%': percent-encode them (urllib.parse.quote_plus)",
                key="url",
            )
        if not parts.netloc:
            raise ConfigError(f"URL {mask_url(url)} names no host", key="url")
        if parts.scheme != "mongomock":
            for host in parts.netloc.rpartition("@")[2].split(","):
                problem = port_problem(host, srv=parts.scheme == "mongodb+srv")
                if problem:
                    raise ConfigError(f"URL {mask_url(url)}: {problem}", key="url")


_TOP_LEVEL = tuple(f.name for f in fields(DatabaseConfig) if f.name not in SECTIONS)
# every flat setting name, in the order of the docs table: the top-level ones, then each section's
_FLAT_NAMES: tuple[str, ...] = _TOP_LEVEL + tuple(_SECTION_OF)
_FLAT_DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in fields(DatabaseConfig) if f.name in _TOP_LEVEL},
    **{f.name: f.default for cls in SECTIONS.values() for f in fields(cls)},  # type: ignore[arg-type]
}


_DEFAULTS: dict[type, _Section] = {}


def _default(cls: type[_Section]) -> _Section:
    """The all-defaults section (immutable, so shared)."""
    found = _DEFAULTS.get(cls)
    if found is None:
        found = _DEFAULTS[cls] = cls()
    return found


def flat_types() -> dict[str, Any]:
    """The declared type of every flat setting (``{"max_pool_size": int, ...}``)."""
    out = {name: _hints(DatabaseConfig)[name] for name in _TOP_LEVEL}
    for cls in SECTIONS.values():
        out.update(_hints(cls))
    return out


# --- the precedence rule --------------------------------------------------------------------

def resolve(given: str | DatabaseConfig | Mapping[str, Any] | None = None,
            overrides: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> DatabaseConfig:
    """The configuration ``Database(given, **overrides)`` runs with: the one precedence rule.

    For each setting, the first of these that sets it wins:

    1. ``overrides`` (keyword arguments: ``Database(url, max_pool_size=50)``);
    2. ``given``: a URL string, or the keys of a dict (the seed's ``{"url", "options"}`` shape);
    3. the URL's own query options (``?maxPoolSize=7``), the URL being the explicit one or,
       without one, ``MONGODB_URL``;
    4. the environment: ``ASTRO_DB_<SETTING>`` variables (``ASTRO_DB_CACHE_BUS``), and
       ``MONGODB_URL`` (or ``ASTRO_DB_URL``) for the URL;
    5. the defaults.

    It is the same with a URL, a dict or nothing. A ``DatabaseConfig`` object is a finished
    configuration (its defaults are choices too): the environment is not applied to it, only
    ``overrides``; build it with ``DatabaseConfig.from_env(...)`` to take the environment."""
    overrides = overrides or {}
    if isinstance(given, DatabaseConfig):
        return given.replace(**overrides) if overrides else given
    if given is None:
        explicit: dict[str, Any] = {}
    elif isinstance(given, str):
        explicit = {"url": given}
    elif isinstance(given, Mapping):
        explicit = DatabaseConfig._normalise_keys(_flatten(given))
    else:
        raise ConfigError(f"Database() takes a URL, a DatabaseConfig or a dict, got {type(given).__name__}")
    explicit.update(DatabaseConfig._normalise_keys(overrides))
    from_env = read_env(os.environ if environ is None else environ)
    if "url" in explicit:
        from_env.pop("url", None)
    for name in _url_option_names(explicit.get("url", from_env.get("url"))):
        from_env.pop(name, None)  # the URL's own options outrank the environment
    return DatabaseConfig(**{**from_env, **explicit})


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings ``environ`` holds: ``MONGODB_URL`` and ``ASTRO_DB_<SETTING>`` (empty ones
    ignored), parsed by each setting's declared type (a ``ConfigError`` naming the variable)."""
    out: dict[str, Any] = {}
    if environ.get(URL_ENV):
        out["url"] = environ[URL_ENV]
    for name, type_ in flat_types().items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            out[name] = _parse_env(name, raw, type_)
    return out


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's ``{"url", "options": {...}}`` shape (or flat keys) as one flat mapping."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"configuration must be a mapping, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "options":
            if not isinstance(value, Mapping):
                raise ConfigError("'options' must be a mapping", key="options")
            flat.update(value)
        elif key == "models":
            continue  # the seed lists its models here; ours are given to Database(models=...)
        else:
            flat[key] = value
    return flat


def _url_option_names(url: str | None) -> frozenset[str]:
    """The setting names a URL's query sets: PyMongo's options astro_db hands PyMongo under
    that name (``?serverSelectionTimeoutMS=500``; ``timeoutMS`` is ``operation_timeout_ms``)
    and astro_db's own (``?commandMonitoring=true``). PyMongo's ``journal`` is its write
    concern's ``j``, not the ``journal`` setting."""
    if not url:
        return frozenset()
    found = set()
    for key, _value in _query_options(url):
        low = key.lower()
        name = _DRIVER_SPELLINGS.get(low) if low in _driver_options() else _own_url_option(low)
        if name is not None:
            found.add(name)
    return frozenset(found)


def _url_number(key: str, raw: str, name: str) -> int | None:
    """A PyMongo pool size or timeout in the URL (``_MIRRORED``), read as the setting and PyMongo
    both take it: a whole number from the option's least value (``_URL_LEAST``) to 999999999, or
    0 for none where 0 means none to both (``_NONE_WHEN_ZERO``: the socket and connect
    timeouts). Anything else, which PyMongo would only warn of and replace by its default
    (``waitQueueTimeoutMS=0``: an unbounded wait for a connection while the setting said 30 s;
    ``maxIdleTimeMS=0``), or reads another way than the setting (``maxPoolSize=0``: no limit;
    ``serverSelectionTimeoutMS=0``; ``1.5`` ms), is a
    ``ConfigError`` naming the option and showing its value only, never the URL."""
    size = name.endswith("pool_size")  # PyMongo takes a pool size as an integer only ("10", not "1e1")
    try:
        number = float(int(raw) if size else raw)
    except ValueError:
        number = float("nan")
    none = _NONE_WHEN_ZERO.get(name)
    if number == 0 and none is not None:
        return None
    least = _URL_LEAST.get(name, 1)
    if not (least <= number < _PYMONGO_MAX_MS and number == int(number)):
        unit = "" if size else " of milliseconds"
        raise ConfigError(f"{key}={raw[:40]!r} in the URL must be a whole number{unit} from {least} to "
                          f"{_PYMONGO_MAX_MS - 1}" + (f", or 0 for no {none}" if none else ""), key=name)
    return int(number)


# PyMongo's URI options (lower case) whose value astro_db reads too (the monitor's pool size, the
# run step's server selection bound): a positive whole number, mirrored into the setting
_MIRRORED = {
    "maxpoolsize": "max_pool_size", "minpoolsize": "min_pool_size", "waitqueuetimeoutms": "wait_queue_timeout_ms",
    "maxidletimems": "max_idle_time_ms", "serverselectiontimeoutms": "server_selection_timeout_ms",
    "sockettimeoutms": "socket_timeout_ms", "connecttimeoutms": "connect_timeout_ms",
}
# a PyMongo URI option (lower case) -> the setting astro_db hands PyMongo as that option
_DRIVER_SPELLINGS = {k.lower(): v for k, v in _ALIASES.items() if v not in ("url", "database")} | {"tls": "tls"}


@functools.cache
def _driver_options() -> frozenset[str]:
    """Every URI option PyMongo knows (lower case, its aliases and deprecated spellings too)."""
    from pymongo import common

    return frozenset(key.lower() for table in (common.URI_OPTIONS_VALIDATOR_MAP, common.URI_OPTIONS_ALIAS_MAP,
                                               common.URI_OPTIONS_DEPRECATION_MAP) for key in table)


@functools.cache
def _own_spellings() -> dict[str, str]:
    """astro_db's own settings by their URL spelling: lower case without ``_``, so
    ``commandMonitoring``, ``command_monitoring`` and ``COMMANDMONITORING`` are one."""
    out = {name.replace("_", ""): name for name in _FLAT_NAMES if name != "url"}
    out["dbname"] = "database"
    return {key: name for key, name in out.items() if key not in _driver_options()}


def _own_url_option(low: str) -> str | None:
    """The astro_db-only setting a URL option (lower case) names, or None (PyMongo's or unknown)."""
    if low in _driver_options():
        return None
    return _own_spellings().get(low.replace("_", ""))


_QUERY_SEPARATOR = re.compile(r"[&;]")


def _query_options(url: str) -> list[tuple[str, str]]:
    """A URL's query options as ``(name, value)``, values percent-decoded, in order (PyMongo
    takes ``&`` or ``;`` between them)."""
    query = url.partition("?")[2].partition("#")[0]
    out = []
    for item in _QUERY_SEPARATOR.split(query):
        key, _eq, value = item.partition("=")
        if key.strip():
            out.append((unquote(key).strip(), unquote(value)))
    return out


def _without_own_options(url: str) -> str:
    """``url`` without the options astro_db reads itself; the rest of it unchanged, byte for byte.

    The query starts at the first ``?``: the user name and password cannot hold one unescaped
    (``_check_url`` refuses it), nor can a host or a database name."""
    head, mark, rest = url.partition("?")
    if not mark:
        return url
    query, hashmark, fragment = rest.partition("#")
    items = _QUERY_SEPARATOR.split(query)
    kept = [item for item in items if _own_url_option(unquote(item.partition("=")[0]).strip().lower()) is None]
    if len(kept) == len(items):
        return url
    separator = ";" if ";" in query and "&" not in query else "&"
    kept = [item for item in kept if item]
    return head + ("?" + separator.join(kept) if kept else "") + hashmark + fragment


def port_problem(host: str, *, srv: bool = False) -> str | None:
    """What is wrong with the port of one ``host[:port]`` of a URL (``[v6]:port`` too), or None.

    A port is 1 to 65535 in decimal digits; ``mongodb+srv://`` takes none (DNS supplies them)."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1:] if end >= 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            return f"host {host!r} is not a bracketed IPv6 address ('[::1]:27017')"
        name, port = host[:end + 1], rest[1:] if rest else None
    elif ":" in host:
        name, port = host.rsplit(":", 1)
    else:
        name, port = host, None
    if not name:
        return f"host {host!r} names no server"
    if port is None:
        return None
    if srv:
        return f"a mongodb+srv:// URL takes no port (DNS names them), got {host!r}"
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"port {port!r} of host {name!r} is not a number from 1 to 65535"
    return None


def _redis_port_ok(url: str | None) -> bool:
    """Whether a Redis URL's port (if any) is 1-65535 (a unix:// socket has none)."""
    parts = urlsplit(url or "")
    return parts.scheme == "unix" or port_problem(parts.netloc.rpartition("@")[2] or "localhost") is None


def _redis_target(url: str) -> tuple[str, str] | None:
    """The Redis server and database a URL names (credentials ignored); ``None`` for no Redis."""
    parts = urlsplit(url)
    if parts.scheme not in _CACHE_BUS_SCHEMES:
        return None
    if parts.scheme == "unix":
        return (parts.path, parse_qs(parts.query).get("db", ["0"])[0])
    try:
        port = parts.port or 6379
    except ValueError:
        return None
    return (f"{(parts.hostname or '').lower()}:{port}", parts.path.strip("/") or "0")


def _is_aes256_key(text: str) -> bool:
    """Whether ``text`` is base64 (standard or URL-safe) of exactly 32 bytes."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32


def _show(key: str, value: Any) -> str:
    if key in _SECRET_FIELDS:
        return "***"
    if key in _URL_FIELDS and isinstance(value, str):
        return repr(mask_url(value))
    return repr(value)


def _shown(key: str, value: Any) -> str:
    """A setting as ``repr`` shows it: secrets as ``***``, URLs with their password masked."""
    if key in _SECRET_FIELDS and value is not None:
        return "'***'"
    if key in _URL_FIELDS and isinstance(value, str):
        return repr(mask_url(value))
    return repr(value)


def _parse_env(name: str, raw: str, type_: Any, source: str | None = None) -> Any:
    """``raw`` (an ``ASTRO_DB_<NAME>`` value, or what ``source`` names) as the declared type of
    setting ``name``."""
    members = [m for m in _members(type_) if m is not type(None)]
    try:
        if bool in members:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if int in members and str in members:
            return int(raw) if raw.isdigit() else raw
        if int in members:
            return int(raw)
        if float in members:
            return float(raw)
        if typing.get_origin(members[0]) is tuple:
            if typing.get_args(members[0])[0] is str:
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(dict(pair.split(":", 1) for pair in tag.split(",")) for tag in raw.split(";") if tag)
        if typing.get_origin(members[0]) in (dict, Mapping):
            import json

            value = json.loads(raw)  # e.g. ASTRO_DB_KMS_PROVIDERS='{"aws": {...}}'
            if not isinstance(value, dict):
                raise ValueError(name)
            return value
    except ValueError:
        where = source or f"ASTRO_DB_{name.upper()}={_show(name, raw)}"
        raise ConfigError(f"{where} is not a valid {_type_name(type_)}", key=name) from None
    return raw
