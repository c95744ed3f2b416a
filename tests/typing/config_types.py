"""Checked by ``mypy --strict`` in .ci/run (not collected by pytest): the configuration's types.

A flat read (``config.max_pool_size``) has its setting's declared type, the same as the read
through its section (``config.pool.max_pool_size``); ``# type: ignore[...]`` marks a line that
must NOT type-check (``warn_unused_ignores`` makes a widening to ``Any`` an error).
"""

from __future__ import annotations

from astro_db import Database, DatabaseConfig
from astro_db.config import CacheConfig, HealthConfig, PoolConfig, RetryConfig


def typed_reads(config: DatabaseConfig) -> None:
    pool: int = config.max_pool_size
    same: int = config.pool.max_pool_size
    budget: int | None = config.operation_timeout_ms
    models: tuple[str, ...] = config.cache_models
    concern: str | int = config.write_concern
    health: HealthConfig = config.health
    cache: CacheConfig = config.cache
    print(pool, same, budget, models, concern, health, cache)
    wrong: str = config.max_pool_size  # type: ignore[assignment]
    maybe: int = config.operation_timeout_ms  # type: ignore[assignment]
    print(wrong, maybe)


def typed_building() -> None:
    config = DatabaseConfig(url="mongodb://db/astro", pool=PoolConfig(max_pool_size=50), retry=RetryConfig())
    Database(config.replace(cache=CacheConfig(cache_ttl_s=5)))
    PoolConfig(max_pool_size="50")  # type: ignore[arg-type]
    DatabaseConfig(pool=RetryConfig())  # type: ignore[arg-type]
