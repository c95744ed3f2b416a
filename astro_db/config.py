"""DatabaseConfig: the settings of one ``Database``, validated once at construction.

Defaults are the original service's: a pool of 10 to 100 connections, 30 s server-selection and
socket timeouts, 3 connection attempts with exponential backoff; the seed's 30 s is one budget
per call (``operation_timeout_ms``), retries and server selection included. ``from_dict`` takes the seed's
shape (``{"url": ..., "options": {"maxPoolSize": 50, ...}}``) or flat snake_case keys;
``from_env`` reads ``MONGODB_URL`` and ``ASTRO_DB_*``. Passwords and keys never appear in
``repr``/``str``: use ``masked_url`` wherever a URL is shown.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigError
from .urls import mask_url, unescaped_userinfo, userinfo_of

__all__ = ["DatabaseConfig", "mask_url", "EMBEDDED_URL"]

EMBEDDED_URL = "mongomock://localhost/astro"
_SCHEMES = ("mongodb", "mongodb+srv", "mongomock")
_READ_PREFERENCES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
_DEPRECATED_OPTIONS = ("useNewUrlParser", "useUnifiedTopology", "use_new_url_parser", "use_unified_topology")
_SECRET_FIELDS = ("password", "encryption_key", "encryption_keys", "cache_secret", "token_secret", "kms_providers")
_URL_FIELDS = ("url", "cache_bus", "cache_store")  # shown with their password masked
_CACHE_BUS_SCHEMES = ("redis", "rediss", "unix")
_DEFAULT_BUDGET_MS = 30_000  # operation_timeout_ms's default: the seed's 30 s, per call

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


@dataclass(frozen=True)
class DatabaseConfig:
    """Everything a ``Database`` needs to connect and behave; see docs/configuration.md."""

    url: str | None = None
    database: str | None = None
    # pool and timeouts (seed defaults)
    min_pool_size: int = 10
    max_pool_size: int = 100
    server_selection_timeout_ms: int = 30_000
    socket_timeout_ms: int = 30_000
    connect_timeout_ms: int = 10_000
    wait_queue_timeout_ms: int = 30_000
    max_idle_time_ms: int | None = None
    # one budget per call, retries, waits and server selection included (None: unbounded)
    operation_timeout_ms: int | None = 30_000  # _DEFAULT_BUDGET_MS
    # connecting and retrying
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
    # security and topology pass-through
    tls: bool = False
    tls_ca_file: str | None = None
    tls_certificate_key_file: str | None = None
    tls_allow_invalid_certificates: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_source: str | None = None
    auth_mechanism: str | None = None
    replica_set: str | None = None
    read_preference: str = "primary"
    read_preference_tags: tuple[dict[str, str], ...] = ()
    max_staleness_s: int | None = None
    write_concern: str | int = "majority"
    app_name: str = "astro_db"
    # service features
    slow_query_ms: float = 100.0
    # monitoring and health (docs/monitoring.md)
    monitoring: bool = True  # register PyMongo command / pool / heartbeat listeners
    tracing: bool = True  # OpenTelemetry spans per operation, when opentelemetry-api is installed
    health_timeout_ms: int = 2000  # bound of the ping db.health() sends
    health_latency_ms: float = 500.0  # a slower ping makes health "degraded"
    health_pool_saturation: float = 0.9  # checked-out / max_pool_size at which health degrades
    health_error_rate: float = 0.05  # share of failed operations in the window that degrades
    health_slow_rate: float = 0.1  # share of slow operations in the window that degrades
    health_window_s: int = 60  # the recent window those rates cover
    health_min_operations: int = 20  # fewer operations in the window: rates are not judged
    cache_ttl_s: float = 60.0
    cache_max_entries: int = 1024
    cache_max_documents: int = 100_000
    cache_models: tuple[str, ...] = ()
    cache_stale_s: float = 3600.0  # how long past its TTL a cached read stays available to stale_ok reads
    cache_bus: str = "local"  # invalidation bus: "local", "redis://..." or "changestream" (docs/caching.md)
    cache_store: str | None = None  # "redis://...": results shared by every process (needs a Redis cache_bus)
    # the key of the MAC every shared-store entry carries (docs/caching.md); default: derived from encryption_key
    cache_secret: str | None = field(default=None, repr=False)
    # the MAC key of page tokens (db.page; docs/reading.md); default: cache_secret, else encryption_key
    token_secret: str | None = field(default=None, repr=False)
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
    audit: bool = True
    ensure_indexes: bool = True
    audit_retention_days: int | None = 365
    journal: bool = True  # change journal for incremental backups and point-in-time restore
    # a create and its change records in one bulkWrite command, where the server has it (MongoDB 8.0+)
    one_command_writes: bool = True
    check_references: bool = False  # refuse a userId naming no User (one more read per write)

    def __post_init__(self) -> None:
        self._check_types()
        self._check_ranges()
        if self.url is not None:
            self._check_url(self.url)
            self._budget_from_url(self.url)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatabaseConfig:
        """Build from the seed's ``{"url", "options": {...}}`` shape or flat keys (camel or snake)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"configuration must be a mapping, got {type(data).__name__}")
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key == "options":
                if not isinstance(value, Mapping):
                    raise ConfigError("'options' must be a mapping", key="options")
                flat.update(value)
            elif key == "models":
                continue  # the seed lists its models here; ours are fixed by astro_db.models
            else:
                flat[key] = value
        return cls(**cls._normalise_keys(flat))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DatabaseConfig:
        """Build from ``MONGODB_URL`` and ``ASTRO_DB_<FIELD>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        if env.get("MONGODB_URL"):
            kwargs["url"] = env["MONGODB_URL"]
        for name, type_ in types.items():
            raw = env.get(f"ASTRO_DB_{name.upper()}")
            if raw is not None and raw != "":
                kwargs[name] = _parse_env(name, raw, str(type_))
        kwargs.update(cls._normalise_keys(overrides))
        return cls(**kwargs)

    @classmethod
    def _normalise_keys(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        known = {f.name for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in _DEPRECATED_OPTIONS:
                warnings.warn(
                    f"'{key}' is a legacy Node driver option with no effect in PyMongo; remove it",
                    DeprecationWarning,
                    stacklevel=4,
                )
                continue
            name = key if key in known else _snake(key)
            if name not in known:
                raise ConfigError(f"unknown configuration key '{key}'", key=key)
            out[name] = value
        return out

    @classmethod
    def option_names(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """The field names a mapping of options sets, in any spelling ``from_dict`` takes
        (``serverSelectionTimeoutMS`` and ``server_selection_timeout_ms`` alike)."""
        known = {f.name for f in fields(cls)}
        return frozenset(key if key in known else _snake(key) for key in options if key not in _DEPRECATED_OPTIONS)

    @classmethod
    def env_names(cls, environ: Mapping[str, str] | None = None) -> frozenset[str]:
        """The field names ``from_env`` would take from ``ASTRO_DB_<FIELD>`` variables."""
        env = os.environ if environ is None else environ
        return frozenset(f.name for f in fields(cls) if env.get(f"ASTRO_DB_{f.name.upper()}"))

    def url_settings(self) -> frozenset[str]:
        """The field names the URL's query sets itself (``?serverSelectionTimeoutMS=500``)."""
        in_url = parse_qs(urlsplit(self.url or "").query)
        return self.option_names({key: None for key in in_url}) | (
            {"operation_timeout_ms"} if any(k.lower() == "timeoutms" for k in in_url) else set())

    def replace(self, **changes: Any) -> DatabaseConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **self._normalise_keys(changes))

    # --- derived values ----------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return urlsplit(self.url or EMBEDDED_URL).scheme

    @property
    def is_embedded(self) -> bool:
        """True when this config selects the in-process mongomock-ng backend."""
        return self.url is None or self.scheme == "mongomock"

    @property
    def masked_url(self) -> str:
        return mask_url(self.url or EMBEDDED_URL)

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
        opts: dict[str, Any] = {
            "minPoolSize": self.min_pool_size,
            "maxPoolSize": self.max_pool_size,
            "serverSelectionTimeoutMS": self.server_selection_timeout_ms,
            "socketTimeoutMS": self.socket_timeout_ms,
            "connectTimeoutMS": self.connect_timeout_ms,
            "waitQueueTimeoutMS": self.wait_queue_timeout_ms,
            "retryWrites": self.retry_writes,
            "retryReads": self.retry_reads,
            "appname": self.app_name,
            "readPreference": self.read_preference,
            "w": self.write_concern,
            "tz_aware": True,
            "uuidRepresentation": "standard",
        }
        optional = {
            "maxIdleTimeMS": self.max_idle_time_ms,
            "replicaSet": self.replica_set,
            "authSource": self.auth_source,
            "authMechanism": self.auth_mechanism,
            "username": self.username,
            "password": self.password,
            "maxStalenessSeconds": self.max_staleness_s,
            "tlsCAFile": self.tls_ca_file,
            "tlsCertificateKeyFile": self.tls_certificate_key_file,
        }
        opts.update({k: v for k, v in optional.items() if v is not None})
        if self.read_preference_tags:
            opts["readPreferenceTags"] = [",".join(f"{k}:{v}" for k, v in t.items()) for t in self.read_preference_tags]
        if self.tls:
            opts["tls"] = True
            if self.tls_allow_invalid_certificates:
                opts["tlsAllowInvalidCertificates"] = True
        return self._defer_to_url(opts)

    def _defer_to_url(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Drop defaulted options the URL sets itself: PyMongo lets keywords override the URL,
        so ``?serverSelectionTimeoutMS=500`` would otherwise lose to our 30 s default."""
        in_url = {key.lower() for key in parse_qs(urlsplit(self.url or "").query)}
        if not in_url:
            return opts
        defaults = {f.name: f.default for f in fields(self)}
        by_option = {k.lower(): v for k, v in _ALIASES.items()} | {"appname": "app_name"}
        for key in [k for k in opts if k.lower() in in_url]:
            name = by_option.get(key.lower())
            if name is None or getattr(self, name) == defaults.get(name):
                del opts[key]
        if "maxPoolSize" not in opts and self.min_pool_size == defaults["min_pool_size"]:
            opts.pop("minPoolSize", None)  # the URL's pool may be smaller than our default minimum
        return opts

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name in _URL_FIELDS:
                value = mask_url(value)
            elif f.name in _SECRET_FIELDS:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"DatabaseConfig({', '.join(shown)})"

    __str__ = __repr__

    # --- validation --------------------------------------------------------------------------

    def _check_types(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = str(f.type)
            if value is None:
                if "None" not in expected:
                    raise ConfigError(f"'{f.name}' must not be None", key=f.name)
                continue
            if "bool" in expected and not expected.startswith("int"):
                ok = isinstance(value, bool)
            elif expected.startswith("int"):
                ok = isinstance(value, int) and not isinstance(value, bool)
                if "str" in expected:
                    ok = ok or isinstance(value, str)
            elif expected.startswith("float"):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif expected.startswith("str"):
                ok = isinstance(value, str)
            elif expected.startswith("tuple[str"):
                ok = isinstance(value, (tuple, list)) and all(isinstance(t, str) for t in value)
                if ok and isinstance(value, list):
                    object.__setattr__(self, f.name, tuple(value))
            elif expected.startswith("Mapping"):
                ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
            elif expected.startswith("tuple"):
                ok = isinstance(value, (tuple, list)) and all(isinstance(t, Mapping) for t in value)
                if ok and isinstance(value, list):
                    object.__setattr__(self, f.name, tuple(value))
            else:  # pragma: no cover - every field type is listed above
                ok = True
            if not ok:
                raise ConfigError(
                    f"'{f.name}' must be {expected.replace(' | None', '')}, got {type(value).__name__} {_show(f.name, value)}",
                    key=f.name,
                )

    def _check_ranges(self) -> None:
        def need(cond: bool, key: str, rule: str) -> None:
            if not cond:
                raise ConfigError(f"'{key}' {rule}, got {_show(key, getattr(self, key))}", key=key)

        need(self.max_pool_size >= 1, "max_pool_size", "must be at least 1")
        need(self.max_pool_size <= 10_000, "max_pool_size", "must be at most 10000")
        need(self.min_pool_size >= 0, "min_pool_size", "must be 0 or more")
        need(self.min_pool_size <= self.max_pool_size, "min_pool_size", f"must not exceed max_pool_size ({self.max_pool_size})")
        for key in ("server_selection_timeout_ms", "socket_timeout_ms", "connect_timeout_ms", "wait_queue_timeout_ms"):
            need(getattr(self, key) > 0, key, "must be a positive number of milliseconds")
        for key in ("max_idle_time_ms", "operation_timeout_ms"):
            need(getattr(self, key) is None or getattr(self, key) > 0, key, "must be positive when set")
        need(1 <= self.connect_attempts <= 20, "connect_attempts", "must be 1-20")
        need(1 <= self.connect_budget_ms <= 3_600_000, "connect_budget_ms", "must be 1-3600000 milliseconds")
        need(1 <= self.retry_attempts <= 20, "retry_attempts", "must be 1-20")
        need(self.backoff_base_s > 0, "backoff_base_s", "must be positive")
        need(self.backoff_max_s >= self.backoff_base_s, "backoff_max_s", "must be at least backoff_base_s")
        need(self.breaker_threshold >= 1, "breaker_threshold", "must be at least 1")
        need(self.breaker_cooldown_s > 0, "breaker_cooldown_s", "must be positive")
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
        need(self.slow_query_ms >= 0, "slow_query_ms", "must be 0 or more")
        need(1 <= self.health_timeout_ms <= 60_000, "health_timeout_ms", "must be 1-60000")
        need(self.health_latency_ms > 0, "health_latency_ms", "must be positive")
        for key in ("health_pool_saturation", "health_error_rate", "health_slow_rate"):
            need(0 < getattr(self, key) <= 1, key, "must be a fraction in (0, 1]")
        need(1 <= self.health_window_s <= 3600, "health_window_s", "must be 1-3600")
        need(self.health_min_operations >= 1, "health_min_operations", "must be at least 1")
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
        need(self.token_secret is None or len(self.token_secret) >= 32, "token_secret",
             "must be at least 32 characters of random text (astro-db new-key makes one)")
        need(self.cache_store is None or bool(self.cache_secret or self.encryption_key), "cache_secret",
             "is needed with cache_store: every entry in the shared Redis carries a MAC under a key only the app "
             "holds (set cache_secret / ASTRO_DB_CACHE_SECRET, e.g. from astro-db new-key, or encryption_key)")
        need(self.audit_retention_days is None or self.audit_retention_days >= 1, "audit_retention_days", "must be at least 1")
        for key in ("encryption_key", "encryption_keys"):
            for text in (getattr(self, key) or "").split(","):
                need(
                    not getattr(self, key) or _is_aes256_key(text), key,
                    "must be base64 of 32 random bytes (comma-separated for encryption_keys)",
                )
        need(bool(re.fullmatch(r"[^/\\. \"$*<>:|?]{1,63}\.[^$\x00]{1,200}", self.key_vault_namespace)),
             "key_vault_namespace", "must be '<database>.<collection>' (MongoDB's convention: encryption.__keyVault)")
        need(self.kms_master_key is None or isinstance(self.kms_master_key.get("provider"), str), "kms_master_key",
             "must name its provider: {\"provider\": \"aws\", \"region\": ..., \"key\": ...}")
        if isinstance(self.write_concern, int):
            need(self.write_concern >= 0, "write_concern", "must be 'majority', a tag name or a number >= 0")
        need(
            self.database is None or bool(re.fullmatch(r"[^/\\. \"$*<>:|?]{1,63}", self.database)),
            "database", "is not a valid MongoDB database name",
        )

    def _budget_from_url(self, url: str) -> None:
        """A ``timeoutMS`` in the URL is the per-call budget unless ``operation_timeout_ms`` was
        given (the run step's ``pymongo.timeout`` would otherwise override the client's)."""
        found = {k.lower(): v for k, v in parse_qs(urlsplit(url).query).items()}.get("timeoutms")
        if not found or self.operation_timeout_ms != _DEFAULT_BUDGET_MS:
            return
        try:
            value = float(found[-1])
        except ValueError:
            raise ConfigError(f"timeoutMS in {mask_url(url)} must be a number of milliseconds", key="url") from None
        object.__setattr__(self, "operation_timeout_ms", int(value) if value > 0 else None)

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
        self.database_name  # noqa: B018 - raises ConfigError when there is none


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


def _parse_env(name: str, raw: str, type_: str) -> Any:
    try:
        if "bool" in type_:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_.startswith("int") and "str" in type_:
            return int(raw) if raw.isdigit() else raw
        if type_.startswith("int"):
            return int(raw)
        if type_.startswith("float"):
            return float(raw)
        if type_.startswith("tuple[str"):
            return tuple(name.strip() for name in raw.split(",") if name.strip())
        if type_.startswith("tuple"):
            return tuple(dict(pair.split(":", 1) for pair in tag.split(",")) for tag in raw.split(";") if tag)
        if type_.startswith("Mapping"):
            import json

            value = json.loads(raw)  # e.g. ASTRO_DB_KMS_PROVIDERS='{"aws": {...}}'
            if not isinstance(value, dict):
                raise ValueError(name)
            return value
    except ValueError:
        raise ConfigError(f"ASTRO_DB_{name.upper()}={_show(name, raw)} is not a valid {type_}", key=name) from None
    return raw
