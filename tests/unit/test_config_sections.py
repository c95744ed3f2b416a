"""DatabaseConfig as per-concern value objects: each validates itself, the flat names still
build and read every setting, secrets never shown."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from astro_db.config import (
    SECTIONS,
    CacheConfig,
    ChangeRecordsConfig,
    DatabaseConfig,
    EncryptionConfig,
    HealthConfig,
    PoolConfig,
    RetryConfig,
    TimeoutConfig,
    TlsAuthConfig,
    TopologyConfig,
    flat_types,
)
from astro_db.errors import ConfigError

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


@pytest.mark.parametrize("make, key, says", [
    (lambda: PoolConfig(max_pool_size=0), "max_pool_size", "must be at least 1"),
    (lambda: PoolConfig(min_pool_size=20, max_pool_size=10), "min_pool_size", "must not exceed max_pool_size (10)"),
    (lambda: PoolConfig(max_pool_size="50"), "max_pool_size", "must be int, got str '50'"),  # type: ignore[arg-type]
    (lambda: TimeoutConfig(operation_timeout_ms=0), "operation_timeout_ms", "must be positive when set"),
    (lambda: TimeoutConfig(socket_timeout_ms=True), "socket_timeout_ms", "must be int, got bool"),
    (lambda: RetryConfig(backoff_base_s=2.0, backoff_max_s=1.0), "backoff_max_s", "must be at least backoff_base_s"),
    (lambda: RetryConfig(breaker_threshold=0), "breaker_threshold", "must be at least 1"),
    (lambda: TlsAuthConfig(tls="yes"), "tls", "must be bool, got str 'yes'"),  # type: ignore[arg-type]
    (lambda: TopologyConfig(read_preference="fastest"), "read_preference", "must be one of"),
    (lambda: TopologyConfig(write_concern=1.5), "write_concern", "must be str | int, got float"),  # type: ignore[arg-type]
    (lambda: HealthConfig(health_error_rate=1.5), "health_error_rate", "must be a fraction in (0, 1]"),
    (lambda: CacheConfig(cache_bus="memcached://h"), "cache_bus", "must be 'local', 'changestream' or a redis://"),
    (lambda: CacheConfig(cache_models=[1]), "cache_models", "must be tuple[str, ...]"),  # type: ignore[list-item]
    (lambda: CacheConfig(cache_secret="short"), "cache_secret", "at least 32 characters"),
    (lambda: EncryptionConfig(encryption_key="not-a-key"), "encryption_key", "base64 of 32 random bytes"),
    (lambda: ChangeRecordsConfig(audit_retention_days=0), "audit_retention_days", "must be at least 1"),
    (lambda: ChangeRecordsConfig(journal=None), "journal", "must not be None"),  # type: ignore[arg-type]
])
def test_each_section_validates_itself_naming_the_key(make, key, says):
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.key == key and says in str(caught.value)


def test_a_section_takes_a_list_for_a_tuple_and_an_int_for_a_float():
    assert CacheConfig(cache_models=["User"]).cache_models == ("User",)
    assert CacheConfig(cache_ttl_s=5).cache_ttl_s == 5


def test_the_config_is_composed_of_its_sections():
    cfg = DatabaseConfig(url="mongodb://h/astro", max_pool_size=50, retry_attempts=5, cache_ttl_s=0, audit=False)
    assert cfg.pool == PoolConfig(max_pool_size=50)
    assert cfg.retry == RetryConfig(retry_attempts=5)
    assert cfg.cache == CacheConfig(cache_ttl_s=0)
    assert cfg.change_records == ChangeRecordsConfig(audit=False)
    assert cfg.health == HealthConfig() and cfg.encryption == EncryptionConfig()
    assert cfg == DatabaseConfig(url="mongodb://h/astro", pool=PoolConfig(max_pool_size=50), retry=RetryConfig(retry_attempts=5),
                                 cache=CacheConfig(cache_ttl_s=0), change_records=ChangeRecordsConfig(audit=False))


def test_flat_keys_apply_over_a_section_given_whole():
    cfg = DatabaseConfig(pool=PoolConfig(min_pool_size=2, max_pool_size=50), max_pool_size=60)
    assert cfg.pool == PoolConfig(min_pool_size=2, max_pool_size=60)
    assert cfg.replace(pool=PoolConfig(max_pool_size=20)).pool == PoolConfig(max_pool_size=20)
    assert cfg.replace(maxPoolSize=70).pool == PoolConfig(min_pool_size=2, max_pool_size=70)
    assert dataclasses.replace(cfg, max_pool_size=80).max_pool_size == 80


def test_a_section_of_the_wrong_kind_or_an_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="'pool' must be a PoolConfig") as caught:
        DatabaseConfig(pool=RetryConfig())  # type: ignore[arg-type]
    assert caught.value.key == "pool"
    with pytest.raises(ConfigError, match="unknown configuration key 'pool_max'"):
        DatabaseConfig(pool_max=3)


def test_a_cross_section_rule_is_checked_by_the_config():
    """cache_store needs a MAC key: cache_secret (cache) or encryption_key (encryption)."""
    store = {"cache_bus": "redis://localhost:6379/0", "cache_store": "redis://localhost:6379/0"}
    with pytest.raises(ConfigError, match="is needed with cache_store") as caught:
        DatabaseConfig(url="mongodb://h/astro", **store)
    assert caught.value.key == "cache_secret"
    assert DatabaseConfig(url="mongodb://h/astro", encryption_key=KEY, **store).cache.cache_store == store["cache_store"]


def test_every_flat_name_reads_its_sections_field_with_its_declared_type():
    cfg = DatabaseConfig()
    sections = {name: attr for attr, cls in SECTIONS.items() for name in typing.get_type_hints(cls)}
    flats = {name: value for name, value in vars(DatabaseConfig).items() if type(value).__name__ == "_Flat"}
    assert set(flats) == set(sections)
    for name, descriptor in flats.items():
        assert getattr(cfg, name) == getattr(getattr(cfg, sections[name]), name)
        assert typing.get_args(descriptor.__orig_class__)[0] == flat_types()[name], name
    assert set(flat_types()) == set(sections) | {"url", "database", "ensure_indexes", "check_references", "token_secret",
                                                      "backup_secret"}


def test_no_secret_is_shown_by_a_section_or_the_config():
    shown = [
        repr(TlsAuthConfig(username="app", password="hunter2-password")),
        repr(CacheConfig(cache_bus="redis://:bus-password@r:6379/0", cache_secret="x" * 40)),
        str(EncryptionConfig(encryption_key=KEY, encryption_keys=KEY)),
        repr(DatabaseConfig(url="mongodb://app:url-password@h/astro", password="hunter2-password", encryption_key=KEY,
                            cache_secret="x" * 40, token_secret="y" * 40)),
    ]
    for text in shown:
        for secret in ("hunter2-password", "bus-password", "x" * 40, "y" * 40, KEY[:16], "url-password"):
            assert secret not in text
    assert "username='app'" in shown[0] and "password='***'" in shown[0]


def _hint(fn, name="config"):
    """The declared type of a parameter, by name (annotations are strings here: some are
    imported for type checking only)."""
    return fn.__annotations__[name]


def test_each_consumer_is_typed_to_take_only_its_section():
    from astro_db.cache.store import QueryCache, store_secret
    from astro_db.driver import connection, transactions
    from astro_db.driver.retry import RetryPolicy
    from astro_db.driver.routing import ReadPreference, ReadRouter
    from astro_db.monitoring.monitor import Monitor

    assert _hint(RetryPolicy.__init__) == "RetryConfig"
    assert _hint(connection._waits, "cfg") == "RetryConfig"
    assert _hint(ReadRouter.__init__) == "TopologyConfig"
    assert _hint(ReadPreference.from_config) == "TopologyConfig"
    assert _hint(transactions.transaction_options) == "TopologyConfig"
    assert _hint(Monitor.__init__) == "HealthConfig"
    assert _hint(QueryCache.from_config) == "CacheConfig"
    assert _hint(store_secret) == "CacheConfig"


def test_each_consumer_works_from_its_section_alone():
    from astro_db.cache.store import QueryCache
    from astro_db.driver.retry import RetryPolicy
    from astro_db.driver.routing import ReadRouter
    from astro_db.monitoring.monitor import Monitor
    from astro_db.registry import default_registry

    assert RetryPolicy(RetryConfig(retry_attempts=2, backoff_jitter=False)).attempts == 2
    assert ReadRouter(TopologyConfig(read_preference="secondary")).default.mode == "secondary"
    monitor = Monitor(HealthConfig(slow_query_ms=5.0, health_window_s=30), default_registry(), max_pool_size=4)
    assert (monitor.slow_ms, monitor.max_pool_size) == (5.0, 4)
    cache = QueryCache.from_config(CacheConfig(cache_ttl_s=5, cache_models=("User",)), default_registry(),
                                   identity=("test", "one"), namespace="astro:test", shared_data=False)
    assert (cache.ttl_s, cache.models) == (5, frozenset({"User"}))


def test_the_runtime_hands_each_part_its_section():
    from astro_db import Database

    db = Database("mongomock://localhost/sections", retry_attempts=5, read_preference="nearest", slow_query_ms=7.0,
                  cache_ttl_s=3, breaker_threshold=2, audit=False, max_pool_size=40)
    rt = db.executor.runtime
    assert rt.retry.attempts == 5 and rt.router.default.mode == "nearest"
    assert (rt.monitor.slow_ms, rt.monitor.max_pool_size) == (7.0, 40)
    assert rt.cache.ttl_s == 3 and rt.breaker.threshold == 2 and rt.changes.audit is False
