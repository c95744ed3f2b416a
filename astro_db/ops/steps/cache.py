"""Step 6, cache: answer a read from the query cache when the call or the model asks for it.

Never inside a transaction (it must read its own uncommitted writes). With ``stale_ok`` the
answer is remembered and stands in, marked stale, while the server is unavailable
(``astro_db.stale``). Entries hold stored-form (still sealed) documents; invalidation is the
hooks step's job.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ...cache import cache_key
from ...registry import ModelInfo
from ...stale import fetch_or_stale
from ..runtime import Runtime

__all__ = ["read_through"]

T = TypeVar("T")


def read_through(rt: Runtime, info: ModelInfo, kind: str, filt: dict[str, Any], options: Any, *,
                 cache: bool | None, transaction: Any, stale_ok: bool, route: str | None,
                 fetch: Callable[[], T]) -> T:
    """``fetch()``, through the cache when wanted (see the module docstring)."""
    if transaction is not None:
        return fetch()
    store = rt.cache
    use_cache = store.wanted(info.name, cache)
    if stale_ok and store.enabled:
        return fetch_or_stale(store, cache_key(info.name, kind, filt, options, route), fetch, use_cache=use_cache)
    if not use_cache:
        return fetch()
    return store.get_or_fetch(cache_key(info.name, kind, filt, options, route), fetch)
